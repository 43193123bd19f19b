//! The Antom channel's day reconciled from Antom's reports: the simulated Antom writes its
//! transaction details and next-day settlement (details and summary) from its own ledger,
//! serves them over a real SFTP server on loopback (asyncssh), and the reconcile run fetches
//! them with the key from SSM (the stand-in), the host key pinned. A day of USD, JPY and EUR
//! payments and refunds, with one discrepancy of each kind made on purpose at "Antom", finds
//! each one and nothing else; the dropped notification is repaired from a verified inquiry;
//! a re-run repairs nothing twice.

use std::collections::BTreeSet;
use std::time::Duration;

use alipay::china_time::ChinaDate;
use alipay_sim::antom::{AntomFault, ReportEdit};
use domain::channel::ChannelId;
use gateway::reconcile::{Report, Reports, Settings, Status};
use gateway_tests::merchant::audit_kinds;
use gateway_tests::support::{Stack, StackOptions, now_ms};
use serde_json::{Value, json};

/// How far back the simulated Antom's world is: its payments and refunds happen on a day whose
/// settlement date (the next day) has passed, so a settlement still missing is overdue.
const DAYS_BACK: i64 = 3;

async fn get(stack: &Stack, path: &str) -> Value {
    let answer = stack.http.get(&stack.api(path)).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    answer.json()
}

async fn until(stack: &Stack, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..120 {
        let view = get(stack, path).await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path}: not within 12 s");
}

async fn create(stack: &Stack, out_trade_no: &str, amount: &str, currency: &str) {
    let created = stack
        .http
        .post_json(
            &stack.api("/payments"),
            &json!({"out_trade_no": out_trade_no, "amount": amount, "currency": currency,
                    "subject": "Pro plan", "channel": "page",
                    "return_url": "https://shop.example.com/back"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["payment"]["alipay_channel"], "antom");
}

async fn pay(stack: &Stack, out_trade_no: &str, amount: &str, currency: &str) {
    create(stack, out_trade_no, amount, currency).await;
    stack
        .antom
        .as_ref()
        .expect("antom")
        .pay(out_trade_no)
        .expect("paid at Antom's cashier");
    until(stack, &format!("/payments/{out_trade_no}"), |p| {
        p["status"] == "PAID" && !p["settlement"].is_null()
    })
    .await;
}

/// A refund driven to its end (`?sync=true`), as a merchant would: its final status.
async fn refund(stack: &Stack, out_trade_no: &str, amount: &str, out_request_no: &str) -> String {
    stack.after_spacing().await;
    let answer = stack
        .http
        .post_json(
            &stack.api(&format!("/payments/{out_trade_no}/refunds")),
            &json!({"amount": amount, "out_request_no": out_request_no}),
        )
        .await;
    assert!(
        (200..=202).contains(&answer.status) || answer.status == 422,
        "{}",
        answer.text
    );
    let path = format!("/payments/{out_trade_no}/refunds/{out_request_no}?sync=true");
    let done = until(stack, &path, |r| r["refund"]["status"] != "PENDING").await;
    done["refund"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn kinds(report: &Report) -> BTreeSet<(String, String, String)> {
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

/// The China-time day `DAYS_BACK` ago, after waiting out the last two minutes before its
/// midnight (so that the test's day at "Antom" is one day).
async fn antom_day() -> ChinaDate {
    let back = |now: i64| now / 1000 - DAYS_BACK * 86_400;
    let then = back(now_ms());
    let day = ChinaDate::of_unix(then);
    let midnight = day.start_unix() + 86_400;
    if midnight - then < 120 {
        tokio::time::sleep(Duration::from_secs((midnight - then + 2) as u64)).await;
        return ChinaDate::of_unix(back(now_ms()));
    }
    day
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_antom_reports_finds_each_discrepancy_made_and_nothing_else() {
    let day = antom_day().await;
    let stack = Stack::start_custom(StackOptions {
        antom: true,
        antom_reports: true,
        ..StackOptions::default()
    })
    .await;
    let antom = stack.antom.as_ref().expect("antom");
    antom.set_world_offset_ms(-DAYS_BACK * 86_400_000);
    let mut path = stack.events_path().await;

    // Agreeing books in three currencies: payments, one refunded in part.
    pay(&stack, "ar_ok_usd", "10.99", "USD").await;
    assert_eq!(refund(&stack, "ar_ok_usd", "5.00", "r1").await, "SUCCEEDED");
    pay(&stack, "ar_ok_jpy", "1250", "JPY").await;
    pay(&stack, "ar_ok_eur", "15.00", "EUR").await;

    // A lost notification: paid at Antom, still CREATED here.
    create(&stack, "ar_lost", "20.00", "EUR").await;
    antom.inject("notify", AntomFault::Drop);
    antom.pay("ar_lost").expect("paid at Antom");

    // Antom's report says another amount.
    pay(&stack, "ar_amount", "30.00", "USD").await;
    let edit = |e: ReportEdit| antom.edit_reports(e).expect("edit");
    edit(ReportEdit::SetAmount {
        payment_request_id: "ar_amount".into(),
        value: 3_100,
    });
    // Antom's report lacks a payment we have.
    pay(&stack, "ar_gone", "4000", "JPY").await;
    edit(ReportEdit::Forget {
        payment_request_id: "ar_gone".into(),
    });
    // A refund at Antom we never made.
    pay(&stack, "ar_rhere", "60.00", "EUR").await;
    edit(ReportEdit::AddRefund {
        payment_request_id: "ar_rhere".into(),
        refund_request_id: "ar_rhere-extra".into(),
        value: 600,
    });
    // A refund we have that Antom's report lacks.
    pay(&stack, "ar_rgone", "70.00", "USD").await;
    assert_eq!(refund(&stack, "ar_rgone", "7.00", "r").await, "SUCCEEDED");
    edit(ReportEdit::RemoveRefund {
        refund_request_id: "ar_rgone-r".into(),
    });
    // A refund amount that differs.
    pay(&stack, "ar_ramount", "8000", "JPY").await;
    assert_eq!(refund(&stack, "ar_ramount", "800", "r").await, "SUCCEEDED");
    edit(ReportEdit::SetRefundAmount {
        refund_request_id: "ar_ramount-r".into(),
        value: 880,
    });
    // A refund FAILED here (a signed refusal) that Antom executed after all.
    pay(&stack, "ar_rstatus", "90.00", "EUR").await;
    antom.inject("refund", AntomFault::Refuse);
    assert_eq!(refund(&stack, "ar_rstatus", "9.00", "r").await, "FAILED");
    edit(ReportEdit::AddRefund {
        payment_request_id: "ar_rstatus".into(),
        refund_request_id: "ar_rstatus-r".into(),
        value: 900,
    });
    // Settled at another amount than Antom told us when it was paid.
    pay(&stack, "ar_settle", "40.00", "USD").await;
    let told = antom
        .payment("ar_settle")
        .and_then(|p| p.settlement)
        .expect("a settlement");
    edit(ReportEdit::SetSettlement {
        payment_request_id: "ar_settle".into(),
        value: told.1 + 1,
    });
    // Never settled, and its settlement date has passed.
    pay(&stack, "ar_unsettled", "5000", "JPY").await;
    edit(ReportEdit::Unsettled {
        payment_request_id: "ar_unsettled".into(),
    });

    let (s3, bucket) = stack.reports_bucket().await;
    let reports = Reports::to_bucket(s3.clone(), bucket.clone());
    let settings = Settings {
        pass_rows: 4,
        ..Settings::default()
    }
    .with_ssm(&stack.env.sdk_config);

    // Nothing on the server yet: not ready, nothing decided.
    let early = stack
        .reconcile_channel(ChannelId::Antom, &reports, &settings, day)
        .await
        .expect("early run");
    assert_eq!(early.status, Status::BillNotReady);
    assert!(early.discrepancies.is_empty());
    assert_eq!(audit_kinds(&stack, "ar_lost").await, vec!["order.created"]);

    let sftp = stack.antom_sftp.as_ref().expect("sftp");
    let written = antom
        .write_reports(&day.to_string(), &sftp.base)
        .expect("reports written");
    assert_eq!(written.len(), 1 + 2, "{written:?}");

    let report = stack
        .reconcile_channel(ChannelId::Antom, &reports, &settings, day)
        .await
        .expect("run");
    let expected: BTreeSet<(String, String, String)> = [
        ("paid_at_alipay_not_here", "ar_lost", ""),
        ("here_not_at_alipay", "ar_gone", ""),
        ("amount_differs", "ar_amount", ""),
        ("refund_missing_here", "ar_rhere", "extra"),
        ("refund_missing_at_alipay", "ar_rgone", "r"),
        ("refund_amount_differs", "ar_ramount", "r"),
        ("status_differs", "ar_rstatus", "r"),
        ("settlement_differs", "ar_settle", ""),
        ("settlement_missing", "ar_unsettled", ""),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(kinds(&report), expected, "{:#?}", report.discrepancies);
    assert_eq!(report.status, Status::Discrepancies);
    assert!(report.stats.passes >= 3, "{:?}", report.stats);
    assert_eq!(report.stats.other_day, 0);
    let lost = report
        .discrepancies
        .iter()
        .find(|d| d.out_trade_no == "ar_lost")
        .expect("lost");
    assert!(lost.repaired, "{lost:?}");
    assert_eq!(report.stats.repaired, 1);
    let amount = report
        .discrepancies
        .iter()
        .find(|d| d.out_trade_no == "ar_amount")
        .expect("amount");
    assert_eq!(
        (
            amount.currency.code(),
            amount.provider_amount(),
            amount.our_amount()
        ),
        ("USD", "31.00".into(), "30.00".into())
    );

    // Antom's files agree with themselves (the summary with its details, every <END>).
    let check = report.antom.as_ref().expect("antom check");
    assert!(
        check.transactions_complete && check.settlements_complete,
        "{check:?}"
    );
    assert!(check.summary_mismatches.is_empty(), "{check:?}");
    assert_eq!(check.files.len(), 3, "{check:?}");

    // Antom's side from the simulator's own ledger: every payment and refund of the day,
    // per currency (the forgotten payment and the removed refund are not in its report).
    let payments = antom.payments();
    let refunds = antom.refunds();
    for code in ["USD", "JPY", "EUR"] {
        let paid: Vec<_> = payments
            .iter()
            .filter(|p| {
                p.currency == code && p.paid_ms.is_some() && p.payment_request_id != "ar_gone"
            })
            .collect();
        let totals = &report.currencies.0[code];
        assert_eq!(totals.provider.payments, paid.len() as u64, "{code}");
        let executed: Vec<_> = refunds
            .iter()
            .filter(|r| {
                r.currency == code && r.done_ms.is_some() && r.refund_request_id != "ar_rgone-r"
            })
            .collect();
        assert_eq!(totals.provider.refunds, executed.len() as u64, "{code}");
    }
    // Settled in CNY, with the 1% fee the simulator charges on what it settles (written as a
    // deduction), counted for the payments recorded here on the day that were settled.
    let settlement = report.settlement.as_ref().expect("settlement");
    let fees: i128 = payments
        .iter()
        .filter(|p| !["ar_unsettled", "ar_lost"].contains(&p.payment_request_id.as_str()))
        .filter_map(|p| Some((p.payment_request_id.as_str(), p.settlement.as_ref()?.1)))
        .map(|(id, settled)| {
            let settled = if id == "ar_settle" {
                settled + 1
            } else {
                settled
            };
            -i128::from((settled + 50) / 100)
        })
        .sum();
    assert_eq!(settlement.fees.minor("CNY"), Some(fees), "{settlement:?}");
    assert_eq!(settlement.awaiting, 0);

    // The repair: PAID now, caused by the reconciliation, audited once.
    until(&stack, "/payments/ar_lost", |p| p["status"] == "PAID").await;
    assert_eq!(
        audit_kinds(&stack, "ar_lost").await,
        vec!["order.created", "order.paid"]
    );

    // Stored: the summary item, the JSON and the CSV (one format for every channel).
    let (status, summary) = stack
        .env
        .store
        .reconciliation_summary(ChannelId::Antom, day)
        .await
        .expect("summary")
        .expect("a summary item");
    assert_eq!(status, "discrepancies");
    assert_eq!(summary["counts"]["settlement_missing"], 1);
    assert_eq!(summary["channel"], "antom");
    let [json_key, csv_key] = Reports::keys(day, ChannelId::Antom);
    let csv = Stack::read_object(&s3, &bucket, &csv_key).await;
    assert_eq!(csv.lines().count(), 1 + 9, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("refund_amount_differs,ar_ramount,r,")
                && l.ends_with(",JPY")
                && l.contains(",880,800,")),
        "{csv}"
    );
    let stored: Value =
        serde_json::from_str(&Stack::read_object(&s3, &bucket, &json_key).await).expect("JSON");
    assert_eq!(stored["discrepancies"].as_array().map(Vec::len), Some(9));

    // A re-run replaces the report and repairs nothing twice: the lost payment now matches.
    let again = stack
        .reconcile_channel(
            ChannelId::Antom,
            &reports,
            &Settings::default().with_ssm(&stack.env.sdk_config),
            day,
        )
        .await
        .expect("re-run");
    let mut without_lost = expected.clone();
    without_lost.retain(|(_, no, _)| no != "ar_lost");
    assert_eq!(kinds(&again), without_lost, "{:#?}", again.discrepancies);
    assert_eq!(again.stats.repaired, 0);
    assert_eq!(audit_kinds(&stack, "ar_lost").await.len(), 2);

    // Each run is one event for the merchant; the repaired payment is a payment.paid.
    let events = path.events().await.expect("events");
    let runs: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "reconciliation.discrepancies")
        .collect();
    assert_eq!(runs.len(), 2, "{events:#?}");
    assert_eq!(runs[0]["detail"]["reconciliation"]["discrepancies"], 9);
    assert_eq!(runs[1]["detail"]["reconciliation"]["discrepancies"], 8);
    assert!(events.iter().any(|e| e["detail-type"] == "payment.paid"
        && e["detail"]["payment"]["out_trade_no"] == "ar_lost"));

    // Antom keeps its reports 7 days: a run after that finds none and writes nothing.
    let long_ago = day.add_days(-8);
    let gone = stack
        .reconcile_channel(ChannelId::Antom, &reports, &settings, long_ago)
        .await;
    let error = gone.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("7 days"), "{error}");
    assert!(
        stack
            .env
            .store
            .reconciliation_summary(ChannelId::Antom, long_ago)
            .await
            .expect("read")
            .is_none()
    );
    stack.env.drop_table().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_host_key_is_refused_before_the_login() {
    let stack = Stack::start_custom(StackOptions {
        antom: true,
        antom_reports: true,
        ..StackOptions::default()
    })
    .await;
    let day = ChinaDate::of_unix(now_ms() / 1000).previous();
    // The same server, pinned to another key: the fetch fails, nothing is read or written.
    let mut config = stack.gateway.functions.reconcile.config.clone();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    if let Some(reports) = config.antom.as_mut().and_then(|a| a.reports.as_mut()) {
        reports.host_key = other.into();
    }
    let gateway = gateway::startup::Gateway::with_config(
        config,
        &stack.env.sdk_config,
        gateway::startup::Role::CallsAlipay,
    )
    .await
    .expect("gateway");
    let deadline = gateway::deadline::Deadline::after(Duration::from_secs(30));
    let refused = gateway::reconcile::run(
        &gateway,
        ChannelId::Antom,
        &Reports::none(),
        &Settings::default().with_ssm(&stack.env.sdk_config),
        day,
        &deadline,
    )
    .await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    // Said with the fingerprint of the key the server offered (the local server's).
    let served = gateway::sftp::parse_host_key(&stack.antom_sftp.as_ref().expect("sftp").host_key)
        .expect("host key")
        .fingerprint(Default::default())
        .to_string();
    assert!(
        error.contains("host key") && error.contains(&served),
        "{error}"
    );
    assert!(
        stack
            .env
            .store
            .reconciliation_summary(ChannelId::Antom, day)
            .await
            .expect("read")
            .is_none()
    );
    stack.env.drop_table().await;
}
