//! What the benches share: a function's environment against the test environment and a
//! simulated Alipay, a payment notification for an order, and the order itself.

use std::collections::BTreeMap;

use alipay::Amount;
use alipay::china_time::ChinaDateTime;
use alipay::ids::{OutTradeNo, Subject};
use alipay_sim::china_text as china_timestamp;
use domain::states::{Cashier, Cause, NewOrder};

use crate::support::{APP_ID, RETURN_PREFIX, SELLER_ID, TestEnv, fixtures, now_ms};
use alipay_sim::Simulator;

/// The simulated Alipay application the benches' functions talk to (it trusts `env`'s KMS key).
pub async fn simulator(env: &TestEnv) -> Simulator {
    crate::support::simulate(
        env.kms_signer()
            .public_key()
            .await
            .expect("KMS key")
            .clone(),
        "alipay_private_key.pem",
        APP_ID,
        SELLER_ID,
        None,
        alipay_sim::RefundProcessing::IMMEDIATE,
    )
    .await
}

/// The environment of a function (key mode, one channel) on `env` and `simulator`.
pub fn function_env(env: &TestEnv, simulator: &Simulator) -> BTreeMap<String, String> {
    [
        ("ORDERS_TABLE", env.table.clone()),
        ("KMS_KEY_ID", env.key_alias.clone()),
        ("ALIPAY_APP_ID", APP_ID.to_owned()),
        ("ALIPAY_SELLER_ID", SELLER_ID.to_owned()),
        ("ALIPAY_GATEWAY_URL", simulator.gateway_url()),
        (
            "ALIPAY_NOTIFY_URL",
            "https://bench.lambda-url.us-east-1.on.aws/".to_owned(),
        ),
        ("RETURN_URL_PREFIXES", RETURN_PREFIX.to_owned()),
        (
            "ALIPAY_PUBLIC_KEY",
            std::fs::read_to_string(fixtures().join("keys/alipay_public_key.pem")).expect("key"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A CREATED order of 88.88 on `env`'s table, expiring in an hour.
pub async fn create_order(env: &TestEnv, out_trade_no: &str) {
    let expire = ChinaDateTime::parse(&china_timestamp(now_ms() / 1000 + 3_600)).expect("time");
    let order = NewOrder {
        out_trade_no: OutTradeNo::parse(out_trade_no).expect("id"),
        amount: Amount::parse("88.88").expect("amount").into(),
        subject: Subject::parse("会员 Pro 年费").expect("subject"),
        channel: Cashier::Page,
        return_url: None,
        time_expire: None,
        customer_ref: None,
        virtual_goods: true,
        alipay_channel: domain::channel::ChannelId::Primary,
    };
    let cause = Cause::Api {
        route: "bench".into(),
    };
    env.store
        .create_order(&order, &expire, now_ms() + 3_600_000, &cause, now_ms(), &[])
        .await
        .expect("order");
}

/// The form body of Alipay's TRADE_SUCCESS notification for that order, signed by `simulator`.
pub fn paid_notification(simulator: &Simulator, out_trade_no: &str) -> String {
    let now = now_ms() / 1000;
    let fields: BTreeMap<String, String> = [
        ("notify_id", format!("2026{:028}", now_ms())),
        ("notify_type", "trade_status_sync".into()),
        ("notify_time", china_timestamp(now)),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("app_id", APP_ID.into()),
        ("auth_app_id", APP_ID.into()),
        (
            "trade_no",
            format!("2026112822001{:015}", now_ms() % 1_000_000_000),
        ),
        ("out_trade_no", out_trade_no.into()),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", "88.88".into()),
        ("receipt_amount", "88.88".into()),
        ("seller_id", SELLER_ID.into()),
        ("buyer_id", "2088102177846455".into()),
        ("gmt_create", china_timestamp(now - 5)),
        ("gmt_payment", china_timestamp(now)),
        ("subject", "会员 Pro 年费".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    simulator.sign_notification(&fields)
}

/// A release binary of the workspace (`cargo build --release` puts it there): found beside this
/// bench's own executable (`<target>/release/deps/…`), so that `CARGO_TARGET_DIR` is honoured.
pub fn release_binary(name: &str) -> std::path::PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|release| release.join(name)));
    beside.unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release")
            .join(name)
    })
}

/// What one timed run of `alipay-cli reconcile` (under `/usr/bin/time`) measured.
pub struct ReconcileRun {
    pub wall_s: f64,
    /// User + system.
    pub cpu_s: f64,
    pub peak_mb: f64,
    /// The report's summary (found among the metric lines on stdout).
    pub summary: serde_json::Value,
    pub stderr: String,
}

/// Runs `command` (`/usr/bin/time -f "TIME %e %M %U %S" alipay-cli reconcile ...`) and reads its
/// figures and the report's summary.
pub fn timed_reconcile(command: &mut std::process::Command) -> ReconcileRun {
    let output = command.output().expect("alipay-cli");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let Some(time) = stderr.lines().find_map(|l| l.strip_prefix("TIME ")) else {
        panic!("no figures: {stderr}");
    };
    let mut parts = time.split_whitespace();
    let wall_s: f64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
    let peak_kb: f64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
    let cpu_s: f64 = parts.map(|t| t.parse::<f64>().unwrap_or(0.0)).sum();
    // The summary, among the breaker's one-line metric records (EMF) on stdout.
    let summary: serde_json::Value = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find(|value| value.get("stats").is_some())
        .unwrap_or_else(|| {
            panic!(
                "no summary: {}\n{stderr}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
    ReconcileRun {
        wall_s,
        cpu_s,
        peak_mb: peak_kb / 1024.0,
        summary,
        stderr,
    }
}
