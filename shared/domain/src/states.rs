//! Orders and refunds: their states, the legal transitions between them, and what caused each
//! change. Pure: the store enforces these rules with conditional writes.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::channel::ChannelId;
use alipay::china_time::ChinaDateTime;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
pub use money::{Currency, Money};

/// Which Alipay cashier the buyer pays in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cashier {
    /// PC web (`alipay.trade.page.pay`).
    Page,
    /// Mobile web (`alipay.trade.wap.pay`).
    Wap,
    /// The Alipay app SDK (`alipay.trade.app.pay`).
    App,
    /// A QR code to scan (`alipay.trade.precreate`).
    Qr,
    /// A charge under a signed agreement (`alipay.trade.pay`), without the buyer: a
    /// subscription's period. Never asked for through `POST /payments`.
    Agreement,
}

impl Cashier {
    pub fn as_str(self) -> &'static str {
        match self {
            Cashier::Page => "page",
            Cashier::Wap => "wap",
            Cashier::App => "app",
            Cashier::Qr => "qr",
            Cashier::Agreement => "agreement",
        }
    }

    pub fn parse(text: &str) -> Option<Cashier> {
        match text {
            "page" => Some(Cashier::Page),
            "wap" => Some(Cashier::Wap),
            "app" => Some(Cashier::App),
            "qr" => Some(Cashier::Qr),
            "agreement" => Some(Cashier::Agreement),
            _ => None,
        }
    }
}

/// An order's trade state. Refunds do not change it: how much of a paid order was refunded is
/// in its `refunded` and `refundable` amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Created, waiting for the buyer.
    Created,
    /// Paid (`TRADE_SUCCESS`); refundable.
    Paid,
    /// Paid and no longer refundable (`TRADE_FINISHED`).
    Finished,
    /// Closed unpaid.
    Closed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "CREATED",
            OrderStatus::Paid => "PAID",
            OrderStatus::Finished => "FINISHED",
            OrderStatus::Closed => "CLOSED",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        match text {
            "CREATED" => Some(OrderStatus::Created),
            "PAID" => Some(OrderStatus::Paid),
            "FINISHED" => Some(OrderStatus::Finished),
            "CLOSED" => Some(OrderStatus::Closed),
            _ => None,
        }
    }

    /// CREATED → PAID → FINISHED; CREATED → FINISHED (a first notification may already say
    /// finished); CREATED → CLOSED.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Created, Paid) | (Created, Finished) | (Paid, Finished) | (Created, Closed)
        )
    }

    /// Whether an order in this state already reflects `next` (so that asking for `next` again
    /// is a duplicate, not an error): a finished order has been paid.
    pub fn already(self, next: OrderStatus) -> bool {
        self == next || (self == OrderStatus::Finished && next == OrderStatus::Paid)
    }

    pub fn is_paid(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Finished)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment held for review, and what became of the hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Deliver nothing: release it or cancel the payment.
    Held,
    /// The merchant released it: deliver.
    Released,
    /// The merchant cancelled the payment (closed unpaid, or to be refunded).
    Cancelled,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Held => "held",
            Hold::Released => "released",
            Hold::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Hold> {
        [Hold::Held, Hold::Released, Hold::Cancelled]
            .into_iter()
            .find(|h| h.as_str() == text)
    }
}

/// What a merchant asks for when creating a payment. Two requests with the same
/// `out_trade_no` are the same request exactly when their fingerprints are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub out_trade_no: OutTradeNo,
    /// In the currency the merchant priced it in (CNY unless it says otherwise).
    pub amount: Money,
    pub subject: Subject,
    pub channel: Cashier,
    pub return_url: Option<String>,
    pub time_expire: Option<ChinaDateTime>,
    /// The merchant's id of its customer (fraud checks count per customer).
    pub customer_ref: Option<String>,
    /// Virtual goods (the default) are held to the virtual-goods ceiling.
    pub virtual_goods: bool,
    /// The Alipay channel the gateway picked (not part of the request or its fingerprint).
    pub alipay_channel: ChannelId,
}

impl NewOrder {
    /// SHA-256 over the fields that define the order, length-prefixed so that no two
    /// different requests can collide by shifting text between fields.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for field in [
            self.out_trade_no.as_str(),
            &self.amount.minor().to_string(),
            self.subject.as_str(),
            self.channel.as_str(),
            self.return_url.as_deref().unwrap_or(""),
            self.time_expire.as_ref().map_or("", ChinaDateTime::as_str),
        ] {
            hash.update((field.len() as u64).to_be_bytes());
            hash.update(field.as_bytes());
        }
        // Fields added later join only when given, so earlier fingerprints stay valid.
        if let Some(customer) = &self.customer_ref {
            hash.update(b"customer_ref");
            hash.update((customer.len() as u64).to_be_bytes());
            hash.update(customer.as_bytes());
        }
        if !self.virtual_goods {
            hash.update(b"physical");
        }
        if self.amount.currency() != Currency::CNY {
            hash.update(b"currency");
            hash.update(self.amount.currency().code().as_bytes());
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An order as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    pub out_trade_no: OutTradeNo,
    /// Every amount of the order is in this one's currency.
    pub amount: Money,
    pub subject: Subject,
    pub channel: Cashier,
    pub status: OrderStatus,
    pub return_url: Option<String>,
    pub time_expire: Option<String>,
    /// Alipay's trade number, known once Alipay reports the trade.
    pub trade_no: Option<String>,
    pub paid_amount: Option<Money>,
    pub paid_at: Option<String>,
    /// Refunds that Alipay confirmed.
    pub refunded: Money,
    /// What may still be refunded: paid, less confirmed and pending refunds.
    pub refundable: Money,
    pub buyer_id_masked: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Incremented by every change; read-then-write changes are conditional on it.
    pub version: u64,
    #[serde(skip)]
    pub fingerprint: String,
    /// While CREATED: when the sweeper ends it if nobody paid (after `time_expire`).
    pub due_at_ms: Option<i64>,
    /// How many times the sweeper looked at it without finishing (for its backoff).
    pub sweeps: u32,
    /// A genuine payment arrived after we had closed the order (the money is real).
    pub paid_after_close: bool,
    pub customer_ref: Option<String>,
    /// The after-payment fraud rules this payment tripped (empty: not flagged).
    pub risk_rules: Vec<String>,
    /// The risk decision made when it was created (the journal's entry); `None` for payments
    /// created before decisions were journaled.
    pub decision: Option<crate::decisions::Decision>,
    /// A review's hold: deliver nothing while `held`.
    pub hold: Option<Hold>,
    /// The Alipay channel (application) that created it: every later call uses it.
    pub alipay_channel: ChannelId,
    /// How the provider converted and settled it, as it reported (Antom: the settlement
    /// currency and amount and the quote); `None` when nothing was reported.
    pub settlement: Option<SettlementFacts>,
}

/// What a provider reported about converting and settling a payment: recorded as reported,
/// never computed by us (a rate is kept as the text it was written in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettlementFacts {
    /// In the settlement currency (`grossSettlementAmount`).
    pub amount: Money,
    pub quote_id: Option<String>,
    /// `USD/CNY`.
    pub quote_pair: Option<String>,
    /// The rate, as written.
    pub quote_price: Option<String>,
    pub quote_start: Option<String>,
    pub quote_expiry: Option<String>,
    /// What the buyer paid, in the currency it paid in (v1 `pay_amount` in `pay_currency`).
    pub buyer_paid: Option<Money>,
    /// The rate from the payment's currency to the buyer's (v1 `trans_pay_rate`), as written.
    pub buyer_rate: Option<String>,
}

impl Order {
    pub fn currency(&self) -> Currency {
        self.amount.currency()
    }

    /// True when confirmed refunds add up to everything that was paid.
    pub fn fully_refunded(&self) -> bool {
        self.status.is_paid() && !self.refunded.is_zero() && Some(self.refunded) == self.paid_amount
    }
}

/// What Alipay reported about a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub trade_no: String,
    pub amount: Money,
    pub paid_at: Option<String>,
    pub buyer_id_masked: Option<String>,
    /// `TRADE_FINISHED`: paid and no longer refundable.
    pub finished: bool,
    /// The after-payment fraud checks' verdict, recorded with the payment.
    pub risk: Option<PaidRisk>,
    /// The channel it was paid through (the order's): its bill lists it.
    pub alipay_channel: ChannelId,
    /// The settlement the provider reported with the payment.
    pub settlement: Option<SettlementFacts>,
}

/// What the after-payment fraud checks found, and the history the payment adds to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaidRisk {
    /// Rules tripped (empty: not flagged).
    pub rules: Vec<String>,
    /// The customer's digest (its paid history is kept under it).
    pub customer: String,
    /// The buyer's digest (the customers it paid for are kept under it).
    pub buyer: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    /// Reserved against the order; Alipay's outcome not yet known.
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "PENDING",
            RefundStatus::Succeeded => "SUCCEEDED",
            RefundStatus::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<RefundStatus> {
        match text {
            "PENDING" => Some(RefundStatus::Pending),
            "SUCCEEDED" => Some(RefundStatus::Succeeded),
            "FAILED" => Some(RefundStatus::Failed),
            _ => None,
        }
    }
}

/// A refund asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRefund {
    pub out_request_no: OutRequestNo,
    /// In the order's currency.
    pub amount: Money,
    pub reason: Option<String>,
    /// The order's Alipay channel (see `Gateway::channel_of`).
    pub alipay_channel: ChannelId,
}

/// A refund as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub out_trade_no: OutTradeNo,
    pub out_request_no: OutRequestNo,
    pub amount: Money,
    pub reason: Option<String>,
    pub status: RefundStatus,
    /// Alipay's `sub_code` when the refund failed.
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When a send to Alipay was last begun (its creation while never sent): Alipay's answers
    /// to a refund query are read against it (≥ 10 s, `lifecycle::SinceSend`).
    pub last_send_ms: i64,
    /// How many times a send to Alipay was begun (0: never sent, so a signed refusal of the
    /// next send is about the only request there is).
    pub sends: u32,
    /// While PENDING: when the sweeper next looks at it.
    pub due_at_ms: Option<i64>,
    /// How many times the sweeper looked at it without finishing (for its backoff).
    pub sweeps: u32,
    /// The order's Alipay channel.
    pub alipay_channel: ChannelId,
    /// Set once a PENDING refund stayed unproven past the bound (`REFUND_PROOF_WINDOW_MS`) and
    /// was raised as a discrepancy (audited once, alarmed while it lasts).
    pub unproven_since_ms: Option<i64>,
}

/// How a pending refund ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded,
    Failed { code: String, message: String },
}

/// What caused a change, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cause {
    /// A merchant API call.
    Api { route: String },
    /// An Alipay notification.
    Notify { notify_id: String },
    /// Alipay's answer to one of our calls (refund, refund query, trade query).
    AlipayAnswer { method: String },
    /// The sweeper, finishing interrupted or expired work.
    Sweeper,
    /// The subscription scheduler, charging a period.
    Scheduler,
    /// The daily reconciliation with Alipay's bill of `date` (a lost notification repaired).
    Reconciliation { date: String },
    /// An operator, through `alipay-cli` (`by`: who, as they said).
    Operator { by: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn only_the_documented_transitions_are_legal() {
        let all = [Created, Paid, Finished, Closed];
        let mut legal = vec![];
        for from in all {
            for to in all {
                if from.can_become(to) {
                    legal.push((from, to));
                }
            }
        }
        assert_eq!(
            legal,
            vec![
                (Created, Paid),
                (Created, Finished),
                (Created, Closed),
                (Paid, Finished)
            ]
        );
    }

    #[test]
    fn repeats_are_recognised() {
        assert!(Paid.already(Paid));
        assert!(Finished.already(Paid));
        assert!(!Paid.already(Finished));
        assert!(!Closed.already(Paid));
    }

    #[test]
    fn fingerprints_separate_fields() {
        let order = |subject: &str, return_url: Option<&str>| NewOrder {
            out_trade_no: OutTradeNo::parse("o_1").expect("id"),
            amount: Money::parse("1.00", Currency::CNY).expect("amount"),
            subject: Subject::parse(subject).expect("subject"),
            channel: Cashier::Page,
            return_url: return_url.map(str::to_owned),
            time_expire: None,
            customer_ref: None,
            virtual_goods: true,
            alipay_channel: ChannelId::Primary,
        };
        assert_eq!(
            order("ab", None).fingerprint(),
            order("ab", None).fingerprint()
        );
        assert_ne!(
            order("ab", None).fingerprint(),
            order("a", Some("b")).fingerprint()
        );
        assert_eq!(order("ab", None).fingerprint().len(), 64);
    }
}
