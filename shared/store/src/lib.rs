//! The order store: orders, refunds and audit events on one DynamoDB table.
//!
//! Conditional writes and transactions decide every race (the Powertools idempotency model):
//! state lives in the table, never in memory. Every state change writes its audit event in the
//! same transaction.
//!
//! Table design (keys `pk`, `sk`; TTL attribute `expires_at`):
//! | item   | pk                   | sk                         |
//! |--------|----------------------|----------------------------|
//! | order  | `ORDER#<out_trade_no>` | `ORDER`                  |
//! | refund | `ORDER#<out_trade_no>` | `REFUND#<out_request_no>` |
//! | audit  | `ORDER#<out_trade_no>` | `AUDIT#<ms>#<nonce>`     |
//!
//! | reconciliation summary | `RECON#<yyyy-MM-dd>` | `SUMMARY` |
//! | Alipay certificate (certificate mode, see `certs`) | `ALIPAY_CERTS` | `<sn>` |
//! | subscription (see `subscriptions`) | `SUB#<id>` | `SUB` |
//! | subscription audit | `SUB#<id>` | `AUDIT#<ms>#<nonce>` |
//!
//! Two sparse indexes: `DueIndex` (work for the sweeper, see `due`) and `DayIndexV2` (a day's
//! payments and refunds for reconciliation, see `days`).
//!
//! An order with its refunds is one Query (`sk >= "ORDER"`); its audit trail another
//! (`begins_with(sk, "AUDIT#")`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use sha2::{Digest as _, Sha256};

use alipay::china_time::ChinaDateTime;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
use alipay::money::Amount;
use domain::risk::{Counter, cny_part};
use domain::states::{
    Cashier, Cause, Currency, Money, NewOrder, NewRefund, Order, OrderStatus, PaidRisk, Payment,
    Refund, RefundOutcome, RefundStatus, SettlementFacts,
};

/// Audit events are kept at least 180 days (the audit requirement); one more day of margin so
/// that clock skew can never expire an event early.
pub const AUDIT_RETENTION_DAYS: i64 = 181;

const ORDER_SK: &str = "ORDER";
const TRANSACTION_ATTEMPTS: u32 = 5;

type Item = HashMap<String, AttributeValue>;

mod audit;
mod orders;
mod refunds;

pub use audit::AuditEvent;
use orders::parse_order;
pub use refunds::{SendClaim, Settlement};
use refunds::{parse_refund, pending_refund, refund_item};

mod due;
pub use due::{DUE_INDEX, DueItem};

mod risk_decisions;
mod risk_items;
pub use risk_decisions::{JournalEntry, JournalOf, ListEntry, StoredRuleSet, Subjects};

mod subscriptions;
pub use subscriptions::{Saved, SubscriptionCreated};

mod breaker;
pub use breaker::Opening;
pub use breaker::{BREAKER_STATE_SK, parse_phase};

mod certs;
pub use certs::StoredCert;

mod days;
pub use days::{DAY_INDEX, DAY_SHARDS, bill_hash};
use days::{day_keys, day_of, day_values};

/// An order from its stored item (a stream image, for instance).
pub fn parse_order_item(item: &Item) -> Result<Order, StoreError> {
    parse_order(item)
}

/// A subscription from its stored item (a stream image).
pub fn parse_subscription_item(
    item: &Item,
) -> Result<domain::subscriptions::Subscription, StoreError> {
    subscriptions::parse_subscription(item)
}

/// A subscription's stored item, as the stream carries it.
pub fn subscription_image(subscription: &domain::subscriptions::Subscription) -> Item {
    subscriptions::subscription_item(subscription, None)
}

/// A refund from its stored item.
pub fn parse_refund_item(item: &Item) -> Result<Refund, StoreError> {
    parse_refund(item)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no order with out_trade_no {0}")]
    OrderNotFound(String),
    #[error("no refund with out_request_no {0}")]
    RefundNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot go from {from} to {to}")]
    IllegalTransition { from: String, to: String },
    #[error("the order is {status}; only PAID orders can be refunded")]
    NotRefundable { status: OrderStatus },
    #[error("the payment is in {payment}; a refund of it must be too, not {requested}")]
    CurrencyMismatch {
        payment: Currency,
        requested: Currency,
    },
    #[error("refund of {} exceeds the refundable {}", requested.with_code(), refundable.with_code())]
    ExceedsRefundable { requested: Money, refundable: Money },
    #[error("DynamoDB is throttling requests")]
    Throttled,
    #[error("DynamoDB unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
    /// A fraud check refused the payment (`rule` names it).
    #[error("refused by the fraud checks ({rule}): {message}")]
    RiskRefused { rule: String, message: String },
}

/// The result of creating an order idempotently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Order),
    /// The same request was made before: the order it created.
    Existing(Order),
}

/// The result of a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition<T> {
    Applied(T),
    /// The change had already been made (a retry or a duplicate notification): nothing written.
    Duplicate(T),
}

impl<T> Transition<T> {
    pub fn into_inner(self) -> T {
        match self {
            Transition::Applied(value) | Transition::Duplicate(value) => value,
        }
    }

    pub fn applied(&self) -> bool {
        matches!(self, Transition::Applied(_))
    }
}

/// The result of reserving a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    New(Refund),
    /// A refund with this `out_request_no` and amount exists: a retry.
    Existing(Refund),
}

/// The DynamoDB order store.
#[derive(Clone, Debug)]
pub struct Store {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Store {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A cheap call that opens the connection during Lambda init, so the first request does not
    /// pay for the TLS handshake.
    pub async fn warm_up(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("WARMUP"))
            .key("sk", s("WARMUP"))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    // ---- plumbing -------------------------------------------------------------------------

    /// Runs a transaction. `Ok(Err(reasons))` when a condition failed; transaction conflicts
    /// (another writer on the same item) are retried a bounded number of times.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<CancellationReason>>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Ok(())),
                Err(error) => error,
            };
            let reasons = match &error {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        Some(cancelled.cancellation_reasons().to_vec())
                    }
                    _ => None,
                },
                _ => None,
            };
            let Some(reasons) = reasons else {
                let mapped = sdk_error(&error);
                let conflict = error.code() == Some("TransactionConflictException")
                    || error.code() == Some("TransactionInProgressException");
                if conflict && attempt < TRANSACTION_ATTEMPTS {
                    backoff(attempt).await;
                    continue;
                }
                return Err(mapped);
            };
            let code = |r: &CancellationReason| r.code().unwrap_or("None").to_owned();
            if reasons.iter().any(|r| code(r) == "ConditionalCheckFailed") {
                return Ok(Err(reasons));
            }
            let retryable = reasons.iter().any(|r| {
                matches!(
                    code(r).as_str(),
                    "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if retryable && attempt < TRANSACTION_ATTEMPTS {
                backoff(attempt).await;
                continue;
            }
            if retryable {
                return Err(StoreError::Throttled);
            }
            let codes: Vec<String> = reasons.iter().map(code).collect();
            return Err(StoreError::Unavailable(format!(
                "transaction cancelled: {}",
                codes.join(", ")
            )));
        }
    }

    /// Runs a transaction that changes an order: `Ok` with the order as written, or `Err` with
    /// the order as it stood when the condition refused the change.
    async fn change_order(
        &self,
        items: Vec<TransactWriteItem>,
        out_trade_no: &OutTradeNo,
    ) -> Result<Result<Order, Order>, StoreError> {
        match self.transact(items).await? {
            Ok(()) => {
                let order = self
                    .get_order(out_trade_no)
                    .await?
                    .ok_or_else(|| not_found(out_trade_no))?;
                Ok(Ok(order))
            }
            Err(reasons) => Ok(Err(self.old_order(&reasons, 0, out_trade_no).await?)),
        }
    }

    /// The order as it was when the condition of transaction item `index` failed.
    async fn old_order(
        &self,
        reasons: &[CancellationReason],
        index: usize,
        out_trade_no: &OutTradeNo,
    ) -> Result<Order, StoreError> {
        self.old_item(reasons, index, out_trade_no, ORDER_SK)
            .await?
            .map(|item| parse_order(&item))
            .transpose()?
            .ok_or_else(|| not_found(out_trade_no))
    }

    /// The item as it was when a condition failed: from the cancellation reason when DynamoDB
    /// returned it, otherwise read again.
    async fn old_item(
        &self,
        reasons: &[CancellationReason],
        index: usize,
        out_trade_no: &OutTradeNo,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        if let Some(item) = reasons
            .get(index)
            .and_then(|r| r.item())
            .filter(|item| !item.is_empty())
        {
            return Ok(Some(item.clone()));
        }
        self.get_item(out_trade_no, sk).await
    }

    async fn get_item(
        &self,
        out_trade_no: &OutTradeNo,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(answer.item)
    }

    async fn query(
        &self,
        out_trade_no: &OutTradeNo,
        condition: &str,
        values: &[(&str, &str)],
    ) -> Result<Vec<Item>, StoreError> {
        self.query_partition(&order_pk(out_trade_no), condition, values, false, None)
            .await
    }

    /// The items of partition `pk` that `condition` (on `:pk` and `values`) selects, page after
    /// page, read consistently; `newest_first` goes down the sort key; `limit` stops there.
    async fn query_partition(
        &self,
        pk: &str,
        condition: &str,
        values: &[(&str, &str)],
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(limit)
                .set_exclusive_start_key(start);
            for (name, value) in values {
                request = request.expression_attribute_values(*name, s(*value));
            }
            let page = request.send().await.map_err(|e| sdk_error(&e))?;
            items.extend(page.items.unwrap_or_default());
            let full = limit.is_some_and(|l| items.len() >= usize::try_from(l).unwrap_or(0));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() && !full => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

async fn backoff(attempt: u32) {
    // 10, 20, 40, 80 ms with jitter from a fresh UUID: enough to let a competing writer finish.
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 10);
    tokio::time::sleep(Duration::from_millis((10u64 << (attempt - 1)) + jitter)).await;
}

pub(crate) fn failed_condition(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

pub(crate) fn not_found(out_trade_no: &OutTradeNo) -> StoreError {
    StoreError::OrderNotFound(out_trade_no.to_string())
}

pub(crate) fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("request could not be built: {error}"))
}

/// Maps an SDK error to what a handler can act on.
pub(crate) fn sdk_error<E, R>(error: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => StoreError::Throttled,
        Some(code) => StoreError::Unavailable(format!("{code}: {}", error.message().unwrap_or(""))),
        None => StoreError::Unavailable(error_chain(error)),
    }
}

// ---- items ----------------------------------------------------------------------------------

/// The sparse due-work index (`DueIndex`) is spread over this many partitions, so that the
/// sweeper's queries never make one hot partition.
pub const DUE_SHARDS: u8 = 4;

/// The due-work partition of an order and its refunds: fixed by the order number.
pub(crate) fn due_shard(out_trade_no: &OutTradeNo) -> String {
    let digest = Sha256::digest(out_trade_no.as_str().as_bytes());
    format!("DUE#{}", digest[0] % DUE_SHARDS)
}

pub(crate) fn order_pk(out_trade_no: &OutTradeNo) -> String {
    format!("ORDER#{out_trade_no}")
}

pub(crate) fn refund_sk(out_request_no: &OutRequestNo) -> String {
    format!("REFUND#{out_request_no}")
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn put_opt(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

pub(crate) fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("missing string attribute {name}")))
}

pub(crate) fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("missing number attribute {name}")))
}

/// An item's Alipay channel; items from before channels are the primary's.
pub(crate) fn parse_channel(item: &Item) -> Result<domain::channel::ChannelId, StoreError> {
    match get_opt_s(item, "alipay_channel") {
        None => Ok(domain::channel::ChannelId::Primary),
        Some(name) => domain::channel::ChannelId::parse(&name)
            .ok_or_else(|| StoreError::Corrupt(format!("alipay_channel {name}"))),
    }
}

/// A counter that older items may lack.
pub(crate) fn get_n_or_zero<T: FromStr + Default>(
    item: &Item,
    name: &str,
) -> Result<T, StoreError> {
    match item.get(name) {
        None => Ok(T::default()),
        Some(_) => get_n(item, name),
    }
}

pub(crate) fn get_amount(item: &Item, name: &str) -> Result<Amount, StoreError> {
    Amount::from_fen_allow_zero(get_n(item, name)?)
        .map_err(|e| StoreError::Corrupt(format!("{name} {e}")))
}

/// An amount in minor units (the attributes are named `*_fen` from when every amount was CNY)
/// of `currency`.
pub(crate) fn get_money(item: &Item, name: &str, currency: Currency) -> Result<Money, StoreError> {
    Money::from_minor(get_n(item, name)?, currency)
        .map_err(|e| StoreError::Corrupt(format!("{name} {e}")))
}

/// The currency attribute `name`; CNY when absent (items written before currencies).
pub(crate) fn get_currency(item: &Item, name: &str) -> Result<Currency, StoreError> {
    match get_opt_s(item, name) {
        None => Ok(Currency::CNY),
        Some(code) => {
            Currency::parse(&code).map_err(|e| StoreError::Corrupt(format!("{name} {code}: {e}")))
        }
    }
}

pub(crate) fn corrupt<E: std::fmt::Display>(name: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Corrupt(format!("{name}: {e}"))
}

/// An error and its sources on one line, for logs and answers.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
