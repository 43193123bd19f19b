//! The risk decisions' items: the rule set (versioned, changed without a deploy), the lists
//! operators keep, the signals the streaming function writes, the decision journal, and the
//! holds of payments under review. Keys carry digests, never a customer ref, an IP, a device
//! fingerprint or a buyer id as it is.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | rule set in force | `RISK#RULES` | `CURRENT` (`version`, `text`) |
//! | every version ever put | `RISK#RULES` | `V#<version, 10 digits>` |
//! | list entry | `RISK#LIST` | `<kind>#<digest>` (`action`, `until_ms`; expires with it) |
//! | a customer's signals | `RISK#C#<digest>` | `SIGNALS` (`buyer_customers`, `quick_refunds`) |
//! | the merchant's signals | `RISK#M` | `SIGNALS` (`agreement_failures`) |
//! | journal, per customer | `RISKJ#C#<digest>` | `<at_ms, 13 digits>#<out_trade_no>` |
//! | journal, per rule | `RISKJ#R#<rule>` | `<at_ms, 13 digits>#<out_trade_no>` |
//! | operators' changes | `RISK#ADMIN` | `AUDIT#…` (audit entries) |

use std::net::IpAddr;

use aws_sdk_dynamodb::types::{Delete, KeysAndAttributes};

use super::*;
use domain::decisions::{Action, Decision, ListHit, ListKind, Reads, Signal, Signals};
use domain::states::Hold;

const RULES_PK: &str = "RISK#RULES";
const LIST_PK: &str = "RISK#LIST";
const ADMIN_PK: &str = "RISK#ADMIN";
const MERCHANT_PK: &str = "RISK#M";
const SIGNALS_SK: &str = "SIGNALS";

/// How a signal is written.
#[derive(Clone, Copy)]
enum SignalWrite {
    Add(u64),
    Set(u64),
    /// To the value unless it is already at least that.
    Raise(u64),
}
/// Signals fade: a customer's or the merchant's are kept 30 days after their last change.
const SIGNAL_DAYS: i64 = 30;

/// A rule set as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRuleSet {
    pub version: u64,
    pub text: String,
    pub at_ms: i64,
    pub by: String,
}

/// A list entry as stored (its value only as a hint: the first characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub kind: ListKind,
    pub digest: String,
    pub hint: String,
    pub action: Action,
    pub until_ms: Option<i64>,
    pub reason: String,
    pub by: String,
    pub at_ms: i64,
}

/// Whose journal to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalOf {
    /// A customer ref (as the merchant knows it; looked up by its digest).
    Customer(String),
    Rule(String),
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub out_trade_no: String,
    pub at_ms: i64,
    /// Whether this line's rule acted (`false`: a shadow rule, or the customer's line).
    pub enforced: bool,
    pub decision: Decision,
}

/// What a create's decision reads, keyed for one `BatchGetItem`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subjects<'a> {
    pub customer: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub device: Option<&'a str>,
    pub buyer: Option<&'a str>,
}

impl Store {
    // ---- the rule set ---------------------------------------------------------------------

    /// The rule set in force, as stored (`None`: never put; the template's `RiskRules` apply).
    pub async fn rule_set(&self) -> Result<Option<StoredRuleSet>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(RULES_PK))
            .key("sk", s("CURRENT"))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        answer.item.map(|item| stored_rule_set(&item)).transpose()
    }

    /// Puts rule set text (the caller checked it) as version `expected + 1`, if `expected` is
    /// still the version in force: the new version, its copy under `V#…` and an audit entry,
    /// one transaction. `Err(Conflict)` when someone else put a version meanwhile.
    pub async fn put_rule_set(
        &self,
        text: &str,
        expected: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let version = expected + 1;
        let item = |sk: String| {
            Item::from([
                ("pk".to_owned(), s(RULES_PK)),
                ("sk".to_owned(), s(sk)),
                ("kind".to_owned(), s("risk_rules")),
                ("version".to_owned(), n(version)),
                ("text".to_owned(), s(text)),
                ("at_ms".to_owned(), n(now_ms)),
                ("by".to_owned(), s(by)),
            ])
        };
        let condition = if expected == 0 {
            "attribute_not_exists(pk)".to_owned()
        } else {
            "version = :expected".to_owned()
        };
        let mut current = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item("CURRENT".into())))
            .condition_expression(condition);
        if expected != 0 {
            current = current.expression_attribute_values(":expected", n(expected));
        }
        let copy = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item(format!("V#{version:010}"))))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new(
            "risk.rules_put",
            &Cause::Operator { by: by.to_owned() },
            now_ms,
        )
        .detail(format!("rule set version {version} (was {expected})"));
        let audit = Put::builder()
            .table_name(&self.table)
            .set_item(Some(audit::audit_item_under(ADMIN_PK.into(), &event)?))
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder()
                .put(current.build().map_err(build_error)?)
                .build(),
            TransactWriteItem::builder().put(copy).build(),
            TransactWriteItem::builder().put(audit).build(),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(version),
            Err(_) => Err(StoreError::Conflict(format!(
                "the rule set in force is no longer version {expected}: read it again"
            ))),
        }
    }

    /// Every version ever put, the newest first.
    pub async fn rule_set_history(&self) -> Result<Vec<StoredRuleSet>, StoreError> {
        let items = self
            .query_partition(RULES_PK, BEGINS, &[(":prefix", "V#")], true, None)
            .await?;
        items.iter().map(stored_rule_set).collect()
    }

    // ---- lists ----------------------------------------------------------------------------

    /// Adds (or replaces) a list entry, audited; `until_ms`: it ends then (and the item goes).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_list_entry(
        &self,
        kind: ListKind,
        value: &str,
        action: Action,
        until_ms: Option<i64>,
        reason: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<ListEntry, StoreError> {
        let entry = ListEntry {
            kind,
            digest: kind.digest(value),
            hint: hint(value),
            action,
            until_ms,
            reason: reason.to_owned(),
            by: by.to_owned(),
            at_ms: now_ms,
        };
        let mut item = Item::from([
            ("pk".to_owned(), s(LIST_PK)),
            (
                "sk".to_owned(),
                s(format!("{}#{}", kind.as_str(), entry.digest)),
            ),
            ("kind".to_owned(), s("risk_list")),
            ("list".to_owned(), s(kind.as_str())),
            ("hint".to_owned(), s(&entry.hint)),
            ("action".to_owned(), s(action.as_str())),
            ("reason".to_owned(), s(reason)),
            ("by".to_owned(), s(by)),
            ("at_ms".to_owned(), n(now_ms)),
        ]);
        if let Some(until) = until_ms {
            item.insert("until_ms".to_owned(), n(until));
            // DynamoDB deletes it within days of this; `until_ms` is what decides.
            item.insert("expires_at".to_owned(), n(until.div_euclid(1000) + 86_400));
        }
        let until = until_ms.map_or_else(|| "no end".to_owned(), |u| format!("until {u}"));
        let event = AuditEvent::new(
            "risk.list_put",
            &Cause::Operator { by: by.to_owned() },
            now_ms,
        )
        .detail(format!(
            "{} {} {} ({until}): {reason}",
            kind.as_str(),
            entry.hint,
            action.as_str()
        ));
        self.admin_transaction(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(build_error)?,
            &event,
        )
        .await?;
        Ok(entry)
    }

    /// Removes a list entry, audited. `false`: there was none.
    pub async fn remove_list_entry(
        &self,
        kind: ListKind,
        value: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let event = AuditEvent::new(
            "risk.list_removed",
            &Cause::Operator { by: by.to_owned() },
            now_ms,
        )
        .detail(format!("{} {}", kind.as_str(), hint(value)));
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(LIST_PK))
            .key("sk", s(format!("{}#{}", kind.as_str(), kind.digest(value))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error)?;
        let audit = self.admin_audit(&event)?;
        match self
            .transact(vec![
                TransactWriteItem::builder().delete(delete).build(),
                audit,
            ])
            .await?
        {
            Ok(()) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    /// Every list entry (expired ones included until DynamoDB deletes them).
    pub async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        let items = self
            .query_partition(LIST_PK, "pk = :pk", &[], false, None)
            .await?;
        items.iter().map(list_entry).collect()
    }

    /// The operators' changes (rule sets, list entries, holds released in bulk), oldest first.
    pub async fn risk_admin_trail(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let items = self
            .query_partition(ADMIN_PK, BEGINS, &[(":prefix", "AUDIT#")], false, None)
            .await?;
        items.iter().map(audit::parse_audit).collect()
    }

    async fn admin_transaction(&self, put: Put, event: &AuditEvent) -> Result<(), StoreError> {
        let audit = self.admin_audit(event)?;
        match self
            .transact(vec![TransactWriteItem::builder().put(put).build(), audit])
            .await?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Unavailable("the change was refused".into())),
        }
    }

    fn admin_audit(&self, event: &AuditEvent) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(audit::audit_item_under(ADMIN_PK.into(), event)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    // ---- what a decision reads ------------------------------------------------------------

    /// The list entries in force for these subjects, the customer's signals and, for an
    /// agreement charge, the merchant's: one `BatchGetItem` (eventually consistent: a signal
    /// lags seconds anyway).
    /// `merchant`: the merchant's signals too (an agreement charge).
    pub async fn risk_reads(
        &self,
        who: &Subjects<'_>,
        merchant: bool,
        now_ms: i64,
    ) -> Result<Reads, StoreError> {
        let ip = who.ip.map(|ip| ip.to_string());
        let listed = [
            (ListKind::Customer, who.customer),
            (ListKind::Ip, ip.as_deref()),
            (ListKind::Device, who.device),
            (ListKind::Buyer, who.buyer),
        ];
        let mut keys: Vec<Item> = listed
            .iter()
            .filter_map(|(kind, value)| {
                value.map(|v| key(LIST_PK, &format!("{}#{}", kind.as_str(), kind.digest(v))))
            })
            .collect();
        if let Some(customer) = who.customer {
            let digest = domain::risk::digest("customer", customer);
            keys.push(key(&format!("RISK#C#{digest}"), SIGNALS_SK));
        }
        if merchant {
            keys.push(key(MERCHANT_PK, SIGNALS_SK));
        }
        let mut reads = Reads::default();
        let mut request = Some(keys);
        // Unprocessed keys are asked again (at most twice more); what is left is unread.
        for _ in 0..3 {
            let Some(keys) = request.take().filter(|k| !k.is_empty()) else {
                break;
            };
            let batch = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .map_err(build_error)?;
            let answer = self
                .client
                .batch_get_item()
                .request_items(&self.table, batch)
                .send()
                .await
                .map_err(|e| sdk_error(&e))?;
            for item in answer
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                read_into(&mut reads, &item, now_ms)?;
            }
            request = answer
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys);
        }
        if request.is_some_and(|k| !k.is_empty()) {
            return Err(StoreError::Throttled);
        }
        reads.lists.sort_by_key(|h| (h.action, h.kind));
        Ok(reads)
    }

    // ---- signals (the streaming function) -------------------------------------------------

    /// Raises a customer's (digest) signal to at least `value` (a signal never goes down by a
    /// late or repeated record).
    pub async fn raise_customer_signal(
        &self,
        customer: &str,
        signal: Signal,
        value: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let pk = format!("RISK#C#{customer}");
        self.write_signal(&pk, signal, SignalWrite::Raise(value), now_ms)
            .await
    }

    /// Adds to a customer's (digest) signal.
    pub async fn add_customer_signal(
        &self,
        customer: &str,
        signal: Signal,
        by: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let pk = format!("RISK#C#{customer}");
        self.write_signal(&pk, signal, SignalWrite::Add(by), now_ms)
            .await
    }

    /// Sets the merchant's signal to what the window counted (the last window's count stands
    /// until the next window's).
    pub async fn set_merchant_signal(
        &self,
        signal: Signal,
        value: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write_signal(MERCHANT_PK, signal, SignalWrite::Set(value), now_ms)
            .await
    }

    /// One signal's write, its expiry pushed on; a raise that would lower it writes nothing.
    async fn write_signal(
        &self,
        pk: &str,
        signal: Signal,
        write: SignalWrite,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (expression, value) = match write {
            SignalWrite::Add(by) => ("ADD #s :v SET expires_at = :ttl, at_ms = :now", by),
            SignalWrite::Set(value) | SignalWrite::Raise(value) => {
                ("SET #s = :v, expires_at = :ttl, at_ms = :now", value)
            }
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(SIGNALS_SK))
            .update_expression(expression)
            .expression_attribute_names("#s", signal.as_str())
            .expression_attribute_values(":v", n(value))
            .expression_attribute_values(":ttl", n(signal_ttl(now_ms)))
            .expression_attribute_values(":now", n(now_ms));
        if let SignalWrite::Raise(_) = write {
            update = update.condition_expression("attribute_not_exists(#s) OR #s < :v");
        }
        match update.send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(sdk_error(&error)),
        }
    }

    // ---- the journal ----------------------------------------------------------------------

    /// The journal lines of one decision, written with what it decided (the order's creation,
    /// or the refusal's audit entry): one per customer, one per rule named.
    pub(crate) fn journal_items(
        &self,
        out_trade_no: &OutTradeNo,
        customer: Option<&str>,
        decision: &Decision,
        now_ms: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let text =
            serde_json::to_string(decision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sk = format!("{now_ms:013}#{}", out_trade_no.as_str());
        let expires_at = now_ms.div_euclid(1000) + AUDIT_RETENTION_DAYS * 86_400;
        let mut lines: Vec<(String, bool)> = Vec::new();
        if let Some(customer) = customer {
            lines.push((
                format!("RISKJ#C#{}", domain::risk::digest("customer", customer)),
                decision.rule.is_some(),
            ));
        }
        for rule in decision.rules() {
            let enforced = decision.matched.iter().any(|h| h.rule == rule);
            lines.push((format!("RISKJ#R#{rule}"), enforced));
        }
        lines
            .into_iter()
            .map(|(pk, enforced)| {
                let item = Item::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(&sk)),
                    ("kind".to_owned(), s("risk_journal")),
                    ("out_trade_no".to_owned(), s(out_trade_no.as_str())),
                    ("outcome".to_owned(), s(decision.outcome.as_str())),
                    ("enforced".to_owned(), AttributeValue::Bool(enforced)),
                    ("decision".to_owned(), s(&text)),
                    ("at_ms".to_owned(), n(now_ms)),
                    ("expires_at".to_owned(), n(expires_at)),
                ]);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(build_error)?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect()
    }

    /// A refused create: its audit entry under the `out_trade_no` (no order is created) and its
    /// journal lines, one transaction.
    pub async fn record_refusal(
        &self,
        out_trade_no: &OutTradeNo,
        customer: Option<&str>,
        decision: &Decision,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut items = vec![self.audit_put(out_trade_no, event)?];
        items.extend(self.journal_items(out_trade_no, customer, decision, event.at_ms)?);
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Unavailable(
                "the refusal was not recorded".into(),
            )),
        }
    }

    /// The newest `limit` journal lines of a customer or a rule, the newest first.
    pub async fn journal(
        &self,
        of: &JournalOf,
        limit: i32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let pk = match of {
            JournalOf::Customer(customer) => {
                format!("RISKJ#C#{}", domain::risk::digest("customer", customer))
            }
            JournalOf::Rule(rule) => format!("RISKJ#R#{rule}"),
        };
        let items = self
            .query_partition(&pk, "pk = :pk", &[], true, Some(limit))
            .await?;
        items
            .iter()
            .map(|item| {
                let decision: Decision = serde_json::from_str(&get_s(item, "decision")?)
                    .map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?;
                Ok(JournalEntry {
                    out_trade_no: get_s(item, "out_trade_no")?,
                    at_ms: get_n(item, "at_ms")?,
                    enforced: item
                        .get("enforced")
                        .and_then(|v| v.as_bool().ok())
                        .copied()
                        .unwrap_or(false),
                    decision,
                })
            })
            .collect()
    }

    // ---- holds ----------------------------------------------------------------------------

    /// Moves a payment's hold from `held` to `to` (released, or cancelled), audited. A repeat
    /// (already `to`) is a duplicate; a payment not held is refused.
    pub async fn change_hold(
        &self,
        out_trade_no: &OutTradeNo,
        to: Hold,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET #h = :to, updated_at_ms = :now ADD version :one")
            .condition_expression("#h = :held")
            .expression_attribute_names("#h", "hold")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":held", s(Hold::Held.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let kind = match to {
            Hold::Released => "order.released",
            _ => "order.hold_cancelled",
        };
        let event = AuditEvent::new(kind, cause, now_ms).change(Hold::Held.as_str(), to.as_str());
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) if current.hold == Some(to) => Ok(Transition::Duplicate(current)),
            Err(current) => Err(StoreError::IllegalTransition {
                from: current.hold.map_or("not held", Hold::as_str).to_owned(),
                to: to.as_str().to_owned(),
            }),
        }
    }
}

/// A key condition on the partition and a sort key prefix.
const BEGINS: &str = "pk = :pk AND begins_with(sk, :prefix)";

fn key(pk: &str, sk: &str) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn signal_ttl(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000) + SIGNAL_DAYS * 86_400
}

/// The first characters of a listed value, for people reading the list (never the whole).
fn hint(value: &str) -> String {
    let shown: String = value.chars().take(3).collect();
    format!("{shown}…")
}

fn stored_rule_set(item: &Item) -> Result<StoredRuleSet, StoreError> {
    Ok(StoredRuleSet {
        version: get_n(item, "version")?,
        text: get_s(item, "text")?,
        at_ms: get_n(item, "at_ms")?,
        by: get_s(item, "by")?,
    })
}

fn list_entry(item: &Item) -> Result<ListEntry, StoreError> {
    let sk = get_s(item, "sk")?;
    let (kind, digest) = sk
        .split_once('#')
        .ok_or_else(|| StoreError::Corrupt(format!("list entry {sk}")))?;
    let action = get_s(item, "action")?;
    Ok(ListEntry {
        kind: ListKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("list {kind}")))?,
        digest: digest.to_owned(),
        hint: get_s(item, "hint")?,
        action: Action::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("action {action}")))?,
        until_ms: item
            .get("until_ms")
            .map(|_| get_n(item, "until_ms"))
            .transpose()?,
        reason: get_opt_s(item, "reason").unwrap_or_default(),
        by: get_opt_s(item, "by").unwrap_or_default(),
        at_ms: get_n(item, "at_ms")?,
    })
}

/// One item of [`Store::risk_reads`]' answer into what was read (an expired entry is not).
fn read_into(reads: &mut Reads, item: &Item, now_ms: i64) -> Result<(), StoreError> {
    let pk = get_s(item, "pk")?;
    if pk == LIST_PK {
        let entry = list_entry(item)?;
        if entry.until_ms.is_none_or(|until| until > now_ms) {
            reads.lists.push(ListHit {
                kind: entry.kind,
                action: entry.action,
            });
        }
        return Ok(());
    }
    let number = |name: &str| -> Result<u64, StoreError> { get_n_or_zero(item, name) };
    let signals: &mut Signals = &mut reads.signals;
    if pk == MERCHANT_PK {
        signals.agreement_failures = number("agreement_failures")?;
    } else {
        signals.buyer_customers = number("buyer_customers")?;
        signals.quick_refunds = number("quick_refunds")?;
    }
    Ok(())
}
