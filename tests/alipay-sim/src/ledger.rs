//! What Alipay knows: its trades, each with its refunds (accepted, executed or failed), the
//! notifications it delivered, and edits of the ledger that make its books differ from the
//! gateway's on purpose.

#[allow(unused_imports)]
use crate::*;

/// Where a refund Alipay accepted stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundState {
    /// Accepted, not executed yet: the query shows its data without a status.
    Processing,
    /// Executed: money moved (`REFUND_SUCCESS`).
    Success,
    /// Will never execute (`REFUND_FAIL`).
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct RefundRecord {
    pub out_request_no: String,
    pub refund_amount: String,
    /// How many times money moved for this `out_request_no` (must never exceed one).
    pub executions: u32,
    /// Requests received for it, repeats included.
    pub requests: u32,
    /// When the money moved (China time, to the second): the bill's `完成时间` of the refund
    /// row; empty until it is executed.
    pub gmt_refund: String,
    pub state: RefundState,
}

impl RefundRecord {
    /// Money moved for it.
    pub fn executed(&self) -> bool {
        self.state == RefundState::Success
    }
}

/// An edit of the simulator's ledger, to make Alipay's books differ from the gateway's on
/// purpose (reconciliation tests).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "edit")]
pub enum LedgerEdit {
    /// Alipay's record of the trade says another total.
    SetTotal {
        out_trade_no: String,
        total_amount: String,
    },
    /// A refund Alipay executed that the gateway never asked for.
    AddRefund {
        out_trade_no: String,
        out_request_no: String,
        refund_amount: String,
    },
    /// Alipay has no record of this refund.
    RemoveRefund {
        out_trade_no: String,
        out_request_no: String,
    },
    /// Alipay's record of the refund says another amount.
    SetRefundAmount {
        out_trade_no: String,
        out_request_no: String,
        refund_amount: String,
    },
    /// Alipay has no record of the trade at all.
    Forget { out_trade_no: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Trade {
    pub out_trade_no: String,
    pub trade_no: String,
    pub total_amount: String,
    pub total_fen: u64,
    pub subject: String,
    pub status: String,
    pub method: String,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub buyer_id: String,
    pub refunded_fen: u64,
    pub refunds: Vec<RefundRecord>,
    pub gmt_create: String,
    pub gmt_payment: Option<String>,
    /// `time_expire` (Unix seconds): after it the trade cannot be paid and Alipay closes it.
    pub expires_at: Option<i64>,
    /// When each `alipay.trade.refund` for this trade arrived (Unix ms), repeats included.
    pub refund_requests_ms: Vec<i64>,
    /// How the buyer paid ([`BALANCE`] or [`BANK_CARD`]): bank-card refunds execute later.
    pub fund_channel: String,
    /// `ext_user_info` with `need_check_info=T`: the youngest payer Alipay lets pay.
    pub min_age: Option<u8>,
}

impl Trade {
    /// The refunds Alipay executed.
    pub fn executed_refunds(&self) -> impl Iterator<Item = &RefundRecord> {
        self.refunds.iter().filter(|r| r.executed())
    }

    /// Alipay closes an unpaid trade at its `time_expire` (docs/alipay/operations.md §1).
    pub(crate) fn expire_if_due(&mut self, now: i64) {
        if self.status == "WAIT_BUYER_PAY" && self.expires_at.is_some_and(|at| now >= at) {
            self.status = "TRADE_CLOSED".into();
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub notify_id: String,
    pub out_trade_no: String,
    pub trade_status: String,
    /// What the gateway answered to each attempt (`HTTP 200 success`, `error: ...`).
    pub attempts: Vec<String>,
    pub acknowledged: bool,
}

pub(crate) fn edit_ledger(inner: &Inner, edit: LedgerEdit) -> Result<(), String> {
    let mut state = lock(&inner.state);
    let trades = &mut state.trades;
    fn trade_of<'t>(
        trades: &'t mut HashMap<String, Trade>,
        no: &str,
    ) -> Result<&'t mut Trade, String> {
        trades.get_mut(no).ok_or_else(|| format!("no trade {no}"))
    }
    match edit {
        LedgerEdit::SetTotal {
            out_trade_no,
            total_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.total_fen = fen(&total_amount).ok_or("total_amount")?;
            trade.total_amount = total_amount;
        }
        LedgerEdit::AddRefund {
            out_trade_no,
            out_request_no,
            refund_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.refunded_fen += fen(&refund_amount).ok_or("refund_amount")?;
            trade.refunds.push(RefundRecord {
                out_request_no,
                refund_amount,
                executions: 1,
                requests: 0,
                gmt_refund: china_now(inner).0,
                state: RefundState::Success,
            });
        }
        LedgerEdit::RemoveRefund {
            out_trade_no,
            out_request_no,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.refunds.retain(|r| r.out_request_no != out_request_no);
        }
        LedgerEdit::SetRefundAmount {
            out_trade_no,
            out_request_no,
            refund_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            let record = trade
                .refunds
                .iter_mut()
                .find(|r| r.out_request_no == out_request_no)
                .ok_or("no such refund")?;
            fen(&refund_amount).ok_or("refund_amount")?;
            record.refund_amount = refund_amount;
        }
        LedgerEdit::Forget { out_trade_no } => {
            trades.remove(&out_trade_no).ok_or("no such trade")?;
        }
    }
    Ok(())
}
