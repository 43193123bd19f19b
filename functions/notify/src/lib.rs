//! The notify function: Alipay's asynchronous notifications (a public Function URL).
//!
//! A notification is believed only after its RSA2 signature verifies with Alipay's public key
//! and its app id, seller and amount match our order. `success` is answered only after the
//! effect is durably written, so Alipay's retries (8 over about 25 hours) lose nothing;
//! duplicates and out-of-order deliveries change nothing and are answered `success`.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::alipay::notify::{NotifyError, TradeNotification, verify_notification};
use shared::channels::ChannelId;
use shared::domain::{Cause, RefundOutcome, RefundStatus};
use shared::gateway::{ApplyError, Gateway, TradeReport, apply_trade_report, now_ms};
use shared::http::{body_bytes, text_response};
use shared::ids::{OutRequestNo, OutTradeNo};
use shared::refunding::report_correction;
use shared::store::{AuditEvent, Settlement, StoreError};
use tracing::Instrument as _;

/// The seven bytes Alipay waits for.
pub const SUCCESS: &str = "success";
const FAIL: &str = "fail";

pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    if request.method() != Method::POST {
        return text_response(StatusCode::METHOD_NOT_ALLOWED, FAIL);
    }
    let (notification, signed_by) = match verify_any(gateway, body_bytes(&request)).await {
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
    // The span goes with the future, not the thread: with several requests at once in one
    // process, no other request's lines carry this notification's numbers.
    let span = tracing::info_span!(
        "notification",
        out_trade_no = %notification.out_trade_no,
        notify_id = %notification.notify_id,
        trade_status = notification.trade_status.as_str()
    );
    async {
        match apply(gateway, &notification, signed_by).await {
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
    .instrument(span)
    .await
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

/// Verifies a notification with every Alipay key or certificate the channels hold: the
/// notification and the channels whose keys verify it (or the primary's error when none did).
/// In certificate mode, a signature no held certificate verifies is tried again with the
/// certificates other functions learned when Alipay rotated its certificate (one read).
async fn verify_any(
    gateway: &Gateway,
    body: &[u8],
) -> Result<(TradeNotification, Vec<ChannelId>), NotifyError> {
    let first_error = match verify_held(gateway, body) {
        Ok(verified) => return Ok(verified),
        Err(error) => error,
    };
    let any_certificates = gateway.trusts.iter().any(|(_, t)| t.is_certificate_mode());
    // At most one read per 5 s per process: a stream of forged notifications costs no reads.
    let lookup_due = gateway
        .trusts
        .first()
        .is_some_and(|(_, trust)| trust.lookup_due(now_ms(), 5_000));
    if !matches!(first_error, NotifyError::BadSignature(_)) || !any_certificates || !lookup_due {
        return Err(first_error);
    }
    match gateway.store.alipay_certs().await {
        Ok(stored) => {
            let now_unix = u64::try_from(now_ms() / 1000).unwrap_or(0);
            for cert in &stored {
                for (_, trust) in &gateway.trusts {
                    if !trust.known_sns().contains(&cert.sn) {
                        // Checked again: chained to this channel's roots, or not learned.
                        let _ = trust.learn(&cert.pem, &cert.sn, now_unix);
                    }
                }
            }
        }
        Err(error) => tracing::warn!(error = %error, "reading learned Alipay certificates"),
    }
    if let Ok(verified) = verify_held(gateway, body) {
        return Ok(verified);
    }
    // Still unknown: ask the sweeper to meet Alipay's current certificate (one call), so that
    // Alipay's next delivery verifies. Forged notifications end here too, at most once per 5 s
    // per process; a probe is one harmless query.
    if let Err(error) = gateway.store.want_cert_probe(now_ms()).await {
        tracing::warn!(error = %error, "asking for a certificate probe");
    }
    Err(first_error)
}

fn verify_held(
    gateway: &Gateway,
    body: &[u8],
) -> Result<(TradeNotification, Vec<ChannelId>), NotifyError> {
    let mut first_error = None;
    let mut verified = None;
    let mut signers = Vec::new();
    for (channel, trust) in &gateway.trusts {
        for key in trust.all_keys() {
            match verify_notification(body, &key) {
                Ok(notification) => {
                    verified.get_or_insert(notification);
                    signers.push(*channel);
                    break;
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        // Only a signature that fails is worth another key.
        if let Some(error) = &first_error
            && verified.is_none()
            && !matches!(error, NotifyError::BadSignature(_))
        {
            break;
        }
    }
    match verified {
        Some(notification) => Ok((notification, signers)),
        None => {
            Err(first_error.unwrap_or(NotifyError::BadSignature(shared::VerifyError::Mismatch)))
        }
    }
}

async fn apply(
    gateway: &Gateway,
    notification: &TradeNotification,
    signed_by: Vec<ChannelId>,
) -> Result<(), Refusal> {
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
    // Checked against the order's own channel: a notification signed for another channel,
    // or naming another application or seller, is not about this order.
    let channel = config.channel(order.alipay_channel);
    let mismatch = if let Some(channel) = channel.filter(|c| signed_by.contains(&c.id)) {
        if notification.app_id != channel.app_id.as_str() {
            Some(format!(
                "app_id {} is not the order's channel's ({})",
                notification.app_id, channel.id
            ))
        } else {
            match &notification.seller_id {
                Some(theirs) if theirs != channel.seller_id.as_str() => {
                    Some(format!("seller_id {theirs} is not ours"))
                }
                Some(_) => None,
                None => Some("seller_id is missing".to_owned()),
            }
        }
    } else {
        let signers: Vec<&str> = signed_by.iter().map(|c| c.as_str()).collect();
        Some(format!(
            "signed with channel {}'s key; the order is channel {}'s",
            signers.join("/"),
            order.alipay_channel
        ))
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
        buyer_key: notification.buyer_key.clone(),
    };
    match apply_trade_report(
        &gateway.store,
        &config.lifecycle,
        &config.risk,
        &order,
        &report,
        &cause,
        now,
    )
    .await
    {
        Ok(applied) => tracing::info!(
            changed = matches!(applied, shared::gateway::Applied::Changed(_)),
            "notification applied"
        ),
        Err(ApplyError::Mismatch(detail)) => return Err(Refusal::Rejected(detail)),
        Err(ApplyError::Store(error)) => return Err(error.into()),
    }

    if notification.refund_fee.is_some() || notification.out_biz_no.is_some() {
        apply_refund_notice(gateway, notification, &out_trade_no, &cause, now).await?;
    }
    Ok(())
}

/// A refund notification names our `out_request_no` (`out_biz_no`) and the trade's refunded
/// total (`refund_fee`). It settles a refund still PENDING; refunds never depend on it (the
/// refund answer and query are authoritative). What contradicts our records (an unknown or
/// FAILED refund, a total beyond what we ever sent) is audited and alarmed, and acknowledged:
/// the notification is genuine, and a retry would say the same.
async fn apply_refund_notice(
    gateway: &Gateway,
    notification: &TradeNotification,
    out_trade_no: &OutTradeNo,
    cause: &Cause,
    now: i64,
) -> Result<(), Refusal> {
    let store = &gateway.store;
    // The order with all its refunds, in one Query: the named refund and the total are both in it.
    let Some((order, refunds)) = store.get_order_with_refunds(out_trade_no).await? else {
        return Ok(());
    };
    let mut contradictions = Vec::new();
    // A FAILED refund this notification proved executed (corrected): it counts as sent.
    let mut proven: Option<OutRequestNo> = None;
    match notification
        .out_biz_no
        .as_deref()
        .map(|no| (no, OutRequestNo::parse(no)))
    {
        Some((_, Ok(out_request_no))) => {
            match refunds.iter().find(|r| r.out_request_no == out_request_no) {
                // Pending: settled by the notification. FAILED: Alipay executed a refund we had
                // released (proof, signed): corrected, or a discrepancy when its money is gone.
                Some(refund) if refund.status != RefundStatus::Succeeded => {
                    match store
                        .settle_refund(
                            refund,
                            &RefundOutcome::Succeeded,
                            notification.gmt_refund.as_deref(),
                            cause,
                            now,
                        )
                        .await
                    {
                        Ok(Settlement::Settled(_)) => {
                            tracing::info!(out_request_no = %out_request_no, "refund settled by notification")
                        }
                        Ok(settlement) => {
                            report_correction(settlement);
                            proven = Some(out_request_no.clone());
                        }
                        Err(StoreError::IllegalTransition { .. }) => {
                            contradictions.push(format!(
                                "refund {out_request_no} was settled otherwise meanwhile"
                            ));
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                Some(_) => {}
                None => contradictions.push(format!(
                    "Alipay reports refund {out_request_no}, which we never made"
                )),
            }
        }
        Some((text, Err(_))) => contradictions.push(format!(
            "Alipay reports refund {}, which is not one of our numbers",
            text.chars().take(64).collect::<String>()
        )),
        None => {}
    }
    // refund_fee is the trade's refunded total at Alipay: never more than we sent.
    // (A refund settled just above counts either way: PENDING and SUCCEEDED are both sent.)
    if let Some(refund_fee) = notification.refund_fee {
        let sent: u64 = refunds
            .iter()
            .filter(|r| {
                r.status != RefundStatus::Failed || proven.as_ref() == Some(&r.out_request_no)
            })
            .map(|r| r.amount.fen())
            .sum();
        if refund_fee.fen() > sent {
            contradictions.push(format!(
                "Alipay reports {refund_fee} refunded; our refunds add up to {} (confirmed {})",
                shared::money::Amount::from_fen_allow_zero(sent)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                order.refunded
            ));
        }
    }
    for detail in contradictions {
        tracing::warn!(security = true, detail = %detail, "refund notification contradicts our records");
        let event = AuditEvent::new("refund.notify_contradiction", cause, now).detail(detail);
        store.record_event(out_trade_no, &event).await?;
    }
    Ok(())
}
