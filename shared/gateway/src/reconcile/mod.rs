//! The daily reconciliation (the reconcile function runs it every day at 10:30 China time, by
//! EventBridge Scheduler, or by hand for any date): Alipay's bill of one China-time day matched
//! with our payments and refunds of that day, lost notifications repaired (verified with a trade
//! query), the report written.
//!
//! 1. `alipay.data.dataservice.bill.downloadurl.query` (signed through KMS, answer verified);
//!    `isp.bill_not_exist` means not ready (or no activity at Alipay).
//! 2. The zip is streamed to a temporary file (the URL lives 30 s), then read as a stream.
//! 3. A first pass over the detail rows adds up Alipay's side and checks the footer and the
//!    summary file against the rows.
//! 4. Matching runs in passes over ranges of the order-number hash: each pass reads only its
//!    range of the day index (`DayIndexV2`, 16 Queries, no Scan) into memory, so memory is bounded
//!    by `RECONCILE_PASS_ROWS`, not by the size of the day.
//! 5. The report goes to S3 (JSON and CSV), its summary to the table (`RECON#<day>`), its
//!    counts to CloudWatch (EMF). A re-run replaces all three; a repair is a conditional state
//!    change, so it is never applied twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub mod antom_reports;

use crate::channel::Channel;
use crate::clock::now_ms;
use crate::deadline::Deadline;
use crate::payments::{Ended, apply_paid_because};
use crate::provider::Provider as _;
use crate::startup::Gateway;
use alipay::bill::{BillArchive, BillError, Footer, SummaryTotals};
use alipay::china_time::ChinaDate;
use alipay::ids::OutTradeNo;
use alipay::request::AlipayRequest;
use alipay::response::BillUrlResult;
use domain::channel::ChannelId;
use domain::reconciliation::{
    BillTotals, ByCurrency, Category, DayEntry, Discrepancy, Ledger, Row, RowMatch,
    SettlementTotals, Totals, Unrecorded, classify_unrecorded, pass_of, pass_range, signed_yuan,
};
use domain::states::Cause;
use serde::Serialize;
use serde_json::{Value, json};
use store::{DAY_SHARDS, StoreError, bill_hash};

/// A bill larger than this is refused (100,000 rows zip to about 3 MB).
const MAX_BILL_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Alipay: {0}")]
    Alipay(String),
    #[error("the bill: {0}")]
    Bill(String),
    #[error("the order store: {0}")]
    Store(String),
    #[error("writing the report: {0}")]
    Report(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("Antom's SFTP server: {0}")]
    Antom(String),
    #[error("Antom's reports: {0}")]
    Reports(String),
}

impl From<StoreError> for ReconcileError {
    fn from(error: StoreError) -> Self {
        ReconcileError::Store(error.to_string())
    }
}

impl From<BillError> for ReconcileError {
    fn from(error: BillError) -> Self {
        ReconcileError::Bill(error.to_string())
    }
}

/// Tuning, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Records matched per pass (`RECONCILE_PASS_ROWS`, default 50,000): the memory bound.
    pub pass_rows: u64,
    /// Where the bill is downloaded to (`RECONCILE_WORK_DIR`, default the system's temp dir).
    pub work_dir: PathBuf,
    /// Reads the Antom SFTP key (`ANTOM_SFTP_KEY_PARAMETER`).
    pub ssm: Option<aws_sdk_ssm::Client>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            pass_rows: 50_000,
            work_dir: std::env::temp_dir(),
            ssm: None,
        }
    }
}

impl Settings {
    /// With an SSM client from `sdk` (the Antom channel's SFTP key).
    pub fn with_ssm(mut self, sdk: &aws_config::SdkConfig) -> Settings {
        self.ssm = Some(aws_sdk_ssm::Client::new(sdk));
        self
    }

    pub fn from_env() -> Result<Settings, String> {
        let pass_rows = match std::env::var("RECONCILE_PASS_ROWS") {
            Ok(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or("RECONCILE_PASS_ROWS must be a positive integer")?,
            Err(_) => 50_000,
        };
        Ok(Settings {
            pass_rows,
            work_dir: std::env::var_os("RECONCILE_WORK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            ssm: None,
        })
    }
}

/// Where reports go: the S3 bucket (`RECONCILE_BUCKET`); none configured writes only the summary.
pub struct Reports {
    s3: Option<(aws_sdk_s3::Client, String)>,
}

impl Reports {
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Reports, String> {
        let Ok(bucket) = std::env::var("RECONCILE_BUCKET") else {
            return Ok(Reports { s3: None });
        };
        // A local stand-in (AWS_ENDPOINT_URL) has no bucket host names: use path-style there.
        let local = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(local)
            .build();
        Ok(Reports::to_bucket(
            aws_sdk_s3::Client::from_conf(config),
            bucket,
        ))
    }

    pub fn to_bucket(client: aws_sdk_s3::Client, bucket: String) -> Reports {
        Reports {
            s3: Some((client, bucket)),
        }
    }

    pub fn none() -> Reports {
        Reports { s3: None }
    }

    /// The object keys of a day's report (another channel's under its name).
    pub fn keys(day: ChinaDate, channel: ChannelId) -> [String; 2] {
        let folder = match channel {
            ChannelId::Primary => format!("reconciliation/{day}"),
            other => format!("reconciliation/{day}/{other}"),
        };
        [
            format!("{folder}/report.json"),
            format!("{folder}/report.csv"),
        ]
    }

    async fn put(&self, day: ChinaDate, report: &Report) -> Result<Vec<String>, ReconcileError> {
        let Some((client, bucket)) = &self.s3 else {
            return Ok(Vec::new());
        };
        let [json_key, csv_key] = Reports::keys(day, report.channel);
        let json =
            serde_json::to_vec_pretty(report).map_err(|e| ReconcileError::Report(e.to_string()))?;
        let csv = report.csv()?;
        for (key, body, content_type) in [
            (&json_key, json, "application/json"),
            (&csv_key, csv, "text/csv; charset=utf-8"),
        ] {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(body.into())
                .send()
                .await
                .map_err(|e| {
                    ReconcileError::Report(format!(
                        "s3://{bucket}/{key}: {}",
                        store::error_chain(&e)
                    ))
                })?;
        }
        Ok(vec![
            format!("s3://{bucket}/{json_key}"),
            format!("s3://{bucket}/{csv_key}"),
        ])
    }
}

/// The day an invocation is about: `{"date": "yyyy-MM-dd"}`, or (a scheduled event) the
/// previous China-time day. A day not yet begun is refused.
/// The channel an event names (`{"channel": "secondary"}`, `"antom"`); none: the primary.
/// Each channel has its own bill (Antom: its reports) and its own schedule.
pub fn channel_of_event(payload: &Value) -> Result<ChannelId, String> {
    match payload.get("channel") {
        None | Some(Value::Null) => Ok(ChannelId::Primary),
        Some(Value::String(name)) => ChannelId::parse(name)
            .ok_or_else(|| format!("channel: {name} is not primary, secondary or antom")),
        Some(_) => Err("channel: must be \"primary\", \"secondary\" or \"antom\"".into()),
    }
}

pub fn day_of_event(payload: &Value, now_ms: i64) -> Result<ChinaDate, String> {
    let today = ChinaDate::of_unix(now_ms.div_euclid(1000));
    match payload.get("date") {
        None | Some(Value::Null) => Ok(today.previous()),
        Some(Value::String(text)) => {
            let day = ChinaDate::parse(text).map_err(|e| format!("date: {e}"))?;
            if day > today {
                return Err(format!("date: {day} has not begun in China time"));
            }
            Ok(day)
        }
        Some(_) => Err("date: must be a string like \"2026-11-26\"".into()),
    }
}

/// What an invocation asks: a channel's day, and whether a day already reconciled is left as
/// it is (`"if_not_ready": true`, the Antom schedule's retries: only a day whose reports were
/// not there yet is run again). `"after_settlement": true` (Antom) means the day whose
/// settlement date has just passed: `ANTOM_SETTLEMENT_DAYS` + 1 days ago.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub channel: ChannelId,
    pub day: ChinaDate,
    pub if_not_ready: bool,
}

pub fn request_of_event(
    payload: &Value,
    now_ms: i64,
    settlement_days: Option<u32>,
) -> Result<Request, String> {
    let channel = channel_of_event(payload)?;
    let flag = |name: &str| match payload.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{name}: must be true or false")),
    };
    let day = if flag("after_settlement")? {
        if payload.get("date").is_some_and(|d| !d.is_null()) {
            return Err("after_settlement and date: one or the other".into());
        }
        let days = settlement_days
            .filter(|_| channel == ChannelId::Antom)
            .ok_or("after_settlement: only for the antom channel, with its reports configured")?;
        ChinaDate::of_unix(now_ms.div_euclid(1000)).add_days(-i64::from(days) - 1)
    } else {
        day_of_event(payload, now_ms)?
    };
    Ok(Request {
        channel,
        day,
        if_not_ready: flag("if_not_ready")?,
    })
}

/// Runs what an event asks; the summary of the day's report (the one already stored when
/// `if_not_ready` finds the day done).
pub async fn run_event(
    gateway: &Gateway,
    reports: &Reports,
    settings: &Settings,
    event: &Value,
    deadline: &Deadline,
    function_name: &str,
) -> Result<Value, String> {
    let settlement_days = gateway
        .config
        .antom
        .as_ref()
        .and_then(|a| a.reports.as_ref())
        .map(|r| r.settlement_days);
    let request = request_of_event(event, now_ms(), settlement_days)?;
    if request.if_not_ready
        && let Some((status, summary)) = gateway
            .store
            .reconciliation_summary(request.channel, request.day)
            .await
            .map_err(|e| e.to_string())?
        && status != Status::BillNotReady.as_str()
    {
        tracing::info!(date = %request.day, channel = %request.channel, status, "already reconciled");
        return Ok(summary);
    }
    let report = run(
        gateway,
        request.channel,
        reports,
        settings,
        request.day,
        deadline,
    )
    .await
    .map_err(|e| e.to_string())?;
    println!("{}", report.emf_line(function_name));
    Ok(report.summary())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every row matched and the bill's own totals agree with its rows.
    Matched,
    Discrepancies,
    /// Alipay has no bill for the day (not ready yet, or no activity there) while we have
    /// records of it: run again later.
    BillNotReady,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::Discrepancies => "discrepancies",
            Status::BillNotReady => "bill_not_ready",
        }
    }
}

/// What the bill says about itself, checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BillCheck {
    pub available: bool,
    pub bytes: u64,
    pub rows: u64,
    pub footer: Footer,
    /// The footer's counts and `商家实收` sums equal the rows'.
    pub footer_matches: bool,
    pub summary: Option<SummaryTotals>,
    /// The summary's `合计` row equals the rows' counts and sums.
    pub summary_matches: Option<bool>,
}

/// How the run went, for the benchmark and the operator.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub passes: u32,
    pub index_queries: u32,
    pub index_pages: u32,
    /// Orders read one by one: rows the day's records did not hold.
    pub lookups: u32,
    /// Rows matched with a record of a neighbouring day (near midnight): not discrepancies.
    pub other_day: u64,
    pub repaired: u64,
    /// The most records held in memory at once.
    pub peak_records: u64,
}

/// A day's reconciliation report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub date: String,
    /// The channel whose bill this is (each Alipay application has its own).
    pub channel: ChannelId,
    pub status: Status,
    pub generated_at_ms: i64,
    pub bill: BillCheck,
    pub alipay: BillTotals,
    pub ours: Totals,
    /// Both sides per currency (the sums above add minor units of every currency).
    pub currencies: ByCurrency,
    /// Antom: its reports' own checks and the day's settlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub antom: Option<antom_reports::AntomCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementTotals>,
    pub counts: BTreeMap<&'static str, u64>,
    pub discrepancies: Vec<Discrepancy>,
    pub stats: Stats,
    pub objects: Vec<String>,
}

impl Report {
    fn new(day: ChinaDate, channel: ChannelId) -> Report {
        Report {
            date: day.to_string(),
            channel,
            status: Status::Matched,
            generated_at_ms: now_ms(),
            bill: BillCheck::default(),
            alipay: BillTotals::default(),
            ours: Totals::default(),
            currencies: ByCurrency::default(),
            antom: None,
            settlement: None,
            counts: Category::ALL.iter().map(|c| (c.as_str(), 0)).collect(),
            discrepancies: Vec::new(),
            stats: Stats::default(),
            objects: Vec::new(),
        }
    }

    /// The report without its list of discrepancies: the table's summary item, the answer.
    pub fn summary(&self) -> Value {
        json!({
            "date": self.date,
            "channel": self.channel,
            "status": self.status,
            "generated_at_ms": self.generated_at_ms,
            "bill": self.bill,
            "alipay": self.alipay,
            "ours": self.ours,
            "currencies": self.currencies,
            "antom": self.antom,
            "settlement": self.settlement,
            "counts": self.counts,
            "discrepancies": self.discrepancies.len(),
            "stats": self.stats,
            "objects": self.objects,
        })
    }

    /// One CSV line per discrepancy (UTF-8 with a BOM, so that spreadsheet programs read it),
    /// amounts as decimals of the line's `currency`.
    pub fn csv(&self) -> Result<Vec<u8>, ReconcileError> {
        let mut out = Vec::from("\u{feff}".as_bytes());
        {
            let mut writer = csv::Writer::from_writer(&mut out);
            let error = |e: csv::Error| ReconcileError::Report(e.to_string());
            writer
                .write_record([
                    "date",
                    "category",
                    "out_trade_no",
                    "out_request_no",
                    "trade_no",
                    "alipay_amount",
                    "our_amount",
                    "repaired",
                    "bill_line",
                    "detail",
                    "currency",
                ])
                .map_err(error)?;
            for d in &self.discrepancies {
                writer
                    .write_record([
                        self.date.as_str(),
                        d.category.as_str(),
                        &d.out_trade_no,
                        d.out_request_no.as_deref().unwrap_or(""),
                        d.trade_no.as_deref().unwrap_or(""),
                        &d.provider_amount(),
                        &d.our_amount(),
                        if d.repaired { "yes" } else { "no" },
                        &d.bill_line.map(|l| l.to_string()).unwrap_or_default(),
                        &d.detail,
                        d.currency.code(),
                    ])
                    .map_err(error)?;
            }
            writer
                .flush()
                .map_err(|e| ReconcileError::Report(e.to_string()))?;
        }
        Ok(out)
    }

    /// EMF: one metric per category, the total, and the bill's own checks.
    pub fn emf_line(&self, function_name: &str) -> String {
        let mut metrics = vec![
            json!({"Name": "Discrepancies", "Unit": "Count"}),
            json!({"Name": "BillNotReady", "Unit": "Count"}),
            json!({"Name": "BillTotalsMismatch", "Unit": "Count"}),
            json!({"Name": "Repaired", "Unit": "Count"}),
        ];
        let mut line = json!({
            "Function": function_name,
            "Date": self.date,
            "Discrepancies": self.discrepancies.len(),
            "BillNotReady": u8::from(self.status == Status::BillNotReady),
            "BillTotalsMismatch": u8::from(self.bill.available && !self.bill_totals_match()),
            "Repaired": self.stats.repaired,
        });
        for category in Category::ALL {
            metrics.push(json!({"Name": category.metric(), "Unit": "Count"}));
            line[category.metric()] =
                json!(self.counts.get(category.as_str()).copied().unwrap_or(0));
        }
        line["_aws"] = json!({
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "AlipayGateway/Reconciliation",
                "Dimensions": [["Function"]],
                "Metrics": metrics,
            }]
        });
        line.to_string()
    }

    fn bill_totals_match(&self) -> bool {
        match &self.antom {
            Some(check) => check.totals_match(),
            None => self.bill.footer_matches && self.bill.summary_matches != Some(false),
        }
    }

    /// Discrepancies in report order, and the status they and the provider's own totals give.
    fn conclude(&mut self) {
        domain::reconciliation::sort(&mut self.discrepancies);
        self.status = if self.discrepancies.is_empty() && self.bill_totals_match() {
            Status::Matched
        } else {
            Status::Discrepancies
        };
    }

    fn push(&mut self, discrepancy: Discrepancy) {
        if let Some(count) = self.counts.get_mut(discrepancy.category.as_str()) {
            *count += 1;
        }
        self.discrepancies.push(discrepancy);
    }
}

/// Removes the downloaded bill whatever happens.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reconciles `day`: see the module documentation.
#[tracing::instrument(skip_all, fields(date = %day))]
pub async fn run(
    gateway: &Gateway,
    channel: ChannelId,
    reports: &Reports,
    settings: &Settings,
    day: ChinaDate,
    deadline: &Deadline,
) -> Result<Report, ReconcileError> {
    if channel == ChannelId::Antom {
        return antom_reports::run(gateway, reports, settings, day, deadline).await;
    }
    let alipay = gateway
        .channel(channel)
        .map_err(|e| ReconcileError::Config(e.to_string()))?;
    let mut report = Report::new(day, channel);
    let file = TempFile(settings.work_dir.join(format!(
        "alipay-bill-{day}-{channel}-{}.zip",
        uuid::Uuid::new_v4()
    )));
    match download(alipay, day, &file.0, deadline).await? {
        Some(bytes) => {
            report.bill.available = true;
            report.bill.bytes = bytes;
        }
        None => return not_ready(gateway, reports, report, day).await,
    }
    check_bill(&file.0, &mut report)?;
    let rows = report.bill.rows;
    let passes = u32::try_from(rows.div_ceil(settings.pass_rows).max(1)).unwrap_or(u32::MAX);
    report.stats.passes = passes;
    for pass in 0..passes {
        let mut ledger = Ledger::default();
        load_pass(
            gateway,
            channel,
            day,
            (pass, passes),
            &mut ledger,
            &mut report,
            |_| {},
        )
        .await?;
        report.stats.peak_records = report.stats.peak_records.max(ledger.len() as u64);
        let unrecorded = match_pass(&file.0, pass, passes, &mut ledger, &mut report)?;
        for row in unrecorded {
            look_up(gateway, channel, day, &row, &mut report, deadline).await?;
        }
        for left in ledger.leftovers() {
            report.push(left);
        }
    }
    report.conclude();
    finish(gateway, reports, report, day).await
}

/// Asks for the bill's URL and downloads it: `None` when Alipay has no bill for the day.
async fn download(
    alipay: &Channel,
    day: ChinaDate,
    path: &std::path::Path,
    deadline: &Deadline,
) -> Result<Option<u64>, ReconcileError> {
    let request = AlipayRequest::BillDownloadUrl { bill_date: day };
    let answer = alipay
        .call_before(&request, deadline)
        .await
        .map_err(|e| ReconcileError::Alipay(e.to_string()))?;
    if !answer.signed {
        return Err(ReconcileError::Alipay(format!(
            "an unsigned answer {} {}",
            answer.status.code,
            answer.status.sub_code.as_deref().unwrap_or("")
        )));
    }
    match (
        answer.status.code.as_str(),
        answer.status.sub_code.as_deref(),
    ) {
        ("10000", _) => {}
        // Not ready yet, or no activity at Alipay that day (docs/alipay/operations.md §2: both spellings).
        ("40004", Some("isp.bill_not_exist" | "BILL_NOT_EXIST")) => return Ok(None),
        (code, sub_code) => {
            return Err(ReconcileError::Alipay(format!(
                "{code} {}",
                sub_code.unwrap_or("")
            )));
        }
    }
    let url = answer
        .parse::<BillUrlResult>(request.method())
        .map_err(|e| ReconcileError::Alipay(e.to_string()))?
        .bill_download_url;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ReconcileError::Bill(format!("{}: {e}", path.display())))?;
    // The URL lives 30 seconds: download at once, within what the deadline leaves.
    let limit = deadline
        .remaining()
        .saturating_sub(Duration::from_secs(5))
        .min(Duration::from_secs(120));
    let bytes = alipay
        .client
        .download(&url, &mut file, MAX_BILL_BYTES, limit)
        .await
        .map_err(|e| ReconcileError::Alipay(format!("downloading the bill: {e}")))?;
    tracing::info!(bytes, "bill downloaded");
    Ok(Some(bytes))
}

/// The first pass: Alipay's totals, the footer and the summary checked against the rows.
fn check_bill(path: &std::path::Path, report: &mut Report) -> Result<(), ReconcileError> {
    let file = std::fs::File::open(path).map_err(|e| ReconcileError::Bill(e.to_string()))?;
    let mut archive = BillArchive::open(std::io::BufReader::new(file))?;
    let mut totals = BillTotals::default();
    let mut rows = 0u64;
    let footer = {
        let mut detail = archive.detail()?;
        for row in detail.by_ref() {
            totals.add(&row?);
            rows += 1;
        }
        detail.footer()
    };
    let summary = archive.summary()?;
    let payments_agree = footer
        .payments
        .is_some_and(|d| d.count == totals.totals.payments && d.fen == totals.received_fen);
    let refunds_agree = match footer.refunds {
        Some(d) => d.count == totals.totals.refunds && d.fen == totals.refund_received_fen,
        None => totals.totals.refunds == 0,
    };
    report.bill.footer_matches = footer.complete && payments_agree && refunds_agree;
    report.bill.summary_matches = summary.as_ref().map(|s| {
        s.payments == totals.totals.payments
            && s.refunds == totals.totals.refunds
            && s.received_fen == totals.received_fen + totals.refund_received_fen
            && s.fee_fen == totals.fee_fen + totals.refund_fee_fen
    });
    if !report.bill.footer_matches {
        tracing::error!(
            rows,
            payments = totals.totals.payments,
            received = %signed_yuan(totals.received_fen),
            "the bill's footer does not match its rows"
        );
    }
    report.bill.footer = footer;
    report.bill.summary = summary;
    report.bill.rows = rows;
    report.alipay = totals;
    Ok(())
}

/// Our records of the day in this pass's hash range: one Query per shard, one after another
/// (a batch job; at most 16 pages of 1 MB in flight would only shorten a minutes-long run).
/// `also` sees each record before the ledger takes it (Antom's settlement book).
async fn load_pass(
    gateway: &Gateway,
    channel: ChannelId,
    day: ChinaDate,
    (pass, passes): (u32, u32),
    ledger: &mut Ledger,
    report: &mut Report,
    mut also: impl FnMut(&DayEntry),
) -> Result<(), ReconcileError> {
    let (low, high) = pass_range(pass, passes);
    for shard in 0..DAY_SHARDS {
        let (entries, pages) = gateway
            .store
            .day_entries(channel, day, shard, low, high)
            .await?;
        report.stats.index_queries += 1;
        report.stats.index_pages += pages;
        for entry in entries {
            also(&entry);
            ledger.add(entry, &mut report.ours, &mut report.currencies);
        }
    }
    Ok(())
}

/// Streams the detail rows of this pass through the ledger; returns the rows to look up.
fn match_pass(
    path: &std::path::Path,
    pass: u32,
    passes: u32,
    ledger: &mut Ledger,
    report: &mut Report,
) -> Result<Vec<Row>, ReconcileError> {
    let file = std::fs::File::open(path).map_err(|e| ReconcileError::Bill(e.to_string()))?;
    let mut archive = BillArchive::open(std::io::BufReader::new(file))?;
    let mut unrecorded = Vec::new();
    for row in archive.detail()? {
        let row = row?;
        if pass_of(bill_hash(&row.out_trade_no), passes) != pass {
            continue;
        }
        let row = Row::of_bill(&row).ok_or_else(|| {
            ReconcileError::Bill(format!("line {}: an amount beyond any payment", row.line))
        })?;
        report.currencies.add_row(&row);
        match ledger.match_row(&row) {
            RowMatch::Matched | RowMatch::Ignored => {}
            RowMatch::Differs(discrepancy) => report.push(discrepancy),
            RowMatch::LookUp => unrecorded.push(row),
        }
    }
    Ok(unrecorded)
}

/// A row the day's records do not hold: read its order, decide, and repair a lost notification
/// (only from a verified trade query or inquiry of the channel the order was created through).
async fn look_up(
    gateway: &Gateway,
    channel: ChannelId,
    day: ChinaDate,
    row: &Row,
    report: &mut Report,
    deadline: &Deadline,
) -> Result<(), ReconcileError> {
    report.stats.lookups += 1;
    let stored = match OutTradeNo::parse(&row.out_trade_no) {
        Ok(no) => gateway.store.get_order_with_refunds(&no).await?,
        Err(_) => None,
    };
    let decided = classify_unrecorded(row, stored.as_ref().map(|(o, r)| (o, r.as_slice())));
    let order = match decided {
        Unrecorded::OtherDay => {
            report.stats.other_day += 1;
            return Ok(());
        }
        Unrecorded::Differs(discrepancy) => {
            report.push(discrepancy);
            return Ok(());
        }
        Unrecorded::VerifyAndRepair => match stored {
            Some((order, _)) => order,
            None => return Ok(()),
        },
    };
    let status = order.status;
    let mut discrepancy = Discrepancy {
        category: Category::PaidAtAlipayNotHere,
        out_trade_no: row.out_trade_no.clone(),
        out_request_no: None,
        trade_no: Some(row.trade_no.clone()),
        currency: row.amount.currency(),
        alipay_fen: Some(row.amount.minor()),
        ours_fen: None,
        detail: String::new(),
        repaired: false,
        bill_line: Some(row.line),
    };
    // Another channel's order in this report: told, never repaired through the wrong one.
    if order.alipay_channel != channel {
        discrepancy.detail = format!(
            "{status} here, created through channel {}; this is channel {channel}'s report",
            order.alipay_channel
        );
        report.push(discrepancy);
        return Ok(());
    }
    let provider = gateway
        .provider(channel)
        .map_err(|e| ReconcileError::Config(e.to_string()))?;
    let query = provider.names().query;
    // Believe the report only as far as a verified query confirms it.
    let queried = provider.query_trade(&order, deadline).await;
    discrepancy.detail = match queried.report {
        Some(trade) if trade.trade_status.is_paid() => {
            let cause = Cause::Reconciliation {
                date: day.to_string(),
            };
            match apply_paid_because(gateway, order, &trade, &cause).await? {
                Ended::Paid(_) => {
                    discrepancy.repaired = true;
                    report.stats.repaired += 1;
                    format!(
                        "{status} here: a lost notification; {query} confirmed the payment and it was applied"
                    )
                }
                Ended::Open { reason, .. } => format!("{status} here; not applied: {reason}"),
                Ended::Closed(_) => format!("{status} here; not applied: the order was closed"),
            }
        }
        _ => format!(
            "{status} here; {query} did not confirm the payment ({})",
            queried.reason.as_deref().unwrap_or("not paid")
        ),
    };
    report.push(discrepancy);
    Ok(())
}

/// No bill: with no records of the day either, the day is simply quiet.
async fn not_ready(
    gateway: &Gateway,
    reports: &Reports,
    mut report: Report,
    day: ChinaDate,
) -> Result<Report, ReconcileError> {
    let mut ledger = Ledger::default();
    let channel = report.channel;
    load_pass(
        gateway,
        channel,
        day,
        (0, 1),
        &mut ledger,
        &mut report,
        |_| {},
    )
    .await?;
    report.status = if ledger.is_empty() {
        Status::Matched
    } else {
        tracing::warn!(
            records = ledger.len(),
            "Alipay has no bill yet for a day with payments"
        );
        Status::BillNotReady
    };
    finish(gateway, reports, report, day).await
}

async fn finish(
    gateway: &Gateway,
    reports: &Reports,
    mut report: Report,
    day: ChinaDate,
) -> Result<Report, ReconcileError> {
    report.objects = reports.put(day, &report).await?;
    gateway
        .store
        .put_reconciliation_summary(
            report.channel,
            day,
            &report.summary(),
            report.status.as_str(),
            now_ms(),
        )
        .await?;
    if report.discrepancies.is_empty() {
        tracing::info!(
            status = report.status.as_str(),
            rows = report.bill.rows,
            "reconciled"
        );
    } else {
        tracing::error!(
            status = report.status.as_str(),
            discrepancies = report.discrepancies.len(),
            "reconciliation found discrepancies"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_event_means_yesterday_in_china() {
        // 2026-11-27 02:30 UTC is 10:30 in Beijing on the 27th: the bill of the 26th.
        let now_ms = ChinaDate::parse("2026-11-27").expect("day").start_unix() * 1000
            + 10 * 3_600_000
            + 30 * 60_000;
        assert_eq!(
            day_of_event(&json!({"version": "0"}), now_ms).map(|d| d.to_string()),
            Ok("2026-11-26".into())
        );
        assert_eq!(
            day_of_event(&json!({"date": "2026-11-20"}), now_ms).map(|d| d.to_string()),
            Ok("2026-11-20".into())
        );
        assert!(day_of_event(&json!({"date": "2026-11-28"}), now_ms).is_err());
        assert!(day_of_event(&json!({"date": "26/11/2026"}), now_ms).is_err());
        assert!(day_of_event(&json!({"date": 20261126}), now_ms).is_err());
        assert_eq!(channel_of_event(&json!({})), Ok(ChannelId::Primary));
        assert_eq!(
            channel_of_event(&json!({"channel": "secondary"})),
            Ok(ChannelId::Secondary)
        );
        assert!(channel_of_event(&json!({"channel": "tertiary"})).is_err());
    }

    #[test]
    fn antom_events_retry_only_unready_days_and_look_back_past_settlement() {
        let now_ms =
            ChinaDate::parse("2026-12-06").expect("day").start_unix() * 1000 + 11 * 3_600_000;
        let retry = request_of_event(
            &json!({"channel": "antom", "if_not_ready": true}),
            now_ms,
            Some(2),
        )
        .expect("request");
        assert_eq!(
            (retry.channel, retry.day.to_string(), retry.if_not_ready),
            (ChannelId::Antom, "2026-12-05".into(), true)
        );
        // Settled by T+2: the 3rd is final on the 6th.
        let settled = request_of_event(
            &json!({"channel": "antom", "after_settlement": true}),
            now_ms,
            Some(2),
        )
        .expect("request");
        assert_eq!(settled.day.to_string(), "2026-12-03");
        assert!(!settled.if_not_ready);
        assert!(request_of_event(&json!({"after_settlement": true}), now_ms, Some(2)).is_err());
        assert!(
            request_of_event(
                &json!({"channel": "antom", "after_settlement": true}),
                now_ms,
                None
            )
            .is_err()
        );
        assert!(
            request_of_event(
                &json!({"channel": "antom", "after_settlement": true, "date": "2026-12-01"}),
                now_ms,
                Some(2)
            )
            .is_err()
        );
        assert!(request_of_event(&json!({"if_not_ready": "yes"}), now_ms, None).is_err());
    }
}
