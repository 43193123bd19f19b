//! Refunds after their reservation: driving a PENDING refund towards its end with the
//! decisions of `domain::lifecycle` (send, claimed first so two senders never send at once;
//! query; settle), where a request or the sweeper picks one up, and Alipay's refund notices. The
//! refund function drives a refund it has just reserved; the sweeper one that was interrupted.
//! Nothing here returns an error: whatever goes wrong leaves the refund PENDING with its money
//! reserved, and says why, for the sweeper to finish later.

use alipay::ids::{OutRequestNo, OutTradeNo};
use alipay::money::Amount;
use alipay::notify::TradeNotification;
use alipay::request::{AlipayRequest, TradeRef};
use alipay::response::{RefundQueryResult, RefundResult};
use domain::lifecycle::{
    RefundNext, RefundQueryAnswer, Reply, SinceSend, after_refund_query, after_refund_send,
    resume_refund,
};
use domain::states::{Cause, Refund, RefundOutcome, RefundStatus};
use store::{AuditEvent, SendClaim, Settlement, Store, StoreError};

use crate::channel::Channel;
use crate::channel::client::CallError;
use crate::clock::now_ms;
use crate::deadline::{ANSWER_RESERVE, Deadline, MIN_CALL, STORE_STEP, seconds_after};
use crate::provider::Provider;
use crate::startup::Gateway;

/// At most this many Alipay calls per drive; what remains is the sweeper's.
const MAX_CALLS: u32 = 3;

/// Why a refund is still PENDING after a drive, for the merchant and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub code: &'static str,
    pub message: String,
    /// When it is worth asking again, in seconds.
    pub retry_after: u32,
}

/// The refund as it now stands, and why it is still pending when it is.
#[derive(Clone, Debug)]
pub struct Driven {
    pub refund: Refund,
    pub pending: Option<Pending>,
}

/// The pending reason while the refund's channel is open (the API answers it with 503).
pub const CIRCUIT_OPEN: &str = "circuit_open";

fn pending(code: &'static str, message: impl Into<String>, retry_after: u32) -> Option<Pending> {
    Some(Pending {
        code,
        message: message.into(),
        retry_after,
    })
}

/// Where a request or the sweeper picks up a PENDING refund (a POST retry, `GET ?sync=true`, a
/// due item): a refund never sent is sent; one sent at least the query delay ago (Alipay asks
/// for ≥ 10 s) is asked about; one sent more recently is left to the request that sent it.
pub fn start_for(gateway: &Gateway, refund: &Refund, now_ms: i64) -> RefundNext {
    let since = SinceSend::of(
        refund,
        now_ms,
        gateway.config.lifecycle.refund_query_delay_ms,
    );
    resume_refund(refund, since)
}

/// Drives `refund` from `start` (`Resend` to send it, `QueryNow` to ask about it first).
#[tracing::instrument(skip_all, fields(out_trade_no = %refund.out_trade_no, out_request_no = %refund.out_request_no))]
pub async fn drive_refund<P: Provider>(
    gateway: &Gateway,
    provider: &P,
    refund: Refund,
    start: RefundNext,
    deadline: &Deadline,
) -> Driven {
    let timing = &gateway.config.lifecycle;
    // The refund's channel is failing: neither sent nor asked about; it stays reserved as
    // PENDING and the sweeper finishes it once the channel is closed again.
    if refund.status == RefundStatus::Pending
        && let Err(open) = provider.breaker().check(now_ms()).await
    {
        let retry_after = match &open {
            CallError::Open { retry_after_ms, .. } => seconds_after(*retry_after_ms),
            _ => 5,
        };
        return Driven {
            refund,
            pending: pending(CIRCUIT_OPEN, open.to_string(), retry_after),
        };
    }
    let mut refund = refund;
    let mut next = start;
    let mut calls = 0;
    let names = provider.names();
    let mut last_method = names.refund;
    let mut why = None;
    // Alipay's time of the refund, when an answer gave it: the day the bill shows it on.
    let mut refunded_at: Option<String> = None;
    loop {
        if refund.status != RefundStatus::Pending {
            return Driven {
                refund,
                pending: None,
            };
        }
        next = match next {
            RefundNext::Settle(outcome) => {
                let cause = Cause::AlipayAnswer {
                    method: last_method.into(),
                };
                return settle(
                    gateway,
                    refund,
                    &outcome,
                    refunded_at.as_deref(),
                    &cause,
                    deadline,
                )
                .await;
            }
            RefundNext::Wait => {
                return Driven {
                    refund,
                    pending: why.or_else(|| {
                        pending(
                            "refund_processing",
                            "the provider (Alipay or Antom) has not confirmed the refund yet; it is finished automatically",
                            u32::try_from(timing.refund_query_delay_ms / 1000)
                                .unwrap_or(10)
                                .max(1),
                        )
                    }),
                };
            }
            RefundNext::Contradiction(detail) => {
                tracing::error!(security = true, detail = %detail, "refund contradicts Alipay's record");
                let cause = Cause::AlipayAnswer {
                    method: last_method.into(),
                };
                let event = AuditEvent::new("refund.contradiction", &cause, now_ms()).detail(
                    format!("out_request_no {}: {detail}", refund.out_request_no),
                );
                if let Err(error) = gateway
                    .store
                    .record_event(&refund.out_trade_no, &event)
                    .await
                {
                    tracing::error!(error = %error, "the contradiction could not be audited");
                }
                return Driven {
                    refund,
                    pending: pending(
                        "refund_contradiction",
                        "Alipay's record of this refund differs from ours; an operator was alerted",
                        3_600,
                    ),
                };
            }
            _ if calls >= MAX_CALLS => RefundNext::Wait,
            RefundNext::Resend => {
                if deadline.for_step(STORE_STEP * 2, MIN_CALL).is_none() {
                    why = out_of_time();
                    RefundNext::Wait
                } else {
                    let now = now_ms();
                    // Due for a query after the delay, or later when the sweeper backed off.
                    let due_at_ms =
                        (now + timing.refund_query_delay_ms).max(refund.due_at_ms.unwrap_or(0));
                    let claim = deadline
                        .bound(
                            STORE_STEP + MIN_CALL,
                            gateway.store.begin_refund_send(
                                &refund,
                                timing.refund_spacing_ms,
                                due_at_ms,
                                now,
                            ),
                        )
                        .await;
                    match claim {
                        Some(Ok(SendClaim::Granted {
                            first_send,
                            refund: claimed,
                        })) => {
                            refund = claimed;
                            calls += 1;
                            last_method = names.refund;
                            let (next, at) =
                                provider.send_refund(&refund, first_send, deadline).await;
                            refunded_at = at.or(refunded_at);
                            next
                        }
                        Some(Ok(SendClaim::Taken(current))) => {
                            refund = current;
                            why = pending(
                                "refund_in_progress",
                                "another request is sending this refund",
                                2,
                            );
                            RefundNext::Wait
                        }
                        Some(Ok(SendClaim::Spacing { free_at_ms })) => {
                            let seconds = (free_at_ms - now).max(0).div_euclid(1000) + 1;
                            why = pending(
                                "refund_spacing",
                                "Alipay asks for refunds of one trade to be sent at least 3 s apart; it is sent automatically",
                                u32::try_from(seconds).unwrap_or(3),
                            );
                            RefundNext::Wait
                        }
                        Some(Err(error)) => {
                            why = store_pending(&error);
                            RefundNext::Wait
                        }
                        None => {
                            why = out_of_time();
                            RefundNext::Wait
                        }
                    }
                }
            }
            RefundNext::QueryNow { if_absent } => {
                calls += 1;
                last_method = names.refund_query;
                let since = SinceSend::of(&refund, now_ms(), timing.refund_query_delay_ms);
                let (next, reason, at) = provider
                    .query_refund(&refund, if_absent, since, deadline)
                    .await;
                refunded_at = at.or(refunded_at);
                if reason.is_some() {
                    why = reason;
                }
                next
            }
        };
    }
}

/// `alipay.trade.refund` with the refund's unchanged parameters.
pub(crate) async fn send(
    alipay: &Channel,
    refund: &Refund,
    first_send: bool,
    deadline: &Deadline,
) -> (RefundNext, Option<String>) {
    // A v1 channel only ever holds CNY orders (a payment keeps the channel that accepted its
    // currency); anything else is refused here rather than sent.
    let Ok(refund_amount) = Amount::try_from(refund.amount) else {
        tracing::error!(
            out_request_no = %refund.out_request_no,
            currency = %refund.amount.currency(),
            "not sent: Alipay v1 refunds CNY only"
        );
        return (RefundNext::Wait, None);
    };
    let request = AlipayRequest::Refund {
        trade: TradeRef::OutTradeNo(refund.out_trade_no.clone()),
        refund_amount,
        out_request_no: refund.out_request_no.clone(),
        refund_reason: refund.reason.clone(),
    };
    // `None`: no trustworthy answer (time-out, unreachable, HTTP error, bad signature, KMS).
    let answer = alipay.call_before(&request, deadline).await.ok();
    let result = answer
        .as_ref()
        .filter(|a| a.signed && a.status.code == "10000")
        .and_then(|a| a.parse::<RefundResult>(request.method()).ok());
    let paid_at = result.as_ref().and_then(|r| r.gmt_refund_pay.clone());
    let fund_change = result.map(|result| result.fund_change);
    // A success we cannot read proves nothing.
    let trusted = answer
        .as_ref()
        .filter(|a| a.status.code != "10000" || fund_change.is_some());
    let next = after_refund_send(first_send, trusted.map(Reply::of), fund_change.as_deref());
    tracing::info!(first_send, next = ?next, "refund sent");
    (next, paid_at)
}

/// `alipay.trade.fastpay.refund.query`, decided.
pub(crate) async fn query(
    alipay: &Channel,
    refund: &Refund,
    if_absent: Option<RefundOutcome>,
    since: SinceSend,
    deadline: &Deadline,
) -> (RefundNext, Option<Pending>, Option<String>) {
    let request = AlipayRequest::RefundQuery {
        trade: TradeRef::OutTradeNo(refund.out_trade_no.clone()),
        out_request_no: refund.out_request_no.clone(),
    };
    // `None`: no trustworthy answer (time-out, unreachable, HTTP error, bad signature, KMS).
    let answer = alipay.call_before(&request, deadline).await.ok();
    let found = answer
        .as_ref()
        .filter(|a| a.signed && a.status.code == "10000")
        .map(|a| a.parse::<RefundQueryResult>(request.method()));
    let mut paid_at = None;
    let found = match found {
        // Data about the refund: its amount or a status. An echo of our identifiers alone (no
        // amount, no status) is Alipay's "no such refund".
        Some(Ok(result)) if result.refund_amount.is_some() || result.refund_status.is_some() => {
            paid_at = result.gmt_refund_pay;
            Some(RefundQueryAnswer::Found {
                out_request_no: result.out_request_no,
                refund_amount: result.refund_amount,
                status: result.refund_status,
            })
        }
        Some(Ok(_)) => Some(RefundQueryAnswer::Absent),
        Some(Err(error)) => {
            tracing::warn!(security = true, error = %error, "refund query answer unreadable");
            return (
                RefundNext::Wait,
                pending("alipay_untrusted", "Alipay's answer could not be read", 10),
                None,
            );
        }
        None => None,
    };
    let why = match &answer {
        None => pending(
            "alipay_unavailable",
            "Alipay could not be asked; the refund is finished automatically",
            10,
        ),
        Some(_) => None,
    };
    let next = after_refund_query(
        (refund.out_request_no.as_str(), refund.amount),
        answer.as_ref().map(Reply::of),
        found.as_ref(),
        if_absent,
        since,
    );
    tracing::info!(next = ?next, "refund queried");
    (next, why, paid_at)
}

async fn settle(
    gateway: &Gateway,
    refund: Refund,
    outcome: &RefundOutcome,
    refunded_at: Option<&str>,
    cause: &Cause,
    deadline: &Deadline,
) -> Driven {
    let written = deadline
        .bound(
            ANSWER_RESERVE,
            gateway
                .store
                .settle_refund(&refund, outcome, refunded_at, cause, now_ms()),
        )
        .await;
    match written {
        Some(Ok(Settlement::Settled(settled) | Settlement::Already(settled))) => {
            if let RefundOutcome::Failed { code, .. } = outcome {
                tracing::warn!(code = %code, "refund refused by Alipay; reservation released");
            }
            Driven {
                refund: settled,
                pending: None,
            }
        }
        // A later send of this number is in flight: its answer decides, not this one's.
        Some(Ok(Settlement::Superseded(current))) => {
            tracing::info!(
                sends = current.sends,
                "refusal of an earlier send not applied: the refund was sent again since"
            );
            Driven {
                refund: current,
                pending: pending(
                    "refund_in_progress",
                    "the refund was sent again meanwhile; Alipay's answer to that send decides",
                    2,
                ),
            }
        }
        Some(Ok(settlement @ (Settlement::Corrected(_) | Settlement::Discrepancy(_)))) => Driven {
            refund: report_correction(settlement),
            pending: None,
        },
        Some(Err(StoreError::IllegalTransition { from, to })) => {
            // Someone settled it the other way: keep both, tell an operator.
            tracing::error!(security = true, from = %from, to = %to, "refund outcome contradicts the record");
            let current = gateway
                .store
                .get_refund(&refund.out_trade_no, &refund.out_request_no)
                .await
                .ok()
                .flatten()
                .unwrap_or(refund);
            Driven {
                refund: current,
                pending: None,
            }
        }
        Some(Err(error)) => Driven {
            refund,
            pending: store_pending(&error),
        },
        None => Driven {
            refund,
            pending: out_of_time(),
        },
    }
}

/// Logs a proven success that met a recorded FAILED (corrected, or a discrepancy when its money
/// is gone) and counts the discrepancy for the alarm; the refund as it now stands.
pub fn report_correction(settlement: Settlement) -> Refund {
    match settlement {
        Settlement::Corrected(refund) => {
            tracing::warn!(
                security = true,
                out_request_no = %refund.out_request_no,
                "a refund recorded FAILED was executed by Alipay: corrected to SUCCEEDED, its amount taken back"
            );
            refund
        }
        Settlement::Discrepancy(refund) => {
            tracing::error!(
                security = true,
                out_request_no = %refund.out_request_no,
                "a refund recorded FAILED was executed by Alipay, and its amount is no longer refundable: a person must look"
            );
            emit_refund_discrepancies(1, now_ms());
            refund
        }
        other => other.into_refund(),
    }
}

/// `RefundDiscrepancies` in the Embedded Metric Format (no dimension; the template alarms on
/// it): a refund Alipay executed whose money we had released, or one left unproven too long.
pub fn emit_refund_discrepancies(count: u32, now_ms: i64) {
    println!(
        "{}",
        serde_json::json!({
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "RefundDiscrepancies", "Unit": "Count"}],
                }],
            },
            "RefundDiscrepancies": count,
        })
    );
}

fn out_of_time() -> Option<Pending> {
    pending("no_time", "the request ran out of time", 5)
}

fn store_pending(error: &StoreError) -> Option<Pending> {
    tracing::error!(error = %error, "the order store failed; the refund stays pending");
    pending(
        "storage_unavailable",
        "the order store is unavailable; the refund is finished automatically",
        5,
    )
}

// ---- Alipay's refund notices ----------------------------------------------------------------

/// Alipay's refund notice (a trade notification naming our `out_request_no` as `out_biz_no`, and
/// the trade's refunded total as `refund_fee`): it settles a refund still PENDING, and proves one
/// recorded FAILED executed (a correction); refunds never depend on it (the refund answer and
/// query are authoritative). What contradicts our records (an unknown refund, a total beyond
/// what we ever sent) is audited and alarmed, and acknowledged: the notification is genuine, and
/// a retry would say the same.
pub async fn apply_refund_notice(
    store: &Store,
    notification: &TradeNotification,
    out_trade_no: &OutTradeNo,
    cause: &Cause,
    now: i64,
) -> Result<(), StoreError> {
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
                        Err(error) => return Err(error),
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
            .map(|r| r.amount.minor())
            .sum();
        if refund_fee.fen() > sent {
            contradictions.push(format!(
                "Alipay reports {refund_fee} refunded; our refunds add up to {} (confirmed {})",
                Amount::from_fen_allow_zero(sent)
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
