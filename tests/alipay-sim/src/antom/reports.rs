//! The simulated Antom's reconciliation reports, written from its own ledger in the layout and
//! columns of Antom's report pages (docs/antom/reports.md): under
//! `<base>/v1/settlements/<merchantId>/<yyyyMMdd>/`, the day's `transactionItems_…` (every
//! payment and refund that succeeded that China-time day), and in the next day's folder the
//! settlement of those transactions in each settlement currency (`settlementItems_…` and
//! `settlementSummary_…`, one batch per transaction day and currency). Amounts are decimals of
//! their currency; refunds are negative; the simulator charges a fee of 1% of each payment's
//! settlement, written negative; its settlement details put some columns in another order than
//! the pages list them (columns are found by name). A base served over SFTP is Antom's server.
//!
//! Edits make the reports disagree with the gateway on purpose, one kind each.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AntomInner, AntomRefund, AntomSimulator, PaymentState, RefundState, exponent, settle};

/// An edit of what the reports say (or, for `AddRefund`, of what Antom did).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportEdit {
    /// The payment's row says another amount (minor units).
    SetAmount {
        payment_request_id: String,
        value: u64,
    },
    /// The payment is in no transaction details.
    Forget { payment_request_id: String },
    /// Antom executes a refund the gateway never asked for (or one it was told had failed).
    AddRefund {
        payment_request_id: String,
        refund_request_id: String,
        value: u64,
    },
    /// The refund is in no transaction details.
    RemoveRefund { refund_request_id: String },
    /// The refund's row says another amount.
    SetRefundAmount {
        refund_request_id: String,
        value: u64,
    },
    /// The payment is settled at another amount (minor units of the settlement currency).
    SetSettlement {
        payment_request_id: String,
        value: u64,
    },
    /// The payment is in no settlement details.
    Unsettled { payment_request_id: String },
}

/// The merchant's folder on the server.
pub fn merchant_root(merchant_id: &str) -> String {
    format!("/v1/settlements/{merchant_id}")
}

/// Minor units as a decimal of `currency`, signed.
fn decimal(minor: i128, currency: &str) -> String {
    let e = exponent(currency).unwrap_or(2);
    let sign = if minor < 0 { "-" } else { "" };
    let size = minor.unsigned_abs();
    if e == 0 {
        return format!("{sign}{size}");
    }
    let unit = 10u128.pow(e);
    format!("{sign}{}.{:0w$}", size / unit, size % unit, w = e as usize)
}

/// `yyyy-MM-dd` → `yyyyMMdd`, and the day after.
fn compact(date: &str) -> String {
    date.replace('-', "")
}

fn next_day(date: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, format).ok()?;
    let next = day.next_day()?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        next.year(),
        u8::from(next.month()),
        next.day()
    ))
}

fn china_date(ms: i64) -> String {
    crate::clock::china_text(ms.div_euclid(1000))[..10].to_owned()
}

/// A transaction as the reports show it.
struct Line {
    kind: &'static str,
    id: String,
    request_id: String,
    original_id: String,
    original_request_id: String,
    at_ms: i64,
    currency: String,
    value: u64,
    /// The settlement: currency, value, quote pair and rate.
    settled: Option<(String, u64, String, String)>,
}

impl AntomSimulator {
    /// Records an edit (applied when reports are written; `AddRefund` executes at once).
    pub fn edit_reports(&self, edit: ReportEdit) -> Result<(), String> {
        edit_reports(&self.inner, edit)
    }

    /// Writes the reports of the China-time day `date` (`yyyy-MM-dd`) under `base`: its
    /// transaction details, and the settlement of its transactions in the next day's folder.
    /// Returns the files written.
    pub fn write_reports(&self, date: &str, base: &Path) -> std::io::Result<Vec<PathBuf>> {
        write_reports(&self.inner, date, base)
    }
}

pub(super) fn edit_reports(inner: &AntomInner, edit: ReportEdit) -> Result<(), String> {
    {
        if let ReportEdit::AddRefund {
            payment_request_id,
            refund_request_id,
            value,
        } = &edit
        {
            let now = inner.now_ms();
            let mut state = inner.state();
            let payment = state
                .payments
                .get_mut(payment_request_id)
                .ok_or_else(|| format!("no payment {payment_request_id}"))?;
            payment.refunded += value;
            let currency = payment.currency.clone();
            let n = inner.next();
            state.refunds.insert(
                refund_request_id.clone(),
                AntomRefund {
                    refund_request_id: refund_request_id.clone(),
                    refund_id: format!("R{n:020}"),
                    payment_request_id: payment_request_id.clone(),
                    currency,
                    value: *value,
                    status: RefundState::Success,
                    notify_url: None,
                    created_ms: now,
                    done_ms: Some(now),
                    digest: String::new(),
                },
            );
            return Ok(());
        }
        inner.state().report_edits.push(edit);
        Ok(())
    }
}

pub(super) fn write_reports(
    inner: &AntomInner,
    date: &str,
    base: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    {
        let lines = day_lines(inner, date);
        let edits = inner.state().report_edits.clone();
        let merchant = inner.config.merchant_id.clone();
        let root = base.join(merchant_root(&merchant).trim_start_matches('/'));
        let mut written = Vec::new();
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
        let next = next_day(date).ok_or_else(|| invalid("a date yyyy-MM-dd"))?;

        // Transaction details.
        let mut text = String::from(
            "customerId,PSP,transactionType,transactionId,originalTransactionId,transactionRequestId,originalTransactionRequestId,paymentMethodType,paymentTime,transactionAmountValue,transactionCurrency\n",
        );
        for line in &lines {
            let mut value = i128::from(line.value);
            let mut shown = true;
            for edit in &edits {
                match edit {
                    ReportEdit::SetAmount {
                        payment_request_id,
                        value: v,
                    } if line.kind == "PAYMENT" && *payment_request_id == line.request_id => {
                        value = i128::from(*v)
                    }
                    ReportEdit::Forget { payment_request_id }
                        if line.kind == "PAYMENT" && *payment_request_id == line.request_id =>
                    {
                        shown = false
                    }
                    ReportEdit::RemoveRefund { refund_request_id }
                        if line.kind == "REFUND" && *refund_request_id == line.request_id =>
                    {
                        shown = false
                    }
                    ReportEdit::SetRefundAmount {
                        refund_request_id,
                        value: v,
                    } if line.kind == "REFUND" && *refund_request_id == line.request_id => {
                        value = i128::from(*v)
                    }
                    _ => {}
                }
            }
            if !shown {
                continue;
            }
            if line.kind == "REFUND" {
                value = -value;
            }
            let _ = writeln!(
                text,
                "{merchant},ANTOM,{},{},{},{},{},ALIPAY_CN,{},{},{}",
                line.kind,
                line.id,
                line.original_id,
                line.request_id,
                line.original_request_id,
                super::iso(line.at_ms),
                decimal(value, &line.currency),
                line.currency
            );
        }
        text.push_str("<END>\n");
        let folder = root.join(compact(date));
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("transactionItems_{}_000.csv", compact(date)));
        std::fs::write(&path, text)?;
        written.push(path);

        // Settlement, one batch per settlement currency, in the next day's folder.
        let mut currencies: Vec<String> = lines
            .iter()
            .map(|l| {
                l.settled
                    .as_ref()
                    .map_or(l.currency.clone(), |s| s.0.clone())
            })
            .collect();
        currencies.sort();
        currencies.dedup();
        let folder = root.join(compact(&next));
        std::fs::create_dir_all(&folder)?;
        for currency in currencies {
            let batch = format!("{}{currency}{}", compact(date), merchant.len());
            let mut details = String::from(
                "settlementBatchId,customerId,PSP,transactionType,transactionId,originalTransactionId,transactionRequestId,originalTransactionRequestId,paymentMethodType,paymentTime,settlementTime,transactionCurrency,transactionAmountValue,settlementAmountValue,settlementCurrency,quoteCurrencyPair,quotePrice,feeAmountValue,feeCurrency\n",
            );
            // Per summary type: count, net amount, fees.
            let mut summary: std::collections::BTreeMap<&str, (u64, i128, i128)> =
                std::collections::BTreeMap::new();
            for line in &lines {
                let (into, mut settled, pair, rate) = match &line.settled {
                    Some((into, value, pair, rate)) => {
                        (into.clone(), *value, pair.clone(), rate.clone())
                    }
                    None => (
                        line.currency.clone(),
                        line.value,
                        String::new(),
                        String::new(),
                    ),
                };
                if into != currency {
                    continue;
                }
                let mut shown = true;
                for edit in &edits {
                    match edit {
                        ReportEdit::SetSettlement {
                            payment_request_id,
                            value,
                        } if line.kind == "PAYMENT" && *payment_request_id == line.request_id => {
                            settled = *value
                        }
                        ReportEdit::Unsettled { payment_request_id }
                            if line.kind == "PAYMENT" && *payment_request_id == line.request_id =>
                        {
                            shown = false
                        }
                        _ => {}
                    }
                }
                if !shown {
                    continue;
                }
                let (signed, fee) = match line.kind {
                    // 1% of the settlement, half up, written as a deduction.
                    "PAYMENT" => (i128::from(settled), -(i128::from(settled) + 50) / 100),
                    _ => (-i128::from(settled), 0),
                };
                let (fee_value, fee_currency) = if fee == 0 {
                    (String::new(), String::new())
                } else {
                    (decimal(fee, &currency), currency.clone())
                };
                let sign = if line.kind == "PAYMENT" { 1 } else { -1 };
                let _ = writeln!(
                    details,
                    "{batch},{merchant},ANTOM,{},{},{},{},{},ALIPAY_CN,{},{}T10:00:00+08:00,{},{},{},{currency},{pair},{rate},{fee_value},{fee_currency}",
                    line.kind,
                    line.id,
                    line.original_id,
                    line.request_id,
                    line.original_request_id,
                    super::iso(line.at_ms),
                    next,
                    line.currency,
                    decimal(i128::from(line.value) * sign, &line.currency),
                    decimal(signed, &currency),
                );
                let entry = summary.entry(line.kind).or_default();
                entry.0 += 1;
                entry.1 += signed + fee;
                entry.2 += fee;
            }
            details.push_str("<END>\n");
            let path = folder.join(format!("settlementItems_{currency}_{batch}_000.csv"));
            std::fs::write(&path, details)?;
            written.push(path);
            let mut text = String::from(
                "settlementBatchId,customerId,PSP,summaryType,settlementInitiatedDate,count,settlementAmountValue,settlementCurrency,feeAmountValue,feeCurrency,settlementTime\n",
            );
            for (kind, (count, net, fee)) in summary {
                let _ = writeln!(
                    text,
                    "{batch},{merchant},ANTOM,{kind},{next},{count},{},{currency},{},{currency},{next}T10:00:00+08:00",
                    decimal(net, &currency),
                    decimal(fee, &currency),
                );
            }
            text.push_str("<END>\n");
            let path = folder.join(format!("settlementSummary_{currency}_{batch}_000.csv"));
            std::fs::write(&path, text)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The day's succeeded payments and refunds, in time order.
fn day_lines(inner: &AntomInner, date: &str) -> Vec<Line> {
    let state = inner.state();
    let mut lines = Vec::new();
    for payment in state.payments.values() {
        let Some(paid_ms) = payment.paid_ms else {
            continue;
        };
        if !matches!(payment.status, PaymentState::Success) || china_date(paid_ms) != date {
            continue;
        }
        lines.push(Line {
            kind: "PAYMENT",
            id: payment.payment_id.clone(),
            request_id: payment.payment_request_id.clone(),
            original_id: String::new(),
            original_request_id: String::new(),
            at_ms: paid_ms,
            currency: payment.currency.clone(),
            value: payment.value,
            settled: payment.settlement.as_ref().map(|(into, value, _, rate)| {
                (
                    into.clone(),
                    *value,
                    format!("{}/{into}", payment.currency),
                    rate.clone(),
                )
            }),
        });
    }
    for refund in state.refunds.values() {
        let Some(done_ms) = refund.done_ms else {
            continue;
        };
        if refund.status != RefundState::Success || china_date(done_ms) != date {
            continue;
        }
        let Some(payment) = state.payments.get(&refund.payment_request_id) else {
            continue;
        };
        let settled = payment.settlement.as_ref().and_then(|(into, _, _, _)| {
            settle(&refund.currency, refund.value, into, 0).map(|(into, value, _, rate)| {
                (
                    into.clone(),
                    value,
                    format!("{}/{into}", refund.currency),
                    rate,
                )
            })
        });
        lines.push(Line {
            kind: "REFUND",
            id: refund.refund_id.clone(),
            request_id: refund.refund_request_id.clone(),
            original_id: payment.payment_id.clone(),
            original_request_id: payment.payment_request_id.clone(),
            at_ms: done_ms,
            currency: refund.currency.clone(),
            value: refund.value,
            settled,
        });
    }
    lines.sort_by(|a, b| (a.at_ms, &a.request_id).cmp(&(b.at_ms, &b.request_id)));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency() {
        assert_eq!(decimal(1099, "USD"), "10.99");
        assert_eq!(decimal(-500, "USD"), "-5.00");
        assert_eq!(decimal(1250, "JPY"), "1250");
        assert_eq!(next_day("2026-12-31").as_deref(), Some("2027-01-01"));
        assert_eq!(compact("2026-12-05"), "20261205");
    }
}
