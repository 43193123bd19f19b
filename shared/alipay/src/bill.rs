//! Alipay's daily bill (docs/alipay/operations.md §2), read as a stream: a zip holding two GBK
//! CSV files, the detail (`…_业务明细.csv`, one row per payment or refund) and the summary
//! (`…_业务明细(汇总).csv`). Comment lines (`#…`) frame the tables; the detail's footer declares
//! its own totals, which are checked against its rows. Fields carry trailing tabs; refund rows
//! carry negative amounts. Nothing here holds a whole file: rows are decoded, parsed and handed
//! on one at a time, so memory does not grow with the bill.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Seek};
use std::rc::Rc;

use crate::money::Amount;

/// An uncompressed entry larger than this is refused (a zip bomb, not a bill).
const MAX_ENTRY_BYTES: u64 = 4 << 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("the bill could not be read: {0}")]
    Io(String),
    #[error("the bill has no {0} file")]
    MissingEntry(&'static str),
    #[error("the bill's header has no column {0}")]
    MissingColumn(&'static str),
    #[error("bill line {line}: {message}")]
    Format { line: u64, message: String },
}

/// `业务类型`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// `交易`: a payment.
    Payment,
    /// `退款`: a refund (negative amounts, the refund's `out_request_no`).
    Refund,
    /// Anything else Alipay may add; counted, never matched.
    Other(String),
}

/// One detail row, amounts in signed fen as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillRow {
    pub kind: RowKind,
    /// `支付宝交易号`.
    pub trade_no: String,
    /// `商户订单号`.
    pub out_trade_no: String,
    /// `完成时间`: when the payment or refund completed (China time).
    pub completed_at: String,
    /// `订单金额（元）`.
    pub order_fen: i64,
    /// `商家实收（元）`.
    pub received_fen: i64,
    /// `退款批次号/请求号` (refund rows).
    pub out_request_no: Option<String>,
    /// `服务费（元）`, sign as written (its sign on refund rows is unconfirmed).
    pub fee_fen: i64,
    /// The CSV line the row started on, for the report.
    pub line: u64,
}

/// What a file declares about itself: a count and a sum in fen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Declared {
    pub count: u64,
    pub fen: i64,
}

/// The detail footer: `#交易合计：6笔，商家实收共0.06元…` and `#退款合计：4笔，商家实收退款共-0.04元…`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footer {
    pub payments: Option<Declared>,
    pub refunds: Option<Declared>,
    /// Whether the end marker (`业务明细列表结束`) was seen: a truncated file has none.
    pub complete: bool,
}

/// The summary file's `合计` row.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SummaryTotals {
    pub payments: u64,
    pub refunds: u64,
    pub order_fen: i64,
    pub received_fen: i64,
    pub fee_fen: i64,
}

/// Signed yuan with at most two decimals (`-0.01`, `12.30`, `0`) in fen, exactly.
pub fn parse_yuan(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let fen = Amount::parse_allow_zero(digits).map_err(|e| format!("amount {text:?} {e}"))?;
    let fen = i64::try_from(fen.fen()).map_err(|_| format!("amount {text:?} is too large"))?;
    Ok(if negative { -fen } else { fen })
}

/// The name of a zip entry: UTF-8 when it is, otherwise GBK (Alipay's entries are GBK without
/// the zip's UTF-8 flag).
pub fn entry_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(name) => name.to_owned(),
        Err(_) => encoding_rs::GBK.decode(raw).0.into_owned(),
    }
}

/// The bill's zip, opened: which entry is which.
pub struct BillArchive<R: Read + Seek> {
    archive: zip::ZipArchive<R>,
    detail: usize,
    summary: Option<usize>,
}

impl<R: Read + Seek> BillArchive<R> {
    pub fn open(reader: R) -> Result<Self, BillError> {
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| BillError::Io(e.to_string()))?;
        let (mut detail, mut summary) = (None, None);
        for index in 0..archive.len() {
            let entry = archive
                .by_index_raw(index)
                .map_err(|e| BillError::Io(e.to_string()))?;
            let name = entry_name(entry.name_raw());
            if name.ends_with("_业务明细.csv") {
                detail = Some(index);
            } else if name.ends_with("_业务明细(汇总).csv") {
                summary = Some(index);
            }
        }
        Ok(BillArchive {
            archive,
            detail: detail.ok_or(BillError::MissingEntry("detail (_业务明细.csv)"))?,
            summary,
        })
    }

    /// The detail rows, streamed. Read it to the end, then [`DetailReader::footer`].
    pub fn detail(&mut self) -> Result<DetailReader<impl Read + '_>, BillError> {
        let entry = self
            .archive
            .by_index(self.detail)
            .map_err(|e| BillError::Io(e.to_string()))?;
        DetailReader::new(entry.take(MAX_ENTRY_BYTES))
    }

    /// The summary's `合计` row, when the bill has a summary.
    pub fn summary(&mut self) -> Result<Option<SummaryTotals>, BillError> {
        let Some(index) = self.summary else {
            return Ok(None);
        };
        let entry = self
            .archive
            .by_index(index)
            .map_err(|e| BillError::Io(e.to_string()))?;
        read_summary(entry.take(MAX_ENTRY_BYTES)).map(Some)
    }
}

/// Passes CSV lines through and takes comment lines (`#…` at the start of a record) aside, so a
/// real CSV parser reads the table and the footer is still seen.
struct CommentTap<R> {
    inner: R,
    line: Vec<u8>,
    at: usize,
    in_quotes: bool,
    comments: Rc<RefCell<Vec<String>>>,
}

impl<R: BufRead> Read for CommentTap<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.line.len() {
            self.line.clear();
            self.at = 0;
            if self.inner.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(0);
            }
            if !self.in_quotes && self.line.first() == Some(&b'#') {
                let text = String::from_utf8_lossy(&self.line);
                self.comments
                    .borrow_mut()
                    .push(text.trim_end_matches(['\r', '\n']).to_owned());
                self.line.clear();
                continue;
            }
            let quotes = self.line.iter().filter(|b| **b == b'"').count();
            if quotes % 2 == 1 {
                self.in_quotes = !self.in_quotes;
            }
        }
        let n = out.len().min(self.line.len() - self.at);
        out[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

type Decoded<R> = BufReader<encoding_rs_io::DecodeReaderBytes<R, Vec<u8>>>;
type Comments = Rc<RefCell<Vec<String>>>;

fn gbk_csv<R: Read>(reader: R) -> (csv::Reader<CommentTap<Decoded<R>>>, Comments) {
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding_rs::GBK))
        .build(reader);
    let comments = Rc::new(RefCell::new(Vec::new()));
    let tap = CommentTap {
        inner: BufReader::with_capacity(64 * 1024, decoded),
        line: Vec::new(),
        at: 0,
        in_quotes: false,
        comments: Rc::clone(&comments),
    };
    let reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(tap);
    (reader, comments)
}

/// Fields are trimmed of the trailing tabs Alipay writes (and of spaces).
fn field(record: &csv::StringRecord, index: usize) -> &str {
    record
        .get(index)
        .unwrap_or("")
        .trim_matches(|c: char| c == '\t' || c == ' ')
}

fn column(headers: &csv::StringRecord, name: &'static str) -> Result<usize, BillError> {
    headers
        .iter()
        .position(|h| h.trim_matches(|c: char| c == '\t' || c == ' ') == name)
        .ok_or(BillError::MissingColumn(name))
}

struct DetailColumns {
    trade_no: usize,
    out_trade_no: usize,
    kind: usize,
    completed_at: usize,
    order: usize,
    received: usize,
    out_request_no: usize,
    fee: usize,
}

/// The detail file's rows, one at a time.
pub struct DetailReader<R: Read> {
    records: csv::StringRecordsIntoIter<CommentTap<Decoded<R>>>,
    columns: DetailColumns,
    comments: Rc<RefCell<Vec<String>>>,
}

impl<R: Read> DetailReader<R> {
    pub fn new(reader: R) -> Result<Self, BillError> {
        let (mut csv, comments) = gbk_csv(reader);
        let headers = csv
            .headers()
            .map_err(|e| BillError::Io(e.to_string()))?
            .clone();
        let columns = DetailColumns {
            trade_no: column(&headers, "支付宝交易号")?,
            out_trade_no: column(&headers, "商户订单号")?,
            kind: column(&headers, "业务类型")?,
            completed_at: column(&headers, "完成时间")?,
            order: column(&headers, "订单金额（元）")?,
            received: column(&headers, "商家实收（元）")?,
            out_request_no: column(&headers, "退款批次号/请求号")?,
            fee: column(&headers, "服务费（元）")?,
        };
        Ok(DetailReader {
            records: csv.into_records(),
            columns,
            comments,
        })
    }

    /// The footer's declared totals: complete once the rows have been read to the end.
    pub fn footer(&self) -> Footer {
        parse_footer(&self.comments.borrow())
    }

    fn row(&self, record: &csv::StringRecord) -> Result<BillRow, BillError> {
        let line = record.position().map_or(0, csv::Position::line);
        let c = &self.columns;
        let amount = |index: usize, name: &str| {
            parse_yuan(field(record, index)).map_err(|message| BillError::Format {
                line,
                message: format!("{name}: {message}"),
            })
        };
        let kind = match field(record, c.kind) {
            "交易" => RowKind::Payment,
            "退款" => RowKind::Refund,
            other => RowKind::Other(other.to_owned()),
        };
        let out_request_no =
            Some(field(record, c.out_request_no).to_owned()).filter(|no| !no.is_empty());
        let fee_text = field(record, c.fee);
        Ok(BillRow {
            trade_no: field(record, c.trade_no).to_owned(),
            out_trade_no: field(record, c.out_trade_no).to_owned(),
            completed_at: field(record, c.completed_at).to_owned(),
            order_fen: amount(c.order, "订单金额")?,
            received_fen: amount(c.received, "商家实收")?,
            fee_fen: if fee_text.is_empty() {
                0
            } else {
                amount(c.fee, "服务费")?
            },
            out_request_no,
            kind,
            line,
        })
    }
}

impl<R: Read> Iterator for DetailReader<R> {
    type Item = Result<BillRow, BillError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let record = match self.records.next()? {
                Ok(record) => record,
                Err(error) => return Some(Err(BillError::Io(error.to_string()))),
            };
            // A blank line between the table and its footer is not a row.
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            return Some(self.row(&record));
        }
    }
}

/// `#交易合计：6笔，商家实收共0.06元，…`: the count before `笔`, the amount after `共` up to `元`.
fn declared(line: &str) -> Option<Declared> {
    let (_, rest) = line.split_once('：')?;
    let (count, rest) = rest.split_once('笔')?;
    let (_, rest) = rest.split_once('共')?;
    let (amount, _) = rest.split_once('元')?;
    Some(Declared {
        count: count.trim().parse().ok()?,
        fen: parse_yuan(amount).ok()?,
    })
}

fn parse_footer(comments: &[String]) -> Footer {
    let mut footer = Footer::default();
    for line in comments {
        if line.contains("业务明细列表结束") {
            footer.complete = true;
        } else if line.starts_with("#交易合计") {
            footer.payments = declared(line);
        } else if line.starts_with("#退款合计") {
            footer.refunds = declared(line);
        }
    }
    footer
}

/// The summary file's `合计` row.
pub fn read_summary<R: Read>(reader: R) -> Result<SummaryTotals, BillError> {
    let (mut csv, _) = gbk_csv(reader);
    let headers = csv
        .headers()
        .map_err(|e| BillError::Io(e.to_string()))?
        .clone();
    let payments = column(&headers, "交易订单总笔数")?;
    let refunds = column(&headers, "退款订单总笔数")?;
    let order = column(&headers, "订单金额（元）")?;
    let received = column(&headers, "商家实收（元）")?;
    let fee = column(&headers, "服务费（元）")?;
    for record in csv.records() {
        let record = record.map_err(|e| BillError::Io(e.to_string()))?;
        if field(&record, 0) != "合计" {
            continue;
        }
        let line = record.position().map_or(0, csv::Position::line);
        let format = |message: String| BillError::Format { line, message };
        let count = |index: usize| {
            field(&record, index)
                .parse::<u64>()
                .map_err(|e| format(e.to_string()))
        };
        return Ok(SummaryTotals {
            payments: count(payments)?,
            refunds: count(refunds)?,
            order_fen: parse_yuan(field(&record, order)).map_err(format)?,
            received_fen: parse_yuan(field(&record, received)).map_err(format)?,
            fee_fen: parse_yuan(field(&record, fee)).map_err(format)?,
        });
    }
    Err(BillError::Format {
        line: 0,
        message: "the summary has no 合计 row".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real sample from docs/alipay/operations.md §2, byte for byte (`\t` is a tab in the file).
    const SAMPLE: &str = "#支付宝业务明细查询\n#账号：[20880211096256330156]\n#起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]\n#-----------------------------------------业务明细列表----------------------------------------\n支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\n2019091622001458860515315453\t,service_1568601259302\t,交易\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:55:23,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,0.01,0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,0.00,0.00,下单测试\n2019091622001458860515315453\t,service_1568601259302\t,退款\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:56:48,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,-0.01,-0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,re_test_1568602607356\t,0.00,0.00,下单测试\n#-----------------------------------------业务明细列表结束------------------------------------\n#交易合计：6笔，商家实收共0.06元，商家优惠共0.00元\n#退款合计：4笔，商家实收退款共-0.04元，商家优惠退款共0.00元\n#导出时间：[2019年09月17日 05:46:49]\n";

    fn gbk(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    fn rows(text: &str) -> (Vec<BillRow>, Footer) {
        let bytes = gbk(text);
        let mut reader = DetailReader::new(bytes.as_slice()).expect("header");
        let rows = reader
            .by_ref()
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        (rows, reader.footer())
    }

    #[test]
    fn the_published_sample_parses_exactly() {
        let (rows, footer) = rows(SAMPLE);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, RowKind::Payment);
        assert_eq!(rows[0].trade_no, "2019091622001458860515315453");
        assert_eq!(rows[0].out_trade_no, "service_1568601259302");
        assert_eq!(rows[0].completed_at, "2019-09-16 10:55:23");
        assert_eq!((rows[0].order_fen, rows[0].received_fen), (1, 1));
        assert_eq!(rows[0].out_request_no, None);
        assert_eq!(rows[1].kind, RowKind::Refund);
        assert_eq!((rows[1].order_fen, rows[1].received_fen), (-1, -1));
        assert_eq!(
            rows[1].out_request_no.as_deref(),
            Some("re_test_1568602607356")
        );
        assert_eq!(rows[1].completed_at, "2019-09-16 10:56:48");
        assert_eq!(
            footer,
            Footer {
                payments: Some(Declared { count: 6, fen: 6 }),
                refunds: Some(Declared { count: 4, fen: -4 }),
                complete: true,
            }
        );
    }

    #[test]
    fn a_quoted_comma_in_the_subject_and_both_fee_signs_parse() {
        let header = SAMPLE.lines().take(5).collect::<Vec<_>>().join("\n");
        let text = format!(
            "{header}\n1\t,o1\t,交易\t,\"会员, 年卡\",2026-11-26 10:00:00,2026-11-26 10:00:05,,,,,,299.00,299.00,0,0,0,0,0,,0,0,\t,1.79,0,\n\
             1\t,o1\t,退款\t,\"会员, 年卡\",2026-11-26 10:00:00,2026-11-26 11:00:00,,,,,,-99.00,-99.00,0,0,0,0,0,,0,0,r1\t,-0.59,0,\n\
             1\t,o1\t,退款\t,\"多行\n#商品\",2026-11-26 10:00:00,2026-11-26 12:00:00,,,,,,-1.00,-1.00,0,0,0,0,0,,0,0,r2\t,0.01,0,\n\
             #-------业务明细列表结束-------\n"
        );
        let (rows, footer) = rows(&text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].order_fen, 29_900);
        assert_eq!(rows[0].fee_fen, 179);
        assert_eq!(rows[1].fee_fen, -59);
        assert_eq!(rows[2].fee_fen, 1);
        // A line of a quoted field that starts with `#` is data, not a comment.
        assert_eq!(rows[2].out_request_no.as_deref(), Some("r2"));
        assert!(footer.complete);
        assert_eq!(footer.payments, None);
    }

    #[test]
    fn a_truncated_bill_has_no_end_marker_and_bad_amounts_are_errors() {
        let truncated: String = SAMPLE.lines().take(6).map(|l| format!("{l}\n")).collect();
        let (rows, footer) = rows(&truncated);
        assert_eq!(rows.len(), 1);
        assert!(!footer.complete);

        let bad = SAMPLE.replace(",0.01,0.01,", ",0.0x,0.01,");
        let bytes = gbk(&bad);
        let mut reader = DetailReader::new(bytes.as_slice()).expect("header");
        assert!(matches!(reader.next(), Some(Err(BillError::Format { .. }))));

        let headless = SAMPLE.replace("服务费（元）", "fee");
        let bytes = gbk(&headless);
        assert!(matches!(
            DetailReader::new(bytes.as_slice()).err(),
            Some(BillError::MissingColumn("服务费（元）"))
        ));
    }

    #[test]
    fn yuan_parse_exactly() {
        assert_eq!(parse_yuan("-0.01"), Ok(-1));
        assert_eq!(parse_yuan("12.3"), Ok(1230));
        assert_eq!(parse_yuan("0.00"), Ok(0));
        assert_eq!(parse_yuan(" 100000000.00 "), Ok(10_000_000_000));
        for bad in ["", "-", "1.001", "1e3", "--1", "0x1", "1,000.00"] {
            assert!(parse_yuan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn summary_totals_are_read_from_the_total_row() {
        let text = "#支付宝业务汇总查询\n#账号：[20880211096256330156]\n#-----------业务汇总列表-----------\n门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\nalipay_store\t,alipay_store\t,6,4,0.02,0.02,0.00,0.00,0.00,0.00,0.00,0.02\n合计,,6,4,0.02,0.02,0.00,0.00,0.00,0.00,0.00,0.02\n#-----------业务汇总列表结束-----------\n";
        let totals = read_summary(gbk(text).as_slice()).expect("summary");
        assert_eq!(
            totals,
            SummaryTotals {
                payments: 6,
                refunds: 4,
                order_fen: 2,
                received_fen: 2,
                fee_fen: 0
            }
        );
    }

    #[test]
    fn gbk_entry_names_are_decoded() {
        let name = "20880211096256330156_20190916_业务明细.csv";
        assert_eq!(entry_name(&gbk(name)), name);
        assert_eq!(entry_name(name.as_bytes()), name);
    }
}
