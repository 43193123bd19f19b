//! `alipay-cli risk …`: the operators' side of the risk decisions, against the table named by
//! ORDERS_TABLE (the usual AWS environment): the rule set (checked before it is put: a set
//! that does not parse is refused and nothing changes), the lists (time-limited entries), and
//! the decision journal per customer or per rule. Every change is audited under `RISK#ADMIN`.

use std::path::PathBuf;

use clap::Subcommand;
use domain::decisions::{Action, ListKind};
use serde_json::{Value, json};
use store::{JournalOf, Store};

use crate::Failure;

#[derive(Subcommand)]
pub enum RiskCommand {
    /// Print the rule set in force (version 0: the template's RiskRules, never changed).
    RulesShow,
    /// Check a rule set file and put it as the next version (functions use it within
    /// RISK_RULES_CACHE_MS). Refused, changing nothing, when it does not parse or another
    /// version was put since the one in force was read.
    RulesPut {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Who makes the change (kept in the audit).
        #[arg(long)]
        by: String,
    },
    /// Every version ever put, the newest first.
    RulesHistory,
    /// Add (or replace) a list entry.
    ListAdd {
        /// customer, buyer, ip or device.
        #[arg(long)]
        kind: String,
        /// The customer ref, Alipay buyer id, IP or device fingerprint (kept as a digest).
        #[arg(long)]
        value: String,
        /// block, allow, step_up or review.
        #[arg(long)]
        action: String,
        /// How long the entry lasts, in minutes (none: until removed).
        #[arg(long, value_name = "MINUTES")]
        minutes: Option<i64>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Remove a list entry.
    ListRemove {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        value: String,
        #[arg(long)]
        by: String,
    },
    /// Every list entry, with when it ends.
    ListShow,
    /// The newest decisions of a customer or of a rule (shadow rules included).
    Journal {
        #[arg(long, conflicts_with = "rule", required_unless_present = "rule")]
        customer: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// The operators' changes (rule sets, list entries), oldest first.
    Audit,
}

async fn store() -> Result<Store, Failure> {
    let table = std::env::var("ORDERS_TABLE")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Failure::Usage("ORDERS_TABLE is not set".into()))?;
    let config = gateway::aws::load_config().await;
    Ok(Store::new(aws_sdk_dynamodb::Client::new(&config), table))
}

fn failed(error: impl std::fmt::Display) -> Failure {
    Failure::Usage(error.to_string())
}

pub async fn run(command: RiskCommand) -> Result<String, Failure> {
    let store = store().await?;
    let now = gateway::clock::now_ms();
    let out = match command {
        RiskCommand::RulesShow => match store.rule_set().await.map_err(failed)? {
            Some(set) => json!({"version": set.version, "at_ms": set.at_ms, "by": set.by,
                "rules": serde_json::from_str::<Value>(&set.text).unwrap_or(Value::String(set.text))}),
            None => json!({"version": 0, "rules": "the template's RiskRules (RISK_RULES)"}),
        },
        RiskCommand::RulesPut { file, by } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
            domain::risk::Rules::parse(&text)
                .map_err(|problem| Failure::Usage(format!("refused, nothing changed: {problem}")))?;
            let expected = store.rule_set().await.map_err(failed)?.map_or(0, |s| s.version);
            let version = store
                .put_rule_set(&text, expected, &by, now)
                .await
                .map_err(failed)?;
            json!({"version": version, "was": expected})
        }
        RiskCommand::RulesHistory => Value::Array(
            store
                .rule_set_history()
                .await
                .map_err(failed)?
                .into_iter()
                .map(|s| json!({"version": s.version, "at_ms": s.at_ms, "by": s.by}))
                .collect(),
        ),
        RiskCommand::ListAdd {
            kind,
            value,
            action,
            minutes,
            reason,
            by,
        } => {
            let kind = list_kind(&kind)?;
            let action = Action::parse(&action).ok_or_else(|| {
                Failure::Usage("--action must be one of block, allow, step_up, review".into())
            })?;
            if value.trim().is_empty() {
                return Err(Failure::Usage("--value is empty".into()));
            }
            if minutes.is_some_and(|m| !(1..=525_600).contains(&m)) {
                return Err(Failure::Usage("--minutes must be 1 to 525600 (a year)".into()));
            }
            let until = minutes.map(|m| now + m * 60_000);
            let entry = store
                .put_list_entry(kind, value.trim(), action, until, &reason, &by, now)
                .await
                .map_err(failed)?;
            json!({"kind": kind.as_str(), "value": entry.hint, "action": action.as_str(), "until_ms": until})
        }
        RiskCommand::ListRemove { kind, value, by } => {
            let kind = list_kind(&kind)?;
            let removed = store
                .remove_list_entry(kind, value.trim(), &by, now)
                .await
                .map_err(failed)?;
            json!({"removed": removed})
        }
        RiskCommand::ListShow => Value::Array(
            store
                .list_entries()
                .await
                .map_err(failed)?
                .into_iter()
                .map(|e| {
                    json!({"kind": e.kind.as_str(), "value": e.hint, "action": e.action.as_str(),
                        "until_ms": e.until_ms, "in_force": e.until_ms.is_none_or(|u| u > now),
                        "reason": e.reason, "by": e.by, "at_ms": e.at_ms})
                })
                .collect(),
        ),
        RiskCommand::Journal {
            customer,
            rule,
            limit,
        } => {
            let of = match (customer, rule) {
                (Some(customer), _) => JournalOf::Customer(customer),
                (None, Some(rule)) => JournalOf::Rule(rule),
                (None, None) => return Err(Failure::Usage("--customer or --rule".into())),
            };
            Value::Array(
                store
                    .journal(&of, limit.clamp(1, 1_000))
                    .await
                    .map_err(failed)?
                    .into_iter()
                    .map(|line| {
                        json!({"out_trade_no": line.out_trade_no, "at_ms": line.at_ms,
                            "enforced": line.enforced, "decision": line.decision})
                    })
                    .collect(),
            )
        }
        RiskCommand::Audit => Value::Array(
            store
                .risk_admin_trail()
                .await
                .map_err(failed)?
                .into_iter()
                .map(|e| json!({"event": e.kind, "cause": e.cause, "detail": e.detail, "at_ms": e.at_ms}))
                .collect(),
        ),
    };
    serde_json::to_string_pretty(&out).map_err(failed)
}

fn list_kind(text: &str) -> Result<ListKind, Failure> {
    ListKind::parse(text)
        .ok_or_else(|| Failure::Usage("--kind must be one of customer, buyer, ip, device".into()))
}
