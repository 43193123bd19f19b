//! Alipay v1 for a merchant contracted for cross-border settlement (`ALIPAY_SETTLE_CURRENCY`):
//! the settlement Alipay reports (`settle_amount` in `settle_currency` at `settle_trans_rate`,
//! and what the buyer paid, `pay_amount` in `pay_currency` at `trans_pay_rate`) recorded as the
//! simulator's ledger wrote it, whether the payment was learned from a notification, from a
//! query, or from an agreement charge's answer; the charge asked with `trans_currency` and
//! `settle_currency`; and none of it for a merchant that is not contracted.

use alipay::ids::OutTradeNo;
use alipay_sim::{Fault, FaultKind};
use gateway_tests::support::{Stack, StackOptions, eventually};
use serde_json::{Value, json};

/// The simulator's rate from CNY to USD, in millionths (its own, like Alipay's).
const RATE: u64 = 140_380;

async fn contracted() -> Stack {
    let stack = Stack::start_custom(StackOptions {
        env: vec![("ALIPAY_SETTLE_CURRENCY".into(), "USD".into())],
        ..StackOptions::default()
    })
    .await;
    stack.simulator.settle_in("USD", RATE);
    stack
}

async fn create_qr(stack: &Stack, out_trade_no: &str, amount: &str) {
    let created = stack
        .http
        .post_json(
            &stack.api("/payments"),
            &json!({"out_trade_no": out_trade_no, "amount": amount, "subject": "s",
                    "channel": "qr"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
}

async fn paid_view(stack: &Stack, out_trade_no: &str, sync: bool) -> Value {
    let query = if sync { "?sync=true" } else { "" };
    let url = stack.api(&format!("/payments/{out_trade_no}{query}"));
    eventually(20, || async {
        let view = stack.http.get(&url).await.json();
        (view["status"] == "PAID").then_some(view)
    })
    .await
    .unwrap_or_else(|| panic!("{out_trade_no} not PAID"))
}

/// The settlement as the simulator's ledger has it for `out_trade_no` (its notification and
/// query carry the same fields).
fn expected(stack: &Stack, out_trade_no: &str) -> Value {
    let trade = stack.simulator.trade(out_trade_no).expect("at Alipay");
    // Alipay's arithmetic, done here only to know what to expect: fen × rate, half up.
    let settled = (trade.total_fen * RATE + 500_000) / 1_000_000;
    json!({
        "amount": format!("{}.{:02}", settled / 100, settled % 100),
        "currency": "USD",
        "quote": {"id": null, "pair": "CNY/USD", "rate": "0.140380", "start": null,
                  "expiry": null},
        "buyer_paid": {"amount": trade.total_amount, "currency": "CNY"},
        "buyer_rate": "1.000000",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contracted_merchants_settlement_is_recorded_as_alipay_reports_it() {
    let stack = contracted().await;

    // Learned from the notification.
    create_qr(&stack, "xb_notified", "100.00").await;
    stack.simulator.pay("xb_notified", false).expect("pays");
    let view = paid_view(&stack, "xb_notified", false).await;
    assert_eq!(
        view["settlement"],
        expected(&stack, "xb_notified"),
        "{view}"
    );
    assert_eq!(view["settlement"]["amount"], "14.04");

    // The notification lost: learned from the query.
    create_qr(&stack, "xb_queried", "33.33").await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    stack.simulator.pay("xb_queried", false).expect("pays");
    let view = paid_view(&stack, "xb_queried", true).await;
    assert_eq!(view["settlement"], expected(&stack, "xb_queried"), "{view}");
    assert_eq!(view["settlement"]["amount"], "4.68");
    // In the audit trail too.
    let trail = stack
        .env
        .store
        .audit_trail(&OutTradeNo::parse("xb_queried").expect("id"))
        .await
        .expect("audit");
    assert!(
        trail.iter().any(|e| e.kind == "order.paid"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("settled 4.68 USD at 0.140380 (CNY/USD")
                    && d.contains("the buyer paid 33.33 CNY at 1.000000"))),
        "{trail:?}"
    );

    // An agreement charge: asked in CNY, settled in USD; recorded from its answer.
    let tomorrow =
        alipay_sim::china_text(gateway::clock::now_ms() / 1000 + 86_400)[..10].to_owned();
    let created = stack
        .http
        .post_json(
            &stack.api("/subscriptions"),
            &json!({"subscription_id": "xbsub1", "subject": "Plan", "amount": "20.00",
                    "period_type": "DAY", "period": 7, "first_charge_date": tomorrow,
                    "total_payments": 2, "customer_ref": "cust_xb"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    // The buyer opens the signing page and signs.
    let url = created.json()["next_step"]["url"]
        .as_str()
        .expect("signing url")
        .to_owned();
    assert_eq!(stack.http.get(&url).await.status, 200);
    stack
        .simulator
        .sign_agreement("xbsub1", "2088102177840009", false)
        .expect("signs");
    eventually(20, || async {
        let got = stack.http.get(&stack.api("/subscriptions/xbsub1")).await;
        (got.json()["status"] == "active").then_some(())
    })
    .await
    .expect("active");
    let charge = eventually(20, || async {
        stack.sweep().await;
        stack.simulator.charges().into_iter().next()
    })
    .await
    .expect("charged");
    assert_eq!(charge.settle_currency.as_deref(), Some("USD"));
    let view = paid_view(&stack, &charge.out_trade_no, false).await;
    assert_eq!(
        view["settlement"],
        expected(&stack, &charge.out_trade_no),
        "{view}"
    );
    assert_eq!(view["settlement"]["amount"], "2.81");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_not_contracted_records_only_what_alipay_reports() {
    let stack = Stack::start().await;
    create_qr(&stack, "xb_plain", "100.00").await;
    stack.simulator.pay("xb_plain", false).expect("pays");
    let view = paid_view(&stack, "xb_plain", true).await;
    assert_eq!(view["settlement"], Value::Null, "{view}");
    // Contracted at Alipay but not configured here: Alipay reports, we record what it reports.
    stack.simulator.settle_in("USD", RATE);
    create_qr(&stack, "xb_reported", "10.00").await;
    stack.simulator.pay("xb_reported", false).expect("pays");
    let view = paid_view(&stack, "xb_reported", false).await;
    assert_eq!(view["settlement"]["amount"], "1.40", "{view}");
}
