//! Audit items: one per state change (written in the same transaction) or refused report,
//! kept at least 180 days.

use serde::Serialize;

use super::*;

/// One entry of an order's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// `order.created`, `order.paid`, `refund.reserved`, `notify.rejected`, ...
    pub kind: String,
    pub cause: Cause,
    pub from: Option<String>,
    pub to: Option<String>,
    pub amount: Option<Money>,
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

    pub(super) fn change(mut self, from: impl ToString, to: impl ToString) -> Self {
        self.from = Some(from.to_string());
        self.to = Some(to.to_string());
        self
    }

    pub fn amount(mut self, amount: Money) -> Self {
        self.amount = Some(amount);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Store {
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

    pub(super) fn audit_put(
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
}

pub(super) fn audit_item(
    out_trade_no: &OutTradeNo,
    event: &AuditEvent,
) -> Result<Item, StoreError> {
    audit_item_under(order_pk(out_trade_no), event)
}

/// An audit item under the partition `pk` (an order's, a subscription's).
pub(super) fn audit_item_under(pk: String, event: &AuditEvent) -> Result<Item, StoreError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let cause =
        serde_json::to_string(&event.cause).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = Item::from([
        ("pk".to_owned(), s(pk)),
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
        item.insert("amount_fen".to_owned(), n(amount.minor()));
        item.insert("amount_currency".to_owned(), s(amount.currency().code()));
    }
    Ok(item)
}

pub(super) fn parse_audit(item: &Item) -> Result<AuditEvent, StoreError> {
    let cause: Cause = serde_json::from_str(&get_s(item, "cause")?).map_err(corrupt("cause"))?;
    Ok(AuditEvent {
        kind: get_s(item, "event")?,
        cause,
        from: get_opt_s(item, "from_state"),
        to: get_opt_s(item, "to_state"),
        amount: item
            .get("amount_fen")
            .map(|_| get_money(item, "amount_fen", get_currency(item, "amount_currency")?))
            .transpose()?,
        detail: get_opt_s(item, "detail"),
        at_ms: get_n(item, "at_ms")?,
        expires_at: get_n(item, "expires_at")?,
    })
}
