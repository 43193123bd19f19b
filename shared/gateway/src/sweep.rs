//! The sweeper: finishes interrupted work and ends what nobody paid. Due work is read from the
//! sparse `DueIndex` (only items that need attention carry its keys; never a Scan), claimed with
//! a conditional write (two sweepers never act on one item), and driven with the same decisions
//! as the request handlers (`crate::refunds`, `crate::payments`, `domain::lifecycle`).

use serde::Serialize;

use domain::lifecycle::{TradeNext, backoff_ms};
use domain::states::{Cause, OrderStatus, RefundStatus};
use store::{DUE_SHARDS, DueItem};

use crate::clock::now_ms;
use crate::deadline::{Deadline, MIN_CALL, STORE_STEP};
use crate::payments::{Ended, end_unpaid_order, order_expiry_ms, recheck_closed_order};
use crate::refunds::{drive_refund, start_for};
use crate::startup::{ChannelError, Gateway};

/// One scheduled run within `deadline` (the sweeper function's work), logged when it did
/// anything or left work behind.
pub async fn run(gateway: &Gateway, deadline: &Deadline) -> Result<SweepReport, ChannelError> {
    if gateway.channels.is_empty() {
        return Err(ChannelError::NoneConfigured);
    }
    let report = sweep(gateway, deadline).await;
    if report.due > 0 {
        tracing::info!(report = ?report, "sweep");
    }
    if report.oldest_due_age_seconds > 0 || report.errors > 0 {
        tracing::warn!(
            oldest_due_age_seconds = report.oldest_due_age_seconds,
            errors = report.errors,
            "due work remains"
        );
    }
    Ok(report)
}

/// What one run did, logged as one line (and as metrics in the Embedded Metric Format).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Due items read from the index.
    pub due: u32,
    /// Items another sweeper claimed first (or that no longer needed attention).
    pub skipped: u32,
    pub refunds_succeeded: u32,
    pub refunds_failed: u32,
    pub refunds_pending: u32,
    /// PENDING refunds past `REFUND_PROOF_WINDOW_MS` without proof of their outcome: the
    /// `RefundDiscrepancies` metric, alarmed.
    pub refunds_unproven: u32,
    pub orders_closed: u32,
    pub orders_paid: u32,
    pub orders_open: u32,
    pub errors: u32,
    /// Age of the oldest unfinished work, in seconds (0 when none): the alarm's metric. The
    /// larger of the oldest past-due item left in the index and the oldest item this run
    /// claimed but could not finish (a PENDING refund since its creation, an unpaid order since
    /// its `time_expire`): each claim pushes an item's due time forward (its backoff), so the
    /// index alone would never show work that keeps failing as old.
    pub oldest_due_age_seconds: i64,
    /// The earliest due time left in the index after the run (past or future), if any.
    pub next_due_at_ms: Option<i64>,
    /// Stopped early to stay within the deadline.
    pub out_of_time: bool,
}

/// The trade a certificate probe asks about: none has this number (an order number is the
/// merchant's, of at most 64 characters of its own choosing; the answer, "no such trade", is
/// signed with Alipay's current certificate, which is all the probe is for).
pub const CERT_PROBE_OUT_TRADE_NO: &str = "gateway_certificate_probe";

/// Certificate mode: when the notify function met a signature no held certificate verifies, one
/// call per channel, so that an unknown `alipay_cert_sn` in its answer is learned (and kept).
async fn probe_certificates(gateway: &Gateway, deadline: &Deadline) {
    if !gateway.trusts.iter().any(|(_, t)| t.is_certificate_mode()) {
        return;
    }
    let wanted = match gateway.store.cert_probe_wanted().await {
        Ok(Some(at)) => at,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(error = %error, "reading the certificate probe");
            return;
        }
    };
    let out_trade_no = match alipay::ids::OutTradeNo::parse(CERT_PROBE_OUT_TRADE_NO) {
        Ok(no) => no,
        Err(error) => {
            tracing::error!(error = %error, "the certificate probe's trade number");
            return;
        }
    };
    let request = alipay::request::AlipayRequest::Query {
        trade: alipay::request::TradeRef::OutTradeNo(out_trade_no),
    };
    let mut all_answered = true;
    for alipay in &gateway.channels {
        let before = alipay.client.trust().known_sns().len();
        match alipay.call_before(&request, deadline).await {
            Ok(answer) => tracing::info!(
                channel = %alipay.id,
                code = %answer.status.code,
                learned = alipay.client.trust().known_sns().len() - before,
                "certificate probe answered"
            ),
            Err(_) => all_answered = false,
        }
    }
    if all_answered && let Err(error) = gateway.store.probe_done(wanted).await {
        tracing::warn!(error = %error, "clearing the certificate probe");
    }
}

/// One run over every shard, at most the configured batch per shard.
pub async fn sweep(gateway: &Gateway, deadline: &Deadline) -> SweepReport {
    let mut report = SweepReport::default();
    probe_certificates(gateway, deadline).await;
    let batch = gateway.config.lifecycle.sweep_batch;
    'shards: for shard in 0..DUE_SHARDS {
        let items = match gateway.store.due_items(shard, now_ms(), batch).await {
            Ok(items) => items,
            Err(error) => {
                tracing::error!(error = %error, shard, "due work could not be read");
                report.errors += 1;
                continue;
            }
        };
        for item in items {
            if deadline.for_step(STORE_STEP * 2, MIN_CALL).is_none() {
                report.out_of_time = true;
                break 'shards;
            }
            report.due += 1;
            sweep_one(gateway, item, deadline, &mut report).await;
        }
    }
    let now = now_ms();
    let mut oldest: Option<i64> = None;
    for shard in 0..DUE_SHARDS {
        match gateway.store.oldest_due_ms(shard).await {
            Ok(Some(at)) => oldest = Some(oldest.map_or(at, |o| o.min(at))),
            Ok(None) => {}
            Err(_) => report.errors += 1,
        }
    }
    let past_due = oldest.map_or(0, |at| (now - at).max(0) / 1000);
    report.oldest_due_age_seconds = report.oldest_due_age_seconds.max(past_due);
    report.next_due_at_ms = oldest;
    report
}

async fn sweep_one(
    gateway: &Gateway,
    item: DueItem,
    deadline: &Deadline,
    report: &mut SweepReport,
) {
    let timing = &gateway.config.lifecycle;
    let sweeps = match &item {
        DueItem::Order(order) => order.sweeps,
        DueItem::Refund(refund) => refund.sweeps,
    };
    let next_due = now_ms()
        + i64::try_from(backoff_ms(
            sweeps,
            u64::try_from(timing.refund_query_delay_ms.max(1_000)).unwrap_or(10_000),
            u64::try_from(timing.sweep_backoff_max_ms).unwrap_or(3_600_000),
        ))
        .unwrap_or(i64::MAX / 2);
    let claimed = match gateway.store.claim_due(&item, next_due).await {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            report.skipped += 1;
            return;
        }
        Err(error) => {
            tracing::error!(error = %error, out_trade_no = %item.out_trade_no(), "due item could not be claimed");
            report.errors += 1;
            return;
        }
    };
    // Each item through its order's channel; an open channel leaves it for a later run.
    let channel = match &claimed {
        DueItem::Order(order) => order.alipay_channel,
        DueItem::Refund(refund) => refund.alipay_channel,
    };
    let provider = match gateway.provider(channel) {
        Ok(provider) => provider,
        Err(error) => {
            tracing::error!(error = %error, channel = %channel, "due item's channel is not configured");
            report.errors += 1;
            return;
        }
    };
    match claimed {
        DueItem::Refund(refund) => {
            if refund.status != RefundStatus::Pending {
                report.skipped += 1;
                return;
            }
            let start = start_for(gateway, &refund, now_ms());
            let driven = drive_refund(gateway, &provider, refund, start, deadline).await;
            match driven.refund.status {
                RefundStatus::Succeeded => report.refunds_succeeded += 1,
                RefundStatus::Failed => report.refunds_failed += 1,
                RefundStatus::Pending => {
                    report.refunds_pending += 1;
                    report.unfinished_since(driven.refund.created_at_ms);
                    raise_if_unproven(gateway, &driven.refund, report).await;
                }
            }
        }
        DueItem::Order(order) if order.status == OrderStatus::Closed => {
            match recheck_closed_order(gateway, &provider, order, deadline).await {
                Ok(Ended::Paid(_)) => report.orders_paid += 1,
                Ok(Ended::Closed(_)) => report.orders_closed += 1,
                Ok(Ended::Open { .. }) => report.orders_open += 1,
                Err(error) => {
                    tracing::error!(error = %error, "closed order could not be re-checked");
                    report.errors += 1;
                }
            }
        }
        DueItem::Order(order) => {
            if order.status != OrderStatus::Created {
                report.skipped += 1;
                return;
            }
            let ended = end_unpaid_order(
                gateway,
                &provider,
                order,
                TradeNext::Query,
                &Cause::Sweeper,
                deadline,
            )
            .await;
            match ended {
                Ok(Ended::Closed(_)) => report.orders_closed += 1,
                Ok(Ended::Paid(_)) => report.orders_paid += 1,
                Ok(Ended::Open { order, reason }) => {
                    tracing::info!(out_trade_no = %order.out_trade_no, reason = %reason, "expired order left open for now");
                    report.orders_open += 1;
                    report.unfinished_since(order_expiry_ms(&order));
                }
                Err(error) => {
                    tracing::error!(error = %error, "expired order could not be ended");
                    report.errors += 1;
                }
            }
        }
    }
}

/// A refund PENDING past the proof window: counted for the alarm at every look, and audited
/// once (`refund.unproven`). Its money stays reserved and it keeps being asked about.
async fn raise_if_unproven(
    gateway: &Gateway,
    refund: &domain::states::Refund,
    report: &mut SweepReport,
) {
    let now = now_ms();
    if now - refund.created_at_ms < gateway.config.lifecycle.refund_proof_window_ms {
        return;
    }
    report.refunds_unproven += 1;
    if refund.unproven_since_ms.is_some() {
        return;
    }
    tracing::error!(
        out_trade_no = %refund.out_trade_no,
        out_request_no = %refund.out_request_no,
        sends = refund.sends,
        "a refund has no proof of its outcome from Alipay past the proof window: a person must look"
    );
    if let Err(error) = gateway
        .store
        .mark_refund_unproven(refund, &Cause::Sweeper, now)
        .await
    {
        tracing::warn!(error = %error, "the unproven refund could not be audited");
    }
}

impl SweepReport {
    fn unfinished_since(&mut self, since_ms: i64) {
        let age = (now_ms() - since_ms).max(0) / 1000;
        self.oldest_due_age_seconds = self.oldest_due_age_seconds.max(age);
    }

    /// The run as one CloudWatch Embedded Metric Format line: the metrics (the oldest due
    /// item's age, which the template alarms on) come from the log, with no PutMetricData call.
    pub fn emf_line(&self, function_name: &str) -> String {
        serde_json::json!({
            "_aws": {
                "Timestamp": now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        {"Name": "OldestDueAgeSeconds", "Unit": "Seconds"},
                        {"Name": "SweepErrors", "Unit": "Count"},
                        {"Name": "RefundsPending", "Unit": "Count"}
                    ]
                }, {
                    // The alarm's metric, the same (dimensionless) one the refund and notify
                    // functions count a discrepancy in.
                    "Namespace": "AlipayGateway",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "RefundDiscrepancies", "Unit": "Count"}]
                }]
            },
            "Function": function_name,
            "OldestDueAgeSeconds": self.oldest_due_age_seconds,
            "SweepErrors": self.errors,
            "RefundsPending": self.refunds_pending,
            "RefundDiscrepancies": self.refunds_unproven,
            "report": self,
        })
        .to_string()
    }
}

#[cfg(test)]
mod probe_tests {
    #[test]
    fn the_probe_asks_about_a_valid_trade_number() {
        assert!(alipay::ids::OutTradeNo::parse(super::CERT_PROBE_OUT_TRADE_NO).is_ok());
    }
}
