//! The store under DynamoDB's contention, which the stand-in (one request at a time) never
//! produces: a proxy in front of it (`chaos::proxy`) cancels transactions that meet another write
//! in flight (`TransactionConflict`) and throttles (`ThrottlingException`,
//! `ProvisionedThroughputExceededException`, transactions cancelled for `ThrottlingError` or
//! `ProvisionedThroughputExceeded`), as DynamoDB does.
//!
//! 1. Scripted: each answer, a few times in a row, is absorbed by the store's retries (the
//!    payment applies, counted at the proxy); one more than it retries and the caller gets a
//!    retryable error with nothing written.
//! 2. Fifty concurrent payments and fifty concurrent refunds through the proxy with conflicts and
//!    throttling on: the callers retry what the store could not finish (as Alipay redelivers and
//!    merchants retry), and still exactly one payment applies and the refunds never exceed what
//!    was paid.
//! 3. Hot fraud counters: concurrent creates for one buyer IP, and for one customer, through the
//!    API with conflicts on: none ends in a 503.

use domain::states::OrderStatus;
use gateway_tests::chaos::proxy::{Contention, FaultProxy};
use gateway_tests::merchant::payment_body;
use gateway_tests::store_cases::{
    created_order, fifty_payments, fifty_refunds, id, notify, paid_order, payment,
};
use gateway_tests::support::{Stack, StackOptions, TestEnv, now_ms, sdk_via};
use store::{Store, StoreError, Transition};

/// How many times the store tries a transaction (`TRANSACTION_ATTEMPTS` in the store).
const STORE_ATTEMPTS: usize = 5;
/// How many times the SDK tries a throttled request (`gateway::aws`'s retry configuration).
const SDK_ATTEMPTS: usize = 3;

async fn through_proxy(env: &TestEnv, seed: u64) -> (FaultProxy, Store) {
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let proxy = FaultProxy::start(&moto, seed).await.expect("proxy");
    let client = aws_sdk_dynamodb::Client::new(&sdk_via(env, &proxy.url));
    let store = Store::new(client, &env.table);
    (proxy, store)
}

#[tokio::test]
async fn each_contention_answer_is_retried_by_the_store_and_too_many_change_nothing() {
    let env = TestEnv::new().await;
    let (proxy, store) = through_proxy(&env, 7).await;
    let cases = [
        (Contention::TransactionConflict, STORE_ATTEMPTS - 1),
        (Contention::TransactionThrottled, STORE_ATTEMPTS - 1),
        (Contention::TransactionOverCapacity, STORE_ATTEMPTS - 1),
        (Contention::Throttling, SDK_ATTEMPTS - 1),
        (Contention::ProvisionedThroughputExceeded, SDK_ATTEMPTS - 1),
    ];
    for (n, (answer, times)) in cases.into_iter().enumerate() {
        let no = format!("contended_{n}");
        created_order(&env, &no, "88.88").await;
        proxy.take_requests();
        proxy.script("DynamoDB.TransactWriteItems", &vec![answer; times]);
        let paid = store
            .mark_paid(&id(&no), &payment("88.88", false), &notify(1), now_ms())
            .await;
        assert!(
            matches!(paid, Ok(Transition::Applied(_))),
            "{answer:?} × {times}: {paid:?}"
        );
        assert_eq!(
            proxy
                .take_requests()
                .get("DynamoDB.TransactWriteItems")
                .copied(),
            Some(times as u64 + 1),
            "{answer:?}: tried again until it went through"
        );
    }
    // One conflict more than the store retries: a retryable error, and nothing written.
    created_order(&env, "contended_out", "88.88").await;
    proxy.script(
        "DynamoDB.TransactWriteItems",
        &[Contention::TransactionConflict; STORE_ATTEMPTS],
    );
    let paid = store
        .mark_paid(
            &id("contended_out"),
            &payment("88.88", false),
            &notify(1),
            now_ms(),
        )
        .await;
    assert_eq!(paid.map(|t| t.applied()), Err(StoreError::Throttled));
    let order = env
        .store
        .get_order(&id("contended_out"))
        .await
        .expect("get")
        .expect("order");
    assert_eq!((order.status, order.version), (OrderStatus::Created, 1));
}

fn assert_contended(proxy: &FaultProxy) {
    let contended = proxy.contended();
    let conflicts = contended
        .get(&Contention::TransactionConflict)
        .copied()
        .unwrap_or(0);
    let throttles: u64 = contended
        .iter()
        .filter(|(kind, _)| **kind != Contention::TransactionConflict)
        .map(|(_, n)| n)
        .sum();
    assert!(
        conflicts > 0 && throttles > 0,
        "contention happened: {contended:?}"
    );
    eprintln!("contention answered: {contended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_payments_apply_exactly_once_under_conflicts_and_throttling() {
    let env = TestEnv::new().await;
    let (proxy, store) = through_proxy(&env, 11).await;
    created_order(&env, "contended_paid", "88.88").await;
    proxy.set_contention(50);
    let (applied, duplicates, retried) = fifty_payments(&store, "contended_paid").await;
    assert_eq!((applied, duplicates), (1, 49));
    assert_contended(&proxy);
    eprintln!("callers retried {retried} times");
    let trail = env
        .store
        .audit_trail(&id("contended_paid"))
        .await
        .expect("audit");
    assert_eq!(trail.iter().filter(|e| e.kind == "order.paid").count(), 1);
    let order = env
        .store
        .get_order(&id("contended_paid"))
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (order.status, order.version),
        (OrderStatus::Paid, 2),
        "one write after creation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refunds_never_exceed_the_payment_under_conflicts_and_throttling() {
    let env = TestEnv::new().await;
    let (proxy, store) = through_proxy(&env, 13).await;
    paid_order(&env, "contended_refund", "299.00").await;
    proxy.set_contention(50);
    let (reserved, refused, retried) = fifty_refunds(&store, "contended_refund").await;
    eprintln!("callers retried {retried} times");
    assert_eq!(
        (reserved, refused),
        (29_000, 21),
        "29 × 10.00 fit in 299.00"
    );
    assert_contended(&proxy);
    let (order, refunds) = env
        .store
        .get_order_with_refunds(&id("contended_refund"))
        .await
        .expect("query")
        .expect("order");
    assert_eq!(order.refundable.minor(), 900);
    assert_eq!(refunds.len(), 29);
    assert_eq!(
        refunds.iter().map(|r| r.amount.minor()).sum::<u64>(),
        29_000
    );
}

/// Concurrent creates that all add to one fraud counter (one buyer IP behind a NAT, one busy
/// customer), with the functions' DynamoDB behind the contention proxy (writes in flight
/// conflict as on DynamoDB; no throttling, so only conflicts could fail them): every one is
/// created, none answered 503. The counters are single-item writes, which DynamoDB serializes;
/// inside the order's transaction they cancelled each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_on_one_hot_counter_all_succeed() {
    const CONCURRENT: usize = 25;
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let proxy = FaultProxy::start(&moto, 23).await.expect("proxy");
    let stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        risk_rules: Some(
            r#"{"customer": {"per_hour": {"count": 1000}},
                "ip": {"per_hour": {"count": 1000}, "max_customers_per_day": 1000}}"#
                .into(),
        ),
        ..StackOptions::default()
    })
    .await;
    proxy.set_contention(0);
    for (round, (what, extra)) in [
        (
            "one buyer IP",
            serde_json::json!({"buyer_ip": "203.0.113.50"}),
        ),
        (
            "one customer",
            serde_json::json!({"customer_ref": "cust_hot"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut creates = tokio::task::JoinSet::new();
        for n in 0..CONCURRENT {
            let (http, url) = (stack.http.clone(), stack.api("/payments"));
            let mut body = payment_body(&format!("hot_{round}_{n}"), "1.00", "page");
            if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                body.extend(extra.clone());
            }
            creates.spawn(async move { http.post_json(&url, &body).await.status });
        }
        let mut statuses = std::collections::BTreeMap::new();
        while let Some(status) = creates.join_next().await {
            *statuses.entry(status.expect("task")).or_insert(0u32) += 1;
        }
        eprintln!(
            "{CONCURRENT} concurrent creates for {what}: {statuses:?}; contention answered {:?}",
            proxy.contended()
        );
        assert_eq!(
            statuses,
            std::collections::BTreeMap::from([(201, CONCURRENT as u32)]),
            "{what}"
        );
    }
    stack.env.drop_table().await;
}
