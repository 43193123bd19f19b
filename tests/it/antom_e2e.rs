//! Antom payments end to end, through the merchant API, the functions, the table on the AWS
//! stand-in, KMS (the Antom channel's own key) and the simulated Antom: USD, JPY and IDR priced,
//! paid at Antom's cashier, notified with the settlement in CNY, refunded in part then in full,
//! each checked against the simulator's ledger; CNY still goes to Alipay v1; and Antom's
//! harsh answers (unsigned, wrongly signed, late) decide nothing.

use std::time::Duration;

use alipay_sim::antom::{AntomFault, PaymentState};
use gateway_tests::support::{Stack, StackOptions};
use serde_json::{Value, json};

async fn stack() -> Stack {
    Stack::start_custom(StackOptions {
        antom: true,
        ..StackOptions::default()
    })
    .await
}

async fn payment(stack: &Stack, out_trade_no: &str, sync: bool) -> Value {
    let query = if sync { "?sync=true" } else { "" };
    let answer = stack
        .http
        .get(&stack.api(&format!("/payments/{out_trade_no}{query}")))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

async fn until<F: Fn(&Value) -> bool>(
    stack: &Stack,
    out_trade_no: &str,
    what: &str,
    done: F,
) -> Value {
    for _ in 0..100 {
        let view = payment(stack, out_trade_no, false).await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{out_trade_no}: {what} not within 10 s");
}

async fn refund(stack: &Stack, out_trade_no: &str, body: Value) -> Value {
    let answer = stack
        .http
        .post_json(
            &stack.api(&format!("/payments/{out_trade_no}/refunds")),
            &body,
        )
        .await;
    assert!(
        (200..=202).contains(&answer.status),
        "{out_trade_no} {body}: {} {}",
        answer.status,
        answer.text
    );
    answer.json()["refund"].clone()
}

/// Drives a refund to its end the way a merchant would: `GET ?sync=true` until it settles.
async fn settled(stack: &Stack, out_trade_no: &str, out_request_no: &str) -> Value {
    let url = stack.api(&format!(
        "/payments/{out_trade_no}/refunds/{out_request_no}?sync=true"
    ));
    for _ in 0..60 {
        let answer = stack.http.get(&url).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let refund = answer.json()["refund"].clone();
        if refund["status"] != "PENDING" {
            return refund;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{out_trade_no}/{out_request_no} still PENDING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usd_jpy_and_idr_payments_are_paid_settled_and_refunded_through_antom() {
    let stack = stack().await;
    let antom = stack.antom.as_ref().expect("antom");
    let cases = [
        (
            "antom_usd_1",
            "USD",
            "10.99",
            1_099u64,
            "5.00",
            "5.99",
            "7829",
        ),
        ("antom_jpy_1", "JPY", "1250", 1_250, "250", "1000", "5986"),
        (
            "antom_idr_1",
            "IDR",
            "150000.00",
            15_000_000,
            "50000.00",
            "100000.00",
            "6780",
        ),
    ];
    for (out_trade_no, currency, amount, minor, part, rest, settled_fen) in cases {
        let created = stack
            .http
            .post_json(
                &stack.api("/payments"),
                &json!({"out_trade_no": out_trade_no, "amount": amount, "currency": currency,
                        "subject": "Pro plan", "channel": "page",
                        "return_url": "https://shop.example.com/back"}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let body = created.json();
        assert_eq!(body["payment"]["alipay_channel"], "antom");
        assert_eq!(body["payment"]["currency"], currency);
        assert_eq!(body["payment"]["amount"], amount);
        let url = body["next_step"]["url"].as_str().expect("cashier url");
        assert!(url.starts_with(antom.base_url()), "{url}");
        // What Antom was asked: our id, the amount in minor units, the settlement currency.
        let at_antom = antom.payment(out_trade_no).expect("at Antom");
        assert_eq!(
            (at_antom.currency.as_str(), at_antom.value),
            (currency, minor)
        );
        assert_eq!(at_antom.settlement_currency.as_deref(), Some("CNY"));

        antom
            .pay(out_trade_no)
            .expect("the buyer pays at Antom's cashier");
        let paid = until(&stack, out_trade_no, "PAID", |p| p["status"] == "PAID").await;
        assert_eq!(paid["paid_amount"], amount);
        // The settlement as Antom reported it, recorded, never computed here.
        assert_eq!(paid["settlement"]["currency"], "CNY");
        let settlement_minor = paid["settlement"]["amount"]
            .as_str()
            .expect("amount")
            .replace('.', "");
        assert_eq!(settlement_minor, settled_fen, "{paid}");
        assert!(
            paid["settlement"]["quote"]["rate"]
                .as_str()
                .is_some_and(|r| r.contains('.')),
            "{paid}"
        );

        let first = refund(
            &stack,
            out_trade_no,
            json!({"amount": part, "out_request_no": "r1"}),
        )
        .await;
        assert_eq!(first["currency"], currency);
        assert_eq!(
            settled(&stack, out_trade_no, "r1").await["status"],
            "SUCCEEDED"
        );
        stack.after_spacing().await;
        refund(
            &stack,
            out_trade_no,
            json!({"amount": rest, "currency": currency, "out_request_no": "r2"}),
        )
        .await;
        assert_eq!(
            settled(&stack, out_trade_no, "r2").await["status"],
            "SUCCEEDED"
        );
        let done = payment(&stack, out_trade_no, false).await;
        assert_eq!(done["status"], "REFUNDED", "{done}");
        // The simulated Antom's ledger: paid once, refunded exactly what was paid.
        let ledger = antom.payment(out_trade_no).expect("at Antom");
        assert_eq!(
            (ledger.status, ledger.value, ledger.refunded),
            (PaymentState::Success, minor, minor)
        );
        // Beyond what was paid: refused here, nothing sent.
        let beyond = stack
            .http
            .post_json(
                &stack.api(&format!("/payments/{out_trade_no}/refunds")),
                &json!({"amount": part, "out_request_no": "r3"}),
            )
            .await;
        assert_eq!(beyond.status, 422, "{}", beyond.text);
    }
    assert_eq!(antom.refunds().len(), 6);

    // CNY still goes to Alipay v1; a currency nobody takes is refused, nothing written.
    let cny = stack
        .http
        .post_json(
            &stack.api("/payments"),
            &json!({"out_trade_no": "antom_cny_1", "amount": "1.00", "subject": "s", "channel": "qr"}),
        )
        .await;
    assert_eq!(cny.status, 201, "{}", cny.text);
    assert_eq!(cny.json()["payment"]["alipay_channel"], "primary");
    let gbp = stack
        .http
        .post_json(
            &stack.api("/payments"),
            &json!({"out_trade_no": "antom_gbp_1", "amount": "1.00", "currency": "GBP", "subject": "s", "channel": "qr"}),
        )
        .await;
    assert_eq!(gbp.status, 422, "{}", gbp.text);
    assert_eq!(gbp.json()["error"]["code"], "unsupported_currency");
    assert_eq!(
        stack
            .http
            .get(&stack.api("/payments/antom_gbp_1"))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn antoms_unsigned_and_forged_answers_decide_nothing() {
    let stack = stack().await;
    let antom = stack.antom.as_ref().expect("antom");
    let create = json!({"out_trade_no": "antom_faults_1", "amount": "20.00", "currency": "EUR",
                        "subject": "s", "channel": "page"});
    // An unsigned refusal of the payment (what Ant's Java SDK would pass on): no answer at all.
    antom.inject("pay", AntomFault::Unsigned);
    let first = stack.http.post_json(&stack.api("/payments"), &create).await;
    assert_eq!(first.status, 503, "{}", first.text);
    assert_eq!(first.json()["error"]["code"], "antom_unavailable");
    assert_eq!(first.json()["payment"]["status"], "CREATED");
    // The merchant retries the same request: the same payment request id reaches Antom.
    let again = stack.http.post_json(&stack.api("/payments"), &create).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.json()["next_step"]["url"].is_string());

    // The payment notification is forged on every attempt: refused; the merchant's sync asks
    // Antom and applies what its signed answer says.
    antom.inject("notify", AntomFault::BadNotifySignature);
    antom.pay("antom_faults_1").expect("pays");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        payment(&stack, "antom_faults_1", false).await["status"],
        "CREATED"
    );
    let mut status = Value::Null;
    for _ in 0..40 {
        status = payment(&stack, "antom_faults_1", true).await["status"].clone();
        if status == "PAID" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(status, "PAID");

    // A refund answered with a broken signature stays PENDING; the inquiry settles it.
    antom.inject("refund", AntomFault::BadSignature);
    let pending = refund(
        &stack,
        "antom_faults_1",
        json!({"amount": "20.00", "out_request_no": "r1"}),
    )
    .await;
    assert_eq!(pending["status"], "PENDING", "{pending}");
    assert_eq!(
        settled(&stack, "antom_faults_1", "r1").await["status"],
        "SUCCEEDED"
    );
    let ledger = antom.payment("antom_faults_1").expect("ledger");
    assert_eq!(ledger.refunded, 2_000);
    // Forged notifications were refused by the notify function, none applied.
    assert!(
        antom
            .deliveries()
            .iter()
            .filter(|d| d.notify_type == "PAYMENT_RESULT")
            .all(|d| !d.acknowledged),
        "{:?}",
        antom.deliveries()
    );
}
