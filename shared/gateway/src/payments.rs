//! Payments after their creation: accepting the trade states Alipay reports (a notification, a
//! query answer: [`apply_trade_report`] writes what `domain::reports` decides), and ending unpaid
//! orders with the decisions of `domain::lifecycle` (close at Alipay, or ask what became of
//! them, then close here or apply the payment Alipay reports). The close route starts by
//! closing; the sweeper, for an order past its `time_expire`, by asking.

use alipay::china_time::ChinaDateTime;
use alipay::notify::TradeStatus;
use alipay::request::{AlipayRequest, TradeRef};
use alipay::response::{QueryResult, VerifiedResponse};
use domain::lifecycle::{Reply, TradeNext, after_trade_close, after_trade_query};
use domain::reports::{ReportEffect, TradeReport, auto_refund, effect_on};
use domain::risk::Rules;
use domain::states::{Cause, Order, OrderStatus, PaidRisk, Payment};
use store::{AuditEvent, Store, StoreError, Transition};

use crate::channel::Channel;
use crate::channel::client::CallError;
use crate::clock::now_ms;
use crate::config::Lifecycle;
use crate::deadline::{ANSWER_RESERVE, Deadline};
use crate::provider::{Closing, Provider};
use crate::startup::Gateway;

// ---- accepting what Alipay reports ----------------------------------------------------------

/// What applying a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed(Order),
    /// Nothing to change: a duplicate, or a state that needs no change (`WAIT_BUYER_PAY`, a
    /// `TRADE_CLOSED` after a full refund).
    Unchanged(Order),
}

impl Applied {
    pub fn into_order(self) -> Order {
        match self {
            Applied::Changed(order) | Applied::Unchanged(order) => order,
        }
    }
}

/// Why a verified report was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies a verified trade report to an order, as `domain::reports::effect_on` decides:
/// mismatches and refused transitions are written to the audit trail; a genuine payment for an
/// order we closed is recorded (the money is real) and, when so configured, refunded in full
/// through the normal refund path (the sweeper sends it).
pub async fn apply_trade_report(
    store: &Store,
    lifecycle: &Lifecycle,
    rules: &Rules,
    order: &Order,
    report: &TradeReport,
    cause: &Cause,
    now_ms: i64,
) -> Result<Applied, ApplyError> {
    let result = match effect_on(order, report) {
        ReportEffect::Mismatch(detail) => {
            return Err(record_mismatch(store, order, cause, now_ms, detail).await);
        }
        ReportEffect::MarkPaid => {
            let mut payment = report.payment_for(order);
            payment.risk = paid_risk(store, rules, order, report).await?;
            match store.mark_paid_from(order, &payment, cause, now_ms).await {
                // Closed here meanwhile: the payment after close it then is.
                Err(StoreError::IllegalTransition { from, .. })
                    if from == OrderStatus::Closed.as_str() =>
                {
                    paid_after_close(store, lifecycle, order, &payment, cause, now_ms).await
                }
                other => other,
            }
        }
        ReportEffect::PaidAfterClose => {
            let payment = report.payment_for(order);
            paid_after_close(store, lifecycle, order, &payment, cause, now_ms).await
        }
        ReportEffect::Close => store.close(&order.out_trade_no, None, cause, now_ms).await,
        ReportEffect::Nothing => Ok(Transition::Duplicate(order.clone())),
    };
    match result {
        Ok(Transition::Applied(order)) => Ok(Applied::Changed(order)),
        Ok(Transition::Duplicate(order)) => Ok(Applied::Unchanged(order)),
        Err(error @ (StoreError::IllegalTransition { .. } | StoreError::Conflict(_))) => {
            let detail = format!(
                "{} reported {}: {error}",
                report.trade_no,
                report.trade_status.as_str()
            );
            Err(record_mismatch(store, order, cause, now_ms, detail).await)
        }
        Err(error) => Err(ApplyError::Store(error)),
    }
}

/// The after-payment fraud checks of a payment about to be recorded (not of a repeat): one
/// read of the customer's history and the buyer's customers. A flag never refuses the payment.
async fn paid_risk(
    store: &Store,
    rules: &Rules,
    order: &Order,
    report: &TradeReport,
) -> Result<Option<PaidRisk>, StoreError> {
    let checked = rules.buyer_max_customers.is_some() || rules.history_factor.is_some();
    let Some(customer) = order.customer_ref.as_deref().filter(|_| checked) else {
        return Ok(None);
    };
    // A repeat (already paid) is not judged again; a payment after close is refunded in full
    // by default and recorded without the checks.
    if order.status != OrderStatus::Created {
        return Ok(None);
    }
    let customer = domain::risk::digest("customer", customer);
    let history = store
        .risk_history(&customer, report.buyer_key.as_deref())
        .await?;
    let amount = domain::risk::cny_part(report.total_amount);
    let flags = domain::risk::assess_paid(rules, &customer, amount, &history);
    if !flags.is_empty() {
        tracing::warn!(out_trade_no = %order.out_trade_no, rules = ?flags, "payment flagged by the fraud checks");
    }
    Ok(Some(PaidRisk {
        rules: flags.into_iter().map(str::to_owned).collect(),
        customer,
        buyer: report.buyer_key.clone(),
    }))
}

/// A genuine payment for a CLOSED order: recorded with a security-style warning (it alarms),
/// and by default its whole amount reserved for an automatic refund.
async fn paid_after_close(
    store: &Store,
    lifecycle: &Lifecycle,
    order: &Order,
    payment: &Payment,
    cause: &Cause,
    now_ms: i64,
) -> Result<Transition<Order>, StoreError> {
    // The order as it is now (it may have changed since the caller read it).
    let current = store
        .get_order(&order.out_trade_no)
        .await?
        .ok_or_else(|| StoreError::OrderNotFound(order.out_trade_no.to_string()))?;
    if current.status != OrderStatus::Closed {
        return store.mark_paid_from(&current, payment, cause, now_ms).await;
    }
    let refund = lifecycle
        .auto_refund_paid_after_close
        .then(|| auto_refund(payment, current.alipay_channel))
        .flatten();
    tracing::warn!(
        security = true,
        out_trade_no = %order.out_trade_no,
        trade_no = %payment.trade_no,
        amount = %payment.amount,
        auto_refund = refund.is_some(),
        "payment received for a closed order"
    );
    store
        .mark_paid_after_close(
            &current,
            payment,
            refund.as_ref().map(|r| (r, now_ms)),
            cause,
            now_ms,
        )
        .await
}

/// Records a refused report in the audit trail and logs it as a security warning. If the
/// record cannot be written, that is the error returned (so the caller answers with a retry).
async fn record_mismatch(
    store: &Store,
    order: &Order,
    cause: &Cause,
    now_ms: i64,
    detail: String,
) -> ApplyError {
    tracing::warn!(
        security = true,
        out_trade_no = %order.out_trade_no,
        detail = %detail,
        "Alipay report refused"
    );
    let event = AuditEvent::new("alipay.report_refused", cause, now_ms).detail(detail.clone());
    match store.record_event(&order.out_trade_no, &event).await {
        Ok(()) => ApplyError::Mismatch(detail),
        Err(error) => ApplyError::Store(error),
    }
}

// ---- ending unpaid orders ---------------------------------------------------------------

/// At most this many Alipay calls per attempt (close, query, close again).
const MAX_CALLS: u32 = 3;

/// How an attempt to end an order went.
#[derive(Clone, Debug)]
pub enum Ended {
    /// Closed (here, and at Alipay when Alipay had the trade).
    Closed(Order),
    /// Alipay says it was paid: the payment is applied.
    Paid(Order),
    /// Not decided now (Alipay unreachable, or busy); the order is unchanged.
    Open { order: Order, reason: String },
}

/// Drives `order` (CREATED) from `start`: [`TradeNext::CloseAtAlipay`] or [`TradeNext::Query`].
#[tracing::instrument(skip_all, fields(out_trade_no = %order.out_trade_no))]
pub async fn end_unpaid_order<P: Provider>(
    gateway: &Gateway,
    provider: &P,
    order: Order,
    start: TradeNext,
    cause: &Cause,
    deadline: &Deadline,
) -> Result<Ended, StoreError> {
    let mut next = start;
    let mut calls = 0;
    let mut report = None;
    let mut unknown_at_alipay = false;
    let mut reason = String::from("Alipay could not be asked");
    loop {
        if order.status != OrderStatus::Created {
            return Ok(match order.status {
                OrderStatus::Closed => Ended::Closed(order),
                _ => Ended::Paid(order),
            });
        }
        next = match next {
            // The limit is on calls only: a signed "paid" already held, or a close already
            // decided, is acted on whatever the count.
            TradeNext::CloseAtAlipay | TradeNext::Query if calls >= MAX_CALLS => TradeNext::Wait,
            TradeNext::CloseAtAlipay => {
                calls += 1;
                let closing = provider.close_trade(&order, deadline).await;
                if let Some(why) = closing.reason {
                    reason = why;
                }
                unknown_at_alipay = closing.unknown_at_provider;
                closing.next
            }
            TradeNext::Query => {
                calls += 1;
                let queried = provider.query_trade(&order, deadline).await;
                unknown_at_alipay = queried.unknown_at_alipay;
                if let Some(why) = queried.reason {
                    reason = why;
                }
                report = queried.report;
                queried.next
            }
            TradeNext::ApplyPaid => {
                let cause = Cause::AlipayAnswer {
                    method: provider.names().query.into(),
                };
                return match report.take() {
                    Some(report) => apply_paid_because(gateway, order, &report, &cause).await,
                    None => Ok(Ended::Open { order, reason }),
                };
            }
            TradeNext::CloseLocally => {
                // Alipay never knew the trade and its time_expire is still ahead: anyone holding
                // the signed URL can still pay, so the sweeper asks again after it.
                let recheck = (unknown_at_alipay && order_expiry_ms(&order) > now_ms())
                    .then(|| order_expiry_ms(&order) + gateway.config.lifecycle.expiry_grace_ms);
                let closed = deadline
                    .bound(
                        ANSWER_RESERVE,
                        gateway
                            .store
                            .close(&order.out_trade_no, recheck, cause, now_ms()),
                    )
                    .await
                    .ok_or_else(|| StoreError::Unavailable("no time left to close".into()))?;
                return match closed {
                    Ok(transition) => Ok(Ended::Closed(transition.into_inner())),
                    // Paid in the meantime (a notification won the race): say so.
                    Err(StoreError::IllegalTransition { .. }) => {
                        let current = gateway
                            .store
                            .get_order(&order.out_trade_no)
                            .await?
                            .ok_or_else(|| {
                                StoreError::OrderNotFound(order.out_trade_no.to_string())
                            })?;
                        Ok(if current.status == OrderStatus::Closed {
                            Ended::Closed(current)
                        } else {
                            Ended::Paid(current)
                        })
                    }
                    Err(error) => Err(error),
                };
            }
            TradeNext::Wait => return Ok(Ended::Open { order, reason }),
        };
    }
}

/// A signed `ACQ.TRADE_NOT_EXIST`: Alipay has no such trade (yet).
fn not_exist(answer: &VerifiedResponse) -> bool {
    answer.signed && answer.status.sub_code.as_deref() == Some("ACQ.TRADE_NOT_EXIST")
}

/// The order's `time_expire` in Unix ms (0 when unknown: it is then treated as past).
pub fn order_expiry_ms(order: &Order) -> i64 {
    order
        .time_expire
        .as_deref()
        .and_then(|text| ChinaDateTime::parse(text).ok())
        .map_or(0, |at| at.unix_seconds() * 1000)
}

/// A CLOSED order kept due because Alipay never knew it when it was closed: after its
/// `time_expire`, ask once more. Paid meanwhile → the payment is recorded (and refunded, by the
/// paid-after-close path). Waiting for the buyer at Alipay (the buyer opened the cashier after
/// our close, and Alipay's clock has not passed `time_expire` yet) → closed there, and watched
/// until Alipay confirms. Closed there, or still unknown there → it needs no more attention.
pub async fn recheck_closed_order<P: Provider>(
    gateway: &Gateway,
    provider: &P,
    order: Order,
    deadline: &Deadline,
) -> Result<Ended, StoreError> {
    let queried = provider.query_trade(&order, deadline).await;
    let next = match (queried.next, queried.report) {
        (TradeNext::ApplyPaid, Some(report)) => {
            let cause = Cause::AlipayAnswer {
                method: provider.names().query.into(),
            };
            return apply_paid_because(gateway, order, &report, &cause).await;
        }
        (TradeNext::CloseAtAlipay, _) => provider.close_trade(&order, deadline).await.next,
        (next, _) => next,
    };
    match next {
        // Closed at Alipay, or still unknown there after time_expire: nothing can pay it now.
        TradeNext::CloseLocally => {
            gateway.store.clear_due(&order.out_trade_no).await?;
            Ok(Ended::Closed(order))
        }
        // Anything undecided keeps it due: the sweeper asks again after its backoff.
        _ => Ok(Ended::Open {
            order,
            reason: queried
                .reason
                .unwrap_or_else(|| "Alipay has not confirmed it closed".into()),
        }),
    }
}

/// `alipay.trade.close`, decided.
pub(crate) async fn close_at_alipay(
    alipay: &Channel,
    order: &Order,
    deadline: &Deadline,
) -> Closing {
    let request = AlipayRequest::Close {
        trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
    };
    let answer = alipay.call_before(&request, deadline).await;
    let reason = unanswered(&answer);
    let answer = answer.ok();
    Closing {
        next: after_trade_close(answer.as_ref().map(Reply::of)),
        unknown_at_provider: answer.as_ref().is_some_and(not_exist),
        reason,
    }
}

/// What `alipay.trade.query` said about an order, read and decided.
pub struct Queried {
    pub next: TradeNext,
    /// The trade as Alipay reported it, from a signed answer about this very order.
    pub report: Option<TradeReport>,
    /// Alipay answered a signed `ACQ.TRADE_NOT_EXIST`.
    pub unknown_at_alipay: bool,
    /// Why nothing could be decided, when that is so.
    pub reason: Option<String>,
}

/// `alipay.trade.query` for `order`, within the deadline. A success that cannot be read, or
/// that is about another trade, proves nothing.
pub async fn query_trade(alipay: &Channel, order: &Order, deadline: &Deadline) -> Queried {
    let request = AlipayRequest::Query {
        trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
    };
    let answer = alipay.call_before(&request, deadline).await;
    let reason = unanswered(&answer);
    let answer = answer.ok();
    let result = answer
        .as_ref()
        .filter(|a| a.signed && a.status.code == "10000")
        .and_then(|a| a.parse::<QueryResult>(request.method()).ok())
        .filter(|r| r.out_trade_no == order.out_trade_no.as_str());
    let status = result
        .as_ref()
        .and_then(|r| TradeStatus::parse(&r.trade_status));
    let trusted = answer
        .as_ref()
        .filter(|a| a.status.code != "10000" || status.is_some());
    Queried {
        next: after_trade_query(trusted.map(Reply::of), status),
        report: result
            .zip(status)
            .map(|(result, trade_status)| TradeReport::from_query(&result, trade_status)),
        unknown_at_alipay: answer.as_ref().is_some_and(not_exist),
        reason,
    }
}

/// Applies a paid report from a trade query (the amount is checked there).
pub async fn apply_paid(
    gateway: &Gateway,
    order: Order,
    report: &TradeReport,
) -> Result<Ended, StoreError> {
    let cause = Cause::AlipayAnswer {
        method: "alipay.trade.query".into(),
    };
    apply_paid_because(gateway, order, report, &cause).await
}

/// As [`apply_paid`], recorded as caused by `cause` (the reconciliation, say).
pub async fn apply_paid_because(
    gateway: &Gateway,
    order: Order,
    report: &TradeReport,
    cause: &Cause,
) -> Result<Ended, StoreError> {
    let lifecycle = &gateway.config.lifecycle;
    let in_force = gateway.rules_in_force().await;
    match apply_trade_report(
        &gateway.store,
        lifecycle,
        &in_force.rules,
        &order,
        report,
        cause,
        now_ms(),
    )
    .await
    {
        Ok(applied) => Ok(Ended::Paid(applied.into_order())),
        Err(ApplyError::Mismatch(detail)) => Ok(Ended::Open {
            order,
            reason: detail,
        }),
        Err(ApplyError::Store(error)) => Err(error),
    }
}

/// Why an answer decides nothing: no answer, or an error answer.
fn unanswered(answer: &Result<VerifiedResponse, CallError>) -> Option<String> {
    match answer {
        Ok(answer) if answer.status.code == "10000" => None,
        Ok(answer) => Some(format!(
            "Alipay answered {} {}",
            answer.status.code,
            answer.status.sub_code.as_deref().unwrap_or("")
        )),
        Err(error) => Some(error.to_string()),
    }
}
