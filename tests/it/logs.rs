//! Secrets and personal data never reach the logs: every log line the functions write while a
//! payment is created, paid, refunded and forged against is captured and searched. And with
//! many requests at once in one process (as `run_concurrent` serves them), every line names the
//! request it belongs to and no other.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use alipay_sim::{Fault, FaultKind};
use gateway_tests::support::{APP_ID, SELLER_ID, Stack, StackOptions, eventually, fixtures};
use serde_json::json;

/// Buyers of the error paths: one on a notification for a trade the gateway does not know, one on
/// notifications whose signature never verifies.
const UNKNOWN_TRADE_BUYER: &str = "2088555544443333";
const BAD_SIGNATURE_BUYER: &str = "2088666677778888";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's one subscriber (both tests of this binary read what it captured): every line
/// at DEBUG and above, in the text format, with its spans.
fn capture() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            captured
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_buyer_ids_keys_or_signatures_in_the_logs() {
    let captured = capture();

    // With fraud checks, so that their refusal and after-payment paths run too.
    let stack = Stack::start_custom(StackOptions {
        alipay_timeout_ms: 3_000,
        aws_endpoint: None,
        risk_rules: Some(
            r#"{"blocked_customers": ["cust_secret_blocked"], "ip": {"per_day": {"count": 100}},
                "after_payment": {"buyer_max_customers": 5}}"#
                .into(),
        ),
        ..StackOptions::default()
    })
    .await;
    let create = json!({"out_trade_no": "logged_1", "amount": "50.00", "subject": "log check", "channel": "qr",
                        "customer_ref": "cust_secret_77"});
    assert_eq!(
        stack
            .http
            .post_json(&stack.api("/payments"), &create)
            .await
            .status,
        201
    );
    let trade = stack.simulator.pay("logged_1", false).expect("pay");
    let paid = eventually(60, || async {
        let answer = stack.http.get(&stack.api("/payments/logged_1")).await;
        (answer.json()["status"] == "PAID").then_some(())
    })
    .await;
    assert!(paid.is_some());
    let refund = json!({"amount": "10.00", "out_request_no": "logged_r1"});
    assert_eq!(
        stack
            .http
            .post_json(&stack.api("/payments/logged_1/refunds"), &refund)
            .await
            .status,
        201
    );
    let blocked = json!({"out_trade_no": "logged_2", "amount": "5.00", "subject": "log check", "channel": "qr",
                         "customer_ref": "cust_secret_blocked"});
    assert_eq!(
        stack
            .http
            .post_json(&stack.api("/payments"), &blocked)
            .await
            .status,
        422
    );
    // A forged notification is logged as a security warning, without its content.
    let forged = format!(
        "out_trade_no=logged_1&buyer_id={}&sign_type=RSA2&sign=AAAA",
        trade.buyer_id
    );
    assert_eq!(
        stack
            .http
            .post_form(&stack.gateway.notify_url, &forged)
            .await
            .text,
        "fail"
    );

    // Before the signature is checked, every string in the body is the sender's: none of it
    // reaches the logs, however it fails (charset, sign_type, duplicate field, bad form).
    let marker = "ATTACKER_CHOSEN_TEXT_".repeat(200);
    for body in [
        format!("charset={marker}&sign=AAAA&sign_type=RSA2"),
        format!("sign_type={marker}&sign=AAAA"),
        format!("{marker}=1&{marker}=2&sign=AAAA"),
        format!("out_trade_no=%ZZ{marker}&sign=AAAA"),
    ] {
        let answer = stack.http.post_form(&stack.gateway.notify_url, &body).await;
        assert_eq!(answer.text, "fail");
    }

    // The error paths, which log the most: Alipay's answer forged, an unsigned refusal, a system
    // error on a refund, a notification for a trade the gateway does not know (signed, with a
    // buyer id), notifications whose signature never verifies, and input the API refuses.
    stack.simulator.inject(Fault {
        target: "alipay.trade.precreate".into(),
        kind: FaultKind::BadSignature,
        times: 1,
    });
    let forged_answer = json!({"out_trade_no": "logged_3", "amount": "5.00", "subject": "log check", "channel": "qr"});
    let answer = stack
        .http
        .post_json(&stack.api("/payments"), &forged_answer)
        .await;
    assert!(answer.status >= 500, "{} {}", answer.status, answer.text);
    stack.simulator.inject(Fault {
        target: "alipay.trade.precreate".into(),
        kind: FaultKind::UnsignedError {
            code: "40002".into(),
            sub_code: "isv.invalid-signature".into(),
        },
        times: 1,
    });
    let unsigned = json!({"out_trade_no": "logged_4", "amount": "5.00", "subject": "log check", "channel": "qr"});
    let answer = stack
        .http
        .post_json(&stack.api("/payments"), &unsigned)
        .await;
    assert!(answer.status >= 500, "{} {}", answer.status, answer.text);
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::SystemError,
        times: 1,
    });
    let refund = json!({"amount": "1.00", "out_request_no": "logged_r2"});
    let answer = stack
        .http
        .post_json(&stack.api("/payments/logged_1/refunds"), &refund)
        .await;
    assert!(answer.status >= 200, "{}", answer.text);
    let unknown: BTreeMap<String, String> = [
        ("notify_id", "2026000000000000000000000000000009"),
        ("notify_type", "trade_status_sync"),
        ("notify_time", "2026-11-26 18:30:05"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("buyer_id", UNKNOWN_TRADE_BUYER),
        ("buyer_logon_id", "sec***@example.com"),
        ("trade_no", "2026112722001400000000000099"),
        ("out_trade_no", "logged_never_created"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "7.00"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = stack.simulator.sign_notification(&unknown);
    stack.http.post_form(&stack.gateway.notify_url, &body).await;
    let created = json!({"out_trade_no": "logged_5", "amount": "6.00", "subject": "log check", "channel": "qr"});
    assert_eq!(
        stack
            .http
            .post_json(&stack.api("/payments"), &created)
            .await
            .status,
        201
    );
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::BadNotifySignature,
        times: 1,
    });
    let refused_trade = stack
        .simulator
        .pay_as("logged_5", BAD_SIGNATURE_BUYER)
        .expect("pay");
    let refused = eventually(60, || async {
        stack
            .simulator
            .deliveries()
            .iter()
            .any(|d| d.out_trade_no == "logged_5" && !d.attempts.is_empty())
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the forged-signature notification was never delivered"
    );
    let bad_input = json!({"out_trade_no": "logged_6", "amount": "1.5.0", "subject": "log check", "channel": "qr"});
    assert_eq!(
        stack
            .http
            .post_json(&stack.api("/payments"), &bad_input)
            .await
            .status,
        400
    );

    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        !logs.contains("ATTACKER_CHOSEN_TEXT_"),
        "text from an unverified body reached the logs"
    );
    // The capture works: the events that matter are there.
    for expected in [
        "payment created",
        "notification applied",
        "notification refused",
        "logged_1",
        "payment refused by the fraud checks",
    ] {
        assert!(logs.contains(expected), "expected {expected:?} in the logs");
    }
    for buyer_id in [
        trade.buyer_id.as_str(),
        refused_trade.buyer_id.as_str(),
        UNKNOWN_TRADE_BUYER,
    ] {
        assert!(
            !logs.contains(buyer_id),
            "a full buyer id ({buyer_id}) reached the logs"
        );
    }
    // Every signing string and signature the exchange produced, either way: the simulator kept
    // each request it verified and each answer and notification it signed.
    let signed = stack.simulator.signed_texts();
    assert!(
        signed.len() >= 8,
        "the simulator saw the requests, answers and notifications ({})",
        signed.len()
    );
    for (content, sign) in &signed {
        assert!(
            !sign.is_empty() && !logs.contains(sign.as_str()) && !logs.contains(&sign[..24]),
            "a signature reached the logs: {sign}"
        );
        assert!(
            !logs.contains(content.as_str()),
            "a signing string reached the logs: {content}"
        );
    }
    // Our own key's public half (KMS's GetPublicKey), whole or line by line as PEM has it.
    let public = stack
        .env
        .kms_signer()
        .public_key()
        .await
        .expect("KMS public key")
        .to_spki_base64();
    assert!(
        !logs.contains(&public[..64]),
        "our public key reached the logs"
    );
    for line in public.as_bytes().chunks(64) {
        let line = std::str::from_utf8(line).expect("Base64 is ASCII");
        assert!(
            line.len() < 24 || !logs.contains(line),
            "our public key reached the logs"
        );
    }
    assert!(
        !logs.contains("cust_secret"),
        "a customer ref reached the logs"
    );
    let alipay_key =
        std::fs::read_to_string(fixtures().join("keys/alipay_private_key.pem")).expect("key");
    let key_line = alipay_key
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with('#'))
        .expect("key body");
    assert!(!logs.contains(key_line), "key material reached the logs");
    assert!(!logs.contains("PRIVATE KEY"));
    assert!(
        !logs.contains("sign="),
        "no signed strings or form bodies in the logs"
    );
    assert!(
        !logs.contains("fund_bill_list"),
        "no notification bodies in the logs"
    );
}

/// Twenty notifications and then twenty refunds at once in one process: a line logged for one
/// request never carries another's `out_trade_no` (a span entered and held across an await
/// stays current on its thread, and the next request polled there logs under it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_line_names_only_the_request_it_belongs_to() {
    const N: usize = 20;
    let captured = capture();
    let stack = Stack::start_custom(StackOptions {
        refunds: alipay_sim::RefundProcessing::IMMEDIATE,
        ..StackOptions::default()
    })
    .await;
    for n in 0..N {
        let body = json!({"out_trade_no": format!("spans_{n}"), "amount": "8.00", "subject": "span check", "channel": "qr"});
        let answer = stack.http.post_json(&stack.api("/payments"), &body).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    // The notifications are held until all are paid, then go out together.
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Hold,
        times: N as u32,
    });
    for n in 0..N {
        stack
            .simulator
            .pay(&format!("spans_{n}"), false)
            .expect("pay");
    }
    stack.simulator.release_held();
    for n in 0..N {
        let no = format!("spans_{n}");
        let paid = eventually(60, || async {
            let answer = stack.http.get(&stack.api(&format!("/payments/{no}"))).await;
            (answer.json()["status"] == "PAID").then_some(())
        })
        .await;
        assert!(paid.is_some(), "{no} was paid");
    }
    let mut refunds = tokio::task::JoinSet::new();
    for n in 0..N {
        let (http, url) = (
            stack.http.clone(),
            stack.api(&format!("/payments/spans_{n}/refunds")),
        );
        refunds.spawn(async move {
            let body = json!({"amount": "1.00", "out_request_no": format!("spans_r{n}")});
            http.post_json(&url, &body).await.status
        });
    }
    while let Some(status) = refunds.join_next().await {
        assert!(status.expect("task") < 500);
    }

    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    let mut lines = 0;
    for line in logs.lines().filter(|l| l.contains("out_trade_no=spans_")) {
        lines += 1;
        let named: std::collections::BTreeSet<&str> = line
            .split("out_trade_no=")
            .skip(1)
            .filter_map(|rest| rest.split([' ', '}', ':']).next())
            .filter(|no| no.starts_with("spans_"))
            .collect();
        assert!(
            named.len() == 1,
            "a line names {} requests' numbers: {line}",
            named.len()
        );
    }
    for n in 0..N {
        let own = format!("out_trade_no=spans_{n} ");
        assert!(
            logs.lines()
                .any(|l| l.contains("notification applied") && l.contains(&own)),
            "spans_{n}'s notification was logged under its own number"
        );
    }
    assert!(lines >= 2 * N, "the lines were captured ({lines})");
}

/// The SFTP key Antom's reports are fetched with (from SSM) never reaches the logs, on a run that
/// fetches and on one refused by the pinned host key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sftp_key_never_reaches_the_logs() {
    let captured = capture();
    let stack = Stack::start_custom(StackOptions {
        antom: true,
        antom_reports: true,
        ..StackOptions::default()
    })
    .await;
    let sftp = stack.antom_sftp.as_ref().expect("sftp");
    let antom = stack.antom.as_ref().expect("antom");
    let day = alipay::china_time::ChinaDate::of_unix(gateway_tests::support::now_ms() / 1000);
    antom
        .write_reports(&day.to_string(), &sftp.base)
        .expect("reports");
    let settings = gateway::reconcile::Settings::default().with_ssm(&stack.env.sdk_config);
    let report = stack
        .reconcile_channel(
            domain::channel::ChannelId::Antom,
            &gateway::reconcile::Reports::none(),
            &settings,
            day,
        )
        .await
        .expect("reconciled");
    // A day without Antom payments: its transaction details, `<END>` alone, and no settlement.
    assert_eq!(report.antom.as_ref().map(|a| a.files.len()), Some(1));
    // The same key against a server pinned to another host key: refused, and said so.
    let mut config = stack.gateway.functions.reconcile.config.clone();
    if let Some(reports) = config.antom.as_mut().and_then(|a| a.reports.as_mut()) {
        reports.host_key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                .into();
    }
    let other = gateway::startup::Gateway::with_config(
        config,
        &stack.env.sdk_config,
        gateway::startup::Role::CallsAlipay,
    )
    .await
    .expect("gateway");
    let refused = gateway::reconcile::run(
        &other,
        domain::channel::ChannelId::Antom,
        &gateway::reconcile::Reports::none(),
        &settings,
        day,
        &gateway::deadline::Deadline::after(std::time::Duration::from_secs(30)),
    )
    .await;
    assert!(refused.is_err());
    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(logs.contains("report fetched"), "the capture works");
    for line in sftp
        .client_key
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
    {
        assert!(!logs.contains(line), "SFTP key material reached the logs");
    }
    assert!(!logs.contains("OPENSSH PRIVATE KEY"));
    stack.env.drop_table().await;
}
