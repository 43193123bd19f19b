//! Antom payments and refunds as decisions (docs/antom/protocol.md): given what we know and what
//! Antom answered, what happens next. They answer with the same `TradeNext` and `RefundNext` as
//! Alipay v1's decisions, so the request handlers and the sweeper drive both protocols alike.
//!
//! `None` for an answer is no trustworthy answer: none in time, an HTTP error, or one refused by
//! the fail-closed verification (unsigned included). `resultStatus` `S` is done, `F` refused
//! (the same id that reached S or F answers the same again), anything else unknown.

use antom::message::{
    InquiryPaymentResponse, InquiryRefundResponse, Outcome, PaymentStatus, Quote, RefundStatus,
    ResultInfo,
};
use antom::{WireAmount, unix_ms};

use crate::lifecycle::{RefundNext, SinceSend, TradeNext};
use crate::states::{Money, RefundOutcome, SettlementFacts};

/// `resultCode` of an unknown `paymentRequestId` / `refundRequestId`.
pub const NOT_FOUND: &str = "ORDER_NOT_EXIST";

/// What to do after `payments/pay` (the cashier payment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayNext {
    /// The buyer goes to Antom's cashier (`U` `PAYMENT_IN_PROCESS` with its URL).
    Cashier,
    /// Antom says it is paid already: ask (`inquiryPayment`) and apply what it says.
    Inquire,
    /// Refused for good (`F`): the payment cannot be made under this id; close the order.
    Refused { code: String, message: String },
    /// Nothing known (no answer, `U` otherwise): the create is answered "try again"; the same
    /// `paymentRequestId` is sent again then.
    Unknown,
}

pub fn after_pay(result: Option<&ResultInfo>, has_cashier_url: bool) -> PayNext {
    let Some(result) = result else {
        return PayNext::Unknown;
    };
    match result.outcome() {
        Outcome::Success => PayNext::Inquire,
        Outcome::Failure => PayNext::Refused {
            code: result.result_code.clone(),
            message: result.result_message.clone().unwrap_or_default(),
        },
        Outcome::Unknown if result.in_process() && has_cashier_url => PayNext::Cashier,
        Outcome::Unknown => PayNext::Unknown,
    }
}

/// After `inquiryPayment` about an order we want to end (or to learn about).
pub fn after_inquiry(answer: Option<&InquiryPaymentResponse>) -> TradeNext {
    let Some(answer) = answer else {
        return TradeNext::Wait;
    };
    match (answer.result.outcome(), answer.status()) {
        (Outcome::Success, PaymentStatus::Success) => TradeNext::ApplyPaid,
        (Outcome::Success, PaymentStatus::Fail | PaymentStatus::Cancelled) => {
            TradeNext::CloseLocally
        }
        (Outcome::Success, PaymentStatus::Processing | PaymentStatus::Pending) => {
            TradeNext::CloseAtAlipay
        }
        // Antom never received the payment (the pay call was lost before it).
        (Outcome::Failure, _) if answer.result.result_code == NOT_FOUND => TradeNext::CloseLocally,
        _ => TradeNext::Wait,
    }
}

/// After `payments/cancel`.
pub fn after_cancel(result: Option<&ResultInfo>) -> TradeNext {
    let Some(result) = result else {
        return TradeNext::Wait;
    };
    match (result.outcome(), result.result_code.as_str()) {
        (Outcome::Success, _) => TradeNext::CloseLocally,
        (Outcome::Failure, NOT_FOUND) => TradeNext::CloseLocally,
        // It may have just been paid: ask.
        (Outcome::Failure, _) => TradeNext::Query,
        (Outcome::Unknown, _) => TradeNext::Wait,
    }
}

/// After `payments/refund`. `first_send`: no earlier attempt of this `refundRequestId` can
/// have reached Antom, so a refusal is about the only request there is.
pub fn after_refund(first_send: bool, result: Option<&ResultInfo>) -> RefundNext {
    let Some(result) = result else {
        return RefundNext::Wait;
    };
    let failed = || RefundOutcome::Failed {
        code: result.result_code.clone(),
        message: result.result_message.clone().unwrap_or_default(),
    };
    match result.outcome() {
        Outcome::Success => RefundNext::Settle(RefundOutcome::Succeeded),
        Outcome::Failure if first_send => RefundNext::Settle(failed()),
        // A refusal of a resend: the inquiry decides, failed only if it agrees.
        Outcome::Failure => RefundNext::QueryNow {
            if_absent: Some(failed()),
        },
        Outcome::Unknown => RefundNext::Wait,
    }
}

/// After `inquiryRefund`. `ours`: the refund's id and amount.
pub fn after_refund_inquiry(
    ours: (&str, Money),
    answer: Option<&InquiryRefundResponse>,
    if_absent: Option<RefundOutcome>,
    since: SinceSend,
) -> RefundNext {
    let Some(answer) = answer else {
        return RefundNext::Wait;
    };
    let (our_id, our_amount) = ours;
    match answer.result.outcome() {
        Outcome::Success => {}
        Outcome::Failure if answer.result.result_code == NOT_FOUND => {
            // Never received: the identical request is sent again once an inquiry can mean
            // it, unless a refusal of the identical request already agrees.
            return match if_absent {
                Some(failure) => RefundNext::Settle(failure),
                None if since.query_is_conclusive() => RefundNext::Resend,
                None => RefundNext::Wait,
            };
        }
        _ => return RefundNext::Wait,
    }
    if let Some(id) = answer.refund_request_id.as_deref()
        && id != our_id
    {
        return RefundNext::Contradiction(format!(
            "the refund inquiry for {our_id} answered about {id}"
        ));
    }
    if let Some(amount) = &answer.refund_amount
        && amount.to_money().ok() != Some(our_amount)
    {
        return RefundNext::Contradiction(format!(
            "Antom refunded {} {} for {our_id}; we asked for {}",
            amount.value,
            amount.currency,
            our_amount.with_code()
        ));
    }
    match answer.status() {
        RefundStatus::Success => RefundNext::Settle(RefundOutcome::Succeeded),
        RefundStatus::Fail => RefundNext::Settle(RefundOutcome::Failed {
            code: "REFUND_FAIL".into(),
            message: "Antom says the refund failed".into(),
        }),
        RefundStatus::Processing | RefundStatus::Unknown => RefundNext::Wait,
    }
}

/// The settlement facts an answer or a notification reported, when it reported an amount.
pub fn settlement(gross: Option<&WireAmount>, quote: Option<&Quote>) -> Option<SettlementFacts> {
    let amount = gross?.to_money().ok()?;
    let quote = quote.cloned().unwrap_or_default();
    Some(SettlementFacts {
        amount,
        quote_id: quote.quote_id,
        quote_pair: quote.quote_currency_pair,
        quote_price: quote.quote_price.map(|p| p.0),
        quote_start: quote.quote_start_time,
        quote_expiry: quote.quote_expiry_time,
        buyer_paid: None,
        buyer_rate: None,
    })
}

/// An Antom time as China time, `yyyy-MM-dd HH:mm:ss` (the day it counts on).
pub fn china_time(text: &str) -> Option<String> {
    let ms = unix_ms(text)?;
    Some(alipay::china_time::china_timestamp(ms.div_euclid(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::Currency;

    fn result(status: &str, code: &str) -> ResultInfo {
        ResultInfo {
            result_code: code.into(),
            result_status: status.into(),
            result_message: None,
        }
    }

    fn inquiry(status: &str, code: &str, payment: Option<&str>) -> InquiryPaymentResponse {
        InquiryPaymentResponse {
            result: result(status, code),
            payment_status: payment.map(str::to_owned),
            ..InquiryPaymentResponse::default()
        }
    }

    #[test]
    fn a_cashier_payment_goes_to_the_cashier_only_with_its_url() {
        let in_process = result("U", "PAYMENT_IN_PROCESS");
        assert_eq!(after_pay(Some(&in_process), true), PayNext::Cashier);
        assert_eq!(after_pay(Some(&in_process), false), PayNext::Unknown);
        assert_eq!(
            after_pay(Some(&result("U", "UNKNOWN_EXCEPTION")), true),
            PayNext::Unknown
        );
        assert_eq!(after_pay(None, true), PayNext::Unknown);
        assert_eq!(
            after_pay(Some(&result("S", "SUCCESS")), false),
            PayNext::Inquire
        );
        assert!(matches!(
            after_pay(Some(&result("F", "PARAM_ILLEGAL")), false),
            PayNext::Refused { .. }
        ));
    }

    #[test]
    fn an_inquiry_ends_a_payment_only_on_a_status() {
        let ok = |status| inquiry("S", "SUCCESS", Some(status));
        assert_eq!(after_inquiry(Some(&ok("SUCCESS"))), TradeNext::ApplyPaid);
        assert_eq!(after_inquiry(Some(&ok("FAIL"))), TradeNext::CloseLocally);
        assert_eq!(
            after_inquiry(Some(&ok("CANCELLED"))),
            TradeNext::CloseLocally
        );
        assert_eq!(
            after_inquiry(Some(&ok("PROCESSING"))),
            TradeNext::CloseAtAlipay
        );
        assert_eq!(after_inquiry(Some(&ok("SOMETHING_NEW"))), TradeNext::Wait);
        assert_eq!(
            after_inquiry(Some(&inquiry("S", "SUCCESS", None))),
            TradeNext::Wait
        );
        // The status of an answer that is not S says nothing.
        assert_eq!(
            after_inquiry(Some(&inquiry("U", "UNKNOWN_EXCEPTION", Some("SUCCESS")))),
            TradeNext::Wait
        );
        assert_eq!(
            after_inquiry(Some(&inquiry("F", NOT_FOUND, None))),
            TradeNext::CloseLocally
        );
        assert_eq!(
            after_inquiry(Some(&inquiry("F", "ACCESS_DENIED", None))),
            TradeNext::Wait
        );
        assert_eq!(after_inquiry(None), TradeNext::Wait);
    }

    #[test]
    fn a_cancel_refused_asks_first() {
        assert_eq!(
            after_cancel(Some(&result("S", "SUCCESS"))),
            TradeNext::CloseLocally
        );
        assert_eq!(
            after_cancel(Some(&result("F", NOT_FOUND))),
            TradeNext::CloseLocally
        );
        assert_eq!(
            after_cancel(Some(&result("F", "ORDER_STATUS_INVALID"))),
            TradeNext::Query
        );
        assert_eq!(
            after_cancel(Some(&result("U", "UNKNOWN_EXCEPTION"))),
            TradeNext::Wait
        );
        assert_eq!(after_cancel(None), TradeNext::Wait);
    }

    #[test]
    fn a_refund_fails_on_the_first_sends_refusal_or_on_an_inquiry_that_agrees() {
        assert_eq!(
            after_refund(false, Some(&result("S", "SUCCESS"))),
            RefundNext::Settle(RefundOutcome::Succeeded)
        );
        let refused = result("F", "REFUND_AMOUNT_EXCEED");
        assert!(matches!(
            after_refund(true, Some(&refused)),
            RefundNext::Settle(RefundOutcome::Failed { code, .. }) if code == "REFUND_AMOUNT_EXCEED"
        ));
        assert!(matches!(
            after_refund(false, Some(&refused)),
            RefundNext::QueryNow { if_absent: Some(_) }
        ));
        assert_eq!(
            after_refund(true, Some(&result("U", "REFUND_IN_PROCESS"))),
            RefundNext::Wait
        );
        assert_eq!(after_refund(true, None), RefundNext::Wait);
    }

    #[test]
    fn a_refund_inquiry_settles_on_status_and_checks_the_amount() {
        let ours = ("r1", Money::parse("5.00", Currency::USD).expect("money"));
        let late = SinceSend {
            elapsed_ms: 20_000,
            query_delay_ms: 10_000,
        };
        let soon = SinceSend {
            elapsed_ms: 1_000,
            query_delay_ms: 10_000,
        };
        let answer = |status: &str, value: &str| InquiryRefundResponse {
            result: result("S", "SUCCESS"),
            refund_request_id: Some("r1".into()),
            refund_status: Some(status.into()),
            refund_amount: Some(WireAmount {
                currency: "USD".into(),
                value: value.into(),
            }),
            ..InquiryRefundResponse::default()
        };
        assert_eq!(
            after_refund_inquiry(ours, Some(&answer("SUCCESS", "500")), None, late),
            RefundNext::Settle(RefundOutcome::Succeeded)
        );
        assert!(matches!(
            after_refund_inquiry(ours, Some(&answer("FAIL", "500")), None, late),
            RefundNext::Settle(RefundOutcome::Failed { .. })
        ));
        assert_eq!(
            after_refund_inquiry(ours, Some(&answer("PROCESSING", "500")), None, late),
            RefundNext::Wait
        );
        assert!(matches!(
            after_refund_inquiry(ours, Some(&answer("SUCCESS", "501")), None, late),
            RefundNext::Contradiction(_)
        ));
        let absent = InquiryRefundResponse {
            result: result("F", NOT_FOUND),
            ..InquiryRefundResponse::default()
        };
        assert_eq!(
            after_refund_inquiry(ours, Some(&absent), None, late),
            RefundNext::Resend
        );
        assert_eq!(
            after_refund_inquiry(ours, Some(&absent), None, soon),
            RefundNext::Wait
        );
        let failure = RefundOutcome::Failed {
            code: "PROCESS_FAIL".into(),
            message: String::new(),
        };
        assert_eq!(
            after_refund_inquiry(ours, Some(&absent), Some(failure.clone()), soon),
            RefundNext::Settle(failure)
        );
        assert_eq!(
            after_refund_inquiry(ours, None, None, late),
            RefundNext::Wait
        );
    }

    #[test]
    fn settlement_facts_are_recorded_as_reported() {
        let gross = WireAmount {
            currency: "CNY".into(),
            value: "7829".into(),
        };
        let quote: Quote = serde_json::from_str(
            r#"{"quoteId":"Q1","quoteCurrencyPair":"USD/CNY","quotePrice":7.123456789012}"#,
        )
        .expect("quote");
        let facts = settlement(Some(&gross), Some(&quote)).expect("facts");
        assert_eq!(facts.amount.with_code(), "78.29 CNY");
        assert_eq!(facts.quote_price.as_deref(), Some("7.123456789012"));
        assert_eq!(settlement(None, Some(&quote)), None);
        assert_eq!(
            china_time("2025-12-05T02:00:00Z").as_deref(),
            Some("2025-12-05 10:00:00")
        );
    }
}
