//! A trade state Alipay reported, verified (a notification, or a signed query answer), and the
//! rule for what it asks of an order: a paid state is believed only with the order's exact
//! amount; a payment for an order closed here is real money, recorded, and refunded in full when
//! so configured; a close of a payment still waiting closes it; nothing else changes it.
//!
//! Where "a verified payment becomes PAID" is decided. The store writes what this decides
//! (`gateway::payments` drives it).

use alipay::cross_border::CrossBorder;
use alipay::ids::{BuyerId, OutRequestNo};
use alipay::money::Amount;
use alipay::notify::{TradeNotification, TradeStatus};
use alipay::response::QueryResult;
use sha2::{Digest as _, Sha256};

use crate::channel::ChannelId;
use crate::states::{Money, NewRefund, Order, OrderStatus, Payment, SettlementFacts};

/// A trade state that Alipay reported, already verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeReport {
    pub trade_no: String,
    pub trade_status: TradeStatus,
    /// In the order's currency when it is genuine (compared with the order's before anything
    /// is applied).
    pub total_amount: Money,
    /// When Alipay says it was paid (`gmt_payment`, `send_pay_date`), China time: the bill's day.
    pub paid_at: Option<String>,
    pub buyer_id_masked: Option<String>,
    /// A digest of the buyer's id, for the fraud checks (never the id itself).
    pub buyer_key: Option<String>,
    /// The conversion and settlement the provider reported (Antom; v1 for merchants contracted
    /// for cross-border settlement).
    pub settlement: Option<SettlementFacts>,
}

impl TradeReport {
    /// What a verified trade notification reports.
    pub fn from_notification(notification: &TradeNotification) -> TradeReport {
        TradeReport {
            trade_no: notification.trade_no.clone(),
            trade_status: notification.trade_status,
            total_amount: notification.total_amount.into(),
            paid_at: notification.gmt_payment.clone(),
            buyer_id_masked: notification.buyer.as_ref().map(BuyerId::masked),
            buyer_key: notification.buyer.as_ref().map(buyer_key),
            settlement: settlement(&notification.cross_border),
        }
    }

    /// What a signed `alipay.trade.query` answer reports (its `trade_status` read already).
    pub fn from_query(result: &QueryResult, trade_status: TradeStatus) -> TradeReport {
        let buyer = result.buyer_user_id.as_deref().map(BuyerId::new);
        TradeReport {
            trade_no: result.trade_no.clone(),
            trade_status,
            total_amount: result.total_amount.into(),
            paid_at: result.send_pay_date.clone(),
            buyer_id_masked: buyer.as_ref().map(BuyerId::masked),
            buyer_key: buyer.as_ref().map(buyer_key),
            settlement: settlement(&result.cross_border),
        }
    }

    /// What a signed answer that says the trade is paid reports (`alipay.trade.pay` under an
    /// agreement: `10000`, with the trade's fields).
    pub fn paid_by_answer(
        trade_no: &str,
        total_amount: Amount,
        paid_at: Option<&str>,
        buyer_user_id: Option<&str>,
    ) -> TradeReport {
        let buyer = buyer_user_id.map(BuyerId::new);
        TradeReport {
            trade_no: trade_no.to_owned(),
            trade_status: TradeStatus::TradeSuccess,
            total_amount: total_amount.into(),
            paid_at: paid_at.map(str::to_owned),
            buyer_id_masked: buyer.as_ref().map(BuyerId::masked),
            buyer_key: buyer.as_ref().map(buyer_key),
            settlement: None,
        }
    }

    /// The payment it reports (with no fraud assessment yet), for `order`.
    pub fn payment_for(&self, order: &Order) -> Payment {
        Payment {
            trade_no: self.trade_no.clone(),
            amount: self.total_amount,
            paid_at: self.paid_at.clone(),
            buyer_id_masked: self.buyer_id_masked.clone(),
            finished: self.trade_status == TradeStatus::TradeFinished,
            risk: None,
            alipay_channel: order.alipay_channel,
            settlement: self.settlement.clone(),
        }
    }
}

/// What Alipay v1's cross-border fields report, recorded as written: the settlement amount in
/// its currency (`settle_amount`, `settle_currency`) with its rate (`settle_trans_rate`, from
/// `trans_currency`, CNY when absent), and what the buyer paid (`pay_amount`, `pay_currency`)
/// with its rate (`trans_pay_rate`). `None` unless the settlement amount and its currency are
/// both there and readable in our money type; a buyer's side that is not readable is left out.
pub fn settlement(fields: &CrossBorder) -> Option<SettlementFacts> {
    let money = |amount: Option<&String>, currency: Option<&String>| {
        let currency = crate::states::Currency::parse(currency?.trim()).ok()?;
        Money::parse(amount?.trim(), currency).ok()
    };
    let amount = money(
        fields.settle_amount.as_ref(),
        fields.settle_currency.as_ref(),
    )?;
    let priced_in = fields.trans_currency.as_deref().unwrap_or("CNY");
    Some(SettlementFacts {
        amount,
        quote_id: None,
        quote_pair: Some(format!("{priced_in}/{}", amount.currency().code())),
        quote_price: fields.settle_trans_rate.clone(),
        quote_start: None,
        quote_expiry: None,
        buyer_paid: money(fields.pay_amount.as_ref(), fields.pay_currency.as_ref()),
        buyer_rate: fields.trans_pay_rate.clone(),
    })
}

/// The key a buyer is counted under by the fraud checks: a digest, never the id.
fn buyer_key(buyer: &BuyerId) -> String {
    crate::risk::digest("buyer", buyer.expose())
}

/// What a verified report asks of an order as we last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportEffect {
    /// Paid (or finished): record the payment.
    MarkPaid,
    /// Paid, for an order closed here: the money is real; record it as a payment after close.
    PaidAfterClose,
    /// Closed at Alipay while still waiting here: close it.
    Close,
    /// Nothing to change (waiting for the buyer; closed after payment, which means fully
    /// refunded and is the refunds' to record).
    Nothing,
    /// Not about this order as we know it: refused, with the reason (audited).
    Mismatch(String),
}

/// The rule for a verified report.
pub fn effect_on(order: &Order, report: &TradeReport) -> ReportEffect {
    match report.trade_status {
        status if status.is_paid() => {
            if report.total_amount != order.amount {
                ReportEffect::Mismatch(format!(
                    "total_amount {} does not match the order's {}",
                    report.total_amount, order.amount
                ))
            } else if order.status == OrderStatus::Closed {
                ReportEffect::PaidAfterClose
            } else {
                ReportEffect::MarkPaid
            }
        }
        TradeStatus::TradeClosed if order.status == OrderStatus::Created => ReportEffect::Close,
        _ => ReportEffect::Nothing,
    }
}

/// The automatic refund of a payment after close: its number is derived from Alipay's trade
/// number, so every retry of the notification names the same refund.
pub fn auto_refund(payment: &Payment, channel: ChannelId) -> Option<NewRefund> {
    let digest = Sha256::digest(payment.trade_no.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let out_request_no = OutRequestNo::parse(format!("pac_{hex}")).ok()?;
    Some(NewRefund {
        out_request_no,
        amount: payment.amount,
        reason: Some("paid after the order was closed".into()),
        alipay_channel: channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{Cashier, Currency};
    use alipay::ids::{OutTradeNo, Subject};

    fn order(status: OrderStatus, amount: &str) -> Order {
        Order {
            out_trade_no: OutTradeNo::parse("o_1").expect("id"),
            amount: Amount::parse(amount).expect("amount").into(),
            subject: Subject::parse("s").expect("subject"),
            channel: Cashier::Qr,
            status,
            return_url: None,
            time_expire: None,
            trade_no: None,
            paid_amount: None,
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
            alipay_channel: ChannelId::Primary,
            settlement: None,
        }
    }

    fn report(status: TradeStatus, amount: &str) -> TradeReport {
        TradeReport {
            trade_no: "2026000000000000000000000001".into(),
            trade_status: status,
            total_amount: Amount::parse(amount).expect("amount").into(),
            paid_at: Some("2026-11-27 10:00:00".into()),
            buyer_id_masked: None,
            buyer_key: None,
            settlement: None,
        }
    }

    #[test]
    fn v1_cross_border_fields_are_recorded_as_written_and_only_when_readable() {
        let fields = CrossBorder {
            trans_currency: None,
            settle_currency: Some("USD".into()),
            settle_amount: Some("14.04".into()),
            settle_trans_rate: Some("0.140380".into()),
            pay_currency: Some("HKD".into()),
            pay_amount: Some("109.60".into()),
            trans_pay_rate: Some("1.096000".into()),
        };
        let facts = settlement(&fields).expect("facts");
        assert_eq!(facts.amount.with_code(), "14.04 USD");
        assert_eq!(facts.quote_pair.as_deref(), Some("CNY/USD"));
        assert_eq!(facts.quote_price.as_deref(), Some("0.140380"));
        assert_eq!(
            facts.buyer_paid.map(|m| m.with_code()).as_deref(),
            Some("109.60 HKD")
        );
        assert_eq!(facts.buyer_rate.as_deref(), Some("1.096000"));
        // No amount, no currency, an amount with more decimals than its currency has, a
        // currency we do not know: nothing is recorded.
        for (amount, currency) in [
            (None, Some("USD")),
            (Some("14.04"), None),
            (Some("14.045"), Some("USD")),
            (Some("1404"), Some("XXX")),
        ] {
            let odd = CrossBorder {
                settle_amount: amount.map(str::to_owned),
                settle_currency: currency.map(str::to_owned),
                ..fields.clone()
            };
            assert_eq!(settlement(&odd), None, "{amount:?} {currency:?}");
        }
        // An unreadable buyer's side is left out, the settlement kept.
        let no_buyer = CrossBorder {
            pay_currency: Some("156".into()),
            ..fields.clone()
        };
        assert_eq!(
            settlement(&no_buyer).map(|f| (f.amount.minor(), f.buyer_paid)),
            Some((1_404, None))
        );
        assert_eq!(settlement(&CrossBorder::default()), None);
    }

    #[test]
    fn a_paid_report_is_believed_only_with_the_orders_amount() {
        let created = order(OrderStatus::Created, "10.00");
        for status in [TradeStatus::TradeSuccess, TradeStatus::TradeFinished] {
            assert_eq!(
                effect_on(&created, &report(status, "10.00")),
                ReportEffect::MarkPaid
            );
            assert!(matches!(
                effect_on(&created, &report(status, "10.01")),
                ReportEffect::Mismatch(_)
            ));
        }
        let closed = order(OrderStatus::Closed, "10.00");
        assert_eq!(
            effect_on(&closed, &report(TradeStatus::TradeSuccess, "10.00")),
            ReportEffect::PaidAfterClose
        );
        assert!(matches!(
            effect_on(&closed, &report(TradeStatus::TradeSuccess, "9.00")),
            ReportEffect::Mismatch(_)
        ));
    }

    #[test]
    fn a_close_closes_only_what_still_waits() {
        let closing = report(TradeStatus::TradeClosed, "10.00");
        assert_eq!(
            effect_on(&order(OrderStatus::Created, "10.00"), &closing),
            ReportEffect::Close
        );
        for status in [OrderStatus::Paid, OrderStatus::Closed] {
            assert_eq!(
                effect_on(&order(status, "10.00"), &closing),
                ReportEffect::Nothing
            );
        }
        assert_eq!(
            effect_on(
                &order(OrderStatus::Created, "10.00"),
                &report(TradeStatus::WaitBuyerPay, "10.00")
            ),
            ReportEffect::Nothing
        );
    }

    #[test]
    fn the_automatic_refund_of_a_trade_always_has_the_same_number() {
        let payment = report(TradeStatus::TradeSuccess, "10.00")
            .payment_for(&order(OrderStatus::Closed, "10.00"));
        let first = auto_refund(&payment, ChannelId::Primary).expect("refund");
        let again = auto_refund(&payment, ChannelId::Primary).expect("refund");
        assert_eq!(first.out_request_no, again.out_request_no);
        assert!(first.out_request_no.as_str().starts_with("pac_"));
        assert_eq!(first.amount, payment.amount);
    }

    #[test]
    fn a_buyer_is_kept_masked_and_counted_by_a_digest() {
        let answer: QueryResult = serde_json::from_str(
            r#"{"trade_no":"t1","out_trade_no":"o_1","trade_status":"TRADE_SUCCESS","total_amount":"10.00","buyer_user_id":"2088102534368455"}"#,
        )
        .expect("answer");
        let report = TradeReport::from_query(&answer, TradeStatus::TradeSuccess);
        assert_eq!(report.buyer_id_masked.as_deref(), Some("2088********8455"));
        let key = report.buyer_key.expect("key");
        assert!(!key.contains("2088102534368455"));
        assert_eq!(key, crate::risk::digest("buyer", "2088102534368455"));
    }
}
