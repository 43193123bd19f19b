//! Fraud checks end to end: each rule refusing (422, its code, an audit entry, no payment, no
//! event) and letting through just below its limit; counters on the stand-in's DynamoDB; paid
//! payments flagged, never refused.
//!
//! Called as production calls the API: by the merchant's backend, from one address (the
//! stack's own client), every buyer's IP in the request's `buyer_ip`, never the connection's.

use gateway_tests::merchant::{audit_kinds, payment_body, wait_for_status};
use gateway_tests::support::{Stack, StackOptions};
use local_stack::template::{read_template, template_path};
use serde_json::{Value, json};

const RULES: &str = r#"{
  "customer": {"per_hour": {"count": 2}, "per_day": {"amount": "100.00"}},
  "ip": {"per_hour": {"count": 4}, "max_customers_per_day": 2},
  "virtual_goods_max_amount": "60.00",
  "blocked_customers": ["cust_blocked"],
  "blocked_ips": ["198.51.100.9", "198.51.101.0/24"],
  "after_payment": {"buyer_max_customers": 1, "history_factor": 3, "history_min_payments": 2}
}"#;

async fn stack(rules: &str) -> Stack {
    Stack::start_custom(StackOptions {
        alipay_timeout_ms: 3_000,
        aws_endpoint: None,
        risk_rules: Some(rules.to_owned()),
        ..StackOptions::default()
    })
    .await
}

/// The merchant's backend, creating payments for buyers at `buyer_ip` (or saying nothing of
/// the buyer's IP).
struct Client<'a> {
    stack: &'a Stack,
    buyer_ip: Option<&'a str>,
}

impl<'a> Client<'a> {
    fn for_buyer(stack: &'a Stack, buyer_ip: &'a str) -> Client<'a> {
        Client {
            stack,
            buyer_ip: Some(buyer_ip),
        }
    }

    fn without_ip(stack: &'a Stack) -> Client<'a> {
        Client {
            stack,
            buyer_ip: None,
        }
    }

    /// Creates a QR payment; the status and the body.
    async fn create(&self, no: &str, amount: &str, extra: Value) -> (u16, Value) {
        let mut body = payment_body(no, amount, "qr");
        if let Some(body) = body.as_object_mut() {
            if let Some(ip) = self.buyer_ip {
                body.insert("buyer_ip".into(), json!(ip));
            }
            if let Some(extra) = extra.as_object() {
                body.extend(extra.clone());
            }
        }
        let answer = self
            .stack
            .http
            .post_json(&self.stack.api("/payments"), &body)
            .await;
        (answer.status, answer.json())
    }

    /// The rule that refused `no`, after checking that nothing was created and the refusal was
    /// audited; `None` when it was created.
    async fn refused_by(&self, no: &str, amount: &str, extra: Value) -> Option<String> {
        let (status, body) = self.create(no, amount, extra).await;
        if status == 201 {
            return None;
        }
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "risk_refused", "{body}");
        let shown = self
            .stack
            .http
            .get(&self.stack.api(&format!("/payments/{no}")))
            .await;
        assert_eq!(
            shown.status, 404,
            "a refused create made nothing: {}",
            shown.text
        );
        assert_eq!(audit_kinds(self.stack, no).await, ["order.refused"]);
        body["error"]["rule"].as_str().map(str::to_owned)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_refuses_at_its_limit_and_lets_through_below_it() {
    let stack = stack(RULES).await;
    let mut path = stack.events_path().await;
    let customer = |c: &str| json!({ "customer_ref": c });

    // Per customer, per hour: two payments, not three (from different IPs: the customer's).
    let a = Client::for_buyer(&stack, "203.0.113.2");
    let b = Client::for_buyer(&stack, "203.0.113.3");
    assert_eq!(a.refused_by("h_1", "1.00", customer("cust_a")).await, None);
    assert_eq!(b.refused_by("h_2", "1.00", customer("cust_a")).await, None);
    assert_eq!(
        a.refused_by("h_3", "1.00", customer("cust_a"))
            .await
            .as_deref(),
        Some("customer_hourly_count")
    );
    // A repeat of a created payment answers it and counts nothing.
    for _ in 0..3 {
        assert_eq!(a.create("h_1", "1.00", customer("cust_a")).await.0, 200);
    }

    // Per customer, per day, in amount: 100.00 in all (physical goods: no ceiling).
    let physical = |c: &str| json!({ "customer_ref": c, "goods_type": "physical" });
    let c = Client::for_buyer(&stack, "203.0.113.4");
    assert_eq!(c.refused_by("d_1", "60.00", physical("cust_b")).await, None);
    assert_eq!(
        c.refused_by("d_2", "40.01", physical("cust_b"))
            .await
            .as_deref(),
        Some("customer_daily_amount")
    );
    assert_eq!(c.refused_by("d_3", "40.00", physical("cust_b")).await, None);

    // Virtual goods (the default) up to 60.00 a payment.
    let d = Client::for_buyer(&stack, "203.0.113.5");
    assert_eq!(
        d.refused_by("v_1", "60.01", customer("cust_c"))
            .await
            .as_deref(),
        Some("virtual_goods_ceiling")
    );
    assert_eq!(d.refused_by("v_2", "60.00", customer("cust_c")).await, None);

    // Block lists: a customer, an IP, a range.
    assert_eq!(
        d.refused_by("bl_1", "1.00", customer("cust_blocked"))
            .await
            .as_deref(),
        Some("customer_blocked")
    );
    let blocked = Client::for_buyer(&stack, "198.51.100.9");
    assert_eq!(
        blocked
            .refused_by("bl_2", "1.00", json!({}))
            .await
            .as_deref(),
        Some("ip_blocked")
    );
    let in_range = Client::for_buyer(&stack, "198.51.101.77");
    assert_eq!(
        in_range
            .refused_by("bl_3", "1.00", json!({}))
            .await
            .as_deref(),
        Some("ip_blocked")
    );

    // Per IP, per hour: four payments, not five (no customer ref needed); the IPv4-mapped IPv6
    // form of an address counts as the address.
    let e = Client::for_buyer(&stack, "203.0.113.6");
    let e_mapped = Client::for_buyer(&stack, "::ffff:203.0.113.6");
    for n in 0..4 {
        let client = if n == 3 { &e_mapped } else { &e };
        assert_eq!(
            client
                .refused_by(&format!("ip_{n}"), "1.00", json!({}))
                .await,
            None
        );
    }
    assert_eq!(
        e.refused_by("ip_4", "1.00", json!({})).await.as_deref(),
        Some("ip_hourly_count")
    );

    // Many customers from one IP: two a day; a known one may come back.
    let f = Client::for_buyer(&stack, "2001:db8::7");
    assert_eq!(f.refused_by("mc_1", "1.00", customer("cust_x")).await, None);
    assert_eq!(f.refused_by("mc_2", "1.00", customer("cust_y")).await, None);
    assert_eq!(
        f.refused_by("mc_3", "1.00", customer("cust_z"))
            .await
            .as_deref(),
        Some("ip_many_customers")
    );
    assert_eq!(f.refused_by("mc_4", "1.00", customer("cust_x")).await, None);

    // A bad customer_ref or goods_type is a 400 naming the field.
    let (status, body) = f
        .create("bad_1", "1.00", json!({"customer_ref": "a b"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("customer_ref"))
    );
    let (status, body) = f
        .create("bad_2", "1.00", json!({"goods_type": "gift"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("goods_type"))
    );
    for bad_ip in ["127.0.0", "0.0.0.0", "203.0.113.7/32", "shop.example.com"] {
        let (status, body) = Client::for_buyer(&stack, bad_ip)
            .create("bad_3", "1.00", json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some("buyer_ip")),
            "{bad_ip}: {body}"
        );
    }

    // Events: one payment.created per payment created, none for a refusal.
    let events = path.events().await.expect("events");
    let mut created: Vec<&str> = events
        .iter()
        .filter(|e| e["detail-type"] == "payment.created")
        .filter_map(|e| e["detail"]["payment"]["out_trade_no"].as_str())
        .collect();
    created.sort_unstable();
    assert_eq!(
        created,
        [
            "d_1", "d_3", "h_1", "h_2", "ip_0", "ip_1", "ip_2", "ip_3", "mc_1", "mc_2", "mc_4",
            "v_2"
        ]
    );
    assert_eq!(events.len(), created.len());
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_payment_that_trips_a_rule_is_recorded_and_flagged() {
    let stack = stack(
        r#"{"after_payment": {"buyer_max_customers": 1, "history_factor": 3, "history_min_payments": 2}}"#,
    )
    .await;
    let mut path = stack.events_path().await;
    let client = Client::for_buyer(&stack, "203.0.113.2");
    let buyer = "2088102146225135";
    let pay = |no: &'static str| {
        let stack = &stack;
        async move {
            stack.simulator.pay_as(no, buyer).expect("pay");
            wait_for_status(stack, no, "PAID").await
        }
    };
    // A customer's first two payments build its history; nothing flagged.
    for (no, amount) in [("f_1", "10.00"), ("f_2", "10.00")] {
        let (status, body) = client
            .create(no, amount, json!({"customer_ref": "cust_f"}))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["payment"]["customer_ref"], "cust_f");
        let paid = pay(no).await;
        assert_eq!(
            (&paid["risk"]["flagged"], &paid["risk"]["rules"]),
            (&json!(false), &json!([]))
        );
    }
    // 30.00 is three times the average (10.00): allowed; then the average is 16.66..., and
    // 50.01 is above three times it.
    client
        .create("f_3", "30.00", json!({"customer_ref": "cust_f"}))
        .await;
    assert_eq!(pay("f_3").await["risk"]["flagged"], false);
    client
        .create("f_4", "50.01", json!({"customer_ref": "cust_f"}))
        .await;
    let flagged = pay("f_4").await;
    assert_eq!(
        (
            flagged["status"].as_str(),
            &flagged["risk"]["flagged"],
            &flagged["risk"]["rules"]
        ),
        (Some("PAID"), &json!(true), &json!(["amount_above_history"])),
        "recorded, and flagged"
    );
    // The same buyer paying for a second customer.
    client
        .create("g_1", "5.00", json!({"customer_ref": "cust_g"}))
        .await;
    let second = pay("g_1").await;
    assert_eq!(second["risk"]["rules"], json!(["buyer_many_customers"]));
    assert!(
        audit_kinds(&stack, "g_1")
            .await
            .contains(&"order.paid".to_owned()),
        "the payment is recorded"
    );

    // The flag travels with the payment's event.
    let events = path.events().await.expect("events");
    let paid_event = events
        .iter()
        .find(|e| {
            e["detail-type"] == "payment.paid" && e["detail"]["payment"]["out_trade_no"] == "f_4"
        })
        .expect("event");
    assert_eq!(paid_event["detail"]["payment"]["risk"]["flagged"], true);
    // A payment without a customer ref is not judged.
    client
        .create("n_1", "99.00", json!({"goods_type": "physical"}))
        .await;
    assert_eq!(pay("n_1").await["risk"]["flagged"], false);
    stack.env.drop_table().await;
}

/// The API is called by the merchant's backend, so the connection's address is the shop's own:
/// IP rules that would refuse it (its loopback address blocked, two payments an hour) refuse
/// nothing when the merchant says nothing of the buyer's IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_own_address_is_never_counted() {
    let stack = stack(
        r#"{"ip": {"per_hour": {"count": 2}, "max_customers_per_day": 1},
            "blocked_ips": ["127.0.0.0/8", "::1"]}"#,
    )
    .await;
    let shop = Client::without_ip(&stack);
    for n in 0..5 {
        let (status, body) = shop
            .create(
                &format!("own_{n}"),
                "1.00",
                json!({ "customer_ref": format!("cust_{n}") }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // What the merchant says of the buyer is what counts.
    let buyer = Client::for_buyer(&stack, "127.0.0.8");
    let (status, body) = buyer.create("own_b", "1.00", json!({})).await;
    assert_eq!(
        (status, body["error"]["rule"].as_str()),
        (422, Some("ip_blocked")),
        "{body}"
    );
    stack.env.drop_table().await;
}

/// With the template's default rules, a shop sells all day from its one backend address: 200
/// payments created as fast as it asks (8 at a time), none refused, none failed; a customer is
/// still limited to 10 an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_default_rules_let_a_shop_sell_and_still_limit_a_customer() {
    let template = read_template(&template_path()).expect("template");
    let defaults = template["Parameters"]["RiskRules"]["Default"]
        .as_str()
        .expect("RiskRules' default in template.yaml")
        .to_owned();
    let stack = stack(&defaults).await;
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for batch in 0..25 {
        let mut creates = tokio::task::JoinSet::new();
        for n in 0..8 {
            let (http, url) = (stack.http.clone(), stack.api("/payments"));
            let body = payment_body(&format!("shop_{batch}_{n}"), "18.00", "qr");
            creates.spawn(async move { http.post_json(&url, &body).await.status });
        }
        while let Some(status) = creates.join_next().await {
            *statuses.entry(status.expect("task")).or_insert(0u32) += 1;
        }
    }
    println!(
        "200 payments from one address: {statuses:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(statuses, std::collections::BTreeMap::from([(201, 200)]));

    let regular = Client::without_ip(&stack);
    for n in 0..10 {
        let (status, body) = regular
            .create(
                &format!("regular_{n}"),
                "5.00",
                json!({"customer_ref": "cust_regular"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(
        regular
            .refused_by(
                "regular_10",
                "5.00",
                json!({"customer_ref": "cust_regular"})
            )
            .await
            .as_deref(),
        Some("customer_hourly_count")
    );
    stack.env.drop_table().await;
}
