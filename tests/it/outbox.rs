//! Merchant events through the real path on the stand-in: the table's stream (moto's), read as
//! Lambda's event source mapping reads it, the publisher's handler, moto's EventBridge bus and
//! a rule to an SQS queue. What arrives in the queue is what a merchant's rule would receive.

use std::collections::{BTreeMap, BTreeSet};

use alipay_sim::{Fault, FaultKind};
use gateway_tests::merchant::{
    create, create_and_pay, paid_after_close, payment, refund, refused_refund,
};
use gateway_tests::support::{Stack, eventually};
use serde_json::{Value, json};

/// The detail-types of the events about `out_trade_no`, in the order they arrived.
fn types_of(events: &[Value], out_trade_no: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            let detail = &e["detail"];
            detail["payment"]["out_trade_no"] == out_trade_no
                || detail["refund"]["out_trade_no"] == out_trade_no
        })
        .map(|e| e["detail-type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn last_of<'a>(events: &'a [Value], detail_type: &str, out_trade_no: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|e| {
            e["detail-type"] == detail_type
                && e["detail"]["payment"]["out_trade_no"] == out_trade_no
        })
        .unwrap_or_else(|| panic!("no {detail_type} for {out_trade_no}: {events:#?}"))
}

async fn acknowledged(stack: &Stack, out_trade_no: &str, copies: usize) {
    let done = eventually(60, || async {
        let deliveries = stack.simulator.deliveries();
        let delivery = deliveries.iter().find(|d| d.out_trade_no == out_trade_no)?;
        (delivery.attempts.len() >= copies).then_some(())
    })
    .await;
    assert!(done.is_some(), "{:?}", stack.simulator.deliveries());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_one_event_carrying_the_resource_as_the_api_shows_it() {
    let stack = Stack::start().await;
    let mut path = stack.events_path().await;

    // Paid, with the notification delivered twice at once.
    stack.simulator.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Duplicate,
        times: 1,
    });
    create_and_pay(&stack, "ev_1", "100.00").await;
    acknowledged(&stack, "ev_1", 2).await;
    // Refunded in two parts: the second makes it REFUNDED.
    let first = refund(
        &stack,
        "ev_1",
        json!({"amount": "30.00", "out_request_no": "ev_1_r1"}),
    )
    .await;
    assert_eq!(
        first.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        first.text
    );
    stack.after_spacing().await;
    let second = refund(
        &stack,
        "ev_1",
        json!({"amount": "70.00", "out_request_no": "ev_1_r2"}),
    )
    .await;
    assert_eq!(
        second.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        second.text
    );
    // A refund Alipay refuses.
    create_and_pay(&stack, "ev_2", "20.00").await;
    refused_refund(&stack, "ev_2", "5.00", "ev_2_r1").await;
    // Closed unpaid; then paid by a buyer who still held the URL (paid after close).
    paid_after_close(&stack, "ev_3", "9.00").await;

    let events = path.events().await.expect("events");
    assert_eq!(
        types_of(&events, "ev_1"),
        [
            "payment.created",
            "payment.paid",
            "refund.created",
            "refund.succeeded",
            "refund.created",
            "refund.succeeded",
            "payment.refunded"
        ],
        "one event per change, none for the duplicate notification: {events:#?}"
    );
    assert_eq!(
        types_of(&events, "ev_2"),
        [
            "payment.created",
            "payment.paid",
            "refund.created",
            "refund.failed"
        ]
    );
    let ev_3 = types_of(&events, "ev_3");
    assert_eq!(
        ev_3[..3],
        [
            "payment.created",
            "payment.closed",
            "payment.paid_after_close"
        ],
        "{ev_3:?}"
    );

    // The envelope, and the detail: the payment exactly as GET /payments/{id} shows it.
    for event in &events {
        assert_eq!(event["source"], "alipay-gateway");
        assert_eq!(event["detail-type"], event["detail"]["type"]);
        assert!(
            event["detail"]["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_") && id.len() == 36),
            "{event}"
        );
    }
    let ids: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["detail"]["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "every event id is unique");
    let mut shown = payment(&stack, "ev_1").await;
    let refunds = shown.as_object_mut().and_then(|o| o.remove("refunds"));
    assert_eq!(
        last_of(&events, "payment.refunded", "ev_1")["detail"]["payment"],
        shown
    );
    let refund_succeeded = events
        .iter()
        .find(|e| {
            e["detail-type"] == "refund.succeeded"
                && e["detail"]["refund"]["out_request_no"] == "ev_1_r2"
        })
        .expect("refund event");
    let shown_refund = refunds
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|all| all.iter().find(|r| r["out_request_no"] == "ev_1_r2"))
        .expect("refund shown");
    assert_eq!(&refund_succeeded["detail"]["refund"], shown_refund);
    let failed_event = events
        .iter()
        .find(|e| e["detail-type"] == "refund.failed")
        .expect("failed event");
    assert_eq!(
        failed_event["detail"]["refund"]["failure_code"],
        "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    );
    let after_close = last_of(&events, "payment.paid_after_close", "ev_3");
    assert_eq!(after_close["detail"]["payment"]["paid_after_close"], true);

    // Nothing changed since: nothing more.
    assert_eq!(path.events().await.expect("events"), Vec::<Value>::new());

    // Published again (a retried batch, a replay from the stream's start): the same ids, so a
    // merchant that de-duplicates on event_id sees each change once.
    let mut again = stack.events_path().await;
    let replayed = again.events().await.expect("events");
    let replayed_ids: BTreeSet<&str> = replayed
        .iter()
        .filter_map(|e| e["detail"]["event_id"].as_str())
        .collect();
    assert_eq!(replayed_ids, ids);
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_inputs_publish_nothing_and_concurrent_refunds_one_event_each() {
    let stack = Stack::start().await;
    let mut path = stack.events_path().await;
    create_and_pay(&stack, "ref_1", "299.00").await;
    assert_eq!(
        types_of(&path.events().await.expect("events"), "ref_1"),
        ["payment.created", "payment.paid"]
    );

    // Refused: a bad body, a refund above what is refundable, a refund of an unknown payment,
    // a forged notification, a repeat of the create.
    let bad = stack
        .http
        .post_json(
            &stack.api("/payments"),
            &json!({"out_trade_no": "ref_2", "amount": "1.001", "subject": "x", "channel": "qr"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let too_much = refund(
        &stack,
        "ref_1",
        json!({"amount": "300.00", "out_request_no": "ref_1_big"}),
    )
    .await;
    assert_eq!(too_much.status, 422, "{}", too_much.text);
    let unknown = refund(
        &stack,
        "nobody",
        json!({"amount": "1.00", "out_request_no": "n_1"}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let mut fields = BTreeMap::new();
    for (k, v) in [
        ("out_trade_no", "ref_1"),
        ("trade_no", "2026112722001400000000000001"),
        ("trade_status", "TRADE_FINISHED"),
        ("total_amount", "299.00"),
        ("app_id", gateway_tests::support::APP_ID),
        ("seller_id", gateway_tests::support::SELLER_ID),
        ("notify_id", "forged"),
    ] {
        fields.insert(k.to_owned(), v.to_owned());
    }
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &fields {
        body.append_pair(k, v);
    }
    body.append_pair("sign_type", "RSA2");
    body.append_pair("sign", "Zm9yZ2Vk");
    let forged = stack
        .http
        .post_form(&stack.gateway.notify_url, &body.finish())
        .await;
    assert_ne!(forged.text, "success");
    let repeat = create(&stack, "ref_1", "299.00", "qr").await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(
        path.events().await.expect("events"),
        Vec::<Value>::new(),
        "no event for a refused input"
    );

    // Ten refunds at once, five fit: five reservations, five confirmations, nothing else.
    let attempts: Vec<_> = (0..10)
        .map(|n| {
            let http = stack.http.clone();
            let url = stack.api("/payments/ref_1/refunds");
            tokio::spawn(async move {
                http.post_json(
                    &url,
                    &json!({"amount": "50.00", "out_request_no": format!("ref_1_{n}")}),
                )
                .await
            })
        })
        .collect();
    for attempt in attempts {
        attempt.await.expect("task");
    }
    stack.drain(20).await;
    let events = path.events().await.expect("events");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for kind in types_of(&events, "ref_1") {
        *counts.entry(kind).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("refund.created".to_owned(), 5),
            ("refund.succeeded".to_owned(), 5)
        ]),
        "{events:#?}"
    );
    let refunded: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["detail-type"] == "refund.succeeded")
        .filter_map(|e| e["detail"]["refund"]["out_request_no"].as_str())
        .collect();
    let at_alipay = stack.simulator.trade("ref_1").expect("trade");
    assert_eq!(
        refunded.len() as u64 * 5_000,
        at_alipay.refunded_fen,
        "the events tell what Alipay moved"
    );
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_published_is_retried_and_nothing_is_lost_or_skipped() {
    let stack = Stack::start().await;
    let mut path = stack.events_path().await;
    let bus = path.publisher.bus.clone();
    create_and_pay(&stack, "retry_1", "8.00").await;
    // EventBridge refuses (no such bus): the publisher reports the first record as failed.
    path.publisher.bus = "no-such-bus".into();
    let pumped = path.pump().await.expect("pump");
    assert_eq!((pumped.published, pumped.retries), (0, 1), "{pumped:?}");
    create(&stack, "retry_2", "3.00", "qr").await;
    assert_eq!(path.received().await.expect("queue"), Vec::<Value>::new());
    // EventBridge is back: the batch is read again from the failed record, and the later
    // change follows it, in order.
    path.publisher.bus = bus;
    let events = path.events().await.expect("events");
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["detail"]["payment"]["out_trade_no"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                e["detail-type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("retry_1".to_owned(), "payment.created".to_owned()),
            ("retry_1".to_owned(), "payment.paid".to_owned()),
            ("retry_2".to_owned(), "payment.created".to_owned()),
        ]
    );
    stack.env.drop_table().await;
}

/// `events/publish-changes.json`: a batch recorded from the stand-in's stream (a payment made,
/// paid and refunded in part, audit entries filtered out as the template's filter does), as
/// Lambda delivers it; `cargo lambda invoke publisher --data-file` takes the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_stream_batch_publishes_its_four_changes() {
    let env = gateway_tests::support::TestEnv::new().await;
    let name = format!("events-{}", uuid::Uuid::new_v4().simple());
    let path = local_stack::events_path::EventsPath::create(&env.sdk_config, &env.table, &name)
        .await
        .expect("path");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/publish-changes.json"),
    )
    .expect("recorded event");
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_str(&text).expect("a DynamoDB stream event");
    let records = publisher::records_of(event);
    assert_eq!(records.len(), 8);
    let outcome = publisher::publish(&path.publisher, &records).await;
    assert_eq!(
        (
            outcome.published,
            outcome.skipped,
            outcome.retry_from.clone()
        ),
        (4, 4, None)
    );
    assert!(outcome.response().batch_item_failures.is_empty());
    let events = path.received().await.expect("queue");
    assert_eq!(
        types_of(&events, "order_1001"),
        [
            "payment.created",
            "payment.paid",
            "refund.created",
            "refund.succeeded"
        ]
    );
    env.drop_table().await;
}
