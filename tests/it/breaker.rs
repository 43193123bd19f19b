//! The circuit breaker against a real outage of the simulated Alipay: detection after the
//! configured failures, new payments moving to the second channel while refunds and queries
//! of existing orders stay on theirs (refused at once, kept PENDING), fail-fast answers that make
//! no call, recovery through trial calls, and no opening on business refusals.
//!
//! The functions of the stack are separate instances (each its own `Gateway`, own breaker
//! copy): what one instance trips, the others see through the table only.

use std::time::{Duration, Instant};

use alipay::ids::OutTradeNo;
use alipay_sim::{Fault, FaultKind, Simulator};
use domain::channel::ChannelId;
use gateway_tests::merchant::{audit_kinds, create, payment, refund, wait_for_status};
use gateway_tests::support::{
    APP_ID, APP_ID_2, SELLER_ID, SELLER_ID_2, Stack, StackOptions, eventually,
};
use serde_json::json;

/// Small numbers, so that a test sees every phase in seconds.
const MIN_CALLS: u64 = 4;
const FAILURE_PERCENT: u64 = 50;
const SYNC_MS: u64 = 200;

fn breaker_env() -> Vec<(String, String)> {
    [
        ("BREAKER_MIN_CALLS", MIN_CALLS.to_string()),
        ("BREAKER_FAILURE_PERCENT", FAILURE_PERCENT.to_string()),
        ("BREAKER_WINDOW_SECONDS", "60".to_owned()),
        ("BREAKER_COOL_DOWN_SECONDS", "1".to_owned()),
        ("BREAKER_TRIAL_CALLS", "2".to_owned()),
        ("BREAKER_SYNC_MS", SYNC_MS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn stack(secondary: bool, alipay_timeout_ms: u64) -> Stack {
    Stack::start_custom(StackOptions {
        alipay_timeout_ms,
        secondary,
        env: breaker_env(),
        ..StackOptions::default()
    })
    .await
}

/// Calls of `method` the simulator answered (or failed) so far.
fn calls_of(simulator: &Simulator, method: &str) -> usize {
    simulator
        .calls()
        .iter()
        .filter(|(m, _)| m == method)
        .count()
}

/// Failed calls after `successes` good ones that open the channel: the first `n` with
/// `successes + n >= MIN_CALLS` and `n / (successes + n) >= FAILURE_PERCENT`.
fn failures_to_open(successes: u64) -> u64 {
    (1..)
        .find(|n| successes + n >= MIN_CALLS && n * 100 >= FAILURE_PERCENT * (successes + n))
        .unwrap_or(MIN_CALLS)
}

async fn state(stack: &Stack, channel: ChannelId) -> domain::breaker::Phase {
    stack
        .env
        .store
        .breaker_state(channel)
        .await
        .expect("breaker state")
        .0
}

/// Waits out the sync interval: every instance reads the shared state again on its next call.
async fn after_sync() {
    tokio::time::sleep(Duration::from_millis(SYNC_MS + 50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_moves_new_payments_to_the_second_channel_and_nothing_else() {
    let stack = stack(true, 1_500).await;
    let secondary = stack.secondary.clone().expect("second channel");

    // A payment on the primary channel while it is healthy (one good call).
    let paid = create(&stack, "br_paid", "50.00", "qr").await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.json()["payment"]["alipay_channel"], "primary");
    stack.simulator.pay("br_paid", false).expect("pay");
    wait_for_status(&stack, "br_paid", "PAID").await;
    // The refund function (another instance) has read the channel's state: closed.
    let early = refund(
        &stack,
        "br_paid",
        json!({"amount": "5.00", "out_request_no": "br_paid_r0"}),
    )
    .await;
    assert_eq!(early.status, 201, "{}", early.text);
    stack.after_spacing().await;

    // The primary application fails every call with ACQ.SYSTEM_ERROR.
    stack
        .simulator
        .outage(FaultKind::SystemError, Duration::from_secs(120))
        .expect("outage");
    // The create instance's own good call counts; the refund instance's success is still in
    // its memory (shared at its next call, a second later at most).
    let expected = failures_to_open(1);
    let mut on_primary = 0;
    let mut moved = None;
    for i in 0..10 {
        let no = format!("br_{i}");
        let answer = create(&stack, &no, "10.00", "qr").await;
        if answer.status == 201 {
            moved = Some((no, answer));
            break;
        }
        assert_eq!(
            answer.json()["error"]["code"],
            "ACQ.SYSTEM_ERROR",
            "{}",
            answer.text
        );
        on_primary += 1;
    }
    // Detection: exactly the configured number of failures reached the primary application.
    assert_eq!(on_primary, expected);
    assert_eq!(
        calls_of(&stack.simulator, "alipay.trade.precreate"),
        usize::try_from(expected + 1).expect("small")
    );
    assert_eq!(calls_of(&stack.simulator, "alipay.trade.refund"), 1);
    let (moved_no, moved) = moved.expect("a payment after the opening went through");
    assert_eq!(moved.json()["payment"]["alipay_channel"], "secondary");
    assert!(
        moved.json()["next_step"]["qr_code"].is_string(),
        "{}",
        moved.text
    );
    assert!(
        secondary.trade(&moved_no).is_some(),
        "created at the second application"
    );
    assert!(stack.simulator.trade(&moved_no).is_none());
    let opened = state(&stack, ChannelId::Primary).await;
    assert!(opened.open, "{opened:?}");
    assert!(!state(&stack, ChannelId::Secondary).await.open);
    // The channel is in the payment's view and its audit trail.
    assert_eq!(
        payment(&stack, &moved_no).await["alipay_channel"],
        "secondary"
    );
    let trail = stack
        .env
        .store
        .audit_trail(&OutTradeNo::parse(moved_no.as_str()).expect("id"))
        .await
        .expect("audit");
    assert!(
        trail.iter().any(|e| e.kind == "order.created"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("alipay channel secondary"))),
        "{trail:?}"
    );

    // Notifications are checked against the order's own channel: the second application's
    // genuine signature on a primary order, or naming the other application or seller, is
    // refused.
    // Each case passes every check but one: the key, the application, the seller.
    for (no, app_id, seller_id) in [
        ("br_0", APP_ID, SELLER_ID),
        (moved_no.as_str(), APP_ID, SELLER_ID_2),
        (moved_no.as_str(), APP_ID_2, SELLER_ID),
    ] {
        let fields: std::collections::BTreeMap<String, String> = [
            ("notify_id", "2026000000000000000000000000000009"),
            ("notify_type", "trade_status_sync"),
            ("notify_time", "2026-11-28 08:00:00"),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("sign_type", "RSA2"),
            ("app_id", app_id),
            ("seller_id", seller_id),
            ("trade_no", "2026112822001400000000000999"),
            ("out_trade_no", no),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "10.00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let answer = stack
            .http
            .post_form(
                &stack.gateway.notify_url,
                &secondary.sign_notification(&fields),
            )
            .await;
        assert_eq!((answer.status, answer.text.as_str()), (400, "fail"), "{no}");
        assert_eq!(payment(&stack, no).await["status"], "CREATED", "{no}");
        assert!(
            audit_kinds(&stack, no)
                .await
                .contains(&"notify.rejected".to_owned()),
            "{no}"
        );
    }

    // Paid at the second application: its notification verifies with its own key.
    secondary.pay(&moved_no, false).expect("pay");
    wait_for_status(&stack, &moved_no, "PAID").await;

    // A repeat of a create made on the primary stays there (refused at once, no call).
    let calls = stack.simulator.calls().len();
    let repeat = create(&stack, "br_0", "10.00", "qr").await;
    assert_eq!(repeat.status, 503, "{}", repeat.text);
    assert_eq!(repeat.json()["error"]["code"], "circuit_open");
    assert_eq!(stack.simulator.calls().len(), calls);

    // The refund function is another instance: it sees the opening through the table.
    after_sync().await;
    let refused = refund(
        &stack,
        "br_paid",
        json!({"amount": "20.00", "out_request_no": "br_paid_r1"}),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "circuit_open");
    assert!(refused.headers.get("retry-after").is_some());
    assert_eq!(refused.json()["refund"]["status"], "PENDING");
    assert_eq!(calls_of(&stack.simulator, "alipay.trade.refund"), 1);
    // A query of a primary order: refused at once too, never asked of the other channel.
    let synced = stack.http.get(&stack.api("/payments/br_0?sync=true")).await;
    assert_eq!(synced.status, 503, "{}", synced.text);
    assert_eq!(synced.json()["error"]["code"], "circuit_open");
    assert_eq!(calls_of(&stack.simulator, "alipay.trade.query"), 0);
    assert_eq!(calls_of(&secondary, "alipay.trade.query"), 0);
    // The reservation holds: 25.00 refundable, not 45.00.
    assert_eq!(
        payment(&stack, "br_paid").await["refundable_amount"],
        "25.00"
    );

    // The sweeper (a third instance) leaves the refund alone while the channel is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = stack.sweep().await;
    assert!(report.refunds_pending >= 1, "{report:?}");
    assert_eq!(calls_of(&stack.simulator, "alipay.trade.refund"), 1);

    // A refund on the healthy channel is not affected.
    let fine = refund(
        &stack,
        &moved_no,
        json!({"amount": "10.00", "out_request_no": format!("{moved_no}_r1")}),
    )
    .await;
    assert_eq!(fine.status, 201, "{}", fine.text);

    // The outage ends; after the cool-down, trial calls close the channel and the sweeper sends
    // the waiting refund, once.
    stack
        .simulator
        .outage(FaultKind::SystemError, Duration::ZERO)
        .expect("end outage");
    let recovered = eventually(60, || async {
        stack.sweep().await;
        let refund = stack
            .env
            .store
            .get_refund(
                &OutTradeNo::parse("br_paid").expect("id"),
                &alipay::ids::OutRequestNo::parse("br_paid_r1").expect("id"),
            )
            .await
            .expect("refund")?;
        (refund.status == domain::states::RefundStatus::Succeeded).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "{:?}", stack.simulator.calls());
    let trade = stack.simulator.trade("br_paid").expect("trade");
    assert_eq!(trade.refunds.len(), 2, "{:?}", trade.refunds);
    assert_eq!(trade.refunded_fen, 2_500);
    assert!(
        audit_kinds(&stack, "br_paid")
            .await
            .contains(&"refund.succeeded".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_channel_fails_fast_and_trial_calls_close_it_after_the_outage() {
    let timeout_ms = 800;
    let stack = stack(false, timeout_ms).await;
    let mut events = stack.events_path().await;
    stack
        .simulator
        .outage(FaultKind::Timeout, Duration::from_secs(120))
        .expect("outage");
    let expected = failures_to_open(0);
    for i in 0..expected {
        let started = Instant::now();
        let answer = create(&stack, &format!("ff_{i}"), "10.00", "qr").await;
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert_eq!(answer.json()["error"]["code"], "alipay_unavailable");
        // Each of these waited for the time-out.
        assert!(
            started.elapsed() >= Duration::from_millis(timeout_ms),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(state(&stack, ChannelId::Primary).await.open);

    // Open: refused without a call and without writing anything.
    let calls = stack.simulator.calls().len();
    let refused = create(&stack, "ff_refused", "10.00", "qr").await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "circuit_open");
    let retry_after: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(stack.simulator.calls().len(), calls);
    let missing = stack.http.get(&stack.api("/payments/ff_refused")).await;
    assert_eq!(missing.status, 404, "nothing was written: {}", missing.text);

    // After the cool-down, still failing: the trial call fails and the channel opens again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let trial = create(&stack, "ff_trial", "10.00", "qr").await;
    assert_eq!(trial.status, 503, "{}", trial.text);
    assert_eq!(trial.json()["error"]["code"], "alipay_unavailable");
    let calls = stack.simulator.calls().len();
    let again = create(&stack, "ff_again", "10.00", "qr").await;
    assert_eq!(
        again.json()["error"]["code"],
        "circuit_open",
        "{}",
        again.text
    );
    assert_eq!(stack.simulator.calls().len(), calls);

    // The outage ends: after the cool-down, two trial calls succeed and close the channel.
    stack
        .simulator
        .outage(FaultKind::Timeout, Duration::ZERO)
        .expect("end outage");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..2 {
        let answer = create(&stack, &format!("ff_ok_{i}"), "10.00", "qr").await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let closed = state(&stack, ChannelId::Primary).await;
    assert!(!closed.open, "{closed:?}");
    // Closed with an empty window: one more failure does not open it again.
    stack.simulator.inject(Fault {
        target: "alipay.trade.precreate".into(),
        kind: FaultKind::Http500,
        times: 1,
    });
    assert_eq!(create(&stack, "ff_blip", "10.00", "qr").await.status, 503);
    assert_eq!(create(&stack, "ff_after", "10.00", "qr").await.status, 201);
    assert!(!state(&stack, ChannelId::Primary).await.open);

    // The opening and the closing reached the merchant as events, once each.
    let channel_kinds = |all: &[serde_json::Value]| -> Vec<String> {
        all.iter()
            .filter_map(|e| e["detail-type"].as_str())
            .filter(|t| t.starts_with("channel."))
            .map(str::to_owned)
            .collect()
    };
    let mut all = Vec::new();
    let waited = Instant::now();
    while channel_kinds(&all).len() < 2 && waited.elapsed() < Duration::from_secs(10) {
        all.extend(events.events().await.expect("events"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kinds = channel_kinds(&all);
    assert_eq!(kinds, ["channel.opened", "channel.closed"]);
    let opened = all
        .iter()
        .find(|e| e["detail-type"] == "channel.opened")
        .expect("opened");
    assert_eq!(opened["detail"]["channel"]["channel"], "primary");
    assert_eq!(
        opened["detail"]["channel"]["reason"],
        "alipay.trade.precreate: time-out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_refusals_never_open_the_channel() {
    let stack = stack(false, 1_500).await;
    let paid = create(&stack, "bf_1", "100.00", "qr").await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    stack.simulator.pay("bf_1", false).expect("pay");
    wait_for_status(&stack, "bf_1", "PAID").await;
    // Twice the calls that would open it, every one refused for a business reason.
    let refusals = MIN_CALLS * 2;
    for i in 0..refusals {
        stack.simulator.inject(Fault {
            target: "alipay.trade.refund".into(),
            kind: FaultKind::SellerBalanceNotEnough,
            times: 1,
        });
        let failed = refund(
            &stack,
            "bf_1",
            json!({"amount": "1.00", "out_request_no": format!("bf_1_r{i}")}),
        )
        .await;
        assert_eq!(failed.status, 422, "{}", failed.text);
        stack.after_spacing().await;
    }
    // Closing trades Alipay never knew: a business answer (ACQ.TRADE_NOT_EXIST) each time.
    for i in 0..MIN_CALLS {
        let no = format!("bf_page_{i}");
        assert_eq!(create(&stack, &no, "5.00", "page").await.status, 201);
        let closed = gateway_tests::merchant::close(&stack, &no).await;
        assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    }
    after_sync().await;
    assert!(!state(&stack, ChannelId::Primary).await.open);
    // A healthy channel costs no write: with no failure anywhere, nobody shares successes.
    let (_, window) = stack
        .env
        .store
        .breaker_state(ChannelId::Primary)
        .await
        .expect("breaker state");
    assert_eq!(window, domain::breaker::Window::default(), "never written");
    let after = create(&stack, "bf_2", "10.00", "qr").await;
    assert_eq!(after.status, 201, "{}", after.text);
    assert_eq!(after.json()["payment"]["alipay_channel"], "primary");
}
