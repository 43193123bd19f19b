//! The notify function: Alipay's asynchronous notifications (a public Function URL).
//!
//! A notification is believed only after its RSA2 signature verifies with Alipay's public key
//! and its app id, seller and amount match our order. `success` is answered only after the
//! effect is durably written, so Alipay's retries (8 over about 25 hours) lose nothing;
//! duplicates and out-of-order deliveries change nothing and are answered `success`.
//!
//! `POST /notify/antom`: Antom's notifications (JSON, signed over ANTOM_NOTIFY_URL's path),
//! verified fail closed and answered with Antom's exact acknowledgement once applied
//! (`gateway::antom::receive_notification`).

use alipay::notify::Notification;
use alipay::notify::NotifyError;
use antom::message::ACKNOWLEDGEMENT;
use antom::signature::SignedHeaders;
use gateway::http::{body_bytes, text_response};
use gateway::notifications::{Refusal, apply, apply_agreement, verify};
use gateway::startup::Gateway;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use tracing::Instrument as _;

/// The seven bytes Alipay waits for.
pub const SUCCESS: &str = "success";
const FAIL: &str = "fail";

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    if request.method() != Method::POST {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, FAIL);
    }
    if request
        .uri()
        .path()
        .trim_end_matches('/')
        .ends_with("/notify/antom")
    {
        return antom_notification(gateway, &request).await;
    }
    let (notification, signed_by) = match verify(gateway, body_bytes(&request)).await {
        Ok(verified) => verified,
        Err(error) => {
            // Never log the body (it carries buyer data), nor the error's text: before the
            // signature is checked, every string in it is the sender's choice.
            tracing::warn!(
                security = true,
                reason = error.kind(),
                "notification refused"
            );
            let status = if error == NotifyError::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return text_response(status, FAIL);
        }
    };
    let notification = match notification {
        Notification::Trade(notification) => notification,
        Notification::Agreement(notice) => {
            let span = tracing::info_span!(
                "agreement_notice",
                subscription = %notice.external_agreement_no,
                notify_id = %notice.notify_id,
                notify_type = %notice.notify_type
            );
            return async { answer(apply_agreement(gateway, &notice, signed_by).await) }
                .instrument(span)
                .await;
        }
    };
    // The span goes with the future, not the thread: with several requests at once in one
    // process, no other request's lines carry this notification's numbers.
    let span = tracing::info_span!(
        "notification",
        out_trade_no = %notification.out_trade_no,
        notify_id = %notification.notify_id,
        trade_status = notification.trade_status.as_str()
    );
    async { answer(apply(gateway, &notification, signed_by).await) }
        .instrument(span)
        .await
}

/// Antom's notification: applied, then acknowledged with exactly the body Antom waits for;
/// anything else is answered so that Antom retries (on its schedule, up to 8 times in 24 h).
async fn antom_notification(gateway: &Gateway, request: &Request) -> Response<Body> {
    let pairs: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let headers = SignedHeaders::from_pairs(pairs, "request-time");
    let span = tracing::info_span!("antom_notification");
    let applied = gateway::antom::receive_notification(
        gateway,
        request.uri().path(),
        headers,
        body_bytes(request),
    )
    .instrument(span)
    .await;
    let refused = |status: StatusCode, code: &str| {
        let body = serde_json::json!({"result": {"resultCode": code, "resultStatus": "F", "resultMessage": code}});
        json_text_response(status, body.to_string())
    };
    match applied {
        Ok(()) => json_text_response(StatusCode::OK, ACKNOWLEDGEMENT.to_owned()),
        Err(Refusal::Unverified(error)) => {
            // Never the body, nor the error's text beyond its kind: unverified, every string in
            // it is the sender's.
            tracing::warn!(security = true, reason = %error, "Antom notification refused");
            refused(StatusCode::BAD_REQUEST, "INVALID_SIGNATURE")
        }
        Err(Refusal::Rejected(reason)) => {
            tracing::warn!(security = true, reason = %reason, "Antom notification not applied");
            refused(StatusCode::BAD_REQUEST, "NOT_APPLIED")
        }
        Err(Refusal::Unavailable(error)) => {
            tracing::error!(error = %error, "Antom notification not recorded; Antom will retry");
            refused(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
    }
}

fn json_text_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::Text(body))
        .unwrap_or_else(|_| text_response(StatusCode::INTERNAL_SERVER_ERROR, FAIL))
}

/// Alipay's answer: `success` once the effect is stored; otherwise `fail`, so that it retries.
fn answer(applied: Result<(), Refusal>) -> Response<Body> {
    match applied {
        Ok(()) => text_response(StatusCode::OK, SUCCESS),
        Err(Refusal::Rejected(reason)) => {
            tracing::warn!(security = true, reason = %reason, "notification not applied");
            text_response(StatusCode::BAD_REQUEST, FAIL)
        }
        Err(Refusal::Unavailable(error)) => {
            tracing::error!(error = %error, "notification not recorded; Alipay will retry");
            text_response(StatusCode::SERVICE_UNAVAILABLE, FAIL)
        }
        Err(Refusal::Unverified(error)) => {
            tracing::warn!(security = true, reason = %error, "notification refused");
            text_response(StatusCode::BAD_REQUEST, FAIL)
        }
    }
}
