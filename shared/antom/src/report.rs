//! Antom's reconciliation reports (docs/antom/reports.md), read as streams: CSV in UTF-8, a
//! header line of parameter names, one row per transaction (or per summary line), and a last
//! line `<END>`; columns are found by name, so added or reordered columns change nothing.
//! Amounts are decimals in the major unit of the currency beside them (`10.99` USD, `1250`
//! JPY), signed as written. Nothing here holds a whole file.
//!
//! - transaction details, `transactionItems_<yyyyMMdd>_<seq>.csv`: every transaction of a day;
//! - settlement details, `settlementItems_<currency>_<batch>_<seq>.csv`: every transaction of a
//!   settlement batch, with its settlement amount, rate and fees;
//! - settlement summary, `settlementSummary_<currency>_<batch>_<seq>.csv`: per batch and
//!   `summaryType`, the count and the net settlement amount.
//!
//! All three lie in `/v1/settlements/<merchantId>/<yyyyMMdd>/` (the transaction date for the
//! first, the settlement date for the others).

use std::collections::HashMap;
use std::io::Read;

use money::{Currency, Money};

/// The end-of-file line.
pub const END: &str = "<END>";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report could not be read: {0}")]
    Io(String),
    #[error("the report's header has no column {0}")]
    MissingColumn(&'static str),
    #[error("report line {line}: {message}")]
    Format { line: u64, message: String },
}

/// Which report a file is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    TransactionDetails,
    SettlementDetails,
    SettlementSummary,
}

impl FileKind {
    /// `transactionItems_…`, `settlementItems_…`, `settlementSummary_…` (`.csv`); anything else
    /// (XLSX copies, files of other products) is `None`.
    pub fn of_name(name: &str) -> Option<FileKind> {
        if !name.ends_with(".csv") {
            return None;
        }
        if name.starts_with("transactionItems_") {
            Some(FileKind::TransactionDetails)
        } else if name.starts_with("settlementItems_") {
            Some(FileKind::SettlementDetails)
        } else if name.starts_with("settlementSummary_") {
            Some(FileKind::SettlementSummary)
        } else {
            None
        }
    }
}

/// The folder of one day's reports under the merchant's root (`/v1/settlements/<merchantId>`).
pub fn day_folder(root: &str, yyyymmdd: &str) -> String {
    format!("{}/{yyyymmdd}", root.trim_end_matches('/'))
}

/// An amount as written: its sign and its size in the currency's minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    pub negative: bool,
    pub amount: Money,
}

impl Signed {
    /// Minor units with the sign.
    pub fn minor(self) -> i128 {
        let minor = i128::from(self.amount.minor());
        if self.negative { -minor } else { minor }
    }

    pub fn currency(self) -> Currency {
        self.amount.currency()
    }

    /// `-1.25`, `78.29`.
    pub fn text(self) -> String {
        let sign = if self.negative && !self.amount.is_zero() {
            "-"
        } else {
            ""
        };
        format!("{sign}{}", self.amount.decimal())
    }
}

/// `"-12.50"` of `currency`, exactly (at most the currency's decimals).
pub fn parse_signed(text: &str, currency: Currency) -> Result<Signed, String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let amount = Money::parse(digits, currency).map_err(|e| format!("amount {text:?}: {e}"))?;
    Ok(Signed { negative, amount })
}

/// One row of the transaction details report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionItem {
    /// `PAYMENT`, `REFUND`, `CANCEL`, `CAPTURE`, `AUTHORIZATION`, `DISPUTE`, …
    pub transaction_type: String,
    /// `paymentId` for a payment, `refundId` for a refund.
    pub transaction_id: String,
    /// `paymentRequestId` for a payment, `refundRequestId` for a refund.
    pub transaction_request_id: String,
    /// The payment's `paymentRequestId` on a refund row (when the report carries it).
    pub original_transaction_request_id: Option<String>,
    pub amount: Signed,
    /// `transactionStatus` when the report carries one (`SUCCESS`, …).
    pub status: Option<String>,
    pub line: u64,
}

/// One row of the settlement details report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementItem {
    pub batch_id: String,
    pub transaction_type: String,
    pub transaction_id: String,
    pub transaction_request_id: String,
    pub original_transaction_request_id: Option<String>,
    pub transaction_amount: Signed,
    pub settlement_amount: Signed,
    pub quote_pair: Option<String>,
    pub quote_price: Option<String>,
    /// `feeAmountValue` in `feeCurrency`, when charged.
    pub fee: Option<Signed>,
    pub line: u64,
}

/// One row of the settlement summary report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryItem {
    pub batch_id: String,
    /// `PAYMENT`, `REFUND`, `CANCEL`, `DISPUTE`, `ADJUSTMENT_FEE`, …
    pub summary_type: String,
    pub count: u64,
    /// Net of fees, in the settlement currency.
    pub settlement_amount: Signed,
    pub fee: Option<Signed>,
    pub line: u64,
}

/// A row type read from a report: which columns it needs and how a record becomes one.
pub trait FromRecord: Sized {
    /// The columns the report must have (the rest are optional).
    const REQUIRED: &'static [&'static str];
    fn from_record(row: &Columns<'_>) -> Result<Self, String>;
}

/// A record with its columns found by name.
pub struct Columns<'a> {
    index: &'a HashMap<String, usize>,
    record: &'a csv::StringRecord,
    pub line: u64,
}

impl Columns<'_> {
    /// A column's value; empty is `None`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let at = *self.index.get(name)?;
        self.record.get(at).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name} is empty"))
    }

    fn currency(&self, name: &str) -> Result<Currency, String> {
        let code = self.required(name)?;
        Currency::parse(code).map_err(|e| format!("{name} {code:?}: {e}"))
    }

    /// `<value>` in `<currency>` (both required).
    pub fn amount(&self, value: &str, currency: &str) -> Result<Signed, String> {
        parse_signed(self.required(value)?, self.currency(currency)?)
    }

    /// Both present, or neither.
    pub fn optional_amount(&self, value: &str, currency: &str) -> Result<Option<Signed>, String> {
        match (self.get(value), self.get(currency)) {
            (Some(_), Some(_)) => self.amount(value, currency).map(Some),
            (None, _) => Ok(None),
            (Some(_), None) => Err(format!("{value} without {currency}")),
        }
    }
}

impl FromRecord for TransactionItem {
    const REQUIRED: &'static [&'static str] = &[
        "transactionType",
        "transactionId",
        "transactionRequestId",
        "transactionAmountValue",
        "transactionCurrency",
    ];
    fn from_record(row: &Columns<'_>) -> Result<Self, String> {
        Ok(TransactionItem {
            transaction_type: row.required("transactionType")?.to_owned(),
            transaction_id: row.required("transactionId")?.to_owned(),
            transaction_request_id: row.required("transactionRequestId")?.to_owned(),
            original_transaction_request_id: row
                .get("originalTransactionRequestId")
                .map(str::to_owned),
            amount: row.amount("transactionAmountValue", "transactionCurrency")?,
            status: row.get("transactionStatus").map(str::to_owned),
            line: row.line,
        })
    }
}

impl FromRecord for SettlementItem {
    const REQUIRED: &'static [&'static str] = &[
        "settlementBatchId",
        "transactionType",
        "transactionId",
        "transactionRequestId",
        "transactionAmountValue",
        "transactionCurrency",
        "settlementAmountValue",
        "settlementCurrency",
    ];
    fn from_record(row: &Columns<'_>) -> Result<Self, String> {
        Ok(SettlementItem {
            batch_id: row.required("settlementBatchId")?.to_owned(),
            transaction_type: row.required("transactionType")?.to_owned(),
            transaction_id: row.required("transactionId")?.to_owned(),
            transaction_request_id: row.required("transactionRequestId")?.to_owned(),
            original_transaction_request_id: row
                .get("originalTransactionRequestId")
                .map(str::to_owned),
            transaction_amount: row.amount("transactionAmountValue", "transactionCurrency")?,
            settlement_amount: row.amount("settlementAmountValue", "settlementCurrency")?,
            quote_pair: row.get("quoteCurrencyPair").map(str::to_owned),
            quote_price: row.get("quotePrice").map(str::to_owned),
            fee: row.optional_amount("feeAmountValue", "feeCurrency")?,
            line: row.line,
        })
    }
}

impl FromRecord for SummaryItem {
    const REQUIRED: &'static [&'static str] = &[
        "settlementBatchId",
        "summaryType",
        "count",
        "settlementAmountValue",
        "settlementCurrency",
    ];
    fn from_record(row: &Columns<'_>) -> Result<Self, String> {
        let count = row.required("count")?;
        Ok(SummaryItem {
            batch_id: row.required("settlementBatchId")?.to_owned(),
            summary_type: row.required("summaryType")?.to_owned(),
            count: count
                .parse()
                .map_err(|_| format!("count {count:?} is not a whole number"))?,
            settlement_amount: row.amount("settlementAmountValue", "settlementCurrency")?,
            fee: row.optional_amount("feeAmountValue", "feeCurrency")?,
            line: row.line,
        })
    }
}

/// The rows of one report file, streamed. Read it to the end, then [`Rows::complete`] tells
/// whether the `<END>` line was there (a truncated file has none).
pub struct Rows<R: Read, T> {
    reader: csv::Reader<R>,
    index: HashMap<String, usize>,
    record: csv::StringRecord,
    ended: bool,
    failed: bool,
    _row: std::marker::PhantomData<T>,
}

impl<R: Read, T: FromRecord> Rows<R, T> {
    /// Reads the header line; a missing required column is refused at once.
    pub fn new(input: R) -> Result<Self, ReportError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| ReportError::Io(e.to_string()))?
            .clone();
        let index: HashMap<String, usize> = headers
            .iter()
            .enumerate()
            .map(|(at, name)| (name.trim().trim_start_matches('\u{feff}').to_owned(), at))
            .collect();
        for name in T::REQUIRED {
            if !index.contains_key(*name) {
                return Err(ReportError::MissingColumn(name));
            }
        }
        Ok(Rows {
            reader,
            index,
            record: csv::StringRecord::new(),
            ended: false,
            failed: false,
            _row: std::marker::PhantomData,
        })
    }

    /// Whether the `<END>` line was read.
    pub fn complete(&self) -> bool {
        self.ended
    }
}

impl<R: Read, T: FromRecord> Iterator for Rows<R, T> {
    type Item = Result<T, ReportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(ReportError::Io(e.to_string())));
                }
                Ok(true) => {}
            }
            let line = self.record.position().map_or(0, |p| p.line());
            if self.record.iter().all(|field| field.trim().is_empty()) {
                continue;
            }
            if self.record.get(0).map(str::trim) == Some(END) {
                self.ended = true;
                continue;
            }
            if self.ended {
                self.failed = true;
                return Some(Err(ReportError::Format {
                    line,
                    message: "a row after <END>".into(),
                }));
            }
            let columns = Columns {
                index: &self.index,
                record: &self.record,
                line,
            };
            return Some(
                T::from_record(&columns).map_err(|message| ReportError::Format { line, message }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETAILS: &str = "\u{feff}customerId,PSP,transactionType,transactionId,transactionRequestId,originalTransactionRequestId,transactionAmountValue,transactionCurrency,paymentTime\n\
        C1,ANTOM,PAYMENT,P1,o_1,,10.99,USD,2026-12-05T10:00:00+08:00\n\
        C1,ANTOM,REFUND,R1,o_1-r1,o_1,-5.00,USD,2026-12-05T11:00:00+08:00\n\
        C1,ANTOM,PAYMENT,P2,o_2,,1250,JPY,2026-12-05T12:00:00+08:00\n\
        <END>\n";

    #[test]
    fn rows_are_read_by_column_name_to_the_end_line() {
        let mut rows = Rows::<_, TransactionItem>::new(DETAILS.as_bytes()).expect("header");
        let read: Vec<TransactionItem> = rows.by_ref().map(|r| r.expect("row")).collect();
        assert!(rows.complete());
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].transaction_request_id, "o_1");
        assert_eq!(read[0].amount.amount.minor(), 1099);
        assert_eq!(read[0].line, 2);
        assert!(read[1].negative_refund());
        assert_eq!(
            read[1].original_transaction_request_id.as_deref(),
            Some("o_1")
        );
        assert_eq!(read[2].amount.amount.minor(), 1250);
        assert_eq!(read[2].amount.currency().code(), "JPY");
    }

    impl TransactionItem {
        fn negative_refund(&self) -> bool {
            self.transaction_type == "REFUND" && self.amount.negative
        }
    }

    #[test]
    fn a_truncated_file_is_not_complete_and_rows_after_the_end_are_refused() {
        let cut = &DETAILS[..DETAILS.find("<END>").expect("end")];
        let mut rows = Rows::<_, TransactionItem>::new(cut.as_bytes()).expect("header");
        assert_eq!(rows.by_ref().count(), 3);
        assert!(!rows.complete());
        let after = format!("{DETAILS}C1,ANTOM,PAYMENT,P3,o_3,,1.00,USD,x\n");
        let results: Vec<_> = Rows::<_, TransactionItem>::new(after.as_bytes())
            .expect("header")
            .collect();
        assert!(matches!(
            results.last(),
            Some(Err(ReportError::Format { .. }))
        ));
    }

    #[test]
    fn reordered_columns_read_the_same_and_missing_ones_are_named() {
        let reordered = "transactionCurrency,transactionAmountValue,transactionRequestId,transactionId,transactionType\nUSD,1.5,o_9,P9,PAYMENT\n<END>\n";
        let row = Rows::<_, TransactionItem>::new(reordered.as_bytes())
            .expect("header")
            .next()
            .expect("a row")
            .expect("valid");
        assert_eq!(row.amount.amount.minor(), 150);
        let missing = "transactionType,transactionId,transactionRequestId,transactionAmountValue\n";
        assert_eq!(
            Rows::<_, TransactionItem>::new(missing.as_bytes()).err(),
            Some(ReportError::MissingColumn("transactionCurrency"))
        );
    }

    #[test]
    fn amounts_are_exact_in_their_currency_or_refused() {
        let usd = Currency::parse("USD").expect("USD");
        let jpy = Currency::parse("JPY").expect("JPY");
        assert_eq!(parse_signed("-0.01", usd).map(Signed::minor), Ok(-1));
        assert_eq!(
            parse_signed("78.29", usd).map(Signed::text),
            Ok("78.29".into())
        );
        assert_eq!(
            parse_signed("-0.47", usd).map(Signed::text),
            Ok("-0.47".into())
        );
        // A negative zero is written as zero.
        assert_eq!(
            parse_signed("-0.00", usd).map(Signed::text),
            Ok("0.00".into())
        );
        assert_eq!(
            day_folder("/v1/settlements/1022188000000000001/", "20261205"),
            "/v1/settlements/1022188000000000001/20261205"
        );
        assert!(parse_signed("12.5", jpy).is_err());
        assert!(parse_signed("1.001", usd).is_err());
        assert!(parse_signed("1e3", usd).is_err());
        let bad = "transactionType,transactionId,transactionRequestId,transactionAmountValue,transactionCurrency\nPAYMENT,P,o,10.999,USD\n";
        let row = Rows::<_, TransactionItem>::new(bad.as_bytes())
            .expect("header")
            .next()
            .expect("a row");
        assert!(
            matches!(&row, Err(ReportError::Format { line: 2, message }) if message.contains("10.999")),
            "{row:?}"
        );
    }

    #[test]
    fn settlement_rows_and_summaries_carry_fees_and_rates() {
        let details = "settlementBatchId,customerId,transactionType,transactionId,transactionRequestId,transactionAmountValue,transactionCurrency,settlementAmountValue,settlementCurrency,quoteCurrencyPair,quotePrice,feeAmountValue,feeCurrency\n\
            B1,C1,PAYMENT,P1,o_1,10.99,USD,78.29,CNY,USD/CNY,7.123456,-0.47,CNY\n<END>\n";
        let row = Rows::<_, SettlementItem>::new(details.as_bytes())
            .expect("header")
            .next()
            .expect("row")
            .expect("valid");
        assert_eq!(row.settlement_amount.minor(), 7829);
        assert_eq!(row.fee.map(Signed::minor), Some(-47));
        assert_eq!(row.quote_price.as_deref(), Some("7.123456"));
        let summary = "settlementBatchId,customerId,summaryType,settlementInitiatedDate,count,settlementAmountValue,settlementCurrency,feeAmountValue,feeCurrency\n\
            B1,C1,PAYMENT,2026-12-06,1,77.82,CNY,-0.47,CNY\n<END>\n";
        let total = Rows::<_, SummaryItem>::new(summary.as_bytes())
            .expect("header")
            .next()
            .expect("row")
            .expect("valid");
        assert_eq!((total.count, total.settlement_amount.minor()), (1, 7782));
        assert_eq!(
            FileKind::of_name("settlementItems_CNY_B1_000.csv"),
            Some(FileKind::SettlementDetails)
        );
        assert_eq!(FileKind::of_name("settlementItems_CNY_B1_000.xlsx"), None);
    }
}
