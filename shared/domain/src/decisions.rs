//! Real-time risk decisions: given the rule set in force, what a request says about the payment
//! and the buyer, and what could be read in time (list entries, streaming signals, the counters'
//! verdict), is the payment allowed, held for review, stepped up to an identity check, or
//! blocked? Pure: the create request and the subscription charge drive it alike, the store
//! keeps what it decided (the journal).
//!
//! The order is fixed (docs/risk.md):
//! 1. **block**: the limits (lists of `RISK_RULES`, the virtual-goods ceiling, the counters),
//!    block list entries, block rules. An allow never lets a blocked payment through.
//! 2. **allow**: allow list entries, allow rules. Skips steps 3 and 4.
//! 3. **step_up**: step-up list entries and rules (Alipay checks the payer's identity and age);
//!    where the cashier cannot carry the check, the payment is held for review instead.
//! 4. **review**: review list entries and rules (the payment is created with a hold).
//! 5. otherwise **allow**.
//!
//! Within a step: list entries, then the rules in the order written, then the limits. A rule in
//! `shadow` mode is evaluated the same way and journaled, never acted on. When the list entries
//! and signals could not be read in time, the band of the payment's amount (`when_unread`)
//! decides as a rule of its own, `signals_unread`, in its action's step: open (`allow`) or
//! closed (`review`, `step_up`, `block`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::states::{Cashier, Currency, Money};
use alipay::money::Amount;

/// What a decision does, in the order they are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Block,
    Allow,
    StepUp,
    Review,
}

impl Action {
    /// Every action, in evaluation order.
    pub const ORDER: [Action; 4] = [Action::Block, Action::Allow, Action::StepUp, Action::Review];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Allow => "allow",
            Action::StepUp => "step_up",
            Action::Review => "review",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ORDER.into_iter().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule acts or is only journaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// A cross-entity pattern the streaming function writes where the next create reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The most customer refs one Alipay buyer who paid for this customer has paid for.
    BuyerCustomers,
    /// This customer's refunds asked for soon after the payment was delivered (paid).
    QuickRefunds,
    /// The merchant's failed agreement charges in the last window.
    AgreementFailures,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::BuyerCustomers => "buyer_customers",
            Signal::QuickRefunds => "quick_refunds",
            Signal::AgreementFailures => "agreement_failures",
        }
    }
}

/// The values of the signals, as read (absent: 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    pub buyer_customers: u64,
    pub quick_refunds: u64,
    pub agreement_failures: u64,
}

impl Signals {
    pub fn get(&self, signal: Signal) -> u64 {
        match signal {
            Signal::BuyerCustomers => self.buyer_customers,
            Signal::QuickRefunds => self.quick_refunds,
            Signal::AgreementFailures => self.agreement_failures,
        }
    }
}

/// What a list entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Customer,
    Buyer,
    Ip,
    Device,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Customer,
        ListKind::Buyer,
        ListKind::Ip,
        ListKind::Device,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Customer => "customer",
            ListKind::Buyer => "buyer",
            ListKind::Ip => "ip",
            ListKind::Device => "device",
        }
    }

    pub fn parse(text: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The digest a list entry of this kind is kept and looked up under (never the value).
    pub fn digest(self, value: &str) -> String {
        crate::risk::digest(&format!("list-{}", self.as_str()), value)
    }
}

/// A list entry in force (expired ones are never handed in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListHit {
    pub kind: ListKind,
    pub action: Action,
}

/// When a rule applies: every condition given must hold (at least one is given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    /// The payment's CNY amount is at least this (a payment in another currency never is).
    pub amount_at_least: Option<Amount>,
    pub currencies: Vec<Currency>,
    pub virtual_goods: Option<bool>,
    pub cashiers: Vec<Cashier>,
    pub has_customer: Option<bool>,
    pub has_buyer_ip: Option<bool>,
    pub has_device: Option<bool>,
    /// The signal's value is at least this.
    pub signal: Option<(Signal, u64)>,
}

impl Condition {
    fn is_empty(&self) -> bool {
        *self == Condition::default()
    }

    /// `None`: it depends on a signal that could not be read.
    fn holds(&self, inputs: &Inputs<'_>, signals: Option<&Signals>) -> Option<bool> {
        let plain = self
            .amount_at_least
            .is_none_or(|least| inputs.amount.currency() == Currency::CNY && inputs.cny >= least)
            && (self.currencies.is_empty() || self.currencies.contains(&inputs.amount.currency()))
            && self.virtual_goods.is_none_or(|v| v == inputs.virtual_goods)
            && (self.cashiers.is_empty() || self.cashiers.contains(&inputs.cashier))
            && self
                .has_customer
                .is_none_or(|v| v == inputs.customer.is_some())
            && self
                .has_buyer_ip
                .is_none_or(|v| v == inputs.buyer_ip.is_some())
            && self.has_device.is_none_or(|v| v == inputs.device.is_some());
        match (plain, self.signal) {
            (false, _) => Some(false),
            (true, None) => Some(true),
            (true, Some((signal, least))) => signals.map(|s| s.get(signal) >= least),
        }
    }
}

/// One rule of the rule set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub action: Action,
    pub mode: Mode,
    pub when: Condition,
}

/// What an unread signal means for payments up to an amount (`None`: any amount).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub up_to: Option<Amount>,
    pub then: Action,
}

/// The decision rules of a rule set (its limits are [`crate::risk::Rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// `ext_user_info.min_age` of a stepped-up payment.
    pub step_up_min_age: u8,
    /// Ascending by `up_to`, the last without one; empty: open at every amount.
    pub when_unread: Vec<Band>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rules: Vec::new(),
            step_up_min_age: 18,
            when_unread: Vec::new(),
        }
    }
}

/// The rule set's text for the decision rules (the rest of `RISK_RULES` is the limits').
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleText {
    id: String,
    action: String,
    #[serde(default)]
    mode: Option<String>,
    when: WhenText,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WhenText {
    amount_at_least: Option<String>,
    currencies: Option<Vec<String>>,
    virtual_goods: Option<bool>,
    cashiers: Option<Vec<String>>,
    has_customer: Option<bool>,
    has_buyer_ip: Option<bool>,
    has_device: Option<bool>,
    signal: Option<SignalText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalText {
    name: Signal,
    at_least: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpText {
    min_age: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct BandText {
    up_to: Option<String>,
    then: String,
}

/// The longest rule id, and the most rules a set may have (each is evaluated on every create).
const MAX_ID: usize = 64;
const MAX_RULES: usize = 100;

impl Policy {
    /// Checks the decision rules whole; every problem is named.
    pub(crate) fn parse(
        rules: Vec<RuleText>,
        step_up: Option<StepUpText>,
        bands: Vec<BandText>,
    ) -> Result<Policy, String> {
        if rules.len() > MAX_RULES {
            return Err(format!("rules: at most {MAX_RULES} rules"));
        }
        let mut parsed: Vec<Rule> = Vec::with_capacity(rules.len());
        for (i, text) in rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let id_ok = !text.id.is_empty()
                && text.id.len() <= MAX_ID
                && text
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !id_ok {
                return Err(format!(
                    "{at}.id: 1 to {MAX_ID} of a-z, 0-9 and _ (it names the rule in the journal)"
                ));
            }
            if parsed.iter().any(|r| r.id == text.id) || crate::risk::is_limit_rule(&text.id) {
                return Err(format!("{at}.id: {} is already a rule's name", text.id));
            }
            let action = Action::parse(&text.action).ok_or_else(|| {
                format!("{at}.action: must be one of block, allow, step_up, review")
            })?;
            let mode = match text.mode.as_deref() {
                None | Some("enforce") => Mode::Enforce,
                Some("shadow") => Mode::Shadow,
                Some(_) => return Err(format!("{at}.mode: must be enforce or shadow")),
            };
            let when = condition(&at, text.when)?;
            if when.is_empty() {
                return Err(format!(
                    "{at}.when: names no condition (a rule that matches every payment is refused)"
                ));
            }
            parsed.push(Rule {
                id: text.id,
                action,
                mode,
                when,
            });
        }
        let step_up_min_age = step_up.and_then(|s| s.min_age).unwrap_or(18);
        if step_up_min_age > 120 {
            return Err("step_up.min_age: at most 120".into());
        }
        let mut when_unread = Vec::with_capacity(bands.len());
        for (i, band) in bands.into_iter().enumerate() {
            let at = format!("when_unread[{i}]");
            let up_to = band
                .up_to
                .map(|t| Amount::parse(&t).map_err(|e| format!("{at}.up_to: {e}")))
                .transpose()?;
            let then = Action::parse(&band.then).ok_or_else(|| {
                format!("{at}.then: must be one of block, allow, step_up, review")
            })?;
            if let Some(Band {
                up_to: previous, ..
            }) = when_unread.last()
            {
                match (previous, up_to) {
                    (None, _) => {
                        return Err(format!("{at}: follows the band without up_to (the last)"));
                    }
                    (Some(previous), Some(up_to)) if up_to <= *previous => {
                        return Err(format!("{at}.up_to: must be above the band before it"));
                    }
                    _ => {}
                }
            }
            when_unread.push(Band { up_to, then });
        }
        if when_unread.last().is_some_and(|b| b.up_to.is_some()) {
            return Err(
                "when_unread: the last band has no up_to (it covers every amount above)".into(),
            );
        }
        Ok(Policy {
            rules: parsed,
            step_up_min_age,
            when_unread,
        })
    }

    /// What an unread signal means for a payment of this (CNY) amount; a payment in another
    /// currency falls in the last band.
    fn unread_action(&self, inputs: &Inputs<'_>) -> Action {
        let cny = (inputs.amount.currency() == Currency::CNY).then_some(inputs.cny);
        self.when_unread
            .iter()
            .find(|band| match (band.up_to, cny) {
                (None, _) => true,
                (Some(up_to), Some(cny)) => cny <= up_to,
                (Some(_), None) => false,
            })
            .map_or(Action::Allow, |band| band.then)
    }
}

fn condition(at: &str, when: WhenText) -> Result<Condition, String> {
    let amount_at_least = when
        .amount_at_least
        .map(|t| Amount::parse(&t).map_err(|e| format!("{at}.when.amount_at_least: {e}")))
        .transpose()?;
    let currencies = when
        .currencies
        .unwrap_or_default()
        .iter()
        .map(|code| Currency::parse(code).map_err(|e| format!("{at}.when.currencies: {code}: {e}")))
        .collect::<Result<_, _>>()?;
    let cashiers = when
        .cashiers
        .unwrap_or_default()
        .iter()
        .map(|name| {
            Cashier::parse(name).ok_or_else(|| {
                format!("{at}.when.cashiers: {name} is not page, wap, app, qr or agreement")
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Condition {
        amount_at_least,
        currencies,
        virtual_goods: when.virtual_goods,
        cashiers,
        has_customer: when.has_customer,
        has_buyer_ip: when.has_buyer_ip,
        has_device: when.has_device,
        signal: when.signal.map(|s| (s.name, s.at_least)),
    })
}

/// What a decision is made on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs<'a> {
    pub amount: Money,
    /// The amount when in CNY (the rules' amounts are CNY), zero otherwise.
    pub cny: Amount,
    pub virtual_goods: bool,
    pub cashier: Cashier,
    pub customer: Option<&'a str>,
    pub buyer_ip: Option<IpAddr>,
    /// The merchant's device fingerprint of the buyer's device.
    pub device: Option<&'a str>,
    /// The Alipay buyer (a subscription's agreement holder), when known before paying.
    pub buyer: Option<&'a str>,
    /// Whether the payment's cashier can carry Alipay's identity check (`ext_user_info`).
    pub can_step_up: bool,
}

/// What was read in time for a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub lists: Vec<ListHit>,
    pub signals: Signals,
}

/// A rule that matched, journaled by its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub rule: String,
    pub action: Action,
}

/// What was decided and why: the journal's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Action,
    /// The enforced rule that decided (`None`: no rule matched, allowed).
    pub rule: Option<String>,
    /// Every enforced rule that matched, in evaluation order.
    pub matched: Vec<Hit>,
    /// Every shadow rule that matched (never acted on).
    pub shadow: Vec<Hit>,
    /// The rule set's version (0: the template's `RiskRules`, never changed since deploying).
    pub version: u64,
    /// A digest of what was decided on (never the values themselves).
    pub inputs: String,
    /// The list entries and signals could not be read in time.
    pub unread: bool,
    /// A stepped-up payment's `min_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<u8>,
}

impl Decision {
    /// Every rule named in the journal (enforced and shadow), once each.
    pub fn rules(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for hit in self.matched.iter().chain(&self.shadow) {
            if !names.contains(&hit.rule.as_str()) {
                names.push(&hit.rule);
            }
        }
        names
    }
}

/// The limit that refused a payment (`risk::screen` or a counter), a block rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit<'a> {
    pub rule: &'a str,
}

/// Decides. `reads` is `None` when the lists and signals could not be read in time; `limit`
/// names the limit (ceiling, `RISK_RULES` list, counter) that refused the payment, if one did.
pub fn decide(
    policy: &Policy,
    version: u64,
    inputs: &Inputs<'_>,
    reads: Option<&Reads>,
    limit: Option<LimitHit<'_>>,
) -> Decision {
    let signals = reads.map(|r| &r.signals);
    let mut matched: Vec<Hit> = Vec::new();
    let mut shadow: Vec<Hit> = Vec::new();
    for action in Action::ORDER {
        if let Some(reads) = reads {
            for hit in reads.lists.iter().filter(|h| h.action == action) {
                matched.push(Hit {
                    rule: format!("list_{}", hit.kind.as_str()),
                    action,
                });
            }
        }
        for rule in policy.rules.iter().filter(|r| r.action == action) {
            if rule.when.holds(inputs, signals) == Some(true) {
                let hit = Hit {
                    rule: rule.id.clone(),
                    action,
                };
                match rule.mode {
                    Mode::Enforce => matched.push(hit),
                    Mode::Shadow => shadow.push(hit),
                }
            }
        }
        if action == Action::Block
            && let Some(limit) = &limit
        {
            matched.push(Hit {
                rule: limit.rule.to_owned(),
                action,
            });
        }
        // Open (`allow`) lets the other rules decide; it never skips a step-up or a review.
        if reads.is_none() && action != Action::Allow && policy.unread_action(inputs) == action {
            matched.push(Hit {
                rule: "signals_unread".to_owned(),
                action,
            });
        }
    }
    let first = Action::ORDER
        .into_iter()
        .find_map(|action| matched.iter().find(|h| h.action == action));
    let (mut outcome, rule) = match first {
        Some(hit) => (hit.action, Some(hit.rule.clone())),
        None => (Action::Allow, None),
    };
    if outcome == Action::StepUp && !inputs.can_step_up {
        outcome = Action::Review;
    }
    Decision {
        outcome,
        rule,
        matched,
        shadow,
        version,
        inputs: inputs_digest(inputs, reads),
        unread: reads.is_none(),
        min_age: (outcome == Action::StepUp).then_some(policy.step_up_min_age),
    }
}

/// SHA-256 over what the decision saw, each value reduced to its own digest first.
fn inputs_digest(inputs: &Inputs<'_>, reads: Option<&Reads>) -> String {
    let opt =
        |kind: &str, v: Option<&str>| v.map_or_else(String::new, |v| crate::risk::digest(kind, v));
    let ip = inputs.buyer_ip.map(|ip| ip.to_string());
    let mut text = format!(
        "amount={}\ncurrency={}\nvirtual={}\ncashier={}\ncustomer={}\nip={}\ndevice={}\nbuyer={}\nstep_up={}\n",
        inputs.amount.decimal(),
        inputs.amount.currency().code(),
        inputs.virtual_goods,
        inputs.cashier.as_str(),
        opt("customer", inputs.customer),
        opt("ip", ip.as_deref()),
        opt("device", inputs.device),
        opt("buyer", inputs.buyer),
        inputs.can_step_up,
    );
    match reads {
        None => text.push_str("unread\n"),
        Some(reads) => {
            for hit in &reads.lists {
                text.push_str(&format!("list={}:{}\n", hit.kind.as_str(), hit.action));
            }
            let s = reads.signals;
            text.push_str(&format!(
                "signals={},{},{}\n",
                s.buyer_customers, s.quick_refunds, s.agreement_failures
            ));
        }
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        crate::risk::Rules::parse(text).expect("rules").policy
    }

    fn inputs(amount: &str) -> Inputs<'static> {
        let money = Money::parse(amount, Currency::CNY).expect("money");
        Inputs {
            amount: money,
            cny: crate::risk::cny_part(money),
            virtual_goods: true,
            cashier: Cashier::Page,
            customer: Some("c1"),
            buyer_ip: None,
            device: None,
            buyer: None,
            can_step_up: true,
        }
    }

    const SET: &str = r#"{"rules": [
        {"id": "big_review", "action": "review", "when": {"amount_at_least": "500.00"}},
        {"id": "bigger_step_up", "action": "step_up", "when": {"amount_at_least": "1000.00", "virtual_goods": true}},
        {"id": "huge_block", "action": "block", "when": {"amount_at_least": "5000.00"}},
        {"id": "trusted_device", "action": "allow", "when": {"has_device": true, "amount_at_least": "0.01"}},
        {"id": "shared_buyer", "action": "block", "when": {"signal": {"name": "buyer_customers", "at_least": 4}}},
        {"id": "try_lower_review", "action": "review", "mode": "shadow", "when": {"amount_at_least": "300.00"}}
      ],
      "step_up": {"min_age": 21},
      "when_unread": [{"up_to": "200.00", "then": "allow"}, {"up_to": "2000.00", "then": "review"}, {"then": "block"}]}"#;

    fn outcome(
        policy: &Policy,
        inputs: &Inputs<'_>,
        reads: Option<&Reads>,
    ) -> (Action, Option<String>) {
        let d = decide(policy, 3, inputs, reads, None);
        (d.outcome, d.rule)
    }

    #[test]
    fn each_decision_is_reached_at_its_boundary_and_not_below() {
        let policy = policy(SET);
        let read = Reads::default();
        let at = |amount: &str| outcome(&policy, &inputs(amount), Some(&read));
        assert_eq!(at("299.99"), (Action::Allow, None));
        assert_eq!(at("499.99"), (Action::Allow, None));
        assert_eq!(at("500.00"), (Action::Review, Some("big_review".into())));
        assert_eq!(at("999.99"), (Action::Review, Some("big_review".into())));
        assert_eq!(
            at("1000.00"),
            (Action::StepUp, Some("bigger_step_up".into()))
        );
        assert_eq!(
            at("4999.99"),
            (Action::StepUp, Some("bigger_step_up".into()))
        );
        assert_eq!(at("5000.00"), (Action::Block, Some("huge_block".into())));
        let signals = |n| Reads {
            lists: vec![],
            signals: Signals {
                buyer_customers: n,
                ..Signals::default()
            },
        };
        assert_eq!(
            outcome(&policy, &inputs("1.00"), Some(&signals(3))).0,
            Action::Allow
        );
        assert_eq!(
            outcome(&policy, &inputs("1.00"), Some(&signals(4))),
            (Action::Block, Some("shared_buyer".into()))
        );
    }

    #[test]
    fn the_order_is_block_allow_step_up_review() {
        let policy = policy(SET);
        let read = Reads::default();
        // A device the merchant trusts skips step-up and review...
        let mut trusted = inputs("1500.00");
        trusted.device = Some("dev1");
        let d = decide(&policy, 3, &trusted, Some(&read), None);
        assert_eq!(
            (d.outcome, d.rule.as_deref()),
            (Action::Allow, Some("trusted_device"))
        );
        // ...and every rule that matched is journaled in evaluation order.
        let order: Vec<&str> = d.matched.iter().map(|h| h.rule.as_str()).collect();
        assert_eq!(order, ["trusted_device", "bigger_step_up", "big_review"]);
        // ...but never a block: not the rule's, not a limit's, not a list's.
        trusted.amount = Money::parse("6000.00", Currency::CNY).expect("money");
        trusted.cny = crate::risk::cny_part(trusted.amount);
        assert_eq!(outcome(&policy, &trusted, Some(&read)).0, Action::Block);
        let small = inputs("1.00");
        let limited = decide(
            &policy,
            3,
            &small,
            Some(&read),
            Some(LimitHit {
                rule: "customer_hourly_count",
            }),
        );
        assert_eq!(
            (limited.outcome, limited.rule.as_deref()),
            (Action::Block, Some("customer_hourly_count"))
        );
        assert_eq!(
            limited.matched,
            [Hit {
                rule: "customer_hourly_count".into(),
                action: Action::Block
            }],
            "a limit is a block, once"
        );
        let listed = Reads {
            lists: vec![
                ListHit {
                    kind: ListKind::Customer,
                    action: Action::Allow,
                },
                ListHit {
                    kind: ListKind::Ip,
                    action: Action::Block,
                },
            ],
            signals: Signals::default(),
        };
        let d = decide(&policy, 3, &small, Some(&listed), None);
        assert_eq!(
            (d.outcome, d.rule.as_deref()),
            (Action::Block, Some("list_ip"))
        );
        // Step-up before review; where the cashier cannot step up, a review.
        assert_eq!(
            outcome(&policy, &inputs("1000.00"), Some(&read)).0,
            Action::StepUp
        );
        let mut qr = inputs("1000.00");
        qr.can_step_up = false;
        let d = decide(&policy, 3, &qr, Some(&read), None);
        assert_eq!(
            (d.outcome, d.rule.as_deref(), d.min_age),
            (Action::Review, Some("bigger_step_up"), None)
        );
        assert_eq!(
            decide(&policy, 3, &inputs("1000.00"), Some(&read), None).min_age,
            Some(21)
        );
    }

    #[test]
    fn shadow_rules_are_journaled_and_never_acted_on() {
        let policy = policy(SET);
        let d = decide(&policy, 3, &inputs("300.00"), Some(&Reads::default()), None);
        assert_eq!(d.outcome, Action::Allow);
        assert_eq!(d.rule, None);
        assert!(d.matched.is_empty());
        assert_eq!(
            d.shadow,
            [Hit {
                rule: "try_lower_review".into(),
                action: Action::Review
            }]
        );
        assert_eq!(d.rules(), ["try_lower_review"]);
        let below = decide(&policy, 3, &inputs("299.99"), Some(&Reads::default()), None);
        assert!(below.shadow.is_empty());
    }

    #[test]
    fn an_unread_signal_is_decided_by_the_band_of_the_amount() {
        let policy = policy(SET);
        let unread = |amount: &str| outcome(&policy, &inputs(amount), None);
        assert_eq!(unread("200.00"), (Action::Allow, None));
        assert_eq!(
            unread("200.01"),
            (Action::Review, Some("signals_unread".into()))
        );
        assert_eq!(
            unread("2000.00").0,
            Action::StepUp,
            "bigger_step_up comes before the band's review"
        );
        assert_eq!(
            unread("2000.01"),
            (Action::Block, Some("signals_unread".into()))
        );
        let d = decide(&policy, 3, &inputs("1.00"), None, None);
        assert!(d.unread);
        // A rule on a signal that was not read never matches; with no bands, unread is open.
        let open = super::Policy {
            when_unread: vec![],
            ..policy.clone()
        };
        assert_eq!(outcome(&open, &inputs("4000.00"), None).0, Action::StepUp);
        // A payment in another currency falls in the last band.
        let mut usd = inputs("1.00");
        usd.amount = Money::parse("1.00", Currency::USD).expect("money");
        usd.cny = Amount::ZERO;
        assert_eq!(outcome(&policy, &usd, None).0, Action::Block);
        assert_eq!(
            outcome(&policy, &usd, Some(&Reads::default())).0,
            Action::Allow
        );
    }

    #[test]
    fn the_inputs_digest_changes_with_what_was_decided_on_and_shows_no_value() {
        let policy = policy(SET);
        let a = decide(&policy, 1, &inputs("1.00"), Some(&Reads::default()), None).inputs;
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            decide(&policy, 2, &inputs("1.00"), Some(&Reads::default()), None).inputs
        );
        assert_ne!(
            a,
            decide(&policy, 1, &inputs("1.01"), Some(&Reads::default()), None).inputs
        );
        assert_ne!(a, decide(&policy, 1, &inputs("1.00"), None, None).inputs);
        let listed = |action| Reads {
            lists: vec![ListHit {
                kind: ListKind::Ip,
                action,
            }],
            signals: Signals::default(),
        };
        let block = decide(
            &policy,
            1,
            &inputs("1.00"),
            Some(&listed(Action::Block)),
            None,
        );
        let review = decide(
            &policy,
            1,
            &inputs("1.00"),
            Some(&listed(Action::Review)),
            None,
        );
        assert_ne!(
            block.inputs, review.inputs,
            "a list entry's action is decided on"
        );
        let mut other = inputs("1.00");
        other.customer = Some("c2");
        assert_ne!(
            a,
            decide(&policy, 1, &other, Some(&Reads::default()), None).inputs
        );
    }

    #[test]
    fn a_bad_rule_set_is_refused_with_its_problem_named() {
        let bad = |text: &str| crate::risk::Rules::parse(text).err().unwrap_or_default();
        assert!(
            bad(r#"{"rules":[{"id":"x","action":"hold","when":{"virtual_goods":true}}]}"#)
                .contains("rules[0].action")
        );
        assert!(
            bad(r#"{"rules":[{"id":"x","action":"block","when":{}}]}"#)
                .contains("names no condition")
        );
        assert!(
            bad(r#"{"rules":[{"id":"X y","action":"block","when":{"virtual_goods":true}}]}"#)
                .contains("rules[0].id")
        );
        assert!(bad(r#"{"rules":[{"id":"a","action":"block","when":{"virtual_goods":true}},{"id":"a","action":"review","when":{"virtual_goods":true}}]}"#).contains("rules[1].id"));
        assert!(bad(r#"{"rules":[{"id":"customer_hourly_count","action":"block","when":{"virtual_goods":true}}]}"#).contains("already"));
        assert!(bad(r#"{"rules":[{"id":"a","action":"block","mode":"dry","when":{"virtual_goods":true}}]}"#).contains("mode"));
        assert!(
            bad(r#"{"rules":[{"id":"a","action":"block","when":{"amount_at_least":"1.001"}}]}"#)
                .contains("amount_at_least")
        );
        assert!(bad(r#"{"rules":[{"id":"a","action":"block","when":{"signal":{"name":"nope","at_least":1}}}]}"#).contains("RISK_RULES"));
        assert!(bad(r#"{"when_unread":[{"up_to":"10.00","then":"allow"}]}"#).contains("last band"));
        assert!(bad(r#"{"when_unread":[{"up_to":"10.00","then":"allow"},{"up_to":"5.00","then":"review"},{"then":"block"}]}"#).contains("above"));
        assert!(bad(r#"{"when_unread":[{"then":"allow"},{"then":"block"}]}"#).contains("follows"));
        assert!(bad(r#"{"step_up":{"min_age":200}}"#).contains("min_age"));
        assert!(
            bad(r#"{"rules":[{"id":"a","action":"block","when":{"cashiers":["pos"]}}]}"#)
                .contains("cashiers")
        );
    }

    #[test]
    fn names_read_back_and_the_limits_of_a_rule_set_are_inclusive() {
        for signal in [
            Signal::BuyerCustomers,
            Signal::QuickRefunds,
            Signal::AgreementFailures,
        ] {
            // The store's attribute is the rule set's name for it.
            assert_eq!(
                serde_json::to_string(&signal).expect("json"),
                format!("\"{}\"", signal.as_str())
            );
        }
        for kind in ListKind::ALL {
            assert_eq!(ListKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.digest("v").len(), 20);
            assert_ne!(kind.digest("v"), ListKind::Customer.digest("w"));
        }
        assert_ne!(ListKind::Ip.digest("v"), ListKind::Device.digest("v"));
        assert_eq!(ListKind::parse("email"), None);
        let rule = |i: usize| {
            format!(r#"{{"id":"r{i}","action":"review","when":{{"virtual_goods":true}}}}"#)
        };
        let set = |n: usize| {
            let rules: Vec<String> = (0..n).map(rule).collect();
            format!(r#"{{"rules":[{}]}}"#, rules.join(","))
        };
        assert!(crate::risk::Rules::parse(&set(100)).is_ok());
        assert!(crate::risk::Rules::parse(&set(101)).is_err());
        assert!(crate::risk::Rules::parse(r#"{"step_up":{"min_age":120}}"#).is_ok());
        assert!(crate::risk::Rules::parse(r#"{"step_up":{"min_age":121}}"#).is_err());
    }

    #[test]
    fn what_the_request_says_about_the_buyer_is_a_condition() {
        let policy = policy(
            r#"{"rules": [
                {"id": "anonymous", "action": "review", "when": {"has_customer": false}},
                {"id": "no_ip", "action": "step_up", "when": {"has_buyer_ip": false, "amount_at_least": "10.00"}}]}"#,
        );
        let read = Reads::default();
        let mut known = inputs("10.00");
        known.buyer_ip = "203.0.113.1".parse().ok();
        assert_eq!(outcome(&policy, &known, Some(&read)), (Action::Allow, None));
        known.buyer_ip = None;
        assert_eq!(outcome(&policy, &known, Some(&read)).0, Action::StepUp);
        let mut anonymous = inputs("1.00");
        anonymous.customer = None;
        anonymous.buyer_ip = "203.0.113.1".parse().ok();
        assert_eq!(
            outcome(&policy, &anonymous, Some(&read)),
            (Action::Review, Some("anonymous".into()))
        );
    }
}
