//! `make bench`: reconciles a generated Antom day of 1,000 report rows
//! (`ANTOM_RECONCILE_BENCH_ROWS=n,m` for others: 100,000 for the figure in
//! docs/performance.md) through the release `alipay-cli reconcile --channel antom` (the
//! function's code) in a child process: the reports fetched over SFTP from the local server
//! (asyncssh), the key from SSM, the records from the table on the stand-in. Payments in USD,
//! JPY and EUR, one in ten refunded in part; settled in CNY the next day with a 1% fee. Prints
//! report rows, bytes fetched, passes, wall and CPU time, peak RSS, DynamoDB reads per row and
//! the discrepancies (none expected).
//!
//! Needs the release `alipay-cli` (the Makefile builds it) and /usr/bin/time.

use std::fmt::Write as _;
use std::process::Command;

use alipay::china_time::ChinaDate;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
use domain::channel::ChannelId;
use domain::states::{
    Cashier, Currency, Money, Order, OrderStatus, Refund, RefundStatus, SettlementFacts,
};
use gateway_tests::sftp::LocalSftp;
use gateway_tests::support::{APP_ID, SELLER_ID, Stack, fixtures};

const MERCHANT: &str = "1022188000000000001";

/// (currency, minor units of a payment, CNY fen per minor unit ×1000).
fn priced(i: usize) -> (&'static str, u64, u64) {
    match i % 3 {
        0 => ("USD", 100 + (i as u64 * 7919) % 100_000, 7_123),
        1 => ("JPY", 100 + (i as u64 * 104_729) % 100_000, 48),
        _ => ("EUR", 100 + (i as u64 * 7_907) % 100_000, 7_712),
    }
}

fn decimal(minor: i128, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let size = minor.unsigned_abs();
    if currency == "JPY" {
        format!("{sign}{size}")
    } else {
        format!("{sign}{}.{:02}", size / 100, size % 100)
    }
}

/// The day's records as the gateway stores them, and Antom's three reports of them.
fn generate_day(
    day: ChinaDate,
    rows: usize,
    prefix: &str,
) -> (Vec<(Order, Vec<Refund>)>, [String; 3]) {
    let mut records = Vec::new();
    let mut transactions = String::from(
        "customerId,PSP,transactionType,transactionId,originalTransactionId,transactionRequestId,originalTransactionRequestId,paymentMethodType,paymentTime,transactionAmountValue,transactionCurrency\n",
    );
    let mut settlements = String::from(
        "settlementBatchId,customerId,PSP,transactionType,transactionId,transactionRequestId,originalTransactionRequestId,transactionAmountValue,transactionCurrency,settlementAmountValue,settlementCurrency,quoteCurrencyPair,quotePrice,feeAmountValue,feeCurrency\n",
    );
    let (mut count, mut net, mut fees) = ([0u64; 2], [0i128; 2], 0i128);
    let batch = format!("B{}", day.compact());
    let mut n = 0;
    let mut i = 0;
    while n < rows {
        let no = format!("{prefix}{i:07}");
        let (code, minor, rate) = priced(i);
        let currency = Currency::parse(code).expect("currency");
        let paid = Money::from_minor(minor, currency).expect("amount");
        let settled = minor * rate / 1000;
        let fee = (settled + 50) / 100;
        let at = format!(
            "{day} {:02}:{:02}:{:02}",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        );
        let iso = format!("{}T{}+08:00", &at[..10], &at[11..]);
        let payment_id = format!("2026{i:024}");
        let _ = writeln!(
            transactions,
            "{MERCHANT},ANTOM,PAYMENT,{payment_id},,{no},,ALIPAY_CN,{iso},{},{code}",
            decimal(i128::from(minor), code)
        );
        let _ = writeln!(
            settlements,
            "{batch},{MERCHANT},ANTOM,PAYMENT,{payment_id},{no},,{},{code},{},CNY,{code}/CNY,{rate},{},CNY",
            decimal(i128::from(minor), code),
            decimal(i128::from(settled), "CNY"),
            decimal(-i128::from(fee), "CNY"),
        );
        count[0] += 1;
        net[0] += i128::from(settled) - i128::from(fee);
        fees -= i128::from(fee);
        n += 1;
        let out_trade_no = OutTradeNo::parse(&no).expect("id");
        let mut refunds = Vec::new();
        if i % 10 == 0 && n < rows {
            let part = (minor / 2).max(1);
            let back = part * rate / 1000;
            let request = OutRequestNo::parse("r").expect("id");
            let refund_id = format!("{no}-r");
            let _ = writeln!(
                transactions,
                "{MERCHANT},ANTOM,REFUND,R{payment_id},{payment_id},{refund_id},{no},ALIPAY_CN,{iso},{},{code}",
                decimal(-i128::from(part), code)
            );
            let _ = writeln!(
                settlements,
                "{batch},{MERCHANT},ANTOM,REFUND,R{payment_id},{refund_id},{no},{},{code},{},CNY,{code}/CNY,{rate},,",
                decimal(-i128::from(part), code),
                decimal(-i128::from(back), "CNY"),
            );
            count[1] += 1;
            net[1] -= i128::from(back);
            n += 1;
            refunds.push(Refund {
                out_trade_no: out_trade_no.clone(),
                out_request_no: request,
                amount: Money::from_minor(part, currency).expect("amount"),
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
                alipay_channel: ChannelId::Antom,
                unproven_since_ms: None,
            });
        }
        let order = Order {
            out_trade_no,
            amount: paid,
            subject: Subject::parse("Pro plan").expect("subject"),
            channel: Cashier::Page,
            status: OrderStatus::Paid,
            return_url: None,
            time_expire: None,
            trade_no: Some(payment_id),
            paid_amount: Some(paid),
            paid_at: Some(at),
            refunded: Money::zero(currency),
            refundable: paid,
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
            alipay_channel: ChannelId::Antom,
            settlement: Some(SettlementFacts {
                amount: Money::from_minor(settled, Currency::CNY).expect("amount"),
                quote_id: None,
                quote_pair: Some(format!("{code}/CNY")),
                quote_price: None,
                quote_start: None,
                quote_expiry: None,
                buyer_paid: None,
                buyer_rate: None,
            }),
        };
        records.push((order, refunds));
        i += 1;
    }
    transactions.push_str("<END>\n");
    settlements.push_str("<END>\n");
    let mut summary = String::from(
        "settlementBatchId,customerId,PSP,summaryType,settlementInitiatedDate,count,settlementAmountValue,settlementCurrency,feeAmountValue,feeCurrency\n",
    );
    for (k, kind) in ["PAYMENT", "REFUND"].iter().enumerate() {
        let fee = if k == 0 {
            decimal(fees, "CNY")
        } else {
            String::new()
        };
        let fee_currency = if k == 0 { "CNY" } else { "" };
        let _ = writeln!(
            summary,
            "{batch},{MERCHANT},ANTOM,{kind},{},{},{},CNY,{fee},{fee_currency}",
            day.add_days(1),
            count[k],
            decimal(net[k], "CNY")
        );
    }
    summary.push_str("<END>\n");
    (records, [transactions, settlements, summary])
}

#[tokio::main]
async fn main() {
    let cli = gateway_tests::bench::release_binary("alipay-cli");
    assert!(
        cli.exists(),
        "build it first: cargo build --release -p alipay-cli"
    );
    let sizes: Vec<usize> = std::env::var("ANTOM_RECONCILE_BENCH_ROWS")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    println!(
        "| report rows | bytes fetched | pass rows | passes | wall s | CPU s | peak RSS MB | index pages | lookups | DynamoDB reads per row | discrepancies |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let stack = Stack::start().await;
    let sftp = LocalSftp::start();
    let parameter = format!("/bench/{}/antom-sftp-key", uuid::Uuid::new_v4().simple());
    aws_sdk_ssm::Client::new(&stack.env.sdk_config)
        .put_parameter()
        .name(&parameter)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .value(&sftp.client_key)
        .send()
        .await
        .expect("PutParameter");
    let alipay_public =
        std::fs::read_to_string(fixtures().join("keys/alipay_public_key.pem")).expect("key");
    let antom_public =
        std::fs::read_to_string(fixtures().join("keys/antom_public_key.pem")).expect("key");
    let root = format!("/v1/settlements/{MERCHANT}");
    for (n, rows) in sizes.iter().enumerate() {
        // Each size its own day, far enough back that settlement is due.
        let day = ChinaDate::parse("2026-10-01").expect("day");
        let day = (0..n).fold(day, |d, _| d.previous());
        let (records, [transactions, settlements, summary]) =
            generate_day(day, *rows, &format!("a{n}_"));
        stack
            .env
            .store
            .import_day_records(day, &records)
            .await
            .expect("import");
        let folder = |d: ChinaDate| {
            sftp.base
                .join(root.trim_start_matches('/'))
                .join(d.compact())
        };
        std::fs::create_dir_all(folder(day)).expect("folder");
        std::fs::create_dir_all(folder(day.add_days(1))).expect("folder");
        std::fs::write(
            folder(day).join(format!("transactionItems_{}_000.csv", day.compact())),
            transactions,
        )
        .expect("write");
        let batch = format!("B{}", day.compact());
        std::fs::write(
            folder(day.add_days(1)).join(format!("settlementItems_CNY_{batch}_000.csv")),
            settlements,
        )
        .expect("write");
        std::fs::write(
            folder(day.add_days(1)).join(format!("settlementSummary_CNY_{batch}_000.csv")),
            summary,
        )
        .expect("write");
        for pass_rows in [50_000u64, 10_000] {
            let mut command = Command::new("/usr/bin/time");
            command
                .arg("-f")
                .arg("TIME %e %M %U %S")
                .arg(&cli)
                .args([
                    "reconcile",
                    "--date",
                    &day.to_string(),
                    "--channel",
                    "antom",
                ])
                .env("ORDERS_TABLE", &stack.env.table)
                .env("KMS_KEY_ID", &stack.env.key_alias)
                .env("ALIPAY_APP_ID", APP_ID)
                .env("ALIPAY_SELLER_ID", SELLER_ID)
                .env("ALIPAY_PUBLIC_KEY", &alipay_public)
                .env("ALIPAY_GATEWAY_URL", stack.simulator.gateway_url())
                .env("ALIPAY_NOTIFY_URL", "http://127.0.0.1:9/notify")
                .env("ANTOM_CLIENT_ID", "SANDBOX_5YBENCH")
                .env("ANTOM_PUBLIC_KEY", &antom_public)
                .env("ANTOM_GATEWAY_URL", "http://127.0.0.1:9")
                .env("ANTOM_CURRENCIES", "USD,JPY,EUR")
                .env("ANTOM_SFTP_HOST", "127.0.0.1")
                .env("ANTOM_SFTP_PORT", sftp.port.to_string())
                .env("ANTOM_SFTP_USER", &sftp.user)
                .env("ANTOM_SFTP_HOST_KEY", &sftp.host_key)
                .env("ANTOM_SFTP_KEY_PARAMETER", &parameter)
                .env("ANTOM_REPORTS_ROOT", &root)
                .env("ANTOM_SETTLEMENT_DAYS", "1")
                .env("RECONCILE_PASS_ROWS", pass_rows.to_string())
                .env_remove("RECONCILE_BUCKET");
            let run = gateway_tests::bench::timed_reconcile(&mut command);
            let (summary, wall, cpu) = (&run.summary, run.wall_s, run.cpu_s);
            let stats = &summary["stats"];
            let report_rows = summary["antom"]["transaction_rows"].as_u64().unwrap_or(0)
                + summary["antom"]["settlement_rows"].as_u64().unwrap_or(0);
            let pages = stats["index_pages"].as_u64().unwrap_or(0);
            let lookups = stats["lookups"].as_u64().unwrap_or(0);
            println!(
                "| {report_rows} | {} | {pass_rows} | {} | {wall:.2} | {cpu:.2} | {:.1} | {pages} | {lookups} | {:.4} | {} |",
                summary["bill"]["bytes"],
                stats["passes"],
                run.peak_mb,
                (pages + lookups) as f64 / report_rows.max(1) as f64,
                summary["discrepancies"]
            );
            assert_eq!(summary["discrepancies"], 0, "{}", run.stderr);
        }
    }
    stack.env.drop_table().await;
}
