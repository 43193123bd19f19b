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
use serde::Serialize;

use crate::aws::error_chain;
use crate::domain::{
    CNY, Cause, Channel, NewOrder, NewRefund, Order, OrderStatus, Payment, Refund, RefundOutcome,
    RefundStatus,
};
use crate::ids::{OutRequestNo, OutTradeNo, Subject};
use crate::money::Amount;

/// Audit events are kept at least 180 days (the audit requirement); one more day of margin so
/// that clock skew can never expire an event early.
pub const AUDIT_RETENTION_DAYS: i64 = 181;

const ORDER_SK: &str = "ORDER";
const TRANSACTION_ATTEMPTS: u32 = 5;

type Item = HashMap<String, AttributeValue>;

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
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    ExceedsRefundable {
        requested: Amount,
        refundable: Amount,
    },
    #[error("DynamoDB is throttling requests")]
    Throttled,
    #[error("DynamoDB unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
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

/// One entry of an order's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// `order.created`, `order.paid`, `refund.reserved`, `notify.rejected`, ...
    pub kind: String,
    pub cause: Cause,
    pub from: Option<String>,
    pub to: Option<String>,
    pub amount: Option<Amount>,
    pub detail: Option<String>,
    pub at_ms: i64,
    /// Unix seconds after which DynamoDB may delete the event (TTL).
    pub expires_at: i64,
}

impl AuditEvent {
    pub fn new(kind: &str, cause: &Cause, now_ms: i64) -> Self {
        AuditEvent {
            kind: kind.to_owned(),
            cause: cause.clone(),
            from: None,
            to: None,
            amount: None,
            detail: None,
            at_ms: now_ms,
            expires_at: now_ms.div_euclid(1000) + AUDIT_RETENTION_DAYS * 86_400,
        }
    }

    fn change(mut self, from: impl ToString, to: impl ToString) -> Self {
        self.from = Some(from.to_string());
        self.to = Some(to.to_string());
        self
    }

    fn amount(mut self, amount: Amount) -> Self {
        self.amount = Some(amount);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
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

    /// Creates an order unless one with the same `out_trade_no` exists. One transaction; a
    /// second read only when the order already existed and DynamoDB did not return it.
    #[tracing::instrument(skip_all, fields(out_trade_no = %new.out_trade_no))]
    pub async fn create_order(
        &self,
        new: &NewOrder,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Created, StoreError> {
        let order = Order {
            out_trade_no: new.out_trade_no.clone(),
            amount: new.amount,
            currency: CNY.to_owned(),
            subject: new.subject.clone(),
            channel: new.channel,
            status: OrderStatus::Created,
            return_url: new.return_url.clone(),
            time_expire: new.time_expire.as_ref().map(|t| t.as_str().to_owned()),
            trade_no: None,
            paid_amount: None,
            paid_at: None,
            refunded: Amount::ZERO,
            refundable: Amount::ZERO,
            buyer_id_masked: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 1,
            fingerprint: new.fingerprint(),
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(order_item(&order)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.created", cause, now_ms)
            .change("", OrderStatus::Created)
            .amount(order.amount);
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.audit_put(&order.out_trade_no, &event)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(Created::New(order)),
            Err(reasons) => {
                let existing = match self
                    .old_item(&reasons, 0, &order.out_trade_no, ORDER_SK)
                    .await?
                {
                    Some(item) => parse_order(&item)?,
                    None => {
                        return Err(StoreError::Unavailable(
                            "order creation was cancelled".into(),
                        ));
                    }
                };
                if existing.fingerprint == order.fingerprint {
                    Ok(Created::Existing(existing))
                } else {
                    Err(StoreError::Conflict(format!(
                        "out_trade_no {} was already used for a different payment",
                        order.out_trade_no
                    )))
                }
            }
        }
    }

    pub async fn get_order(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        self.get_item(out_trade_no, ORDER_SK)
            .await?
            .map(|item| parse_order(&item))
            .transpose()
    }

    /// The order and its refunds in one Query.
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no))]
    pub async fn get_order_with_refunds(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<(Order, Vec<Refund>)>, StoreError> {
        let items = self
            .query(
                out_trade_no,
                "pk = :pk AND sk >= :from",
                &[(":from", ORDER_SK)],
            )
            .await?;
        let mut order = None;
        let mut refunds = Vec::new();
        for item in &items {
            match item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some(ORDER_SK) => order = Some(parse_order(item)?),
                Some(sk) if sk.starts_with("REFUND#") => refunds.push(parse_refund(item)?),
                _ => {}
            }
        }
        Ok(order.map(|order| (order, refunds)))
    }

    pub async fn get_refund(
        &self,
        out_trade_no: &OutTradeNo,
        out_request_no: &OutRequestNo,
    ) -> Result<Option<Refund>, StoreError> {
        self.get_item(out_trade_no, &refund_sk(out_request_no))
            .await?
            .map(|item| parse_refund(&item))
            .transpose()
    }

    /// CREATED → PAID (or FINISHED), and PAID → FINISHED, as Alipay reported. A repeat is a
    /// [`Transition::Duplicate`]; anything else is refused.
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no, finished = payment.finished))]
    pub async fn mark_paid(
        &self,
        out_trade_no: &OutTradeNo,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let target = if payment.finished {
            OrderStatus::Finished
        } else {
            OrderStatus::Paid
        };
        let refundable = if payment.finished {
            Amount::ZERO
        } else {
            payment.amount
        };
        let mut set = vec![
            "#status = :to",
            "trade_no = :trade_no",
            "paid_fen = :paid",
            "refundable_fen = :refundable",
            "updated_at_ms = :now",
            "version = version + :one",
        ];
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .condition_expression("attribute_exists(pk) AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Created.as_str()))
            .expression_attribute_values(":trade_no", s(&payment.trade_no))
            .expression_attribute_values(":paid", n(payment.amount.fen()))
            .expression_attribute_values(":refundable", n(refundable.fen()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1));
        if let Some(paid_at) = &payment.paid_at {
            set.push("paid_at = :paid_at");
            update = update.expression_attribute_values(":paid_at", s(paid_at));
        }
        if let Some(buyer) = &payment.buyer_id_masked {
            set.push("buyer_id_masked = :buyer");
            update = update.expression_attribute_values(":buyer", s(buyer));
        }
        let update = update
            .update_expression(format!("SET {}", set.join(", ")))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new(
            if payment.finished {
                "order.finished"
            } else {
                "order.paid"
            },
            cause,
            now_ms,
        )
        .change(OrderStatus::Created, target)
        .amount(payment.amount)
        .detail(format!("trade_no {}", payment.trade_no));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current)
                if current.status == OrderStatus::Paid && target == OrderStatus::Finished =>
            {
                self.finish(out_trade_no, payment, cause, now_ms).await
            }
            Err(current) => self.repeat_or_refuse(current, target, &payment.trade_no),
        }
    }

    /// PAID → FINISHED: the trade is no longer refundable.
    async fn finish(
        &self,
        out_trade_no: &OutTradeNo,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET #status = :to, refundable_fen = :zero, updated_at_ms = :now, version = version + :one")
            .condition_expression("#status = :from AND trade_no = :trade_no")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(OrderStatus::Finished.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Paid.as_str()))
            .expression_attribute_values(":trade_no", s(&payment.trade_no))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.finished", cause, now_ms)
            .change(OrderStatus::Paid, OrderStatus::Finished);
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) => {
                self.repeat_or_refuse(current, OrderStatus::Finished, &payment.trade_no)
            }
        }
    }

    fn repeat_or_refuse(
        &self,
        current: Order,
        target: OrderStatus,
        trade_no: &str,
    ) -> Result<Transition<Order>, StoreError> {
        if current.status.already(target) {
            if current
                .trade_no
                .as_deref()
                .is_some_and(|known| known != trade_no)
            {
                return Err(StoreError::Conflict(format!(
                    "order {} was paid by trade {}, not {trade_no}",
                    current.out_trade_no,
                    current.trade_no.as_deref().unwrap_or("")
                )));
            }
            return Ok(Transition::Duplicate(current));
        }
        Err(StoreError::IllegalTransition {
            from: current.status.to_string(),
            to: target.to_string(),
        })
    }

    /// CREATED → CLOSED (unpaid).
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no))]
    pub async fn close(
        &self,
        out_trade_no: &OutTradeNo,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET #status = :to, updated_at_ms = :now, version = version + :one")
            .condition_expression("attribute_exists(pk) AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(OrderStatus::Closed.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Created.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.closed", cause, now_ms)
            .change(OrderStatus::Created, OrderStatus::Closed);
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) if current.status == OrderStatus::Closed => {
                Ok(Transition::Duplicate(current))
            }
            Err(current) => Err(StoreError::IllegalTransition {
                from: current.status.to_string(),
                to: OrderStatus::Closed.to_string(),
            }),
        }
    }

    /// Reserves a refund: in one transaction, lowers the order's refundable amount under a
    /// condition that keeps it from going below zero, writes the PENDING refund, and audits.
    /// A retry with the same `out_request_no` and amount returns the existing refund.
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no, out_request_no = %refund.out_request_no))]
    pub async fn reserve_refund(
        &self,
        out_trade_no: &OutTradeNo,
        refund: &NewRefund,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Reserved, StoreError> {
        let stored = Refund {
            out_trade_no: out_trade_no.clone(),
            out_request_no: refund.out_request_no.clone(),
            amount: refund.amount,
            reason: refund.reason.clone(),
            status: RefundStatus::Pending,
            failure_code: None,
            failure_message: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        // Conditions have no arithmetic: the order keeps `refundable_fen`, and the condition
        // compares it with the amount.
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET refundable_fen = refundable_fen - :amount, updated_at_ms = :now, version = version + :one")
            .condition_expression("#status = :paid AND refundable_fen >= :amount")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":paid", s(OrderStatus::Paid.as_str()))
            .expression_attribute_values(":amount", n(refund.amount.fen()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(refund_item(&stored)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("refund.reserved", cause, now_ms)
            .change("", RefundStatus::Pending.as_str())
            .amount(refund.amount)
            .detail(format!("out_request_no {}", refund.out_request_no));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        let reasons = match self.transact(items).await? {
            Ok(()) => return Ok(Reserved::New(stored)),
            Err(reasons) => reasons,
        };
        // The refund exists: a retry (same amount) or a reuse of the number (a conflict).
        if failed_condition(&reasons, 1) {
            let sk = refund_sk(&refund.out_request_no);
            let existing = self
                .old_item(&reasons, 1, out_trade_no, &sk)
                .await?
                .map(|item| parse_refund(&item))
                .transpose()?
                .ok_or_else(|| StoreError::RefundNotFound(refund.out_request_no.to_string()))?;
            if existing.amount == refund.amount {
                return Ok(Reserved::Existing(existing));
            }
            return Err(StoreError::Conflict(format!(
                "out_request_no {} was already used for a refund of {}",
                refund.out_request_no, existing.amount
            )));
        }
        let order = self.old_order(&reasons, 0, out_trade_no).await?;
        if order.status != OrderStatus::Paid {
            return Err(StoreError::NotRefundable {
                status: order.status,
            });
        }
        Err(StoreError::ExceedsRefundable {
            requested: refund.amount,
            refundable: order.refundable,
        })
    }

    /// PENDING → SUCCEEDED (adds to the order's refunded total) or PENDING → FAILED (gives the
    /// reservation back), in one transaction with its audit event.
    #[tracing::instrument(skip_all, fields(out_trade_no = %refund.out_trade_no, out_request_no = %refund.out_request_no))]
    pub async fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Refund>, StoreError> {
        let (target, order_expression) = match outcome {
            RefundOutcome::Succeeded => (
                RefundStatus::Succeeded,
                "SET refunded_fen = refunded_fen + :amount",
            ),
            RefundOutcome::Failed { .. } => (
                RefundStatus::Failed,
                "SET refundable_fen = refundable_fen + :amount",
            ),
        };
        let mut refund_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(refund_sk(&refund.out_request_no)))
            .condition_expression("#status = :pending AND amount_fen = :amount")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(":amount", n(refund.amount.fen()))
            .expression_attribute_values(":now", n(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        refund_update = match outcome {
            RefundOutcome::Succeeded => refund_update.update_expression("SET #status = :to, updated_at_ms = :now"),
            RefundOutcome::Failed { code, message } => refund_update
                .update_expression("SET #status = :to, updated_at_ms = :now, failure_code = :code, failure_message = :message")
                .expression_attribute_values(":code", s(code))
                .expression_attribute_values(":message", s(message)),
        };
        let order_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression(format!(
                "{order_expression}, updated_at_ms = :now, version = version + :one"
            ))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":amount", n(refund.amount.fen()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        let mut event = AuditEvent::new(
            if target == RefundStatus::Succeeded {
                "refund.succeeded"
            } else {
                "refund.failed"
            },
            cause,
            now_ms,
        )
        .change(RefundStatus::Pending.as_str(), target.as_str())
        .amount(refund.amount);
        event.detail = Some(match outcome {
            RefundOutcome::Succeeded => format!("out_request_no {}", refund.out_request_no),
            RefundOutcome::Failed { code, .. } => {
                format!("out_request_no {}: {code}", refund.out_request_no)
            }
        });
        let items = vec![
            TransactWriteItem::builder()
                .update(refund_update.build().map_err(build_error)?)
                .build(),
            TransactWriteItem::builder().update(order_update).build(),
            self.audit_put(&refund.out_trade_no, &event)?,
        ];
        match self.transact(items).await? {
            Ok(()) => {
                let mut settled = refund.clone();
                settled.status = target;
                settled.updated_at_ms = now_ms;
                if let RefundOutcome::Failed { code, message } = outcome {
                    settled.failure_code = Some(code.clone());
                    settled.failure_message = Some(message.clone());
                }
                Ok(Transition::Applied(settled))
            }
            Err(reasons) => {
                let current = self
                    .old_item(
                        &reasons,
                        0,
                        &refund.out_trade_no,
                        &refund_sk(&refund.out_request_no),
                    )
                    .await?
                    .map(|item| parse_refund(&item))
                    .transpose()?
                    .ok_or_else(|| StoreError::RefundNotFound(refund.out_request_no.to_string()))?;
                if current.status == target {
                    return Ok(Transition::Duplicate(current));
                }
                Err(StoreError::IllegalTransition {
                    from: current.status.as_str().into(),
                    to: target.as_str().into(),
                })
            }
        }
    }

    /// Records an event that changes no state (a rejected notification, a mismatch).
    pub async fn record_event(
        &self,
        out_trade_no: &OutTradeNo,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let item = audit_item(out_trade_no, event)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    /// An order's audit trail, oldest first.
    pub async fn audit_trail(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let items = self
            .query(
                out_trade_no,
                "pk = :pk AND begins_with(sk, :prefix)",
                &[(":prefix", "AUDIT#")],
            )
            .await?;
        items.iter().map(parse_audit).collect()
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn audit_put(
        &self,
        out_trade_no: &OutTradeNo,
        event: &AuditEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(audit_item(out_trade_no, event)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

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
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", s(order_pk(out_trade_no)))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            for (name, value) in values {
                request = request.expression_attribute_values(*name, s(*value));
            }
            let page = request.send().await.map_err(|e| sdk_error(&e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
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

fn failed_condition(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

fn not_found(out_trade_no: &OutTradeNo) -> StoreError {
    StoreError::OrderNotFound(out_trade_no.to_string())
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("request could not be built: {error}"))
}

/// Maps an SDK error to what a handler can act on.
fn sdk_error<E, R>(error: &SdkError<E, R>) -> StoreError
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

fn order_pk(out_trade_no: &OutTradeNo) -> String {
    format!("ORDER#{out_trade_no}")
}

fn refund_sk(out_request_no: &OutRequestNo) -> String {
    format!("REFUND#{out_request_no}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put_opt(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

fn order_item(order: &Order) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(order_pk(&order.out_trade_no))),
        ("sk".to_owned(), s(ORDER_SK)),
        ("kind".to_owned(), s("order")),
        ("out_trade_no".to_owned(), s(order.out_trade_no.as_str())),
        ("amount_fen".to_owned(), n(order.amount.fen())),
        ("currency".to_owned(), s(&order.currency)),
        ("subject".to_owned(), s(order.subject.as_str())),
        ("channel".to_owned(), s(order.channel.as_str())),
        ("status".to_owned(), s(order.status.as_str())),
        ("refunded_fen".to_owned(), n(order.refunded.fen())),
        ("refundable_fen".to_owned(), n(order.refundable.fen())),
        ("created_at_ms".to_owned(), n(order.created_at_ms)),
        ("updated_at_ms".to_owned(), n(order.updated_at_ms)),
        ("version".to_owned(), n(order.version)),
        ("fingerprint".to_owned(), s(&order.fingerprint)),
    ]);
    put_opt(&mut item, "return_url", order.return_url.as_deref());
    put_opt(&mut item, "time_expire", order.time_expire.as_deref());
    put_opt(&mut item, "trade_no", order.trade_no.as_deref());
    put_opt(&mut item, "paid_at", order.paid_at.as_deref());
    put_opt(
        &mut item,
        "buyer_id_masked",
        order.buyer_id_masked.as_deref(),
    );
    if let Some(paid) = order.paid_amount {
        item.insert("paid_fen".to_owned(), n(paid.fen()));
    }
    item
}

fn refund_item(refund: &Refund) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(order_pk(&refund.out_trade_no))),
        ("sk".to_owned(), s(refund_sk(&refund.out_request_no))),
        ("kind".to_owned(), s("refund")),
        ("out_trade_no".to_owned(), s(refund.out_trade_no.as_str())),
        (
            "out_request_no".to_owned(),
            s(refund.out_request_no.as_str()),
        ),
        ("amount_fen".to_owned(), n(refund.amount.fen())),
        ("status".to_owned(), s(refund.status.as_str())),
        ("created_at_ms".to_owned(), n(refund.created_at_ms)),
        ("updated_at_ms".to_owned(), n(refund.updated_at_ms)),
    ]);
    put_opt(&mut item, "reason", refund.reason.as_deref());
    put_opt(&mut item, "failure_code", refund.failure_code.as_deref());
    put_opt(
        &mut item,
        "failure_message",
        refund.failure_message.as_deref(),
    );
    item
}

fn audit_item(out_trade_no: &OutTradeNo, event: &AuditEvent) -> Result<Item, StoreError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let cause =
        serde_json::to_string(&event.cause).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = Item::from([
        ("pk".to_owned(), s(order_pk(out_trade_no))),
        (
            "sk".to_owned(),
            s(format!("AUDIT#{:013}#{}", event.at_ms, &nonce[..12])),
        ),
        ("kind".to_owned(), s("audit")),
        ("event".to_owned(), s(&event.kind)),
        ("cause".to_owned(), s(cause)),
        ("at_ms".to_owned(), n(event.at_ms)),
        ("expires_at".to_owned(), n(event.expires_at)),
    ]);
    put_opt(
        &mut item,
        "from_state",
        event.from.as_deref().filter(|v| !v.is_empty()),
    );
    put_opt(&mut item, "to_state", event.to.as_deref());
    put_opt(&mut item, "detail", event.detail.as_deref());
    if let Some(amount) = event.amount {
        item.insert("amount_fen".to_owned(), n(amount.fen()));
    }
    Ok(item)
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("missing string attribute {name}")))
}

fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("missing number attribute {name}")))
}

fn get_amount(item: &Item, name: &str) -> Result<Amount, StoreError> {
    Amount::from_fen_allow_zero(get_n(item, name)?)
        .map_err(|e| StoreError::Corrupt(format!("{name} {e}")))
}

fn corrupt<E: std::fmt::Display>(name: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Corrupt(format!("{name}: {e}"))
}

fn parse_order(item: &Item) -> Result<Order, StoreError> {
    let status = get_s(item, "status")?;
    let channel = get_s(item, "channel")?;
    Ok(Order {
        out_trade_no: OutTradeNo::parse(get_s(item, "out_trade_no")?)
            .map_err(corrupt("out_trade_no"))?,
        amount: get_amount(item, "amount_fen")?,
        currency: get_s(item, "currency")?,
        subject: Subject::parse(get_s(item, "subject")?).map_err(corrupt("subject"))?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("channel {channel}")))?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        return_url: get_opt_s(item, "return_url"),
        time_expire: get_opt_s(item, "time_expire"),
        trade_no: get_opt_s(item, "trade_no"),
        paid_amount: item
            .get("paid_fen")
            .map(|_| get_amount(item, "paid_fen"))
            .transpose()?,
        paid_at: get_opt_s(item, "paid_at"),
        refunded: get_amount(item, "refunded_fen")?,
        refundable: get_amount(item, "refundable_fen")?,
        buyer_id_masked: get_opt_s(item, "buyer_id_masked"),
        created_at_ms: get_n(item, "created_at_ms")?,
        updated_at_ms: get_n(item, "updated_at_ms")?,
        version: get_n(item, "version")?,
        fingerprint: get_s(item, "fingerprint")?,
    })
}

fn parse_refund(item: &Item) -> Result<Refund, StoreError> {
    let status = get_s(item, "status")?;
    Ok(Refund {
        out_trade_no: OutTradeNo::parse(get_s(item, "out_trade_no")?)
            .map_err(corrupt("out_trade_no"))?,
        out_request_no: OutRequestNo::parse(get_s(item, "out_request_no")?)
            .map_err(corrupt("out_request_no"))?,
        amount: get_amount(item, "amount_fen")?,
        reason: get_opt_s(item, "reason"),
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("refund status {status}")))?,
        failure_code: get_opt_s(item, "failure_code"),
        failure_message: get_opt_s(item, "failure_message"),
        created_at_ms: get_n(item, "created_at_ms")?,
        updated_at_ms: get_n(item, "updated_at_ms")?,
    })
}

fn parse_audit(item: &Item) -> Result<AuditEvent, StoreError> {
    let cause: Cause = serde_json::from_str(&get_s(item, "cause")?).map_err(corrupt("cause"))?;
    Ok(AuditEvent {
        kind: get_s(item, "event")?,
        cause,
        from: get_opt_s(item, "from_state"),
        to: get_opt_s(item, "to_state"),
        amount: item
            .get("amount_fen")
            .map(|_| get_amount(item, "amount_fen"))
            .transpose()?,
        detail: get_opt_s(item, "detail"),
        at_ms: get_n(item, "at_ms")?,
        expires_at: get_n(item, "expires_at")?,
    })
}
