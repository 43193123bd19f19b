//! The gateway's configuration: read from the environment once, at init, and validated whole,
//! so that a misconfigured function fails at start with every problem listed.

pub mod antom;
pub mod channels;
pub mod trust;

use std::collections::HashMap;
use std::time::Duration;

use alipay::ids::{AppId, SellerId};
use alipay::keys::PublicKey;
use channels::{AlipayKeys, ChannelConfig, SealedKey, TextSource};
use domain::channel::ChannelId;

/// Alipay's production gateway; the sandbox is `https://openapi-sandbox.dl.alipaydev.com/gateway.do`.
pub const PRODUCTION_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

#[derive(Clone, Debug)]
pub struct Config {
    /// `ORDERS_TABLE`
    pub orders_table: String,
    /// The Alipay applications payments go through: the primary (`ALIPAY_*`, `KMS_KEY_ID`),
    /// then the secondary when `SECONDARY_ALIPAY_APP_ID` is set (`SECONDARY_*`). New payments go
    /// to the first whose circuit is closed; everything else uses the order's own.
    pub channels: Vec<ChannelConfig>,
    /// `BREAKER_*`: when a channel's circuit opens and closes again.
    pub breaker: domain::breaker::Settings,
    /// `ALIPAY_NOTIFY_URL`: where Alipay posts notifications (the notify function's URL).
    pub notify_url: Option<String>,
    /// `RETURN_URL_PREFIXES`: comma-separated; a payment's `return_url` must start with one.
    pub return_url_prefixes: Vec<String>,
    /// `ALIPAY_TIMEOUT_MS` (default 6000): the longest wait for one Alipay call.
    pub alipay_timeout: Duration,
    /// Timing of the payment and refund lifecycles.
    pub lifecycle: Lifecycle,
    /// `RISK_RULES` (JSON, see `risk`; absent: no fraud checks): the rule set until one is
    /// put in the table (`alipay-cli risk rules put`), version 0.
    pub risk: domain::risk::Rules,
    /// `RISK_RULES_CACHE_MS` (default 30000, 0 to 600000): how long a function uses the rule
    /// set it read before asking the table again (a change takes effect within this).
    pub risk_cache_ms: i64,
    /// `RISK_READ_BUDGET_MS` (default 150, 10 to 5000): the longest a create waits for its list
    /// entries and signals; past it they are unread and the amount's `when_unread` band decides.
    pub risk_read_budget_ms: i64,
    /// When and how often a subscription's period is tried (`SUBSCRIPTION_*`).
    pub dunning: domain::subscriptions::Dunning,
    /// The Antom account (`ANTOM_*`), when `ANTOM_CLIENT_ID` is set.
    pub antom: Option<antom::AntomChannelConfig>,
}

/// How long things wait. Production values by default; `make run` and the tests scale the
/// delays down through the same variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// `PAYMENT_EXPIRY_SECONDS` (default 1800, 60 to 1296000): the `time_expire` of a payment
    /// whose merchant gave none. Every payment is sent to Alipay with one.
    pub default_expiry_seconds: i64,
    /// `EXPIRY_GRACE_MS` (default 60000): how long after `time_expire` the sweeper ends an
    /// unpaid order (a payment made in the last second has time to be notified).
    pub expiry_grace_ms: i64,
    /// `REFUND_QUERY_DELAY_MS` (default 10000): Alipay asks for ≥ 10 s between a refund and
    /// its query.
    pub refund_query_delay_ms: i64,
    /// `REFUND_SPACING_MS` (default 3000): refunds of one trade are sent at least this far apart.
    pub refund_spacing_ms: i64,
    /// `REFUND_PROOF_WINDOW_MS` (default 86400000, a day): a refund still PENDING this long
    /// after it was made, Alipay having proven neither outcome, is raised as a discrepancy
    /// (audited once, `RefundDiscrepancies` alarmed while it lasts). It stays reserved and
    /// keeps being asked about: nothing is guessed.
    pub refund_proof_window_ms: i64,
    /// `SWEEP_BACKOFF_MAX_MS` (default 3600000): the longest wait between two looks at an item
    /// the sweeper could not finish.
    pub sweep_backoff_max_ms: i64,
    /// `SWEEP_BATCH` (default 25): items per shard per sweeper run.
    pub sweep_batch: i32,
    /// `AUTO_REFUND_PAID_AFTER_CLOSE` (default 1; 0 turns it off): a payment that arrives for a closed order
    /// is refunded in full automatically.
    pub auto_refund_paid_after_close: bool,
    /// `FUNCTION_BUDGET_MS` (default 10000): the time budget of an invocation when the runtime
    /// gives no deadline (local runs and tests); in Lambda the invocation's deadline is used.
    pub default_budget_ms: i64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            default_expiry_seconds: 1_800,
            expiry_grace_ms: 60_000,
            refund_query_delay_ms: 10_000,
            refund_spacing_ms: 3_000,
            refund_proof_window_ms: 86_400_000,
            sweep_backoff_max_ms: 3_600_000,
            sweep_batch: 25,
            auto_refund_paid_after_close: true,
            default_budget_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut required = |name: &str| match get(name) {
            Some(value) => value.to_owned(),
            None => {
                problems.push(format!("{name} is not set"));
                String::new()
            }
        };
        let orders_table = required("ORDERS_TABLE");
        let primary = channel(vars, ChannelId::Primary, PRODUCTION_GATEWAY, &mut problems);
        let secondary = get("SECONDARY_ALIPAY_APP_ID").is_some().then(|| {
            let gateway = primary
                .as_ref()
                .map_or(PRODUCTION_GATEWAY, |p| p.gateway_url.as_str());
            channel(vars, ChannelId::Secondary, gateway, &mut problems)
        });
        let notify_url = get("ALIPAY_NOTIFY_URL").map(str::to_owned);
        if let Some(url) = &notify_url
            && !secure_or_loopback(url)
        {
            problems.push(format!(
                "ALIPAY_NOTIFY_URL must be https (or http on loopback): {url}"
            ));
        }
        let return_url_prefixes: Vec<String> = get("RETURN_URL_PREFIXES")
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for prefix in &return_url_prefixes {
            // "https://shop.example.com" would also match "https://shop.example.com.evil.io".
            let path_start = prefix
                .split("://")
                .nth(1)
                .is_some_and(|rest| rest.contains('/'));
            if !secure_or_loopback(prefix) || !path_start {
                problems.push(format!(
                    "RETURN_URL_PREFIXES entry {prefix} must be an https URL with a path, like https://shop.example.com/"
                ));
            }
        }
        let alipay_timeout = match get("ALIPAY_TIMEOUT_MS").map(str::parse::<u64>) {
            None => Duration::from_millis(6_000),
            Some(Ok(ms)) if (100..=30_000).contains(&ms) => Duration::from_millis(ms),
            Some(_) => {
                problems.push(
                    "ALIPAY_TIMEOUT_MS must be a number of milliseconds from 100 to 30000".into(),
                );
                Duration::from_millis(6_000)
            }
        };
        let defaults = Lifecycle::default();
        let mut number = |name: &str, default: i64, range: std::ops::RangeInclusive<i64>| {
            whole_number(get(name), name, default, range, &mut problems)
        };
        let lifecycle = Lifecycle {
            default_expiry_seconds: number(
                "PAYMENT_EXPIRY_SECONDS",
                defaults.default_expiry_seconds,
                60..=15 * 86_400,
            ),
            expiry_grace_ms: number("EXPIRY_GRACE_MS", defaults.expiry_grace_ms, 0..=86_400_000),
            refund_query_delay_ms: number(
                "REFUND_QUERY_DELAY_MS",
                defaults.refund_query_delay_ms,
                0..=600_000,
            ),
            refund_spacing_ms: number("REFUND_SPACING_MS", defaults.refund_spacing_ms, 0..=60_000),
            refund_proof_window_ms: number(
                "REFUND_PROOF_WINDOW_MS",
                defaults.refund_proof_window_ms,
                1_000..=30 * 86_400_000,
            ),
            sweep_backoff_max_ms: number(
                "SWEEP_BACKOFF_MAX_MS",
                defaults.sweep_backoff_max_ms,
                100..=86_400_000,
            ),
            sweep_batch: i32::try_from(number("SWEEP_BATCH", 25, 1..=1_000)).unwrap_or(25),
            auto_refund_paid_after_close: number("AUTO_REFUND_PAID_AFTER_CLOSE", 1, 0..=1) == 1,
            default_budget_ms: number(
                "FUNCTION_BUDGET_MS",
                defaults.default_budget_ms,
                500..=900_000,
            ),
        };
        let risk = match get("RISK_RULES") {
            None => domain::risk::Rules::default(),
            Some(text) => domain::risk::Rules::parse(text).unwrap_or_else(|problem| {
                problems.push(problem);
                domain::risk::Rules::default()
            }),
        };
        let risk_cache_ms = whole_number(
            get("RISK_RULES_CACHE_MS"),
            "RISK_RULES_CACHE_MS",
            30_000,
            0..=600_000,
            &mut problems,
        );
        let risk_read_budget_ms = whole_number(
            get("RISK_READ_BUDGET_MS"),
            "RISK_READ_BUDGET_MS",
            150,
            10..=5_000,
            &mut problems,
        );
        let dunning_defaults = domain::subscriptions::Dunning::default();
        let mut day_number = |name: &str, default: u32, range: std::ops::RangeInclusive<i64>| {
            u32::try_from(whole_number(
                get(name),
                name,
                i64::from(default),
                range,
                &mut problems,
            ))
            .unwrap_or(default)
        };
        let dunning = domain::subscriptions::Dunning {
            lead_days: day_number("SUBSCRIPTION_LEAD_DAYS", dunning_defaults.lead_days, 0..=5),
            retries: day_number("SUBSCRIPTION_RETRIES", dunning_defaults.retries, 0..=5),
            spacing_days: day_number(
                "SUBSCRIPTION_RETRY_SPACING_DAYS",
                dunning_defaults.spacing_days,
                1..=5,
            ),
            charge_hour: day_number(
                "SUBSCRIPTION_CHARGE_HOUR",
                dunning_defaults.charge_hour,
                0..=20,
            ),
            last_send_hour: dunning_defaults.last_send_hour,
        };
        let dunning = domain::subscriptions::Dunning::new(dunning).unwrap_or_else(|problem| {
            problems.push(format!("SUBSCRIPTION_*: {problem}"));
            dunning_defaults
        });
        let breaker = breaker_settings(vars, alipay_timeout, &mut problems);
        let antom = antom::antom_channel(vars, &mut problems);
        let channels: Vec<ChannelConfig> = [primary, secondary.flatten()]
            .into_iter()
            .flatten()
            .collect();
        if let [first, second] = channels.as_slice()
            && first.app_id == second.app_id
        {
            problems.push("SECONDARY_ALIPAY_APP_ID must differ from ALIPAY_APP_ID".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            orders_table,
            channels,
            breaker,
            notify_url,
            return_url_prefixes,
            alipay_timeout,
            lifecycle,
            risk,
            risk_cache_ms,
            risk_read_budget_ms,
            dunning,
            antom,
        })
    }

    /// The channel an order names (an order from before channels is the primary's).
    pub fn channel(&self, id: ChannelId) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The primary channel (always configured).
    /// `RISK_READ_BUDGET_MS` as a duration.
    pub fn risk_read_budget(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.risk_read_budget_ms).unwrap_or(150))
    }

    pub fn primary(&self) -> &ChannelConfig {
        // `from_map` refuses a configuration without one.
        &self.channels[0]
    }

    /// Whether a buyer may be sent back to `url` after paying (no open redirect).
    pub fn return_url_allowed(&self, url: &str) -> bool {
        self.return_url_prefixes
            .iter()
            .any(|prefix| url.starts_with(prefix.as_str()))
    }
}

/// One channel's settings: `ALIPAY_APP_ID`, `ALIPAY_PUBLIC_KEY`, `ALIPAY_SELLER_ID`,
/// `ALIPAY_GATEWAY_URL`, `KMS_KEY_ID`, each with the `SECONDARY_` prefix for the secondary.
fn channel(
    vars: &HashMap<String, String>,
    id: ChannelId,
    default_gateway: &str,
    problems: &mut Vec<String>,
) -> Option<ChannelConfig> {
    let prefix = crate::config::channels::env_prefix(id);
    let get = |name: &str| {
        vars.get(&format!("{prefix}{name}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let mut required = |name: &str| {
        let value = get(name);
        if value.is_none() {
            problems.push(format!("{prefix}{name} is not set"));
        }
        value
    };
    let app_id = required("ALIPAY_APP_ID");
    let seller_id = required("ALIPAY_SELLER_ID");
    let gateway_url = get("ALIPAY_GATEWAY_URL")
        .unwrap_or(default_gateway)
        .to_owned();
    if !secure_or_loopback(&gateway_url) {
        problems.push(format!(
            "{prefix}ALIPAY_GATEWAY_URL must be https (or http on loopback): {gateway_url}"
        ));
    }
    let app_id =
        app_id.map(|text| AppId::parse(text).map_err(|e| format!("{prefix}ALIPAY_APP_ID {e}")));
    let alipay_keys = alipay_keys(prefix, &get);
    let seller_id = seller_id
        .map(|text| SellerId::parse(text).map_err(|e| format!("{prefix}ALIPAY_SELLER_ID {e}")));
    let source = |name: &str| {
        get(name).map(|value| TextSource::parse(value).map_err(|e| format!("{prefix}{name}: {e}")))
    };
    let standby_app_cert = match source("STANDBY_ALIPAY_APP_CERT").transpose() {
        Ok(found) => found,
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let standby_kms_key_id = get("STANDBY_KMS_KEY_ID").map(str::to_owned);
    if let Ok(AlipayKeys::Certificates { .. }) = &alipay_keys
        && standby_kms_key_id.is_some()
        && standby_app_cert.is_none()
    {
        problems.push(format!(
            "{prefix}STANDBY_ALIPAY_APP_CERT is not set: in certificate mode the standby key needs its application certificate (alipay-cli csr --kms-key-id <standby key>)"
        ));
    }
    let kms_key_id = get("KMS_KEY_ID").map(str::to_owned);
    let sealed_key = match (
        source("APP_PRIVATE_KEY_SEALED").transpose(),
        get("APP_KEY_SEALING_KMS_KEY_ID"),
    ) {
        (Ok(None), None) => None,
        (Ok(Some(_)), _) if kms_key_id.is_some() => {
            problems.push(format!(
                "{prefix}KMS_KEY_ID and {prefix}APP_PRIVATE_KEY_SEALED are both set: sign in KMS (the default) or locally with the sealed key, not both"
            ));
            None
        }
        (Ok(Some(sealed)), Some(sealing_key_id)) => Some(SealedKey {
            sealed,
            sealing_key_id: sealing_key_id.to_owned(),
        }),
        (Ok(Some(_)), None) => {
            problems.push(format!(
                "{prefix}APP_KEY_SEALING_KMS_KEY_ID is not set: the KMS key that sealed {prefix}APP_PRIVATE_KEY_SEALED"
            ));
            None
        }
        (Ok(None), Some(_)) => {
            problems.push(format!(
                "{prefix}APP_PRIVATE_KEY_SEALED is not set, but {prefix}APP_KEY_SEALING_KMS_KEY_ID is (alipay-cli seal-key makes it)"
            ));
            None
        }
        (Err(problem), _) => {
            problems.push(problem);
            None
        }
    };
    let agreement_product_code = get("ALIPAY_AGREEMENT_PRODUCT_CODE")
        .unwrap_or("GENERAL_WITHHOLDING")
        .to_owned();
    if !["GENERAL_WITHHOLDING", "CYCLE_PAY_AUTH"].contains(&agreement_product_code.as_str()) {
        problems.push(format!(
            "{prefix}ALIPAY_AGREEMENT_PRODUCT_CODE must be GENERAL_WITHHOLDING or CYCLE_PAY_AUTH"
        ));
    }
    let agreement_sign_scene = get("ALIPAY_AGREEMENT_SIGN_SCENE")
        .unwrap_or("INDUSTRY|DIGITAL_MEDIA")
        .to_owned();
    if agreement_sign_scene == "DEFAULT|DEFAULT" || !agreement_sign_scene.contains('|') {
        problems.push(format!(
            "{prefix}ALIPAY_AGREEMENT_SIGN_SCENE must be the contracted scene, like INDUSTRY|DIGITAL_MEDIA (not DEFAULT|DEFAULT)"
        ));
    }
    let settle_currency = match get("ALIPAY_SETTLE_CURRENCY").map(domain::states::Currency::parse) {
        None => None,
        Some(Ok(currency)) => Some(currency),
        Some(Err(error)) => {
            problems.push(format!("{prefix}ALIPAY_SETTLE_CURRENCY: {error}"));
            None
        }
    };
    match (app_id, alipay_keys, seller_id) {
        (Some(Ok(app_id)), Ok(alipay_keys), Some(Ok(seller_id))) => Some(ChannelConfig {
            agreement_product_code,
            agreement_sign_scene,
            settle_currency,
            id,
            app_id,
            alipay_keys,
            seller_id,
            gateway_url,
            kms_key_id,
            sealed_key,
            standby_kms_key_id,
            standby_app_cert,
        }),
        (a, k, s) => {
            problems.extend(
                [a.and_then(Result::err), k.err(), s.and_then(Result::err)]
                    .into_iter()
                    .flatten(),
            );
            None
        }
    }
}

/// Key mode (`ALIPAY_PUBLIC_KEY`, one key or several comma-separated) or certificate mode
/// (`ALIPAY_APP_CERT`, `ALIPAY_CERT`, `ALIPAY_ROOT_CERT`): exactly one of them.
fn alipay_keys<'a>(
    prefix: &str,
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<AlipayKeys, String> {
    let certs = ["ALIPAY_APP_CERT", "ALIPAY_CERT", "ALIPAY_ROOT_CERT"].map(get);
    match (get("ALIPAY_PUBLIC_KEY"), certs) {
        (Some(_), [None, None, None]) | (None, [None, None, None]) => {
            let text = get("ALIPAY_PUBLIC_KEY")
                .ok_or_else(|| format!("{prefix}ALIPAY_PUBLIC_KEY is not set (or, in certificate mode, {prefix}ALIPAY_APP_CERT, {prefix}ALIPAY_CERT and {prefix}ALIPAY_ROOT_CERT)"))?;
            let keys = text
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(PublicKey::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{prefix}ALIPAY_PUBLIC_KEY: {e}"))?;
            if keys.is_empty() {
                return Err(format!("{prefix}ALIPAY_PUBLIC_KEY is not set"));
            }
            Ok(AlipayKeys::Keys(keys))
        }
        (None, [Some(app), Some(alipay), Some(root)]) => {
            let parse = |name: &str, value: &str| {
                TextSource::parse(value).map_err(|e| format!("{prefix}{name}: {e}"))
            };
            Ok(AlipayKeys::Certificates {
                app_cert: parse("ALIPAY_APP_CERT", app)?,
                alipay_cert: parse("ALIPAY_CERT", alipay)?,
                root_cert: parse("ALIPAY_ROOT_CERT", root)?,
            })
        }
        (Some(_), _) => Err(format!(
            "{prefix}ALIPAY_PUBLIC_KEY and certificates are both set: choose key mode (ALIPAY_PUBLIC_KEY) or certificate mode (ALIPAY_APP_CERT, ALIPAY_CERT, ALIPAY_ROOT_CERT), as the application is configured on Alipay's open platform"
        )),
        (None, _) => Err(format!(
            "certificate mode needs all three of {prefix}ALIPAY_APP_CERT, {prefix}ALIPAY_CERT and {prefix}ALIPAY_ROOT_CERT"
        )),
    }
}

/// A whole-number setting within `range` (absent: `default`); anything else is a problem.
fn whole_number(
    text: Option<&str>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    problems: &mut Vec<String>,
) -> i64 {
    match text.map(str::parse::<i64>) {
        None => default,
        Some(Ok(value)) if range.contains(&value) => value,
        Some(_) => {
            problems.push(format!(
                "{name} must be a whole number from {} to {}",
                range.start(),
                range.end()
            ));
            default
        }
    }
}

/// `BREAKER_*`, each within a sensible range.
fn breaker_settings(
    vars: &HashMap<String, String>,
    alipay_timeout: Duration,
    problems: &mut Vec<String>,
) -> domain::breaker::Settings {
    let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let defaults = domain::breaker::Settings::default();
    let mut number = |name: &str, default: i64, range: std::ops::RangeInclusive<i64>| {
        whole_number(get(name), name, default, range, problems)
    };
    let count = |value: i64| u64::try_from(value).unwrap_or(1);
    domain::breaker::Settings {
        window_ms: number(
            "BREAKER_WINDOW_SECONDS",
            defaults.window_ms / 1000,
            1..=3_600,
        ) * 1000,
        min_calls: count(number(
            "BREAKER_MIN_CALLS",
            i64::try_from(defaults.min_calls).unwrap_or(10),
            1..=10_000,
        )),
        failure_percent: count(number(
            "BREAKER_FAILURE_PERCENT",
            i64::try_from(defaults.failure_percent).unwrap_or(50),
            1..=100,
        )),
        cool_down_ms: number(
            "BREAKER_COOL_DOWN_SECONDS",
            defaults.cool_down_ms / 1000,
            1..=3_600,
        ) * 1000,
        trial_calls: count(number(
            "BREAKER_TRIAL_CALLS",
            i64::try_from(defaults.trial_calls).unwrap_or(3),
            1..=100,
        )),
        sync_ms: number("BREAKER_SYNC_MS", defaults.sync_ms, 0..=60_000),
        // One call (signing and exchange) and the writes around it.
        trial_lease_ms: i64::try_from(alipay_timeout.as_millis()).unwrap_or(6_000) + 2_000,
    }
}

/// HTTPS, or plain HTTP to this machine (the local stack; `host.docker.internal` is this
/// machine as seen from the container of `sam local invoke`).
pub fn secure_or_loopback(url: &str) -> bool {
    url.starts_with("https://")
        || [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://localhost:",
            "http://localhost/",
            "http://[::1]:",
            "http://host.docker.internal:",
        ]
        .iter()
        .any(|prefix| url.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIPAY_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn valid() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ORDERS_TABLE", "orders"),
            ("KMS_KEY_ID", "alias/app"),
            ("ALIPAY_APP_ID", "2021000123456789"),
            ("ALIPAY_PUBLIC_KEY", ALIPAY_KEY),
            ("ALIPAY_SELLER_ID", "2088000000000001"),
            (
                "RETURN_URL_PREFIXES",
                "https://shop.example.com/, https://m.shop.example.com/return",
            ),
        ]
    }

    #[test]
    fn a_valid_environment_reads() {
        let config = Config::from_map(&vars(&valid())).expect("valid");
        assert_eq!(config.primary().gateway_url, PRODUCTION_GATEWAY);
        assert_eq!(config.channels.len(), 1);
        assert_eq!(config.return_url_prefixes.len(), 2);
        assert!(config.return_url_allowed("https://shop.example.com/orders/1"));
        assert!(!config.return_url_allowed("https://shop.example.com.evil.io/"));
        assert!(!config.return_url_allowed("https://evil.io/?https://shop.example.com/"));
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let mut bad = valid();
        bad.retain(|(k, _)| *k != "ORDERS_TABLE");
        bad.push(("ALIPAY_GATEWAY_URL", "http://openapi.alipay.com/gateway.do"));
        bad.retain(|(k, _)| *k != "ALIPAY_SELLER_ID");
        bad.push(("ALIPAY_SELLER_ID", "123"));
        bad.push(("SWEEP_BATCH", "0"));
        bad.push(("RETURN_URL_PREFIXES", "https://shop.example.com"));
        let error = Config::from_map(&vars(&bad)).expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "ORDERS_TABLE is not set",
            "ALIPAY_GATEWAY_URL must be https",
            "ALIPAY_SELLER_ID",
            "RETURN_URL_PREFIXES entry",
            "SWEEP_BATCH must be a whole number from 1 to 1000",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn the_seller_check_cannot_be_left_off() {
        let mut missing = valid();
        missing.retain(|(k, _)| *k != "ALIPAY_SELLER_ID");
        let error = Config::from_map(&vars(&missing)).expect_err("invalid");
        assert!(
            error.to_string().contains("ALIPAY_SELLER_ID is not set"),
            "{error}"
        );
    }

    #[test]
    fn a_settlement_currency_is_read_only_when_it_is_one() {
        let config = Config::from_map(&vars(&valid())).expect("valid");
        assert_eq!(config.primary().settle_currency, None);
        let mut usd = valid();
        usd.push(("ALIPAY_SETTLE_CURRENCY", "USD"));
        let config = Config::from_map(&vars(&usd)).expect("valid");
        assert_eq!(
            config.primary().settle_currency,
            Some(domain::states::Currency::USD)
        );
        for bad in ["usd", "XYZ", "US"] {
            let mut wrong = valid();
            wrong.push(("ALIPAY_SETTLE_CURRENCY", bad));
            let error = Config::from_map(&vars(&wrong)).expect_err("invalid");
            assert!(
                error.to_string().contains("ALIPAY_SETTLE_CURRENCY"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn lifecycle_defaults_are_alipays() {
        let config = Config::from_map(&vars(&valid())).expect("valid");
        assert_eq!(config.lifecycle, Lifecycle::default());
        assert_eq!(config.lifecycle.refund_query_delay_ms, 10_000);
        assert_eq!(config.lifecycle.refund_spacing_ms, 3_000);
    }

    #[test]
    fn a_private_key_in_the_alipay_key_setting_is_named() {
        let mut bad = valid();
        bad.retain(|(k, _)| *k != "ALIPAY_PUBLIC_KEY");
        bad.push((
            "ALIPAY_PUBLIC_KEY",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ));
        let error = Config::from_map(&vars(&bad)).expect_err("invalid");
        assert!(error.to_string().contains("Alipay's public key"), "{error}");
    }

    #[test]
    fn a_second_channel_is_read_whole_or_refused() {
        let mut two = valid();
        two.extend([
            (
                "ALIPAY_GATEWAY_URL",
                "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
            ),
            ("SECONDARY_ALIPAY_APP_ID", "2021000123456790"),
            ("SECONDARY_KMS_KEY_ID", "alias/app2"),
            ("SECONDARY_ALIPAY_PUBLIC_KEY", ALIPAY_KEY),
            ("SECONDARY_ALIPAY_SELLER_ID", "2088000000000002"),
        ]);
        let config = Config::from_map(&vars(&two)).expect("valid");
        let ids: Vec<ChannelId> = config.channels.iter().map(|c| c.id).collect();
        assert_eq!(ids, [ChannelId::Primary, ChannelId::Secondary]);
        let secondary = config.channel(ChannelId::Secondary).expect("secondary");
        assert_eq!(secondary.app_id.as_str(), "2021000123456790");
        assert_eq!(secondary.kms_key_id.as_deref(), Some("alias/app2"));
        // The secondary's gateway defaults to the primary's.
        assert_eq!(secondary.gateway_url, config.primary().gateway_url);

        let mut partial = valid();
        partial.extend([
            ("SECONDARY_ALIPAY_APP_ID", "2021000123456789"),
            ("SECONDARY_ALIPAY_SELLER_ID", "2088000000000002"),
        ]);
        let error = Config::from_map(&vars(&partial))
            .expect_err("invalid")
            .to_string();
        assert!(
            error.contains("SECONDARY_ALIPAY_PUBLIC_KEY is not set"),
            "{error}"
        );
        let mut same = valid();
        same.extend([
            ("SECONDARY_ALIPAY_APP_ID", "2021000123456789"),
            ("SECONDARY_ALIPAY_PUBLIC_KEY", ALIPAY_KEY),
            ("SECONDARY_ALIPAY_SELLER_ID", "2088000000000002"),
        ]);
        let error = Config::from_map(&vars(&same))
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("must differ from ALIPAY_APP_ID"), "{error}");
    }

    #[test]
    fn breaker_settings_read_with_their_ranges() {
        let config = Config::from_map(&vars(&valid())).expect("valid");
        assert_eq!(config.breaker.min_calls, 10);
        assert_eq!(config.breaker.failure_percent, 50);
        assert_eq!(config.breaker.window_ms, 60_000);
        assert_eq!(config.breaker.cool_down_ms, 30_000);
        // The trial lease outlasts one call (the Alipay time-out).
        assert_eq!(config.breaker.trial_lease_ms, 8_000);
        let mut set = valid();
        set.extend([
            ("BREAKER_MIN_CALLS", "4"),
            ("BREAKER_FAILURE_PERCENT", "75"),
            ("BREAKER_WINDOW_SECONDS", "10"),
            ("BREAKER_COOL_DOWN_SECONDS", "5"),
            ("BREAKER_TRIAL_CALLS", "2"),
            ("BREAKER_SYNC_MS", "250"),
        ]);
        let breaker = Config::from_map(&vars(&set)).expect("valid").breaker;
        assert_eq!(
            (
                breaker.min_calls,
                breaker.failure_percent,
                breaker.window_ms,
                breaker.cool_down_ms,
                breaker.trial_calls,
                breaker.sync_ms
            ),
            (4, 75, 10_000, 5_000, 2, 250)
        );
        let mut bad = valid();
        bad.push(("BREAKER_FAILURE_PERCENT", "0"));
        let error = Config::from_map(&vars(&bad))
            .expect_err("invalid")
            .to_string();
        assert!(
            error.contains("BREAKER_FAILURE_PERCENT must be a whole number from 1 to 100"),
            "{error}"
        );
    }

    #[test]
    fn key_mode_takes_several_keys_and_certificate_mode_all_three_files() {
        use crate::config::channels::{AlipayKeys, TextSource};
        let mut two = valid();
        let both = format!("{ALIPAY_KEY}, {ALIPAY_KEY}");
        two.retain(|(k, _)| *k != "ALIPAY_PUBLIC_KEY");
        two.push(("ALIPAY_PUBLIC_KEY", &both));
        let config = Config::from_map(&vars(&two)).expect("valid");
        assert!(matches!(&config.primary().alipay_keys, AlipayKeys::Keys(keys) if keys.len() == 2));

        let mut certs = valid();
        certs.retain(|(k, _)| *k != "ALIPAY_PUBLIC_KEY");
        certs.extend([
            (
                "ALIPAY_APP_CERT",
                "s3://bucket/alipay/primary/appCertPublicKey.crt",
            ),
            ("ALIPAY_CERT", "-----BEGIN CERTIFICATE-----"),
            (
                "ALIPAY_ROOT_CERT",
                "s3://bucket/alipay/primary/alipayRootCert.crt",
            ),
        ]);
        let config = Config::from_map(&vars(&certs)).expect("valid");
        match &config.primary().alipay_keys {
            AlipayKeys::Certificates {
                app_cert,
                alipay_cert,
                ..
            } => {
                assert_eq!(
                    app_cert,
                    &TextSource::S3 {
                        bucket: "bucket".into(),
                        key: "alipay/primary/appCertPublicKey.crt".into()
                    }
                );
                assert!(matches!(alipay_cert, TextSource::Inline(_)));
            }
            other => panic!("{other:?}"),
        }

        let mut partial = certs.clone();
        partial.retain(|(k, _)| *k != "ALIPAY_ROOT_CERT");
        let error = Config::from_map(&vars(&partial))
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("needs all three"), "{error}");
        let mut mixed = certs.clone();
        mixed.push(("ALIPAY_PUBLIC_KEY", ALIPAY_KEY));
        let error = Config::from_map(&vars(&mixed))
            .expect_err("invalid")
            .to_string();
        assert!(
            error.contains("not both") || error.contains("choose key mode"),
            "{error}"
        );
        let mut bad_uri = certs.clone();
        bad_uri.retain(|(k, _)| *k != "ALIPAY_CERT");
        bad_uri.push(("ALIPAY_CERT", "s3://bucket-only"));
        let error = Config::from_map(&vars(&bad_uri))
            .expect_err("invalid")
            .to_string();
        assert!(
            error.contains("ALIPAY_CERT: s3://bucket-only is not s3://bucket/key"),
            "{error}"
        );
        let mut standby = certs;
        standby.push(("STANDBY_KMS_KEY_ID", "alias/b"));
        let error = Config::from_map(&vars(&standby))
            .expect_err("invalid")
            .to_string();
        assert!(
            error.contains("STANDBY_ALIPAY_APP_CERT is not set"),
            "{error}"
        );
    }
}
