//! Risk decisions end to end, through the merchant API as production calls it (one address,
//! what it says about the buyer in the body), against the stand-in's DynamoDB and the
//! simulator: each decision at its boundary and not below it, in the fixed order; shadow rules
//! journaled and never acted on; holds released and cancelled; a step-up that the simulated
//! Alipay enforces on the payer; a rule set changed without a deploy, a bad one refused with
//! the last good kept; list entries that end; a streaming signal blocking the next create.

use std::time::Instant;

use domain::decisions::{Action, ListKind};
use gateway_tests::merchant::{audit_kinds, payment_body, wait_for_status};
use gateway_tests::support::{Stack, StackOptions};
use serde_json::{Value, json};
use store::JournalOf;

const RULES: &str = r#"{
  "after_payment": {"buyer_max_customers": 10},
  "rules": [
    {"id": "huge_block", "action": "block", "when": {"amount_at_least": "5000.00"}},
    {"id": "trusted_device", "action": "allow", "when": {"has_device": true, "amount_at_least": "0.01"}},
    {"id": "big_step_up", "action": "step_up", "when": {"amount_at_least": "1000.00", "virtual_goods": true}},
    {"id": "big_review", "action": "review", "when": {"amount_at_least": "500.00"}},
    {"id": "try_lower_review", "action": "review", "mode": "shadow", "when": {"amount_at_least": "300.00"}},
    {"id": "shared_buyer", "action": "block", "when": {"signal": {"name": "buyer_customers", "at_least": 3}}}
  ],
  "step_up": {"min_age": 21}
}"#;

async fn stack() -> Stack {
    Stack::start_custom(StackOptions {
        alipay_timeout_ms: 3_000,
        risk_rules: Some(RULES.to_owned()),
        // Every create asks the table for the rule set (a change shows at once).
        env: vec![("RISK_RULES_CACHE_MS".into(), "0".into())],
        ..StackOptions::default()
    })
    .await
}

async fn create(
    stack: &Stack,
    no: &str,
    amount: &str,
    channel: &str,
    extra: Value,
) -> (u16, Value) {
    let mut body = payment_body(no, amount, channel);
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = stack.http.post_json(&stack.api("/payments"), &body).await;
    (answer.status, answer.json())
}

/// The decision of a created payment, as the API shows it: (outcome, rule, hold).
fn shown(body: &Value) -> (String, Value, Value) {
    let risk = &body["payment"]["risk"];
    (
        risk["decision"]["outcome"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        risk["decision"]["rule"].clone(),
        risk["hold"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decision_at_its_boundary_in_the_fixed_order_and_shadow_rules_never_act() {
    let stack = stack().await;
    let customer = json!({"customer_ref": "cust_d1"});

    // Below every rule: allowed, nothing held; 299.99 is below the shadow rule too.
    let (status, body) = create(&stack, "dc_allow", "299.99", "page", customer.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(shown(&body), ("allow".into(), Value::Null, Value::Null));

    // The shadow rule matches at 300.00: journaled, never acted on.
    let (status, body) = create(&stack, "dc_shadow", "300.00", "page", customer.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(shown(&body), ("allow".into(), Value::Null, Value::Null));
    let journal = stack
        .env
        .store
        .journal(&JournalOf::Rule("try_lower_review".into()), 10)
        .await
        .expect("journal");
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0].out_trade_no, "dc_shadow");
    assert!(
        !journal[0].enforced,
        "a shadow rule's line says it did not act"
    );
    assert_eq!(journal[0].decision.outcome, Action::Allow);
    assert_eq!(journal[0].decision.shadow[0].action, Action::Review);

    // Review at 500.00, not at 499.99; the hold is shown, released once, then 409.
    let (_, body) = create(&stack, "dc_499", "499.99", "page", customer.clone()).await;
    assert_eq!(shown(&body).0, "allow");
    let (status, body) = create(&stack, "dc_review", "500.00", "page", customer.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        shown(&body),
        ("review".into(), json!("big_review"), json!("held"))
    );
    let released = stack
        .http
        .post_json(&stack.api("/payments/dc_review/release"), &json!({}))
        .await;
    assert_eq!(released.status, 200, "{}", released.text);
    assert_eq!(released.json()["risk"]["hold"], "released");
    let again = stack
        .http
        .post_json(&stack.api("/payments/dc_review/release"), &json!({}))
        .await;
    assert_eq!(
        again.status, 200,
        "a repeat answers the released payment: {}",
        again.text
    );
    let never = stack
        .http
        .post_json(&stack.api("/payments/dc_allow/release"), &json!({}))
        .await;
    assert_eq!(never.status, 409, "{}", never.text);
    let kinds = audit_kinds(&stack, "dc_review").await;
    assert!(kinds.contains(&"order.released".to_owned()), "{kinds:?}");

    // A held payment cancelled unpaid is closed at Alipay and here.
    let (_, body) = create(&stack, "dc_cancel", "600.00", "qr", customer.clone()).await;
    assert_eq!(shown(&body).2, json!("held"));
    let cancelled = stack
        .http
        .post_json(&stack.api("/payments/dc_cancel/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.json()["status"], "CLOSED");
    assert_eq!(cancelled.json()["risk"]["hold"], "cancelled");
    assert_eq!(
        stack.simulator.trade("dc_cancel").map(|t| t.status),
        Some("TRADE_CLOSED".into())
    );

    // Step-up at 1000.00 (virtual goods, page): before review in the order. The signed request
    // carries ext_user_info, and the simulated Alipay stops a payer under 21.
    let (_, body) = create(&stack, "dc_999", "999.99", "page", customer.clone()).await;
    assert_eq!(shown(&body).0, "review");
    let (status, body) = create(&stack, "dc_step", "1000.00", "page", customer.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(shown(&body).0, "step_up");
    assert_eq!(body["payment"]["risk"]["step_up"]["min_age"], 21);
    let url = body["next_step"]["url"].as_str().expect("url");
    let cashier = stack.http.get(url).await;
    assert_eq!(
        cashier.status, 200,
        "the cashier opens the signed URL: {}",
        cashier.text
    );
    let young = alipay_sim::Payer {
        age: Some(20),
        ..alipay_sim::Payer::default()
    };
    let refused = stack.simulator.pay_with("dc_step", &young);
    assert!(refused.is_err(), "a 20-year-old cannot pay: {refused:?}");
    let adult = alipay_sim::Payer {
        age: Some(21),
        ..alipay_sim::Payer::default()
    };
    stack
        .simulator
        .pay_with("dc_step", &adult)
        .expect("21 may pay");
    wait_for_status(&stack, "dc_step", "PAID").await;
    // Physical goods are not stepped up: the review applies.
    let physical = json!({"customer_ref": "cust_d1", "goods_type": "physical"});
    let (_, body) = create(&stack, "dc_phys", "1000.00", "page", physical).await;
    assert_eq!(shown(&body).0, "review");
    // QR cannot carry the check: held for review instead.
    let (_, body) = create(&stack, "dc_qr_step", "1000.00", "qr", customer.clone()).await;
    assert_eq!(
        shown(&body),
        ("review".into(), json!("big_step_up"), json!("held"))
    );

    // A trusted device skips step-up and review, never a block.
    let device = json!({"customer_ref": "cust_d1", "device_fingerprint": "dev-trusted-1"});
    let (_, body) = create(&stack, "dc_dev", "4999.99", "page", device.clone()).await;
    assert_eq!(
        shown(&body),
        ("allow".into(), json!("trusted_device"), Value::Null)
    );
    let (status, body) = create(&stack, "dc_dev_block", "5000.00", "page", device).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["rule"], "huge_block");
    assert_eq!(audit_kinds(&stack, "dc_dev_block").await, ["order.refused"]);
    let journal = stack
        .env
        .store
        .journal(&JournalOf::Rule("huge_block".into()), 10)
        .await
        .expect("journal");
    assert_eq!(journal[0].out_trade_no, "dc_dev_block");
    assert!(journal[0].enforced);
    // Per customer: every decision of cust_d1, the newest first.
    let mine = stack
        .env
        .store
        .journal(&JournalOf::Customer("cust_d1".into()), 50)
        .await
        .expect("journal");
    assert_eq!(
        mine.len(),
        11,
        "{:?}",
        mine.iter().map(|l| &l.out_trade_no).collect::<Vec<_>>()
    );
    assert_eq!(mine[0].out_trade_no, "dc_dev_block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_set_changes_without_a_deploy_and_a_bad_one_is_refused_with_the_last_good_kept() {
    let stack = stack().await;
    let store = &stack.env.store;
    let now = gateway::clock::now_ms();
    let (_, body) = create(&stack, "rs_v0", "150.00", "page", json!({})).await;
    assert_eq!(body["payment"]["risk"]["decision"]["rule_set_version"], 0);

    let v1 = r#"{"rules": [{"id": "over_100", "action": "block", "when": {"amount_at_least": "100.00"}}]}"#;
    assert_eq!(store.put_rule_set(v1, 0, "test", now).await.expect("v1"), 1);
    let (status, body) = create(&stack, "rs_v1", "150.00", "page", json!({})).await;
    assert_eq!(
        (status, body["error"]["rule"].clone()),
        (422, json!("over_100")),
        "{body}"
    );

    // Version 2 does not parse (written past alipay-cli's check): refused, version 1 stays.
    let bad = r#"{"rules": [{"id": "over_100", "action": "hold", "when": {}}]}"#;
    assert!(domain::risk::Rules::parse(bad).is_err());
    assert_eq!(
        store.put_rule_set(bad, 1, "test", now).await.expect("v2"),
        2
    );
    let (status, body) = create(&stack, "rs_v2", "150.00", "page", json!({})).await;
    assert_eq!(
        (status, body["error"]["rule"].clone()),
        (422, json!("over_100")),
        "{body}"
    );
    let journal = store
        .journal(&JournalOf::Rule("over_100".into()), 1)
        .await
        .expect("journal");
    assert_eq!(journal[0].out_trade_no, "rs_v2");
    assert_eq!(
        journal[0].decision.version, 1,
        "decided by the last good version"
    );
    let (status, _) = create(&stack, "rs_small", "99.99", "page", json!({})).await;
    assert_eq!(status, 201);

    // A good version 3 takes over.
    assert_eq!(
        store.put_rule_set("{}", 2, "test", now).await.expect("v3"),
        3
    );
    let (status, body) = create(&stack, "rs_v3", "150.00", "page", json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["payment"]["risk"]["decision"]["rule_set_version"], 3);
    // Someone else's version in between: a put on a stale version is refused.
    assert!(store.put_rule_set("{}", 2, "late", now).await.is_err());

    // The after-payment checks follow the version in force too (version 0 flags a buyer of
    // more than 10 customers; version 4, of more than 1).
    let v4 = r#"{"after_payment": {"buyer_max_customers": 1}}"#;
    assert_eq!(store.put_rule_set(v4, 3, "test", now).await.expect("v4"), 4);
    let buyer = "2088000000000444";
    let mut paid = Vec::new();
    // One after the other: the second is judged on the first's recorded payment.
    for (no, customer) in [("rs_p1", "cust_p1"), ("rs_p2", "cust_p2")] {
        let (status, body) =
            create(&stack, no, "5.00", "qr", json!({"customer_ref": customer})).await;
        assert_eq!(status, 201, "{body}");
        stack.simulator.pay_as(no, buyer).expect("pay");
        paid.push(wait_for_status(&stack, no, "PAID").await);
    }
    assert_eq!(paid[0]["risk"]["flagged"], false, "{}", paid[0]);
    let second = &paid[1];
    assert_eq!(
        second["risk"]["rules"],
        json!(["buyer_many_customers"]),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_entries_decide_and_end_and_a_streaming_signal_blocks_the_next_create() {
    let stack = stack().await;
    let store = &stack.env.store;
    let now = gateway::clock::now_ms();

    // A time-limited block of one IP; an ended entry decides nothing.
    store
        .put_list_entry(
            ListKind::Ip,
            "198.51.100.20",
            Action::Block,
            Some(now + 60_000),
            "carding",
            "ops",
            now,
        )
        .await
        .expect("list");
    store
        .put_list_entry(
            ListKind::Ip,
            "198.51.100.21",
            Action::Block,
            Some(now - 1),
            "ended",
            "ops",
            now,
        )
        .await
        .expect("list");
    let (status, body) = create(
        &stack,
        "ls_1",
        "1.00",
        "qr",
        json!({"buyer_ip": "198.51.100.20"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["rule"].clone()),
        (422, json!("list_ip")),
        "{body}"
    );
    let (status, _) = create(
        &stack,
        "ls_2",
        "1.00",
        "qr",
        json!({"buyer_ip": "198.51.100.21"}),
    )
    .await;
    assert_eq!(status, 201);
    // A device's block entry blocks even what the trusted_device rule allows (block first).
    store
        .put_list_entry(
            ListKind::Device,
            "dev-x",
            Action::Block,
            None,
            "chargebacks",
            "ops",
            now,
        )
        .await
        .expect("list");
    let (status, body) = create(
        &stack,
        "ls_3",
        "1.00",
        "qr",
        json!({"device_fingerprint": "dev-x"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["rule"].clone()),
        (422, json!("list_device")),
        "{body}"
    );
    // A customer's review entry holds the payment.
    store
        .put_list_entry(
            ListKind::Customer,
            "cust_listed",
            Action::Review,
            None,
            "disputes",
            "ops",
            now,
        )
        .await
        .expect("list");
    let (_, body) = create(
        &stack,
        "ls_4",
        "1.00",
        "qr",
        json!({"customer_ref": "cust_listed"}),
    )
    .await;
    assert_eq!(
        shown(&body),
        ("review".into(), json!("list_customer"), json!("held"))
    );
    let trail = store.risk_admin_trail().await.expect("trail");
    assert_eq!(trail.len(), 4);
    assert!(trail.iter().all(|e| e.kind == "risk.list_put"));
    assert!(
        !format!("{trail:?}").contains("198.51.100.20"),
        "the audit shows a hint, never the value"
    );

    // One Alipay buyer pays for three customers: the stream tells the signals function, which
    // raises each customer's buyer_customers; the next create of any of them is blocked.
    let mut path = stack.events_path().await;
    let buyer = "2088000000000777";
    for (no, customer) in [
        ("sg_1", "cust_s1"),
        ("sg_2", "cust_s2"),
        ("sg_3", "cust_s3"),
    ] {
        let (status, _) =
            create(&stack, no, "10.00", "qr", json!({"customer_ref": customer})).await;
        assert_eq!(status, 201);
        stack.simulator.pay_as(no, buyer).expect("pay");
        wait_for_status(&stack, no, "PAID").await;
    }
    let paid = Instant::now();
    let mut blocked = None;
    let mut n = 0;
    while blocked.is_none() && paid.elapsed().as_secs() < 30 {
        path.pump().await.expect("pump");
        n += 1;
        let (status, body) = create(
            &stack,
            &format!("sg_next_{n}"),
            "1.00",
            "qr",
            json!({"customer_ref": "cust_s1"}),
        )
        .await;
        if status == 422 {
            blocked = Some(body);
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let blocked = blocked.expect("the signal blocked the next create within 30 s");
    assert_eq!(blocked["error"]["rule"], "shared_buyer", "{blocked}");
    println!(
        "streaming signal: the next create blocked {} ms after the third payment was recorded",
        paid.elapsed().as_millis()
    );
    // Another customer of nobody's is untouched.
    let (status, _) = create(
        &stack,
        "sg_other",
        "1.00",
        "qr",
        json!({"customer_ref": "cust_s9"}),
    )
    .await;
    assert_eq!(status, 201);
}
