//! Subscriptions on Alipay agreements (docs/alipay/operations.md §4), as decisions: the plan and
//! its dates, the days Alipay lets a period be charged on, what a charge's answer means, and
//! what happens next to the period and to the subscription. Pure: time comes in as `now_ms`.
//!
//! Alipay's rules the decisions keep:
//! - a period is charged from `lead_days` before its date through that date, judged in China
//!   time when the request reaches Alipay: never charge outside it, never late in the last day;
//! - Alipay moves its next date one period on after a success only, and a second success in one
//!   period fails `ACQ.CYCLE_PAY_DATE_NOT_MATCH`: one `out_trade_no` per period, derived from
//!   the subscription and the period's number, so every retry of a period is the same trade;
//! - soft refusals are retried inside the window (at most `retries` more times), a risk refusal
//!   once at most, an agreement refusal never (the buyer must sign again), a merchant
//!   configuration refusal never (an alarm); an unknown outcome is asked about, and a trade still
//!   unpaid when the window closes is cancelled so that it cannot be paid late.

use alipay::agreement::{PeriodRule, PeriodType};
use alipay::china_time::ChinaDate;
use alipay::ids::OutTradeNo;
use alipay::money::Amount;
use alipay::notify::TradeStatus;
use alipay::response::Disposition;
use serde::Serialize;

use crate::lifecycle::Reply;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A plan the merchant asked for, checked against Alipay's rules for `period_rule_params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub period_type: PeriodType,
    pub period: u32,
    /// What each period is charged.
    pub amount: Amount,
    /// The first period's date (`execute_time`).
    pub first_date: ChinaDate,
    /// The cap the buyer signs for one charge; at least `amount`.
    pub single_amount: Amount,
    pub total_amount: Option<Amount>,
    pub total_payments: Option<u32>,
}

/// Why a plan was refused: the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub field: &'static str,
    pub problem: String,
}

fn plan_error(field: &'static str, problem: impl Into<String>) -> PlanError {
    PlanError {
        field,
        problem: problem.into(),
    }
}

impl Plan {
    /// A plan, or the first rule it breaks.
    pub fn new(plan: Plan, today: ChinaDate) -> Result<Plan, PlanError> {
        match plan.period_type {
            PeriodType::Day if !(7..=365).contains(&plan.period) => {
                return Err(plan_error("period", "must be 7 to 365 days for DAY"));
            }
            PeriodType::Month if !(1..=12).contains(&plan.period) => {
                return Err(plan_error("period", "must be 1 to 12 months for MONTH"));
            }
            PeriodType::Month if plan.first_date.day() > 28 => {
                return Err(plan_error(
                    "first_charge_date",
                    "must be a day from 1 to 28 for MONTH (Alipay refuses 29 to 31)",
                ));
            }
            _ => {}
        }
        if plan.first_date < today {
            return Err(plan_error("first_charge_date", "is in the past"));
        }
        if plan.amount > plan.single_amount {
            return Err(plan_error("single_amount", "is less than amount"));
        }
        if let Some(total) = plan.total_amount
            && total < plan.amount
        {
            return Err(plan_error("total_amount", "is less than amount"));
        }
        if plan.total_payments == Some(0) {
            return Err(plan_error("total_payments", "must be at least 1"));
        }
        Ok(plan)
    }

    /// The date of period `n` (0 is the first): `None` past the calendar.
    pub fn date_of(&self, n: u32) -> Option<ChinaDate> {
        let steps = n.checked_mul(self.period)?;
        match self.period_type {
            PeriodType::Day => Some(self.first_date.add_days(i64::from(steps))),
            PeriodType::Month => self.first_date.add_months(steps),
        }
    }

    /// What the buyer signs (`period_rule_params`).
    pub fn rule(&self) -> PeriodRule {
        PeriodRule {
            period_type: self.period_type,
            period: self.period,
            execute_time: self.first_date,
            single_amount: self.single_amount,
            total_amount: self.total_amount,
            total_payments: self.total_payments,
        }
    }

    /// Whether one more charge keeps within the caps, given what was charged so far: the caps
    /// are checked here first, so that Alipay never has to refuse one.
    pub fn within_caps(&self, charged: Amount, charges: u32) -> Result<(), &'static str> {
        if self.amount > self.single_amount {
            return Err("ACQ.CYCLE_PAY_SINGLE_FEE_EXCEED");
        }
        if let Some(count) = self.total_payments
            && charges >= count
        {
            return Err("ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED");
        }
        if let Some(total) = self.total_amount
            && charged
                .checked_add(self.amount)
                .is_none_or(|sum| sum > total)
        {
            return Err("ACQ.CYCLE_PAY_TOTAL_FEE_EXCEED");
        }
        Ok(())
    }
}

/// When and how often a period is tried (the template's parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dunning {
    /// Days before a period's date Alipay accepts its charge: 3 (valid whether Alipay's rule is
    /// 3 or 5 days).
    pub lead_days: u32,
    /// Retries after a soft refusal, at most (Alipay's support advises 2).
    pub retries: u32,
    /// Days between tries.
    pub spacing_days: u32,
    /// The China-time hour tries are due from (the morning).
    pub charge_hour: u32,
    /// No charge is sent at or after this China-time hour of the window's last day: it could
    /// reach Alipay the next day, outside the window.
    pub last_send_hour: u32,
}

impl Default for Dunning {
    fn default() -> Self {
        Dunning {
            lead_days: 3,
            retries: 2,
            spacing_days: 1,
            charge_hour: 9,
            last_send_hour: 22,
        }
    }
}

impl Dunning {
    /// A schedule whose every try falls inside the window, or why not.
    pub fn new(dunning: Dunning) -> Result<Dunning, String> {
        if dunning.spacing_days == 0 && dunning.retries > 0 {
            return Err("retries need a spacing of at least one day".into());
        }
        if dunning.retries.saturating_mul(dunning.spacing_days) > dunning.lead_days {
            return Err(format!(
                "{} retries {} day(s) apart do not fit in a {}-day window",
                dunning.retries, dunning.spacing_days, dunning.lead_days
            ));
        }
        if dunning.charge_hour >= dunning.last_send_hour || dunning.last_send_hour > 24 {
            return Err("the charge hour must come before the last send hour".into());
        }
        Ok(dunning)
    }

    /// The days Alipay accepts a charge for the period of `date` on.
    pub fn window(&self, date: ChinaDate) -> (ChinaDate, ChinaDate) {
        (date.add_days(-i64::from(self.lead_days)), date)
    }

    /// When try `attempt` (0 is the first) of the period of `date` is due: the charge hour of a
    /// day counted back from the date so that the last allowed retry falls on the date itself.
    pub fn try_due_ms(&self, date: ChinaDate, attempt: u32) -> i64 {
        let days_before = self.retries.saturating_sub(attempt) * self.spacing_days;
        let day = date.add_days(-i64::from(days_before));
        day.start_unix() * 1000 + i64::from(self.charge_hour) * HOUR_MS
    }

    /// Whether a charge sent at `now_ms` reaches Alipay inside the window of `date`.
    pub fn may_send(&self, date: ChinaDate, now_ms: i64) -> bool {
        let (first, last) = self.window(date);
        let opens = first.start_unix() * 1000;
        let closes = last.start_unix() * 1000 + i64::from(self.last_send_hour) * HOUR_MS;
        (opens..closes).contains(&now_ms)
    }

    /// When the window of `date` has closed for good (the end of its last China-time day).
    pub fn closed_at_ms(&self, date: ChinaDate) -> i64 {
        date.start_unix() * 1000 + DAY_MS
    }
}

/// The trade of period `n` of a subscription: the same number for every try of the period.
pub fn period_trade_no(subscription_id: &str, n: u32) -> Option<OutTradeNo> {
    OutTradeNo::parse(format!("{subscription_id}_{n:04}")).ok()
}

/// What a charge's answer (or a query's) says about the money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeClass {
    /// Paid: `10000`, or `ACQ.TRADE_HAS_SUCCESS`.
    Paid,
    /// No proof either way (no answer, `10003`, `20000`, `ACQ.SYSTEM_ERROR`, an unsigned or
    /// unknown answer, `ACQ.CYCLE_PAY_DATE_NOT_MATCH` which a paid period also answers): ask.
    Unknown,
    /// The buyer could not pay now: retry inside the window.
    Soft(String),
    /// Alipay's risk control refused: once more at most.
    Risk(String),
    /// The agreement no longer allows charges: the buyer must sign again.
    Agreement(String),
    /// The plan breaks a cap the buyer signed.
    Cap(String),
    /// The merchant's contract or our request is wrong: an alarm, never a retry.
    Merchant(String),
}

const SOFT: [&str; 8] = [
    "ACQ.BUYER_BALANCE_NOT_ENOUGH",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR",
    "ACQ.PAYMENT_FAIL",
    "ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE",
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE",
    "ACQ.TRADE_BUYER_NOT_MATCH",
];

const CAPS: [&str; 3] = [
    "ACQ.CYCLE_PAY_SINGLE_FEE_EXCEED",
    "ACQ.CYCLE_PAY_TOTAL_FEE_EXCEED",
    "ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED",
];

/// Reads an `alipay.trade.pay` answer (docs/alipay/operations.md §4's table).
pub fn classify_charge(reply: Option<Reply<'_>>) -> ChargeClass {
    let Some(reply) = reply else {
        return ChargeClass::Unknown;
    };
    let sub_code = reply.status.sub_code.clone().unwrap_or_default();
    match reply.status.disposition_when(reply.signed) {
        Disposition::Success => ChargeClass::Paid,
        Disposition::RetrySame | Disposition::QueryFirst => ChargeClass::Unknown,
        Disposition::Rejected => ChargeClass::Merchant(code_of(reply)),
        Disposition::BusinessFailure => match sub_code.as_str() {
            "ACQ.TRADE_HAS_SUCCESS" => ChargeClass::Paid,
            "ACQ.CYCLE_PAY_DATE_NOT_MATCH" => ChargeClass::Unknown,
            "ACQ.PAYMENT_REQUEST_HAS_RISK" => ChargeClass::Risk(sub_code),
            code if SOFT.contains(&code) => ChargeClass::Soft(sub_code),
            code if CAPS.contains(&code) => ChargeClass::Cap(sub_code),
            code if code.starts_with("ACQ.AGREEMENT_") => ChargeClass::Agreement(sub_code),
            // ACCESS_FORBIDDEN, MERCHANT_*, BEYOND_*, PRODUCT_AMOUNT_LIMIT_ERROR,
            // CURRENCY_NOT_SUPPORT, CONTEXT_INCONSISTENT, INVALID_PARAMETER and anything new.
            _ => ChargeClass::Merchant(code_of(reply)),
        },
    }
}

fn code_of(reply: Reply<'_>) -> String {
    reply
        .status
        .sub_code
        .clone()
        .unwrap_or_else(|| reply.status.code.clone())
}

/// A subscription's own state, apart from its agreement's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Waiting for the buyer's signature.
    Incomplete,
    /// Signed; the current period is paid or not yet due.
    Active,
    /// The current period failed; retries are pending inside its window.
    PastDue,
    /// A period could not be charged by its window's end; the agreement is kept.
    Unpaid,
    /// The agreement stopped, or the merchant cancelled, or the plan's charges are all taken.
    Canceled,
    /// The merchant paused it: periods are skipped until resumed.
    Paused,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<SubscriptionStatus> {
        [
            SubscriptionStatus::Incomplete,
            SubscriptionStatus::Active,
            SubscriptionStatus::PastDue,
            SubscriptionStatus::Unpaid,
            SubscriptionStatus::Canceled,
            SubscriptionStatus::Paused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether periods are still charged in this state.
    pub fn charges(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid
        )
    }
}

/// Where the current period stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// The period's number, 0 for the first.
    pub n: u32,
    pub date: ChinaDate,
    /// Charges sent for it that were answered with a refusal.
    pub refusals: u32,
    /// Of which risk refusals.
    pub risk_refusals: u32,
    /// A charge was sent and its outcome is not known yet.
    pub in_doubt: bool,
    /// The agreement was last seen NORMAL by a query at this time (ms): a charge needs one
    /// taken for this try.
    pub agreement_checked_ms: Option<i64>,
    /// When the last charge (or query) of this period was sent, ms.
    pub sent_ms: Option<i64>,
    /// When Alipay last refused a charge of this period, ms: the next try is spaced from it.
    pub refused_ms: Option<i64>,
    /// Alipay's next date is still an earlier period's (one ended unpaid, or periods were
    /// skipped): it must be moved to this period's date (`executionplan.modify`) before a
    /// charge can land in this window.
    pub alipay_date_behind: bool,
    /// The risk decision stepped this period's charge up: instead of a charge under the
    /// agreement, the buyer pays its order at Alipay's cashier (identity checked), until the
    /// period's window closes.
    pub at_cashier: bool,
}

impl Period {
    pub fn new(n: u32, date: ChinaDate) -> Period {
        Period {
            n,
            date,
            refusals: 0,
            risk_refusals: 0,
            in_doubt: false,
            agreement_checked_ms: None,
            sent_ms: None,
            refused_ms: None,
            alipay_date_behind: false,
            at_cashier: false,
        }
    }
}

/// How a period ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodEnd {
    /// One successful charge.
    Paid,
    /// Not charged by the window's end (the last refusal's code); the agreement is kept.
    Unpaid { code: String },
    /// The agreement refused (or was seen stopped): the subscription is canceled.
    AgreementStopped { code: String },
    /// The merchant's configuration, our request or a cap was refused: no retry, an alarm.
    Refused { code: String },
}

/// What to do with a due period now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodNext {
    /// Nothing before this time (ms).
    WaitUntil(i64),
    /// Move Alipay's next date to this period's (`alipay.user.agreement.executionplan.modify`).
    MovePlan,
    /// Ask `alipay.user.agreement.query` before charging (a lost unsign notice, a lapsed
    /// agreement that sends none).
    CheckAgreement,
    /// Send `alipay.trade.pay` for the period's trade.
    Charge,
    /// Ask `alipay.trade.query` about the period's trade (its outcome is in doubt).
    Query,
    /// The window closed with the trade in doubt and unpaid: `alipay.trade.cancel` it, then
    /// query once more.
    Cancel,
    /// The period is over.
    End(PeriodEnd),
}

/// How long to wait before asking again about a charge in doubt.
pub const QUERY_AFTER_MS: i64 = 60_000;
/// How long an agreement query stays good for one try.
pub const AGREEMENT_CHECK_FRESH_MS: i64 = 10 * 60_000;

/// The next step for a period of a charging subscription.
pub fn next_for_period(period: &Period, dunning: &Dunning, now_ms: i64) -> PeriodNext {
    if period.in_doubt {
        let asked_at = period.sent_ms.unwrap_or(0);
        if now_ms < asked_at + QUERY_AFTER_MS {
            return PeriodNext::WaitUntil(asked_at + QUERY_AFTER_MS);
        }
        return PeriodNext::Query;
    }
    let tries = period.refusals;
    if tries > dunning.retries {
        return PeriodNext::End(PeriodEnd::Unpaid {
            code: "RETRIES_EXHAUSTED".into(),
        });
    }
    let due = dunning.try_due_ms(period.date, tries);
    if now_ms < due {
        return PeriodNext::WaitUntil(due);
    }
    if !dunning.may_send(period.date, now_ms) {
        return PeriodNext::End(PeriodEnd::Unpaid {
            code: "WINDOW_CLOSED".into(),
        });
    }
    if period.alipay_date_behind {
        return PeriodNext::MovePlan;
    }
    // The last refusal's time also spaces the tries when the schedule slipped (a run missed).
    if let Some(last) = period.refused_ms
        && now_ms < last + i64::from(dunning.spacing_days) * DAY_MS - HOUR_MS
    {
        let next = last + i64::from(dunning.spacing_days) * DAY_MS - HOUR_MS;
        return if dunning.may_send(period.date, next) {
            PeriodNext::WaitUntil(next)
        } else {
            PeriodNext::End(PeriodEnd::Unpaid {
                code: "WINDOW_CLOSED".into(),
            })
        };
    }
    match period.agreement_checked_ms {
        Some(at) if now_ms - at < AGREEMENT_CHECK_FRESH_MS => PeriodNext::Charge,
        _ => PeriodNext::CheckAgreement,
    }
}

/// What an agreement query said, for a charge about to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgreementCheck {
    /// NORMAL: charge.
    Normal,
    /// STOP (or unknown to Alipay: `ACQ.AGREEMENT_NOT_EXIST`-like answers): cancel.
    Stopped,
    /// No proof: try again later, charge nothing.
    Unknown,
}

/// Whether a sub-code says Alipay has no such agreement (`USER_AGREEMENT_NOT_EXIST`,
/// `ACQ.AGREEMENT_NOT_EXIST`, …): it is stopped, as far as charging goes.
pub fn agreement_not_exist(sub_code: Option<&str>) -> bool {
    sub_code.is_some_and(|c| c.contains("AGREEMENT") && c.contains("NOT_EXIST"))
}

/// Reads an `alipay.user.agreement.query` answer and the status it carries.
pub fn after_agreement_query(
    reply: Option<Reply<'_>>,
    status: Option<alipay::agreement::AgreementStatus>,
) -> AgreementCheck {
    use alipay::agreement::AgreementStatus;
    let Some(reply) = reply else {
        return AgreementCheck::Unknown;
    };
    match reply.status.disposition_when(reply.signed) {
        Disposition::Success => match status {
            Some(AgreementStatus::Normal) => AgreementCheck::Normal,
            Some(AgreementStatus::Stop) => AgreementCheck::Stopped,
            // TEMP (never signed) or no status: nothing to charge under.
            Some(AgreementStatus::Temp) | None => AgreementCheck::Unknown,
        },
        Disposition::BusinessFailure if agreement_not_exist(reply.status.sub_code.as_deref()) => {
            AgreementCheck::Stopped
        }
        _ => AgreementCheck::Unknown,
    }
}

/// What a period becomes after a charge answered `class` at `now_ms`.
pub fn after_charge(
    period: &Period,
    class: &ChargeClass,
    dunning: &Dunning,
    now_ms: i64,
) -> PeriodChange {
    let mut next = period.clone();
    next.sent_ms = Some(now_ms);
    next.agreement_checked_ms = None;
    next.in_doubt = false;
    let end = |end: PeriodEnd| PeriodChange::End(end);
    match class {
        ChargeClass::Paid => end(PeriodEnd::Paid),
        ChargeClass::Unknown => {
            next.in_doubt = true;
            PeriodChange::Continue(next)
        }
        ChargeClass::Soft(code) => {
            next.refusals += 1;
            next.refused_ms = Some(now_ms);
            if no_try_left(&next, dunning) {
                return end(PeriodEnd::Unpaid { code: code.clone() });
            }
            PeriodChange::Continue(next)
        }
        ChargeClass::Risk(code) => {
            next.refusals += 1;
            next.refused_ms = Some(now_ms);
            next.risk_refusals += 1;
            if next.risk_refusals > 1 {
                return end(PeriodEnd::AgreementStopped { code: code.clone() });
            }
            if no_try_left(&next, dunning) {
                return end(PeriodEnd::Unpaid { code: code.clone() });
            }
            PeriodChange::Continue(next)
        }
        ChargeClass::Agreement(code) => end(PeriodEnd::AgreementStopped { code: code.clone() }),
        ChargeClass::Cap(code) | ChargeClass::Merchant(code) => {
            end(PeriodEnd::Refused { code: code.clone() })
        }
    }
}

/// Whether the period has no try left: all retries used, or the next one would fall outside
/// the window.
fn no_try_left(period: &Period, dunning: &Dunning) -> bool {
    period.refusals > dunning.retries
        || !dunning.may_send(
            period.date,
            dunning.try_due_ms(period.date, period.refusals),
        )
}

/// A period after an answer: on, or over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeriodChange {
    Continue(Period),
    End(PeriodEnd),
}

/// What a trade query about a period in doubt means.
pub fn after_charge_query(
    period: &Period,
    reply: Option<Reply<'_>>,
    trade_status: Option<TradeStatus>,
    dunning: &Dunning,
    now_ms: i64,
) -> PeriodChange {
    let closed = now_ms >= dunning.closed_at_ms(period.date);
    let mut asked = period.clone();
    asked.sent_ms = Some(now_ms);
    let Some(reply) = reply else {
        return PeriodChange::Continue(asked);
    };
    let not_exist = reply.signed
        && reply.status.sub_code.as_deref() == Some("ACQ.TRADE_NOT_EXIST")
        && reply.status.disposition() == Disposition::BusinessFailure;
    match (reply.status.disposition_when(reply.signed), trade_status) {
        (Disposition::Success, Some(status)) if status.is_paid() => {
            PeriodChange::End(PeriodEnd::Paid)
        }
        // Closed (cancelled, or never paid): this try failed; the next one may still fit.
        (Disposition::Success, Some(TradeStatus::TradeClosed)) => after_charge(
            period,
            &ChargeClass::Soft("TRADE_CLOSED".into()),
            dunning,
            now_ms,
        ),
        // Waiting for the buyer: a charge under an agreement needs no buyer, so it stays in
        // doubt until the window closes, then is cancelled.
        (Disposition::Success, _) if closed => PeriodChange::End(PeriodEnd::Unpaid {
            code: "WAIT_BUYER_PAY".into(),
        }),
        _ if not_exist => {
            // The charge never reached Alipay: the same trade may be sent again.
            let mut again = period.clone();
            again.in_doubt = false;
            again.agreement_checked_ms = None;
            if closed || !dunning.may_send(period.date, now_ms) {
                return PeriodChange::End(PeriodEnd::Unpaid {
                    code: "ACQ.TRADE_NOT_EXIST".into(),
                });
            }
            PeriodChange::Continue(again)
        }
        _ => PeriodChange::Continue(asked),
    }
}

/// A subscription as the gateway keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The merchant's id, sent to Alipay as `external_agreement_no`.
    pub id: alipay::ids::ExternalAgreementNo,
    pub customer_ref: Option<String>,
    /// What each charge is called (`subject`).
    pub subject: alipay::ids::Subject,
    pub plan: Plan,
    pub sign_channel: alipay::agreement::SignChannel,
    pub alipay_channel: crate::channel::ChannelId,
    pub status: SubscriptionStatus,
    /// Given when the buyer signs.
    pub agreement_no: Option<alipay::ids::AgreementNo>,
    pub agreement_status: alipay::agreement::AgreementStatus,
    /// The period being charged (or next to be).
    pub period: Period,
    /// Charged so far, and how many charges (the caps are checked on these).
    pub charged: Amount,
    pub charges: u32,
    /// How the last period ended: `paid`, or the code it ended on.
    pub last_period_end: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Bumped by every write; every write is conditional on the one read.
    pub version: u64,
    /// What the request that created it asked, for telling a retry from a conflict.
    pub fingerprint: String,
}

impl Subscription {
    /// When the scheduler must look at it next (`None`: never, until something changes).
    pub fn due_at_ms(&self, dunning: &Dunning) -> Option<i64> {
        // A charge in doubt is settled whatever became of the subscription meanwhile (a
        // cancel does not abandon money that may have moved).
        if !(self.status.charges() || self.period.in_doubt) || self.agreement_no.is_none() {
            return None;
        }
        Some(
            match next_for_period(&self.period, dunning, self.updated_at_ms) {
                PeriodNext::WaitUntil(at) => at,
                _ => self.updated_at_ms,
            },
        )
    }

    /// The trade of the current period.
    pub fn period_trade_no(&self) -> Option<OutTradeNo> {
        period_trade_no(self.id.as_str(), self.period.n)
    }

    /// Moves on to the period after the current one, after it ended as `end`: Alipay's next
    /// date moved on only if it was paid.
    pub fn next_period(&mut self, end: &PeriodEnd) -> bool {
        let n = self.period.n + 1;
        let Some(date) = self.plan.date_of(n) else {
            return false;
        };
        let behind = !matches!(end, PeriodEnd::Paid);
        self.period = Period::new(n, date);
        self.period.alipay_date_behind = behind;
        true
    }
}

/// The subscription after its current period ended (`n` was the period's number): the event
/// to publish is `subscription.<status>` when it changed.
pub fn after_period_end(plan: &Plan, n: u32, end: &PeriodEnd) -> SubscriptionStatus {
    match end {
        PeriodEnd::Paid if plan.total_payments.is_some_and(|count| n + 1 >= count) => {
            SubscriptionStatus::Canceled
        }
        PeriodEnd::Paid => SubscriptionStatus::Active,
        PeriodEnd::Unpaid { .. } | PeriodEnd::Refused { .. } => SubscriptionStatus::Unpaid,
        PeriodEnd::AgreementStopped { .. } => SubscriptionStatus::Canceled,
    }
}

/// The subscription after a refusal that leaves retries: past due.
pub fn after_refusal(status: SubscriptionStatus) -> SubscriptionStatus {
    match status {
        SubscriptionStatus::Active | SubscriptionStatus::Unpaid => SubscriptionStatus::PastDue,
        other => other,
    }
}

/// The merchant pauses: no period is charged until it is resumed (a charge already in doubt is
/// still settled). Only a signed, charging subscription can be paused.
pub fn pause(status: SubscriptionStatus) -> Result<SubscriptionStatus, &'static str> {
    match status {
        SubscriptionStatus::Active
        | SubscriptionStatus::PastDue
        | SubscriptionStatus::Unpaid
        | SubscriptionStatus::Paused => Ok(SubscriptionStatus::Paused),
        SubscriptionStatus::Incomplete => Err("is not signed yet"),
        SubscriptionStatus::Canceled => Err("is canceled"),
    }
}

/// The merchant resumes a paused subscription at `now_ms`: charging goes on from the current
/// period if its window has not closed, else from the first period whose date is still ahead
/// (the ones between are skipped, and Alipay's next date is moved forward to it with
/// `executionplan.modify` before its charge). Past the plan's last period: canceled.
pub fn resume(
    subscription: &Subscription,
    dunning: &Dunning,
    now_ms: i64,
) -> Result<(SubscriptionStatus, Period), &'static str> {
    match subscription.status {
        SubscriptionStatus::Paused => {}
        SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid => {
            return Ok((subscription.status, subscription.period.clone()));
        }
        SubscriptionStatus::Incomplete => return Err("is not signed yet"),
        SubscriptionStatus::Canceled => return Err("is canceled"),
    }
    let current = &subscription.period;
    if now_ms < dunning.closed_at_ms(current.date) {
        return Ok((SubscriptionStatus::Active, current.clone()));
    }
    let mut n = current.n;
    loop {
        n += 1;
        if subscription
            .plan
            .total_payments
            .is_some_and(|count| n >= count)
        {
            return Ok((SubscriptionStatus::Canceled, current.clone()));
        }
        let Some(date) = subscription.plan.date_of(n) else {
            return Ok((SubscriptionStatus::Canceled, current.clone()));
        };
        if now_ms < dunning.closed_at_ms(date) {
            let mut period = Period::new(n, date);
            period.alipay_date_behind = true;
            return Ok((SubscriptionStatus::Active, period));
        }
    }
}

/// The subscription after Alipay told its agreement's status (a notification or a query).
pub fn on_agreement_status(
    status: SubscriptionStatus,
    agreement: alipay::agreement::AgreementStatus,
) -> SubscriptionStatus {
    use alipay::agreement::AgreementStatus;
    match (status, agreement) {
        (SubscriptionStatus::Canceled, _) => SubscriptionStatus::Canceled,
        (_, AgreementStatus::Stop) => SubscriptionStatus::Canceled,
        (SubscriptionStatus::Incomplete, AgreementStatus::Normal) => SubscriptionStatus::Active,
        (status, _) => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alipay::response::Status;

    fn date(text: &str) -> ChinaDate {
        ChinaDate::parse(text).expect("date")
    }

    fn at(day: &str, hour: i64) -> i64 {
        date(day).start_unix() * 1000 + hour * HOUR_MS
    }

    fn monthly(first: &str) -> Plan {
        Plan {
            period_type: PeriodType::Month,
            period: 1,
            amount: Amount::parse("19.90").expect("amount"),
            first_date: date(first),
            single_amount: Amount::parse("19.90").expect("amount"),
            total_amount: None,
            total_payments: None,
        }
    }

    fn status(code: &str, sub_code: Option<&str>) -> Status {
        Status {
            code: code.into(),
            msg: String::new(),
            sub_code: sub_code.map(str::to_owned),
            sub_msg: None,
        }
    }

    fn class(code: &str, sub_code: Option<&str>, signed: bool) -> ChargeClass {
        let status = status(code, sub_code);
        classify_charge(Some(Reply {
            status: &status,
            signed,
        }))
    }

    #[test]
    fn a_plan_keeps_alipays_period_rules() {
        let today = date("2027-01-01");
        assert!(Plan::new(monthly("2027-01-28"), today).is_ok());
        let late_day = Plan::new(monthly("2027-01-29"), today).expect_err("day 29");
        assert_eq!(late_day.field, "first_charge_date");
        let weekly = Plan {
            period_type: PeriodType::Day,
            period: 6,
            ..monthly("2027-01-05")
        };
        assert_eq!(
            Plan::new(weekly, today).expect_err("6 days").field,
            "period"
        );
        let capped_below = Plan {
            single_amount: Amount::parse("19.89").expect("amount"),
            ..monthly("2027-01-05")
        };
        assert_eq!(
            Plan::new(capped_below, today).expect_err("cap").field,
            "single_amount"
        );
        assert_eq!(
            Plan::new(monthly("2026-12-31"), today)
                .expect_err("past")
                .field,
            "first_charge_date"
        );
    }

    #[test]
    fn monthly_dates_keep_the_day_and_daily_dates_count_days() {
        let plan = monthly("2027-01-28");
        let dates: Vec<String> = (0..14)
            .map(|n| plan.date_of(n).expect("date").to_string())
            .collect();
        assert_eq!(dates[1], "2027-02-28");
        assert_eq!(dates[12], "2028-01-28");
        assert_eq!(dates[13], "2028-02-28");
        let weekly = Plan {
            period_type: PeriodType::Day,
            period: 7,
            ..monthly("2027-12-27")
        };
        assert_eq!(weekly.date_of(1).expect("date").to_string(), "2028-01-03");
        assert_eq!(weekly.date_of(9).expect("date").to_string(), "2028-02-28");
    }

    #[test]
    fn the_caps_are_checked_before_alipay_is_asked() {
        let plan = Plan {
            total_payments: Some(3),
            total_amount: Some(Amount::parse("50.00").expect("amount")),
            ..monthly("2027-01-05")
        };
        let charged = |yuan: &str| Amount::parse_allow_zero(yuan).expect("amount");
        assert_eq!(plan.within_caps(charged("0"), 0), Ok(()));
        assert_eq!(
            plan.within_caps(charged("39.80"), 2),
            Err("ACQ.CYCLE_PAY_TOTAL_FEE_EXCEED")
        );
        let plan = Plan {
            total_amount: None,
            ..plan
        };
        assert_eq!(plan.within_caps(charged("39.80"), 2), Ok(()));
        assert_eq!(
            plan.within_caps(charged("59.70"), 3),
            Err("ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED")
        );
    }

    #[test]
    fn tries_fall_in_the_window_the_last_on_the_date_itself() {
        let dunning = Dunning::default();
        let day = date("2027-03-10");
        assert_eq!(dunning.try_due_ms(day, 0), at("2027-03-08", 9));
        assert_eq!(dunning.try_due_ms(day, 1), at("2027-03-09", 9));
        assert_eq!(dunning.try_due_ms(day, 2), at("2027-03-10", 9));
        assert!(!dunning.may_send(day, at("2027-03-06", 23)));
        assert!(dunning.may_send(day, at("2027-03-07", 0)));
        assert!(dunning.may_send(day, at("2027-03-10", 21)));
        // Late on the last day a request can reach Alipay the next day: not sent.
        assert!(!dunning.may_send(day, at("2027-03-10", 22)));
        assert!(
            Dunning::new(Dunning {
                retries: 4,
                ..Dunning::default()
            })
            .is_err()
        );
    }

    #[test]
    fn charge_answers_are_read_by_alipays_table() {
        assert_eq!(class("10000", None, true), ChargeClass::Paid);
        assert_eq!(class("10003", None, true), ChargeClass::Unknown);
        assert_eq!(class("20000", None, true), ChargeClass::Unknown);
        assert_eq!(
            class("40004", Some("ACQ.SYSTEM_ERROR"), true),
            ChargeClass::Unknown
        );
        assert_eq!(
            class("40004", Some("ACQ.BUYER_BALANCE_NOT_ENOUGH"), true),
            ChargeClass::Soft("ACQ.BUYER_BALANCE_NOT_ENOUGH".into())
        );
        // Unsigned, a refusal proves nothing.
        assert_eq!(
            class("40004", Some("ACQ.BUYER_BALANCE_NOT_ENOUGH"), false),
            ChargeClass::Unknown
        );
        assert_eq!(
            class("40004", Some("ACQ.PAYMENT_REQUEST_HAS_RISK"), true),
            ChargeClass::Risk("ACQ.PAYMENT_REQUEST_HAS_RISK".into())
        );
        assert_eq!(
            class("40004", Some("ACQ.AGREEMENT_STATUS_NOT_NORMAL"), true),
            ChargeClass::Agreement("ACQ.AGREEMENT_STATUS_NOT_NORMAL".into())
        );
        assert_eq!(
            class("40004", Some("ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED"), true),
            ChargeClass::Cap("ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED".into())
        );
        assert_eq!(
            class("40004", Some("ACQ.TRADE_HAS_SUCCESS"), true),
            ChargeClass::Paid
        );
        assert_eq!(
            class("40004", Some("ACQ.CYCLE_PAY_DATE_NOT_MATCH"), true),
            ChargeClass::Unknown
        );
        assert_eq!(
            class("40004", Some("ACQ.ACCESS_FORBIDDEN"), true),
            ChargeClass::Merchant("ACQ.ACCESS_FORBIDDEN".into())
        );
        assert_eq!(
            class("40002", Some("isv.invalid-signature"), false),
            ChargeClass::Merchant("isv.invalid-signature".into())
        );
        assert_eq!(classify_charge(None), ChargeClass::Unknown);
    }

    #[test]
    fn a_soft_refusal_is_retried_inside_the_window_and_no_further() {
        let dunning = Dunning::default();
        let mut period = Period::new(2, date("2027-03-10"));
        let soft = ChargeClass::Soft("ACQ.BUYER_BALANCE_NOT_ENOUGH".into());
        // Nothing before the first try; then the agreement is asked about first.
        assert_eq!(
            next_for_period(&period, &dunning, at("2027-03-07", 12)),
            PeriodNext::WaitUntil(at("2027-03-08", 9))
        );
        assert_eq!(
            next_for_period(&period, &dunning, at("2027-03-08", 9)),
            PeriodNext::CheckAgreement
        );
        for (try_day, next_day) in [("2027-03-08", "2027-03-09"), ("2027-03-09", "2027-03-10")] {
            period.agreement_checked_ms = Some(at(try_day, 9));
            assert_eq!(
                next_for_period(&period, &dunning, at(try_day, 9) + 1000),
                PeriodNext::Charge
            );
            period = match after_charge(&period, &soft, &dunning, at(try_day, 9) + 2000) {
                PeriodChange::Continue(period) => period,
                other => panic!("a retry was expected, got {other:?}"),
            };
            assert_eq!(
                next_for_period(&period, &dunning, at(try_day, 10)),
                PeriodNext::WaitUntil(at(next_day, 9))
            );
        }
        period.agreement_checked_ms = Some(at("2027-03-10", 9));
        assert_eq!(
            after_charge(&period, &soft, &dunning, at("2027-03-10", 9) + 2000),
            PeriodChange::End(PeriodEnd::Unpaid {
                code: "ACQ.BUYER_BALANCE_NOT_ENOUGH".into()
            })
        );
    }

    #[test]
    fn a_run_that_comes_after_the_window_charges_nothing() {
        let dunning = Dunning::default();
        let period = Period::new(0, date("2027-03-10"));
        assert_eq!(
            next_for_period(&period, &dunning, at("2027-03-10", 22)),
            PeriodNext::End(PeriodEnd::Unpaid {
                code: "WINDOW_CLOSED".into()
            })
        );
        assert_eq!(
            next_for_period(&period, &dunning, at("2027-03-11", 9)),
            PeriodNext::End(PeriodEnd::Unpaid {
                code: "WINDOW_CLOSED".into()
            })
        );
    }

    #[test]
    fn a_second_risk_refusal_or_an_agreement_refusal_stops_the_subscription() {
        let dunning = Dunning::default();
        let period = Period::new(0, date("2027-03-10"));
        let risk = ChargeClass::Risk("ACQ.PAYMENT_REQUEST_HAS_RISK".into());
        let PeriodChange::Continue(once) =
            after_charge(&period, &risk, &dunning, at("2027-03-08", 9))
        else {
            panic!("one risk refusal is retried")
        };
        assert_eq!(
            after_charge(&once, &risk, &dunning, at("2027-03-09", 9)),
            PeriodChange::End(PeriodEnd::AgreementStopped {
                code: "ACQ.PAYMENT_REQUEST_HAS_RISK".into()
            })
        );
        assert_eq!(
            after_charge(
                &period,
                &ChargeClass::Agreement("ACQ.AGREEMENT_INVALID".into()),
                &dunning,
                at("2027-03-08", 9)
            ),
            PeriodChange::End(PeriodEnd::AgreementStopped {
                code: "ACQ.AGREEMENT_INVALID".into()
            })
        );
        assert_eq!(
            after_charge(
                &period,
                &ChargeClass::Merchant("ACQ.ACCESS_FORBIDDEN".into()),
                &dunning,
                at("2027-03-08", 9)
            ),
            PeriodChange::End(PeriodEnd::Refused {
                code: "ACQ.ACCESS_FORBIDDEN".into()
            })
        );
    }

    #[test]
    fn a_charge_in_doubt_is_asked_about_and_never_sent_twice_blind() {
        let dunning = Dunning::default();
        let period = Period::new(0, date("2027-03-10"));
        let PeriodChange::Continue(doubt) = after_charge(
            &period,
            &ChargeClass::Unknown,
            &dunning,
            at("2027-03-08", 9),
        ) else {
            panic!("an unknown outcome keeps the period on")
        };
        assert!(doubt.in_doubt);
        assert_eq!(
            next_for_period(&doubt, &dunning, at("2027-03-08", 9) + 1000),
            PeriodNext::WaitUntil(at("2027-03-08", 9) + QUERY_AFTER_MS)
        );
        assert_eq!(
            next_for_period(&doubt, &dunning, at("2027-03-08", 10)),
            PeriodNext::Query
        );
        let paid = status("10000", None);
        let reply = Some(Reply {
            status: &paid,
            signed: true,
        });
        assert_eq!(
            after_charge_query(
                &doubt,
                reply,
                Some(TradeStatus::TradeSuccess),
                &dunning,
                at("2027-03-08", 10)
            ),
            PeriodChange::End(PeriodEnd::Paid)
        );
        // Waiting for a buyer inside the window: still in doubt; after it: unpaid.
        assert!(matches!(
            after_charge_query(
                &doubt,
                reply,
                Some(TradeStatus::WaitBuyerPay),
                &dunning,
                at("2027-03-08", 10)
            ),
            PeriodChange::Continue(Period { in_doubt: true, .. })
        ));
        assert!(matches!(
            after_charge_query(
                &doubt,
                reply,
                Some(TradeStatus::WaitBuyerPay),
                &dunning,
                at("2027-03-11", 0)
            ),
            PeriodChange::End(PeriodEnd::Unpaid { .. })
        ));
        // Alipay never saw it: the same trade may go again, after a new agreement check.
        let absent = status("40004", Some("ACQ.TRADE_NOT_EXIST"));
        let PeriodChange::Continue(again) = after_charge_query(
            &doubt,
            Some(Reply {
                status: &absent,
                signed: true,
            }),
            None,
            &dunning,
            at("2027-03-08", 10),
        ) else {
            panic!("the period goes on")
        };
        assert!(!again.in_doubt);
        assert_eq!(
            next_for_period(&again, &dunning, at("2027-03-08", 10)),
            PeriodNext::CheckAgreement
        );
        // No answer: still in doubt.
        assert!(matches!(
            after_charge_query(&doubt, None, None, &dunning, at("2027-03-08", 10)),
            PeriodChange::Continue(Period { in_doubt: true, .. })
        ));
    }

    #[test]
    fn the_period_trade_is_the_same_for_every_try() {
        assert_eq!(
            period_trade_no("sub7Q2ZK9", 11).expect("id").as_str(),
            "sub7Q2ZK9_0011"
        );
        assert_eq!(
            period_trade_no("sub7Q2ZK9", 11),
            period_trade_no("sub7Q2ZK9", 11)
        );
        assert_ne!(
            period_trade_no("sub7Q2ZK9", 11),
            period_trade_no("sub7Q2ZK9", 12)
        );
    }

    #[test]
    fn only_a_normal_agreement_is_charged_under() {
        use alipay::agreement::AgreementStatus;
        let ok = status("10000", None);
        let reply = Some(Reply {
            status: &ok,
            signed: true,
        });
        assert_eq!(
            after_agreement_query(reply, Some(AgreementStatus::Normal)),
            AgreementCheck::Normal
        );
        assert_eq!(
            after_agreement_query(reply, Some(AgreementStatus::Stop)),
            AgreementCheck::Stopped
        );
        assert_eq!(
            after_agreement_query(reply, Some(AgreementStatus::Temp)),
            AgreementCheck::Unknown
        );
        assert_eq!(after_agreement_query(None, None), AgreementCheck::Unknown);
        let unsigned_ok = Some(Reply {
            status: &ok,
            signed: false,
        });
        assert_eq!(
            after_agreement_query(unsigned_ok, Some(AgreementStatus::Normal)),
            AgreementCheck::Unknown
        );
    }

    #[test]
    fn a_subscription_moves_with_its_periods_and_its_agreement() {
        use SubscriptionStatus::*;
        use alipay::agreement::AgreementStatus;
        let plan = Plan {
            total_payments: Some(12),
            ..monthly("2027-01-05")
        };
        assert_eq!(after_period_end(&plan, 0, &PeriodEnd::Paid), Active);
        assert_eq!(after_period_end(&plan, 11, &PeriodEnd::Paid), Canceled);
        let unpaid = PeriodEnd::Unpaid {
            code: "ACQ.BUYER_BALANCE_NOT_ENOUGH".into(),
        };
        assert_eq!(after_period_end(&plan, 3, &unpaid), Unpaid);
        let stopped = PeriodEnd::AgreementStopped {
            code: "ACQ.AGREEMENT_INVALID".into(),
        };
        assert_eq!(after_period_end(&plan, 3, &stopped), Canceled);
        assert_eq!(after_refusal(Active), PastDue);
        assert_eq!(after_refusal(Paused), Paused);
        assert_eq!(
            on_agreement_status(Incomplete, AgreementStatus::Normal),
            Active
        );
        assert_eq!(
            on_agreement_status(PastDue, AgreementStatus::Stop),
            Canceled
        );
        assert_eq!(
            on_agreement_status(Canceled, AgreementStatus::Normal),
            Canceled
        );
        assert_eq!(on_agreement_status(Paused, AgreementStatus::Normal), Paused);
        assert!(Active.charges() && PastDue.charges() && Unpaid.charges());
        assert!(!Paused.charges() && !Canceled.charges() && !Incomplete.charges());
        for status in [Incomplete, Active, PastDue, Unpaid, Canceled, Paused] {
            assert_eq!(SubscriptionStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn after_an_unpaid_period_alipays_date_is_moved_before_the_next_charge() {
        let dunning = Dunning::default();
        let plan = monthly("2027-01-10");
        let mut subscription = Subscription {
            id: alipay::ids::ExternalAgreementNo::parse("sub1").expect("id"),
            customer_ref: None,
            subject: alipay::ids::Subject::parse("plan").expect("subject"),
            plan: plan.clone(),
            sign_channel: alipay::agreement::SignChannel::Qrcode,
            alipay_channel: crate::channel::ChannelId::Primary,
            status: SubscriptionStatus::Active,
            agreement_no: Some(alipay::ids::AgreementNo::parse("2026").expect("no")),
            agreement_status: alipay::agreement::AgreementStatus::Normal,
            period: Period::new(0, plan.first_date),
            charged: Amount::ZERO,
            charges: 0,
            last_period_end: None,
            created_at_ms: 0,
            updated_at_ms: at("2027-01-01", 10),
            version: 1,
            fingerprint: String::new(),
        };
        assert_eq!(subscription.due_at_ms(&dunning), Some(at("2027-01-08", 9)));
        assert!(subscription.next_period(&PeriodEnd::Paid));
        assert!(!subscription.period.alipay_date_behind);
        assert!(subscription.next_period(&PeriodEnd::Unpaid {
            code: "ACQ.BUYER_BALANCE_NOT_ENOUGH".into()
        }));
        assert_eq!(subscription.period.n, 2);
        assert_eq!(subscription.period.date, date("2027-03-10"));
        assert_eq!(
            next_for_period(&subscription.period, &dunning, at("2027-03-08", 9)),
            PeriodNext::MovePlan
        );
        subscription.status = SubscriptionStatus::Paused;
        assert_eq!(subscription.due_at_ms(&dunning), None);
    }

    #[test]
    fn a_resume_skips_the_periods_whose_window_closed_and_moves_alipays_date() {
        let dunning = Dunning::default();
        let plan = monthly("2027-01-10");
        let paused = Subscription {
            id: alipay::ids::ExternalAgreementNo::parse("sub1").expect("id"),
            customer_ref: None,
            subject: alipay::ids::Subject::parse("plan").expect("subject"),
            plan: Plan {
                total_payments: Some(6),
                ..plan.clone()
            },
            sign_channel: alipay::agreement::SignChannel::Qrcode,
            alipay_channel: crate::channel::ChannelId::Primary,
            status: SubscriptionStatus::Paused,
            agreement_no: Some(alipay::ids::AgreementNo::parse("2026").expect("no")),
            agreement_status: alipay::agreement::AgreementStatus::Normal,
            period: Period::new(1, date("2027-02-10")),
            charged: Amount::ZERO,
            charges: 1,
            last_period_end: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
            fingerprint: String::new(),
        };
        // Inside the current period's window: it goes on, nothing skipped.
        let (status, period) = resume(&paused, &dunning, at("2027-02-10", 10)).expect("resumed");
        assert_eq!(status, SubscriptionStatus::Active);
        assert_eq!(period, paused.period);
        // Two windows later: periods 2 and 3 (March, April) skipped, Alipay's date to be moved to May's.
        let (status, period) = resume(&paused, &dunning, at("2027-04-11", 10)).expect("resumed");
        assert_eq!(status, SubscriptionStatus::Active);
        assert_eq!((period.n, period.date), (4, date("2027-05-10")));
        assert!(period.alipay_date_behind);
        // Past the plan's last period.
        let (status, _) = resume(&paused, &dunning, at("2027-08-01", 10)).expect("resumed");
        assert_eq!(status, SubscriptionStatus::Canceled);
        assert_eq!(
            pause(SubscriptionStatus::PastDue),
            Ok(SubscriptionStatus::Paused)
        );
        assert!(pause(SubscriptionStatus::Incomplete).is_err());
        assert!(pause(SubscriptionStatus::Canceled).is_err());
        let canceled = Subscription {
            status: SubscriptionStatus::Canceled,
            ..paused
        };
        assert!(resume(&canceled, &dunning, 0).is_err());
    }
}
