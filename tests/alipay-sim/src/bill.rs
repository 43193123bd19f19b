//! The simulator's daily bill, written from its own ledger in the format of docs/alipay/operations.md §2
//! (the real sample): a zip named `<PID>0156_<yyyyMMdd>.csv.zip` holding the GBK detail and
//! summary files, with entry names in GBK (no UTF-8 flag), comment header and footer lines,
//! trailing tabs, negative refund rows. Nothing here comes from the gateway's code.

use std::io::Write as _;

use super::{Trade, yuan};

/// One detail row.
#[derive(Clone, Debug)]
pub struct BillLine {
    pub trade_no: String,
    pub out_trade_no: String,
    pub refund: bool,
    pub subject: String,
    pub created: String,
    pub completed: String,
    /// Positive fen; written negative on refund rows.
    pub fen: u64,
    pub out_request_no: String,
    pub fee_fen: u64,
}

/// Alipay's standard rate, 0.6%, rounded half up to the fen: the simulator's own fee rule.
pub fn fee(fen: u64) -> u64 {
    (fen * 6 + 500) / 1000
}

/// The rows of China-time day `date` (`yyyy-MM-dd`): payments completed that day, refunds
/// executed that day. Times are the simulator's China-time texts, so the day is their prefix.
pub fn lines_of_day(trades: &[Trade], date: &str) -> Vec<BillLine> {
    let mut lines = Vec::new();
    for trade in trades {
        if let Some(paid) = &trade.gmt_payment
            && paid.starts_with(date)
        {
            lines.push(BillLine {
                trade_no: trade.trade_no.clone(),
                out_trade_no: trade.out_trade_no.clone(),
                refund: false,
                subject: trade.subject.clone(),
                created: trade.gmt_create.clone(),
                completed: paid.clone(),
                fen: trade.total_fen,
                out_request_no: String::new(),
                fee_fen: fee(trade.total_fen),
            });
        }
        for refund in trade.executed_refunds() {
            if refund.gmt_refund.starts_with(date) {
                lines.push(BillLine {
                    trade_no: trade.trade_no.clone(),
                    out_trade_no: trade.out_trade_no.clone(),
                    refund: true,
                    subject: trade.subject.clone(),
                    created: trade.gmt_create.clone(),
                    completed: refund.gmt_refund.clone(),
                    fen: super::fen(&refund.refund_amount).unwrap_or(0),
                    out_request_no: refund.out_request_no.clone(),
                    fee_fen: 0,
                });
            }
        }
    }
    lines.sort_by(|a, b| a.completed.cmp(&b.completed));
    lines
}

fn signed(fen: u64, negative: bool) -> String {
    if negative && fen > 0 {
        format!("-{}", yuan(fen))
    } else {
        yuan(fen)
    }
}

/// `2026年11月26日 00:00:00` from `2026-11-26`.
fn chinese_date(date: &str) -> String {
    let mut parts = date.split('-');
    let (y, m, d) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    format!("{y}年{m}月{d}日 00:00:00")
}

fn next_day(date: &str) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(date, format)
        .ok()
        .and_then(|d| d.next_day())
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|| date.to_owned())
}

const DETAIL_HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

/// The detail CSV (UTF-8 text, before GBK), footer totals as Alipay writes them.
pub fn detail_text(pid: &str, date: &str, lines: &[BillLine], exported_at: &str) -> String {
    let mut out = String::new();
    out.push_str("#支付宝业务明细查询\n");
    out.push_str(&format!("#账号：[{pid}0156]\n"));
    out.push_str(&format!(
        "#起始日期：[{}]   终止日期：[{}]\n",
        chinese_date(date),
        chinese_date(&next_day(date))
    ));
    out.push_str("#-----------------------------------------业务明细列表----------------------------------------\n");
    out.push_str(DETAIL_HEADER);
    out.push('\n');
    let mut table = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let (mut payments, mut payment_fen, mut refunds, mut refund_fen) = (0u64, 0u64, 0u64, 0u64);
    for line in lines {
        if line.refund {
            refunds += 1;
            refund_fen += line.fen;
        } else {
            payments += 1;
            payment_fen += line.fen;
        }
        let amount = signed(line.fen, line.refund);
        let tab = |text: &str| format!("{text}\t");
        let record = [
            tab(&line.trade_no),
            tab(&line.out_trade_no),
            tab(if line.refund { "退款" } else { "交易" }),
            line.subject.clone(),
            line.created.clone(),
            line.completed.clone(),
            tab("local_store"),
            tab("local_store"),
            tab("alipay"),
            tab(""),
            tab("buy***@example.com"),
            amount.clone(),
            amount,
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            String::new(),
            tab("0.00"),
            "0.00".into(),
            tab(&line.out_request_no),
            yuan(line.fee_fen),
            "0.00".into(),
            line.subject.clone(),
        ];
        let _ = table.write_record(&record);
    }
    let _ = table.flush();
    out.push_str(&String::from_utf8_lossy(
        &table.into_inner().unwrap_or_default(),
    ));
    out.push_str("#-----------------------------------------业务明细列表结束------------------------------------\n");
    out.push_str(&format!(
        "#交易合计：{payments}笔，商家实收共{}元，商家优惠共0.00元\n",
        yuan(payment_fen)
    ));
    out.push_str(&format!(
        "#退款合计：{refunds}笔，商家实收退款共{}元，商家优惠退款共0.00元\n",
        signed(refund_fen, true)
    ));
    out.push_str(&format!("#导出时间：[{exported_at}]\n"));
    out
}

/// The summary CSV: one store row and the `合计` row.
pub fn summary_text(pid: &str, date: &str, lines: &[BillLine], exported_at: &str) -> String {
    let payments = lines.iter().filter(|l| !l.refund).count();
    let refunds = lines.len() - payments;
    let net: i64 = lines
        .iter()
        .map(|l| {
            if l.refund {
                -(l.fen as i64)
            } else {
                l.fen as i64
            }
        })
        .sum();
    let fees: u64 = lines.iter().map(|l| l.fee_fen).sum();
    let money = |fen: i64| {
        if fen < 0 {
            format!("-{}", yuan(fen.unsigned_abs()))
        } else {
            yuan(fen as u64)
        }
    };
    let row = |name: &str| {
        format!(
            "{name},{payments},{refunds},{},{},0.00,0.00,0.00,{},0.00,{}\n",
            money(net),
            money(net),
            yuan(fees),
            money(net - fees as i64)
        )
    };
    let mut out = String::new();
    out.push_str("#支付宝业务汇总查询\n");
    out.push_str(&format!("#账号：[{pid}0156]\n"));
    out.push_str(&format!(
        "#起始日期：[{}]   终止日期：[{}]\n",
        chinese_date(date),
        chinese_date(&next_day(date))
    ));
    out.push_str("#-----------------------------------------业务汇总列表----------------------------------------\n");
    out.push_str("门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\n");
    out.push_str(&row("local_store\t,local_store\t"));
    out.push_str(&row("合计,"));
    out.push_str("#-----------------------------------------业务汇总列表结束------------------------------------\n");
    out.push_str(&format!("#导出时间：[{exported_at}]\n"));
    out
}

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

/// The zip's file name.
pub fn zip_name(pid: &str, date: &str) -> String {
    format!("{pid}0156_{}.csv.zip", date.replace('-', ""))
}

/// The zip, entry names in GBK without the UTF-8 flag (as Alipay's are): written under ASCII
/// stand-ins of the same length, then the name bytes are swapped in.
pub fn bill_zip(pid: &str, date: &str, lines: &[BillLine], exported_at: &str) -> Vec<u8> {
    let compact = date.replace('-', "");
    let entries = [
        (
            format!("{pid}0156_{compact}_业务明细.csv"),
            detail_text(pid, date, lines, exported_at),
        ),
        (
            format!("{pid}0156_{compact}_业务明细(汇总).csv"),
            summary_text(pid, date, lines, exported_at),
        ),
    ];
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut swaps = Vec::new();
    for (index, (name, text)) in entries.iter().enumerate() {
        let real = gbk(name);
        let stand_in = format!("{index}{}", "~".repeat(real.len() - 1));
        swaps.push((stand_in.clone().into_bytes(), real));
        if writer.start_file(stand_in, options).is_err() {
            return Vec::new();
        }
        let _ = writer.write_all(&gbk(text));
    }
    let mut bytes = writer
        .finish()
        .map(std::io::Cursor::into_inner)
        .unwrap_or_default();
    for (stand_in, real) in swaps {
        let mut at = 0;
        while let Some(found) = bytes[at..]
            .windows(stand_in.len())
            .position(|w| w == stand_in.as_slice())
        {
            let start = at + found;
            bytes[start..start + real.len()].copy_from_slice(&real);
            at = start + real.len();
        }
    }
    bytes
}
