//! The table "AWS round trips per route" in docs/performance.md, measured: each route is called once through
//! the functions with a counting proxy in front of the stand-in (every DynamoDB and KMS request
//! passes it) and the simulator's call log (every Alipay call), and the counts must equal the
//! table's row. So the table cannot drift from what the code does.
//!
//! A row's cell is read up to its first parenthesis: `1 GetItem + 1 TransactWriteItems (+1 …
//! when …)` means exactly one GetItem and one TransactWriteItems in the case measured here; the
//! parenthesis names the other cases.

use std::collections::BTreeMap;

use gateway_tests::chaos::proxy::FaultProxy;
use gateway_tests::merchant::{close, create, refund, wait_for_status};
use gateway_tests::round_trips::{Meter, parse_cell};
use gateway_tests::support::{Stack, StackOptions, eventually};
use serde_json::json;

/// Waits until Alipay's `count`th notification about `out_trade_no` was acknowledged.
async fn delivered(stack: &Stack, out_trade_no: &str, count: usize) {
    eventually(60, || async {
        (stack
            .simulator
            .deliveries()
            .iter()
            .filter(|d| d.out_trade_no == out_trade_no && d.acknowledged)
            .count()
            >= count)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{out_trade_no}: notification {count} was not delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_costs_what_the_readme_says() {
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let proxy = FaultProxy::start(&moto, 1).await.expect("counting proxy");
    // The template's default fraud rules: a create with a customer and a buyer IP adds to their
    // counters; one without either counts nothing.
    let template = local_stack::template::read_template(&local_stack::template::template_path())
        .expect("template");
    let rules = template["Parameters"]["RiskRules"]["Default"]
        .as_str()
        .expect("RiskRules' default")
        .to_owned();
    let stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        // The breaker's shared state is read once (below, while warming up), not again within the test.
        // The risk rule set likewise (read by the warm-up's create).
        env: vec![
            ("BREAKER_SYNC_MS".into(), "60000".into()),
            ("RISK_RULES_CACHE_MS".into(), "600000".into()),
        ],
        certificates: false,
        risk_rules: Some(rules),
        ..StackOptions::default()
    })
    .await;
    let mut meter = Meter {
        stack,
        proxy,
        alipay_seen: 0,
    };

    // Warm-up: each function that calls Alipay reads the breaker's shared state once.
    let warm = create(&meter.stack, "rt_warm", "1.00", "qr").await;
    assert_eq!(warm.status, 201, "{}", warm.text);
    meter.stack.simulator.pay("rt_warm", false).expect("pay");
    wait_for_status(&meter.stack, "rt_warm", "PAID").await;
    let warm = refund(
        &meter.stack,
        "rt_warm",
        json!({"amount": "0.10", "out_request_no": "rt_warm_r"}),
    )
    .await;
    assert_eq!(warm.status, 201, "{}", warm.text);
    delivered(&meter.stack, "rt_warm", 2).await;
    let stack = &meter.stack;
    let _ = stack
        .http
        .get(&stack.api("/payments/rt_warm?sync=true"))
        .await;

    meter.reset();
    let page = create(&meter.stack, "rt_page", "10.00", "page").await;
    assert_eq!(page.status, 201, "{}", page.text);
    meter.check(&["`POST /payments` page/wap/app"]);

    let qr = create(&meter.stack, "rt_qr", "20.00", "qr").await;
    assert_eq!(qr.status, 201, "{}", qr.text);
    meter.check(&["`POST /payments` qr"]);

    let mut counted = gateway_tests::merchant::payment_body("rt_counted", "10.00", "page");
    counted["customer_ref"] = json!("cust_rt");
    counted["buyer_ip"] = json!("203.0.113.9");
    let stack = &meter.stack;
    let answer = stack
        .http
        .post_json(&stack.api("/payments"), &counted)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    meter.check(&["`POST /payments` page/wap/app with `customer_ref` and `buyer_ip`"]);

    let repeat = create(&meter.stack, "rt_qr", "20.00", "qr").await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    meter.check(&["repeat of `POST /payments`"]);

    let stack = &meter.stack;
    let got = stack.http.get(&stack.api("/payments/rt_qr")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    meter.check(&["`GET /payments/{id}`"]);

    let stack = &meter.stack;
    let synced = stack
        .http
        .get(&stack.api("/payments/rt_qr?sync=true"))
        .await;
    assert_eq!(synced.json()["status"], "CREATED", "{}", synced.text);
    meter.check(&["`GET ...?sync=true` (unpaid)"]);

    let closed = close(&meter.stack, "rt_page").await;
    assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    meter.check(&["`POST /payments/{id}/close`"]);

    // Alipay's notification of the payment, through the notify function (from the buyer's
    // balance: the refund below moves money in the call).
    let balance = alipay_sim::Payer {
        fund_channel: Some(alipay_sim::BALANCE.into()),
        ..alipay_sim::Payer::default()
    };
    meter
        .stack
        .simulator
        .pay_with("rt_qr", &balance)
        .expect("pay");
    delivered(&meter.stack, "rt_qr", 1).await;
    meter.check(&["notify (payment)"]);

    let refunded = refund(
        &meter.stack,
        "rt_qr",
        json!({"amount": "5.00", "out_request_no": "rt_qr_r1"}),
    )
    .await;
    assert_eq!(
        refunded.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        refunded.text
    );
    // Alipay notifies the refund too (settled already by the answer: nothing to write).
    delivered(&meter.stack, "rt_qr", 2).await;
    meter.check(&["`POST .../refunds`", "notify (refund)"]);

    let stack = &meter.stack;
    let got = stack
        .http
        .get(&stack.api("/payments/rt_qr/refunds/rt_qr_r1"))
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    meter.check(&["`GET .../refunds/{no}`"]);

    // Subscriptions (a charge run is measured in tests/it/subscriptions.rs, on the test clock).
    let first = format!(
        "{}05",
        &alipay_sim::china_text(gateway::clock::now_ms() / 1000 + 40 * 86_400)[..8]
    );
    let body = json!({"subscription_id": "rtsub1", "subject": "Plan", "amount": "25.00",
                      "period_type": "MONTH", "period": 1, "first_charge_date": first});
    // Warm-up: the subscriptions function reads the breaker's shared state once.
    let mut warm = body.clone();
    warm["subscription_id"] = json!("rtsubwarm");
    let stack = &meter.stack;
    let warmed = stack
        .http
        .post_json(&stack.api("/subscriptions"), &warm)
        .await;
    assert_eq!(warmed.status, 201, "{}", warmed.text);
    meter.reset();
    let stack = &meter.stack;
    let created = stack
        .http
        .post_json(&stack.api("/subscriptions"), &body)
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    meter.check(&["`POST /subscriptions`"]);
    let stack = &meter.stack;
    let got = stack.http.get(&stack.api("/subscriptions/rtsub1")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    meter.check(&["`GET /subscriptions/{id}`"]);
}

#[test]
fn cells_are_read_up_to_their_parenthesis() {
    let cell = parse_cell("1 GetItem + 1 TransactWriteItems (+1 BatchGetItem when …)");
    assert_eq!(
        cell,
        BTreeMap::from([("GetItem".into(), 1), ("TransactWriteItems".into(), 1)])
    );
    assert!(parse_cell("–").is_empty());
    assert_eq!(
        parse_cell("1 Sign while unpaid"),
        BTreeMap::from([("Sign".into(), 1)])
    );
    assert_eq!(
        parse_cell("3 TransactWriteItems (reserve; claim; settle)")["TransactWriteItems"],
        3
    );
}
