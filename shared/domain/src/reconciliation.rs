//! Reconciliation decisions, pure: given our records of a China-time day and Alipay's bill rows
//! of that day, what matches, what differs, and what to look up. The I/O (the bill's download,
//! the day index, the repair of a lost notification, the report) is the `reconcile` function's.
//!
//! A row is matched with the day's records; a row the day does not hold is looked up by its
//! order ([`classify_unrecorded`]): a payment recorded on a neighbouring day is a timing
//! difference (counted, not a discrepancy), an order still CREATED or CLOSED here is a lost
//! notification to verify and repair. What the day holds and the bill lacks is left over.

use std::collections::HashMap;

use serde::Serialize;

use crate::states::{Money, Order, OrderStatus, Refund, RefundStatus};
use alipay::bill::{BillRow, RowKind};

/// A record of our books for a day, as the day index shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayEntry {
    /// A paid order (`status` PAID or FINISHED), `paid_fen` as paid.
    Payment {
        out_trade_no: String,
        trade_no: Option<String>,
        paid_fen: i64,
        status: String,
    },
    /// A SUCCEEDED refund.
    Refund {
        out_trade_no: String,
        out_request_no: String,
        amount_fen: i64,
    },
}

/// The kinds of discrepancy, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Paid at Alipay, not paid here (a lost notification, or an order we never had).
    PaidAtAlipayNotHere,
    /// Paid here on the day, absent from Alipay's bill.
    HereNotAtAlipay,
    /// The payment's amount differs.
    AmountDiffers,
    /// A refund in the bill that we never recorded.
    RefundMissingHere,
    /// A refund that succeeded here on the day, absent from the bill.
    RefundMissingAtAlipay,
    /// The refund's amount differs.
    RefundAmountDiffers,
    /// Both sides know it, in different states (a refund PENDING or FAILED here, executed at
    /// Alipay; a payment by another trade).
    StatusDiffers,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::PaidAtAlipayNotHere,
        Category::HereNotAtAlipay,
        Category::AmountDiffers,
        Category::RefundMissingHere,
        Category::RefundMissingAtAlipay,
        Category::RefundAmountDiffers,
        Category::StatusDiffers,
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
        }
    }
}

/// One discrepancy, as the report lists it. Amounts are positive fen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub category: Category,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_request_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    /// What Alipay's bill says, in fen.
    pub alipay_fen: Option<u64>,
    /// What we recorded, in fen.
    pub ours_fen: Option<u64>,
    pub detail: String,
    /// A lost notification verified with a trade query and applied by this run.
    pub repaired: bool,
    /// The bill line it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_line: Option<u64>,
}

impl Discrepancy {
    fn of_row(category: Category, row: &BillRow, ours_fen: Option<u64>, detail: String) -> Self {
        Discrepancy {
            category,
            out_trade_no: row.out_trade_no.clone(),
            out_request_no: row.out_request_no.clone(),
            trade_no: Some(row.trade_no.clone()).filter(|t| !t.is_empty()),
            alipay_fen: Some(row.order_fen.unsigned_abs()),
            ours_fen,
            detail,
            repaired: false,
            bill_line: Some(row.line),
        }
    }
}

/// A day's totals as one side sees them. Amounts are positive fen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub payments: u64,
    pub gross_fen: u64,
    pub refunds: u64,
    pub refunded_fen: u64,
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
}

#[derive(Clone, Debug)]
struct OurPayment {
    trade_no: Option<String>,
    paid_fen: u64,
}

/// Our records of the day (of one pass), keyed for matching; emptied as rows match.
#[derive(Debug, Default)]
pub struct Ledger {
    payments: HashMap<String, OurPayment>,
    refunds: HashMap<(String, String), u64>,
}

/// What one bill row found in the day's records.
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
    /// Adds one record and counts it in `ours`.
    pub fn add(&mut self, entry: DayEntry, ours: &mut Totals) {
        match entry {
            DayEntry::Payment {
                out_trade_no,
                trade_no,
                paid_fen,
                ..
            } => {
                let paid_fen = u64::try_from(paid_fen).unwrap_or(0);
                ours.payments += 1;
                ours.gross_fen += paid_fen;
                self.payments
                    .insert(out_trade_no, OurPayment { trade_no, paid_fen });
            }
            DayEntry::Refund {
                out_trade_no,
                out_request_no,
                amount_fen,
            } => {
                let amount_fen = u64::try_from(amount_fen).unwrap_or(0);
                ours.refunds += 1;
                ours.refunded_fen += amount_fen;
                self.refunds
                    .insert((out_trade_no, out_request_no), amount_fen);
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
    pub fn match_row(&mut self, row: &BillRow) -> RowMatch {
        let alipay_fen = row.order_fen.unsigned_abs();
        match row.kind {
            RowKind::Payment => {
                let Some(ours) = self.payments.remove(&row.out_trade_no) else {
                    return RowMatch::LookUp;
                };
                if ours.paid_fen != alipay_fen {
                    return RowMatch::Differs(Discrepancy::of_row(
                        Category::AmountDiffers,
                        row,
                        Some(ours.paid_fen),
                        format!(
                            "Alipay's bill says {}, we recorded {}",
                            yuan(alipay_fen),
                            yuan(ours.paid_fen)
                        ),
                    ));
                }
                match ours.trade_no {
                    Some(trade_no) if !row.trade_no.is_empty() && trade_no != row.trade_no => {
                        RowMatch::Differs(Discrepancy::of_row(
                            Category::StatusDiffers,
                            row,
                            Some(ours.paid_fen),
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
                if ours == alipay_fen {
                    RowMatch::Matched
                } else {
                    RowMatch::Differs(Discrepancy::of_row(
                        Category::RefundAmountDiffers,
                        row,
                        Some(ours),
                        format!(
                            "Alipay refunded {}, we recorded {}",
                            yuan(alipay_fen),
                            yuan(ours)
                        ),
                    ))
                }
            }
            RowKind::Other(_) => RowMatch::Ignored,
        }
    }

    /// What the day holds and the bill did not: each one a discrepancy.
    pub fn leftovers(self) -> Vec<Discrepancy> {
        let mut left: Vec<Discrepancy> = self
            .payments
            .into_iter()
            .map(|(out_trade_no, ours)| Discrepancy {
                category: Category::HereNotAtAlipay,
                out_trade_no,
                out_request_no: None,
                trade_no: ours.trade_no,
                alipay_fen: None,
                ours_fen: Some(ours.paid_fen),
                detail: "paid here on this day; not in Alipay's bill".into(),
                repaired: false,
                bill_line: None,
            })
            .chain(
                self.refunds
                    .into_iter()
                    .map(|((out_trade_no, out_request_no), fen)| Discrepancy {
                        category: Category::RefundMissingAtAlipay,
                        out_trade_no,
                        out_request_no: Some(out_request_no),
                        trade_no: None,
                        alipay_fen: None,
                        ours_fen: Some(fen),
                        detail: "refunded here on this day; not in Alipay's bill".into(),
                        repaired: false,
                        bill_line: None,
                    }),
            )
            .collect();
        left.sort_by(|a, b| {
            (a.category, &a.out_trade_no, &a.out_request_no).cmp(&(
                b.category,
                &b.out_trade_no,
                &b.out_request_no,
            ))
        });
        left
    }
}

/// A row the day's records do not hold, decided from what the store holds for its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unrecorded {
    /// Recorded, same amount, on another day (a payment or refund near midnight): a timing
    /// difference, counted in the report, not a discrepancy.
    OtherDay,
    /// The order is CREATED or CLOSED here: a lost notification. Ask Alipay
    /// (`alipay.trade.query`) and apply what a signed answer says.
    VerifyAndRepair,
    Differs(Discrepancy),
}

/// Decides a row that [`Ledger::match_row`] could not match. `order` is the order with its
/// refunds as the store holds them (`None`: no such order).
pub fn classify_unrecorded(row: &BillRow, order: Option<(&Order, &[Refund])>) -> Unrecorded {
    let alipay_fen = row.order_fen.unsigned_abs();
    let differs = |category, ours, detail: &str| {
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
                    let paid = order.paid_amount.map(Money::minor);
                    if paid == Some(alipay_fen) {
                        Unrecorded::OtherDay
                    } else {
                        differs(
                            Category::AmountDiffers,
                            paid,
                            &format!(
                                "Alipay's bill says {}, we recorded {}",
                                yuan(alipay_fen),
                                paid.map_or("nothing".into(), yuan)
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
                    "a refund row without a request number",
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
            let ours = Some(refund.amount.minor());
            match refund.status {
                RefundStatus::Succeeded if refund.amount.minor() == alipay_fen => {
                    Unrecorded::OtherDay
                }
                RefundStatus::Succeeded => differs(
                    Category::RefundAmountDiffers,
                    ours,
                    &format!(
                        "Alipay refunded {}, we recorded {}",
                        yuan(alipay_fen),
                        refund.amount
                    ),
                ),
                RefundStatus::Pending => differs(
                    Category::StatusDiffers,
                    ours,
                    "PENDING here, refunded at Alipay (the sweeper settles it)",
                ),
                RefundStatus::Failed => differs(
                    Category::StatusDiffers,
                    ours,
                    "FAILED here, refunded at Alipay: the money left; an operator must look",
                ),
            }
        }
        RowKind::Other(_) => Unrecorded::OtherDay,
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

    fn row(kind: RowKind, out_trade_no: &str, fen: i64, out_request_no: Option<&str>) -> BillRow {
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

    fn payment(no: &str, fen: i64) -> DayEntry {
        DayEntry::Payment {
            out_trade_no: no.into(),
            trade_no: Some(format!("T{no}")),
            paid_fen: fen,
            status: "PAID".into(),
        }
    }

    fn refund_entry(no: &str, r: &str, fen: i64) -> DayEntry {
        DayEntry::Refund {
            out_trade_no: no.into(),
            out_request_no: r.into(),
            amount_fen: fen,
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
            ledger.add(entry, &mut ours);
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
        ledger.add(payment("a", 100), &mut Totals::default());
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
        let mut pay = row(RowKind::Payment, "a", 29_900, None);
        pay.fee_fen = 179;
        let mut back = row(RowKind::Refund, "a", -9_900, Some("r"));
        back.fee_fen = -59;
        totals.add(&pay);
        totals.add(&back);
        totals.add(&row(RowKind::Other("x".into()), "b", 5, None));
        assert_eq!(totals.totals.gross_fen, 29_900);
        assert_eq!(totals.totals.refunded_fen, 9_900);
        assert_eq!((totals.fee_fen, totals.refund_fee_fen), (179, -59));
        assert_eq!(totals.refund_received_fen, -9_900);
        assert_eq!(totals.other_rows, 1);
        assert_eq!(signed_yuan(-4), "-0.04");
    }
}
