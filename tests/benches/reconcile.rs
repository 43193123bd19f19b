//! `make bench`: reconciles a generated day of 1,000 payments (RECONCILE_BENCH_ROWS=n,m for
//! others; 10% with a refund; on moto a GSI Query scans the table, so beyond ~5,000 it hits the
//! SDK time-out)
//! against a table holding them on the local stand-in, through the release `alipay-cli
//! reconcile` (the function's code) in a child process, so that its time and peak memory are
//! its own. Prints rows, passes, wall time, peak RSS, DynamoDB reads per row.
//!
//! Needs the release `alipay-cli` (the Makefile builds it) and /usr/bin/time.

use std::process::Command;

use alipay::china_time::ChinaDate;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
use alipay::money::Amount;
use alipay_sim::{BALANCE, RefundRecord, RefundState, Trade};
use domain::states::{Cashier, Order, OrderStatus, Refund, RefundStatus};
use gateway_tests::support::{APP_ID, SELLER_ID, Stack, fixtures};

fn day_records(
    day: ChinaDate,
    rows: usize,
    prefix: &str,
) -> (Vec<Trade>, Vec<(Order, Vec<Refund>)>) {
    let mut trades = Vec::with_capacity(rows);
    let mut records = Vec::with_capacity(rows);
    for i in 0..rows {
        let no = format!("{prefix}{i:07}");
        let fen = 100 + (i as u64 * 7919) % 100_000;
        let trade_no = format!("2026{i:024}");
        let at = format!(
            "{day} {:02}:{:02}:{:02}",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        );
        let refund = (i % 10 == 0).then(|| (format!("{no}_r"), fen / 2));
        trades.push(Trade {
            out_trade_no: no.clone(),
            trade_no: trade_no.clone(),
            total_amount: format!("{}.{:02}", fen / 100, fen % 100),
            total_fen: fen,
            subject: "会员, 年卡".into(),
            status: "TRADE_SUCCESS".into(),
            method: "alipay.trade.precreate".into(),
            notify_url: None,
            return_url: None,
            buyer_id: "2088000000000002".into(),
            refunded_fen: refund.as_ref().map_or(0, |r| r.1),
            refunds: refund
                .iter()
                .map(|(r, f)| RefundRecord {
                    out_request_no: r.clone(),
                    refund_amount: format!("{}.{:02}", f / 100, f % 100),
                    executions: 1,
                    requests: 1,
                    gmt_refund: at.clone(),
                    state: RefundState::Success,
                })
                .collect(),
            gmt_create: at.clone(),
            gmt_payment: Some(at.clone()),
            expires_at: None,
            refund_requests_ms: Vec::new(),
            fund_channel: BALANCE.into(),
            min_age: None,
        });
        let out_trade_no = OutTradeNo::parse(&no).expect("id");
        let amount = Amount::from_fen(fen).expect("amount");
        let order = Order {
            out_trade_no: out_trade_no.clone(),
            amount: amount.into(),
            subject: Subject::parse("会员, 年卡").expect("subject"),
            channel: Cashier::Qr,
            status: OrderStatus::Paid,
            return_url: None,
            time_expire: None,
            trade_no: Some(trade_no),
            paid_amount: Some(amount.into()),
            paid_at: Some(at.clone()),
            refunded: Amount::ZERO.into(),
            refundable: amount.into(),
            buyer_id_masked: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 2,
            fingerprint: String::new(),
            due_at_ms: None,
            sweeps: 0,
            paid_after_close: false,
            customer_ref: None,
            risk_rules: Vec::new(),
            decision: None,
            hold: None,
            alipay_channel: domain::channel::ChannelId::Primary,
            settlement: None,
        };
        let refunds = refund
            .into_iter()
            .map(|(r, f)| Refund {
                out_trade_no: out_trade_no.clone(),
                out_request_no: OutRequestNo::parse(&r).expect("id"),
                amount: Amount::from_fen(f).expect("amount").into(),
                reason: None,
                status: RefundStatus::Succeeded,
                failure_code: None,
                failure_message: None,
                created_at_ms: 0,
                updated_at_ms: 0,
                last_send_ms: 0,
                sends: 1,
                due_at_ms: None,
                sweeps: 0,
                alipay_channel: domain::channel::ChannelId::Primary,
                unproven_since_ms: None,
            })
            .collect();
        records.push((order, refunds));
    }
    (trades, records)
}

#[tokio::main]
async fn main() {
    let cli = gateway_tests::bench::release_binary("alipay-cli");
    assert!(
        cli.exists(),
        "build it first: cargo build --release -p alipay-cli"
    );
    let sizes: Vec<usize> = std::env::var("RECONCILE_BENCH_ROWS")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    // Wall time is mostly the stand-in's (moto answers a GSI Query by scanning the table); CPU
    // time (user + system) is the reconciler's own: download, GBK, CSV, matching.
    println!(
        "| payments | bill rows | pass rows | passes | wall s | CPU s | peak RSS MB | index pages | lookups | DynamoDB reads per row | discrepancies |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Each size is its own day (days back from 2026-10-01), in one table and one simulator.
    let stack = Stack::start().await;
    let alipay_public =
        std::fs::read_to_string(fixtures().join("keys/alipay_public_key.pem")).expect("key");
    for (n, rows) in sizes.iter().enumerate() {
        let day = ChinaDate::parse("2026-10-01").expect("day");
        let day = (0..n).fold(day, |d, _| d.previous());
        let (trades, records) = day_records(day, *rows, &format!("b{n}_"));
        stack.simulator.import_trades(trades);
        stack
            .env
            .store
            .import_day_records(day, &records)
            .await
            .expect("import");
        for pass_rows in [50_000u64, 10_000] {
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-f")
                .arg("TIME %e %M %U %S")
                .arg(&cli)
                .args(["reconcile", "--date", &day.to_string()])
                .env("ORDERS_TABLE", &stack.env.table)
                .env("KMS_KEY_ID", &stack.env.key_alias)
                .env("ALIPAY_APP_ID", APP_ID)
                .env("ALIPAY_SELLER_ID", SELLER_ID)
                .env("ALIPAY_PUBLIC_KEY", &alipay_public)
                .env("ALIPAY_GATEWAY_URL", stack.simulator.gateway_url())
                .env("ALIPAY_NOTIFY_URL", "http://127.0.0.1:9/notify")
                .env("ALIPAY_TIMEOUT_MS", "30000")
                .env("RECONCILE_PASS_ROWS", pass_rows.to_string())
                .env_remove("RECONCILE_BUCKET");
            let run = gateway_tests::bench::timed_reconcile(&mut command);
            let (summary, wall, cpu) = (&run.summary, run.wall_s, run.cpu_s);
            let stats = &summary["stats"];
            let bill_rows = summary["bill"]["rows"].as_u64().unwrap_or(0);
            let pages = stats["index_pages"].as_u64().unwrap_or(0);
            let lookups = stats["lookups"].as_u64().unwrap_or(0);
            println!(
                "| {rows} | {bill_rows} | {pass_rows} | {} | {wall:.2} | {cpu:.2} | {:.1} | {pages} | {lookups} | {:.4} | {} |",
                stats["passes"],
                run.peak_mb,
                (pages + lookups) as f64 / bill_rows.max(1) as f64,
                summary["discrepancies"]
            );
        }
    }
    stack.env.drop_table().await;
}
