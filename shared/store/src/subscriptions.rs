//! Subscriptions: one item each (`SUB#<id>`, `SUB`), written only under the version read
//! (optimistic concurrency: two scheduler runs, or a run and a notification, never both
//! write), each change with its audit event in the same transaction (`SUB#<id>`,
//! `AUDIT#<ms>#<nonce>`). While charging is pending the item is in the sparse `DueIndex` under
//! `SUBDUE#<shard>`, apart from the sweeper's orders and refunds: the scheduler finds its work
//! with one Query per shard, never a Scan.

use alipay::agreement::{AgreementStatus, PeriodType, SignChannel};
use alipay::china_time::ChinaDate;
use alipay::ids::{AgreementNo, ExternalAgreementNo};
use aws_sdk_dynamodb::types::ReturnValue;
use domain::subscriptions::{Period, Plan, Subscription, SubscriptionStatus};

use super::*;

const SUB_SK: &str = "SUB";

fn sub_pk(id: &ExternalAgreementNo) -> String {
    format!("SUB#{id}")
}

/// The due-work partition of a subscription.
fn sub_due_shard(id: &ExternalAgreementNo) -> String {
    let digest = Sha256::digest(id.as_str().as_bytes());
    format!("SUBDUE#{}", digest[0] % DUE_SHARDS)
}

/// The result of creating a subscription idempotently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionCreated {
    New(Subscription),
    /// The same request was made before: the subscription it created.
    Existing(Subscription),
}

/// How writing a subscription went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written; the subscription as it now is.
    Written(Subscription),
    /// Someone else wrote it first: the subscription as it now is (nothing was written).
    Stale(Subscription),
}

impl Store {
    /// Creates a subscription, or finds the one a retry of the same request created. A
    /// different request under the same id is a [`StoreError::Conflict`].
    pub async fn create_subscription(
        &self,
        subscription: &Subscription,
        due_at_ms: Option<i64>,
        cause: &Cause,
    ) -> Result<SubscriptionCreated, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(subscription_item(subscription, due_at_ms)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("subscription.created", cause, subscription.created_at_ms)
            .change("", subscription.status.as_str())
            .amount(subscription.plan.amount.into());
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.sub_audit_put(&subscription.id, &event)?,
        ];
        let reasons = match self.transact(items).await? {
            Ok(()) => return Ok(SubscriptionCreated::New(subscription.clone())),
            Err(reasons) => reasons,
        };
        let existing = match reasons.first().and_then(|r| r.item()) {
            Some(item) => parse_subscription(item)?,
            None => self
                .get_subscription(&subscription.id)
                .await?
                .ok_or_else(|| StoreError::Unavailable("creation was cancelled".into()))?,
        };
        if existing.fingerprint == subscription.fingerprint {
            Ok(SubscriptionCreated::Existing(existing))
        } else {
            Err(StoreError::Conflict(format!(
                "subscription {} exists with different parameters",
                subscription.id
            )))
        }
    }

    pub async fn get_subscription(
        &self,
        id: &ExternalAgreementNo,
    ) -> Result<Option<Subscription>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(sub_pk(id)))
            .key("sk", s(SUB_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        answer.item.as_ref().map(parse_subscription).transpose()
    }

    /// Writes `next` (its version one above the one read) if the stored version is still the
    /// one read, with `event` in the same transaction; `due_at_ms` puts it in (or takes it out
    /// of) the scheduler's index.
    pub async fn save_subscription(
        &self,
        next: &Subscription,
        due_at_ms: Option<i64>,
        event: &AuditEvent,
    ) -> Result<Saved, StoreError> {
        let read_version = next.version.saturating_sub(1);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(subscription_item(next, due_at_ms)))
            .condition_expression("version = :read")
            .expression_attribute_values(":read", n(read_version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.sub_audit_put(&next.id, event)?,
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(Saved::Written(next.clone())),
            Err(reasons) => match reasons.first().and_then(|r| r.item()) {
                Some(item) => Ok(Saved::Stale(parse_subscription(item)?)),
                None => Err(StoreError::Conflict(format!("no subscription {}", next.id))),
            },
        }
    }

    /// Claims a due subscription for this run: moves its due time from what was read to
    /// `lease_until_ms` (should this run not finish), under the version read. `None` when
    /// another run (or a notification) got there first.
    pub async fn claim_subscription(
        &self,
        subscription: &Subscription,
        seen_due_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Subscription>, StoreError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(sub_pk(&subscription.id)))
            .key("sk", s(SUB_SK))
            .update_expression("SET due_at_ms = :lease, version = version + :one")
            .condition_expression("due_at_ms = :seen AND version = :version")
            .expression_attribute_values(":seen", n(seen_due_ms))
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":version", n(subscription.version))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match answer {
            Ok(output) => output
                .attributes
                .as_ref()
                .map(parse_subscription)
                .transpose(),
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

    /// Up to `limit` subscriptions due at or before `now_ms` in one shard, with the due time
    /// each was read at. One Query on the sparse index.
    pub async fn due_subscriptions(
        &self,
        shard: u8,
        now_ms: i64,
        limit: i32,
    ) -> Result<Vec<(Subscription, i64)>, StoreError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("due_shard = :shard AND due_at_ms <= :now")
            .expression_attribute_values(":shard", s(format!("SUBDUE#{shard}")))
            .expression_attribute_values(":now", n(now_ms))
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        answer
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| Ok((parse_subscription(item)?, get_n(item, "due_at_ms")?)))
            .collect()
    }

    /// A subscription's audit trail, oldest first.
    pub async fn subscription_trail(
        &self,
        id: &ExternalAgreementNo,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let answer = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(sub_pk(id)))
            .expression_attribute_values(":prefix", s("AUDIT#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        answer
            .items
            .unwrap_or_default()
            .iter()
            .map(audit::parse_audit)
            .collect()
    }

    fn sub_audit_put(
        &self,
        id: &ExternalAgreementNo,
        event: &AuditEvent,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = audit::audit_item_under(sub_pk(id), event)?;
        item.insert("subscription".to_owned(), s(id.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

pub(crate) fn subscription_item(sub: &Subscription, due_at_ms: Option<i64>) -> Item {
    let plan = &sub.plan;
    let period = &sub.period;
    let mut item = Item::from([
        ("pk".to_owned(), s(sub_pk(&sub.id))),
        ("sk".to_owned(), s(SUB_SK)),
        ("kind".to_owned(), s("subscription")),
        ("id".to_owned(), s(sub.id.as_str())),
        ("subject".to_owned(), s(sub.subject.as_str())),
        ("status".to_owned(), s(sub.status.as_str())),
        ("period_type".to_owned(), s(plan.period_type.as_str())),
        ("period".to_owned(), n(plan.period)),
        ("amount_fen".to_owned(), n(plan.amount.fen())),
        ("first_date".to_owned(), s(plan.first_date.to_string())),
        ("single_fen".to_owned(), n(plan.single_amount.fen())),
        ("sign_channel".to_owned(), s(sub.sign_channel.as_str())),
        ("alipay_channel".to_owned(), s(sub.alipay_channel.as_str())),
        (
            "agreement_status".to_owned(),
            s(sub.agreement_status.as_str()),
        ),
        ("period_n".to_owned(), n(period.n)),
        ("period_date".to_owned(), s(period.date.to_string())),
        ("refusals".to_owned(), n(period.refusals)),
        ("risk_refusals".to_owned(), n(period.risk_refusals)),
        ("in_doubt".to_owned(), AttributeValue::Bool(period.in_doubt)),
        (
            "alipay_date_behind".to_owned(),
            AttributeValue::Bool(period.alipay_date_behind),
        ),
        (
            "at_cashier".to_owned(),
            AttributeValue::Bool(period.at_cashier),
        ),
        ("charged_fen".to_owned(), n(sub.charged.fen())),
        ("charges".to_owned(), n(sub.charges)),
        ("created_at_ms".to_owned(), n(sub.created_at_ms)),
        ("updated_at_ms".to_owned(), n(sub.updated_at_ms)),
        ("version".to_owned(), n(sub.version)),
        ("fingerprint".to_owned(), s(&sub.fingerprint)),
    ]);
    let mut number = |name: &str, value: Option<i64>| {
        if let Some(value) = value {
            item.insert(name.to_owned(), n(value));
        }
    };
    number("total_fen", plan.total_amount.map(|a| a.fen() as i64));
    number("total_payments", plan.total_payments.map(i64::from));
    number("agreement_checked_ms", period.agreement_checked_ms);
    number("sent_ms", period.sent_ms);
    number("refused_ms", period.refused_ms);
    put_opt(&mut item, "customer_ref", sub.customer_ref.as_deref());
    put_opt(
        &mut item,
        "agreement_no",
        sub.agreement_no.as_ref().map(AgreementNo::as_str),
    );
    put_opt(&mut item, "last_period_end", sub.last_period_end.as_deref());
    if let Some(due) = due_at_ms {
        item.insert("due_shard".to_owned(), s(sub_due_shard(&sub.id)));
        item.insert("due_at_ms".to_owned(), n(due));
    }
    item
}

fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn get_opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => get_n(item, name).map(Some),
    }
}

pub(crate) fn parse_subscription(item: &Item) -> Result<Subscription, StoreError> {
    let text = |name: &str| get_s(item, name);
    let amount = |name: &str| get_amount(item, name);
    let bad = |name: &'static str| corrupt::<alipay::ids::FieldError>(name);
    let period_type = PeriodType::parse(&text("period_type")?)
        .ok_or_else(|| StoreError::Corrupt("subscription period_type".into()))?;
    let plan = Plan {
        period_type,
        period: get_n(item, "period")?,
        amount: amount("amount_fen")?,
        first_date: ChinaDate::parse(&text("first_date")?).map_err(bad("first_date"))?,
        single_amount: amount("single_fen")?,
        total_amount: get_opt_n(item, "total_fen")?
            .map(|fen| Amount::from_fen_allow_zero(fen.max(0) as u64))
            .transpose()
            .map_err(corrupt("total_fen"))?,
        total_payments: get_opt_n(item, "total_payments")?.map(|n| n.max(0) as u32),
    };
    let period = Period {
        n: get_n(item, "period_n")?,
        date: ChinaDate::parse(&text("period_date")?).map_err(bad("period_date"))?,
        refusals: get_n(item, "refusals")?,
        risk_refusals: get_n(item, "risk_refusals")?,
        in_doubt: get_bool(item, "in_doubt"),
        agreement_checked_ms: get_opt_n(item, "agreement_checked_ms")?,
        sent_ms: get_opt_n(item, "sent_ms")?,
        refused_ms: get_opt_n(item, "refused_ms")?,
        alipay_date_behind: get_bool(item, "alipay_date_behind"),
        at_cashier: get_bool(item, "at_cashier"),
    };
    Ok(Subscription {
        id: ExternalAgreementNo::parse(text("id")?).map_err(bad("id"))?,
        customer_ref: get_opt_s(item, "customer_ref"),
        subject: Subject::parse(text("subject")?).map_err(bad("subject"))?,
        plan,
        sign_channel: SignChannel::parse(&text("sign_channel")?)
            .ok_or_else(|| StoreError::Corrupt("subscription sign_channel".into()))?,
        alipay_channel: parse_channel(item)?,
        status: SubscriptionStatus::parse(&text("status")?)
            .ok_or_else(|| StoreError::Corrupt("subscription status".into()))?,
        agreement_no: get_opt_s(item, "agreement_no")
            .map(AgreementNo::parse)
            .transpose()
            .map_err(bad("agreement_no"))?,
        agreement_status: AgreementStatus::parse(&text("agreement_status")?)
            .ok_or_else(|| StoreError::Corrupt("subscription agreement_status".into()))?,
        period,
        charged: amount("charged_fen")?,
        charges: get_n(item, "charges")?,
        last_period_end: get_opt_s(item, "last_period_end"),
        created_at_ms: get_n(item, "created_at_ms")?,
        updated_at_ms: get_n(item, "updated_at_ms")?,
        version: get_n(item, "version")?,
        fingerprint: text("fingerprint")?,
    })
}
