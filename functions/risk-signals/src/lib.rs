//! The risk-signals function: the table's stream in tumbling windows (Lambda carries a window's
//! state from one batch to the next and says which batch is its last), and what one request
//! cannot see, written where the next create reads it (`RISK#C#<digest>`/`SIGNALS`,
//! `RISK#M`/`SIGNALS`, read by the create's one `BatchGetItem`):
//!
//! - **one Alipay buyer across many customer refs**: a paid payment adds its customer to the
//!   buyer's set (`RISK#B#<digest>`/`CUSTOMERS`, written in the paid transition); each of the
//!   buyer's customers gets `buyer_customers` = the size of that set (never lowered);
//! - **refunds soon after delivery**: a refund asked for within `RISK_QUICK_REFUND_MINUTES`
//!   (default 1440) of the payment adds one to the customer's `quick_refunds`;
//! - **failure spikes of agreement charges**: the window's count of the merchant's agreement
//!   charges that ended unpaid, as `agreement_failures` (the latest window's count stands).
//!
//! A signal is never the only input to a decision: a rule names it with a threshold. Records
//! come at least once; a window's state remembers the refunds it counted, so a retried batch
//! does not count one twice.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{EventRecord, TimeWindowEvent, TimeWindowEventResponse};
use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;
use aws_sdk_dynamodb::types::AttributeValue;
use domain::decisions::Signal;
use domain::states::{Cashier, OrderStatus};
use store::{Store, StoreError};

type Image = HashMap<String, AttributeValue>;

/// What the function needs.
#[derive(Clone, Debug)]
pub struct Signals {
    pub store: Store,
    /// A refund this soon after its payment was delivered (paid) counts as quick.
    pub quick_refund_ms: i64,
}

impl Signals {
    pub fn new(store: Store, vars: &HashMap<String, String>) -> Result<Signals, String> {
        let minutes = match vars.get("RISK_QUICK_REFUND_MINUTES").map(|v| v.trim()) {
            None | Some("") => 1_440,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|m| (1..=43_200).contains(m))
                .ok_or("invalid configuration: RISK_QUICK_REFUND_MINUTES must be 1 to 43200")?,
        };
        Ok(Signals {
            store,
            quick_refund_ms: minutes * 60_000,
        })
    }
}

/// One stream record as the function reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A buyer's (digest) customers (digests), all of them, after a payment.
    BuyerCustomers {
        customers: Vec<String>,
    },
    /// A refund created: its order's key and the refund's.
    RefundCreated {
        out_trade_no: alipay::ids::OutTradeNo,
        key: String,
        created_at_ms: i64,
    },
    /// An agreement charge ended unpaid.
    AgreementChargeFailed,
    Nothing,
}

/// What a record is (pure: keys and images only).
pub fn seen(old: Option<&Image>, new: Option<&Image>) -> Seen {
    let Some(new) = new else { return Seen::Nothing };
    let text = |image: &Image, name: &str| image.get(name).and_then(|v| v.as_s().ok()).cloned();
    let (Some(pk), Some(sk)) = (text(new, "pk"), text(new, "sk")) else {
        return Seen::Nothing;
    };
    if pk.starts_with("RISK#B#") && sk == "CUSTOMERS" {
        let customers = new
            .get("custs")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        return Seen::BuyerCustomers { customers };
    }
    if pk.starts_with("ORDER#") && sk.starts_with("REFUND#") && old.is_none() {
        return match store::parse_refund_item(new) {
            Ok(refund) => Seen::RefundCreated {
                out_trade_no: refund.out_trade_no,
                key: format!("{pk}#{sk}"),
                created_at_ms: refund.created_at_ms,
            },
            Err(_) => Seen::Nothing,
        };
    }
    if pk.starts_with("ORDER#") && sk == "ORDER" {
        let order = store::parse_order_item(new).ok();
        let before = old.and_then(|old| store::parse_order_item(old).ok());
        let failed = order
            .is_some_and(|o| o.channel == Cashier::Agreement && o.status == OrderStatus::Closed)
            && before.is_some_and(|b| b.status == OrderStatus::Created);
        if failed {
            return Seen::AgreementChargeFailed;
        }
    }
    Seen::Nothing
}

/// Reads a batch of the window and writes the signals it changes; the window's state goes
/// back to Lambda for the next batch (a new window starts empty).
pub async fn handle(signals: &Signals, event: TimeWindowEvent) -> TimeWindowEventResponse {
    let window = event.time_window_properties;
    let mut state = window.state.clone();
    let mut failure = None;
    for record in &event.dynamo_db_event.records {
        if let Err(error) = one(signals, &mut state, record).await {
            // The keys only: an image may carry a buyer's data.
            tracing::warn!(%error, "a risk signal could not be written; the batch is retried from this record");
            failure = record.change.sequence_number.clone();
            break;
        }
    }
    if failure.is_none()
        && let Err(error) = write_window(signals, &mut state).await
    {
        tracing::warn!(%error, "the window's agreement failures could not be written");
        failure = event
            .dynamo_db_event
            .records
            .first()
            .and_then(|r| r.change.sequence_number.clone());
    }
    if window.is_final_invoke_for_window {
        tracing::info!(
            failures = state
                .get("agreement_failures")
                .map(String::as_str)
                .unwrap_or("0"),
            "risk signals window closed"
        );
    }
    let mut response = TimeWindowEventResponse::default();
    response.time_window_event_response_properties.state = state;
    if let Some(sequence) = failure {
        let mut item = DynamoDbBatchItemFailure::default();
        item.item_identifier = Some(sequence);
        response.batch_item_failures.push(item);
    }
    response
}

async fn one(
    signals: &Signals,
    state: &mut HashMap<String, String>,
    record: &EventRecord,
) -> Result<(), StoreError> {
    let image = |item: &serde_dynamo::Item| -> Option<Image> {
        (!item.is_empty()).then(|| HashMap::<String, AttributeValue>::from(item.clone()))
    };
    let old = image(&record.change.old_image);
    let new = image(&record.change.new_image);
    let now = gateway::clock::now_ms();
    match seen(old.as_ref(), new.as_ref()) {
        Seen::BuyerCustomers { customers } => {
            let count = customers.len() as u64;
            for customer in &customers {
                let key = format!("b:{customer}");
                if state.get(&key).and_then(|v| v.parse::<u64>().ok()) >= Some(count) {
                    continue;
                }
                signals
                    .store
                    .raise_customer_signal(customer, Signal::BuyerCustomers, count, now)
                    .await?;
                state.insert(key, count.to_string());
            }
        }
        Seen::RefundCreated {
            out_trade_no,
            key,
            created_at_ms,
        } => {
            let key = format!("r:{key}");
            if state.contains_key(&key) {
                return Ok(());
            }
            let Some(order) = signals.store.get_order(&out_trade_no).await? else {
                return Ok(());
            };
            let paid_ms = order
                .paid_at
                .as_deref()
                .and_then(|at| alipay::china_time::ChinaDateTime::parse(at).ok())
                .map(|at| at.unix_seconds() * 1000);
            let quick = paid_ms.is_some_and(|paid| created_at_ms - paid <= signals.quick_refund_ms);
            if let (true, Some(customer)) = (quick, order.customer_ref.as_deref()) {
                let digest = domain::risk::digest("customer", customer);
                signals
                    .store
                    .add_customer_signal(&digest, Signal::QuickRefunds, 1, now)
                    .await?;
            }
            state.insert(key, "1".into());
        }
        Seen::AgreementChargeFailed => {
            let count = state
                .get("agreement_failures")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            state.insert("agreement_failures".into(), (count + 1).to_string());
        }
        Seen::Nothing => {}
    }
    Ok(())
}

/// The window's count of failed agreement charges, when it changed since it was last written.
async fn write_window(
    signals: &Signals,
    state: &mut HashMap<String, String>,
) -> Result<(), StoreError> {
    let count = state.get("agreement_failures").cloned();
    let written = state.get("agreement_failures_written").cloned();
    if let Some(count) = count
        && Some(&count) != written.as_ref()
    {
        let value = count.parse::<u64>().unwrap_or(0);
        signals
            .store
            .set_merchant_signal(Signal::AgreementFailures, value, gateway::clock::now_ms())
            .await?;
        state.insert("agreement_failures_written".into(), count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn a_buyers_customers_are_read_from_its_item() {
        let new = Image::from([
            ("pk".into(), s("RISK#B#abc")),
            ("sk".into(), s("CUSTOMERS")),
            (
                "custs".into(),
                AttributeValue::Ss(vec!["c1".into(), "c2".into()]),
            ),
        ]);
        assert_eq!(
            seen(None, Some(&new)),
            Seen::BuyerCustomers {
                customers: vec!["c1".into(), "c2".into()]
            }
        );
        // A counter or a history item is nothing; a deletion (TTL) is nothing.
        let other = Image::from([("pk".into(), s("RISK#C#abc")), ("sk".into(), s("HISTORY"))]);
        assert_eq!(seen(None, Some(&other)), Seen::Nothing);
        assert_eq!(seen(Some(&new), None), Seen::Nothing);
    }
}
