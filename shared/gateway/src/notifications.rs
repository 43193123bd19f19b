//! Alipay's asynchronous notifications, once received: verified with the channels' keys or
//! certificates (learning a rotated certificate the other functions met), checked against the
//! order they name, and applied: a trade state through [`crate::payments`], a refund notice
//! through [`crate::refunds`]. The notify function answers Alipay from what this returns.

use alipay::ids::OutTradeNo;
use alipay::notify::{Notification, NotifyError, TradeNotification, verify_any};
use domain::channel::ChannelId;
use domain::reports::TradeReport;
use domain::states::Cause;
use store::{AuditEvent, StoreError};

use crate::clock::now_ms;
use crate::payments::{Applied, ApplyError, apply_trade_report};
use crate::refunds::apply_refund_notice;
use crate::startup::Gateway;

/// Why a notification was not applied.
pub enum Refusal {
    /// An Antom notification whose signature did not verify (fail closed).
    Unverified(antom::AntomVerifyError),
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
pub async fn verify(
    gateway: &Gateway,
    body: &[u8],
) -> Result<(Notification, Vec<ChannelId>), NotifyError> {
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
) -> Result<(Notification, Vec<ChannelId>), NotifyError> {
    let mut first_error = None;
    let mut verified = None;
    let mut signers = Vec::new();
    for (channel, trust) in &gateway.trusts {
        for key in trust.all_keys() {
            match verify_any(body, &key) {
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
            Err(first_error.unwrap_or(NotifyError::BadSignature(alipay::VerifyError::Mismatch)))
        }
    }
}

/// Applies a verified agreement notice (`dut_user_sign` / `dut_user_unsign`): checked against
/// the subscription's channel (signed by its key, for its application), then mirrored.
pub async fn apply_agreement(
    gateway: &Gateway,
    notice: &alipay::agreement::AgreementNotification,
    signed_by: Vec<ChannelId>,
) -> Result<(), Refusal> {
    use crate::subscriptions::{SubscriptionError, apply_agreement_notice};
    let cause = Cause::Notify {
        notify_id: notice.notify_id.clone(),
    };
    let subscription = gateway
        .store
        .get_subscription(&notice.external_agreement_no)
        .await?
        .ok_or_else(|| Refusal::Rejected("no such subscription".into()))?;
    let channel = gateway.config.channel(subscription.alipay_channel);
    match channel {
        Some(channel)
            if signed_by.contains(&channel.id) && notice.app_id == channel.app_id.as_str() => {}
        _ => {
            return Err(Refusal::Rejected(format!(
                "not signed for the subscription's channel ({}) and application",
                subscription.alipay_channel
            )));
        }
    }
    match apply_agreement_notice(gateway, notice, &cause).await {
        Ok(_) => Ok(()),
        Err(SubscriptionError::Store(error)) => Err(Refusal::Unavailable(error)),
        Err(error) => Err(Refusal::Rejected(error.to_string())),
    }
}

/// Applies a verified notification: checked against the order's own channel (the channel whose
/// key signed it, its app id and seller), then its trade state, then any refund notice it
/// carries. `Ok` only once every effect is durably stored.
pub async fn apply(
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

    let report = TradeReport::from_notification(notification);
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
        Ok(applied) => tracing::info!(
            changed = matches!(applied, Applied::Changed(_)),
            "notification applied"
        ),
        Err(ApplyError::Mismatch(detail)) => return Err(Refusal::Rejected(detail)),
        Err(ApplyError::Store(error)) => return Err(error.into()),
    }

    if notification.refund_fee.is_some() || notification.out_biz_no.is_some() {
        apply_refund_notice(&gateway.store, notification, &out_trade_no, &cause, now).await?;
    }
    Ok(())
}
