//! The refund function: `POST /payments/{out_trade_no}/refunds` refunds in full or in part;
//! `GET /payments/{out_trade_no}/refunds/{out_request_no}` returns a refund (`?sync=true` asks
//! Alipay about a pending one).
//!
//! A refund is first reserved against the order's refundable amount (a conditional write, so
//! concurrent refunds can never add up to more than was paid), then sent to Alipay with an
//! `out_request_no` that a retry reuses unchanged, then settled from Alipay's verified answer.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::alipay::request::{AlipayRequest, TradeRef};
use shared::alipay::response::{Disposition, RefundQueryResult, RefundResult, VerifiedResponse};
use shared::alipay_client::CallError;
use shared::domain::{Cause, NewRefund, Refund, RefundOutcome, RefundStatus};
use shared::gateway::{Alipay, Gateway, now_ms, refund_view};
use shared::http::{
    ApiError, JsonBody, json_response, method_not_allowed, path_segments, query_flag,
};
use shared::ids::{OutRequestNo, OutTradeNo};
use shared::money::Amount;
use shared::store::{Reserved, StoreError, Transition};

/// Refund reasons are shown to the buyer; Alipay limits them to 256 characters.
const MAX_REASON_CHARS: usize = 256;

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    let result = match (request.method(), path_segments(&request).as_slice()) {
        (&Method::POST, ["payments", out_trade_no, "refunds"]) => {
            create(gateway, &request, out_trade_no).await
        }
        (&Method::GET, ["payments", out_trade_no, "refunds", out_request_no]) => {
            get(gateway, &request, out_trade_no, out_request_no).await
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

fn parse_refund(request: &Request) -> Result<NewRefund, ApiError> {
    let body = JsonBody::parse(request, &["amount", "reason", "out_request_no"])?;
    let amount =
        Amount::parse(body.required("amount")?).map_err(|e| ApiError::invalid("amount", e))?;
    let reason = body.string("reason")?.map(str::to_owned);
    if let Some(reason) = &reason
        && (reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 256 characters without control characters",
        ));
    }
    let out_request_no = match body.string("out_request_no")? {
        Some(text) => {
            OutRequestNo::parse(text).map_err(|e| ApiError::invalid("out_request_no", e))?
        }
        None => OutRequestNo::parse(format!("r_{}", uuid::Uuid::new_v4().simple()))
            .map_err(|e| ApiError::invalid("out_request_no", e))?,
    };
    Ok(NewRefund {
        out_request_no,
        amount,
        reason,
    })
}

async fn create(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no = parse_out_trade_no(out_trade_no)?;
    let new = parse_refund(request)?;
    let alipay = gateway.alipay()?;
    let cause = Cause::Api {
        route: "POST /payments/{out_trade_no}/refunds".into(),
    };
    let (refund, fresh) = match gateway
        .store
        .reserve_refund(&out_trade_no, &new, &cause, now_ms())
        .await?
    {
        Reserved::New(refund) => (refund, true),
        Reserved::Existing(refund) => (refund, false),
    };
    let span = tracing::info_span!("refund", out_trade_no = %out_trade_no, out_request_no = %refund.out_request_no);
    let _entered = span.enter();
    let refund = match refund.status {
        RefundStatus::Pending => execute(gateway, alipay, refund).await?,
        // A retry of a refund that already ended: its outcome, unchanged.
        RefundStatus::Succeeded | RefundStatus::Failed => refund,
    };
    answer(&refund, fresh)
}

/// The HTTP answer for a refund's state.
fn answer(refund: &Refund, fresh: bool) -> Result<Response<Body>, ApiError> {
    let body = json!({ "refund": refund_view(refund) });
    match refund.status {
        RefundStatus::Succeeded => Ok(json_response(
            if fresh {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &body,
        )),
        RefundStatus::Pending => {
            let mut response = json_response(StatusCode::ACCEPTED, &body);
            if let Ok(value) = "10".parse() {
                response
                    .headers_mut()
                    .insert(lambda_http::http::header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        RefundStatus::Failed => {
            let code = refund.failure_code.as_deref().unwrap_or("refund_failed");
            let message = refund
                .failure_message
                .clone()
                .unwrap_or_else(|| "Alipay refused the refund".into());
            let mut error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("refund failed: {message}"),
            );
            error.field = None;
            let mut response = error.into_response();
            // The refund itself travels with the error, so the merchant sees what was kept.
            if let Body::Text(text) = response.body()
                && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text)
                && let Some(object) = value.as_object_mut()
            {
                object.insert("refund".into(), refund_view(refund));
                *response.body_mut() = Body::Text(value.to_string());
            }
            Ok(response)
        }
    }
}

/// Sends a pending refund to Alipay (identical parameters on every retry) and settles it from
/// the answer. Anything uncertain leaves it pending: money never moves twice, because Alipay
/// executes one `out_request_no` at most once.
async fn execute(gateway: &Gateway, alipay: &Alipay, refund: Refund) -> Result<Refund, ApiError> {
    let request = AlipayRequest::Refund {
        trade: TradeRef::OutTradeNo(refund.out_trade_no.clone()),
        refund_amount: refund.amount,
        out_request_no: refund.out_request_no.clone(),
        refund_reason: refund.reason.clone(),
    };
    let answer = match alipay
        .client
        .call(&request, alipay.signer.as_ref(), now_ms())
        .await
    {
        Ok(answer) => answer,
        Err(CallError::Sign(error)) => return Err(error.into()),
        Err(error) => {
            // Timed out, unreachable or untrusted: Alipay may have refunded. The refund stays
            // pending with its money reserved; a retry (same out_request_no) or a sync settles
            // it. Alipay asks for ≥10 s before querying a refund, so no query right away.
            tracing::warn!(error = %error, "refund outcome unknown; left pending");
            return Ok(refund);
        }
    };
    let cause = Cause::AlipayAnswer {
        method: request.method().into(),
    };
    match answer.disposition() {
        Disposition::Success => {
            let result: RefundResult = answer
                .parse(request.method())
                .map_err(|e| ApiError::from(CallError::Untrusted(e)))?;
            if result.fund_change == "Y" {
                settle(gateway, &refund, RefundOutcome::Succeeded, &cause).await
            } else {
                // Accepted without moving money in this call (e.g. a repeat): the query tells.
                query_and_settle(gateway, alipay, refund).await
            }
        }
        Disposition::RetrySame => {
            tracing::warn!(code = %answer.status.code, sub_code = answer.status.sub_code.as_deref().unwrap_or(""), "refund to be retried");
            Ok(refund)
        }
        Disposition::QueryFirst => query_and_settle(gateway, alipay, refund).await,
        Disposition::BusinessFailure | Disposition::Rejected => {
            tracing::warn!(code = %answer.status.code, sub_code = answer.status.sub_code.as_deref().unwrap_or(""), "refund refused by Alipay");
            settle(gateway, &refund, failure(&answer), &cause).await
        }
    }
}

fn failure(answer: &VerifiedResponse) -> RefundOutcome {
    RefundOutcome::Failed {
        code: answer
            .status
            .sub_code
            .clone()
            .unwrap_or_else(|| answer.status.code.clone()),
        message: answer
            .status
            .sub_msg
            .clone()
            .unwrap_or_else(|| answer.status.msg.clone()),
    }
}

async fn settle(
    gateway: &Gateway,
    refund: &Refund,
    outcome: RefundOutcome,
    cause: &Cause,
) -> Result<Refund, ApiError> {
    match gateway
        .store
        .settle_refund(refund, &outcome, cause, now_ms())
        .await
    {
        Ok(Transition::Applied(refund) | Transition::Duplicate(refund)) => Ok(refund),
        Err(StoreError::IllegalTransition { from, to }) => {
            // Alipay's answer contradicts what we recorded: keep both, tell an operator.
            tracing::error!(from = %from, to = %to, "refund outcome contradicts the record");
            gateway
                .store
                .get_refund(&refund.out_trade_no, &refund.out_request_no)
                .await?
                .ok_or_else(|| ApiError::not_found("refund vanished"))
        }
        Err(error) => Err(error.into()),
    }
}

/// `alipay.trade.fastpay.refund.query`: `REFUND_SUCCESS` settles; anything else leaves the
/// refund pending (a retry of the POST, or `GET ?sync=true` later, finishes it).
async fn query_and_settle(
    gateway: &Gateway,
    alipay: &Alipay,
    refund: Refund,
) -> Result<Refund, ApiError> {
    let request = AlipayRequest::RefundQuery {
        trade: TradeRef::OutTradeNo(refund.out_trade_no.clone()),
        out_request_no: refund.out_request_no.clone(),
    };
    let answer = match alipay
        .client
        .call(&request, alipay.signer.as_ref(), now_ms())
        .await
    {
        Ok(answer) if answer.disposition() == Disposition::Success => answer,
        Ok(_)
        | Err(CallError::Timeout(_) | CallError::Unavailable(_) | CallError::Untrusted(_)) => {
            return Ok(refund);
        }
        Err(CallError::Sign(error)) => return Err(error.into()),
    };
    let result: RefundQueryResult = answer
        .parse(request.method())
        .map_err(|e| ApiError::from(CallError::Untrusted(e)))?;
    let matches = result
        .out_request_no
        .as_deref()
        .is_none_or(|no| no == refund.out_request_no.as_str())
        && result
            .refund_amount
            .is_none_or(|amount| amount == refund.amount);
    if result.refund_status.as_deref() == Some("REFUND_SUCCESS") && matches {
        let cause = Cause::AlipayAnswer {
            method: request.method().into(),
        };
        return settle(gateway, &refund, RefundOutcome::Succeeded, &cause).await;
    }
    Ok(refund)
}

async fn get(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
    out_request_no: &str,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no = parse_out_trade_no(out_trade_no)?;
    let out_request_no =
        OutRequestNo::parse(out_request_no).map_err(|e| ApiError::invalid("out_request_no", e))?;
    let mut refund = gateway
        .store
        .get_refund(&out_trade_no, &out_request_no)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no refund {out_request_no} for payment {out_trade_no}"
            ))
        })?;
    if query_flag(request, "sync") && refund.status == RefundStatus::Pending {
        refund = query_and_settle(gateway, gateway.alipay()?, refund).await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "refund": refund_view(&refund) }),
    ))
}
