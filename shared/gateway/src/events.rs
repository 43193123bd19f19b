//! Merchant events: which change an item of the table went through, read from its image before
//! and after (a DynamoDB stream record). Pure.
//!
//! The table is the outbox. Every state change is one write of an order, refund or
//! reconciliation-summary item, and DynamoDB puts that write on the table's stream in the same
//! operation: there is no change without its stream record and no stream record without its
//! change. The publisher function turns each record into at most one event here and sends it to
//! EventBridge. Delivery is at least once (a retried batch publishes its records again), so
//! every event carries an `event_id` derived from the change itself: the same change always
//! gets the same id, and merchants de-duplicate on it.
//!
//! | detail-type | when |
//! |---|---|
//! | `payment.created` | a payment is created (CREATED) |
//! | `payment.paid` | CREATED → PAID or FINISHED |
//! | `payment.finished` | PAID → FINISHED (no longer refundable) |
//! | `payment.closed` | CREATED → CLOSED (closed by the merchant or expired) |
//! | `payment.paid_after_close` | CLOSED → PAID: a genuine payment for a closed order |
//! | `payment.refunded` | confirmed refunds reach the amount paid (status REFUNDED) |
//! | `subscription.action_required` | a period's charge was stepped up: the buyer pays it at the cashier (`current_period.at_cashier`; `POST /subscriptions/{id}/cashier` signs the URL) |
//! | `payment.released` / `payment.hold_cancelled` | a payment held for review was released (deliver) or cancelled |
//! | `refund.created` | a refund is accepted and reserved (PENDING) |
//! | `refund.succeeded` | Alipay confirmed the refund (also after a `refund.failed`, when Alipay proves it executed a refund recorded FAILED: a correction) |
//! | `refund.failed` | Alipay refused it; the amount is refundable again |
//! | `reconciliation.matched` / `reconciliation.discrepancies` | a day was reconciled |
//! | `channel.opened` | an Alipay channel's circuit opened: new payments go to the next channel |
//! | `channel.closed` | trial calls succeeded: the channel takes payments again |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::http::views::{payment_status, payment_view, refund_view};
use domain::states::{Hold, RefundStatus};
use store::{BREAKER_STATE_SK, StoreError, parse_order_item, parse_phase, parse_refund_item};

/// The `source` of every event the gateway publishes.
pub const SOURCE: &str = "alipay-gateway";

/// One item's image, as the stream carries it.
pub type Image = HashMap<String, AttributeValue>;

/// An event for the merchant.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The same for every publication of the same change.
    pub id: String,
    pub detail_type: &'static str,
    /// When the change was made (the item's `updated_at_ms`).
    pub occurred_at_ms: i64,
    /// `{event_id, type, occurred_at_ms, payment | refund | reconciliation}`.
    pub detail: Value,
}

/// The event for the change from `old` to `new` (either absent: an insert or a delete), or
/// `None` when the change is not one a merchant is told of (an audit entry, a counter, the
/// sweeper's bookkeeping on an order whose state stays the same).
pub fn event_of(old: Option<&Image>, new: Option<&Image>) -> Result<Option<Event>, StoreError> {
    // A deleted item (TTL) is not a change of state.
    let Some(new) = new else { return Ok(None) };
    let (Some(pk), Some(sk)) = (text(new, "pk"), text(new, "sk")) else {
        return Ok(None);
    };
    if pk.starts_with("ORDER#") && sk == "ORDER" {
        payment_event(old, new, pk, sk)
    } else if pk.starts_with("ORDER#") && sk.starts_with("REFUND#") {
        refund_event(old, new, pk, sk)
    } else if pk.starts_with("SUB#") && sk == "SUB" {
        subscription_event(old, new, pk, sk)
    } else if pk.starts_with("RECON#") && sk == "SUMMARY" {
        reconciliation_event(old, new, pk, sk)
    } else if pk.starts_with("BREAKER#") && sk == BREAKER_STATE_SK {
        channel_event(old, new, pk, sk)
    } else {
        Ok(None)
    }
}

fn payment_event(
    old: Option<&Image>,
    new: &Image,
    pk: &str,
    sk: &str,
) -> Result<Option<Event>, StoreError> {
    let order = parse_order_item(new)?;
    let before = old.map(parse_order_item).transpose()?;
    let from = before.as_ref().map(payment_status);
    let to = payment_status(&order);
    if from == Some(to) {
        // The same state: a hold released or cancelled is the one change that is an event.
        let hold_before = before.as_ref().and_then(|b| b.hold);
        let detail_type = match (hold_before, order.hold) {
            (Some(Hold::Held), Some(Hold::Released)) => "payment.released",
            (Some(Hold::Held), Some(Hold::Cancelled)) => "payment.hold_cancelled",
            _ => return Ok(None),
        };
        return Ok(Some(event(
            pk,
            sk,
            detail_type,
            order.updated_at_ms,
            ("payment", payment_view(&order, None)),
        )));
    }
    let detail_type = match (from, to) {
        (None, "CREATED") => "payment.created",
        (Some("CLOSED"), "PAID" | "FINISHED") => "payment.paid_after_close",
        (Some("PAID"), "FINISHED") => "payment.finished",
        (_, "PAID" | "FINISHED") => "payment.paid",
        (_, "CLOSED") => "payment.closed",
        (_, "REFUNDED") => "payment.refunded",
        // Not a transition the state machine makes; told as it is rather than dropped.
        _ => "payment.updated",
    };
    let at = order.updated_at_ms;
    Ok(Some(event(
        pk,
        sk,
        detail_type,
        at,
        ("payment", payment_view(&order, None)),
    )))
}

fn refund_event(
    old: Option<&Image>,
    new: &Image,
    pk: &str,
    sk: &str,
) -> Result<Option<Event>, StoreError> {
    let refund = parse_refund_item(new)?;
    let before = old.map(parse_refund_item).transpose()?;
    if before.as_ref().map(|r| r.status) == Some(refund.status) {
        return Ok(None);
    }
    let detail_type = match refund.status {
        RefundStatus::Pending => "refund.created",
        RefundStatus::Succeeded => "refund.succeeded",
        RefundStatus::Failed => "refund.failed",
    };
    let at = refund.updated_at_ms;
    Ok(Some(event(
        pk,
        sk,
        detail_type,
        at,
        ("refund", refund_view(&refund)),
    )))
}

/// A subscription created, changing state, or with one more period paid; its bookkeeping
/// (claims, tries in doubt) is no event.
fn subscription_event(
    old: Option<&Image>,
    new: &Image,
    pk: &str,
    sk: &str,
) -> Result<Option<Event>, StoreError> {
    use domain::subscriptions::SubscriptionStatus;
    let subscription = store::parse_subscription_item(new)?;
    let before = old.map(store::parse_subscription_item).transpose()?;
    let detail_type = match &before {
        None => "subscription.created",
        Some(before) if before.status != subscription.status => match subscription.status {
            SubscriptionStatus::Incomplete => "subscription.incomplete",
            SubscriptionStatus::Active => "subscription.active",
            SubscriptionStatus::PastDue => "subscription.past_due",
            SubscriptionStatus::Unpaid => "subscription.unpaid",
            SubscriptionStatus::Canceled => "subscription.canceled",
            SubscriptionStatus::Paused => "subscription.paused",
        },
        Some(before) if subscription.charges > before.charges => "subscription.period_paid",
        Some(before) if !before.period.at_cashier && subscription.period.at_cashier => {
            "subscription.action_required"
        }
        Some(_) => return Ok(None),
    };
    let at = subscription.updated_at_ms;
    Ok(Some(event(
        pk,
        sk,
        detail_type,
        at,
        (
            "subscription",
            crate::http::views::subscription_view(&subscription),
        ),
    )))
}

fn reconciliation_event(
    old: Option<&Image>,
    new: &Image,
    pk: &str,
    sk: &str,
) -> Result<Option<Event>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("reconciliation summary: {what}"));
    let at: i64 = new
        .get("updated_at_ms")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt("updated_at_ms"))?;
    // The same run stored again is not a new run.
    let previous_at = old
        .and_then(|old| old.get("updated_at_ms"))
        .and_then(|v| v.as_n().ok());
    if previous_at.is_some_and(|n| n.parse() == Ok(at)) {
        return Ok(None);
    }
    let status = text(new, "status").ok_or_else(|| corrupt("status"))?;
    let detail_type = match status {
        "matched" => "reconciliation.matched",
        "discrepancies" => "reconciliation.discrepancies",
        // A bill that is not ready yet is no result: the next run tells.
        _ => return Ok(None),
    };
    let summary: Value = text(new, "summary")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| corrupt("summary"))?;
    Ok(Some(event(
        pk,
        sk,
        detail_type,
        at,
        ("reconciliation", summary),
    )))
}

/// A channel's circuit opening or closing (a trial, a re-opening after a failed trial: no
/// event; the channel stayed open).
fn channel_event(
    old: Option<&Image>,
    new: &Image,
    pk: &str,
    sk: &str,
) -> Result<Option<Event>, StoreError> {
    let phase = parse_phase(new)?;
    let was_open = old.map(parse_phase).transpose()?.is_some_and(|p| p.open);
    let channel = pk.trim_start_matches("BREAKER#");
    let number = |name: &str| {
        new.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (detail_type, at) = match (was_open, phase.open) {
        (false, true) => ("channel.opened", phase.opened_at_ms),
        (true, false) => ("channel.closed", number("closed_at_ms")),
        _ => return Ok(None),
    };
    let view = json!({
        "channel": channel,
        "state": if phase.open { "open" } else { "closed" },
        "opened_at_ms": phase.opened_at_ms,
        "trials_from_ms": phase.open.then_some(phase.until_ms),
        "window_calls": number("calls"),
        "window_failures": number("failures"),
        "reason": text(new, "reason"),
    });
    Ok(Some(event(pk, sk, detail_type, at, ("channel", view))))
}

/// The event id: a digest of the item's key, the kind of change and when it was made, so that a
/// change published twice carries one id.
fn event(
    pk: &str,
    sk: &str,
    detail_type: &'static str,
    at_ms: i64,
    (name, resource): (&str, Value),
) -> Event {
    let mut hash = Sha256::new();
    for part in [pk, sk, detail_type, &at_ms.to_string()] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = format!("evt_{digest}");
    let detail = json!({
        "event_id": id,
        "type": detail_type,
        "occurred_at_ms": at_ms,
        name: resource,
    });
    Event {
        id,
        detail_type,
        occurred_at_ms: at_ms,
        detail,
    }
}

fn text<'a>(item: &'a Image, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order's item, written out attribute by attribute as the table holds it.
    fn order(status: &str, refunded_fen: i64, paid_after_close: bool, at: i64) -> Image {
        let mut item = Image::new();
        for (name, value) in [
            ("pk", "ORDER#o_1"),
            ("sk", "ORDER"),
            ("out_trade_no", "o_1"),
            ("currency", "CNY"),
            ("subject", "Pro"),
            ("channel", "qr"),
            ("status", status),
            ("fingerprint", "f"),
        ] {
            item.insert(name.into(), AttributeValue::S(value.into()));
        }
        for (name, value) in [
            ("amount_fen", 1000),
            ("refunded_fen", refunded_fen),
            ("refundable_fen", 1000 - refunded_fen),
            ("created_at_ms", 1),
            ("updated_at_ms", at),
            ("version", at),
        ] {
            item.insert(name.into(), AttributeValue::N(value.to_string()));
        }
        if status != "CREATED" && status != "CLOSED" {
            item.insert("paid_fen".into(), AttributeValue::N("1000".into()));
        }
        item.insert(
            "paid_after_close".into(),
            AttributeValue::Bool(paid_after_close),
        );
        item
    }

    fn refund(status: &str, at: i64) -> Image {
        let mut item = Image::new();
        for (name, value) in [
            ("pk", "ORDER#o_1"),
            ("sk", "REFUND#r_1"),
            ("out_trade_no", "o_1"),
            ("out_request_no", "r_1"),
            ("status", status),
        ] {
            item.insert(name.into(), AttributeValue::S(value.into()));
        }
        for (name, value) in [
            ("amount_fen", 300),
            ("created_at_ms", 1),
            ("updated_at_ms", at),
        ] {
            item.insert(name.into(), AttributeValue::N(value.to_string()));
        }
        item
    }

    fn kind(old: Option<&Image>, new: Option<&Image>) -> Option<&'static str> {
        event_of(old, new).expect("readable").map(|e| e.detail_type)
    }

    #[test]
    fn each_order_transition_is_its_event() {
        let created = order("CREATED", 0, false, 1);
        let paid = order("PAID", 0, false, 2);
        assert_eq!(kind(None, Some(&created)), Some("payment.created"));
        assert_eq!(kind(Some(&created), Some(&paid)), Some("payment.paid"));
        assert_eq!(
            kind(Some(&created), Some(&order("FINISHED", 0, false, 2))),
            Some("payment.paid")
        );
        assert_eq!(
            kind(Some(&paid), Some(&order("FINISHED", 0, false, 3))),
            Some("payment.finished")
        );
        let closed = order("CLOSED", 0, false, 2);
        assert_eq!(kind(Some(&created), Some(&closed)), Some("payment.closed"));
        assert_eq!(
            kind(Some(&closed), Some(&order("PAID", 0, true, 3))),
            Some("payment.paid_after_close")
        );
        assert_eq!(
            kind(Some(&paid), Some(&order("PAID", 1000, false, 4))),
            Some("payment.refunded")
        );
        // Bookkeeping that leaves the state as it was (a part refunded, a sweep) is no event.
        assert_eq!(kind(Some(&paid), Some(&order("PAID", 300, false, 5))), None);
        assert_eq!(
            kind(Some(&created), Some(&order("CREATED", 0, false, 6))),
            None
        );
        // A deletion (TTL) is none either.
        assert_eq!(kind(Some(&paid), None), None);
    }

    #[test]
    fn each_refund_transition_is_its_event_and_audit_entries_are_none() {
        let pending = refund("PENDING", 1);
        assert_eq!(kind(None, Some(&pending)), Some("refund.created"));
        assert_eq!(
            kind(Some(&pending), Some(&refund("SUCCEEDED", 2))),
            Some("refund.succeeded")
        );
        assert_eq!(
            kind(Some(&pending), Some(&refund("FAILED", 2))),
            Some("refund.failed")
        );
        // A send claimed (the refund stays PENDING).
        assert_eq!(kind(Some(&pending), Some(&refund("PENDING", 3))), None);
        let mut audit = Image::new();
        audit.insert("pk".into(), AttributeValue::S("ORDER#o_1".into()));
        audit.insert("sk".into(), AttributeValue::S("AUDIT#1#x".into()));
        assert_eq!(kind(None, Some(&audit)), None);
    }

    #[test]
    fn a_subscription_is_told_when_created_when_its_state_changes_and_when_a_period_is_paid() {
        use domain::subscriptions::{Period, Plan, Subscription, SubscriptionStatus};
        let plan = Plan {
            period_type: alipay::agreement::PeriodType::Month,
            period: 1,
            amount: alipay::Amount::parse("25.00").expect("amount"),
            first_date: alipay::china_time::ChinaDate::parse("2027-01-05").expect("date"),
            single_amount: alipay::Amount::parse("25.00").expect("amount"),
            total_amount: None,
            total_payments: None,
        };
        let incomplete = Subscription {
            id: alipay::ids::ExternalAgreementNo::parse("sub1").expect("id"),
            customer_ref: None,
            subject: alipay::ids::Subject::parse("plan").expect("subject"),
            period: Period::new(0, plan.first_date),
            plan,
            sign_channel: alipay::agreement::SignChannel::Qrcode,
            alipay_channel: domain::channel::ChannelId::Primary,
            status: SubscriptionStatus::Incomplete,
            agreement_no: None,
            agreement_status: alipay::agreement::AgreementStatus::Temp,
            charged: alipay::Amount::ZERO,
            charges: 0,
            last_period_end: None,
            created_at_ms: 1,
            updated_at_ms: 1,
            version: 1,
            fingerprint: String::new(),
        };
        let image = |s: &Subscription| store::subscription_image(s);
        let active = Subscription {
            status: SubscriptionStatus::Active,
            updated_at_ms: 2,
            version: 2,
            ..incomplete.clone()
        };
        let claimed = Subscription {
            version: 3,
            ..active.clone()
        };
        let paid = Subscription {
            charges: 1,
            updated_at_ms: 3,
            version: 4,
            ..active.clone()
        };
        let unpaid = Subscription {
            status: SubscriptionStatus::Unpaid,
            updated_at_ms: 4,
            version: 5,
            ..paid.clone()
        };
        let created = event_of(None, Some(&image(&incomplete)))
            .expect("ok")
            .expect("event");
        assert_eq!(created.detail_type, "subscription.created");
        assert_eq!(created.detail["subscription"]["status"], "incomplete");
        assert_eq!(
            kind(Some(&image(&incomplete)), Some(&image(&active))),
            Some("subscription.active")
        );
        assert_eq!(kind(Some(&image(&active)), Some(&image(&claimed))), None);
        assert_eq!(
            kind(Some(&image(&claimed)), Some(&image(&paid))),
            Some("subscription.period_paid")
        );
        assert_eq!(
            kind(Some(&image(&paid)), Some(&image(&unpaid))),
            Some("subscription.unpaid")
        );
    }

    #[test]
    fn the_id_names_the_change_not_the_publication() {
        let created = order("CREATED", 0, false, 1);
        let paid = order("PAID", 0, false, 2);
        let first = event_of(Some(&created), Some(&paid))
            .expect("ok")
            .expect("event");
        let again = event_of(Some(&created), Some(&paid))
            .expect("ok")
            .expect("event");
        assert_eq!(first.id, again.id);
        assert_eq!(first.detail["event_id"], first.id.as_str());
        assert_eq!(first.detail["payment"]["status"], "PAID");
        assert_eq!(first.detail["payment"]["amount"], "10.00");
        let created_event = event_of(None, Some(&created)).expect("ok").expect("event");
        assert_ne!(first.id, created_event.id);
        // An unreadable item is an error (retried, never skipped as "no event").
        let mut broken = paid.clone();
        broken.remove("status");
        assert!(event_of(Some(&created), Some(&broken)).is_err());
    }

    #[test]
    fn a_reconciliation_run_is_an_event_once() {
        let summary = |status: &str, at: i64| {
            let mut item = Image::new();
            item.insert("pk".into(), AttributeValue::S("RECON#2026-11-26".into()));
            item.insert("sk".into(), AttributeValue::S("SUMMARY".into()));
            item.insert("status".into(), AttributeValue::S(status.into()));
            item.insert(
                "summary".into(),
                AttributeValue::S(r#"{"date":"2026-11-26","discrepancies":2}"#.into()),
            );
            item.insert("updated_at_ms".into(), AttributeValue::N(at.to_string()));
            item
        };
        let first = summary("discrepancies", 10);
        let event = event_of(None, Some(&first)).expect("ok").expect("event");
        assert_eq!(event.detail_type, "reconciliation.discrepancies");
        assert_eq!(event.detail["reconciliation"]["discrepancies"], 2);
        assert_eq!(kind(Some(&first), Some(&first)), None);
        assert_eq!(
            kind(Some(&first), Some(&summary("matched", 11))),
            Some("reconciliation.matched")
        );
        assert_eq!(kind(None, Some(&summary("bill_not_ready", 12))), None);
        // Other items under a day's key, and the fraud checks' items, are no events.
        for (pk, sk) in [
            ("RECON#2026-11-26", "ROW#1"),
            ("RISK#C#0a1b", "DAY#2026-11-26"),
            ("RISK#C#0a1b", "HISTORY"),
            ("RISK#B#0a1b", "CUSTOMERS"),
        ] {
            let mut item = Image::new();
            item.insert("pk".into(), AttributeValue::S(pk.into()));
            item.insert("sk".into(), AttributeValue::S(sk.into()));
            assert_eq!(kind(None, Some(&item)), None, "{pk} {sk}");
        }
    }

    #[test]
    fn a_channel_opening_and_closing_are_events_and_its_window_is_not() {
        let state = |open: bool, generation: i64, trials: i64| {
            let mut item = Image::new();
            item.insert("pk".into(), AttributeValue::S("BREAKER#primary".into()));
            item.insert("sk".into(), AttributeValue::S("STATE".into()));
            item.insert("open".into(), AttributeValue::Bool(open));
            item.insert(
                "reason".into(),
                AttributeValue::S("alipay.trade.precreate: time-out".into()),
            );
            for (name, value) in [
                ("generation", generation),
                ("opened_at_ms", 1_000),
                ("until_ms", 31_000),
                ("closed_at_ms", 40_000),
                ("trial_successes", trials),
                ("calls", 12),
                ("failures", 9),
            ] {
                item.insert(name.into(), AttributeValue::N(value.to_string()));
            }
            item
        };
        let opened = event_of(None, Some(&state(true, 1, 0)))
            .expect("ok")
            .expect("event");
        assert_eq!(opened.detail_type, "channel.opened");
        assert_eq!(opened.detail["channel"]["channel"], "primary");
        assert_eq!(opened.detail["channel"]["window_failures"], 9);
        assert_eq!(opened.occurred_at_ms, 1_000);
        // A trial, a failed trial's re-opening: still open, no event.
        assert_eq!(
            kind(Some(&state(true, 1, 0)), Some(&state(true, 1, 1))),
            None
        );
        assert_eq!(
            kind(Some(&state(true, 1, 1)), Some(&state(true, 2, 0))),
            None
        );
        let closed = event_of(Some(&state(true, 2, 2)), Some(&state(false, 2, 0)))
            .expect("ok")
            .expect("event");
        assert_eq!(closed.detail_type, "channel.closed");
        assert_eq!(closed.occurred_at_ms, 40_000);
        // Opened again later: a new event with a new id.
        let again = event_of(Some(&state(false, 2, 0)), Some(&state(true, 3, 0)))
            .expect("ok")
            .expect("event");
        assert_eq!(again.detail_type, "channel.opened");
        let mut window = Image::new();
        window.insert("pk".into(), AttributeValue::S("BREAKER#primary".into()));
        window.insert("sk".into(), AttributeValue::S("WINDOW".into()));
        assert_eq!(kind(None, Some(&window)), None);
    }
}
