//! Antom payments end to end (docs/antom/protocol.md): the cashier payment a create starts, the
//! inquiry and cancel that end an unpaid one, refunds and their inquiry, and Antom's
//! notifications. Every answer goes through `domain::antom`'s decisions, the same `TradeNext` and
//! `RefundNext` as Alipay v1's, so the sweeper and the request handlers drive both alike.
//!
//! Our ids at Antom: `paymentRequestId` is the `out_trade_no`; `refundRequestId` must be unique
//! across the merchant's refunds, and an `out_request_no` is unique within its payment only, so
//! it is `<out_trade_no>-<out_request_no>` (neither holds a `-`), or a digest of both when that
//! is longer than Antom's 64 characters.

use alipay::china_time::ChinaDateTime;
use alipay::ids::{OutRequestNo, OutTradeNo};
use alipay::notify::TradeStatus;
use antom::WireAmount;
use antom::message::{
    CancelResponse, Env, InquiryPaymentResponse, InquiryRefundResponse, Order as AntomOrder,
    PayRequest, PayResponse, PaymentMethod, PaymentNotification, PaymentRef, RefundNotification,
    RefundRef, RefundRequest, RefundResponse, SettlementStrategy,
};
use domain::antom::{
    NOT_FOUND, PayNext, after_cancel, after_inquiry, after_pay, after_refund, after_refund_inquiry,
    china_time, settlement,
};
use domain::lifecycle::{RefundNext, SinceSend, TradeNext};
use domain::reports::TradeReport;
use domain::states::{Cashier, Order, Refund, RefundOutcome};
use sha2::{Digest as _, Sha256};

use antom::message::{Notification, parse_notification};
use antom::signature::{SignedHeaders, verify_notification};
use domain::channel::ChannelId;
use domain::states::{Cause, OrderStatus};
use store::{AuditEvent, Settlement, StoreError};

use crate::channel::antom::AntomChannel;
use crate::channel::client::CallError;
use crate::clock::now_ms;
use crate::deadline::Deadline;
use crate::notifications::Refusal;
use crate::payments::Queried;
use crate::payments::{Applied, ApplyError, apply_trade_report};
use crate::provider::Closing;
use crate::refunds::Pending;
use crate::startup::Gateway;

/// Antom's limit on request ids.
const MAX_ID: usize = 64;

/// The `refundRequestId` of a refund (see the module's notes).
pub fn refund_request_id(out_trade_no: &OutTradeNo, out_request_no: &OutRequestNo) -> String {
    let composed = format!("{out_trade_no}-{out_request_no}");
    if composed.len() <= MAX_ID {
        return composed;
    }
    let digest = Sha256::digest(composed.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("H{}", &hex[..MAX_ID - 1])
}

/// The refund a `refundRequestId` names, when it is a composed one.
pub fn refund_of_request_id(id: &str) -> Option<(OutTradeNo, OutRequestNo)> {
    let (trade, request) = id.split_once('-')?;
    Some((
        OutTradeNo::parse(trade).ok()?,
        OutRequestNo::parse(request).ok()?,
    ))
}

/// What the buyer does next, from `payments/pay`.
pub enum NextStep {
    /// The cashier's URL (web, wap), or the wallet's scheme (app), or a QR code.
    Cashier(serde_json::Value),
    /// Antom says it is paid already: ask and apply.
    Inquire,
    /// Refused for good: the order is closed with this reason.
    Refused { code: String, message: String },
    /// No answer to act on: the create is answered "try again" (the same request id is sent).
    Unknown(String),
}

/// `payments/pay` for a stored order (a repeat sends exactly what the first sent: Antom answers
/// the same id with the same payment).
pub async fn pay(
    antom: &AntomChannel,
    order: &Order,
    time_expire: &ChinaDateTime,
    deadline: &Deadline,
) -> Result<NextStep, String> {
    let config = &antom.config;
    let amount = WireAmount::from_money(order.amount).map_err(|e| e.to_string())?;
    let redirect = order
        .return_url
        .clone()
        .or_else(|| config.redirect_url.clone())
        .ok_or("ANTOM_REDIRECT_URL is not set and the payment has no return_url")?;
    let notify = config
        .notify_url
        .clone()
        .ok_or("ANTOM_NOTIFY_URL is not set")?;
    let request = PayRequest {
        product_code: "CASHIER_PAYMENT".into(),
        payment_request_id: order.out_trade_no.to_string(),
        order: AntomOrder {
            reference_order_id: order.out_trade_no.to_string(),
            order_description: order.subject.to_string(),
            order_amount: amount.clone(),
        },
        payment_amount: amount,
        payment_method: PaymentMethod {
            payment_method_type: config.payment_method.clone(),
        },
        payment_expiry_time: Some(iso_of(time_expire)),
        payment_redirect_url: redirect,
        payment_notify_url: notify,
        settlement_strategy: config.settlement_currency.map(|c| SettlementStrategy {
            settlement_currency: c.code().into(),
        }),
        env: Env {
            terminal_type: match order.channel {
                Cashier::Wap => "WAP",
                Cashier::App => "APP",
                _ => "WEB",
            }
            .into(),
            os_type: None,
        },
    };
    let answer = antom
        .call_before::<_, PayResponse>(antom::paths::PAY, &request, deadline)
        .await;
    let reason = match &answer {
        Ok(a) => format!(
            "Antom answered {} {}",
            a.result.result_status, a.result.result_code
        ),
        Err(e) => e.to_string(),
    };
    let answer = answer.ok();
    let url = answer.as_ref().and_then(|a| match order.channel {
        Cashier::App => a
            .scheme_url
            .clone()
            .or_else(|| a.applink_url.clone())
            .or_else(|| a.normal_url.clone()),
        _ => a.normal_url.clone(),
    });
    let code = answer.as_ref().and_then(|a| {
        a.order_code_form
            .as_ref()
            .and_then(|f| f.code_details.first())
            .map(|d| d.code_value.clone())
    });
    Ok(
        match after_pay(answer.as_ref().map(|a| &a.result), url.is_some()) {
            PayNext::Cashier => NextStep::Cashier(match (order.channel, code, url) {
                (Cashier::Qr, Some(code), _) => serde_json::json!({"type": "qr", "qr_code": code}),
                (_, _, Some(url)) => serde_json::json!({"type": "redirect", "url": url}),
                _ => return Ok(NextStep::Unknown(reason)),
            }),
            PayNext::Inquire => NextStep::Inquire,
            PayNext::Refused { code, message } => NextStep::Refused { code, message },
            PayNext::Unknown => NextStep::Unknown(reason),
        },
    )
}

/// `2026-12-05 10:30:00` China time as ISO 8601 with its offset.
fn iso_of(at: &ChinaDateTime) -> String {
    let text = at.as_str();
    format!("{}T{}+08:00", &text[..10], &text[11..])
}

/// `inquiryPayment`, decided; the payment as Antom reports it when it is paid.
pub async fn inquire(antom: &AntomChannel, order: &Order, deadline: &Deadline) -> Queried {
    let request = PaymentRef {
        payment_request_id: order.out_trade_no.to_string(),
    };
    let answer = antom
        .call_before::<_, InquiryPaymentResponse>(antom::paths::INQUIRY_PAYMENT, &request, deadline)
        .await;
    let reason = unanswered(answer.as_ref().map(|a| &a.result));
    let answer = answer.ok().filter(|a| {
        // An answer about another payment proves nothing about this one.
        a.payment_request_id
            .as_deref()
            .is_none_or(|id| id == order.out_trade_no.as_str())
    });
    let next = after_inquiry(answer.as_ref());
    let report = answer
        .as_ref()
        .filter(|_| next == TradeNext::ApplyPaid)
        .and_then(|a| paid_report(order, a));
    Queried {
        next,
        report,
        unknown_at_alipay: answer
            .as_ref()
            .is_some_and(|a| a.result.result_code == NOT_FOUND),
        reason,
    }
}

/// The payment an inquiry says succeeded. Its amount is Antom's when it gives one (compared
/// with ours before anything is applied); Antom refuses a repeat of a `paymentRequestId` with
/// other parameters, so without one it is the amount we sent under this id.
fn paid_report(order: &Order, answer: &InquiryPaymentResponse) -> Option<TradeReport> {
    let total_amount = match &answer.payment_amount {
        Some(amount) => amount.to_money().ok()?,
        None => order.amount,
    };
    Some(TradeReport {
        trade_no: answer.payment_id.clone()?,
        trade_status: TradeStatus::TradeSuccess,
        total_amount,
        paid_at: answer.payment_time.as_deref().and_then(china_time),
        buyer_id_masked: None,
        buyer_key: None,
        settlement: settlement(
            answer.gross_settlement_amount.as_ref(),
            answer.settlement_quote.as_ref(),
        ),
    })
}

/// `cancel`, decided.
pub async fn cancel(antom: &AntomChannel, order: &Order, deadline: &Deadline) -> Closing {
    let request = PaymentRef {
        payment_request_id: order.out_trade_no.to_string(),
    };
    let answer = antom
        .call_before::<_, CancelResponse>(antom::paths::CANCEL, &request, deadline)
        .await;
    let reason = unanswered(answer.as_ref().map(|a| &a.result));
    let answer = answer.ok();
    Closing {
        next: after_cancel(answer.as_ref().map(|a| &a.result)),
        unknown_at_provider: answer
            .as_ref()
            .is_some_and(|a| a.result.result_code == NOT_FOUND),
        reason,
    }
}

/// `payments/refund` with the refund's unchanged parameters (Antom's id of the payment read
/// from the order: one read).
pub async fn send_refund(
    antom: &AntomChannel,
    refund: &Refund,
    first_send: bool,
    deadline: &Deadline,
) -> (RefundNext, Option<String>) {
    let payment_id = match antom.store.get_order(&refund.out_trade_no).await {
        Ok(Some(order)) => order.trade_no,
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(error = %error, "reading the refund's payment");
            return (RefundNext::Wait, None);
        }
    };
    let (Some(payment_id), Ok(amount)) = (payment_id, WireAmount::from_money(refund.amount)) else {
        tracing::error!(out_request_no = %refund.out_request_no, "not sent: the payment has no Antom paymentId, or the amount is not Antom's");
        return (RefundNext::Wait, None);
    };
    let request = RefundRequest {
        refund_request_id: refund_request_id(&refund.out_trade_no, &refund.out_request_no),
        payment_id,
        refund_amount: amount,
        refund_reason: refund.reason.clone(),
        refund_notify_url: antom.config.notify_url.clone(),
    };
    let answer = antom
        .call_before::<_, RefundResponse>(antom::paths::REFUND, &request, deadline)
        .await
        .ok();
    // A success about another refund proves nothing.
    let answer = answer.filter(|a| {
        a.refund_request_id
            .as_deref()
            .is_none_or(|id| id == request.refund_request_id)
    });
    let at = answer
        .as_ref()
        .and_then(|a| a.refund_time.as_deref())
        .and_then(china_time);
    let next = after_refund(first_send, answer.as_ref().map(|a| &a.result));
    tracing::info!(first_send, next = ?next, "antom refund sent");
    (next, at)
}

/// `inquiryRefund`, decided.
pub async fn inquire_refund(
    antom: &AntomChannel,
    refund: &Refund,
    if_absent: Option<RefundOutcome>,
    since: SinceSend,
    deadline: &Deadline,
) -> (RefundNext, Option<Pending>, Option<String>) {
    let id = refund_request_id(&refund.out_trade_no, &refund.out_request_no);
    let request = RefundRef {
        refund_request_id: id.clone(),
    };
    let answer = antom
        .call_before::<_, InquiryRefundResponse>(antom::paths::INQUIRY_REFUND, &request, deadline)
        .await;
    let why = match &answer {
        Err(_) => Some(Pending {
            code: "provider_unavailable",
            message: "Antom could not be asked; the refund is finished automatically".into(),
            retry_after: 10,
        }),
        Ok(_) => None,
    };
    let answer = answer.ok();
    let at = answer
        .as_ref()
        .and_then(|a| a.refund_time.as_deref())
        .and_then(china_time);
    let next = after_refund_inquiry((&id, refund.amount), answer.as_ref(), if_absent, since);
    (next, why, at)
}

/// Why an answer decides nothing: none, or one that is not S.
fn unanswered(answer: Result<&antom::ResultInfo, &CallError>) -> Option<String> {
    match answer {
        Ok(result) if result.outcome() == antom::Outcome::Success => None,
        Ok(result) => Some(format!(
            "Antom answered {} {}",
            result.result_status, result.result_code
        )),
        Err(error) => Some(error.to_string()),
    }
}

/// A verified `notifyPayment` with a result: the payment it reports paid, for `order`.
pub fn notified_payment(order: &Order, notification: &PaymentNotification) -> Option<TradeReport> {
    let total_amount = match &notification.payment_amount {
        Some(amount) => amount.to_money().ok()?,
        None => order.amount,
    };
    Some(TradeReport {
        trade_no: notification.payment_id.clone()?,
        trade_status: TradeStatus::TradeSuccess,
        total_amount,
        paid_at: notification.payment_time.as_deref().and_then(china_time),
        buyer_id_masked: None,
        buyer_key: None,
        settlement: settlement(
            notification.gross_settlement_amount.as_ref(),
            notification.settlement_quote.as_ref(),
        ),
    })
}

/// What a verified `notifyRefund` proves about our refund (`None`: nothing yet).
pub fn notified_refund(
    refund: &Refund,
    notification: &RefundNotification,
) -> Result<Option<RefundOutcome>, String> {
    if let Some(amount) = &notification.refund_amount
        && amount.to_money().ok() != Some(refund.amount)
    {
        return Err(format!(
            "Antom notified a refund of {} {} for {}; we asked for {}",
            amount.value,
            amount.currency,
            refund.out_request_no,
            refund.amount.with_code()
        ));
    }
    Ok(match notification.status() {
        antom::message::RefundStatus::Success => Some(RefundOutcome::Succeeded),
        antom::message::RefundStatus::Fail => Some(RefundOutcome::Failed {
            code: "REFUND_FAIL".into(),
            message: "Antom notified that the refund failed".into(),
        }),
        _ => None,
    })
}

// ---- notifications --------------------------------------------------------------------------

/// Receives a notification Antom POSTed: verified (fail closed) over our endpoint's path,
/// checked against the order it names, applied. `Ok` only once its effect is durably stored
/// (or when it has none: a pending payment, a kind we do not act on).
pub async fn receive_notification(
    gateway: &Gateway,
    request_path: &str,
    headers: SignedHeaders<'_>,
    body: &[u8],
) -> Result<(), Refusal> {
    let Some(config) = gateway.config.antom.as_ref() else {
        return Err(Refusal::Rejected("no Antom channel is configured".into()));
    };
    // The path Antom posted to is the one it signed: ANTOM_NOTIFY_URL's (a custom domain or a
    // stage may put a prefix on the one this function sees).
    let path = config
        .notify_path()
        .unwrap_or_else(|| request_path.to_owned());
    verify_notification(
        &config.antom_public_key,
        &config.client_id,
        &path,
        headers,
        body,
    )
    .map_err(Refusal::Unverified)?;
    match parse_notification(body).map_err(|e| Refusal::Rejected(e.to_string()))? {
        Notification::Payment(notification) => apply_payment(gateway, &notification).await,
        Notification::Refund(notification) => apply_refund(gateway, &notification).await,
        Notification::Other(kind) => {
            tracing::info!(notify_type = %kind, "Antom notification of a kind not acted on");
            Ok(())
        }
    }
}

async fn apply_payment(
    gateway: &Gateway,
    notification: &PaymentNotification,
) -> Result<(), Refusal> {
    let now = now_ms();
    let cause = Cause::Notify {
        notify_id: format!(
            "antom:{}:{}",
            notification.notify_type,
            notification.payment_id.as_deref().unwrap_or("-")
        ),
    };
    let out_trade_no = OutTradeNo::parse(notification.payment_request_id.as_str())
        .map_err(|_| Refusal::Rejected("paymentRequestId is not one of ours".into()))?;
    let order = gateway
        .store
        .get_order(&out_trade_no)
        .await?
        .ok_or_else(|| Refusal::Rejected("no such order".into()))?;
    if order.alipay_channel != ChannelId::Antom {
        let detail = format!(
            "an Antom notification for an order of channel {}",
            order.alipay_channel
        );
        let event = AuditEvent::new("notify.rejected", &cause, now).detail(detail.clone());
        gateway.store.record_event(&out_trade_no, &event).await?;
        return Err(Refusal::Rejected(detail));
    }
    if notification.notify_type != "PAYMENT_RESULT" {
        return Ok(());
    }
    match notification.result.outcome() {
        antom::Outcome::Success => {
            let report = notified_payment(&order, notification)
                .ok_or_else(|| Refusal::Rejected("a paid notification without paymentId".into()))?;
            let config = &gateway.config;
            let in_force = gateway.rules_in_force().await;
            match apply_trade_report(
                &gateway.store,
                &config.lifecycle,
                &in_force.rules,
                &order,
                &report,
                &cause,
                now,
            )
            .await
            {
                Ok(applied) => {
                    tracing::info!(
                        changed = matches!(applied, Applied::Changed(_)),
                        "Antom payment notification applied"
                    );
                    Ok(())
                }
                Err(ApplyError::Mismatch(detail)) => Err(Refusal::Rejected(detail)),
                Err(ApplyError::Store(error)) => Err(error.into()),
            }
        }
        // The buyer's payment failed: this request id cannot be paid any more.
        antom::Outcome::Failure => match order.status {
            OrderStatus::Created => {
                match gateway.store.close(&out_trade_no, None, &cause, now).await {
                    Ok(_) => Ok(()),
                    // Paid meanwhile: the later, signed success stands; this is recorded.
                    Err(StoreError::IllegalTransition { .. }) => Ok(()),
                    Err(error) => Err(error.into()),
                }
            }
            OrderStatus::Closed => Ok(()),
            OrderStatus::Paid | OrderStatus::Finished => {
                let detail =
                    "Antom notified a failure of a payment it had reported paid".to_owned();
                let event = AuditEvent::new("notify.rejected", &cause, now).detail(detail.clone());
                gateway.store.record_event(&out_trade_no, &event).await?;
                tracing::error!(security = true, "{detail}");
                Ok(())
            }
        },
        antom::Outcome::Unknown => Ok(()),
    }
}

async fn apply_refund(gateway: &Gateway, notification: &RefundNotification) -> Result<(), Refusal> {
    // A digest id cannot be read back: the sweeper's inquiry settles that refund.
    let Some((out_trade_no, out_request_no)) =
        refund_of_request_id(&notification.refund_request_id)
    else {
        tracing::info!("Antom refund notification for a digest id: left to the inquiry");
        return Ok(());
    };
    let cause = Cause::Notify {
        notify_id: format!(
            "antom:REFUND_RESULT:{}",
            notification.refund_id.as_deref().unwrap_or("-")
        ),
    };
    let refund = gateway
        .store
        .get_refund(&out_trade_no, &out_request_no)
        .await?
        .ok_or_else(|| Refusal::Rejected("no such refund".into()))?;
    if refund.alipay_channel != ChannelId::Antom {
        return Err(Refusal::Rejected(
            "an Antom notification for a refund of another channel".into(),
        ));
    }
    let outcome = match notified_refund(&refund, notification) {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return Ok(()),
        Err(detail) => {
            tracing::error!(security = true, detail = %detail, "refund contradicts Antom's record");
            let event = AuditEvent::new("refund.contradiction", &cause, now_ms()).detail(format!(
                "out_request_no {}: {detail}",
                refund.out_request_no
            ));
            gateway.store.record_event(&out_trade_no, &event).await?;
            return Err(Refusal::Rejected(detail));
        }
    };
    let at = notification.refund_time.as_deref().and_then(china_time);
    match gateway
        .store
        .settle_refund(&refund, &outcome, at.as_deref(), &cause, now_ms())
        .await
    {
        Ok(settlement) => {
            if let Settlement::Corrected(_) | Settlement::Discrepancy(_) = settlement {
                crate::refunds::report_correction(settlement);
            }
            Ok(())
        }
        Err(StoreError::IllegalTransition { from, to }) => {
            tracing::error!(security = true, from = %from, to = %to, "Antom's refund outcome contradicts the record");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_request_ids_are_unique_across_payments_and_fit() {
        let trade = OutTradeNo::parse("order_1").unwrap();
        let r1 = OutRequestNo::parse("r1").unwrap();
        assert_eq!(refund_request_id(&trade, &r1), "order_1-r1");
        assert_eq!(
            refund_of_request_id("order_1-r1"),
            Some((trade.clone(), r1.clone()))
        );
        let other = OutTradeNo::parse("order_2").unwrap();
        assert_ne!(
            refund_request_id(&trade, &r1),
            refund_request_id(&other, &r1)
        );
        let long = OutTradeNo::parse("a".repeat(64)).unwrap();
        let id = refund_request_id(&long, &r1);
        assert_eq!(id.len(), 64);
        assert!(refund_of_request_id(&id).is_none());
    }

    #[test]
    fn expiry_is_sent_with_chinas_offset() {
        let at = ChinaDateTime::parse("2026-12-05 10:30:00").unwrap();
        assert_eq!(iso_of(&at), "2026-12-05T10:30:00+08:00");
        assert_eq!(antom::unix_ms(&iso_of(&at)), Some(at.unix_seconds() * 1000));
    }
}
