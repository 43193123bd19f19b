//! The subscriptions function: `POST /subscriptions` creates a subscription and answers where
//! the buyer signs its Alipay agreement; `GET /subscriptions/{subscription_id}` returns it;
//! `POST /subscriptions/{subscription_id}/cancel` stops the agreement at Alipay, then cancels;
//! `POST /subscriptions/{subscription_id}/pause` and `/resume` skip periods meanwhile.
//!
//! The charges are not made here: the sweeper's schedule charges every due period
//! (`gateway::subscriptions::run_due`), and the agreement's state arrives as Alipay's notices at
//! the notify function. A creation is idempotent on `subscription_id` (sent to Alipay as
//! `external_agreement_no`): a retry gets the same subscription, another plan under the same id
//! a `409`.

use alipay::Amount;
use alipay::agreement::{PeriodType, SignChannel};
use alipay::china_time::ChinaDate;
use alipay::ids::{ExternalAgreementNo, Subject};
use domain::states::Cause;
use domain::subscriptions::Plan;
use gateway::clock::now_ms;
use gateway::deadline::Deadline;
use gateway::http::views::subscription_view;
use gateway::http::{ApiError, JsonBody, json_response, method_not_allowed, path_segments};
use gateway::startup::Gateway;
use gateway::subscriptions::{
    NewSubscription, SubscriptionError, cancel, create, get, pause_or_resume,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

const FIELDS: [&str; 13] = [
    "subscription_id",
    "customer_ref",
    "subject",
    "amount",
    "period_type",
    "period",
    "first_charge_date",
    "single_amount",
    "total_amount",
    "total_payments",
    "sign_channel",
    "pay_and_sign",
    "return_url",
];

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    let deadline = Deadline::of_request(&request, gateway.config.lifecycle.default_budget_ms);
    let result = match (request.method(), path_segments(&request).as_slice()) {
        (&Method::POST, ["subscriptions"]) => post(gateway, &request).await,
        (&Method::GET, ["subscriptions", id]) => show(gateway, id).await,
        (&Method::POST, ["subscriptions", id, "cancel"]) => stop(gateway, id, &deadline).await,
        (&Method::POST, ["subscriptions", id, "cashier"]) => cashier(gateway, id).await,
        (&Method::POST, ["subscriptions", id, action @ ("pause" | "resume")]) => {
            pause(gateway, id, *action == "resume").await
        }
        (
            method,
            ["subscriptions"]
            | ["subscriptions", _]
            | [
                "subscriptions",
                _,
                "cancel" | "pause" | "resume" | "cashier",
            ],
        ) => Err(method_not_allowed(method)),
        _ => Err(ApiError::not_found(format!(
            "no route for {}",
            request.uri().path()
        ))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn parse_id(text: &str) -> Result<ExternalAgreementNo, ApiError> {
    ExternalAgreementNo::parse(text).map_err(|e| ApiError::invalid("subscription_id", e))
}

/// The request's subscription, checked field by field; nothing is written before it is whole.
pub fn parse(request: &Request, today: ChinaDate) -> Result<NewSubscription, ApiError> {
    let body = JsonBody::parse(request, &FIELDS)?;
    let id = parse_id(body.required("subscription_id")?)?;
    let subject =
        Subject::parse(body.required("subject")?).map_err(|e| ApiError::invalid("subject", e))?;
    let amount_of = |field: &str| -> Result<Option<Amount>, ApiError> {
        body.string(field)?
            .map(|text| Amount::parse(text).map_err(|e| ApiError::invalid(field, e)))
            .transpose()
    };
    let amount = amount_of("amount")?.ok_or_else(|| ApiError::invalid("amount", "is required"))?;
    let period_type = PeriodType::parse(body.required("period_type")?)
        .ok_or_else(|| ApiError::invalid("period_type", "must be DAY or MONTH"))?;
    let period = body
        .integer("period")?
        .ok_or_else(|| ApiError::invalid("period", "is required"))?;
    let first_date = ChinaDate::parse(body.required("first_charge_date")?)
        .map_err(|e| ApiError::invalid("first_charge_date", e))?;
    let sign_channel = match body.string("sign_channel")? {
        None => SignChannel::Qrcode,
        Some(text) => SignChannel::parse(text).ok_or_else(|| {
            ApiError::invalid("sign_channel", "must be QRCODE, QRCODEORSMS or ALIPAYAPP")
        })?,
    };
    let customer_ref = body.customer_ref()?;
    let pay_and_sign = match body.string("pay_and_sign")? {
        None => None,
        Some("page") => Some(domain::states::Cashier::Page),
        Some("app") => Some(domain::states::Cashier::App),
        Some(_) => return Err(ApiError::invalid("pay_and_sign", "must be page or app")),
    };
    let return_url = body.string("return_url")?.map(str::to_owned);
    if return_url.is_some() && pay_and_sign != Some(domain::states::Cashier::Page) {
        return Err(ApiError::invalid(
            "return_url",
            "applies to pay_and_sign page only",
        ));
    }
    if pay_and_sign.is_some() && first_date != today {
        return Err(ApiError::invalid(
            "first_charge_date",
            "must be today with pay_and_sign (the first period is paid now)",
        ));
    }
    if pay_and_sign.is_some() && body.integer("total_payments")? == Some(1) {
        return Err(ApiError::invalid(
            "total_payments",
            "must be at least 2 with pay_and_sign (the agreement is for the later periods)",
        ));
    }
    let plan = Plan::new(
        Plan {
            period_type,
            period,
            amount,
            first_date,
            single_amount: amount_of("single_amount")?.unwrap_or(amount),
            total_amount: amount_of("total_amount")?,
            total_payments: body.integer("total_payments")?,
        },
        today,
    )
    .map_err(|e| ApiError::invalid(e.field, e.problem))?;
    Ok(NewSubscription {
        id,
        customer_ref,
        subject,
        plan,
        sign_channel,
        return_url,
        pay_and_sign,
    })
}

async fn post(gateway: &Gateway, request: &Request) -> Result<Response<Body>, ApiError> {
    let today = ChinaDate::of_unix(now_ms() / 1000);
    let new = parse(request, today)?;
    if let Some(url) = &new.return_url
        && !gateway.config.return_url_allowed(url)
    {
        return Err(ApiError::invalid(
            "return_url",
            "must start with one of RETURN_URL_PREFIXES",
        ));
    }
    let cause = Cause::Api {
        route: "POST /subscriptions".into(),
    };
    let (subscription, signing, created) =
        create(gateway, &new, &cause).await.map_err(api_error)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &json!({
            "subscription": subscription_view(&subscription),
            "next_step": signing,
        }),
    ))
}

async fn show(gateway: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    let subscription = get(gateway, &parse_id(id)?).await.map_err(api_error)?;
    Ok(json_response(
        StatusCode::OK,
        &subscription_view(&subscription),
    ))
}

async fn stop(
    gateway: &Gateway,
    id: &str,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let route = format!("POST /subscriptions/{id}/cancel");
    let subscription = cancel(gateway, &id, &Cause::Api { route }, deadline)
        .await
        .map_err(api_error)?;
    Ok(json_response(
        StatusCode::OK,
        &subscription_view(&subscription),
    ))
}

/// A stepped-up period's cashier URL, signed now.
async fn cashier(gateway: &Gateway, id: &str) -> Result<Response<Body>, ApiError> {
    let url = gateway::subscriptions::cashier_url(gateway, &parse_id(id)?)
        .await
        .map_err(api_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"type": "redirect", "url": url}),
    ))
}

async fn pause(gateway: &Gateway, id: &str, resume: bool) -> Result<Response<Body>, ApiError> {
    let id = parse_id(id)?;
    let action = if resume { "resume" } else { "pause" };
    let route = format!("POST /subscriptions/{id}/{action}");
    let subscription = pause_or_resume(gateway, &id, resume, &Cause::Api { route })
        .await
        .map_err(|error| match error {
            SubscriptionError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", message)
            }
            other => api_error(other),
        })?;
    Ok(json_response(
        StatusCode::OK,
        &subscription_view(&subscription),
    ))
}

fn api_error(error: SubscriptionError) -> ApiError {
    match error {
        SubscriptionError::NotFound(id) => ApiError::not_found(format!("no subscription {id}")),
        SubscriptionError::Conflict(message) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", message).with_field("subscription_id")
        }
        SubscriptionError::Unavailable(message) => {
            ApiError::unavailable("alipay_unavailable", message, 30)
        }
        SubscriptionError::Refused(message) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "alipay_refused", message)
        }
        SubscriptionError::Store(error) => ApiError::from(error),
    }
}
