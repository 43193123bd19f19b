//! Subscriptions on Alipay agreements, driven: creating one (and the page where the buyer signs
//! its agreement), mirroring the agreement's state from Alipay's notices, cancelling, and the
//! scheduled charges, each step what `domain::subscriptions` decides.
//!
//! A period's charge is a payment like any other: an order (`Cashier::Agreement`) under the
//! period's deterministic `out_trade_no`, created before the first try, marked paid through the
//! same path as a notification or a query (`payments::apply_paid_because`), so GET, refunds,
//! events, reconciliation and the fraud counters all apply. Every try is written as "in doubt"
//! before it is sent: a run that dies after sending leaves a period that the next run asks
//! about, never one it charges blind.

use alipay::agreement::{
    AgreementNotification, AgreementSign, AgreementStatus, SignChannel, app_sign_scheme,
};
use alipay::china_time::{ChinaDateTime, china_timestamp};
use alipay::ids::{ExternalAgreementNo, OutTradeNo, Subject};
use alipay::notify::TradeStatus;
use alipay::request::{AlipayRequest, TradeRef};
use alipay::response::{QueryResult, VerifiedResponse};
use domain::lifecycle::Reply;
use domain::reports::TradeReport;
use domain::states::{Cashier, Cause, NewOrder, OrderStatus};
use domain::subscriptions::{
    AgreementCheck, ChargeClass, Period, PeriodChange, PeriodEnd, PeriodNext, Plan, Subscription,
    SubscriptionStatus, after_agreement_query, after_charge, after_charge_query, after_period_end,
    after_refusal, classify_charge, next_for_period, on_agreement_status,
};
use serde::Deserialize;
use store::{AuditEvent, Created, Saved, StoreError, SubscriptionCreated};

use crate::channel::Channel;
use crate::channel::client::CallError;
use crate::clock::now_ms;
use crate::deadline::Deadline;
use crate::payments::{Ended, apply_paid_because};
use crate::startup::Gateway;

/// How long a scheduler run holds a subscription it claimed (another run takes it after).
pub const CLAIM_LEASE_MS: i64 = 5 * 60_000;
/// How long to wait before asking again when Alipay could not be asked.
pub const UNREACHABLE_RETRY_MS: i64 = 10 * 60_000;
/// At most this many Alipay calls for one subscription in one run.
const MAX_STEPS: u32 = 8;

/// Why a subscription request could not be done.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no subscription {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Alipay could not be reached: {0}")]
    Unavailable(String),
    #[error("Alipay refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the merchant asks for.
#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub id: ExternalAgreementNo,
    pub customer_ref: Option<String>,
    pub subject: Subject,
    pub plan: Plan,
    pub sign_channel: SignChannel,
    pub return_url: Option<String>,
    /// Pay-and-sign: the first period is paid at this cashier (`Page` or `App`) as the buyer
    /// signs; its date is today. `None`: the buyer only signs, and the first period is charged.
    pub pay_and_sign: Option<Cashier>,
}

impl NewSubscription {
    fn fingerprint(&self) -> String {
        let plan = &self.plan;
        format!(
            "{}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}",
            self.subject,
            plan.period_type.as_str(),
            plan.period,
            plan.amount,
            plan.first_date,
            plan.single_amount,
            plan.total_amount.map(|a| a.fen()),
            plan.total_payments,
            self.sign_channel.as_str(),
            self.customer_ref.as_deref().unwrap_or(""),
            self.pay_and_sign.map_or("", Cashier::as_str)
        )
    }
}

/// Where the buyer signs: a URL to open (page, QR), the Alipay app's scheme, or (pay-and-sign
/// in the app) the order string for the Alipay app SDK.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Signing {
    /// `redirect` (open it), `qr` (show it as a QR code), `app` (open it in the Alipay app, or
    /// hand `order_string` to the app SDK).
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_string: Option<String>,
}

/// Creates a subscription (or finds the one a retry created) and signs the page where the buyer
/// signs its agreement. `bool`: whether it was created now.
pub async fn create(
    gateway: &Gateway,
    new: &NewSubscription,
    cause: &Cause,
) -> Result<(Subscription, Signing, bool), SubscriptionError> {
    let now = now_ms();
    let channel = gateway
        // Agreements are Alipay v1's, in CNY.
        .pick_channel(domain::states::Currency::CNY)
        .await
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    let subscription = Subscription {
        id: new.id.clone(),
        customer_ref: new.customer_ref.clone(),
        subject: new.subject.clone(),
        plan: new.plan.clone(),
        sign_channel: new.sign_channel,
        alipay_channel: channel.id,
        status: SubscriptionStatus::Incomplete,
        agreement_no: None,
        agreement_status: AgreementStatus::Temp,
        period: first_period(new, now),
        charged: alipay::Amount::ZERO,
        charges: 0,
        last_period_end: None,
        created_at_ms: now,
        updated_at_ms: now,
        version: 1,
        fingerprint: new.fingerprint(),
    };
    let (stored, created) = match gateway
        .store
        .create_subscription(&subscription, None, cause)
        .await
    {
        Ok(SubscriptionCreated::New(stored)) => (stored, true),
        Ok(SubscriptionCreated::Existing(stored)) => (stored, false),
        Err(StoreError::Conflict(message)) => return Err(SubscriptionError::Conflict(message)),
        Err(error) => return Err(error.into()),
    };
    let channel = gateway
        .channel(stored.alipay_channel)
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    let signing = match new.pay_and_sign {
        None => signing(gateway, channel, &stored, new.return_url.clone()).await?,
        Some(cashier) => pay_and_sign(gateway, channel, &stored, cashier, new, now).await?,
    };
    Ok((stored, signing, created))
}

/// The first period: due to be charged, or (pay-and-sign) already sent to the cashier, its
/// outcome unknown until Alipay tells it (asked about once the agreement is signed).
fn first_period(new: &NewSubscription, now: i64) -> Period {
    let mut period = Period::new(0, new.plan.first_date);
    if new.pay_and_sign.is_some() {
        period.in_doubt = true;
        period.sent_ms = Some(now);
    }
    period
}

/// Pay-and-sign: the first period's order (a payment like any other) and its cashier request
/// carrying `agreement_sign_params`; the agreement's first charge is the second period's date,
/// and its caps count what the cashier did not take.
async fn pay_and_sign(
    gateway: &Gateway,
    channel: &Channel,
    subscription: &Subscription,
    cashier: Cashier,
    new: &NewSubscription,
    now: i64,
) -> Result<Signing, SubscriptionError> {
    let settings = gateway
        .config
        .channel(channel.id)
        .ok_or_else(|| SubscriptionError::Unavailable("channel not configured".into()))?;
    let plan = &subscription.plan;
    let refused = |why: &str| SubscriptionError::Conflict(format!("pay_and_sign: {why}"));
    let second = plan
        .date_of(1)
        .ok_or_else(|| refused("the plan has no second period"))?;
    let mut rule = plan.rule();
    rule.execute_time = second;
    rule.total_payments = plan.total_payments.map(|count| count.saturating_sub(1));
    rule.total_amount = plan.total_amount.map(|total| {
        total
            .checked_sub(plan.amount)
            .unwrap_or(alipay::Amount::ZERO)
    });
    let out_trade_no = subscription
        .period_trade_no()
        .ok_or_else(|| refused("no order number"))?;
    let lifecycle = &gateway.config.lifecycle;
    let expiry = ChinaDateTime::parse(&china_timestamp(
        now.div_euclid(1000) + lifecycle.default_expiry_seconds,
    ))
    .map_err(|e| SubscriptionError::Unavailable(e.0.into()))?;
    let order = NewOrder {
        out_trade_no: out_trade_no.clone(),
        amount: plan.amount.into(),
        subject: subscription.subject.clone(),
        channel: cashier,
        return_url: new.return_url.clone(),
        time_expire: Some(expiry.clone()),
        customer_ref: subscription.customer_ref.clone(),
        virtual_goods: false,
        alipay_channel: subscription.alipay_channel,
    };
    let due = expiry.unix_seconds() * 1000 + lifecycle.expiry_grace_ms;
    let cause = Cause::Api {
        route: "POST /subscriptions".into(),
    };
    create_order(gateway, &order, &expiry, due, &cause, now).await?;
    let sign = AgreementSign {
        external_agreement_no: subscription.id.clone(),
        product_code: settings.agreement_product_code.clone(),
        sign_scene: settings.agreement_sign_scene.clone(),
        channel: subscription.sign_channel,
        rule,
    };
    let payment = alipay::request::PaymentOrder {
        out_trade_no,
        total_amount: plan.amount,
        subject: subscription.subject.clone(),
        time_expire: Some(expiry),
        identity_check: None,
    };
    let sign_notify_url = gateway.config.notify_url.clone();
    let request = match cashier {
        Cashier::App => AlipayRequest::AppPayAndSign {
            order: payment,
            sign,
            sign_notify_url,
        },
        _ => AlipayRequest::PagePayAndSign {
            order: payment,
            return_url: new.return_url.clone(),
            sign,
            sign_notify_url,
        },
    };
    let signed = channel
        .sign(&request)
        .await
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    Ok(match cashier {
        Cashier::App => Signing {
            kind: "app",
            url: None,
            order_string: Some(signed.order_string()),
        },
        _ => Signing {
            kind: "redirect",
            url: Some(signed.gateway_url(channel.client.gateway_url())),
            order_string: None,
        },
    })
}

/// The signed `alipay.user.agreement.page.sign` for a subscription, in its channel's form.
async fn signing(
    gateway: &Gateway,
    channel: &Channel,
    subscription: &Subscription,
    return_url: Option<String>,
) -> Result<Signing, SubscriptionError> {
    let settings = gateway
        .config
        .channel(channel.id)
        .ok_or_else(|| SubscriptionError::Unavailable("channel not configured".into()))?;
    let request = AlipayRequest::AgreementPageSign {
        sign: AgreementSign {
            external_agreement_no: subscription.id.clone(),
            product_code: settings.agreement_product_code.clone(),
            sign_scene: settings.agreement_sign_scene.clone(),
            channel: subscription.sign_channel,
            rule: subscription.plan.rule(),
        },
        return_url,
    };
    let signed = channel
        .sign(&request)
        .await
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    Ok(match subscription.sign_channel {
        SignChannel::AlipayApp => Signing {
            kind: "app",
            url: Some(app_sign_scheme(&signed.form_body())),
            order_string: None,
        },
        SignChannel::Qrcode | SignChannel::QrcodeOrSms => Signing {
            kind: "qr",
            url: Some(signed.gateway_url(channel.client.gateway_url())),
            order_string: None,
        },
    })
}

pub async fn get(
    gateway: &Gateway,
    id: &ExternalAgreementNo,
) -> Result<Subscription, SubscriptionError> {
    gateway
        .store
        .get_subscription(id)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(id.to_string()))
}

/// Writes `next` (one version on) with an audit event; `Stale`: someone wrote first.
async fn save(
    gateway: &Gateway,
    mut next: Subscription,
    kind: &str,
    cause: &Cause,
    detail: Option<String>,
) -> Result<Saved, StoreError> {
    let now = now_ms();
    next.version += 1;
    next.updated_at_ms = now;
    let due = next.due_at_ms(&gateway.config.dunning);
    let mut event = AuditEvent::new(kind, cause, now);
    event.to = Some(next.status.as_str().to_owned());
    if let Some(detail) = detail {
        event = event.detail(detail);
    }
    gateway.store.save_subscription(&next, due, &event).await
}

/// Applies a verified `dut_user_sign` / `dut_user_unsign` notice. Unknown subscription:
/// [`SubscriptionError::NotFound`]; a notice naming another agreement than the one recorded:
/// [`SubscriptionError::Conflict`] (nothing changes).
pub async fn apply_agreement_notice(
    gateway: &Gateway,
    notice: &AgreementNotification,
    cause: &Cause,
) -> Result<Subscription, SubscriptionError> {
    for _ in 0..3 {
        let current = get(gateway, &notice.external_agreement_no).await?;
        if let Some(known) = &current.agreement_no
            && known != &notice.agreement_no
        {
            return Err(SubscriptionError::Conflict(format!(
                "the notice names agreement {}, the subscription has {known}",
                notice.agreement_no
            )));
        }
        let mut next = current.clone();
        next.agreement_no = Some(notice.agreement_no.clone());
        next.agreement_status = notice.status;
        next.status = on_agreement_status(current.status, notice.status);
        if next.agreement_no == current.agreement_no
            && next.agreement_status == current.agreement_status
            && next.status == current.status
        {
            return Ok(current);
        }
        let kind = format!(
            "subscription.agreement_{}",
            notice.status.as_str().to_lowercase()
        );
        match save(gateway, next, &kind, cause, None).await? {
            Saved::Written(saved) => return Ok(saved),
            Saved::Stale(_) => continue,
        }
    }
    Err(SubscriptionError::Store(StoreError::Conflict(
        "the subscription kept changing".into(),
    )))
}

/// The merchant cancels: the agreement is stopped at Alipay first (unsign), then the
/// subscription is canceled. Alipay unreachable: nothing changes.
pub async fn cancel(
    gateway: &Gateway,
    id: &ExternalAgreementNo,
    cause: &Cause,
    deadline: &Deadline,
) -> Result<Subscription, SubscriptionError> {
    let current = get(gateway, id).await?;
    if current.status == SubscriptionStatus::Canceled {
        return Ok(current);
    }
    let mut next = current.clone();
    if let Some(agreement_no) = &current.agreement_no
        && current.agreement_status != AgreementStatus::Stop
    {
        let channel = gateway
            .channel(current.alipay_channel)
            .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
        let request = AlipayRequest::AgreementUnsign {
            agreement_no: agreement_no.clone(),
        };
        match channel.call_before(&request, deadline).await {
            Ok(answer) if answer.signed && answer.status.code == "10000" => {}
            Ok(answer) if answer.signed && is_agreement_gone(&answer) => {}
            Ok(answer) => {
                return Err(SubscriptionError::Refused(format!(
                    "{} {}",
                    answer.status.code,
                    answer.status.sub_code.clone().unwrap_or_default()
                )));
            }
            Err(error) => return Err(SubscriptionError::Unavailable(error.to_string())),
        }
        next.agreement_status = AgreementStatus::Stop;
    }
    next.status = SubscriptionStatus::Canceled;
    match save(gateway, next, "subscription.canceled", cause, None).await? {
        Saved::Written(saved) => Ok(saved),
        Saved::Stale(now) if now.status == SubscriptionStatus::Canceled => Ok(now),
        Saved::Stale(_) => Err(SubscriptionError::Conflict(
            "the subscription changed meanwhile; try again".into(),
        )),
    }
}

/// The merchant pauses (`Some(false)`) or resumes (`Some(true)`) a subscription: no charge while
/// paused; a resume skips the periods whose window closed meanwhile (`domain::subscriptions::resume`).
/// [`SubscriptionError::Conflict`] when its state does not allow it.
pub async fn pause_or_resume(
    gateway: &Gateway,
    id: &ExternalAgreementNo,
    resume: bool,
    cause: &Cause,
) -> Result<Subscription, SubscriptionError> {
    for _ in 0..3 {
        let current = get(gateway, id).await?;
        let mut next = current.clone();
        if resume {
            let (status, period) =
                domain::subscriptions::resume(&current, &gateway.config.dunning, now_ms())
                    .map_err(|why| {
                        SubscriptionError::Conflict(format!("the subscription {why}"))
                    })?;
            next.status = status;
            next.period = period;
        } else {
            next.status = domain::subscriptions::pause(current.status)
                .map_err(|why| SubscriptionError::Conflict(format!("the subscription {why}")))?;
        }
        if next.status == current.status && next.period == current.period {
            return Ok(current);
        }
        let kind = if resume {
            "subscription.resumed"
        } else {
            "subscription.paused"
        };
        match save(gateway, next, kind, cause, None).await? {
            Saved::Written(saved) => return Ok(saved),
            Saved::Stale(_) => continue,
        }
    }
    Err(SubscriptionError::Store(StoreError::Conflict(
        "the subscription kept changing".into(),
    )))
}

fn is_agreement_gone(answer: &VerifiedResponse) -> bool {
    domain::subscriptions::agreement_not_exist(answer.status.sub_code.as_deref())
}

/// What one scheduler run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChargeRun {
    pub looked_at: u32,
    pub claimed: u32,
    pub periods_paid: u32,
    pub periods_unpaid: u32,
    pub canceled: u32,
    pub refusals: u32,
    pub alipay_calls: u32,
    /// Store failures (a shard not read, a claim or a write not made): that work is due again
    /// at the next run.
    pub errors: u32,
}

impl ChargeRun {
    /// The run as CloudWatch's Embedded Metric Format (no dimension): the template alarms on
    /// periods that ended unpaid and on subscriptions canceled (an agreement stopped).
    pub fn emf_line(&self) -> String {
        serde_json::json!({
            "_aws": {
                "Timestamp": now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [[]],
                    "Metrics": [
                        {"Name": "SubscriptionPeriodsPaid", "Unit": "Count"},
                        {"Name": "SubscriptionPeriodsUnpaid", "Unit": "Count"},
                        {"Name": "SubscriptionsCanceled", "Unit": "Count"},
                        {"Name": "SubscriptionChargeRefusals", "Unit": "Count"},
                        {"Name": "SubscriptionChargeErrors", "Unit": "Count"}
                    ]
                }]
            },
            "SubscriptionPeriodsPaid": self.periods_paid,
            "SubscriptionPeriodsUnpaid": self.periods_unpaid,
            "SubscriptionsCanceled": self.canceled,
            "SubscriptionChargeRefusals": self.refusals,
            "SubscriptionChargeErrors": self.errors,
            "charges": self,
        })
        .to_string()
    }
}

/// One scheduler run: every subscription due now, found through the index (one Query per
/// shard), claimed under its version, driven while the deadline allows. A store failure stops
/// that subscription (or shard) only: it is due again at the next run, and counted.
pub async fn run_due(gateway: &Gateway, deadline: &Deadline) -> Result<ChargeRun, StoreError> {
    let mut run = ChargeRun::default();
    let batch = gateway.config.lifecycle.sweep_batch;
    for shard in 0..store::DUE_SHARDS {
        let due = match gateway
            .store
            .due_subscriptions(shard, now_ms(), batch)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(shard, error = %error, "due subscriptions not read");
                run.errors += 1;
                continue;
            }
        };
        for (subscription, seen_due) in due {
            run.looked_at += 1;
            if deadline.remaining() < std::time::Duration::from_secs(3) {
                return Ok(run);
            }
            let claimed = gateway
                .store
                .claim_subscription(&subscription, seen_due, now_ms() + CLAIM_LEASE_MS)
                .await;
            let claimed = match claimed {
                Ok(Some(claimed)) => claimed,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(subscription = %subscription.id, error = %error, "not claimed");
                    run.errors += 1;
                    continue;
                }
            };
            run.claimed += 1;
            if let Err(error) = drive(gateway, claimed, deadline, &mut run).await {
                // Claimed with a lease: the next run after it takes it again.
                tracing::warn!(subscription = %subscription.id, error = %error, "not driven");
                run.errors += 1;
            }
        }
    }
    Ok(run)
}

/// Drives one claimed subscription as far as it goes now.
pub async fn drive(
    gateway: &Gateway,
    mut subscription: Subscription,
    deadline: &Deadline,
    run: &mut ChargeRun,
) -> Result<Subscription, StoreError> {
    let cause = Cause::Scheduler;
    let dunning = gateway.config.dunning;
    let Ok(channel) = gateway.channel(subscription.alipay_channel) else {
        return Ok(subscription);
    };
    for _ in 0..MAX_STEPS {
        let settling = subscription.period.in_doubt;
        if !(subscription.status.charges() || settling) || subscription.agreement_no.is_none() {
            break;
        }
        let now = now_ms();
        let step = next_for_period(&subscription.period, &dunning, now);
        let (next, kind, detail) = match step {
            PeriodNext::WaitUntil(_) => break,
            PeriodNext::MovePlan => {
                run.alipay_calls += 1;
                match move_plan(channel, &subscription, deadline).await {
                    Some(true) => {
                        let mut next = subscription.clone();
                        next.period.alipay_date_behind = false;
                        (next, "subscription.plan_moved", None)
                    }
                    _ => return wait(gateway, subscription, UNREACHABLE_RETRY_MS).await,
                }
            }
            PeriodNext::CheckAgreement => {
                run.alipay_calls += 1;
                match check_agreement(channel, &subscription, deadline).await {
                    AgreementCheck::Normal => {
                        let mut next = subscription.clone();
                        next.period.agreement_checked_ms = Some(now);
                        next.agreement_status = AgreementStatus::Normal;
                        (next, "subscription.agreement_checked", None)
                    }
                    AgreementCheck::Stopped => {
                        let mut next = subscription.clone();
                        next.agreement_status = AgreementStatus::Stop;
                        let end = PeriodEnd::AgreementStopped {
                            code: "AGREEMENT_STOPPED".into(),
                        };
                        end_period(gateway, channel, &mut next, &end, deadline, run).await?;
                        (
                            next,
                            "subscription.canceled",
                            Some("agreement stopped".into()),
                        )
                    }
                    AgreementCheck::Unknown => {
                        return wait(gateway, subscription, UNREACHABLE_RETRY_MS).await;
                    }
                }
            }
            PeriodNext::Charge => {
                match charge(gateway, channel, &subscription, deadline, run).await? {
                    Some(next) => next,
                    None => return Ok(subscription),
                }
            }
            PeriodNext::Query => {
                run.alipay_calls += 1;
                let change = query_charge(gateway, &subscription, channel, deadline).await?;
                let mut next = subscription.clone();
                match change {
                    PeriodChange::Continue(period) => {
                        next.period = period;
                        (next, "subscription.charge_queried", None)
                    }
                    PeriodChange::End(end) => {
                        end_period(gateway, channel, &mut next, &end, deadline, run).await?;
                        (next, period_kind(&end), Some(end_code(&end)))
                    }
                }
            }
            PeriodNext::Cancel => break,
            PeriodNext::End(end) => {
                let mut next = subscription.clone();
                end_period(gateway, channel, &mut next, &end, deadline, run).await?;
                (next, period_kind(&end), Some(end_code(&end)))
            }
        };
        match save(gateway, next, kind, &cause, detail).await? {
            Saved::Written(saved) => subscription = saved,
            // Someone else moved it (a notice, another run): theirs stands; it is due again.
            Saved::Stale(current) => return Ok(current),
        }
    }
    // Not finished in this run (or waiting): written with its next due time.
    Ok(subscription)
}

fn period_kind(end: &PeriodEnd) -> &'static str {
    match end {
        PeriodEnd::Paid => "subscription.period_paid",
        PeriodEnd::Unpaid { .. } | PeriodEnd::Refused { .. } => "subscription.period_unpaid",
        PeriodEnd::AgreementStopped { .. } => "subscription.canceled",
    }
}

fn end_code(end: &PeriodEnd) -> String {
    match end {
        PeriodEnd::Paid => "paid".into(),
        PeriodEnd::Unpaid { code }
        | PeriodEnd::Refused { code }
        | PeriodEnd::AgreementStopped { code } => code.clone(),
    }
}

/// Writes the subscription unchanged but due again after `after_ms` (Alipay unreachable).
async fn wait(
    gateway: &Gateway,
    subscription: Subscription,
    after_ms: i64,
) -> Result<Subscription, StoreError> {
    let mut next = subscription.clone();
    next.version += 1;
    next.updated_at_ms = now_ms();
    let event = AuditEvent::new(
        "subscription.waiting",
        &Cause::Scheduler,
        next.updated_at_ms,
    )
    .detail("Alipay could not be asked");
    match gateway
        .store
        .save_subscription(&next, Some(now_ms() + after_ms), &event)
        .await?
    {
        Saved::Written(saved) | Saved::Stale(saved) => Ok(saved),
    }
}

/// `executionplan.modify` to the current period's date: `Some(true)` when Alipay's next date
/// is there now (moved, or a signed refusal that says it cannot be moved earlier).
async fn move_plan(
    channel: &Channel,
    subscription: &Subscription,
    deadline: &Deadline,
) -> Option<bool> {
    let agreement_no = subscription.agreement_no.clone()?;
    let request = AlipayRequest::AgreementModify {
        agreement_no,
        deduct_time: subscription.period.date,
        memo: format!("period {}", subscription.period.n + 1),
    };
    match channel.call_before(&request, deadline).await {
        Ok(answer) if answer.signed && answer.status.code == "10000" => Some(true),
        Ok(answer) if answer.signed && answer.status.code == "40004" => Some(true),
        _ => None,
    }
}

#[derive(Deserialize)]
struct AgreementQueryResult {
    #[serde(default)]
    status: Option<String>,
}

async fn check_agreement(
    channel: &Channel,
    subscription: &Subscription,
    deadline: &Deadline,
) -> AgreementCheck {
    let Some(agreement_no) = subscription.agreement_no.clone() else {
        return AgreementCheck::Unknown;
    };
    let request = AlipayRequest::AgreementQuery { agreement_no };
    let answer = channel.call_before(&request, deadline).await.ok();
    let status = answer
        .as_ref()
        .filter(|a| a.signed && a.status.code == "10000")
        .and_then(|a| a.parse::<AgreementQueryResult>(request.method()).ok())
        .and_then(|r| r.status)
        .and_then(|s| AgreementStatus::parse(&s));
    after_agreement_query(answer.as_ref().map(Reply::of), status)
}

#[derive(Deserialize)]
struct PayResult {
    trade_no: String,
    out_trade_no: String,
    total_amount: alipay::Amount,
    #[serde(default)]
    buyer_user_id: Option<String>,
    #[serde(default)]
    gmt_payment: Option<String>,
    /// For a merchant contracted for cross-border settlement.
    #[serde(flatten)]
    cross_border: alipay::cross_border::CrossBorder,
}

/// The period's try: the order first (a payment like any other), the try written in doubt,
/// then `alipay.trade.pay`, then what its answer means. `None`: stop driving this one now.
async fn charge(
    gateway: &Gateway,
    channel: &Channel,
    subscription: &Subscription,
    deadline: &Deadline,
    run: &mut ChargeRun,
) -> Result<Option<(Subscription, &'static str, Option<String>)>, StoreError> {
    let dunning = gateway.config.dunning;
    let now = now_ms();
    let mut next = subscription.clone();
    if let Err(code) = subscription
        .plan
        .within_caps(subscription.charged, subscription.charges)
    {
        let end = PeriodEnd::Refused { code: code.into() };
        end_period(gateway, channel, &mut next, &end, deadline, run).await?;
        return Ok(Some((next, period_kind(&end), Some(end_code(&end)))));
    }
    let (Some(out_trade_no), Some(agreement_no)) = (
        subscription.period_trade_no(),
        subscription.agreement_no.clone(),
    ) else {
        return Ok(None);
    };
    // The period's order: created once, found again by every later try.
    let order = match period_order(gateway, subscription, &out_trade_no, now).await {
        Ok(order) if order.status != OrderStatus::Created => {
            let end = if order.status == OrderStatus::Closed {
                PeriodEnd::Unpaid {
                    code: "ORDER_CLOSED".into(),
                }
            } else {
                PeriodEnd::Paid
            };
            end_period(gateway, channel, &mut next, &end, deadline, run).await?;
            return Ok(Some((next, period_kind(&end), Some(end_code(&end)))));
        }
        Ok(order) => order,
        Err(StoreError::RiskRefused { rule, .. }) => {
            let end = PeriodEnd::Refused {
                code: format!("RISK_REFUSED:{rule}"),
            };
            end_period(gateway, channel, &mut next, &end, deadline, run).await?;
            return Ok(Some((next, period_kind(&end), Some(end_code(&end)))));
        }
        Err(error) => return Err(error),
    };
    // Stepped up: never charged under the agreement; the buyer pays at the cashier.
    if order
        .decision
        .as_ref()
        .is_some_and(|d| d.outcome == domain::decisions::Action::StepUp)
    {
        return to_cashier(gateway, subscription, &order).await;
    }
    // In doubt before it is sent: a run that dies now leaves a period to ask about.
    let mut sending = subscription.clone();
    sending.period.in_doubt = true;
    sending.period.sent_ms = Some(now);
    let sending = match save(
        gateway,
        sending,
        "subscription.charge_sent",
        &Cause::Scheduler,
        Some(out_trade_no.to_string()),
    )
    .await?
    {
        Saved::Written(saved) => saved,
        Saved::Stale(_) => return Ok(None),
    };
    let settings = gateway.config.channel(channel.id);
    let request = AlipayRequest::AgreementPay {
        out_trade_no: out_trade_no.clone(),
        total_amount: subscription.plan.amount,
        subject: subscription.subject.clone(),
        agreement_no,
        product_code: settings
            .map(|s| s.agreement_product_code.clone())
            .unwrap_or_else(|| "GENERAL_WITHHOLDING".into()),
        settle_currency: settings
            .and_then(|s| s.settle_currency)
            .map(|c| c.code().to_owned()),
    };
    run.alipay_calls += 1;
    let answer = channel.call_before(&request, deadline).await;
    let sent_at = now_ms();
    let answer = match answer {
        Ok(answer) => Some(answer),
        Err(CallError::Open { .. }) => {
            // Not sent: the breaker refused it. Nothing is in doubt.
            let mut back = sending.clone();
            back.period.in_doubt = false;
            return Ok(Some((back, "subscription.charge_deferred", None)));
        }
        Err(_) => None,
    };
    let class = classify_charge(answer.as_ref().map(Reply::of));
    let mut next = sending.clone();
    if class == ChargeClass::Paid {
        // The answer proves it; the payment is recorded through the notification's path.
        let result = answer
            .as_ref()
            .and_then(|a| a.parse::<PayResult>(request.method()).ok())
            .filter(|r| r.out_trade_no == out_trade_no.as_str())
            .map(|r| TradeReport {
                settlement: domain::reports::settlement(&r.cross_border),
                ..TradeReport::paid_by_answer(
                    &r.trade_no,
                    r.total_amount,
                    r.gmt_payment.as_deref(),
                    r.buyer_user_id.as_deref(),
                )
            });
        if let Some(report) = result
            && paid(gateway, &out_trade_no, &report, "alipay.trade.pay").await?
        {
            let end = PeriodEnd::Paid;
            end_period(gateway, channel, &mut next, &end, deadline, run).await?;
            return Ok(Some((next, period_kind(&end), Some(end_code(&end)))));
        }
        // Paid without the trade's fields (`ACQ.TRADE_HAS_SUCCESS`): asked about.
        return Ok(Some((next, "subscription.charge_in_doubt", None)));
    }
    match after_charge(&sending.period, &class, &dunning, sent_at) {
        PeriodChange::Continue(period) => {
            let refused = period.refusals > sending.period.refusals;
            next.period = period;
            if refused {
                run.refusals += 1;
                next.status = after_refusal(next.status);
                let code = match &class {
                    ChargeClass::Soft(code) | ChargeClass::Risk(code) => code.clone(),
                    _ => String::new(),
                };
                Ok(Some((next, "subscription.charge_refused", Some(code))))
            } else {
                Ok(Some((next, "subscription.charge_in_doubt", None)))
            }
        }
        PeriodChange::End(end) => {
            end_period(gateway, channel, &mut next, &end, deadline, run).await?;
            Ok(Some((next, period_kind(&end), Some(end_code(&end)))))
        }
    }
}

/// How often a period waiting at the cashier is looked at again (its payment is recorded by
/// its notification meanwhile; the period ends at the next look).
const CASHIER_LOOK_MS: i64 = 15 * 60_000;

/// A stepped-up period: marked as paid at the cashier (`subscription.action_required`: the
/// merchant sends its customer the URL [`cashier_url`] signs); once marked, the period waits for
/// its order to be paid (its notification records it) or closed at its window's end.
async fn to_cashier(
    gateway: &Gateway,
    subscription: &Subscription,
    order: &domain::states::Order,
) -> Result<Option<(Subscription, &'static str, Option<String>)>, StoreError> {
    if subscription.period.at_cashier {
        wait(gateway, subscription.clone(), CASHIER_LOOK_MS).await?;
        return Ok(None);
    }
    let mut next = subscription.clone();
    next.period.at_cashier = true;
    Ok(Some((
        next,
        "subscription.cashier_required",
        Some(order.out_trade_no.to_string()),
    )))
}

/// The cashier URL of a stepped-up period, signed now (a signed request is good for minutes,
/// so it is signed when asked for, never stored): `alipay.trade.page.pay` for the period's
/// order with `ext_user_info` (Alipay checks the payer's real name and `min_age`).
pub async fn cashier_url(
    gateway: &Gateway,
    id: &ExternalAgreementNo,
) -> Result<String, SubscriptionError> {
    let subscription = get(gateway, id).await?;
    let not_at_cashier =
        || SubscriptionError::Conflict("the current period is not paid at the cashier".into());
    let out_trade_no = subscription
        .period_trade_no()
        .filter(|_| subscription.period.at_cashier)
        .ok_or_else(not_at_cashier)?;
    let order = gateway
        .store
        .get_order(&out_trade_no)
        .await?
        .filter(|o| o.status == OrderStatus::Created)
        .ok_or_else(not_at_cashier)?;
    let min_age = order.decision.as_ref().and_then(|d| d.min_age);
    let channel = gateway
        .channel(subscription.alipay_channel)
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    let request = AlipayRequest::PagePay {
        order: alipay::request::PaymentOrder {
            out_trade_no,
            total_amount: subscription.plan.amount,
            subject: subscription.subject.clone(),
            time_expire: order
                .time_expire
                .as_deref()
                .and_then(|at| ChinaDateTime::parse(at).ok()),
            identity_check: min_age.map(|min_age| alipay::request::IdentityCheck { min_age }),
        },
        return_url: None,
    };
    let signed = channel
        .sign(&request)
        .await
        .map_err(|e| SubscriptionError::Unavailable(e.to_string()))?;
    Ok(signed.gateway_url(channel.client.gateway_url()))
}

/// The period's order, created if it is not there yet (fraud counters included).
async fn period_order(
    gateway: &Gateway,
    subscription: &Subscription,
    out_trade_no: &OutTradeNo,
    now: i64,
) -> Result<domain::states::Order, StoreError> {
    if let Some(order) = gateway.store.get_order(out_trade_no).await? {
        return Ok(order);
    }
    let dunning = gateway.config.dunning;
    let closes_ms = dunning.closed_at_ms(subscription.period.date);
    let expiry = ChinaDateTime::parse(&china_timestamp(closes_ms / 1000 - 1))
        .map_err(|e| StoreError::Corrupt(e.0.into()))?;
    let new = NewOrder {
        out_trade_no: out_trade_no.clone(),
        amount: subscription.plan.amount.into(),
        subject: subscription.subject.clone(),
        channel: Cashier::Agreement,
        return_url: None,
        time_expire: Some(expiry.clone()),
        customer_ref: subscription.customer_ref.clone(),
        virtual_goods: false,
        alipay_channel: subscription.alipay_channel,
    };
    let due = closes_ms + gateway.config.lifecycle.expiry_grace_ms;
    create_order(gateway, &new, &expiry, due, &Cause::Scheduler, now).await
}

/// A period's order (a payment like any other): screened and decided by the risk rules (the
/// merchant's customer; no buyer IP, the buyer is not there) and counted, then created, or
/// found when a retry created it. A block is recorded (audit, journal) and refuses the charge;
/// a review creates it held (charged, not to be delivered until released); a step-up sends the
/// period to Alipay's cashier instead of the agreement ([`to_cashier`]).
async fn create_order(
    gateway: &Gateway,
    new: &NewOrder,
    expiry: &ChinaDateTime,
    due_at_ms: i64,
    cause: &Cause,
    now: i64,
) -> Result<domain::states::Order, StoreError> {
    // A step-up of an agreement charge sends it to the cashier, which carries Alipay's check.
    let facts = crate::risk::Facts {
        can_step_up: true,
        ..crate::risk::Facts::default()
    };
    match crate::risk::create_screened(gateway, new, expiry, due_at_ms, cause, now, &facts).await? {
        crate::risk::Screened::Created(created) => match *created {
            Created::New(order) | Created::Existing(order) => Ok(order),
        },
        crate::risk::Screened::Refused {
            decision,
            rule,
            message,
        } => {
            crate::risk::record_refusal(gateway, new, cause, &decision, now).await;
            Err(StoreError::RiskRefused { rule, message })
        }
    }
}

/// Records the period's payment as Alipay reported it (amount checked there). `false`: the
/// report was refused (a mismatch, in the audit trail).
async fn paid(
    gateway: &Gateway,
    out_trade_no: &OutTradeNo,
    report: &TradeReport,
    method: &str,
) -> Result<bool, StoreError> {
    let Some(order) = gateway.store.get_order(out_trade_no).await? else {
        return Ok(false);
    };
    let cause = Cause::AlipayAnswer {
        method: method.to_owned(),
    };
    Ok(matches!(
        apply_paid_because(gateway, order, report, &cause).await?,
        Ended::Paid(_)
    ))
}

/// `alipay.trade.query` about the period's trade in doubt.
async fn query_charge(
    gateway: &Gateway,
    subscription: &Subscription,
    channel: &Channel,
    deadline: &Deadline,
) -> Result<PeriodChange, StoreError> {
    let dunning = gateway.config.dunning;
    let Some(out_trade_no) = subscription.period_trade_no() else {
        return Ok(PeriodChange::Continue(subscription.period.clone()));
    };
    let request = AlipayRequest::Query {
        trade: TradeRef::OutTradeNo(out_trade_no.clone()),
    };
    let answer = channel.call_before(&request, deadline).await.ok();
    let result = answer
        .as_ref()
        .filter(|a| a.signed && a.status.code == "10000")
        .and_then(|a| a.parse::<QueryResult>(request.method()).ok())
        .filter(|r| r.out_trade_no == out_trade_no.as_str());
    let status = result
        .as_ref()
        .and_then(|r| TradeStatus::parse(&r.trade_status));
    // A success that cannot be read proves nothing.
    let trusted = answer
        .as_ref()
        .filter(|a| a.status.code != "10000" || status.is_some());
    let change = after_charge_query(
        &subscription.period,
        trusted.map(Reply::of),
        status,
        &dunning,
        now_ms(),
    );
    if let (PeriodChange::End(PeriodEnd::Paid), Some(result), Some(status)) =
        (&change, &result, status)
    {
        let report = TradeReport::from_query(result, status);
        if !paid(gateway, &out_trade_no, &report, request.method()).await? {
            return Ok(PeriodChange::Continue(subscription.period.clone()));
        }
    }
    Ok(change)
}

/// Ends the current period: a trade still in doubt is cancelled at Alipay (so that it cannot
/// be paid late), an unpaid period's order closed, the subscription's state moved on, and the
/// next period set up.
async fn end_period(
    gateway: &Gateway,
    channel: &Channel,
    subscription: &mut Subscription,
    end: &PeriodEnd,
    deadline: &Deadline,
    run: &mut ChargeRun,
) -> Result<(), StoreError> {
    let now = now_ms();
    let out_trade_no = subscription.period_trade_no();
    if *end == PeriodEnd::Paid {
        run.periods_paid += 1;
        subscription.charged = subscription
            .charged
            .checked_add(subscription.plan.amount)
            .unwrap_or(subscription.charged);
        subscription.charges += 1;
    } else {
        run.periods_unpaid += 1;
        if let Some(out_trade_no) = &out_trade_no {
            if subscription.period.in_doubt {
                run.alipay_calls += 1;
                let request = AlipayRequest::Cancel {
                    trade: TradeRef::OutTradeNo(out_trade_no.clone()),
                };
                let _ = channel.call_before(&request, deadline).await;
            }
            if let Some(order) = gateway.store.get_order(out_trade_no).await?
                && order.status == OrderStatus::Created
            {
                let _ = gateway
                    .store
                    .close(out_trade_no, None, &Cause::Scheduler, now)
                    .await;
            }
        }
    }
    subscription.period.in_doubt = false;
    let n = subscription.period.n;
    // A subscription canceled (or paused) while its charge was in doubt stays so: the period
    // is only settled.
    if !subscription.status.charges() {
        subscription.last_period_end = Some(end_code(end));
        return Ok(());
    }
    subscription.status = after_period_end(&subscription.plan, n, end);
    subscription.last_period_end = Some(end_code(end));
    if let PeriodEnd::AgreementStopped { code } = end
        && (code.starts_with("ACQ.AGREEMENT") || code == "AGREEMENT_STOPPED")
    {
        subscription.agreement_status = AgreementStatus::Stop;
    }
    if subscription.status == SubscriptionStatus::Canceled {
        run.canceled += 1;
    } else if !subscription.next_period(end) {
        subscription.status = SubscriptionStatus::Canceled;
    }
    Ok(())
}
