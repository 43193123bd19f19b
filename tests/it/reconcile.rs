//! Daily reconciliation against the simulator's bill: discrepancies made on purpose (a dropped
//! notification, the ledger altered at "Alipay", refunds known on one side only) are each found,
//! and nothing else is; a lost notification is repaired once; the report lands in S3 and the
//! table. The bill is the simulator's, written from its own ledger in Alipay's format.

use domain::channel::ChannelId;
use std::collections::BTreeSet;

use alipay::china_time::ChinaDate;
use alipay_sim::{BALANCE, BANK_CARD, Fault, FaultKind, LedgerEdit, RefundProcessing, RefundState};
use gateway_tests::merchant::{
    audit_kinds, create_and_pay, create_and_pay_with, refund, refund_status, refused_refund,
    wait_for_status,
};
use gateway_tests::support::{Stack, StackOptions, eventually, now_ms};
use serde_json::json;

/// The China-time day now, after waiting out the last two minutes before China midnight (so
/// that one test's payments never straddle two bills).
async fn today_clear_of_midnight() -> ChinaDate {
    let now = now_ms() / 1000;
    let today = ChinaDate::of_unix(now);
    let next_midnight = today.start_unix() + 86_400;
    if next_midnight - now < 120 {
        tokio::time::sleep(std::time::Duration::from_secs(
            (next_midnight - now + 2) as u64,
        ))
        .await;
        return ChinaDate::of_unix(now_ms() / 1000);
    }
    today
}

async fn pay_and_refund(
    stack: &Stack,
    out_trade_no: &str,
    amount: &str,
    refund_no: &str,
    part: &str,
) {
    // From the balance: the refund executes in the call (these tests are about the books).
    create_and_pay_with(stack, out_trade_no, amount, BALANCE).await;
    let answer = refund(
        stack,
        out_trade_no,
        json!({"amount": part, "out_request_no": refund_no}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(
        answer.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        answer.text
    );
}

fn kinds(report: &gateway::reconcile::Report) -> BTreeSet<(String, String, String)> {
    report
        .discrepancies
        .iter()
        .map(|d| {
            (
                d.category.as_str().to_owned(),
                d.out_trade_no.clone(),
                d.out_request_no.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_finds_each_discrepancy_made_and_nothing_else() {
    let day = today_clear_of_midnight().await;
    let stack = Stack::start().await;
    let mut path = stack.events_path().await;
    let sim = &stack.simulator;

    // Agreeing books: a payment, and a payment with a partial refund.
    create_and_pay(&stack, "rc_ok_1", "10.00").await;
    pay_and_refund(&stack, "rc_ok_2", "20.00", "rc_ok_2_r", "5.00").await;

    // A lost notification: paid at Alipay, still CREATED here.
    gateway_tests::merchant::create(&stack, "rc_lost", "30.00", "qr").await;
    sim.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    sim.pay("rc_lost", false).expect("pay");

    // Alipay's record of a payment says another amount.
    create_and_pay(&stack, "rc_amount", "40.00").await;
    sim.edit(LedgerEdit::SetTotal {
        out_trade_no: "rc_amount".into(),
        total_amount: "41.00".into(),
    })
    .expect("edit");

    // Alipay has no record of a payment we have.
    create_and_pay(&stack, "rc_gone", "50.00").await;
    sim.edit(LedgerEdit::Forget {
        out_trade_no: "rc_gone".into(),
    })
    .expect("edit");

    // A refund at Alipay that we never made.
    create_and_pay(&stack, "rc_rhere", "60.00").await;
    sim.edit(LedgerEdit::AddRefund {
        out_trade_no: "rc_rhere".into(),
        out_request_no: "rc_rhere_extra".into(),
        refund_amount: "6.00".into(),
    })
    .expect("edit");

    // A refund we have that Alipay does not.
    pay_and_refund(&stack, "rc_rgone", "70.00", "rc_rgone_r", "7.00").await;
    sim.edit(LedgerEdit::RemoveRefund {
        out_trade_no: "rc_rgone".into(),
        out_request_no: "rc_rgone_r".into(),
    })
    .expect("edit");

    // A refund amount that differs.
    pay_and_refund(&stack, "rc_ramount", "80.00", "rc_ramount_r", "8.00").await;
    sim.edit(LedgerEdit::SetRefundAmount {
        out_trade_no: "rc_ramount".into(),
        out_request_no: "rc_ramount_r".into(),
        refund_amount: "8.80".into(),
    })
    .expect("edit");

    // A refund FAILED here (a signed terminal refusal) that Alipay shows executed.
    create_and_pay(&stack, "rc_rstatus", "90.00").await;
    refused_refund(&stack, "rc_rstatus", "9.00", "rc_rstatus_r").await;
    sim.edit(LedgerEdit::AddRefund {
        out_trade_no: "rc_rstatus".into(),
        out_request_no: "rc_rstatus_r".into(),
        refund_amount: "9.00".into(),
    })
    .expect("edit");

    let (s3, bucket) = stack.reports_bucket().await;
    let reports = gateway::reconcile::Reports::to_bucket(s3.clone(), bucket.clone());
    // Small passes: the day is matched in several hash ranges, as a large day would be.
    let settings = gateway::reconcile::Settings {
        pass_rows: 4,
        work_dir: std::env::temp_dir(),
        ..Default::default()
    };

    // The day is not over at Alipay: no bill yet, and we have payments.
    let early = stack
        .reconcile(&reports, &settings, day)
        .await
        .expect("early run");
    assert_eq!(early.status, gateway::reconcile::Status::BillNotReady);
    assert!(early.discrepancies.is_empty());
    assert_eq!(audit_kinds(&stack, "rc_lost").await, vec!["order.created"]);

    sim.close_day(&day.to_string());
    let report = stack
        .reconcile(&reports, &settings, day)
        .await
        .expect("run");
    let expected: BTreeSet<(String, String, String)> = [
        ("paid_at_alipay_not_here", "rc_lost", ""),
        ("here_not_at_alipay", "rc_gone", ""),
        ("amount_differs", "rc_amount", ""),
        ("refund_missing_here", "rc_rhere", "rc_rhere_extra"),
        ("refund_missing_at_alipay", "rc_rgone", "rc_rgone_r"),
        ("refund_amount_differs", "rc_ramount", "rc_ramount_r"),
        ("status_differs", "rc_rstatus", "rc_rstatus_r"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(kinds(&report), expected, "{:#?}", report.discrepancies);
    assert_eq!(report.status, gateway::reconcile::Status::Discrepancies);
    assert!(report.stats.passes >= 3, "{:?}", report.stats);
    assert_eq!(report.stats.other_day, 0);
    let lost = report
        .discrepancies
        .iter()
        .find(|d| d.out_trade_no == "rc_lost")
        .expect("lost");
    assert!(lost.repaired, "{lost:?}");
    assert_eq!(report.stats.repaired, 1);

    // Alipay's side, from the simulator's own ledger: every payment and refund of the day.
    let trades = sim.trades();
    let paid: Vec<_> = trades.iter().filter(|t| t.gmt_payment.is_some()).collect();
    let refunds: Vec<_> = trades.iter().flat_map(|t| t.executed_refunds()).collect();
    assert_eq!(report.alipay.totals.payments, paid.len() as u64);
    assert_eq!(
        report.alipay.totals.gross_fen,
        paid.iter().map(|t| t.total_fen).sum::<u64>()
    );
    assert_eq!(report.alipay.totals.refunds, refunds.len() as u64);
    assert!(report.bill.footer_matches, "{:?}", report.bill);
    assert_eq!(report.bill.summary_matches, Some(true));
    // The simulator charges 0.6% on payments: the fees are Alipay's, read from 服务费.
    assert_eq!(
        report.alipay.fee_fen,
        paid.iter()
            .map(|t| (t.total_fen * 6 + 500) / 1000)
            .sum::<u64>() as i64
    );
    // Our side as loaded before any repair: eight payments paid here, three refunds succeeded
    // (the FAILED one is not a refund that happened).
    assert_eq!(report.ours.payments, 8);
    assert_eq!(report.ours.refunds, 3);

    // The repair: PAID now, caused by the reconciliation, audited once.
    wait_for_status(&stack, "rc_lost", "PAID").await;
    let trail = audit_kinds(&stack, "rc_lost").await;
    assert_eq!(trail, vec!["order.created", "order.paid"], "{trail:?}");

    // Stored: the summary item, the JSON and the CSV.
    let (status, summary) = stack
        .env
        .store
        .reconciliation_summary(ChannelId::Primary, day)
        .await
        .expect("summary")
        .expect("a summary item");
    assert_eq!(status, "discrepancies");
    assert_eq!(summary["counts"]["status_differs"], 1);
    let [json_key, csv_key] = gateway::reconcile::Reports::keys(day, ChannelId::Primary);
    let stored: serde_json::Value =
        serde_json::from_str(&Stack::read_object(&s3, &bucket, &json_key).await)
            .expect("JSON report");
    assert_eq!(stored["discrepancies"].as_array().map(Vec::len), Some(7));
    let csv = Stack::read_object(&s3, &bucket, &csv_key).await;
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    assert!(
        csv.contains("refund_amount_differs,rc_ramount,rc_ramount_r"),
        "{csv}"
    );

    // A re-run replaces the report and never repairs twice: the lost payment now matches.
    let again = stack
        .reconcile(
            &reports,
            &gateway::reconcile::Settings {
                pass_rows: 50_000,
                work_dir: std::env::temp_dir(),
                ..Default::default()
            },
            day,
        )
        .await
        .expect("re-run");
    let mut without_lost = expected.clone();
    without_lost.retain(|(_, no, _)| no != "rc_lost");
    assert_eq!(kinds(&again), without_lost);
    assert_eq!(again.stats.passes, 1);
    assert_eq!(again.ours.payments, 9);
    assert_eq!(audit_kinds(&stack, "rc_lost").await.len(), 2);
    let restored: serde_json::Value =
        serde_json::from_str(&Stack::read_object(&s3, &bucket, &json_key).await)
            .expect("JSON report");
    assert_eq!(restored["discrepancies"].as_array().map(Vec::len), Some(6));

    // Each run is one event for the merchant, with its summary; the repaired payment is a
    // payment.paid like any other.
    let events = path.events().await.expect("events");
    let runs: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "reconciliation.discrepancies")
        .collect();
    assert_eq!(runs.len(), 2, "{events:#?}");
    assert_eq!(runs[0]["detail"]["reconciliation"]["discrepancies"], 7);
    assert_eq!(runs[1]["detail"]["reconciliation"]["discrepancies"], 6);
    assert_eq!(runs[0]["detail"]["reconciliation"]["date"], day.to_string());
    assert_ne!(runs[0]["detail"]["event_id"], runs[1]["detail"]["event_id"]);
    assert!(events.iter().any(|e| e["detail-type"] == "payment.paid"
        && e["detail"]["payment"]["out_trade_no"] == "rc_lost"));
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_day_matches_and_agreeing_books_match() {
    let day = today_clear_of_midnight().await;
    let stack = Stack::start().await;
    let reports = gateway::reconcile::Reports::none();
    let settings = gateway::reconcile::Settings {
        pass_rows: 50_000,
        work_dir: std::env::temp_dir(),
        ..Default::default()
    };
    // Nothing here, no bill at Alipay: nothing to match.
    let quiet = stack
        .reconcile(&reports, &settings, day.previous())
        .await
        .expect("quiet day");
    assert_eq!(quiet.status, gateway::reconcile::Status::Matched);
    assert!(!quiet.bill.available);

    create_and_pay(&stack, "rq_1", "12.34").await;
    pay_and_refund(&stack, "rq_2", "99.99", "rq_2_r", "99.99").await;
    stack.simulator.close_day(&day.to_string());
    let report = stack
        .reconcile(&reports, &settings, day)
        .await
        .expect("run");
    assert_eq!(
        report.status,
        gateway::reconcile::Status::Matched,
        "{:#?}",
        report
    );
    assert!(report.discrepancies.is_empty());
    assert_eq!(report.ours.payments, 2);
    assert_eq!(report.ours.gross_fen, 1_234 + 9_999);
    assert_eq!(report.ours.refunded_fen, 9_999);
    assert_eq!(report.alipay.totals, report.ours);
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bill_url_is_signed_works_once_and_only_for_a_finished_day_with_rows() {
    use alipay::request::AlipayRequest;
    use alipay::response::BillUrlResult;
    let day = today_clear_of_midnight().await;
    let stack = Stack::start().await;
    let alipay = stack
        .gateway
        .functions
        .reconcile
        .channel(ChannelId::Primary)
        .expect("alipay");
    let deadline = gateway::deadline::Deadline::after(std::time::Duration::from_secs(30));
    let ask = |day: ChinaDate| {
        let request = AlipayRequest::BillDownloadUrl { bill_date: day };
        async move {
            let answer = alipay
                .call_before(&request, &deadline)
                .await
                .expect("an answer");
            assert!(answer.signed);
            answer
        }
    };
    create_and_pay(&stack, "bu_1", "1.00").await;
    // Today is not over at Alipay; yesterday had no rows: no bill either way.
    for day in [day, day.previous()] {
        let answer = ask(day).await;
        assert_eq!(
            (
                answer.status.code.as_str(),
                answer.status.sub_code.as_deref()
            ),
            ("40004", Some("isp.bill_not_exist")),
            "{day}"
        );
    }
    stack.simulator.close_day(&day.to_string());
    let answer = ask(day).await;
    assert_eq!(answer.status.code, "10000");
    let url = answer
        .parse::<BillUrlResult>("alipay.data.dataservice.bill.downloadurl.query")
        .expect("bill_download_url")
        .bill_download_url;
    let first = stack.http.get(&url).await;
    assert_eq!(first.status, 200);
    let disposition = first.headers["content-disposition"]
        .to_str()
        .expect("ASCII");
    assert!(
        disposition.ends_with(&format!(
            "{}0156_{}.csv.zip",
            gateway_tests::support::SELLER_ID,
            day.compact()
        )),
        "{disposition}"
    );
    assert!(first.text.starts_with("PK"), "a zip");
    // One use.
    assert_eq!(stack.http.get(&url).await.status, 403);
    stack.env.drop_table().await;
}

/// Refunds Alipay executes in the last second of its day and the gateway learns of after
/// Alipay's midnight, one from the refund query (its notification lost: `gmt_refund_pay`, which
/// Alipay returns only when asked) and one from its notification (`gmt_refund` with
/// milliseconds): both are in that day's books, as on that day's bill. Alipay's clock is on
/// yesterday (China time) and ours on today, so a refund filed by our own clock lands elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_alipay_executes_before_its_midnight_are_on_that_days_bill() {
    let today = today_clear_of_midnight().await;
    let day = today.previous();
    let stack = Stack::start_custom(StackOptions {
        // Every payment by bank card; its refunds executed when the test says so.
        refunds: RefundProcessing {
            bank_card_every: 1,
            delay: std::time::Duration::from_secs(3_600),
        },
        ..StackOptions::default()
    })
    .await;
    let sim = &stack.simulator;
    sim.set_china_time(&format!("{day} 23:59:30"))
        .expect("clock");
    for (no, refund_no) in [("mid_q", "mid_q_r"), ("mid_n", "mid_n_r")] {
        create_and_pay_with(&stack, no, "20.00", BANK_CARD).await;
        let answer = refund(
            &stack,
            no,
            json!({"amount": "5.00", "out_request_no": refund_no}),
        )
        .await;
        assert_eq!(answer.status, 202, "{}", answer.text);
    }
    // Alipay executes both in the last second of its day; mid_q's notification is lost.
    sim.set_china_time(&format!("{day} 23:59:59"))
        .expect("clock");
    sim.inject(Fault {
        target: "notify".into(),
        kind: FaultKind::Drop,
        times: 1,
    });
    sim.execute_refund("mid_q", "mid_q_r");
    sim.execute_refund("mid_n", "mid_n_r");
    for no in ["mid_q", "mid_n"] {
        let record = sim.trade(no).expect("trade").refunds[0].clone();
        assert_eq!(record.state, RefundState::Success);
        assert!(
            record.gmt_refund.starts_with(&day.to_string()),
            "{record:?}"
        );
    }
    // Alipay's midnight passes before the gateway learns of them.
    sim.set_china_time(&format!("{today} 00:00:03"))
        .expect("clock");
    let noticed = eventually(60, || async {
        (refund_status(&stack, "mid_n", "mid_n_r").await["refund"]["status"] == "SUCCEEDED")
            .then_some(())
    })
    .await;
    assert!(noticed.is_some(), "mid_n settled by its notification");
    stack.drain(20).await;
    assert_eq!(
        refund_status(&stack, "mid_q", "mid_q_r").await["refund"]["status"],
        "SUCCEEDED"
    );

    let (s3, bucket) = stack.reports_bucket().await;
    let reports = gateway::reconcile::Reports::to_bucket(s3, bucket);
    let settings = gateway::reconcile::Settings {
        pass_rows: 50_000,
        work_dir: std::env::temp_dir(),
        ..Default::default()
    };
    let report = stack
        .reconcile(&reports, &settings, day)
        .await
        .expect("run");
    assert_eq!(
        kinds(&report),
        BTreeSet::new(),
        "{:#?}",
        report.discrepancies
    );
    assert_eq!(report.status, gateway::reconcile::Status::Matched);
    assert_eq!((report.ours.payments, report.ours.refunds), (2, 2));
    assert_eq!(report.alipay.totals.refunds, 2);
}
