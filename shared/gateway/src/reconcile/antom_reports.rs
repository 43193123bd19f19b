//! The Antom channel's day (docs/antom/reports.md): its reports fetched over SFTP and matched
//! with our records the way the v1 bill is, into the same report.
//!
//! 1. The private key from SSM; the day's folder (transaction details) and the folders of the
//!    `ANTOM_SETTLEMENT_DAYS` days after it (settlement details and summaries) downloaded to
//!    the work dir, each file streamed, the whole fetch bounded by the deadline. No transaction
//!    details for the day: not ready (the schedule runs again; a quiet day simply matches).
//! 2. A first pass over the files checks them: the transaction details end with `<END>`, and
//!    each settlement summary line equals its batch's detail rows (count and net amount per
//!    type, either reading of a row's amount).
//! 3. Matching runs in passes over ranges of the order-number hash, as the v1 bill does: each
//!    pass loads its range of the day index, streams the transaction rows of that range through
//!    the ledger (lost notifications repaired from a verified `inquiryPayment`), then the
//!    settlement rows through the settlement book (settled otherwise than recorded; not settled
//!    by the expected date).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::antom::report::{
    FileKind, Rows, SettlementItem, Signed, SummaryItem, TransactionItem, day_folder,
};
use alipay::bill::RowKind;
use alipay::china_time::ChinaDate;
use alipay::ids::{OutRequestNo, OutTradeNo};
use domain::channel::ChannelId;
use domain::reconciliation::{
    DayEntry, Ledger, Row, RowMatch, SettlementBook, SettlementTotals, Sums, pass_of,
};
use serde::Serialize;

use super::{ReconcileError, Report, Reports, Settings, finish, load_pass, look_up, not_ready};
use crate::clock::now_ms;
use crate::config::antom::AntomReportsConfig;
use crate::deadline::Deadline;
use crate::sftp::{self, Fetched, SftpTarget};
use crate::startup::Gateway;
use store::bill_hash;

/// How long Antom keeps its reports on the server (ALIPAY-OPS §5: "may be deleted after 7 days").
const REPORTS_KEPT_DAYS: i64 = 7;

/// What Antom's files say about themselves, checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AntomCheck {
    /// Files read, by name (`<yyyyMMdd>/<name>`), with their sizes.
    pub files: BTreeMap<String, u64>,
    /// Transaction detail rows of the day, and whether every file ended with `<END>`.
    pub transaction_rows: u64,
    pub transactions_complete: bool,
    /// Settlement detail rows read (all days' transactions in those batches).
    pub settlement_rows: u64,
    pub settlements_complete: bool,
    /// Per batch and summary type, the summary line's count and net amount equal the detail
    /// rows'; the lines that do not, named.
    pub summary_lines: u64,
    pub summary_mismatches: Vec<String>,
    /// Fees of every settlement row read, per currency, as written.
    pub fees: Sums,
    /// The settlement dates read (the expected one last) and whether it has passed.
    pub settlement_folders: Vec<String>,
    pub settlement_overdue: bool,
}

impl AntomCheck {
    pub(super) fn totals_match(&self) -> bool {
        self.transactions_complete
            && self.settlements_complete
            && self.summary_mismatches.is_empty()
    }
}

/// Where the day's files are once fetched.
struct Files {
    transactions: Vec<PathBuf>,
    settlements: Vec<PathBuf>,
    summaries: Vec<PathBuf>,
}

/// Removes the fetched files whatever happens.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reconciles the Antom channel's `day`.
pub async fn run(
    gateway: &Gateway,
    reports: &Reports,
    settings: &Settings,
    day: ChinaDate,
    deadline: &Deadline,
) -> Result<Report, ReconcileError> {
    let config = gateway
        .config
        .antom
        .as_ref()
        .and_then(|a| a.reports.as_ref())
        .ok_or_else(|| {
            ReconcileError::Config(
                "the Antom channel's reports are not configured (ANTOM_SFTP_USER and the rest)"
                    .into(),
            )
        })?;
    let mut report = Report::new(day, ChannelId::Antom);
    let today = ChinaDate::of_unix(now_ms().div_euclid(1000));
    let expected_by = day.add_days(i64::from(config.settlement_days));
    let mut check = AntomCheck {
        settlement_overdue: today > expected_by,
        ..AntomCheck::default()
    };
    let work = WorkDir(
        settings
            .work_dir
            .join(format!("antom-reports-{day}-{}", uuid::Uuid::new_v4())),
    );
    std::fs::create_dir_all(&work.0).map_err(|e| ReconcileError::Reports(e.to_string()))?;
    let settlement_days: Vec<ChinaDate> = (0..=config.settlement_days)
        .map(|n| day.add_days(i64::from(n)))
        .filter(|d| *d <= today)
        .collect();
    check.settlement_folders = settlement_days.iter().map(|d| d.compact()).collect();
    let fetched = fetch(settings, config, day, &settlement_days, &work.0, deadline).await?;
    let files = sort_files(day, fetched, &mut check, &mut report);
    if files.transactions.is_empty() {
        // Antom keeps its reports 7 days: a later run finds nothing, and must not replace the
        // day's report with "not ready".
        if day.days_until(today) > REPORTS_KEPT_DAYS {
            return Err(ReconcileError::Reports(format!(
                "no transaction details for {day}: Antom keeps its reports {REPORTS_KEPT_DAYS} days; the stored report of the day stands"
            )));
        }
        report.antom = Some(check);
        return not_ready(gateway, reports, report, day).await;
    }
    check_files(&files, &mut check)?;
    let rows = check.transaction_rows;
    report.bill.available = true;
    report.bill.rows = rows;
    let passes = u32::try_from(rows.div_ceil(settings.pass_rows).max(1)).unwrap_or(u32::MAX);
    report.stats.passes = passes;
    let mut settlement = SettlementTotals::default();
    for pass in 0..passes {
        let mut ledger = Ledger::default();
        let mut book = SettlementBook::default();
        let mut aliases = HashMap::new();
        load_pass(
            gateway,
            ChannelId::Antom,
            day,
            (pass, passes),
            &mut ledger,
            &mut report,
            |entry| expect(entry, &mut book, &mut aliases),
        )
        .await?;
        report.stats.peak_records = report.stats.peak_records.max(ledger.len() as u64);
        let unrecorded =
            match_transactions(&files, pass, passes, &aliases, &mut ledger, &mut report)?;
        for row in unrecorded {
            look_up(gateway, ChannelId::Antom, day, &row, &mut report, deadline).await?;
        }
        for left in ledger.leftovers() {
            report.push(left);
        }
        for path in &files.settlements {
            let (rows, name) = open::<SettlementItem>(path)?;
            for row in rows {
                let row = row.map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
                if let Some(discrepancy) = book.settle(&row) {
                    report.push(discrepancy);
                }
            }
        }
        let (missing, totals) = book.leftovers(check.settlement_overdue, &expected_by.to_string());
        for discrepancy in missing {
            report.push(discrepancy);
        }
        merge(&mut settlement, totals);
    }
    report.settlement = Some(settlement);
    report.antom = Some(check);
    report.conclude();
    finish(gateway, reports, report, day).await
}

/// The SFTP fetch, with the key from SSM.
async fn fetch(
    settings: &Settings,
    config: &AntomReportsConfig,
    day: ChinaDate,
    settlement_days: &[ChinaDate],
    into: &Path,
    deadline: &Deadline,
) -> Result<Vec<Fetched>, ReconcileError> {
    let ssm = settings.ssm.as_ref().ok_or_else(|| {
        ReconcileError::Config("no SSM client for the SFTP key (ANTOM_SFTP_KEY_PARAMETER)".into())
    })?;
    let key = sftp::key_from_ssm(ssm, &config.key_parameter)
        .await
        .map_err(|e| ReconcileError::Config(e.to_string()))?;
    let target = SftpTarget {
        host: config.host.clone(),
        port: config.port,
        user: config.user.clone(),
        host_key: sftp::parse_host_key(&config.host_key).map_err(ReconcileError::Config)?,
    };
    let own = day_folder(&config.root, &day.compact());
    let mut folders = vec![own.clone()];
    for settled in settlement_days {
        let folder = day_folder(&config.root, &settled.compact());
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    // Keep a fifth of what is left (at most a minute) for the matching and the report.
    let reserve = (deadline.remaining() / 5).min(Duration::from_secs(60));
    sftp::fetch(
        &target,
        key,
        &folders,
        // Transaction details of the day only; settlement files of every folder read.
        |folder, name| match FileKind::of_name(name) {
            Some(FileKind::TransactionDetails) => folder == own,
            Some(_) => true,
            None => false,
        },
        into,
        deadline,
        reserve,
    )
    .await
    .map_err(|e| ReconcileError::Antom(e.to_string()))
}

/// Which fetched file is which: the day's transaction details come from its own folder only.
fn sort_files(
    day: ChinaDate,
    fetched: Vec<Fetched>,
    check: &mut AntomCheck,
    report: &mut Report,
) -> Files {
    let own = day.compact();
    let mut files = Files {
        transactions: Vec::new(),
        settlements: Vec::new(),
        summaries: Vec::new(),
    };
    for file in fetched {
        let folder = file
            .folder
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let kind = FileKind::of_name(&file.name);
        match kind {
            Some(FileKind::TransactionDetails) if folder == own => {
                files.transactions.push(file.path)
            }
            Some(FileKind::SettlementDetails) => files.settlements.push(file.path),
            Some(FileKind::SettlementSummary) => files.summaries.push(file.path),
            _ => continue,
        }
        report.bill.bytes += file.bytes;
        check
            .files
            .insert(format!("{folder}/{}", file.name), file.bytes);
    }
    files
}

fn open<T: ::antom::report::FromRecord>(
    path: &Path,
) -> Result<(Rows<std::io::BufReader<std::fs::File>, T>, String), ReconcileError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file =
        std::fs::File::open(path).map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
    let rows = Rows::new(std::io::BufReader::with_capacity(1 << 16, file))
        .map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
    Ok((rows, name))
}

/// The first pass: row counts, `<END>` lines, fees, and each summary line against its batch.
fn check_files(files: &Files, check: &mut AntomCheck) -> Result<(), ReconcileError> {
    let mut complete = true;
    for path in &files.transactions {
        let (mut rows, name) = open::<TransactionItem>(path)?;
        for row in rows.by_ref() {
            row.map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
            check.transaction_rows += 1;
        }
        complete &= rows.complete();
    }
    check.transactions_complete = complete;
    // Per (batch, type): count, gross and fees as the detail rows add up.
    let mut batches: HashMap<(String, String), (u64, i128, i128)> = HashMap::new();
    let mut complete = true;
    for path in &files.settlements {
        let (mut rows, name) = open::<SettlementItem>(path)?;
        for row in rows.by_ref() {
            let row = row.map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
            check.settlement_rows += 1;
            if let Some(fee) = row.fee {
                check.fees.add(fee);
            }
            let same_currency_fee = row
                .fee
                .filter(|f| f.currency() == row.settlement_amount.currency())
                .map_or(0, Signed::minor);
            let entry = batches
                .entry((row.batch_id.clone(), row.transaction_type.clone()))
                .or_default();
            entry.0 += 1;
            entry.1 += row.settlement_amount.minor();
            entry.2 += same_currency_fee;
        }
        complete &= rows.complete();
    }
    let mut summarised = std::collections::HashSet::new();
    for path in &files.summaries {
        let (mut rows, name) = open::<SummaryItem>(path)?;
        for line in rows.by_ref() {
            let line = line.map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
            check.summary_lines += 1;
            summarised.insert((line.batch_id.clone(), line.summary_type.clone()));
            let found = batches
                .get(&(line.batch_id.clone(), line.summary_type.clone()))
                .copied();
            // The summary's amount is net of fees; a detail row's may be gross or net (Antom's
            // pages do not say): either sum agrees.
            let agrees = found.is_some_and(|(count, gross, fees)| {
                let net = line.settlement_amount.minor();
                count == line.count && (gross == net || gross + fees == net)
            });
            let empty_type = found.is_none() && line.count == 0;
            if !agrees && !empty_type {
                check.summary_mismatches.push(format!(
                    "{name} line {}: batch {} {}: {} rows {} {} in the summary; the details have {}",
                    line.line,
                    line.batch_id,
                    line.summary_type,
                    line.count,
                    line.settlement_amount.text(),
                    line.settlement_amount.currency(),
                    found.map_or("none".into(), |(count, gross, _)| format!("{count} rows, {gross} minor units")),
                ));
            }
        }
        complete &= rows.complete();
    }
    // Details no summary line accounts for.
    let mut unsummarised: Vec<_> = batches
        .iter()
        .filter(|(key, _)| !summarised.contains(*key))
        .map(|((batch, kind), (count, _, _))| {
            format!("batch {batch} {kind}: {count} detail rows, in no summary line")
        })
        .collect();
    unsummarised.sort();
    check.summary_mismatches.extend(unsummarised);
    check.settlements_complete = complete;
    if !check.totals_match() {
        tracing::error!(
            transactions_complete = check.transactions_complete,
            settlements_complete = check.settlements_complete,
            mismatches = check.summary_mismatches.len(),
            "Antom's reports do not agree with themselves"
        );
    }
    Ok(())
}

/// What the settlement book expects of a record of the day; each refund's `refundRequestId`
/// as we sent it, to read Antom's refund rows.
fn expect(
    entry: &DayEntry,
    book: &mut SettlementBook,
    aliases: &mut HashMap<String, (String, String)>,
) {
    match entry {
        DayEntry::Payment {
            out_trade_no,
            trade_no,
            paid,
            settled,
            ..
        } => book.expect_payment(out_trade_no.clone(), trade_no.clone(), *paid, *settled),
        DayEntry::Refund {
            out_trade_no,
            out_request_no,
            ..
        } => {
            if let (Ok(o), Ok(r)) = (
                OutTradeNo::parse(out_trade_no),
                OutRequestNo::parse(out_request_no),
            ) {
                let id = crate::antom::refund_request_id(&o, &r);
                book.expect_refund(id.clone());
                aliases.insert(id, (out_trade_no.clone(), out_request_no.clone()));
            }
        }
    }
}

/// A transaction details row as a provider row: a payment by its `paymentRequestId`, a refund
/// by the refund its `refundRequestId` names (ours as sent, or composed); other types and
/// transactions that did not succeed are counted, never matched.
fn row_of(item: &TransactionItem, aliases: &HashMap<String, (String, String)>) -> Row {
    let succeeded = item
        .status
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case("SUCCESS"));
    let mut row = Row {
        kind: RowKind::Other(item.transaction_type.clone()),
        trade_no: item.transaction_id.clone(),
        out_trade_no: item.transaction_request_id.clone(),
        out_request_no: None,
        amount: item.amount.amount,
        line: item.line,
    };
    match item.transaction_type.as_str() {
        "PAYMENT" if succeeded => row.kind = RowKind::Payment,
        "REFUND" if succeeded => {
            row.kind = RowKind::Refund;
            let id = item.transaction_request_id.as_str();
            if let Some((o, r)) = aliases.get(id) {
                row.out_trade_no = o.clone();
                row.out_request_no = Some(r.clone());
            } else if let Some((o, r)) = crate::antom::refund_of_request_id(id) {
                row.out_trade_no = o.to_string();
                row.out_request_no = Some(r.to_string());
            } else {
                // A digest we do not hold: its payment, if the row names it.
                row.out_trade_no = item
                    .original_transaction_request_id
                    .clone()
                    .unwrap_or_else(|| id.to_owned());
            }
        }
        _ => {}
    }
    row
}

/// Streams this pass's transaction rows through the ledger; returns the rows to look up.
fn match_transactions(
    files: &Files,
    pass: u32,
    passes: u32,
    aliases: &HashMap<String, (String, String)>,
    ledger: &mut Ledger,
    report: &mut Report,
) -> Result<Vec<Row>, ReconcileError> {
    let mut unrecorded = Vec::new();
    for path in &files.transactions {
        let (rows, name) = open::<TransactionItem>(path)?;
        for item in rows {
            let item = item.map_err(|e| ReconcileError::Reports(format!("{name}: {e}")))?;
            let row = row_of(&item, aliases);
            if pass_of(bill_hash(&row.out_trade_no), passes) != pass {
                continue;
            }
            report.alipay.add_row(&row);
            report.currencies.add_row(&row);
            match ledger.match_row(&row) {
                RowMatch::Matched | RowMatch::Ignored => {}
                RowMatch::Differs(discrepancy) => report.push(discrepancy),
                RowMatch::LookUp => unrecorded.push(row),
            }
        }
    }
    Ok(unrecorded)
}

fn merge(into: &mut SettlementTotals, pass: SettlementTotals) {
    into.rows += pass.rows;
    into.net_of_fee += pass.net_of_fee;
    into.awaiting += pass.awaiting;
    into.settled.merge(&pass.settled);
    into.fees.merge(&pass.fees);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn the_files_are_checked_against_themselves() {
        let dir = std::env::temp_dir().join(format!("antom-check-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let _cleanup = WorkDir(dir.clone());
        let transactions = "transactionType,transactionId,transactionRequestId,transactionAmountValue,transactionCurrency\n\
            PAYMENT,P1,o_1,10.99,USD\nPAYMENT,P2,o_2,1250,JPY\n";
        // Batch G: rows gross, the summary net of fees; batch N: rows already net.
        let details = "settlementBatchId,transactionType,transactionId,transactionRequestId,transactionAmountValue,transactionCurrency,settlementAmountValue,settlementCurrency,feeAmountValue,feeCurrency\n\
            G,PAYMENT,P1,o_1,10.99,USD,78.29,CNY,-0.78,CNY\n\
            N,PAYMENT,P2,o_2,1250,JPY,59.26,CNY,-0.60,CNY\n\
            G,REFUND,R1,o_1-r,-5.00,USD,-35.62,CNY,,\n<END>\n";
        let agreeing = "settlementBatchId,summaryType,count,settlementAmountValue,settlementCurrency\n\
            G,PAYMENT,1,77.51,CNY\nN,PAYMENT,1,59.26,CNY\nG,REFUND,1,-35.62,CNY\nN,CANCEL,0,0.00,CNY\n<END>\n";
        let files = Files {
            transactions: vec![write(&dir, "t.csv", &format!("{transactions}<END>\n"))],
            settlements: vec![write(&dir, "s.csv", details)],
            summaries: vec![write(&dir, "m.csv", agreeing)],
        };
        let mut check = AntomCheck::default();
        check_files(&files, &mut check).expect("read");
        assert!(check.totals_match(), "{check:?}");
        assert_eq!(
            (
                check.transaction_rows,
                check.settlement_rows,
                check.summary_lines
            ),
            (2, 3, 4)
        );
        assert_eq!(check.fees.texts()["CNY"], "-1.38");

        // A count off by one, an amount off by a fen, and a truncated transaction file.
        let disagreeing = "settlementBatchId,summaryType,count,settlementAmountValue,settlementCurrency\n\
            G,PAYMENT,2,77.51,CNY\nN,PAYMENT,1,59.27,CNY\n<END>\n";
        let files = Files {
            transactions: vec![write(&dir, "t2.csv", transactions)],
            settlements: vec![write(&dir, "s2.csv", details)],
            summaries: vec![write(&dir, "m2.csv", disagreeing)],
        };
        let mut check = AntomCheck::default();
        check_files(&files, &mut check).expect("read");
        assert!(!check.transactions_complete);
        assert!(check.settlements_complete);
        assert_eq!(check.summary_mismatches.len(), 3, "{check:?}");
        assert!(
            check.summary_mismatches[0].contains("batch G PAYMENT"),
            "{check:?}"
        );
        assert!(
            check.summary_mismatches[2]
                .contains("batch G REFUND: 1 detail rows, in no summary line"),
            "{check:?}"
        );
        assert!(!check.totals_match());
    }

    #[test]
    fn refund_rows_are_read_back_to_the_refund_we_sent() {
        let item = |kind: &str, id: &str, original: Option<&str>| TransactionItem {
            transaction_type: kind.into(),
            transaction_id: "X1".into(),
            transaction_request_id: id.into(),
            original_transaction_request_id: original.map(str::to_owned),
            amount: ::antom::report::parse_signed(
                "-5.00",
                money::Currency::parse("USD").expect("USD"),
            )
            .expect("amount"),
            status: None,
            line: 2,
        };
        let mut aliases = HashMap::new();
        aliases.insert(
            "Habc".to_owned(),
            ("o-with-dash".to_owned(), "r9".to_owned()),
        );
        let digest = row_of(&item("REFUND", "Habc", Some("o-with-dash")), &aliases);
        assert_eq!(
            (
                digest.kind,
                digest.out_trade_no.as_str(),
                digest.out_request_no.as_deref()
            ),
            (RowKind::Refund, "o-with-dash", Some("r9"))
        );
        let composed = row_of(&item("REFUND", "o_1-r1", Some("o_1")), &HashMap::new());
        assert_eq!(
            (
                composed.out_trade_no.as_str(),
                composed.out_request_no.as_deref()
            ),
            ("o_1", Some("r1"))
        );
        // A digest we do not hold: its payment, no request number (looked up, then named).
        let unknown = row_of(&item("REFUND", "Hffff", Some("o_2")), &HashMap::new());
        assert_eq!(
            (unknown.out_trade_no.as_str(), unknown.out_request_no),
            ("o_2", None)
        );
        let cancel = row_of(&item("CANCEL", "o_3", None), &HashMap::new());
        assert_eq!(cancel.kind, RowKind::Other("CANCEL".into()));
        let mut failed = item("PAYMENT", "o_4", None);
        failed.status = Some("FAIL".into());
        assert_eq!(
            row_of(&failed, &HashMap::new()).kind,
            RowKind::Other("PAYMENT".into())
        );
    }
}
