//! The refund function: `POST /payments/{out_trade_no}/refunds` refunds in full or in part;
//! `GET /payments/{out_trade_no}/refunds/{out_request_no}` returns a refund (`?sync=true` asks
//! Alipay about a pending one).
//!
//! A refund is first reserved against the order's refundable amount (a conditional write, so
//! concurrent refunds can never add up to more than was paid), then sent to Alipay with the
//! merchant's `out_request_no` (required: a retry reuses it unchanged), then settled from a
//! signed answer or a refund query (`gateway::refunds`). Whatever is left uncertain stays
//! PENDING, is answered `202` with the refund, and is finished by the sweeper.

use alipay::ids::{OutRequestNo, OutTradeNo};
use domain::channel::ChannelId;
use domain::states::{Cause, Currency, Money, NewRefund, RefundStatus};
use gateway::clock::now_ms;
use gateway::deadline::Deadline;
use gateway::http::views::refund_view;
use gateway::http::{
    ApiError, JsonBody, json_response, method_not_allowed, path_segments, query_flag,
};
use gateway::refunds::{CIRCUIT_OPEN, Driven, drive_refund, start_for};
use gateway::startup::Gateway;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use store::{Reserved, StoreError};
use tracing::Instrument as _;

/// Refund reasons are shown to the buyer; Alipay limits them to 256 characters.
const MAX_REASON_CHARS: usize = 256;

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    let deadline = Deadline::of_request(&request, gateway.config.lifecycle.default_budget_ms);
    let result = match (request.method(), path_segments(&request).as_slice()) {
        (&Method::POST, ["payments", out_trade_no, "refunds"]) => {
            create(gateway, &request, out_trade_no, &deadline).await
        }
        (&Method::GET, ["payments", out_trade_no, "refunds", out_request_no]) => {
            get(gateway, &request, out_trade_no, out_request_no, &deadline).await
        }
        (method, ["payments", _, "refunds"] | ["payments", _, "refunds", _]) => {
            Err(method_not_allowed(method))
        }
        _ => Err(ApiError::not_found(format!(
            "no route for {}",
            request.uri().path()
        ))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn parse_out_trade_no(text: &str) -> Result<OutTradeNo, ApiError> {
    OutTradeNo::parse(text).map_err(|e| ApiError::invalid("out_trade_no", e))
}

fn parse_refund(request: &Request, payment_currency: Currency) -> Result<NewRefund, ApiError> {
    let body = JsonBody::parse(request, &["amount", "currency", "reason", "out_request_no"])?;
    // The merchant's idempotency key, as Alipay intends it: a retry after any failure reuses
    // it, so one refund can never be paid out twice.
    let out_request_no = OutRequestNo::parse(body.required("out_request_no")?)
        .map_err(|e| ApiError::invalid("out_request_no", e))?;
    // In the payment's currency; a `currency` given must be it (checked once the payment's is
    // known, and again by the store's condition).
    let stated = body
        .string("currency")?
        .map(|code| Currency::parse(code).map_err(|e| ApiError::invalid("currency", e)))
        .transpose()?;
    let currency = stated.unwrap_or(payment_currency);
    if currency != payment_currency {
        return Err(ApiError::from(StoreError::CurrencyMismatch {
            payment: payment_currency,
            requested: currency,
        }));
    }
    let amount = Money::parse_payment(body.required("amount")?, currency)
        .map_err(|e| ApiError::invalid("amount", e))?;
    let reason = body.string("reason")?.map(str::to_owned);
    if let Some(reason) = &reason
        && (reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 256 characters without control characters",
        ));
    }
    Ok(NewRefund {
        out_request_no,
        amount,
        reason,
        // The order's, looked up once the request is known to be valid.
        alipay_channel: ChannelId::Primary,
    })
}

async fn create(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no = parse_out_trade_no(out_trade_no)?;
    let (channel, currency) = gateway.refund_target(&out_trade_no).await?;
    let mut new = parse_refund(request, currency)?;
    new.alipay_channel = channel;
    let cause = Cause::Api {
        route: "POST /payments/{out_trade_no}/refunds".into(),
    };
    let now = now_ms();
    let due_at_ms = now + gateway.config.lifecycle.refund_query_delay_ms;
    let (refund, fresh) = match gateway
        .store
        .reserve_refund(&out_trade_no, &new, due_at_ms, &cause, now)
        .await?
    {
        Reserved::New(refund) => (refund, true),
        Reserved::Existing(refund) => (refund, false),
    };
    // Never another channel than the order's, even when it is failing.
    let provider = gateway.provider(refund.alipay_channel)?;
    // The span goes with the future, not the thread: other requests this process serves at the
    // same time never log under this refund's numbers.
    let span = tracing::info_span!("refund", out_trade_no = %out_trade_no, out_request_no = %refund.out_request_no);
    // From here on every answer carries the refund, errors included.
    let driven = match refund.status {
        RefundStatus::Pending => {
            let start = start_for(gateway, &refund, now);
            drive_refund(gateway, &provider, refund, start, deadline)
                .instrument(span)
                .await
        }
        // A retry of a refund that already ended: its outcome, unchanged.
        RefundStatus::Succeeded | RefundStatus::Failed => Driven {
            refund,
            pending: None,
        },
    };
    Ok(answer(&driven, fresh))
}

/// `{"refund": …}`, with `pending_reason` while it is PENDING and a reason is known.
fn refund_body(driven: &Driven) -> Value {
    let mut body = json!({ "refund": refund_view(&driven.refund) });
    if let (RefundStatus::Pending, Some(why), Some(object)) =
        (driven.refund.status, &driven.pending, body.as_object_mut())
    {
        object.insert(
            "pending_reason".into(),
            json!({ "code": why.code, "message": why.message }),
        );
    }
    body
}

/// The HTTP answer for a refund's state: `201`/`200` succeeded, `202` pending (with why, and
/// `Retry-After`), `503` pending because the order's channel is failing (reserved, not sent),
/// `422` failed. Every one carries the refund.
fn answer(driven: &Driven, fresh: bool) -> Response<Body> {
    let refund = &driven.refund;
    let mut body = refund_body(driven);
    let (status, retry_after) = match refund.status {
        RefundStatus::Pending if driven.pending.as_ref().map(|p| p.code) == Some(CIRCUIT_OPEN) => {
            let (message, retry_after) = driven
                .pending
                .as_ref()
                .map_or((String::new(), 5), |p| (p.message.clone(), p.retry_after));
            if let Some(object) = body.as_object_mut() {
                object.insert(
                    "error".into(),
                    json!({ "code": CIRCUIT_OPEN, "message": format!("{message}; the refund is kept and sent once the channel recovers") }),
                );
            }
            (StatusCode::SERVICE_UNAVAILABLE, Some(retry_after))
        }
        RefundStatus::Succeeded if fresh => (StatusCode::CREATED, None),
        RefundStatus::Succeeded => (StatusCode::OK, None),
        RefundStatus::Pending => (
            StatusCode::ACCEPTED,
            Some(driven.pending.as_ref().map_or(10, |p| p.retry_after)),
        ),
        RefundStatus::Failed => {
            let code = refund.failure_code.as_deref().unwrap_or("refund_failed");
            let message = refund
                .failure_message
                .as_deref()
                .unwrap_or("Alipay refused the refund");
            if let Some(object) = body.as_object_mut() {
                object.insert(
                    "error".into(),
                    json!({ "code": code, "message": format!("refund failed: {message}") }),
                );
            }
            (StatusCode::UNPROCESSABLE_ENTITY, None)
        }
    };
    let mut response = json_response(status, &body);
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response
            .headers_mut()
            .insert(lambda_http::http::header::RETRY_AFTER, value);
    }
    response
}

async fn get(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
    out_request_no: &str,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no = parse_out_trade_no(out_trade_no)?;
    let out_request_no =
        OutRequestNo::parse(out_request_no).map_err(|e| ApiError::invalid("out_request_no", e))?;
    let refund = gateway
        .store
        .get_refund(&out_trade_no, &out_request_no)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no refund {out_request_no} for payment {out_trade_no}"
            ))
        })?;
    if query_flag(request, "sync") && refund.status == RefundStatus::Pending {
        // The same path the sweeper takes: ask, then settle, re-send or wait; and no sooner
        // after the last send than a POST retry (a send in flight decides first).
        let start = start_for(gateway, &refund, now_ms());
        let provider = gateway.provider(refund.alipay_channel)?;
        let span = tracing::info_span!("refund", out_trade_no = %out_trade_no, out_request_no = %out_request_no);
        let driven = drive_refund(gateway, &provider, refund, start, deadline)
            .instrument(span)
            .await;
        return Ok(json_response(StatusCode::OK, &refund_body(&driven)));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "refund": refund_view(&refund) }),
    ))
}
