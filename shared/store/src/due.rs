//! Due work for the sweeper: the sparse `DueIndex` holds only items that need attention (an
//! unpaid order until it is paid or closed, a refund while it is PENDING), keyed by
//! `due_shard` and `due_at_ms`. Claims are conditional on the due time the sweeper read, so two
//! sweepers never act on one item at once.

use aws_sdk_dynamodb::types::ReturnValue;

use super::*;

/// The GSI that lists due work (see `template.yaml`).
pub const DUE_INDEX: &str = "DueIndex";

/// An item the sweeper must look at.
// A sweep holds a page of these for a moment; boxing the order would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueItem {
    Order(Order),
    Refund(Refund),
}

impl DueItem {
    pub fn due_at_ms(&self) -> Option<i64> {
        match self {
            DueItem::Order(order) => order.due_at_ms,
            DueItem::Refund(refund) => refund.due_at_ms,
        }
    }

    pub fn out_trade_no(&self) -> &OutTradeNo {
        match self {
            DueItem::Order(order) => &order.out_trade_no,
            DueItem::Refund(refund) => &refund.out_trade_no,
        }
    }
}

impl Store {
    /// Up to `limit` items due at or before `now_ms` in one shard, oldest first. One Query on
    /// the sparse index (never a Scan).
    pub async fn due_items(
        &self,
        shard: u8,
        now_ms: i64,
        limit: i32,
    ) -> Result<Vec<DueItem>, StoreError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard AND due_at_ms <= :now")
            .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
            .expression_attribute_values(":now", n(now_ms))
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        answer
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                match item
                    .get("kind")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                {
                    Some("order") => Some(parse_order(item).map(DueItem::Order)),
                    Some("refund") => Some(parse_refund(item).map(DueItem::Refund)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The oldest due time in one shard (for the age-of-oldest-due-work metric).
    pub async fn oldest_due_ms(&self, shard: u8) -> Result<Option<i64>, StoreError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard")
            .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
            .projection_expression("due_at_ms")
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(answer
            .items
            .unwrap_or_default()
            .first()
            .and_then(|item| get_n(item, "due_at_ms").ok()))
    }

    /// Claims a due item for this sweeper: moves its due time from what was read to
    /// `next_due_ms` (the backoff, should this run not finish it) and counts the sweep. `None`
    /// when another sweeper claimed it first or it no longer needs attention; otherwise the
    /// item as it now is.
    pub async fn claim_due(
        &self,
        item: &DueItem,
        next_due_ms: i64,
    ) -> Result<Option<DueItem>, StoreError> {
        let Some(seen) = item.due_at_ms() else {
            return Ok(None);
        };
        let sk = match item {
            DueItem::Order(_) => ORDER_SK.to_owned(),
            DueItem::Refund(refund) => refund_sk(&refund.out_request_no),
        };
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(order_pk(item.out_trade_no())))
            .key("sk", s(sk))
            .update_expression(
                "SET due_at_ms = :next, sweeps = if_not_exists(sweeps, :zero) + :one",
            )
            .condition_expression("due_at_ms = :seen")
            .expression_attribute_values(":seen", n(seen))
            .expression_attribute_values(":next", n(next_due_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match answer {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                Ok(Some(match item {
                    _ if matches!(
                        item.get("kind")
                            .and_then(|v| v.as_s().ok())
                            .map(String::as_str),
                        Some("refund")
                    ) =>
                    {
                        DueItem::Refund(parse_refund(&item)?)
                    }
                    _ => DueItem::Order(parse_order(&item)?),
                }))
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(sdk_error(&error)),
        }
    }
}
