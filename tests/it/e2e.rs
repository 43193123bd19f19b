//! End to end through real HTTP: the merchant API and the notify endpoint served from the
//! functions' handlers (routed as template.yaml routes them), DynamoDB and KMS on the local
//! stand-in, and the Alipay simulator speaking the protocol with its own key.

use std::collections::BTreeMap;

use alipay::ids::OutTradeNo;
use alipay_sim::{Fault, FaultKind};
use gateway_tests::chaos::proxy::{Contention, FaultProxy};
use gateway_tests::merchant::{
    audit_kinds, create, create_and_pay, payment, refund, refund_status, wait_for_status,
};
use gateway_tests::support::{
    APP_ID, REFUND_QUERY_DELAY_MS, RETURN_PREFIX, SELLER_ID, Stack, StackOptions, eventually,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_payment_from_cashier_to_paid() {
    let stack = Stack::start().await;
    let answer = create(&stack, "page_1", "299.00", "page").await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["payment"]["status"], "CREATED");
    assert_eq!(body["payment"]["amount"], "299.00");
    assert_eq!(body["next_step"]["type"], "redirect");
    let url = body["next_step"]["url"].as_str().expect("url");
    assert!(url.starts_with(&stack.simulator.gateway_url()), "{url}");

    // The buyer's browser opens the URL: the simulator checks our KMS signature first.
    let cashier = stack.http.get(url).await;
    assert_eq!(cashier.status, 200, "{}", cashier.text);
    assert!(
        cashier.text.contains("¥299.00") && cashier.text.contains("会员 Pro 年费 100% + more"),
        "{}",
        cashier.text
    );

    // The buyer presses Pay: Alipay redirects back to the shop and notifies the gateway.
    let paid = stack
        .http
        .post_form(
            &format!("{}/cashier/pay", stack.simulator.base_url()),
            "out_trade_no=page_1",
        )
        .await;
    assert_eq!(paid.status, 303, "{}", paid.text);
    let location = paid
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        location.starts_with(&format!("{RETURN_PREFIX}orders/page_1?")),
        "{location}"
    );

    let payment = wait_for_status(&stack, "page_1", "PAID").await;
    let trade = stack.simulator.trade("page_1").expect("trade");
    assert_eq!(payment["trade_no"], trade.trade_no.as_str());
    assert_eq!(payment["refundable_amount"], "299.00");

    // An identical repeat answers 200 with the same payment and no next step (already paid).
    let repeat = create(&stack, "page_1", "299.00", "page").await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(repeat.json()["payment"]["status"], "PAID");
    assert_eq!(repeat.json()["next_step"], Value::Null);
    // A different request with the same out_trade_no is a conflict.
    let conflict = create(&stack, "page_1", "1.00", "page").await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);
    assert_eq!(conflict.json()["error"]["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wap_app_and_qr_channels() {
    let stack = Stack::start().await;

    let wap = create(&stack, "wap_1", "0.01", "wap").await.json();
    let url = wap["next_step"]["url"].as_str().expect("url");
    assert!(url.contains("alipay.trade.wap.pay"));
    assert_eq!(stack.http.get(url).await.status, 200);
    stack.simulator.pay("wap_1", false).expect("pay");
    wait_for_status(&stack, "wap_1", "PAID").await;

    let app = create(&stack, "app_1", "18.80", "app").await;
    assert_eq!(app.status, 201, "{}", app.text);
    let order_string = app.json()["next_step"]["order_string"]
        .as_str()
        .expect("order string")
        .to_owned();
    // The Alipay app verifies the order string as the open platform would.
    let trade = stack
        .simulator
        .open_app_order(&order_string)
        .expect("the app accepts the order string");
    assert_eq!(trade.total_amount, "18.80");
    stack.simulator.pay("app_1", false).expect("pay");
    wait_for_status(&stack, "app_1", "PAID").await;

    let qr = create(&stack, "qr_1", "88.88", "qr").await;
    assert_eq!(qr.status, 201, "{}", qr.text);
    let qr_code = qr.json()["next_step"]["qr_code"]
        .as_str()
        .expect("qr")
        .to_owned();
    assert!(qr_code.starts_with(stack.simulator.base_url()), "{qr_code}");
    assert!(stack.http.get(&qr_code).await.text.contains("¥88.88"));
    stack.simulator.pay("qr_1", false).expect("pay");
    wait_for_status(&stack, "qr_1", "PAID").await;
    // The precreate answer was verified over its exact bytes (the simulator escapes slashes).
    assert!(
        stack
            .simulator
            .calls()
            .iter()
            .any(|(m, code)| m == "alipay.trade.precreate" && code == "10000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named_and_changes_nothing() {
    let stack = Stack::start().await;
    let cases = [
        (
            json!({"out_trade_no": "o-1", "amount": "1.00", "subject": "s", "channel": "qr"}),
            400,
            Some("out_trade_no"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": 1.0, "subject": "s", "channel": "qr"}),
            400,
            Some("amount"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.001", "subject": "s", "channel": "qr"}),
            400,
            Some("amount"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "0.00", "subject": "s", "channel": "qr"}),
            400,
            Some("amount"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "a/b", "channel": "qr"}),
            400,
            Some("subject"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "s", "channel": "cash"}),
            400,
            Some("channel"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "s", "channel": "page", "return_url": "https://evil.example.com/"}),
            400,
            Some("return_url"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "s", "channel": "qr", "time_expire": "2020-01-01 00:00:00"}),
            400,
            Some("time_expire"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "s", "channel": "qr", "cvv": "123"}),
            400,
            Some("cvv"),
        ),
        (
            json!({"amount": "1.00", "subject": "s", "channel": "qr"}),
            400,
            Some("out_trade_no"),
        ),
        // Currencies: an ISO code of our table, and amounts with at most its decimals.
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "currency": "usd", "subject": "s", "channel": "qr"}),
            400,
            Some("currency"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1.00", "currency": "XAU", "subject": "s", "channel": "qr"}),
            400,
            Some("currency"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1250.5", "currency": "JPY", "subject": "s", "channel": "qr"}),
            400,
            Some("amount"),
        ),
        (
            json!({"out_trade_no": "o_1", "amount": "1000.50", "currency": "IDR", "subject": "s", "channel": "qr"}),
            400,
            Some("amount"),
        ),
        // A currency no configured channel prices in (Alipay v1 channels take CNY only).
        (
            json!({"out_trade_no": "o_1", "amount": "12.50", "currency": "USD", "subject": "s", "channel": "qr"}),
            422,
            Some("currency"),
        ),
    ];
    for (body, status, field) in cases {
        let answer = stack.http.post_json(&stack.api("/payments"), &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        let error = &answer.json()["error"];
        assert_eq!(error["field"].as_str(), field, "{body}: {}", answer.text);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A valid body not sent as JSON: 415, nothing created (checked below for o_1).
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let answer = stack
            .http
            .send(
                "POST",
                &stack.api("/payments"),
                content_type,
                json!({"out_trade_no": "o_1", "amount": "1.00", "subject": "s", "channel": "qr"})
                    .to_string(),
            )
            .await;
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.text);
        assert_eq!(answer.json()["error"]["code"], "unsupported_media_type");
    }
    let not_json = stack
        .http
        .send(
            "POST",
            &stack.api("/payments"),
            "application/json",
            "{not json",
        )
        .await;
    assert_eq!(
        (not_json.status, not_json.json()["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let huge = stack
        .http
        .send(
            "POST",
            &stack.api("/payments"),
            "application/json",
            format!("{{\"subject\":\"{}\"}}", "x".repeat(20_000)),
        )
        .await;
    assert_eq!(huge.status, 413);
    assert_eq!(
        stack.http.get(&stack.api("/payments/nobody")).await.status,
        404
    );
    assert_eq!(
        stack.http.get(&stack.api("/payments/no-such")).await.status,
        400
    );
    assert_eq!(
        stack
            .http
            .send("DELETE", &stack.api("/payments/o_1"), "text/plain", "")
            .await
            .status,
        404
    );
    let refund_unknown = refund(
        &stack,
        "nobody",
        json!({"amount": "1.00", "out_request_no": "r_1"}),
    )
    .await;
    assert_eq!(refund_unknown.status, 404, "{}", refund_unknown.text);
    // Nothing above wrote an order.
    assert!(
        stack
            .env
            .store
            .get_order(&OutTradeNo::parse("o_1").expect("id"))
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_notifications_apply_once() {
    let stack = Stack::start().await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Duplicate,
        times: 1,
    });
    create_and_pay(&stack, "dup_1", "10.00").await;
    let acknowledged = eventually(60, || async {
        let deliveries = stack.simulator.deliveries();
        let delivery = deliveries.iter().find(|d| d.out_trade_no == "dup_1")?;
        (delivery.attempts.len() == 2).then(|| delivery.attempts.clone())
    })
    .await
    .expect("both copies answered");
    assert_eq!(
        acknowledged,
        ["HTTP 200 success", "HTTP 200 success"],
        "duplicates are acknowledged"
    );
    assert_eq!(
        audit_kinds(&stack, "dup_1").await,
        ["order.created", "order.paid"]
    );

    // TRADE_SUCCESS held back so TRADE_FINISHED arrives first: the order ends FINISHED.
    create(&stack, "order_2", "20.00", "qr").await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Hold,
        times: 1,
    });
    stack.simulator.pay("order_2", true).expect("pay");
    wait_for_status(&stack, "order_2", "FINISHED").await;
    stack.simulator.release_held();
    let all_acknowledged = eventually(60, || async {
        let deliveries = stack.simulator.deliveries();
        let mine: Vec<_> = deliveries
            .iter()
            .filter(|d| d.out_trade_no == "order_2")
            .collect();
        (mine.len() == 2 && mine.iter().all(|d| d.acknowledged)).then_some(())
    })
    .await;
    assert!(
        all_acknowledged.is_some(),
        "{:?}",
        stack.simulator.deliveries()
    );
    assert_eq!(payment(&stack, "order_2").await["status"], "FINISHED");
    assert_eq!(
        audit_kinds(&stack, "order_2").await,
        ["order.created", "order.finished"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_recovered_by_sync_and_a_late_one_changes_nothing() {
    let stack = Stack::start().await;
    create(&stack, "lost_1", "66.00", "qr").await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Hold,
        times: 1,
    });
    stack.simulator.pay("lost_1", false).expect("pay");
    // Before the notification: the order still waits, until the merchant asks for a sync.
    assert_eq!(payment(&stack, "lost_1").await["status"], "CREATED");
    let synced = stack
        .http
        .get(&stack.api("/payments/lost_1?sync=true"))
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(synced.json()["status"], "PAID");
    // The notification arrives after the query: acknowledged, nothing applied twice.
    stack.simulator.release_held();
    let delivered = eventually(60, || async {
        stack
            .simulator
            .deliveries()
            .iter()
            .find(|d| d.out_trade_no == "lost_1" && d.acknowledged)
            .map(|_| ())
    })
    .await;
    assert!(delivered.is_some());
    assert_eq!(
        audit_kinds(&stack, "lost_1").await,
        ["order.created", "order.paid"]
    );

    // A sync before the buyer did anything leaves the order as it is.
    create(&stack, "unpaid_1", "1.00", "page").await;
    let synced = stack
        .http
        .get(&stack.api("/payments/unpaid_1?sync=true"))
        .await;
    assert_eq!(
        (synced.status, synced.json()["status"].as_str()),
        (200, Some("CREATED"))
    );
}

fn notification_fields(
    trade: &alipay_sim::Trade,
    overrides: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = [
        ("notify_id", "2026000000000000000000000000000001"),
        ("notify_type", "trade_status_sync"),
        ("notify_time", "2026-11-26 18:30:05"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("buyer_id", "2088102534368455"),
        ("trade_no", trade.trade_no.as_str()),
        ("out_trade_no", trade.out_trade_no.as_str()),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", trade.total_amount.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        fields.insert((*k).to_owned(), (*v).to_owned());
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_mismatched_and_unknown_notifications_change_nothing() {
    let stack = Stack::start().await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    create(&stack, "victim_1", "500.00", "qr").await;
    // Paid at Alipay; its notification is lost, so the gateway still shows CREATED.
    let trade = stack.simulator.pay("victim_1", false).expect("pay");
    let post = |body: String| {
        let stack = &stack;
        async move { stack.http.post_form(&stack.gateway.notify_url, &body).await }
    };

    // Tampered after signing: the amount changed.
    let body = stack
        .simulator
        .sign_notification(&notification_fields(&trade, &[]));
    let tampered = body.replace("total_amount=500.00", "total_amount=5.00");
    assert_ne!(tampered, body);
    let answer = post(tampered).await;
    assert_eq!((answer.status, answer.text.as_str()), (400, "fail"));

    // Genuinely signed, but for another amount, another app, another seller.
    for (overrides, why) in [
        (vec![("total_amount", "5.00")], "amount"),
        (vec![("app_id", "2021999999999999")], "app_id"),
        (vec![("seller_id", "2088999999999999")], "seller_id"),
    ] {
        let answer = post(
            stack
                .simulator
                .sign_notification(&notification_fields(&trade, &overrides)),
        )
        .await;
        assert_eq!(
            (answer.status, answer.text.as_str()),
            (400, "fail"),
            "{why}"
        );
    }
    // Unknown order, downgraded sign type, garbage.
    let mut unknown = notification_fields(&trade, &[]);
    unknown.insert("out_trade_no".into(), "nobody".into());
    assert_eq!(
        post(stack.simulator.sign_notification(&unknown)).await.text,
        "fail"
    );
    assert_eq!(
        post(body.replace("sign_type=RSA2", "sign_type=RSA"))
            .await
            .text,
        "fail"
    );
    assert_eq!(post("hello".into()).await.text, "fail");

    assert_eq!(payment(&stack, "victim_1").await["status"], "CREATED");
    let kinds = audit_kinds(&stack, "victim_1").await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.as_str() == "alipay.report_refused")
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.as_str() == "notify.rejected")
            .count(),
        2,
        "{kinds:?}"
    );

    // The genuine notification still works afterwards.
    let answer = post(body).await;
    assert_eq!((answer.status, answer.text.as_str()), (200, "success"));
    assert_eq!(payment(&stack, "victim_1").await["status"], "PAID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_then_full_refund_and_refusals() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "refund_1", "299.00").await;

    let partial = refund(
        &stack,
        "refund_1",
        json!({"amount": "100.00", "reason": "退货", "out_request_no": "r_1"}),
    )
    .await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    assert_eq!(partial.json()["refund"]["status"], "SUCCEEDED");
    assert_eq!(partial.json()["refund"]["currency"], "CNY");
    let payment_now = payment(&stack, "refund_1").await;
    assert_eq!(
        (
            payment_now["refunded_amount"].as_str(),
            payment_now["refundable_amount"].as_str()
        ),
        (Some("100.00"), Some("199.00"))
    );

    // out_request_no is the merchant's idempotency key: without it nothing is reserved.
    let unnamed = refund(&stack, "refund_1", json!({"amount": "1.00"})).await;
    assert_eq!(
        (unnamed.status, unnamed.json()["error"]["field"].as_str()),
        (400, Some("out_request_no")),
        "{}",
        unnamed.text
    );
    let over = refund(
        &stack,
        "refund_1",
        json!({"amount": "199.01", "out_request_no": "r_over"}),
    )
    .await;
    assert_eq!(over.status, 422, "{}", over.text);
    assert_eq!(over.json()["error"]["code"], "amount_exceeds_refundable");
    assert_eq!(over.json()["error"]["field"], "amount");
    // A refund is in the payment's currency: saying another is refused, nothing reserved.
    let dollars = refund(
        &stack,
        "refund_1",
        json!({"amount": "1.00", "currency": "USD", "out_request_no": "r_usd"}),
    )
    .await;
    assert_eq!(
        (dollars.status, dollars.json()["error"]["code"].as_str()),
        (422, Some("currency_mismatch")),
        "{}",
        dollars.text
    );
    assert_eq!(dollars.json()["error"]["field"], "currency");

    stack.after_spacing().await;
    let full = refund(
        &stack,
        "refund_1",
        json!({"amount": "199.00", "out_request_no": "r_full"}),
    )
    .await;
    assert_eq!(full.status, 201, "{}", full.text);
    let generated = full.json()["refund"]["out_request_no"]
        .as_str()
        .expect("out_request_no")
        .to_owned();
    assert_eq!(generated, "r_full");
    let payment_now = payment(&stack, "refund_1").await;
    assert_eq!(payment_now["status"], "REFUNDED");
    assert_eq!(payment_now["refunds"].as_array().map(Vec::len), Some(2));

    // Retrying a finished refund answers it again without calling Alipay twice.
    let again = refund(
        &stack,
        "refund_1",
        json!({"amount": "100.00", "reason": "退货", "out_request_no": "r_1"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    let trade = stack.simulator.trade("refund_1").expect("trade");
    assert_eq!(trade.status, "TRADE_CLOSED");
    assert!(
        trade
            .refunds
            .iter()
            .all(|r| r.executions == 1 && r.requests == 1),
        "{:?}",
        trade.refunds
    );
    let fetched = stack
        .http
        .get(&stack.api(&format!("/payments/refund_1/refunds/{generated}")))
        .await;
    assert_eq!(
        (fetched.status, fetched.json()["refund"]["amount"].as_str()),
        (200, Some("199.00"))
    );

    let bad = refund(
        &stack,
        "refund_1",
        json!({"amount": "1.00", "out_request_no": "r 1"}),
    )
    .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("out_request_no"))
    );
    let unpaid = {
        create(&stack, "unpaid_2", "5.00", "qr").await;
        refund(
            &stack,
            "unpaid_2",
            json!({"amount": "1.00", "out_request_no": "u_1"}),
        )
        .await
    };
    assert_eq!(
        (unpaid.status, unpaid.json()["error"]["code"].as_str()),
        (422, Some("payment_not_refundable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_never_exceed_what_was_paid() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "race_1", "299.00").await;
    let asked = refund_race(&stack).await;
    assert_eq!(
        asked, 5,
        "Alipay was asked once per reservation, never for a refused one"
    );
}

/// The same race with the functions' DynamoDB behind a proxy that answers as DynamoDB does under
/// contention (transactions cancelled for conflicts, throttling): the merchant retries what is
/// answered 503, and still five refunds are reserved and five refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_never_exceed_what_was_paid_under_conflicts_and_throttling() {
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let proxy = FaultProxy::start(&moto, 17).await.expect("proxy");
    let stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        ..StackOptions::default()
    })
    .await;
    create_and_pay(&stack, "race_1", "299.00").await;
    proxy.set_contention(50);
    // A retried refund whose first answer was lost asks Alipay again with the same
    // out_request_no (Alipay executes it once): at least once per reservation.
    let asked = refund_race(&stack).await;
    assert!(asked >= 5, "Alipay asked {asked} times");
    let contended = proxy.contended();
    assert!(
        contended
            .get(&Contention::TransactionConflict)
            .copied()
            .unwrap_or(0)
            > 0,
        "conflicts happened: {contended:?}"
    );
}

/// Ten concurrent refunds of 50.00 against `race_1`, paid 299.00: five reserved (and, once the
/// sweeper has sent the spaced ones, succeeded at Alipay, each executed once), five refused by
/// the gateway with `amount_exceeds_refundable`. Answers 503 (the store busy) are retried as a
/// merchant would. Returns how many refund requests Alipay received.
async fn refund_race(stack: &Stack) -> usize {
    let attempts: Vec<_> = (0..10)
        .map(|n| {
            let http = stack.http.clone();
            let url = stack.api("/payments/race_1/refunds");
            tokio::spawn(async move {
                let body = json!({"amount": "50.00", "out_request_no": format!("race_{n}")});
                let mut answer = http.post_json(&url, &body).await;
                for _ in 0..30 {
                    if answer.status != 503 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    answer = http.post_json(&url, &body).await;
                }
                answer
            })
        })
        .collect();
    let mut reserved = Vec::new();
    let mut refusals = Vec::new();
    for attempt in attempts {
        let answer = attempt.await.expect("task");
        match answer.status {
            // Every answer after a reservation carries the refund.
            201 | 202 => reserved.push(
                answer.json()["refund"]["out_request_no"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no refund in {}", answer.text))
                    .to_owned(),
            ),
            _ => refusals.push((
                answer.status,
                answer.json()["error"]["code"].as_str().map(str::to_owned),
            )),
        }
    }
    // Five fit in 299.00; one is sent at once, the others wait for Alipay's spacing (202) and
    // the sweeper sends them. The other five are refused by the gateway itself, before Alipay.
    assert_eq!(
        reserved.len(),
        5,
        "reserved {reserved:?}, refused {refusals:?}"
    );
    assert_eq!(
        refusals,
        vec![(422, Some("amount_exceeds_refundable".to_owned())); 5]
    );
    stack.drain(60).await;
    let trade = stack.simulator.trade("race_1").expect("trade");
    // Alipay was asked for exactly the reserved refunds, each executed once, and moved exactly
    // what the gateway recorded.
    let mut asked: Vec<_> = trade
        .refunds
        .iter()
        .map(|r| r.out_request_no.clone())
        .collect();
    asked.sort();
    reserved.sort();
    assert_eq!(asked, reserved);
    assert!(trade.refunds.iter().all(|r| r.executions == 1));
    assert_eq!(
        trade.refunded_fen, 25_000,
        "Alipay moved exactly what the gateway recorded"
    );
    for out_request_no in &reserved {
        let answer = refund_status(stack, "race_1", out_request_no).await;
        assert_eq!(answer["refund"]["status"], "SUCCEEDED", "{answer}");
    }
    let payment_now = payment(stack, "race_1").await;
    assert_eq!(
        (
            payment_now["refunded_amount"].as_str(),
            payment_now["refundable_amount"].as_str()
        ),
        (Some("250.00"), Some("49.00"))
    );
    trade.refund_requests_ms.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_refund_stays_pending_and_its_retry_executes_once() {
    let stack = Stack::start_with_timeout_ms(2_000).await;
    create_and_pay(&stack, "slow_1", "80.00").await;
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::TimeoutAfterExecute,
        times: 1,
    });
    // Without the refund notification (which would settle it), only the retry can.
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    let body = json!({"amount": "30.00", "out_request_no": "slow_r1"});
    let first = refund(&stack, "slow_1", body.clone()).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.json()["refund"]["status"], "PENDING");
    assert!(first.headers.contains_key("retry-after"));
    assert_eq!(
        payment(&stack, "slow_1").await["refundable_amount"],
        "50.00",
        "the reservation holds"
    );

    let retry = refund(&stack, "slow_1", body).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json()["refund"]["status"], "SUCCEEDED");
    let trade = stack.simulator.trade("slow_1").expect("trade");
    let record = trade
        .refunds
        .iter()
        .find(|r| r.out_request_no == "slow_r1")
        .expect("refund at Alipay");
    assert_eq!(
        (record.executions, record.requests),
        (1, 1),
        "the retry asked Alipay (refund query) instead of sending again; money moved once"
    );
    assert_eq!(payment(&stack, "slow_1").await["refunded_amount"], "30.00");

    // ACQ.SYSTEM_ERROR: pending, then the retry succeeds; GET ?sync=true settles a pending one.
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::SystemError,
        times: 1,
    });
    stack.after_spacing().await;
    let body = json!({"amount": "10.00", "out_request_no": "slow_r2"});
    assert_eq!(refund(&stack, "slow_1", body.clone()).await.status, 202);
    // The retry asks first (Alipay has no such refund), then sends the same request again.
    stack.after_spacing().await;
    assert_eq!(refund(&stack, "slow_1", body).await.status, 200);
    stack.after_spacing().await;

    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::TimeoutAfterExecute,
        times: 1,
    });
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    assert_eq!(
        refund(
            &stack,
            "slow_1",
            json!({"amount": "5.00", "out_request_no": "slow_r3"})
        )
        .await
        .status,
        202
    );
    let pending = stack
        .http
        .get(&stack.api("/payments/slow_1/refunds/slow_r3"))
        .await;
    assert_eq!(pending.json()["refund"]["status"], "PENDING");
    let synced = stack
        .http
        .get(&stack.api("/payments/slow_1/refunds/slow_r3?sync=true"))
        .await;
    assert_eq!(
        synced.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        synced.text
    );
    let payment_now = payment(&stack, "slow_1").await;
    assert_eq!(
        (
            payment_now["refunded_amount"].as_str(),
            payment_now["refundable_amount"].as_str()
        ),
        (Some("45.00"), Some("35.00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_refusal_releases_the_reservation_and_an_untrusted_answer_does_not() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "done_1", "40.00").await;
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::SellerBalanceNotEnough,
        times: 1,
    });
    let refused = refund(
        &stack,
        "done_1",
        json!({"amount": "10.00", "out_request_no": "poor_1"}),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let body = refused.json();
    assert_eq!(body["error"]["code"], "ACQ.SELLER_BALANCE_NOT_ENOUGH");
    assert_eq!(body["refund"]["status"], "FAILED");
    assert_eq!(
        payment(&stack, "done_1").await["refundable_amount"],
        "40.00",
        "the reservation was released"
    );

    // A signed-looking answer whose signature fails proves nothing: the refund stays pending
    // (its money stays reserved) until a query settles it.
    stack.after_spacing().await;
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::BadSignature,
        times: 1,
    });
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    let untrusted = refund(
        &stack,
        "done_1",
        json!({"amount": "1.00", "out_request_no": "bad_sig"}),
    )
    .await;
    assert_eq!(untrusted.status, 202, "{}", untrusted.text);
    assert_eq!(
        payment(&stack, "done_1").await["refundable_amount"],
        "39.00"
    );
    // Asked sooner than the query delay after the send, `?sync=true` leaves it to the send that
    // is in flight (as a POST retry does): nothing is asked of Alipay.
    let calls = stack.simulator.calls().len();
    let soon = stack
        .http
        .get(&stack.api("/payments/done_1/refunds/bad_sig?sync=true"))
        .await;
    assert_eq!(
        (
            soon.json()["refund"]["status"].as_str(),
            soon.json()["pending_reason"]["code"].as_str()
        ),
        (Some("PENDING"), Some("refund_processing")),
        "{}",
        soon.text
    );
    assert_eq!(stack.simulator.calls().len(), calls, "Alipay was not asked");
    tokio::time::sleep(std::time::Duration::from_millis(REFUND_QUERY_DELAY_MS)).await;
    let synced = stack
        .http
        .get(&stack.api("/payments/done_1/refunds/bad_sig?sync=true"))
        .await;
    assert_eq!(
        synced.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        synced.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_notification_settles_a_pending_refund() {
    let stack = Stack::start_with_timeout_ms(2_000).await;
    create_and_pay(&stack, "note_1", "12.00").await;
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::TimeoutAfterExecute,
        times: 1,
    });
    let pending = refund(
        &stack,
        "note_1",
        json!({"amount": "2.00", "out_request_no": "note_r1"}),
    )
    .await;
    assert_eq!(pending.status, 202, "{}", pending.text);
    // Alipay's TRADE_SUCCESS notification carrying refund_fee and out_biz_no=note_r1 settles it.
    let settled = eventually(60, || async {
        let answer = stack
            .http
            .get(&stack.api("/payments/note_1/refunds/note_r1"))
            .await;
        (answer.json()["refund"]["status"] == "SUCCEEDED").then_some(())
    })
    .await;
    assert!(settled.is_some());
    assert_eq!(payment(&stack, "note_1").await["refunded_amount"], "2.00");
    assert!(
        audit_kinds(&stack, "note_1")
            .await
            .contains(&"refund.succeeded".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_notification_is_retried_on_alipays_schedule() {
    let stack = Stack::start().await;
    create(&stack, "retry_1", "9.00", "qr").await;
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::BadNotifySignature,
        times: 1,
    });
    stack.simulator.pay("retry_1", false).expect("pay");
    // Scaled 1:2000, the 0s, 4m, 10m, 10m, 1h schedule is 0, 120, 420, 720, 2520 ms.
    let attempts = eventually(60, || async {
        let deliveries = stack.simulator.deliveries();
        let delivery = deliveries.iter().find(|d| d.out_trade_no == "retry_1")?;
        (delivery.attempts.len() >= 5).then(|| delivery.clone())
    })
    .await
    .expect("five deliveries");
    assert!(!attempts.acknowledged);
    assert!(
        attempts.attempts.iter().all(|a| a == "HTTP 400 fail"),
        "{:?}",
        attempts.attempts
    );
    assert_eq!(
        payment(&stack, "retry_1").await["status"],
        "CREATED",
        "a bad signature changes nothing"
    );
}
