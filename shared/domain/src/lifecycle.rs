//! The payment and refund lifecycles as decisions: given what we know and what Alipay answered,
//! what happens next. Pure: no I/O, no clock. The refund function, the create-payment function
//! (close) and the sweeper all drive these same decisions, so an interrupted request and the
//! sweeper that finishes it can never disagree.
//!
//! The rule for money: a refund is FAILED only when a signed answer proves that money did not
//! move and will not; a payment is closed only when Alipay says it cannot be paid (or never knew
//! it, past its `time_expire`). Everything uncertain waits, and is asked about again.

use crate::states::{Money, Refund, RefundOutcome};
use alipay::money::Amount;
use alipay::notify::TradeStatus;
use alipay::response::{Disposition, Status, VerifiedResponse};

/// `40004` sub-codes that prove a refund was not executed and never will be (docs/alipay/openapi-v1.md,
/// "Refund retries").
pub const TERMINAL_REFUND_FAILURES: [&str; 6] = [
    "ACQ.SELLER_BALANCE_NOT_ENOUGH",
    "ACQ.TRADE_NOT_EXIST",
    "ACQ.TRADE_HAS_FINISHED",
    "ACQ.TRADE_STATUS_ERROR",
    "ACQ.TRADE_NOT_ALLOW_REFUND",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR",
];

/// An answer from Alipay, reduced to what the decisions read. `None` where an answer is taken
/// stands for no trustworthy answer at all: a time-out, a connection error, an HTTP error, a
/// body that failed verification.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub status: &'a Status,
    /// False for an error answer that carried no signature: it proves nothing.
    pub signed: bool,
}

impl<'a> Reply<'a> {
    /// The reading of a verified answer.
    pub fn of(answer: &'a VerifiedResponse) -> Reply<'a> {
        Reply {
            status: &answer.status,
            signed: answer.signed,
        }
    }

    fn disposition(&self) -> Disposition {
        self.status.disposition_when(self.signed)
    }

    fn sub_code(&self) -> &str {
        self.status.sub_code.as_deref().unwrap_or("")
    }

    fn failure(&self) -> RefundOutcome {
        RefundOutcome::Failed {
            code: self
                .status
                .sub_code
                .clone()
                .unwrap_or_else(|| self.status.code.clone()),
            message: self
                .status
                .sub_msg
                .clone()
                .unwrap_or_else(|| self.status.msg.clone()),
        }
    }
}

/// What to do with a PENDING refund next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundNext {
    /// Settle it: SUCCEEDED (money moved) or FAILED (proved not moved, never will). A FAILED is
    /// written only while no later send of the refund was begun than the one judged.
    Settle(RefundOutcome),
    /// Ask `alipay.trade.fastpay.refund.query` now. `if_absent`: the failure to settle with when
    /// Alipay has no such refund or says it failed (only after a signed terminal refusal of the
    /// identical request, so that two signed answers agree).
    QueryNow { if_absent: Option<RefundOutcome> },
    /// Send the identical request again (same `out_request_no`, same amount): Alipay executes
    /// one `out_request_no` at most once, so this finishes a refund that never ran.
    Resend,
    /// Nothing can be decided now (no answer, Alipay busy, the refund still processing, too soon
    /// after the last send to read the query): leave it PENDING with its money reserved; it is
    /// asked about again after the query delay.
    Wait,
    /// Alipay's record contradicts ours (an executed refund with another amount): leave it
    /// PENDING, audit it, and raise an alarm; a person must look.
    Contradiction(String),
}

/// How long ago this refund was last sent, against Alipay's rule of at least 10 s between a
/// refund and its query (`REFUND_QUERY_DELAY_MS`): a query sooner may not show a refund that
/// succeeds later, so only a later one is read as "not there".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinceSend {
    pub elapsed_ms: i64,
    pub query_delay_ms: i64,
}

impl SinceSend {
    /// `last_send_ms`: when the refund was last sent (its creation when never sent).
    pub fn of(refund: &Refund, now_ms: i64, query_delay_ms: i64) -> SinceSend {
        SinceSend {
            elapsed_ms: now_ms - refund.last_send_ms,
            query_delay_ms,
        }
    }

    /// Long enough after the last send for a query's "not (yet) there" to mean it.
    pub fn query_is_conclusive(self) -> bool {
        self.elapsed_ms >= self.query_delay_ms
    }

    /// Not yet conclusive: resend only once the delay has passed, else ask again later.
    fn resend_or_wait(self) -> RefundNext {
        if self.query_is_conclusive() {
            RefundNext::Resend
        } else {
            RefundNext::Wait
        }
    }
}

/// After sending `alipay.trade.refund`. `first_send` is true only when no earlier attempt for
/// this `out_request_no` can have reached Alipay, so that a signed refusal is about the only
/// request there is. `fund_change` is the success answer's field (`Y` moved money now).
pub fn after_refund_send(
    first_send: bool,
    reply: Option<Reply<'_>>,
    fund_change: Option<&str>,
) -> RefundNext {
    let Some(reply) = reply else {
        // Timed out or untrusted: Alipay may have refunded. Alipay asks for ≥10 s before a
        // refund query, so it is asked later.
        return RefundNext::Wait;
    };
    match reply.disposition() {
        Disposition::Success if fund_change == Some("Y") => {
            RefundNext::Settle(RefundOutcome::Succeeded)
        }
        // Accepted without moving money in this call (a refund Alipay executes later, or a
        // repeat): the query tells, no sooner than the query delay after this send.
        Disposition::Success => RefundNext::Wait,
        // `20000`, `ACQ.SYSTEM_ERROR`: nothing executed, or unknown; try again later.
        Disposition::RetrySame => RefundNext::Wait,
        Disposition::BusinessFailure
            if TERMINAL_REFUND_FAILURES.contains(&reply.sub_code()) && first_send =>
        {
            RefundNext::Settle(reply.failure())
        }
        // A terminal refusal of a retry: the first attempt may have executed (a full refund
        // closes the trade, and the retry is then refused with ACQ.TRADE_STATUS_ERROR).
        Disposition::BusinessFailure if TERMINAL_REFUND_FAILURES.contains(&reply.sub_code()) => {
            RefundNext::QueryNow {
                if_absent: Some(reply.failure()),
            }
        }
        // Unsigned errors, gateway-level refusals (signature, permission, parameters), unknown
        // sub-codes and ACQ.DISCORDANT_REPEAT_REQUEST prove nothing: ask.
        Disposition::BusinessFailure | Disposition::Rejected | Disposition::QueryFirst => {
            RefundNext::QueryNow { if_absent: None }
        }
    }
}

/// Where a PENDING refund is picked up (the sweeper, `GET ?sync=true`, a POST retry): one never
/// sent is sent; one sent at least the query delay ago is asked about first (it may have
/// executed), and sent again only if Alipay has no proof of it; one sent more recently is left
/// alone (another request may be sending it, or Alipay may not show it yet).
pub fn resume_refund(refund: &Refund, since: SinceSend) -> RefundNext {
    if refund.sends == 0 {
        RefundNext::Resend
    } else if since.query_is_conclusive() {
        RefundNext::QueryNow { if_absent: None }
    } else {
        RefundNext::Wait
    }
}

/// What `alipay.trade.fastpay.refund.query` said about one `out_request_no`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundQueryAnswer {
    /// Alipay has data about the refund: its amount, or a `refund_status`.
    Found {
        out_request_no: Option<String>,
        refund_amount: Option<Amount>,
        /// `refund_status`: `REFUND_SUCCESS`, `REFUND_FAIL`, or absent.
        status: Option<String>,
    },
    /// A signed answer with no refund data: nothing, or only our identifiers echoed back (no
    /// amount, no status). In every reading of Alipay's documentation: not received, or failed.
    Absent,
}

/// `refund_status` values (docs/alipay/operations.md §6).
const REFUND_SUCCESS: &str = "REFUND_SUCCESS";
const REFUND_FAIL: &str = "REFUND_FAIL";

/// After the refund query. `reply` is `None` when the query got no trustworthy answer;
/// `answer` is read from a signed `10000` (or a signed `ACQ.TRADE_NOT_EXIST`).
///
/// Alipay's sources disagree on an answer with data and no `refund_status` (docs/alipay/operations.md §6:
/// "success" in the older page, "not received or failed" in the current response model), so
/// only `REFUND_SUCCESS` settles SUCCEEDED, and data without a status is never settled FAILED
/// either: once the query delay has passed since the last send, the identical request is sent
/// again (Alipay de-duplicates it), and its signed answer decides. `REFUND_FAIL`, or no data
/// at all, settle FAILED only when a signed terminal refusal of the identical request agrees
/// (`if_absent`); otherwise they are handled the same way.
pub fn after_refund_query(
    ours: (&str, Money),
    reply: Option<Reply<'_>>,
    answer: Option<&RefundQueryAnswer>,
    if_absent: Option<RefundOutcome>,
    since: SinceSend,
) -> RefundNext {
    let Some(reply) = reply else {
        return RefundNext::Wait;
    };
    if !reply.signed {
        return RefundNext::Wait;
    }
    let answer = match (reply.status.code.as_str(), reply.sub_code(), answer) {
        ("10000", _, Some(answer)) => answer,
        ("40004", "ACQ.TRADE_NOT_EXIST", _) => &RefundQueryAnswer::Absent,
        _ => return RefundNext::Wait,
    };
    let not_proven = |if_absent: Option<RefundOutcome>| match if_absent {
        Some(failure) => RefundNext::Settle(failure),
        None => since.resend_or_wait(),
    };
    match answer {
        RefundQueryAnswer::Absent => not_proven(if_absent),
        RefundQueryAnswer::Found {
            out_request_no,
            refund_amount,
            status,
        } => {
            let (our_no, our_amount) = ours;
            if out_request_no.as_deref().is_some_and(|no| no != our_no) {
                return RefundNext::Contradiction(format!(
                    "the refund query for {our_no} answered about {}",
                    out_request_no.as_deref().unwrap_or("")
                ));
            }
            if let Some(amount) = refund_amount
                && Money::from(*amount) != our_amount
            {
                return RefundNext::Contradiction(format!(
                    "Alipay refunded {amount} for {our_no}; we asked for {our_amount}"
                ));
            }
            match status.as_deref() {
                Some(REFUND_SUCCESS) => RefundNext::Settle(RefundOutcome::Succeeded),
                // Alipay says it failed: believed only with a signed refusal of the identical
                // request; otherwise sent again (Alipay's own recovery: the same number).
                Some(REFUND_FAIL) => not_proven(if_absent),
                // Data without a status (processing; or, in the older reading, done), or a
                // status we do not know: never FAILED; asked again, then sent again.
                _ => since.resend_or_wait(),
            }
        }
    }
}

/// What to do with an unpaid order (closing it by request, or past its `time_expire`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeNext {
    /// Alipay says it was paid: apply the payment (the amount is checked when applied).
    ApplyPaid,
    /// Alipay has a trade waiting for the buyer: close it there (`alipay.trade.close`).
    CloseAtAlipay,
    /// Alipay says it is closed, or never knew it: close it here.
    CloseLocally,
    /// Ask `alipay.trade.query` first (the close was refused: it may have just been paid).
    Query,
    /// Nothing can be decided now; ask again later.
    Wait,
}

/// After `alipay.trade.query` about an order we want to end. `trade_status` is read from a
/// signed success answer.
pub fn after_trade_query(reply: Option<Reply<'_>>, trade_status: Option<TradeStatus>) -> TradeNext {
    let Some(reply) = reply.filter(|r| r.signed) else {
        return TradeNext::Wait;
    };
    match (reply.status.code.as_str(), reply.sub_code(), trade_status) {
        ("10000", _, Some(status)) if status.is_paid() => TradeNext::ApplyPaid,
        ("10000", _, Some(TradeStatus::WaitBuyerPay)) => TradeNext::CloseAtAlipay,
        ("10000", _, Some(TradeStatus::TradeClosed)) => TradeNext::CloseLocally,
        // Before the buyer acts, Alipay has no trade (docs/alipay/operations.md §1).
        ("40004", "ACQ.TRADE_NOT_EXIST", _) => TradeNext::CloseLocally,
        _ => TradeNext::Wait,
    }
}

/// After `alipay.trade.close`.
pub fn after_trade_close(reply: Option<Reply<'_>>) -> TradeNext {
    let Some(reply) = reply.filter(|r| r.signed) else {
        return TradeNext::Wait;
    };
    match (reply.status.code.as_str(), reply.sub_code()) {
        ("10000", _) => TradeNext::CloseLocally,
        ("40004", "ACQ.TRADE_NOT_EXIST") => TradeNext::CloseLocally,
        // Only WAIT_BUYER_PAY trades close: it may have just been paid. Ask.
        ("40004", "ACQ.TRADE_STATUS_ERROR") => TradeNext::Query,
        _ => TradeNext::Wait,
    }
}

/// When the sweeper looks at a due item again after it could not finish it: exponential from
/// `base_ms`, capped at `max_ms`.
pub fn backoff_ms(sweeps: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms
        .saturating_mul(1u64 << sweeps.min(20))
        .min(max_ms)
        .max(base_ms.min(max_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str, sub_code: Option<&str>) -> Status {
        Status {
            code: code.into(),
            msg: "msg".into(),
            sub_code: sub_code.map(str::to_owned),
            sub_msg: Some("sub msg".into()),
        }
    }

    fn signed(status: &Status) -> Option<Reply<'_>> {
        Some(Reply {
            status,
            signed: true,
        })
    }

    fn unsigned(status: &Status) -> Option<Reply<'_>> {
        Some(Reply {
            status,
            signed: false,
        })
    }

    fn failed(code: &str) -> RefundOutcome {
        RefundOutcome::Failed {
            code: code.into(),
            message: "sub msg".into(),
        }
    }

    #[test]
    fn money_moved_only_on_a_signed_fund_change() {
        let ok = status("10000", None);
        assert_eq!(
            after_refund_send(true, signed(&ok), Some("Y")),
            RefundNext::Settle(RefundOutcome::Succeeded)
        );
        // Accepted without moving money (executed later, or a repeat): asked about after the
        // query delay, never at once (docs/alipay/operations.md §6).
        for fund_change in [Some("N"), None] {
            for first in [true, false] {
                assert_eq!(
                    after_refund_send(first, signed(&ok), fund_change),
                    RefundNext::Wait
                );
            }
        }
        assert_eq!(after_refund_send(true, None, None), RefundNext::Wait);
    }

    #[test]
    fn unsigned_errors_never_fail_a_refund() {
        for (code, sub) in [
            ("40002", Some("isv.invalid-signature")),
            ("40001", Some("isv.missing-signature")),
            ("40006", Some("isv.insufficient-isv-permissions")),
            ("40004", Some("ACQ.SELLER_BALANCE_NOT_ENOUGH")),
            ("40004", Some("ACQ.TRADE_STATUS_ERROR")),
        ] {
            let answer = status(code, sub);
            for first in [true, false] {
                assert_eq!(
                    after_refund_send(first, unsigned(&answer), None),
                    RefundNext::QueryNow { if_absent: None },
                    "{code} {sub:?}"
                );
            }
        }
    }

    #[test]
    fn signed_gateway_refusals_are_asked_about_not_failed() {
        let answer = status("40002", Some("isv.invalid-signature"));
        assert_eq!(
            after_refund_send(true, signed(&answer), None),
            RefundNext::QueryNow { if_absent: None }
        );
    }

    #[test]
    fn a_signed_terminal_refusal_fails_a_first_send_and_queries_a_retry() {
        for sub in TERMINAL_REFUND_FAILURES {
            let answer = status("40004", Some(sub));
            assert_eq!(
                after_refund_send(true, signed(&answer), None),
                RefundNext::Settle(failed(sub))
            );
            assert_eq!(
                after_refund_send(false, signed(&answer), None),
                RefundNext::QueryNow {
                    if_absent: Some(failed(sub))
                }
            );
        }
        let unknown = status("40004", Some("ACQ.SOMETHING_NEW"));
        assert_eq!(
            after_refund_send(true, signed(&unknown), None),
            RefundNext::QueryNow { if_absent: None }
        );
    }

    #[test]
    fn busy_answers_wait() {
        for answer in [
            status("20000", Some("isp.unknow-error")),
            status("40004", Some("ACQ.SYSTEM_ERROR")),
        ] {
            assert_eq!(
                after_refund_send(true, signed(&answer), None),
                RefundNext::Wait
            );
            assert_eq!(
                after_refund_send(true, unsigned(&answer), None),
                RefundNext::Wait
            );
        }
        let discordant = status("40004", Some("ACQ.DISCORDANT_REPEAT_REQUEST"));
        assert_eq!(
            after_refund_send(false, signed(&discordant), None),
            RefundNext::QueryNow { if_absent: None }
        );
    }

    fn found(no: &str, amount: &str, refund_status: Option<&str>) -> RefundQueryAnswer {
        RefundQueryAnswer::Found {
            out_request_no: Some(no.into()),
            refund_amount: Amount::parse(amount).ok(),
            status: refund_status.map(str::to_owned),
        }
    }

    const DELAY: i64 = 10_000;

    fn after(elapsed_ms: i64) -> SinceSend {
        SinceSend {
            elapsed_ms,
            query_delay_ms: DELAY,
        }
    }

    fn query(
        answer: &RefundQueryAnswer,
        if_absent: Option<RefundOutcome>,
        since: SinceSend,
    ) -> RefundNext {
        let ok = status("10000", None);
        let ours = ("r1", Amount::parse("10.00").expect("amount").into());
        after_refund_query(ours, signed(&ok), Some(answer), if_absent, since)
    }

    #[test]
    fn the_query_decides_from_signed_answers_only() {
        let ours = ("r1", Amount::parse("10.00").expect("amount").into());
        let ok = status("10000", None);
        let success = found("r1", "10.00", Some("REFUND_SUCCESS"));
        for since in [after(0), after(DELAY)] {
            assert_eq!(
                query(&success, None, since),
                RefundNext::Settle(RefundOutcome::Succeeded)
            );
        }
        assert_eq!(
            after_refund_query(ours, unsigned(&ok), Some(&success), None, after(DELAY)),
            RefundNext::Wait
        );
        assert_eq!(
            after_refund_query(ours, None, None, Some(failed("X")), after(DELAY)),
            RefundNext::Wait
        );
        let other_amount = found("r1", "99.00", Some("REFUND_SUCCESS"));
        assert!(matches!(
            query(&other_amount, None, after(DELAY)),
            RefundNext::Contradiction(_)
        ));
        let other_number = found("r2", "10.00", Some("REFUND_SUCCESS"));
        assert!(matches!(
            query(&other_number, None, after(DELAY)),
            RefundNext::Contradiction(_)
        ));
    }

    #[test]
    fn data_without_a_status_is_never_settled_either_way() {
        // The older page reads it as success, the current model as "not received or failed":
        // asked again after the query delay, then the identical request is sent again.
        for data in [
            found("r1", "10.00", None),
            found("r1", "10.00", Some("REFUND_PROCESSING")),
        ] {
            assert_eq!(query(&data, None, after(DELAY - 1)), RefundNext::Wait);
            assert_eq!(query(&data, None, after(DELAY)), RefundNext::Resend);
            // Not even after a signed terminal refusal of a retry.
            assert_eq!(
                query(&data, Some(failed("ACQ.TRADE_STATUS_ERROR")), after(DELAY)),
                RefundNext::Resend
            );
            assert_eq!(
                query(&data, Some(failed("ACQ.TRADE_STATUS_ERROR")), after(0)),
                RefundNext::Wait
            );
        }
    }

    #[test]
    fn refund_fail_and_echoes_are_failures_only_with_a_signed_refusal() {
        let fail = found("r1", "10.00", Some("REFUND_FAIL"));
        // An echo: our identifiers, no amount, no status.
        let echo = RefundQueryAnswer::Absent;
        for answer in [&fail, &echo] {
            assert_eq!(query(answer, None, after(0)), RefundNext::Wait);
            assert_eq!(query(answer, None, after(DELAY)), RefundNext::Resend);
            for since in [after(0), after(DELAY)] {
                assert_eq!(
                    query(answer, Some(failed("ACQ.SELLER_BALANCE_NOT_ENOUGH")), since),
                    RefundNext::Settle(failed("ACQ.SELLER_BALANCE_NOT_ENOUGH"))
                );
            }
        }
        // A status alone, without the amount, still counts.
        let bare = RefundQueryAnswer::Found {
            out_request_no: None,
            refund_amount: None,
            status: Some("REFUND_SUCCESS".into()),
        };
        assert_eq!(
            query(&bare, None, after(0)),
            RefundNext::Settle(RefundOutcome::Succeeded)
        );
    }

    #[test]
    fn an_absent_refund_is_resent_or_failed_with_proof() {
        let ours = ("r1", Amount::parse("10.00").expect("amount").into());
        let absent = RefundQueryAnswer::Absent;
        assert_eq!(query(&absent, None, after(DELAY)), RefundNext::Resend);
        assert_eq!(
            query(
                &absent,
                Some(failed("ACQ.TRADE_STATUS_ERROR")),
                after(DELAY)
            ),
            RefundNext::Settle(failed("ACQ.TRADE_STATUS_ERROR"))
        );
        let no_trade = status("40004", Some("ACQ.TRADE_NOT_EXIST"));
        assert_eq!(
            after_refund_query(ours, signed(&no_trade), None, None, after(DELAY)),
            RefundNext::Resend
        );
        assert_eq!(
            after_refund_query(ours, signed(&no_trade), None, None, after(0)),
            RefundNext::Wait
        );
        assert_eq!(
            after_refund_query(ours, unsigned(&no_trade), None, None, after(DELAY)),
            RefundNext::Wait
        );
        let busy = status("40004", Some("ACQ.SYSTEM_ERROR"));
        assert_eq!(
            after_refund_query(ours, signed(&busy), None, Some(failed("X")), after(DELAY)),
            RefundNext::Wait
        );
    }

    fn pending_refund(sends: u32, last_send_ms: i64) -> Refund {
        Refund {
            out_trade_no: alipay::ids::OutTradeNo::parse("o1").expect("no"),
            out_request_no: alipay::ids::OutRequestNo::parse("r1").expect("no"),
            amount: Amount::parse("10.00").expect("amount").into(),
            reason: None,
            status: crate::states::RefundStatus::Pending,
            failure_code: None,
            failure_message: None,
            created_at_ms: 0,
            updated_at_ms: last_send_ms,
            last_send_ms,
            sends,
            due_at_ms: None,
            sweeps: 0,
            alipay_channel: crate::channel::ChannelId::Primary,
            unproven_since_ms: None,
        }
    }

    #[test]
    fn a_pending_refund_is_picked_up_no_sooner_than_the_query_delay_after_its_send() {
        let now = 100_000;
        let never_sent = pending_refund(0, now);
        assert_eq!(
            resume_refund(&never_sent, SinceSend::of(&never_sent, now, DELAY)),
            RefundNext::Resend
        );
        let just_sent = pending_refund(1, now - DELAY + 1);
        assert_eq!(
            resume_refund(&just_sent, SinceSend::of(&just_sent, now, DELAY)),
            RefundNext::Wait
        );
        let sent = pending_refund(2, now - DELAY);
        assert_eq!(
            resume_refund(&sent, SinceSend::of(&sent, now, DELAY)),
            RefundNext::QueryNow { if_absent: None }
        );
    }

    #[test]
    fn ending_an_unpaid_order() {
        let ok = status("10000", None);
        assert_eq!(
            after_trade_query(signed(&ok), Some(TradeStatus::TradeSuccess)),
            TradeNext::ApplyPaid
        );
        assert_eq!(
            after_trade_query(signed(&ok), Some(TradeStatus::TradeFinished)),
            TradeNext::ApplyPaid
        );
        assert_eq!(
            after_trade_query(signed(&ok), Some(TradeStatus::WaitBuyerPay)),
            TradeNext::CloseAtAlipay
        );
        assert_eq!(
            after_trade_query(signed(&ok), Some(TradeStatus::TradeClosed)),
            TradeNext::CloseLocally
        );
        let missing = status("40004", Some("ACQ.TRADE_NOT_EXIST"));
        assert_eq!(
            after_trade_query(signed(&missing), None),
            TradeNext::CloseLocally
        );
        assert_eq!(after_trade_query(unsigned(&missing), None), TradeNext::Wait);
        assert_eq!(after_trade_query(None, None), TradeNext::Wait);
        assert_eq!(after_trade_close(signed(&ok)), TradeNext::CloseLocally);
        assert_eq!(after_trade_close(signed(&missing)), TradeNext::CloseLocally);
        let status_error = status("40004", Some("ACQ.TRADE_STATUS_ERROR"));
        assert_eq!(after_trade_close(signed(&status_error)), TradeNext::Query);
        assert_eq!(after_trade_close(unsigned(&ok)), TradeNext::Wait);
        let busy = status("40004", Some("ACQ.SYSTEM_ERROR"));
        assert_eq!(after_trade_close(signed(&busy)), TradeNext::Wait);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(0, 1_000, 60_000), 1_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000), 8_000);
        assert_eq!(backoff_ms(40, 1_000, 60_000), 60_000);
    }
}
