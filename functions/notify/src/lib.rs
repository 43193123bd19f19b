//! The notify function: Alipay's asynchronous notifications (a public Function URL).
//!
//! A notification is believed only after its RSA2 signature verifies with Alipay's public key
//! and its app id, seller and amount match our order. `success` is answered only after the
//! effect is durably written, so Alipay's retries (8 over about 25 hours) lose nothing;
//! duplicates and out-of-order deliveries change nothing and are answered `success`.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::alipay::notify::{NotifyError, TradeNotification, verify_notification};
use shared::domain::{Cause, RefundOutcome, RefundStatus};
use shared::gateway::{ApplyError, Gateway, TradeReport, apply_trade_report, now_ms};
use shared::http::{body_bytes, text_response};
use shared::ids::{OutRequestNo, OutTradeNo};
use shared::store::{AuditEvent, StoreError};

/// The seven bytes Alipay waits for.
pub const SUCCESS: &str = "success";
const FAIL: &str = "fail";

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    if request.method() != Method::POST {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, FAIL);
    }
    let notification =
        match verify_notification(body_bytes(&request), &gateway.config.alipay_public_key) {
            Ok(notification) => notification,
            Err(error) => {
                // Never log the body: it carries buyer data.
                tracing::warn!(security = true, reason = %error, "notification refused");
                let status = if error == NotifyError::TooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return text_response(status, FAIL);
            }
        };
    let span = tracing::info_span!(
        "notification",
        out_trade_no = %notification.out_trade_no,
        notify_id = %notification.notify_id,
        trade_status = notification.trade_status.as_str()
    );
    let _entered = span.enter();
    match apply(gateway, &notification).await {
        Ok(()) => text_response(StatusCode::OK, SUCCESS),
        Err(Refusal::Rejected(reason)) => {
            tracing::warn!(security = true, reason = %reason, "notification not applied");
            text_response(StatusCode::BAD_REQUEST, FAIL)
        }
        Err(Refusal::Unavailable(error)) => {
            tracing::error!(error = %error, "notification not recorded; Alipay will retry");
            text_response(StatusCode::SERVICE_UNAVAILABLE, FAIL)
        }
    }
}

enum Refusal {
    /// Verified but not about our order as we know it (recorded where an order exists).
    Rejected(String),
    /// The store could not record it: answer so that Alipay retries.
    Unavailable(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        Refusal::Unavailable(error)
    }
}

async fn apply(gateway: &Gateway, notification: &TradeNotification) -> Result<(), Refusal> {
    let now = now_ms();
    let cause = Cause::Notify {
        notify_id: notification.notify_id.clone(),
    };
    let out_trade_no = OutTradeNo::parse(notification.out_trade_no.as_str())
        .map_err(|_| Refusal::Rejected("out_trade_no is not one of ours".into()))?;
    let order = gateway
        .store
        .get_order(&out_trade_no)
        .await?
        .ok_or_else(|| Refusal::Rejected("no such order".into()))?;

    let config = &gateway.config;
    let mismatch = if notification.app_id != config.app_id.as_str() {
        Some(format!("app_id {} is not ours", notification.app_id))
    } else {
        match (&config.seller_id, &notification.seller_id) {
            (Some(ours), Some(theirs)) if ours.as_str() != theirs => {
                Some(format!("seller_id {theirs} is not ours"))
            }
            (Some(_), None) => Some("seller_id is missing".to_owned()),
            _ => None,
        }
    };
    if let Some(detail) = mismatch {
        let event = AuditEvent::new("notify.rejected", &cause, now).detail(detail.clone());
        gateway.store.record_event(&out_trade_no, &event).await?;
        return Err(Refusal::Rejected(detail));
    }

    let report = TradeReport {
        trade_no: notification.trade_no.clone(),
        trade_status: notification.trade_status,
        total_amount: notification.total_amount,
        paid_at: notification.gmt_payment.clone(),
        buyer_id_masked: notification.buyer_id_masked.clone(),
    };
    match apply_trade_report(&gateway.store, &order, &report, &cause, now).await {
        Ok(applied) => tracing::info!(
            changed = matches!(applied, shared::gateway::Applied::Changed(_)),
            "notification applied"
        ),
        Err(ApplyError::Mismatch(detail)) => return Err(Refusal::Rejected(detail)),
        Err(ApplyError::Store(error)) => return Err(error.into()),
    }

    // A refund notification names our out_request_no: it settles a refund still pending.
    // Refunds never depend on it (the refund answer and query are authoritative).
    if let Some(out_request_no) = notification
        .out_biz_no
        .as_deref()
        .and_then(|no| OutRequestNo::parse(no).ok())
        && notification.refund_fee.is_some()
        && let Some(refund) = gateway
            .store
            .get_refund(&out_trade_no, &out_request_no)
            .await?
        && refund.status == RefundStatus::Pending
    {
        match gateway
            .store
            .settle_refund(&refund, &RefundOutcome::Succeeded, &cause, now)
            .await
        {
            Ok(_) => {
                tracing::info!(out_request_no = %out_request_no, "refund settled by notification")
            }
            Err(StoreError::IllegalTransition { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
