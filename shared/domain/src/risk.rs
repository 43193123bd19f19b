//! Fraud checks: the rules (configured as JSON in `RISK_RULES`, no code), what they decide
//! before a payment is created, and what they flag once it is paid. Pure: the store applies the
//! counters in the same transaction that creates the order.
//!
//! Before a payment is created:
//! - a block list of customer refs and IPs (CIDR ranges too), and an amount ceiling for
//!   virtual goods: decided here, with no I/O;
//! - counts and amounts per customer ref and per buyer IP, per hour and per (China-time) day,
//!   and the distinct customers one IP may pay for in a day: counters in DynamoDB, one item per
//!   subject and day, each a conditional single-item `ADD` before the order's creation. A
//!   refused create writes nothing but its audit entry; a repeated create of an existing order
//!   counts nothing.
//!
//! The IP is the buyer's, as the merchant's backend reports it (`buyer_ip`): the API's caller
//! is that backend, never the buyer's browser, so the connection's address is the shop's own
//! and is never counted.
//!
//! After payment (recorded whatever they say; the money is real): a buyer seen paying for many
//! customer refs, or a payment far above the customer's paid history, flags the payment
//! (`risk: {flagged, rules}` in the API and its events) so the merchant can hold delivery.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use alipay::china_time::ChinaDate;
use alipay::money::Amount;

/// The rules, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub customer: Limits,
    pub ip: Limits,
    /// At most this many distinct customer refs per IP per day.
    pub ip_max_customers_per_day: Option<u32>,
    pub virtual_goods_max: Option<Amount>,
    pub blocked_customers: Vec<String>,
    pub blocked_ips: Vec<IpNet>,
    /// Flag a payment whose buyer has paid for more than this many customer refs.
    pub buyer_max_customers: Option<u32>,
    /// Flag a payment above this many times the customer's average paid amount...
    pub history_factor: Option<u32>,
    /// ...once the customer has at least this many paid payments.
    pub history_min_payments: u32,
    /// The decision rules (allow, review, step-up, block; enforced or shadow).
    pub policy: crate::decisions::Policy,
}

/// Count and amount limits of one subject (a customer ref, an IP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub hour: Window,
    pub day: Window,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub count: Option<u32>,
    pub amount: Option<Amount>,
}

impl Limits {
    fn any(&self) -> bool {
        self.hour != Window::default() || self.day != Window::default()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesText {
    #[serde(default)]
    customer: LimitsText,
    #[serde(default)]
    ip: IpLimitsText,
    virtual_goods_max_amount: Option<String>,
    #[serde(default)]
    blocked_customers: Vec<String>,
    #[serde(default)]
    blocked_ips: Vec<String>,
    #[serde(default)]
    after_payment: AfterPaymentText,
    #[serde(default)]
    rules: Vec<crate::decisions::RuleText>,
    step_up: Option<crate::decisions::StepUpText>,
    #[serde(default)]
    when_unread: Vec<crate::decisions::BandText>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsText {
    per_hour: Option<WindowText>,
    per_day: Option<WindowText>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IpLimitsText {
    per_hour: Option<WindowText>,
    per_day: Option<WindowText>,
    max_customers_per_day: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WindowText {
    count: Option<u32>,
    amount: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AfterPaymentText {
    buyer_max_customers: Option<u32>,
    history_factor: Option<u32>,
    history_min_payments: Option<u32>,
}

impl Rules {
    /// Parses `RISK_RULES`; every problem is named (a misconfigured function refuses to start).
    pub fn parse(text: &str) -> Result<Rules, String> {
        let raw: RulesText =
            serde_json::from_str(text).map_err(|e| format!("RISK_RULES is not valid: {e}"))?;
        let amount = |what: &str, text: Option<String>| -> Result<Option<Amount>, String> {
            text.map(|t| Amount::parse(&t).map_err(|e| format!("RISK_RULES {what}: {e}")))
                .transpose()
        };
        let window = |what: &str, text: Option<WindowText>| -> Result<Window, String> {
            let text = text.unwrap_or_default();
            Ok(Window {
                count: text.count,
                amount: amount(what, text.amount)?,
            })
        };
        let blocked_ips = raw
            .blocked_ips
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("RISK_RULES blocked_ips: {text} is not an IP or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        let policy = crate::decisions::Policy::parse(raw.rules, raw.step_up, raw.when_unread)
            .map_err(|e| format!("RISK_RULES {e}"))?;
        Ok(Rules {
            policy,
            customer: Limits {
                hour: window("customer.per_hour.amount", raw.customer.per_hour)?,
                day: window("customer.per_day.amount", raw.customer.per_day)?,
            },
            ip: Limits {
                hour: window("ip.per_hour.amount", raw.ip.per_hour)?,
                day: window("ip.per_day.amount", raw.ip.per_day)?,
            },
            ip_max_customers_per_day: raw.ip.max_customers_per_day,
            virtual_goods_max: amount("virtual_goods_max_amount", raw.virtual_goods_max_amount)?,
            blocked_customers: raw.blocked_customers,
            blocked_ips,
            buyer_max_customers: raw.after_payment.buyer_max_customers,
            history_factor: raw.after_payment.history_factor,
            history_min_payments: raw.after_payment.history_min_payments.unwrap_or(3),
        })
    }
}

/// The names of the limits (they decide as block rules; a decision rule may not take one).
const LIMIT_RULES: [&str; 12] = [
    "customer_blocked",
    "ip_blocked",
    "virtual_goods_ceiling",
    "customer_hourly_count",
    "customer_hourly_amount",
    "customer_daily_count",
    "customer_daily_amount",
    "ip_hourly_count",
    "ip_hourly_amount",
    "ip_daily_count",
    "ip_daily_amount",
    "ip_many_customers",
];

/// Whether `id` is a limit's name or one the decisions journal themselves (`list_<kind>`,
/// `signals_unread`): a decision rule may not take it.
pub fn is_limit_rule(id: &str) -> bool {
    LIMIT_RULES.contains(&id) || id == "signals_unread" || id.starts_with("list_")
}

/// The part of a payment the amount rules count: its amount when it is in CNY, nothing when it
/// is in another currency. The rules' amounts are CNY and we never convert (a rate is Antom's to
/// give, after the payment); counts, lists and the other rules apply in every currency.
pub fn cny_part(amount: money::Money) -> Amount {
    Amount::try_from(amount).unwrap_or(Amount::ZERO)
}

/// What a create is screened on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screening<'a> {
    pub customer_ref: Option<&'a str>,
    /// The buyer's IP as the merchant reports it (`buyer_ip`), when it does.
    pub ip: Option<IpAddr>,
    pub amount: Amount,
    pub virtual_goods: bool,
}

/// Why a payment was refused: a rule name (a stable code) and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub message: String,
}

fn refusal(rule: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        rule,
        message: message.into(),
    }
}

/// The rules that need no counter: block lists, the virtual-goods ceiling, and an amount that
/// alone exceeds a window's amount limit.
pub fn screen(rules: &Rules, s: &Screening<'_>) -> Result<(), Refusal> {
    if let Some(customer) = s.customer_ref
        && rules.blocked_customers.iter().any(|b| b == customer)
    {
        return Err(refusal("customer_blocked", "the customer is blocked"));
    }
    if let Some(ip) = s.ip
        && rules.blocked_ips.iter().any(|net| net.contains(&ip))
    {
        return Err(refusal("ip_blocked", "the buyer IP is blocked"));
    }
    if let Some(max) = rules.virtual_goods_max
        && s.virtual_goods
        && s.amount > max
    {
        return Err(refusal(
            "virtual_goods_ceiling",
            format!("virtual goods are limited to {max} a payment"),
        ));
    }
    for counter in counters(rules, s, 0) {
        for (rule, limit) in [
            (counter.rules.hour_amount, counter.limits.hour.amount),
            (counter.rules.day_amount, counter.limits.day.amount),
        ] {
            if limit.is_some_and(|limit| s.amount > limit) {
                return Err(refusal(rule, limit_message(rule, &counter.limits)));
            }
        }
    }
    Ok(())
}

/// The rule names of one subject's counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterRules {
    pub hour_count: &'static str,
    pub hour_amount: &'static str,
    pub day_count: &'static str,
    pub day_amount: &'static str,
}

const CUSTOMER_RULES: CounterRules = CounterRules {
    hour_count: "customer_hourly_count",
    hour_amount: "customer_hourly_amount",
    day_count: "customer_daily_count",
    day_amount: "customer_daily_amount",
};
const IP_RULES: CounterRules = CounterRules {
    hour_count: "ip_hourly_count",
    hour_amount: "ip_hourly_amount",
    day_count: "ip_daily_count",
    day_amount: "ip_daily_amount",
};

/// One counter item to add this payment to, under its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub pk: String,
    /// `DAY#<yyyy-MM-dd>` (China time).
    pub sk: String,
    /// The hour of the China-time day, `00`..`23` (the attributes `h<HH>n`, `h<HH>f`).
    pub hour: String,
    pub limits: Limits,
    pub rules: CounterRules,
    /// For the IP counter: the customer's digest and the distinct-customers limit.
    pub distinct: Option<(String, u32)>,
    /// When the item expires (two days after its day began).
    pub expires_at: i64,
}

/// The counters a create adds to (none when no counted rule applies to it).
pub fn counters(rules: &Rules, s: &Screening<'_>, now_ms: i64) -> Vec<Counter> {
    let seconds = now_ms.div_euclid(1000);
    let day = ChinaDate::of_unix(seconds);
    let hour = format!("{:02}", (seconds - day.start_unix()).div_euclid(3600));
    let expires_at = day.start_unix() + 2 * 86_400;
    let customer = s.customer_ref.map(|c| digest("customer", c));
    let mut out = Vec::new();
    if let Some(customer) = &customer
        && rules.customer.any()
    {
        out.push(Counter {
            pk: format!("RISK#C#{customer}"),
            sk: format!("DAY#{day}"),
            hour: hour.clone(),
            limits: rules.customer.clone(),
            rules: CUSTOMER_RULES,
            distinct: None,
            expires_at,
        });
    }
    let distinct = customer.clone().zip(rules.ip_max_customers_per_day);
    if let Some(ip) = s.ip
        && (rules.ip.any() || distinct.is_some())
    {
        out.push(Counter {
            pk: format!("RISK#I#{}", digest("ip", &ip.to_string())),
            sk: format!("DAY#{day}"),
            hour,
            limits: rules.ip.clone(),
            rules: IP_RULES,
            distinct,
            expires_at,
        });
    }
    out
}

/// What a counter item held when its condition failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub day_count: u64,
    pub day_fen: u64,
    pub hour_count: u64,
    pub hour_fen: u64,
    pub customers: u64,
    /// The customer of this create is already among them.
    pub has_customer: bool,
}

/// Which of the counter's limits the payment would pass, given what the item held.
pub fn tripped(counter: &Counter, counts: &Counts, amount: Amount) -> Refusal {
    let fen = amount.fen();
    let over_count = |limit: Option<u32>, held: u64| limit.is_some_and(|l| held >= u64::from(l));
    let over_amount =
        |limit: Option<Amount>, held: u64| limit.is_some_and(|l| held + fen > l.fen());
    let limits = &counter.limits;
    let rule = if over_count(limits.day.count, counts.day_count) {
        counter.rules.day_count
    } else if over_amount(limits.day.amount, counts.day_fen) {
        counter.rules.day_amount
    } else if over_count(limits.hour.count, counts.hour_count) {
        counter.rules.hour_count
    } else if over_amount(limits.hour.amount, counts.hour_fen) {
        counter.rules.hour_amount
    } else if counter
        .distinct
        .as_ref()
        .is_some_and(|(_, max)| !counts.has_customer && counts.customers >= u64::from(*max))
    {
        "ip_many_customers"
    } else {
        // The item changed between the failed write and its reading: say what was limited.
        counter.rules.day_count
    };
    refusal(rule, limit_message(rule, limits))
}

fn limit_message(rule: &str, limits: &Limits) -> String {
    let (subject, rest) = rule.split_once('_').unwrap_or((rule, ""));
    let subject = if subject == "ip" { "buyer IP" } else { subject };
    let (window, limit) = match rest {
        "hourly_count" => (
            "an hour",
            limits.hour.count.map(|c| format!("{c} payments")),
        ),
        "hourly_amount" => ("an hour", limits.hour.amount.map(|a| a.to_string())),
        "daily_count" => ("a day", limits.day.count.map(|c| format!("{c} payments"))),
        "daily_amount" => ("a day", limits.day.amount.map(|a| a.to_string())),
        _ => return "too many customers from one buyer IP today".into(),
    };
    format!(
        "the {subject} limit of {} {window} is reached",
        limit.unwrap_or_default()
    )
}

/// A short, stable digest for keys (customer refs and IPs never appear in keys as they are).
pub fn digest(kind: &str, value: &str) -> String {
    let hash = Sha256::digest(format!("{kind}:{value}").as_bytes());
    hash.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// A customer's paid history and the customers a buyer has paid for, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub customer_paid_count: u64,
    pub customer_paid_fen: u64,
    /// Digests of the customer refs this buyer paid for (before this payment).
    pub buyer_customers: Vec<String>,
}

/// The after-payment rules a paid payment trips (empty: not flagged).
pub fn assess_paid(
    rules: &Rules,
    customer: &str,
    amount: Amount,
    history: &History,
) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if let Some(max) = rules.buyer_max_customers {
        let mut customers = history.buyer_customers.clone();
        if !customers.iter().any(|c| c == customer) {
            customers.push(customer.to_owned());
        }
        if customers.len() as u64 > u64::from(max) {
            flags.push("buyer_many_customers");
        }
    }
    if let Some(factor) = rules.history_factor
        && history.customer_paid_count >= u64::from(rules.history_min_payments.max(1))
    {
        // amount > factor × average, in integers: amount × count > factor × total.
        let lhs = u128::from(amount.fen()) * u128::from(history.customer_paid_count);
        let rhs = u128::from(factor) * u128::from(history.customer_paid_fen);
        if lhs > rhs {
            flags.push("amount_above_history");
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).expect("amount")
    }

    fn rules() -> Rules {
        Rules::parse(
            r#"{"customer":{"per_hour":{"count":2,"amount":"100.00"},"per_day":{"count":5}},
                "ip":{"per_day":{"count":10,"amount":"500.00"},"max_customers_per_day":3},
                "virtual_goods_max_amount":"200.00",
                "blocked_customers":["cust_bad"],"blocked_ips":["10.1.0.0/16","192.0.2.7"],
                "after_payment":{"buyer_max_customers":2,"history_factor":5,"history_min_payments":2}}"#,
        )
        .expect("rules")
    }

    fn screening<'a>(customer: Option<&'a str>, ip: &str, value: &str) -> Screening<'a> {
        Screening {
            customer_ref: customer,
            ip: ip.parse().ok(),
            amount: amount(value),
            virtual_goods: true,
        }
    }

    #[test]
    fn only_cny_counts_toward_the_amount_rules() {
        let yuan = money::Money::parse("12.50", money::Currency::CNY).expect("money");
        assert_eq!(cny_part(yuan), amount("12.50"));
        let dollars = money::Money::parse("12.50", money::Currency::USD).expect("money");
        assert_eq!(cny_part(dollars), Amount::ZERO);
    }

    #[test]
    fn the_configuration_is_checked_whole() {
        assert_eq!(
            Rules::parse("{}").expect("empty"),
            Rules {
                history_min_payments: 3,
                ..Rules::default()
            }
        );
        assert!(Rules::parse(r#"{"customer":{"per_hour":{"amount":"1.001"}}}"#).is_err());
        assert!(Rules::parse(r#"{"blocked_ips":["not-an-ip"]}"#).is_err());
        assert!(
            Rules::parse(r#"{"customers":{}}"#).is_err(),
            "unknown keys are refused"
        );
        let rules = rules();
        assert_eq!(rules.customer.hour.amount, Some(amount("100.00")));
        assert_eq!(rules.blocked_ips.len(), 2);
    }

    #[test]
    fn block_lists_and_ceilings_refuse_without_counting() {
        let rules = rules();
        let refused = |s: Screening<'_>| screen(&rules, &s).err().map(|r| r.rule);
        assert_eq!(
            refused(screening(Some("cust_bad"), "203.0.113.1", "1.00")),
            Some("customer_blocked")
        );
        assert_eq!(
            refused(screening(Some("c"), "10.1.2.3", "1.00")),
            Some("ip_blocked")
        );
        assert_eq!(
            refused(screening(Some("c"), "192.0.2.7", "1.00")),
            Some("ip_blocked")
        );
        assert_eq!(refused(screening(Some("c"), "192.0.2.8", "1.00")), None);
        assert_eq!(
            refused(screening(Some("c"), "203.0.113.1", "200.01")),
            Some("virtual_goods_ceiling")
        );
        let mut physical = screening(Some("c"), "203.0.113.1", "200.01");
        physical.virtual_goods = false;
        // Above the customer's hourly amount on its own.
        assert_eq!(refused(physical), Some("customer_hourly_amount"));
        assert_eq!(refused(screening(Some("c"), "203.0.113.1", "100.00")), None);
        // No customer ref: the customer rules do not apply, the IP's do.
        assert_eq!(refused(screening(None, "203.0.113.1", "150.00")), None);
    }

    #[test]
    fn counters_are_per_china_day_and_hour_and_name_the_rule_they_trip() {
        let rules = rules();
        let now = 1_795_800_600_000;
        let list = counters(&rules, &screening(Some("c1"), "203.0.113.1", "10.00"), now);
        assert_eq!(list.len(), 2);
        let day = ChinaDate::of_unix(now / 1000);
        assert_eq!(list[0].sk, format!("DAY#{day}"));
        assert!(list[0].pk.starts_with("RISK#C#") && !list[0].pk.contains("c1"));
        assert!(list[1].pk.starts_with("RISK#I#") && !list[1].pk.contains("203."));
        assert_eq!(list[1].distinct.as_ref().map(|d| d.1), Some(3));
        let hour: i64 = list[0].hour.parse().expect("hour");
        assert_eq!(hour, (now / 1000 - day.start_unix()) / 3600);
        let tripped_by =
            |counts: Counts, value: &str| tripped(&list[0], &counts, amount(value)).rule;
        assert_eq!(
            tripped_by(
                Counts {
                    day_count: 5,
                    ..Counts::default()
                },
                "1.00"
            ),
            "customer_daily_count"
        );
        assert_eq!(
            tripped_by(
                Counts {
                    hour_count: 2,
                    ..Counts::default()
                },
                "1.00"
            ),
            "customer_hourly_count"
        );
        assert_eq!(
            tripped_by(
                Counts {
                    hour_fen: 9_001,
                    ..Counts::default()
                },
                "10.00"
            ),
            "customer_hourly_amount"
        );
        let ip = |counts: Counts| tripped(&list[1], &counts, amount("1.00")).rule;
        assert_eq!(
            ip(Counts {
                customers: 3,
                ..Counts::default()
            }),
            "ip_many_customers"
        );
        assert_eq!(
            ip(Counts {
                day_fen: 49_950,
                ..Counts::default()
            }),
            "ip_daily_amount"
        );
        // Without a customer ref, no counter for it; without rules, none at all.
        assert_eq!(
            counters(&rules, &screening(None, "203.0.113.1", "1.00"), now).len(),
            1
        );
        assert!(
            counters(
                &Rules::default(),
                &screening(Some("c"), "203.0.113.1", "1.00"),
                now
            )
            .is_empty()
        );
    }

    #[test]
    fn limits_are_inclusive_and_messages_name_them() {
        let rules = rules();
        // The ceiling itself is allowed.
        assert_eq!(
            screen(&rules, &screening(None, "203.0.113.1", "200.00")),
            Ok(())
        );
        let now = 1_795_800_600_000;
        let list = counters(&rules, &screening(Some("c1"), "203.0.113.1", "10.00"), now);
        let day = ChinaDate::of_unix(now / 1000);
        assert_eq!(list[0].expires_at, day.start_unix() + 2 * 86_400);
        // Exactly at the hourly amount (90.00 held + 10.00 = 100.00): that limit is not what
        // refused (the item changed since; the day count is named).
        let at_limit = Counts {
            hour_fen: 9_000,
            ..Counts::default()
        };
        assert_eq!(
            tripped(&list[0], &at_limit, amount("10.00")).rule,
            "customer_daily_count"
        );
        // A customer the IP already paid for is never "one too many".
        let known = Counts {
            customers: 2,
            has_customer: true,
            ..Counts::default()
        };
        assert_eq!(
            tripped(&list[1], &known, amount("1.00")).rule,
            "ip_daily_count"
        );
        let message = |rule: &str, limits: &Limits| limit_message(rule, limits);
        assert_eq!(
            message("customer_hourly_count", &rules.customer),
            "the customer limit of 2 payments an hour is reached"
        );
        assert_eq!(
            message("customer_hourly_amount", &rules.customer),
            "the customer limit of 100.00 an hour is reached"
        );
        assert_eq!(
            message("customer_daily_count", &rules.customer),
            "the customer limit of 5 payments a day is reached"
        );
        assert_eq!(
            message("ip_daily_amount", &rules.ip),
            "the buyer IP limit of 500.00 a day is reached"
        );
        assert_eq!(
            message("ip_many_customers", &rules.ip),
            "too many customers from one buyer IP today"
        );
    }

    #[test]
    fn digests_are_short_stable_and_kept_apart_by_kind() {
        let a = digest("customer", "42");
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, digest("customer", "42"));
        assert_ne!(a, digest("ip", "42"));
        assert_ne!(a, digest("customer", "43"));
    }

    #[test]
    fn after_payment_flags_many_customers_and_amounts_far_above_history() {
        let rules = rules();
        let history = History {
            customer_paid_count: 2,
            customer_paid_fen: 2_000,
            buyer_customers: vec!["a".into()],
        };
        assert!(assess_paid(&rules, "a", amount("50.00"), &history).is_empty());
        assert_eq!(
            assess_paid(&rules, "a", amount("50.01"), &history),
            ["amount_above_history"]
        );
        let many = History {
            buyer_customers: vec!["a".into(), "b".into()],
            ..History::default()
        };
        assert_eq!(
            assess_paid(&rules, "c", amount("1.00"), &many),
            ["buyer_many_customers"]
        );
        assert!(assess_paid(&rules, "b", amount("1.00"), &many).is_empty());
        // Too little history to judge.
        let short = History {
            customer_paid_count: 1,
            customer_paid_fen: 100,
            ..History::default()
        };
        assert!(assess_paid(&rules, "a", amount("500.00"), &short).is_empty());
    }
}
