//! Reconciliation decisions, pure: given our records of a China-time day and the provider's
//! rows of that day (Alipay's bill, Antom's transaction details), what matches, what differs,
//! and what to look up. The I/O (the reports' download, the day index, the repair of a lost
//! notification, the report) is the `reconcile` function's.
//!
//! A row is matched with the day's records; a row the day does not hold is looked up by its
//! order ([`classify_unrecorded`]): a payment recorded on a neighbouring day is a timing
//! difference (counted, not a discrepancy), an order still CREATED or CLOSED here is a lost
//! notification to verify and repair. What the day holds and the provider lacks is left over.
//! Amounts are [`Money`]: a row in another currency than the record never matches it.
//!
//! Settlement (Antom): each payment of the day is looked for in the settlement details of the
//! days after it ([`SettlementBook`]); one settled in another currency or amount than the
//! notification or inquiry recorded, or not settled once its expected date has passed, is a
//! discrepancy of its own.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::states::{Currency, Money, Order, OrderStatus, Refund, RefundStatus};
use alipay::bill::{BillRow, RowKind};
use antom::report::{SettlementItem, Signed};

/// A record of our books for a day, as the day index shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayEntry {
    /// A paid order (`status` PAID or FINISHED), `paid` as paid, `settled` the settlement the
    /// provider reported (Antom's `grossSettlementAmount`, v1's `settle_amount`), if any.
    Payment {
        out_trade_no: String,
        trade_no: Option<String>,
        paid: Money,
        status: String,
        settled: Option<Money>,
    },
    /// A SUCCEEDED refund.
    Refund {
        out_trade_no: String,
        out_request_no: String,
        amount: Money,
    },
}

/// One row of the provider's report, whatever the protocol: a payment or a refund with its
/// amount (positive, in its own currency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: RowKind,
    /// Alipay's `trade_no`, Antom's `paymentId` / `refundId`.
    pub trade_no: String,
    pub out_trade_no: String,
    /// The refund's `out_request_no` (refund rows).
    pub out_request_no: Option<String>,
    pub amount: Money,
    /// The line it comes from, for the report.
    pub line: u64,
}

impl Row {
    /// A bill row of Alipay v1 (CNY; refund rows are negative as written). `None`: an amount
    /// beyond what any payment can be.
    pub fn of_bill(row: &BillRow) -> Option<Row> {
        Some(Row {
            kind: row.kind.clone(),
            trade_no: row.trade_no.clone(),
            out_trade_no: row.out_trade_no.clone(),
            out_request_no: row.out_request_no.clone(),
            amount: Money::from_minor(row.order_fen.unsigned_abs(), Currency::CNY).ok()?,
            line: row.line,
        })
    }
}

/// The kinds of discrepancy, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Paid at the provider, not paid here (a lost notification, or an order we never had).
    PaidAtAlipayNotHere,
    /// Paid here on the day, absent from the provider's report.
    HereNotAtAlipay,
    /// The payment's amount (or currency) differs.
    AmountDiffers,
    /// A refund in the provider's report that we never recorded.
    RefundMissingHere,
    /// A refund that succeeded here on the day, absent from the provider's report.
    RefundMissingAtAlipay,
    /// The refund's amount (or currency) differs.
    RefundAmountDiffers,
    /// Both sides know it, in different states (a refund PENDING or FAILED here, executed at
    /// the provider; a payment by another trade).
    StatusDiffers,
    /// Settled in another currency or amount than the provider told us when it was paid.
    SettlementDiffers,
    /// Paid, and still in no settlement report after its expected settlement date.
    SettlementMissing,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::PaidAtAlipayNotHere,
        Category::HereNotAtAlipay,
        Category::AmountDiffers,
        Category::RefundMissingHere,
        Category::RefundMissingAtAlipay,
        Category::RefundAmountDiffers,
        Category::StatusDiffers,
        Category::SettlementDiffers,
        Category::SettlementMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::PaidAtAlipayNotHere => "paid_at_alipay_not_here",
            Category::HereNotAtAlipay => "here_not_at_alipay",
            Category::AmountDiffers => "amount_differs",
            Category::RefundMissingHere => "refund_missing_here",
            Category::RefundMissingAtAlipay => "refund_missing_at_alipay",
            Category::RefundAmountDiffers => "refund_amount_differs",
            Category::StatusDiffers => "status_differs",
            Category::SettlementDiffers => "settlement_differs",
            Category::SettlementMissing => "settlement_missing",
        }
    }

    /// The metric name (CamelCase, as CloudWatch metrics are named).
    pub fn metric(self) -> &'static str {
        match self {
            Category::PaidAtAlipayNotHere => "PaidAtAlipayNotHere",
            Category::HereNotAtAlipay => "HereNotAtAlipay",
            Category::AmountDiffers => "AmountDiffers",
            Category::RefundMissingHere => "RefundMissingHere",
            Category::RefundMissingAtAlipay => "RefundMissingAtAlipay",
            Category::RefundAmountDiffers => "RefundAmountDiffers",
            Category::StatusDiffers => "StatusDiffers",
            Category::SettlementDiffers => "SettlementDiffers",
            Category::SettlementMissing => "SettlementMissing",
        }
    }
}

/// One discrepancy, as the report lists it, for either protocol. Amounts are minor units of
/// `currency` (the field names are the first channel's: `alipay_fen` is the provider's side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub category: Category,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_request_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    /// The currency of both amounts (the provider's when they differ: `detail` names both).
    pub currency: Currency,
    /// What the provider's report says, in minor units.
    pub alipay_fen: Option<u64>,
    /// What we recorded, in minor units.
    pub ours_fen: Option<u64>,
    pub detail: String,
    /// A lost notification verified with a trade query and applied by this run.
    pub repaired: bool,
    /// The report line it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_line: Option<u64>,
}

impl Discrepancy {
    /// `ours` in another currency than the row's is left out of the amounts (`detail` names
    /// both): one currency per line.
    fn of_row(category: Category, row: &Row, ours: Option<Money>, detail: String) -> Self {
        Discrepancy {
            category,
            out_trade_no: row.out_trade_no.clone(),
            out_request_no: row.out_request_no.clone(),
            trade_no: Some(row.trade_no.clone()).filter(|t| !t.is_empty()),
            currency: row.amount.currency(),
            alipay_fen: Some(row.amount.minor()),
            ours_fen: ours
                .filter(|m| m.currency() == row.amount.currency())
                .map(Money::minor),
            detail,
            repaired: false,
            bill_line: Some(row.line),
        }
    }

    /// The provider's amount as a decimal of `currency` (`12.50`, `1250`), for the CSV.
    pub fn provider_amount(&self) -> String {
        decimal(self.alipay_fen, self.currency)
    }

    /// Our amount as a decimal of `currency`.
    pub fn our_amount(&self) -> String {
        decimal(self.ours_fen, self.currency)
    }
}

fn decimal(minor: Option<u64>, currency: Currency) -> String {
    minor
        .and_then(|m| Money::from_minor(m, currency).ok())
        .map(Money::decimal)
        .unwrap_or_default()
}

/// "12.50 USD", or "nothing".
fn shown(amount: Option<Money>) -> String {
    amount.map_or("nothing".into(), |m| {
        format!("{} {}", m.decimal(), m.currency())
    })
}

/// A day's totals as one side sees them. Amounts are positive minor units; with currencies
/// other than CNY their sums mix units: the per-currency figures are [`CurrencyTotals`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub payments: u64,
    pub gross_fen: u64,
    pub refunds: u64,
    pub refunded_fen: u64,
}

impl Totals {
    fn add_payment(&mut self, amount: Money) {
        self.payments += 1;
        self.gross_fen += amount.minor();
    }

    fn add_refund(&mut self, amount: Money) {
        self.refunds += 1;
        self.refunded_fen += amount.minor();
    }
}

/// Both sides' totals of one currency, as decimals of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    pub provider: Totals,
    pub ours: Totals,
}

/// Per currency (ISO code): what the provider reported and what we recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByCurrency(pub BTreeMap<String, CurrencyTotals>);

impl ByCurrency {
    fn entry(&mut self, currency: Currency) -> &mut CurrencyTotals {
        self.0.entry(currency.code().to_owned()).or_default()
    }

    /// A provider's row, counted.
    pub fn add_row(&mut self, row: &Row) {
        match row.kind {
            RowKind::Payment => self
                .entry(row.amount.currency())
                .provider
                .add_payment(row.amount),
            RowKind::Refund => self
                .entry(row.amount.currency())
                .provider
                .add_refund(row.amount),
            RowKind::Other(_) => {}
        }
    }

    fn add_ours(&mut self, entry: &DayEntry) {
        match entry {
            DayEntry::Payment { paid, .. } => self.entry(paid.currency()).ours.add_payment(*paid),
            DayEntry::Refund { amount, .. } => {
                self.entry(amount.currency()).ours.add_refund(*amount)
            }
        }
    }
}

/// Alipay's side: the totals of the bill's rows, with what only Alipay knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BillTotals {
    #[serde(flatten)]
    pub totals: Totals,
    /// `商家实收` of the payment rows (signed sums as written).
    pub received_fen: i64,
    /// `商家实收` of the refund rows (negative as written).
    pub refund_received_fen: i64,
    /// `服务费` on payment rows, as written.
    pub fee_fen: i64,
    /// `服务费` on refund rows, as written (its sign is unconfirmed: reported, not interpreted).
    pub refund_fee_fen: i64,
    /// Rows of another `业务类型`.
    pub other_rows: u64,
}

impl BillTotals {
    pub fn add(&mut self, row: &BillRow) {
        match row.kind {
            RowKind::Payment => {
                self.totals.payments += 1;
                self.totals.gross_fen += row.order_fen.unsigned_abs();
                self.received_fen += row.received_fen;
                self.fee_fen += row.fee_fen;
            }
            RowKind::Refund => {
                self.totals.refunds += 1;
                self.totals.refunded_fen += row.order_fen.unsigned_abs();
                self.refund_received_fen += row.received_fen;
                self.refund_fee_fen += row.fee_fen;
            }
            RowKind::Other(_) => self.other_rows += 1,
        }
    }

    /// A provider row that is not a bill's (Antom's): counts and gross sums only.
    pub fn add_row(&mut self, row: &Row) {
        match row.kind {
            RowKind::Payment => self.totals.add_payment(row.amount),
            RowKind::Refund => self.totals.add_refund(row.amount),
            RowKind::Other(_) => self.other_rows += 1,
        }
    }
}

#[derive(Clone, Debug)]
struct OurPayment {
    trade_no: Option<String>,
    paid: Money,
}

/// Our records of the day (of one pass), keyed for matching; emptied as rows match.
#[derive(Debug, Default)]
pub struct Ledger {
    payments: HashMap<String, OurPayment>,
    refunds: HashMap<(String, String), Money>,
}

/// What one provider row found in the day's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowMatch {
    Matched,
    Differs(Discrepancy),
    /// Not among the day's records: look its order up ([`classify_unrecorded`]).
    LookUp,
    /// Not a payment or refund row.
    Ignored,
}

impl Ledger {
    /// Adds one record and counts it in `ours` and `by_currency`.
    pub fn add(&mut self, entry: DayEntry, ours: &mut Totals, by_currency: &mut ByCurrency) {
        by_currency.add_ours(&entry);
        match entry {
            DayEntry::Payment {
                out_trade_no,
                trade_no,
                paid,
                ..
            } => {
                ours.add_payment(paid);
                self.payments
                    .insert(out_trade_no, OurPayment { trade_no, paid });
            }
            DayEntry::Refund {
                out_trade_no,
                out_request_no,
                amount,
            } => {
                ours.add_refund(amount);
                self.refunds.insert((out_trade_no, out_request_no), amount);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.payments.len() + self.refunds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Matches one row, taking the record it matches out of the ledger.
    pub fn match_row(&mut self, row: &Row) -> RowMatch {
        match row.kind {
            RowKind::Payment => {
                let Some(ours) = self.payments.remove(&row.out_trade_no) else {
                    return RowMatch::LookUp;
                };
                if ours.paid != row.amount {
                    return RowMatch::Differs(Discrepancy::of_row(
                        Category::AmountDiffers,
                        row,
                        Some(ours.paid),
                        format!(
                            "the provider's report says {}, we recorded {}",
                            shown(Some(row.amount)),
                            shown(Some(ours.paid))
                        ),
                    ));
                }
                match ours.trade_no {
                    Some(trade_no) if !row.trade_no.is_empty() && trade_no != row.trade_no => {
                        RowMatch::Differs(Discrepancy::of_row(
                            Category::StatusDiffers,
                            row,
                            Some(ours.paid),
                            format!("we recorded it paid by trade {trade_no}"),
                        ))
                    }
                    _ => RowMatch::Matched,
                }
            }
            RowKind::Refund => {
                let Some(out_request_no) = &row.out_request_no else {
                    return RowMatch::LookUp;
                };
                let key = (row.out_trade_no.clone(), out_request_no.clone());
                let Some(ours) = self.refunds.remove(&key) else {
                    return RowMatch::LookUp;
                };
                if ours == row.amount {
                    RowMatch::Matched
                } else {
                    RowMatch::Differs(Discrepancy::of_row(
                        Category::RefundAmountDiffers,
                        row,
                        Some(ours),
                        format!(
                            "the provider refunded {}, we recorded {}",
                            shown(Some(row.amount)),
                            shown(Some(ours))
                        ),
                    ))
                }
            }
            RowKind::Other(_) => RowMatch::Ignored,
        }
    }

    /// What the day holds and the provider's report did not: each one a discrepancy.
    pub fn leftovers(self) -> Vec<Discrepancy> {
        let mut left: Vec<Discrepancy> = self
            .payments
            .into_iter()
            .map(|(out_trade_no, ours)| Discrepancy {
                category: Category::HereNotAtAlipay,
                out_trade_no,
                out_request_no: None,
                trade_no: ours.trade_no,
                currency: ours.paid.currency(),
                alipay_fen: None,
                ours_fen: Some(ours.paid.minor()),
                detail: "paid here on this day; not in the provider's report".into(),
                repaired: false,
                bill_line: None,
            })
            .chain(
                self.refunds
                    .into_iter()
                    .map(|((out_trade_no, out_request_no), amount)| Discrepancy {
                        category: Category::RefundMissingAtAlipay,
                        out_trade_no,
                        out_request_no: Some(out_request_no),
                        trade_no: None,
                        currency: amount.currency(),
                        alipay_fen: None,
                        ours_fen: Some(amount.minor()),
                        detail: "refunded here on this day; not in the provider's report".into(),
                        repaired: false,
                        bill_line: None,
                    }),
            )
            .collect();
        sort(&mut left);
        left
    }
}

/// Report order: by category, then order and request number.
pub fn sort(discrepancies: &mut [Discrepancy]) {
    discrepancies.sort_by(|a, b| {
        (a.category, &a.out_trade_no, &a.out_request_no).cmp(&(
            b.category,
            &b.out_trade_no,
            &b.out_request_no,
        ))
    });
}

/// A row the day's records do not hold, decided from what the store holds for its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unrecorded {
    /// Recorded, same amount, on another day (a payment or refund near midnight): a timing
    /// difference, counted in the report, not a discrepancy.
    OtherDay,
    /// The order is CREATED or CLOSED here: a lost notification. Ask the provider (a trade
    /// query or inquiry) and apply what a verified answer says.
    VerifyAndRepair,
    Differs(Discrepancy),
}

/// Decides a row that [`Ledger::match_row`] could not match. `order` is the order with its
/// refunds as the store holds them (`None`: no such order).
pub fn classify_unrecorded(row: &Row, order: Option<(&Order, &[Refund])>) -> Unrecorded {
    let differs = |category, ours: Option<Money>, detail: &str| {
        Unrecorded::Differs(Discrepancy::of_row(category, row, ours, detail.to_owned()))
    };
    match row.kind {
        RowKind::Payment => {
            let Some((order, _)) = order else {
                return differs(Category::PaidAtAlipayNotHere, None, "no such order here");
            };
            match order.status {
                OrderStatus::Created | OrderStatus::Closed => Unrecorded::VerifyAndRepair,
                OrderStatus::Paid | OrderStatus::Finished => {
                    if order.paid_amount == Some(row.amount) {
                        Unrecorded::OtherDay
                    } else {
                        differs(
                            Category::AmountDiffers,
                            order.paid_amount,
                            &format!(
                                "the provider's report says {}, we recorded {}",
                                shown(Some(row.amount)),
                                shown(order.paid_amount)
                            ),
                        )
                    }
                }
            }
        }
        RowKind::Refund => {
            let Some(out_request_no) = &row.out_request_no else {
                return differs(
                    Category::RefundMissingHere,
                    None,
                    "a refund row without a request number we know",
                );
            };
            let Some((_, refunds)) = order else {
                return differs(Category::RefundMissingHere, None, "no such order here");
            };
            let Some(refund) = refunds
                .iter()
                .find(|r| r.out_request_no.as_str() == out_request_no)
            else {
                return differs(
                    Category::RefundMissingHere,
                    None,
                    "we never made this refund",
                );
            };
            let ours = Some(refund.amount);
            match refund.status {
                RefundStatus::Succeeded if refund.amount == row.amount => Unrecorded::OtherDay,
                RefundStatus::Succeeded => differs(
                    Category::RefundAmountDiffers,
                    ours,
                    &format!(
                        "the provider refunded {}, we recorded {}",
                        shown(Some(row.amount)),
                        shown(ours)
                    ),
                ),
                RefundStatus::Pending => differs(
                    Category::StatusDiffers,
                    ours,
                    "PENDING here, refunded at the provider (the sweeper settles it)",
                ),
                RefundStatus::Failed => differs(
                    Category::StatusDiffers,
                    ours,
                    "FAILED here, refunded at the provider: the money left; an operator must look",
                ),
            }
        }
        RowKind::Other(_) => Unrecorded::OtherDay,
    }
}

/// Signed sums per currency (ISO code), shown as decimals of it: settlement amounts and fees
/// as the provider wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums(BTreeMap<String, (i128, Currency)>);

impl Sums {
    pub fn add(&mut self, amount: Signed) {
        let currency = amount.currency();
        let entry = self
            .0
            .entry(currency.code().to_owned())
            .or_insert((0, currency));
        entry.0 += amount.minor();
    }

    /// Adds another set of sums.
    pub fn merge(&mut self, other: &Sums) {
        for (code, (minor, currency)) in &other.0 {
            self.0.entry(code.clone()).or_insert((0, *currency)).0 += minor;
        }
    }

    /// The sum in minor units of `code`'s currency.
    pub fn minor(&self, code: &str) -> Option<i128> {
        self.0.get(code).map(|(minor, _)| *minor)
    }

    /// Each currency's sum as a decimal text (`-0.47`, `1250`).
    pub fn texts(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(code, (minor, currency))| (code.clone(), signed_decimal(*minor, *currency)))
            .collect()
    }
}

impl Serialize for Sums {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.texts().serialize(serializer)
    }
}

/// Signed minor units as a decimal of `currency`.
pub fn signed_decimal(minor: i128, currency: Currency) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let size = minor.unsigned_abs();
    let exponent = u32::from(currency.exponent());
    if exponent == 0 {
        return format!("{sign}{size}");
    }
    let unit = 10u128.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        size / unit,
        size % unit,
        width = exponent as usize
    )
}

/// What the day's transactions came to in the settlement reports read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SettlementTotals {
    /// Settlement rows of the day's payments and refunds.
    pub rows: u64,
    /// Settled, per settlement currency, as written (refunds negative).
    pub settled: Sums,
    /// Fees, per fee currency, as written.
    pub fees: Sums,
    /// Payments that matched only when the row's settlement amount is read as net of its fee.
    pub net_of_fee: u64,
    /// Payments not settled yet, before their expected settlement date.
    pub awaiting: u64,
}

#[derive(Clone, Debug)]
struct Expected {
    trade_no: Option<String>,
    paid: Money,
    recorded: Option<Money>,
}

/// The day's payments (by `paymentRequestId`, our `out_trade_no`) and refunds (by
/// `refundRequestId`), looked for in the settlement details of the days after.
#[derive(Debug, Default)]
pub struct SettlementBook {
    payments: HashMap<String, Expected>,
    refunds: HashMap<String, ()>,
    pub totals: SettlementTotals,
}

impl SettlementBook {
    /// A payment of the day: paid `paid`, told settled `recorded` (if the provider said).
    pub fn expect_payment(
        &mut self,
        out_trade_no: String,
        trade_no: Option<String>,
        paid: Money,
        recorded: Option<Money>,
    ) {
        self.payments.insert(
            out_trade_no,
            Expected {
                trade_no,
                paid,
                recorded,
            },
        );
    }

    /// A refund of the day, by the request id the provider knows it by.
    pub fn expect_refund(&mut self, refund_request_id: String) {
        self.refunds.insert(refund_request_id, ());
    }

    /// One settlement details row: a payment settled otherwise than recorded is a discrepancy;
    /// rows of other days' transactions are not this day's business (`None`).
    pub fn settle(&mut self, row: &SettlementItem) -> Option<Discrepancy> {
        match row.transaction_type.as_str() {
            "PAYMENT" => {
                let expected = self.payments.remove(&row.transaction_request_id)?;
                self.count(row);
                self.compare(row, expected)
            }
            "REFUND" => {
                self.refunds.remove(&row.transaction_request_id)?;
                self.count(row);
                None
            }
            _ => None,
        }
    }

    fn count(&mut self, row: &SettlementItem) {
        self.totals.rows += 1;
        self.totals.settled.add(row.settlement_amount);
        if let Some(fee) = row.fee {
            self.totals.fees.add(fee);
        }
    }

    fn compare(&mut self, row: &SettlementItem, expected: Expected) -> Option<Discrepancy> {
        let settled = row.settlement_amount.amount;
        let recorded = expected.recorded?;
        if recorded == settled {
            return None;
        }
        // Whether a details row's settlement amount is gross or net of its fee, Antom's pages
        // do not say: a row that matches net of its fee matches.
        let fee = row.fee.filter(|f| f.currency() == settled.currency());
        if let Some(fee) = fee
            && settled.checked_add(fee.amount).ok() == Some(recorded)
        {
            self.totals.net_of_fee += 1;
            return None;
        }
        Some(Discrepancy {
            category: Category::SettlementDiffers,
            out_trade_no: row.transaction_request_id.clone(),
            out_request_no: None,
            trade_no: Some(row.transaction_id.clone()),
            currency: settled.currency(),
            alipay_fen: Some(settled.minor()),
            ours_fen: (recorded.currency() == settled.currency()).then_some(recorded.minor()),
            detail: format!(
                "settled {} (batch {}{}); the provider told us {} when {} was paid",
                shown(Some(settled)),
                row.batch_id,
                row.quote_price
                    .as_deref()
                    .map(|p| format!(", rate {p}"))
                    .unwrap_or_default(),
                shown(Some(recorded)),
                shown(Some(expected.paid)),
            ),
            repaired: false,
            bill_line: Some(row.line),
        })
    }

    /// The day's payments no settlement report held: discrepancies once their expected date
    /// has passed (`overdue`), else counted as awaiting.
    pub fn leftovers(
        mut self,
        overdue: bool,
        expected_by: &str,
    ) -> (Vec<Discrepancy>, SettlementTotals) {
        let mut left = Vec::new();
        for (out_trade_no, expected) in self.payments.drain() {
            if !overdue {
                self.totals.awaiting += 1;
                continue;
            }
            left.push(Discrepancy {
                category: Category::SettlementMissing,
                out_trade_no,
                out_request_no: None,
                trade_no: expected.trade_no,
                currency: expected.paid.currency(),
                alipay_fen: None,
                ours_fen: Some(expected.paid.minor()),
                detail: format!(
                    "paid {}; in no settlement report by {expected_by}",
                    shown(Some(expected.paid))
                ),
                repaired: false,
                bill_line: None,
            });
        }
        sort(&mut left);
        (left, self.totals)
    }
}

/// The pass (of `passes`) that a hash belongs to, and the hash range of a pass: passes split
/// the 64-bit hash space evenly, so each reads about the same share of the day.
pub fn pass_of(hash: u64, passes: u32) -> u32 {
    ((u128::from(hash) * u128::from(passes.max(1))) >> 64) as u32
}

/// `[low, high]` of pass `k` of `passes`.
pub fn pass_range(k: u32, passes: u32) -> (u64, u64) {
    let passes = u128::from(passes.max(1));
    let k = u128::from(k);
    let span = 1u128 << 64;
    let low = (k * span).div_ceil(passes);
    let high = ((k + 1) * span).div_ceil(passes) - 1;
    (low as u64, high.min(u128::from(u64::MAX)) as u64)
}

/// Fen as yuan with two decimals.
pub fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Signed fen as yuan (`-0.04`).
pub fn signed_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}", yuan(fen.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{Cashier, Currency};
    use alipay::ids::{OutRequestNo, OutTradeNo, Subject};

    fn bill_row(
        kind: RowKind,
        out_trade_no: &str,
        fen: i64,
        out_request_no: Option<&str>,
    ) -> BillRow {
        BillRow {
            kind,
            trade_no: format!("T{out_trade_no}"),
            out_trade_no: out_trade_no.into(),
            completed_at: "2026-11-26 10:00:00".into(),
            order_fen: fen,
            received_fen: fen,
            out_request_no: out_request_no.map(str::to_owned),
            fee_fen: 0,
            line: 7,
        }
    }

    fn row(kind: RowKind, out_trade_no: &str, fen: i64, out_request_no: Option<&str>) -> Row {
        Row::of_bill(&bill_row(kind, out_trade_no, fen, out_request_no)).expect("row")
    }

    fn cny(fen: i64) -> Money {
        Money::from_minor(fen.unsigned_abs(), Currency::CNY).expect("amount")
    }

    fn payment(no: &str, fen: i64) -> DayEntry {
        DayEntry::Payment {
            out_trade_no: no.into(),
            trade_no: Some(format!("T{no}")),
            paid: cny(fen),
            status: "PAID".into(),
            settled: None,
        }
    }

    fn refund_entry(no: &str, r: &str, fen: i64) -> DayEntry {
        DayEntry::Refund {
            out_trade_no: no.into(),
            out_request_no: r.into(),
            amount: cny(fen),
        }
    }

    fn category(found: RowMatch) -> Option<Category> {
        match found {
            RowMatch::Differs(d) => Some(d.category),
            _ => None,
        }
    }

    #[test]
    fn matching_rows_empty_the_ledger_and_differences_are_named() {
        let mut ours = Totals::default();
        let mut ledger = Ledger::default();
        for entry in [
            payment("a", 100),
            payment("b", 200),
            payment("c", 300),
            refund_entry("a", "r1", 40),
            refund_entry("b", "r2", 50),
            refund_entry("c", "r3", 60),
        ] {
            ledger.add(entry, &mut ours, &mut ByCurrency::default());
        }
        assert_eq!(
            ours,
            Totals {
                payments: 3,
                gross_fen: 600,
                refunds: 3,
                refunded_fen: 150
            }
        );
        assert_eq!(
            ledger.match_row(&row(RowKind::Payment, "a", 100, None)),
            RowMatch::Matched
        );
        assert_eq!(
            category(ledger.match_row(&row(RowKind::Payment, "b", 201, None))),
            Some(Category::AmountDiffers)
        );
        assert_eq!(
            ledger.match_row(&row(RowKind::Payment, "z", 1, None)),
            RowMatch::LookUp
        );
        assert_eq!(
            ledger.match_row(&row(RowKind::Refund, "a", -40, Some("r1"))),
            RowMatch::Matched
        );
        assert_eq!(
            category(ledger.match_row(&row(RowKind::Refund, "b", -51, Some("r2")))),
            Some(Category::RefundAmountDiffers)
        );
        assert_eq!(
            ledger.match_row(&row(RowKind::Refund, "a", -1, Some("r9"))),
            RowMatch::LookUp
        );
        assert_eq!(
            ledger.match_row(&row(RowKind::Other("其他".into()), "a", 1, None)),
            RowMatch::Ignored
        );
        // A row matched once does not match twice.
        assert_eq!(
            ledger.match_row(&row(RowKind::Payment, "a", 100, None)),
            RowMatch::LookUp
        );
        let left = ledger.leftovers();
        let kinds: Vec<_> = left
            .iter()
            .map(|d| (d.category, d.out_trade_no.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Category::HereNotAtAlipay, "c"),
                (Category::RefundMissingAtAlipay, "c")
            ]
        );
        assert_eq!(left[1].out_request_no.as_deref(), Some("r3"));
    }

    #[test]
    fn a_payment_by_another_trade_differs_in_status() {
        let mut ledger = Ledger::default();
        ledger.add(
            payment("a", 100),
            &mut Totals::default(),
            &mut ByCurrency::default(),
        );
        let mut other = row(RowKind::Payment, "a", 100, None);
        other.trade_no = "T-other".into();
        assert_eq!(
            category(ledger.match_row(&other)),
            Some(Category::StatusDiffers)
        );
    }

    fn order(status: OrderStatus, paid: Option<u64>) -> Order {
        Order {
            out_trade_no: OutTradeNo::parse("a").expect("id"),
            amount: Money::from_minor(100, Currency::CNY).expect("amount"),
            subject: Subject::parse("s").expect("subject"),
            channel: Cashier::Page,
            status,
            return_url: None,
            time_expire: None,
            trade_no: None,
            paid_amount: paid.map(|f| Money::from_minor(f, Currency::CNY).expect("amount")),
            paid_at: None,
            refunded: Money::zero(Currency::CNY),
            refundable: Money::zero(Currency::CNY),
            buyer_id_masked: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
            fingerprint: String::new(),
            due_at_ms: None,
            sweeps: 0,
            paid_after_close: false,
            customer_ref: None,
            risk_rules: Vec::new(),
            decision: None,
            hold: None,
            alipay_channel: crate::channel::ChannelId::Primary,
            settlement: None,
        }
    }

    fn refund(no: &str, fen: u64, status: RefundStatus) -> Refund {
        Refund {
            out_trade_no: OutTradeNo::parse("a").expect("id"),
            out_request_no: OutRequestNo::parse(no).expect("id"),
            amount: Money::from_minor(fen, Currency::CNY).expect("amount"),
            reason: None,
            status,
            failure_code: None,
            failure_message: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            last_send_ms: 0,
            sends: 1,
            due_at_ms: None,
            sweeps: 0,
            alipay_channel: crate::channel::ChannelId::Primary,
            unproven_since_ms: None,
        }
    }

    fn differs(u: Unrecorded) -> Option<Category> {
        match u {
            Unrecorded::Differs(d) => Some(d.category),
            _ => None,
        }
    }

    #[test]
    fn unrecorded_payments_are_repaired_only_when_unpaid_here() {
        let pay = row(RowKind::Payment, "a", 100, None);
        assert_eq!(
            differs(classify_unrecorded(&pay, None)),
            Some(Category::PaidAtAlipayNotHere)
        );
        for status in [OrderStatus::Created, OrderStatus::Closed] {
            let o = order(status, None);
            assert_eq!(
                classify_unrecorded(&pay, Some((&o, &[]))),
                Unrecorded::VerifyAndRepair
            );
        }
        let paid = order(OrderStatus::Paid, Some(100));
        assert_eq!(
            classify_unrecorded(&pay, Some((&paid, &[]))),
            Unrecorded::OtherDay
        );
        let other = order(OrderStatus::Finished, Some(99));
        assert_eq!(
            differs(classify_unrecorded(&pay, Some((&other, &[])))),
            Some(Category::AmountDiffers)
        );
    }

    #[test]
    fn unrecorded_refunds_name_what_we_hold() {
        let o = order(OrderStatus::Paid, Some(100));
        let r = row(RowKind::Refund, "a", -30, Some("r1"));
        let cases = [
            (vec![], Some(Category::RefundMissingHere)),
            (vec![refund("r1", 30, RefundStatus::Succeeded)], None),
            (
                vec![refund("r1", 31, RefundStatus::Succeeded)],
                Some(Category::RefundAmountDiffers),
            ),
            (
                vec![refund("r1", 30, RefundStatus::Pending)],
                Some(Category::StatusDiffers),
            ),
            (
                vec![refund("r1", 30, RefundStatus::Failed)],
                Some(Category::StatusDiffers),
            ),
        ];
        for (refunds, expected) in cases {
            assert_eq!(
                differs(classify_unrecorded(&r, Some((&o, &refunds)))),
                expected,
                "{refunds:?}"
            );
        }
        assert_eq!(
            differs(classify_unrecorded(&r, None)),
            Some(Category::RefundMissingHere)
        );
        let bare = row(RowKind::Refund, "a", -30, None);
        assert_eq!(
            differs(classify_unrecorded(&bare, Some((&o, &[])))),
            Some(Category::RefundMissingHere)
        );
    }

    #[test]
    fn passes_split_the_hash_space_without_gaps() {
        for passes in [1u32, 2, 3, 7, 16] {
            let mut next = 0u64;
            for k in 0..passes {
                let (low, high) = pass_range(k, passes);
                assert_eq!(low, next, "pass {k} of {passes}");
                assert_eq!(pass_of(low, passes), k);
                assert_eq!(pass_of(high, passes), k);
                next = high.wrapping_add(1);
            }
            assert_eq!(pass_range(passes - 1, passes).1, u64::MAX);
        }
    }

    #[test]
    fn bill_totals_keep_signs_as_written() {
        let mut totals = BillTotals::default();
        let mut pay = bill_row(RowKind::Payment, "a", 29_900, None);
        pay.fee_fen = 179;
        let mut back = bill_row(RowKind::Refund, "a", -9_900, Some("r"));
        back.fee_fen = -59;
        totals.add(&pay);
        totals.add(&back);
        totals.add(&bill_row(RowKind::Other("x".into()), "b", 5, None));
        assert_eq!(totals.totals.gross_fen, 29_900);
        assert_eq!(totals.totals.refunded_fen, 9_900);
        assert_eq!((totals.fee_fen, totals.refund_fee_fen), (179, -59));
        assert_eq!(totals.refund_received_fen, -9_900);
        assert_eq!(totals.other_rows, 1);
        assert_eq!(signed_yuan(-4), "-0.04");
    }

    fn money(text: &str, code: &str) -> Money {
        Money::parse(text, Currency::parse(code).expect("currency")).expect("amount")
    }

    fn settlement(
        id: &str,
        kind: &str,
        settled: &str,
        code: &str,
        fee: Option<&str>,
    ) -> SettlementItem {
        let signed = |text: &str, code: &str| {
            antom::report::parse_signed(text, Currency::parse(code).expect("currency"))
                .expect("amount")
        };
        SettlementItem {
            batch_id: "B1".into(),
            transaction_type: kind.into(),
            transaction_id: format!("P-{id}"),
            transaction_request_id: id.into(),
            original_transaction_request_id: None,
            transaction_amount: signed("10.99", "USD"),
            settlement_amount: signed(settled, code),
            quote_pair: None,
            quote_price: Some("7.123456".into()),
            fee: fee.map(|f| signed(f, "CNY")),
            line: 3,
        }
    }

    #[test]
    fn a_row_in_another_currency_never_matches() {
        let mut ledger = Ledger::default();
        let mut by_currency = ByCurrency::default();
        ledger.add(
            DayEntry::Payment {
                out_trade_no: "j".into(),
                trade_no: None,
                paid: money("1250", "JPY"),
                status: "PAID".into(),
                settled: None,
            },
            &mut Totals::default(),
            &mut by_currency,
        );
        let mut usd = row(RowKind::Payment, "j", 0, None);
        usd.amount = money("12.50", "USD");
        let found = ledger.match_row(&usd);
        assert_eq!(category(found.clone()), Some(Category::AmountDiffers));
        if let RowMatch::Differs(d) = found {
            assert!(
                d.detail.contains("12.50 USD") && d.detail.contains("1250 JPY"),
                "{}",
                d.detail
            );
            assert_eq!(d.provider_amount(), "12.50");
            // Ours is in another currency: named in the detail, not shown as USD.
            assert_eq!(d.our_amount(), "");
            assert_eq!(d.ours_fen, None);
        }
        assert_eq!(by_currency.0["JPY"].ours.gross_fen, 1250);
        by_currency.add_row(&usd);
        by_currency.add_row(&row(RowKind::Refund, "j", -300, Some("r")));
        by_currency.add_row(&row(RowKind::Other("CANCEL".into()), "k", 100, None));
        let usd_side = &by_currency.0["USD"].provider;
        assert_eq!((usd_side.payments, usd_side.gross_fen), (1, 1250));
        let cny_side = &by_currency.0["CNY"].provider;
        assert_eq!(
            (cny_side.refunds, cny_side.refunded_fen, cny_side.payments),
            (1, 300, 0)
        );
        // Same currency: both amounts, as decimals of it.
        let mut same = Ledger::default();
        same.add(payment("a", 3000), &mut Totals::default(), &mut by_currency);
        let mut other = row(RowKind::Payment, "a", 3100, None);
        other.trade_no = String::new();
        match same.match_row(&other) {
            RowMatch::Differs(d) => {
                assert_eq!(
                    (d.provider_amount(), d.our_amount()),
                    ("31.00".into(), "30.00".into())
                );
                assert_eq!(d.trade_no, None, "an empty trade number is none");
            }
            found => panic!("{found:?}"),
        }
    }

    #[test]
    fn settlement_is_checked_against_what_was_recorded_in_either_reading() {
        let mut book = SettlementBook::default();
        let paid = money("10.99", "USD");
        for id in ["same", "net", "other", "currency", "untold", "never"] {
            let recorded = (id != "untold").then(|| money("78.29", "CNY"));
            book.expect_payment(id.into(), None, paid, recorded);
        }
        book.expect_refund("same-r1".into());
        assert_eq!(
            book.settle(&settlement(
                "same",
                "PAYMENT",
                "78.29",
                "CNY",
                Some("-0.47")
            )),
            None
        );
        assert_eq!(
            book.settle(&settlement("net", "PAYMENT", "77.82", "CNY", Some("-0.47"))),
            None
        );
        let other = book.settle(&settlement("other", "PAYMENT", "78.30", "CNY", None));
        assert_eq!(other.map(|d| d.category), Some(Category::SettlementDiffers));
        let currency = book
            .settle(&settlement("currency", "PAYMENT", "10.99", "USD", None))
            .expect("differs");
        assert_eq!(
            (currency.category, currency.ours_fen),
            (Category::SettlementDiffers, None)
        );
        assert_eq!(
            book.settle(&settlement("untold", "PAYMENT", "1.00", "CNY", None)),
            None
        );
        assert_eq!(
            book.settle(&settlement(
                "same-r1",
                "REFUND",
                "-7.12",
                "CNY",
                Some("0.05")
            )),
            None
        );
        // Another day's payment, or one row twice: not this day's business.
        assert_eq!(
            book.settle(&settlement("elsewhere", "PAYMENT", "1.00", "CNY", None)),
            None
        );
        assert_eq!(
            book.settle(&settlement("same", "PAYMENT", "9.99", "CNY", None)),
            None
        );
        assert_eq!(book.totals.rows, 6);
        assert_eq!(book.totals.net_of_fee, 1);
        assert_eq!(book.totals.fees.minor("CNY"), Some(-47 - 47 + 5));
        assert_eq!(book.totals.fees.texts()["CNY"], "-0.89");
        assert_eq!(book.totals.settled.texts()["USD"], "10.99");
        let mut merged = Sums::default();
        merged.merge(&book.totals.fees);
        merged.merge(&book.totals.fees);
        assert_eq!(merged.minor("CNY"), Some(2 * (-47 - 47 + 5)));
        assert_eq!(merged.texts()["CNY"], "-1.78");
        let (left, totals) = SettlementBook {
            payments: book.payments.clone(),
            ..SettlementBook::default()
        }
        .leftovers(false, "2026-12-07");
        assert!(left.is_empty());
        assert_eq!(totals.awaiting, 1);
        let (left, _) = book.leftovers(true, "2026-12-07");
        let kinds: Vec<_> = left
            .iter()
            .map(|d| (d.category, d.out_trade_no.as_str()))
            .collect();
        assert_eq!(kinds, vec![(Category::SettlementMissing, "never")]);
        assert_eq!(signed_decimal(-5, Currency::CNY), "-0.05");
        assert_eq!(signed_decimal(0, Currency::CNY), "0.00");

        assert_eq!(
            signed_decimal(1250, Currency::parse("JPY").expect("JPY")),
            "1250"
        );
    }
}
