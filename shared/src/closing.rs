//! Ends an unpaid order with the decisions of [`crate::lifecycle`]: close it at Alipay, or ask
//! Alipay what became of it, then close it here or apply the payment Alipay reports. The close
//! route starts by closing; the sweeper, for an order past its `time_expire`, by asking.

use crate::alipay::notify::TradeStatus;
use crate::alipay::request::{AlipayRequest, TradeRef};
use crate::alipay::response::{QueryResult, VerifiedResponse};
use crate::alipay_client::CallError;
use crate::budget::{ANSWER_RESERVE, Deadline};
use crate::china_time::ChinaDateTime;
use crate::domain::{Cause, Order, OrderStatus};
use crate::gateway::{Alipay, ApplyError, Gateway, TradeReport, apply_trade_report, now_ms};
use crate::ids::mask_buyer_id;
use crate::lifecycle::{Reply, TradeNext, after_trade_close, after_trade_query};
use crate::store::StoreError;

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
pub async fn end_unpaid_order(
    gateway: &Gateway,
    alipay: &Alipay,
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
                let request = AlipayRequest::Close {
                    trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
                };
                let answer = alipay.call_before(&request, deadline).await;
                if let Some(why) = unanswered(&answer) {
                    reason = why;
                }
                let answer = answer.ok();
                unknown_at_alipay = answer.as_ref().is_some_and(not_exist);
                after_trade_close(answer.as_ref().map(Reply::of))
            }
            TradeNext::Query => {
                calls += 1;
                let queried = query_trade(alipay, &order, deadline).await;
                unknown_at_alipay = queried.unknown_at_alipay;
                if let Some(why) = queried.reason {
                    reason = why;
                }
                report = queried.report;
                queried.next
            }
            TradeNext::ApplyPaid => {
                return match report.take() {
                    Some(report) => apply_paid(gateway, order, &report).await,
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
pub async fn recheck_closed_order(
    gateway: &Gateway,
    alipay: &Alipay,
    order: Order,
    deadline: &Deadline,
) -> Result<Ended, StoreError> {
    let queried = query_trade(alipay, &order, deadline).await;
    let next = match (queried.next, queried.report) {
        (TradeNext::ApplyPaid, Some(report)) => return apply_paid(gateway, order, &report).await,
        (TradeNext::CloseAtAlipay, _) => close_at_alipay(alipay, &order, deadline).await,
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

/// `alipay.trade.close` of a trade Alipay says is waiting for the buyer, decided.
async fn close_at_alipay(alipay: &Alipay, order: &Order, deadline: &Deadline) -> TradeNext {
    let request = AlipayRequest::Close {
        trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
    };
    let answer = alipay.call_before(&request, deadline).await.ok();
    after_trade_close(answer.as_ref().map(Reply::of))
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
pub async fn query_trade(alipay: &Alipay, order: &Order, deadline: &Deadline) -> Queried {
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
            .map(|(result, trade_status)| TradeReport {
                trade_no: result.trade_no,
                trade_status,
                total_amount: result.total_amount,
                paid_at: result.send_pay_date,
                buyer_id_masked: result.buyer_user_id.as_deref().map(mask_buyer_id),
                buyer_key: result
                    .buyer_user_id
                    .as_deref()
                    .map(|id| crate::risk::digest("buyer", id)),
            }),
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
    match apply_trade_report(
        &gateway.store,
        lifecycle,
        &gateway.config.risk,
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
