//! Ends an unpaid order with the decisions of [`crate::lifecycle`]: close it at Alipay, or ask
//! Alipay what became of it, then close it here or apply the payment Alipay reports. The close
//! route starts by closing; the sweeper, for an order past its `time_expire`, by asking.

use crate::alipay::notify::TradeStatus;
use crate::alipay::request::{AlipayRequest, TradeRef};
use crate::alipay::response::{QueryResult, VerifiedResponse};
use crate::alipay_client::CallError;
use crate::budget::{ANSWER_RESERVE, Deadline, MIN_CALL, STORE_STEP};
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
            _ if calls >= MAX_CALLS => TradeNext::Wait,
            TradeNext::CloseAtAlipay => {
                calls += 1;
                let request = AlipayRequest::Close {
                    trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
                };
                let answer = call(alipay, &request, deadline, &mut reason).await;
                unknown_at_alipay = answer.as_ref().is_some_and(not_exist);
                after_trade_close(answer.as_ref().map(reply))
            }
            TradeNext::Query => {
                calls += 1;
                let request = AlipayRequest::Query {
                    trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
                };
                let answer = call(alipay, &request, deadline, &mut reason).await;
                unknown_at_alipay = answer.as_ref().is_some_and(not_exist);
                let result = answer
                    .as_ref()
                    .filter(|a| a.signed && a.status.code == "10000")
                    .and_then(|a| a.parse::<QueryResult>(request.method()).ok())
                    .filter(|r| r.out_trade_no == order.out_trade_no.as_str());
                let status = result
                    .as_ref()
                    .and_then(|r| TradeStatus::parse(&r.trade_status));
                report = result
                    .zip(status)
                    .map(|(result, trade_status)| TradeReport {
                        trade_no: result.trade_no,
                        trade_status,
                        total_amount: result.total_amount,
                        paid_at: result.send_pay_date,
                        buyer_id_masked: result.buyer_user_id.as_deref().map(mask_buyer_id),
                    });
                // A success we could not read (or about another trade) proves nothing.
                let trusted = answer
                    .as_ref()
                    .filter(|a| a.status.code != "10000" || status.is_some());
                after_trade_query(trusted.map(reply), status)
            }
            TradeNext::ApplyPaid => {
                let Some(report) = report.take() else {
                    return Ok(Ended::Open { order, reason });
                };
                let cause = Cause::AlipayAnswer {
                    method: "alipay.trade.query".into(),
                };
                let lifecycle = &gateway.config.lifecycle;
                return match apply_trade_report(
                    &gateway.store,
                    lifecycle,
                    &order,
                    &report,
                    &cause,
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
fn order_expiry_ms(order: &Order) -> i64 {
    order
        .time_expire
        .as_deref()
        .and_then(|text| ChinaDateTime::parse(text).ok())
        .map_or(0, |at| at.unix_seconds() * 1000)
}

/// A CLOSED order kept due because Alipay never knew it when it was closed: after its
/// `time_expire`, ask once more. Paid meanwhile → the payment is recorded (and refunded, by the
/// paid-after-close path); otherwise it needs no more attention.
pub async fn recheck_closed_order(
    gateway: &Gateway,
    alipay: &Alipay,
    order: Order,
    deadline: &Deadline,
) -> Result<Ended, StoreError> {
    let request = AlipayRequest::Query {
        trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
    };
    let mut reason = String::new();
    let answer = call(alipay, &request, deadline, &mut reason).await;
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
    match after_trade_query(trusted.map(reply), status) {
        TradeNext::ApplyPaid => {
            let Some((result, trade_status)) = result.zip(status) else {
                return Ok(Ended::Open { order, reason });
            };
            let report = TradeReport {
                trade_no: result.trade_no,
                trade_status,
                total_amount: result.total_amount,
                paid_at: result.send_pay_date,
                buyer_id_masked: result.buyer_user_id.as_deref().map(mask_buyer_id),
            };
            let cause = Cause::AlipayAnswer {
                method: request.method().into(),
            };
            match apply_trade_report(
                &gateway.store,
                &gateway.config.lifecycle,
                &order,
                &report,
                &cause,
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
        TradeNext::Wait => Ok(Ended::Open { order, reason }),
        // Closed at Alipay, or still unknown there after time_expire: nothing can pay it now.
        _ => {
            gateway.store.clear_due(&order.out_trade_no).await?;
            Ok(Ended::Closed(order))
        }
    }
}

fn reply(answer: &VerifiedResponse) -> Reply<'_> {
    Reply {
        status: &answer.status,
        signed: answer.signed,
    }
}

async fn call(
    alipay: &Alipay,
    request: &AlipayRequest,
    deadline: &Deadline,
    reason: &mut String,
) -> Option<VerifiedResponse> {
    let Some(limit) = deadline.for_step(STORE_STEP + ANSWER_RESERVE, MIN_CALL) else {
        *reason = "no time left to ask Alipay".into();
        return None;
    };
    match alipay
        .client
        .call_within(request, alipay.signer.as_ref(), now_ms(), limit)
        .await
    {
        Ok(answer) => {
            if answer.status.code != "10000" {
                *reason = format!(
                    "Alipay answered {} {}",
                    answer.status.code,
                    answer.status.sub_code.as_deref().unwrap_or("")
                );
            }
            Some(answer)
        }
        Err(error) => {
            if matches!(error, CallError::Untrusted(_)) {
                tracing::warn!(security = true, error = %error, "Alipay answer refused");
            } else {
                tracing::warn!(error = %error, "Alipay call failed");
            }
            *reason = error.to_string();
            None
        }
    }
}
