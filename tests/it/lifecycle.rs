//! The payment and refund lifecycles when calls fail: unsigned errors, time-outs, executed
//! calls whose answers are lost, refunds spaced per trade, expiry and closing, payments after
//! close, contradicting notifications, and time budgets. Outcomes are checked against the
//! simulator's ledger (what Alipay executed), not only against the gateway's own answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alipay_sim::{BALANCE, BANK_CARD, Fault, FaultKind, RefundState, china_text};
use gateway_tests::merchant::{
    audit_kinds, close, create, create_and_pay, create_and_pay_with, paid_after_close, payment,
    payment_body, refund, refund_status, refused_refund,
};
use gateway_tests::support::{
    APP_ID, REFUND_QUERY_DELAY_MS, REFUND_SPACING_MS, SELLER_ID, Stack, eventually, now_ms,
};
use serde_json::json;

fn fault(target: &str, kind: FaultKind) -> Fault {
    Fault {
        target: target.into(),
        kind,
        times: 1,
    }
}

fn drop_next_notification(stack: &Stack) {
    stack.simulator.inject(fault("notify", FaultKind::Drop));
}

/// A `time_expire` `seconds` from now (China time, as the merchant sends it).
fn expiring_in(seconds: i64) -> String {
    china_text(now_ms() / 1000 + seconds)
}

/// A deadline `seconds` from now (Unix seconds): what happens before it has that long, however
/// slow the machine, and [`sleep_past`] waits for it, not for a guessed duration.
fn deadline_in(seconds: i64) -> i64 {
    now_ms() / 1000 + seconds
}

/// Sleeps until `deadline` (Unix seconds) has passed by 600 ms: past a `time_expire` at it.
async fn sleep_past(deadline: i64) {
    let left = (deadline * 1000 + 600 - now_ms()).max(0);
    tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_errors_never_release_money() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "unsigned_1", "50.00").await;
    for (n, (code, sub_code)) in [
        ("40002", "isv.invalid-signature"),
        ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH"),
        ("40006", "isv.insufficient-isv-permissions"),
    ]
    .into_iter()
    .enumerate()
    {
        stack.simulator.inject(fault(
            "alipay.trade.refund",
            FaultKind::UnsignedError {
                code: code.into(),
                sub_code: sub_code.into(),
            },
        ));
        drop_next_notification(&stack);
        let body = json!({"amount": "10.00", "out_request_no": format!("unsigned_r{n}")});
        let answer = refund(&stack, "unsigned_1", body).await;
        assert_eq!(answer.status, 202, "{code} {sub_code}: {}", answer.text);
        assert_eq!(answer.json()["refund"]["status"], "PENDING");
        stack.after_spacing().await;
    }
    assert_eq!(
        payment(&stack, "unsigned_1").await["refundable_amount"],
        "20.00",
        "the reservations hold"
    );
    assert!(
        !audit_kinds(&stack, "unsigned_1")
            .await
            .contains(&"refund.failed".to_owned())
    );
    // The sweeper asks (Alipay has no such refunds), then sends each again: money moves once.
    stack.drain(20).await;
    let trade = stack.simulator.trade("unsigned_1").expect("trade");
    assert_eq!(trade.refunded_fen, 3_000);
    assert!(trade.refunds.iter().all(|r| r.executions == 1));
    let now = payment(&stack, "unsigned_1").await;
    assert_eq!(
        (
            now["refunded_amount"].as_str(),
            now["refundable_amount"].as_str()
        ),
        (Some("30.00"), Some("20.00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_finishes_refunds_nobody_retries() {
    let stack = Stack::start_with_timeout_ms(2_000).await;
    create_and_pay(&stack, "sweep_1", "90.00").await;
    // Executed at Alipay, the answer lost: the sweeper's query finds it.
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::TimeoutAfterExecute));
    drop_next_notification(&stack);
    let first = refund(
        &stack,
        "sweep_1",
        json!({"amount": "30.00", "out_request_no": "sweep_r1"}),
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert!(first.headers.contains_key("retry-after"));
    // Never reached Alipay: the query finds nothing, and the same request is sent again.
    stack.after_spacing().await;
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::Timeout));
    let second = refund(
        &stack,
        "sweep_1",
        json!({"amount": "20.00", "out_request_no": "sweep_r2"}),
    )
    .await;
    assert_eq!(second.status, 202, "{}", second.text);
    // HTTP 500 without executing, then an answer so the caller can follow up.
    stack.after_spacing().await;
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::Http500));
    let third = refund(
        &stack,
        "sweep_1",
        json!({"amount": "10.00", "out_request_no": "sweep_r3"}),
    )
    .await;
    assert_eq!(third.status, 202, "{}", third.text);
    assert_eq!(third.json()["refund"]["out_request_no"], "sweep_r3");
    assert!(third.json()["pending_reason"]["code"].is_string());

    let report = stack.drain(20).await;
    assert_eq!(report.errors, 0, "{report:?}");
    let trade = stack.simulator.trade("sweep_1").expect("trade");
    let ledger: BTreeMap<_, _> = trade
        .refunds
        .iter()
        .map(|r| (r.out_request_no.as_str(), (r.executions, r.requests)))
        .collect();
    assert_eq!(
        ledger,
        BTreeMap::from([
            ("sweep_r1", (1, 1)),
            ("sweep_r2", (1, 1)),
            ("sweep_r3", (1, 1))
        ]),
        "each refund executed once; the lost ones were asked about, not blindly resent"
    );
    let now = payment(&stack, "sweep_1").await;
    assert_eq!(now["refunded_amount"], "60.00");
    for refund in now["refunds"].as_array().expect("refunds") {
        assert_eq!(refund["status"], "SUCCEEDED", "{refund}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_of_one_trade_reach_alipay_at_least_the_spacing_apart() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "spaced_1", "30.00").await;
    let mut statuses = Vec::new();
    for n in 0..3 {
        let answer = refund(
            &stack,
            "spaced_1",
            json!({"amount": "1.00", "out_request_no": format!("spaced_r{n}")}),
        )
        .await;
        if answer.status == 202 {
            assert_eq!(answer.json()["pending_reason"]["code"], "refund_spacing");
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [201, 202, 202]);
    stack.drain(20).await;
    let trade = stack.simulator.trade("spaced_1").expect("trade");
    assert_eq!(trade.refunded_fen, 300);
    let gaps: Vec<i64> = trade
        .refund_requests_ms
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(gaps.len(), 2, "{:?}", trade.refund_requests_ms);
    assert!(
        gaps.iter()
            .all(|gap| *gap >= i64::try_from(REFUND_SPACING_MS).unwrap_or(0)),
        "Alipay saw refunds {gaps:?} ms apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payment_expires_and_the_sweeper_ends_it() {
    let stack = Stack::start().await;
    // Without a time_expire, the configured default is sent to Alipay (signed in the URL).
    let open = create(&stack, "default_expiry", "1.00", "page").await;
    assert_eq!(open.status, 201, "{}", open.text);
    let time_expire = open.json()["payment"]["time_expire"]
        .as_str()
        .expect("time_expire")
        .to_owned();
    let url = open.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let signed: BTreeMap<String, String> = form_urlencoded::parse(
        url.split_once('?')
            .map_or("", |(_, query)| query)
            .as_bytes(),
    )
    .into_owned()
    .collect();
    assert!(
        signed["biz_content"].contains(&format!("\"time_expire\":\"{time_expire}\"")),
        "{}",
        signed["biz_content"]
    );

    // Three payments that expire together: never opened, opened and left, paid but not
    // notified (all before the deadline, which is generous).
    let expiry = deadline_in(5);
    for out_trade_no in ["never_opened", "left_open", "paid_quietly"] {
        let mut body = payment_body(out_trade_no, "3.00", "page");
        body["time_expire"] = json!(china_text(expiry));
        let answer = stack.http.post_json(&stack.api("/payments"), &body).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        if out_trade_no != "never_opened" {
            let url = answer.json()["next_step"]["url"]
                .as_str()
                .expect("url")
                .to_owned();
            assert_eq!(stack.http.get(&url).await.status, 200, "cashier opens");
        }
    }
    drop_next_notification(&stack);
    stack.simulator.pay("paid_quietly", false).expect("pay");
    sleep_past(expiry).await;
    assert!(
        stack.simulator.pay("left_open", false).is_err(),
        "nothing is payable after time_expire"
    );
    let report = stack.drain(20).await;
    assert_eq!(
        (report.orders_closed, report.orders_paid),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(payment(&stack, "never_opened").await["status"], "CLOSED");
    assert_eq!(payment(&stack, "left_open").await["status"], "CLOSED");
    let paid = payment(&stack, "paid_quietly").await;
    assert_eq!(paid["status"], "PAID");
    assert_eq!(
        paid["trade_no"],
        stack
            .simulator
            .trade("paid_quietly")
            .expect("trade")
            .trade_no
    );
    // A repeat of a create whose time_expire has passed answers the payment, not 400.
    let mut body = payment_body("never_opened", "3.00", "page");
    body["time_expire"] = json!(expiring_in(-60));
    let repeat = stack.http.post_json(&stack.api("/payments"), &body).await;
    assert_eq!(
        repeat.status, 400,
        "a different time_expire is a different request"
    );
    let first_body = {
        let trail = stack
            .env
            .store
            .get_order(&alipay::ids::OutTradeNo::parse("never_opened").expect("id"))
            .await
            .expect("read")
            .expect("order");
        let mut body = payment_body("never_opened", "3.00", "page");
        body["time_expire"] = json!(trail.time_expire);
        body
    };
    let repeat = stack
        .http
        .post_json(&stack.api("/payments"), &first_body)
        .await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(repeat.json()["payment"]["status"], "CLOSED");
    assert!(repeat.json()["next_step"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_payment() {
    let stack = Stack::start_with_timeout_ms(2_000).await;
    let close = |out_trade_no: &'static str| close(&stack, out_trade_no);
    // Known to Alipay (the buyer scanned): closed there, then here.
    assert_eq!(create(&stack, "close_qr", "2.00", "qr").await.status, 201);
    let closed = close("close_qr").await;
    assert_eq!(
        (closed.status, closed.json()["status"].as_str()),
        (200, Some("CLOSED")),
        "{}",
        closed.text
    );
    assert_eq!(
        stack.simulator.trade("close_qr").expect("trade").status,
        "TRADE_CLOSED"
    );
    assert_eq!(close("close_qr").await.status, 200, "closing is idempotent");
    // Never known to Alipay: closed here only.
    assert_eq!(
        create(&stack, "close_page", "2.00", "page").await.status,
        201
    );
    assert_eq!(close("close_page").await.status, 200);
    assert!(stack.simulator.trade("close_page").is_none());
    // Paid: 409 with the payment.
    create_and_pay(&stack, "close_paid", "2.00").await;
    let refused = close("close_paid").await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "payment_paid");
    assert_eq!(refused.json()["payment"]["status"], "PAID");
    // Alipay unreachable: 503 with the payment unchanged, and a Retry-After.
    assert_eq!(create(&stack, "close_busy", "2.00", "qr").await.status, 201);
    stack
        .simulator
        .inject(fault("alipay.trade.close", FaultKind::Timeout));
    let busy = close("close_busy").await;
    assert_eq!(busy.status, 503, "{}", busy.text);
    assert!(busy.headers.contains_key("retry-after"));
    assert_eq!(busy.json()["payment"]["status"], "CREATED");
    assert_eq!(close("nobody").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_close_is_recorded_and_refunded() {
    let stack = Stack::start().await;
    // Closed here while Alipay never knew the trade; then the buyer opens the URL they still
    // hold, and pays before its time_expire.
    let recorded = paid_after_close(&stack, "late_1", "66.00").await;
    assert_eq!(recorded["paid_after_close"], true);
    assert_eq!(
        recorded["refundable_amount"], "0.00",
        "reserved for the refund"
    );
    let acknowledged = eventually(60, || async {
        stack
            .simulator
            .deliveries()
            .into_iter()
            .any(|d| {
                d.out_trade_no == "late_1" && d.trade_status == "TRADE_SUCCESS" && d.acknowledged
            })
            .then_some(())
    })
    .await;
    assert!(
        acknowledged.is_some(),
        "the money is real: acknowledged, never refused: {:?}",
        stack.simulator.deliveries()
    );
    assert!(
        audit_kinds(&stack, "late_1")
            .await
            .contains(&"order.paid_after_close".to_owned())
    );
    stack.drain(20).await;
    let trade = stack.simulator.trade("late_1").expect("trade");
    assert_eq!(
        (trade.refunded_fen, trade.status.as_str()),
        (6_600, "TRADE_CLOSED"),
        "Alipay refunded the buyer in full"
    );
    assert_eq!(payment(&stack, "late_1").await["status"], "REFUNDED");

    // The same, with every notification of the payment broken: the sweeper asks again after
    // time_expire, finds the payment, and refunds it.
    let mut body = payment_body("late_2", "7.00", "page");
    let expiry = deadline_in(5);
    body["time_expire"] = json!(china_text(expiry));
    let created = stack.http.post_json(&stack.api("/payments"), &body).await;
    let url = created.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let closed = close(&stack, "late_2").await;
    assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    assert_eq!(stack.http.get(&url).await.status, 200);
    stack
        .simulator
        .inject(fault("notify", FaultKind::BadNotifySignature));
    stack.simulator.pay("late_2", false).expect("pay");
    sleep_past(expiry).await;
    stack.drain(20).await;
    let late = payment(&stack, "late_2").await;
    assert_eq!(
        (late["status"].as_str(), late["paid_after_close"].as_bool()),
        (Some("REFUNDED"), Some(true)),
        "{late}"
    );
    assert_eq!(
        stack.simulator.trade("late_2").expect("trade").refunded_fen,
        700
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_notifications_that_contradict_us_are_audited() {
    let stack = Stack::start().await;
    let paid = create_and_pay(&stack, "contra_1", "10.00").await;
    let trade_no = paid["trade_no"].as_str().expect("trade_no").to_owned();
    let fields: BTreeMap<String, String> = [
        ("notify_id", "contra_notify_1"),
        ("notify_type", "trade_status_sync"),
        ("notify_time", "2026-11-27 10:00:00"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("out_trade_no", "contra_1"),
        ("trade_no", trade_no.as_str()),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "10.00"),
        ("refund_fee", "4.00"),
        ("gmt_refund", "2026-11-27 10:00:00"),
        ("out_biz_no", "never_made"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = stack.simulator.sign_notification(&fields);
    let answer = stack.http.post_form(&stack.gateway.notify_url, &body).await;
    assert_eq!((answer.status, answer.text.as_str()), (200, "success"));
    let contradictions = audit_kinds(&stack, "contra_1")
        .await
        .into_iter()
        .filter(|k| k == "refund.notify_contradiction")
        .count();
    assert_eq!(
        contradictions, 2,
        "an unknown refund, and a total we never sent"
    );
    // Nothing changed: no refund appeared, nothing was released.
    let now = payment(&stack, "contra_1").await;
    assert_eq!(
        (
            now["refunded_amount"].as_str(),
            now["refundable_amount"].as_str()
        ),
        (Some("0.00"), Some("10.00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_answers_within_its_deadline() {
    // Alipay's own time-out (10 s) is longer than what the invocation has left (2 s).
    let stack = Stack::start_with_timeout_ms(10_000).await;
    create_and_pay(&stack, "budget_1", "5.00").await;
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::Timeout));
    let mut request = lambda_http::Request::new(lambda_http::Body::Text(
        json!({"amount": "1.00", "out_request_no": "budget_r1"}).to_string(),
    ));
    *request.method_mut() = lambda_http::http::Method::POST;
    *request.uri_mut() = "/payments/budget_1/refunds".parse().expect("uri");
    request.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    let mut context = lambda_http::Context::default();
    let deadline_ms = u64::try_from(now_ms()).unwrap_or(0) + 2_000;
    context.deadline = deadline_ms;
    let request = lambda_http::RequestExt::with_lambda_context(request, context);
    let started = Instant::now();
    let response = ::refund::handle(&stack.gateway.functions.refund, request).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2_000),
        "answered after {took:?}, past the deadline"
    );
    assert_eq!(response.status(), 202);
    // The money stays reserved; the sweeper finishes it.
    stack.drain(20).await;
    assert_eq!(payment(&stack, "budget_1").await["refunded_amount"], "1.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_json_key_refunds_nothing() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "dup_1", "9.00").await;
    let answer = stack
        .http
        .send(
            "POST",
            &stack.api("/payments/dup_1/refunds"),
            "application/json",
            r#"{"amount":"1.00","amount":"9.00","out_request_no":"dup_r1"}"#,
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.json()["error"]["field"], "amount");
    assert_eq!(payment(&stack, "dup_1").await["refundable_amount"], "9.00");
    assert!(
        stack
            .simulator
            .trade("dup_1")
            .expect("trade")
            .refunds
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_alarm_sees_work_that_keeps_failing() {
    let stack = Stack::start().await;
    create_and_pay(&stack, "stuck_1", "8.00").await;
    // Alipay refuses every send unsigned (a wrong app key, say): nothing can finish it.
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::UnsignedError {
            code: "40002".into(),
            sub_code: "isv.invalid-signature".into(),
        },
        times: 1_000,
    });
    let answer = refund(
        &stack,
        "stuck_1",
        json!({"amount": "1.00", "out_request_no": "stuck_r1"}),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let report = stack.sweep().await;
    assert_eq!(report.refunds_pending, 1, "{report:?}");
    // The claim moved the refund's due time ahead (its backoff); its age still shows.
    assert!(
        report.oldest_due_age_seconds >= 2,
        "the stuck refund is invisible to the age alarm: {report:?}"
    );
    assert_eq!(
        payment(&stack, "stuck_1").await["refundable_amount"],
        "7.00"
    );
}

/// The payment's (refunded, refundable) amounts as the API shows them.
async fn refunded_and_refundable(stack: &Stack, out_trade_no: &str) -> (String, String) {
    let now = payment(stack, out_trade_no).await;
    let text = |name: &str| now[name].as_str().unwrap_or("").to_owned();
    (text("refunded_amount"), text("refundable_amount"))
}

/// The simulator's record of a refund: (state, executions, requests).
fn alipay_refund(
    stack: &Stack,
    out_trade_no: &str,
    out_request_no: &str,
) -> Option<(RefundState, u32, u32)> {
    stack
        .simulator
        .trade(out_trade_no)?
        .refunds
        .iter()
        .find(|r| r.out_request_no == out_request_no)
        .map(|r| (r.state, r.executions, r.requests))
}

fn refund_queries(stack: &Stack) -> usize {
    stack
        .simulator
        .calls()
        .iter()
        .filter(|(method, _)| method == "alipay.trade.fastpay.refund.query")
        .count()
}

/// A refund to a bank card is accepted (`fund_change=N`) and executed later. Until Alipay proves
/// it (`REFUND_SUCCESS`) it stays PENDING with its money reserved: not asked about sooner than
/// the query delay, and never settled on the data without a status that the query shows while
/// Alipay processes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_alipay_executes_later_stays_pending_until_proven() {
    let stack = Stack::start().await;
    create_and_pay_with(&stack, "later_1", "80.00", BANK_CARD).await;
    // Its refund notification is lost: only the query can prove it.
    drop_next_notification(&stack);
    let answer = refund(
        &stack,
        "later_1",
        json!({"amount": "30.00", "out_request_no": "later_r1"}),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(answer.json()["refund"]["status"], "PENDING");
    assert_eq!(
        refund_queries(&stack),
        0,
        "accepted without moving money: not asked about at once"
    );
    // Past the query delay, Alipay still processing: its answer (data, no status) settles nothing.
    tokio::time::sleep(Duration::from_millis(REFUND_QUERY_DELAY_MS + 50)).await;
    let synced = stack
        .http
        .get(&stack.api("/payments/later_1/refunds/later_r1?sync=true"))
        .await;
    assert_eq!(
        synced.json()["refund"]["status"],
        "PENDING",
        "{}",
        synced.text
    );
    assert!(refund_queries(&stack) >= 1);
    assert_eq!(
        alipay_refund(&stack, "later_1", "later_r1").map(|r| r.0),
        Some(RefundState::Processing)
    );
    assert_eq!(
        payment(&stack, "later_1").await["refundable_amount"],
        "50.00"
    );
    // Executed: the next look proves it; money moved once.
    let executed = eventually(10, || async {
        (alipay_refund(&stack, "later_1", "later_r1").map(|r| r.0) == Some(RefundState::Success))
            .then_some(())
    })
    .await;
    assert!(executed.is_some(), "Alipay executes it");
    stack.drain(20).await;
    assert_eq!(
        refund_status(&stack, "later_1", "later_r1").await["refund"]["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        alipay_refund(&stack, "later_1", "later_r1").map(|r| r.1),
        Some(1)
    );
    assert_eq!(
        refunded_and_refundable(&stack, "later_1").await,
        ("30.00".into(), "50.00".into())
    );
}

/// A refund Alipay accepts and then fails (`REFUND_FAIL`) is sent again with the same number;
/// only when that identical request is refused with a signed terminal answer is it FAILED and
/// its money released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_alipay_fails_later_fails_only_when_a_signed_refusal_agrees() {
    let stack = Stack::start().await;
    create_and_pay_with(&stack, "fail_later_1", "50.00", BALANCE).await;
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::RefundFailsLater));
    let answer = refund(
        &stack,
        "fail_later_1",
        json!({"amount": "20.00", "out_request_no": "fl_r1"}),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let failed_there = eventually(10, || async {
        (alipay_refund(&stack, "fail_later_1", "fl_r1").map(|r| r.0) == Some(RefundState::Fail))
            .then_some(())
    })
    .await;
    assert!(failed_there.is_some());
    stack.drain(20).await;
    let settled = refund_status(&stack, "fail_later_1", "fl_r1").await;
    assert_eq!(
        (
            settled["refund"]["status"].as_str(),
            settled["refund"]["failure_code"].as_str()
        ),
        (Some("FAILED"), Some("ACQ.SELLER_BALANCE_NOT_ENOUGH")),
        "{settled}"
    );
    let (_, executions, requests) = alipay_refund(&stack, "fail_later_1", "fl_r1").expect("record");
    assert_eq!(executions, 0);
    assert!(requests >= 2, "sent again before it was failed: {requests}");
    assert_eq!(
        payment(&stack, "fail_later_1").await["refundable_amount"],
        "50.00",
        "the reservation was released"
    );
}

/// A slow signed refusal of the first send, while a `?sync=true` found no such refund at Alipay
/// and sent the identical request again (which executed, its answer lost): the refusal is about
/// the first send only. The refund is not failed, its money stays reserved, and it ends
/// SUCCEEDED, executed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refusal_never_fails_a_refund_sent_again_meanwhile() {
    let stack = Stack::start_with_timeout_ms(3_000).await;
    create_and_pay_with(&stack, "slow_no_1", "60.00", BALANCE).await;
    stack.simulator.inject(fault(
        "alipay.trade.refund",
        FaultKind::SlowRefusal { ms: 1_500 },
    ));
    stack
        .simulator
        .inject(fault("alipay.trade.refund", FaultKind::TimeoutAfterExecute));
    drop_next_notification(&stack);
    let post = refund(
        &stack,
        "slow_no_1",
        json!({"amount": "25.00", "out_request_no": "slow_r1"}),
    );
    let sync = async {
        // Past the query delay and the spacing since the first send.
        tokio::time::sleep(Duration::from_millis(
            REFUND_QUERY_DELAY_MS.max(REFUND_SPACING_MS) + 100,
        ))
        .await;
        stack
            .http
            .get(&stack.api("/payments/slow_no_1/refunds/slow_r1?sync=true"))
            .await
    };
    let (posted, synced) = tokio::join!(post, sync);
    assert_eq!(
        synced.json()["refund"]["status"],
        "PENDING",
        "{}",
        synced.text
    );
    assert_eq!(posted.status, 202, "not failed: {}", posted.text);
    assert_eq!(posted.json()["refund"]["status"], "PENDING");
    assert_eq!(
        payment(&stack, "slow_no_1").await["refundable_amount"],
        "35.00",
        "the money stays reserved"
    );
    stack.drain(20).await;
    assert_eq!(
        refund_status(&stack, "slow_no_1", "slow_r1").await["refund"]["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        alipay_refund(&stack, "slow_no_1", "slow_r1").map(|r| r.1),
        Some(1),
        "executed once"
    );
    assert!(
        !audit_kinds(&stack, "slow_no_1")
            .await
            .contains(&"refund.failed".to_owned())
    );
}

/// Alipay's signed refund notification for a refund we recorded FAILED (its money released):
/// proof that it executed. The refund is corrected to SUCCEEDED and its amount taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_recorded_failed_that_alipay_executed_is_corrected() {
    let stack = Stack::start().await;
    let paid = create_and_pay_with(&stack, "corr_1", "40.00", BALANCE).await;
    let trade_no = paid["trade_no"].as_str().expect("trade_no").to_owned();
    refused_refund(&stack, "corr_1", "15.00", "corr_r1").await;
    assert_eq!(
        payment(&stack, "corr_1").await["refundable_amount"],
        "40.00"
    );
    let fields: BTreeMap<String, String> = [
        ("notify_id", "corr_notify_1"),
        ("notify_type", "trade_status_sync"),
        ("notify_time", "2026-11-27 10:00:01"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("out_trade_no", "corr_1"),
        ("trade_no", trade_no.as_str()),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "40.00"),
        ("refund_fee", "15.00"),
        ("gmt_refund", "2026-11-27 10:00:00.123"),
        ("out_biz_no", "corr_r1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = stack.simulator.sign_notification(&fields);
    let answer = stack.http.post_form(&stack.gateway.notify_url, &body).await;
    assert_eq!((answer.status, answer.text.as_str()), (200, "success"));
    let corrected = refund_status(&stack, "corr_1", "corr_r1").await;
    assert_eq!(corrected["refund"]["status"], "SUCCEEDED", "{corrected}");
    assert_eq!(
        refunded_and_refundable(&stack, "corr_1").await,
        ("15.00".into(), "25.00".into())
    );
    let kinds = audit_kinds(&stack, "corr_1").await;
    assert!(kinds.contains(&"refund.corrected".to_owned()), "{kinds:?}");
    assert!(
        !kinds.contains(&"refund.notify_contradiction".to_owned()),
        "{kinds:?}"
    );
}

/// The sweeper's third call learns that the buyer paid (the close it sent was refused because
/// the buyer paid just before): the payment it holds is applied, not dropped for having used
/// its calls. Alipay's clock runs 3 s behind ours, so at our `time_expire` the trade still
/// waits for the buyer there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_applies_a_payment_learned_on_its_last_call() {
    let stack = Stack::start().await;
    stack.simulator.set_clock_offset_ms(-3_000);
    let deadline = deadline_in(2);
    let mut body = payment_body("last_call_1", "18.00", "qr");
    body["time_expire"] = json!(china_text(deadline));
    let created = stack.http.post_json(&stack.api("/payments"), &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    stack
        .simulator
        .inject(fault("alipay.trade.close", FaultKind::BuyerPaysFirst));
    drop_next_notification(&stack);
    sleep_past(deadline).await;
    let report = stack.sweep().await;
    let calls: Vec<String> = stack
        .simulator
        .calls()
        .into_iter()
        .filter(|(method, _)| method != "alipay.trade.precreate")
        .map(|(method, code)| format!("{method} {code}"))
        .collect();
    assert_eq!(
        calls,
        [
            "alipay.trade.query 10000",
            "alipay.trade.close ACQ.TRADE_STATUS_ERROR",
            "alipay.trade.query 10000"
        ]
    );
    assert_eq!(report.orders_paid, 1, "{report:?}");
    assert_eq!(payment(&stack, "last_call_1").await["status"], "PAID");
}

/// A payment closed here while Alipay never knew it, whose URL a buyer opens afterwards: when
/// the sweeper looks again after `time_expire` and Alipay (its clock 3 s behind ours) still
/// offers the trade, it closes it there, so nobody can pay it unwatched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_order_alipay_still_offers_is_closed_there_too() {
    let stack = Stack::start().await;
    stack.simulator.set_clock_offset_ms(-3_000);
    let deadline = deadline_in(2);
    let mut body = payment_body("offered_1", "22.00", "page");
    body["time_expire"] = json!(china_text(deadline));
    let created = stack.http.post_json(&stack.api("/payments"), &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let url = created.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let closed = close(&stack, "offered_1").await;
    assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    assert!(
        stack.simulator.trade("offered_1").is_none(),
        "Alipay never knew it"
    );
    let cashier = stack.http.get(&url).await;
    assert!(cashier.text.contains("收银台"), "{}", cashier.text);
    assert_eq!(
        stack.simulator.trade("offered_1").map(|t| t.status),
        Some("WAIT_BUYER_PAY".to_owned())
    );
    sleep_past(deadline).await;
    let report = stack.sweep().await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        stack.simulator.trade("offered_1").map(|t| t.status),
        Some("TRADE_CLOSED".to_owned()),
        "closed at Alipay: {:?}",
        stack.simulator.calls()
    );
    assert!(
        stack.simulator.pay("offered_1", false).is_err(),
        "nobody can pay it"
    );
    let order = stack
        .env
        .store
        .get_order(&alipay::ids::OutTradeNo::parse("offered_1").expect("no"))
        .await
        .expect("get")
        .expect("order");
    assert_eq!(order.due_at_ms, None, "no more attention needed");
}

/// A refund Alipay proves neither way (every call to it fails) stays PENDING with its money
/// reserved; past the proof window it is raised as a discrepancy, audited once and counted at
/// every look for the alarm, never guessed; once Alipay answers again it is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_unproven_past_the_window_is_raised_not_guessed() {
    let stack = Stack::start_custom(gateway_tests::support::StackOptions {
        alipay_timeout_ms: 1_000,
        env: vec![
            ("REFUND_PROOF_WINDOW_MS".into(), "1000".into()),
            // The outage below must not open the channel: this test is about the refund.
            ("BREAKER_MIN_CALLS".into(), "1000".into()),
        ],
        ..gateway_tests::support::StackOptions::default()
    })
    .await;
    create_and_pay_with(&stack, "unproven_1", "30.00", BALANCE).await;
    stack
        .simulator
        .outage(FaultKind::Http500, Duration::from_secs(120))
        .expect("outage");
    let answer = refund(
        &stack,
        "unproven_1",
        json!({"amount": "10.00", "out_request_no": "unproven_r1"}),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // The sweeper looks again after its backoff (1 s here, an hour at most in production).
    let mut raised = 0;
    for _ in 0..3 {
        raised += stack.sweep().await.refunds_unproven;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    assert!(raised >= 2, "counted at every look: {raised}");
    let kinds = audit_kinds(&stack, "unproven_1").await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "refund.unproven").count(),
        1,
        "audited once: {kinds:?}"
    );
    assert_eq!(
        refund_status(&stack, "unproven_1", "unproven_r1").await["refund"]["status"],
        "PENDING"
    );
    assert_eq!(
        payment(&stack, "unproven_1").await["refundable_amount"],
        "20.00"
    );
    stack
        .simulator
        .outage(FaultKind::Http500, Duration::ZERO)
        .expect("end");
    stack.drain(30).await;
    assert_eq!(
        refund_status(&stack, "unproven_1", "unproven_r1").await["refund"]["status"],
        "SUCCEEDED"
    );
}
