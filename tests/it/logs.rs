//! Secrets and personal data never reach the logs: every log line the functions write while a
//! payment is created, paid, refunded and forged against is captured and searched.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gateway_tests::support::{Stack, StackOptions, eventually, fixtures};
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_buyer_ids_keys_or_signatures_in_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // With fraud checks, so that their refusal and after-payment paths run too.
    let stack = Stack::start_custom(StackOptions {
        alipay_timeout_ms: 1_500,
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
    let paid = eventually(10, || async {
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
    assert!(
        !logs.contains(&trade.buyer_id),
        "a full buyer id reached the logs"
    );
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
