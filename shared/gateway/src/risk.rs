//! Risk decisions inside a create (a `POST /payments`, a subscription's period): the rule set
//! in force, the limits with no I/O, then the counters and the reads (list entries and signals,
//! bounded by `RISK_READ_BUDGET_MS`) at once, then the decision ([`domain::decisions::decide`])
//! and the order's creation with it, journaled in the same transaction. No round trip more
//! than the counters and the creation already cost: the reads go out beside the counters.
//!
//! The rule set is an item of the table (`alipay-cli risk rules put`), read at most every
//! `RISK_RULES_CACHE_MS`; a version that does not parse is refused (the last good one stays in
//! force, `RiskRulesRejected` is counted and alarmed); none put yet: the template's `RiskRules`
//! (version 0).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alipay::china_time::ChinaDateTime;
use domain::decisions::{Action, Decision, Inputs, LimitHit, decide};
use domain::risk::{Rules, Screening, cny_part};
use domain::states::{Cause, NewOrder};
use serde_json::json;
use store::{Created, StoreError, Subjects};

use crate::clock::now_ms;
use crate::startup::Gateway;

/// A rule set and its version.
#[derive(Debug)]
pub struct InForce {
    pub version: u64,
    pub rules: Rules,
}

#[derive(Debug)]
struct Cached {
    current: Arc<InForce>,
    /// When the table was last asked (`None`: never). The machine's clock, not the test
    /// clock: how stale the copy is, whatever day it is for the payments.
    checked_at: Option<Instant>,
}

/// The rule set in force in this function, refreshed from the table at most every `ttl_ms`.
#[derive(Debug)]
pub struct RuleCache {
    cached: Mutex<Cached>,
    ttl: Duration,
}

impl RuleCache {
    /// `seed`: the template's `RiskRules`, version 0, in force until a version is put.
    pub fn new(seed: Rules, ttl_ms: i64) -> RuleCache {
        RuleCache {
            cached: Mutex::new(Cached {
                current: Arc::new(InForce {
                    version: 0,
                    rules: seed,
                }),
                checked_at: None,
            }),
            ttl: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rule set to decide with: the cached one while fresh; otherwise the table's, when it
    /// is newer and parses (a read that fails or takes longer than `budget` keeps the cached
    /// one, asked again after the next `ttl_ms`).
    pub async fn in_force(&self, store: &store::Store, budget: Duration) -> Arc<InForce> {
        let now = Instant::now();
        let (current, fresh) = {
            let cached = self.lock();
            let fresh = cached
                .checked_at
                .is_some_and(|at| now.duration_since(at) < self.ttl);
            (Arc::clone(&cached.current), fresh)
        };
        if fresh {
            return current;
        }
        let read =
            tokio::time::timeout(budget.max(Duration::from_millis(500)), store.rule_set()).await;
        let next = match read {
            Ok(Ok(None)) => None,
            Ok(Ok(Some(stored))) if stored.version == current.version => None,
            Ok(Ok(Some(stored))) => match Rules::parse(&stored.text) {
                Ok(rules) => {
                    tracing::info!(
                        version = stored.version,
                        was = current.version,
                        "risk rule set in force"
                    );
                    Some(Arc::new(InForce {
                        version: stored.version,
                        rules,
                    }))
                }
                Err(problem) => {
                    rejected(stored.version, current.version, &problem);
                    None
                }
            },
            Ok(Err(error)) => {
                tracing::warn!(%error, version = current.version, "the risk rule set could not be read; the one in force stays");
                None
            }
            Err(_) => {
                tracing::warn!(
                    version = current.version,
                    "the risk rule set was not read in time; the one in force stays"
                );
                None
            }
        };
        let mut cached = self.lock();
        cached.checked_at = Some(now);
        if let Some(next) = next {
            cached.current = next;
        }
        Arc::clone(&cached.current)
    }
}

/// A stored version that does not parse: refused, the last good kept, counted (alarmed).
fn rejected(version: u64, kept: u64, problem: &str) {
    tracing::error!(
        version,
        kept,
        problem,
        "risk rule set refused: the last good one stays in force"
    );
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    println!(
        "{}",
        json!({
            "_aws": {
                "Timestamp": now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "RiskRulesRejected", "Unit": "Count"}],
                }],
            },
            "Function": function,
            "RejectedVersion": version,
            "KeptVersion": kept,
            "RiskRulesRejected": 1,
        })
    );
}

/// What the merchant says about the buyer (never read from the connection), and what the
/// payment's cashier can carry.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub buyer_ip: Option<IpAddr>,
    /// The merchant's fingerprint of the buyer's device.
    pub device: Option<&'a str>,
    /// The Alipay buyer, when known before paying (a subscription's agreement holder).
    pub buyer: Option<&'a str>,
    /// Whether the cashier can carry Alipay's identity check (`ext_user_info`).
    pub can_step_up: bool,
}

/// What a screened create came to.
#[derive(Debug)]
pub enum Screened {
    Created(Box<Created>),
    Refused {
        decision: Decision,
        rule: String,
        message: String,
    },
}

/// Screens a new payment and creates it unless the decision blocks it (a repeat of a payment
/// created before is answered, whatever the rules say now). The decision is stored with the
/// order (held when it is a review) and journaled; a block is the caller's to record
/// ([`record_refusal`]).
#[allow(clippy::too_many_arguments)]
pub async fn create_screened(
    gateway: &Gateway,
    new: &NewOrder,
    time_expire: &ChinaDateTime,
    due_at_ms: i64,
    cause: &Cause,
    now: i64,
    facts: &Facts<'_>,
) -> Result<Screened, StoreError> {
    let budget = gateway.config.risk_read_budget();
    let in_force = gateway.rules_in_force().await;
    let rules = &in_force.rules;
    let amount = cny_part(new.amount);
    let screening = Screening {
        customer_ref: new.customer_ref.as_deref(),
        ip: facts.buyer_ip,
        amount,
        virtual_goods: new.virtual_goods,
    };
    let inputs = Inputs {
        amount: new.amount,
        cny: amount,
        virtual_goods: new.virtual_goods,
        cashier: new.channel,
        customer: new.customer_ref.as_deref(),
        buyer_ip: facts.buyer_ip,
        device: facts.device,
        buyer: facts.buyer,
        can_step_up: facts.can_step_up,
    };
    // The limits that need no I/O: a block before anything is written or read.
    if let Err(refusal) = domain::risk::screen(rules, &screening) {
        let decision = decide(
            &rules.policy,
            in_force.version,
            &inputs,
            Some(&domain::decisions::Reads::default()),
            Some(LimitHit { rule: refusal.rule }),
        );
        return refuse(gateway, new, decision, refusal.message).await;
    }
    let counters = domain::risk::counters(rules, &screening, now);
    let subjects = Subjects {
        customer: new.customer_ref.as_deref(),
        ip: facts.buyer_ip,
        device: facts.device,
        buyer: facts.buyer,
    };
    // Nothing about the buyer and no agreement charge: no entry or signal can apply, and
    // nothing is read (the create costs what it did before decisions).
    let agreement = new.channel == domain::states::Cashier::Agreement;
    let anything = subjects.customer.is_some()
        || subjects.ip.is_some()
        || subjects.device.is_some()
        || subjects.buyer.is_some()
        || agreement;
    let read = async {
        if anything {
            tokio::time::timeout(budget, gateway.store.risk_reads(&subjects, agreement, now)).await
        } else {
            Ok(Ok(domain::decisions::Reads::default()))
        }
    };
    let (counted, reads) = tokio::join!(gateway.store.count_payment(&counters, amount), read);
    let reads = match reads {
        Ok(Ok(reads)) => Some(reads),
        Ok(Err(error)) => {
            tracing::warn!(%error, "risk lists and signals unread");
            None
        }
        Err(_) => {
            tracing::warn!(
                budget_ms = gateway.config.risk_read_budget_ms,
                "risk lists and signals not read in time"
            );
            None
        }
    };
    let (limit, limit_message) = match counted {
        Ok(()) => (None, None),
        Err(StoreError::RiskRefused { rule, message }) => (Some(rule), Some(message)),
        Err(error) => return Err(error),
    };
    let decision = decide(
        &rules.policy,
        in_force.version,
        &inputs,
        reads.as_ref(),
        limit.as_deref().map(|rule| LimitHit { rule }),
    );
    if decision.outcome == Action::Block {
        if limit.is_none() {
            // Counted, and not created: take it back out.
            let counted: Vec<&domain::risk::Counter> = counters.iter().collect();
            gateway.store.uncount_payment(&counted, amount).await;
        }
        let message = match (&decision.rule, limit_message) {
            (Some(rule), Some(message)) if Some(rule) == limit.as_ref() => message,
            (Some(rule), _) => block_message(rule),
            (None, _) => "the payment was refused".to_owned(),
        };
        return refuse(gateway, new, decision, message).await;
    }
    gateway
        .store
        .create_counted_order(
            new,
            time_expire,
            due_at_ms,
            cause,
            now,
            &counters,
            Some(&decision),
        )
        .await
        .map(|created| Screened::Created(Box::new(created)))
}

/// A block: a repeat of a payment created before is answered with it; otherwise refused.
async fn refuse(
    gateway: &Gateway,
    new: &NewOrder,
    decision: Decision,
    message: String,
) -> Result<Screened, StoreError> {
    if let Some(created) = gateway.store.repeat_of(new).await? {
        return Ok(Screened::Created(Box::new(created)));
    }
    let rule = decision.rule.clone().unwrap_or_default();
    Ok(Screened::Refused {
        decision,
        rule,
        message,
    })
}

fn block_message(rule: &str) -> String {
    match rule.strip_prefix("list_") {
        Some(kind) => format!("the {kind} is on the block list"),
        None if rule == "signals_unread" => {
            "the risk signals could not be read in time and this amount is not let through without them; retry".to_owned()
        }
        None => format!("the risk rule {rule} blocks it"),
    }
}

/// A refused create's audit entry (under its `out_trade_no`; no order exists) and journal
/// lines, one transaction; a failure to record it is logged, the refusal stands.
pub async fn record_refusal(
    gateway: &Gateway,
    new: &NewOrder,
    cause: &Cause,
    decision: &Decision,
    now: i64,
) {
    let detail = serde_json::to_string(decision).unwrap_or_default();
    let event = store::AuditEvent::new("order.refused", cause, now)
        .amount(new.amount)
        .detail(format!(
            "fraud check {}: {detail}",
            decision.rule.as_deref().unwrap_or("-")
        ));
    if let Err(error) = gateway
        .store
        .record_refusal(
            &new.out_trade_no,
            new.customer_ref.as_deref(),
            decision,
            &event,
        )
        .await
    {
        tracing::warn!(%error, "the refusal could not be audited");
    }
}
