//! The messages of the payment flow: pay, inquiry, cancel, refund, refund inquiry, and the
//! payment and refund notifications (field names from Ant's SDK models, `request/pay/*`,
//! `response/pay/*`, `request/notify/*`). Answers may leave any field out: every field we read is
//! optional and its absence decides nothing by itself.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::amount::WireAmount;

/// `result` of every answer and notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResultInfo {
    #[serde(default)]
    pub result_code: String,
    #[serde(default)]
    pub result_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_message: Option<String>,
}

/// What `resultStatus` proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `S`: done.
    Success,
    /// `F`: refused; nothing happened.
    Failure,
    /// `U`, or anything else (a status we do not know, none at all): ask again.
    Unknown,
}

impl ResultInfo {
    pub fn outcome(&self) -> Outcome {
        match self.result_status.as_str() {
            "S" => Outcome::Success,
            "F" => Outcome::Failure,
            _ => Outcome::Unknown,
        }
    }

    /// `PAYMENT_IN_PROCESS` comes with `U` (and is never a refusal, whatever the status).
    pub fn in_process(&self) -> bool {
        self.result_code == "PAYMENT_IN_PROCESS"
    }
}

/// A rate or price as Antom wrote it (a JSON number or string), kept as text: a recorded fact,
/// never computed with, so never through a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DecimalText(pub String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Box::deserialize(deserializer)?;
        let text = raw.get();
        let literal = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => inner,
            None => text,
        };
        let decimal = !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
        if !decimal {
            return Err(D::Error::custom("a rate must be a decimal number"));
        }
        Ok(DecimalText(literal.to_string()))
    }
}

/// `settlementQuote` / `paymentQuote`: the exchange rate Antom applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_currency_pair: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_price: Option<DecimalText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_expiry_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guaranteed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethod {
    /// `ALIPAY_CN`, `ALIPAY_HK`, `GCASH`, …
    pub payment_method_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Env {
    /// `WEB`, `WAP`, `APP`.
    pub terminal_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub reference_order_id: String,
    pub order_description: String,
    pub order_amount: WireAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementStrategy {
    pub settlement_currency: String,
}

/// `POST /ams/api/v1/payments/pay` (the cashier payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    /// `CASHIER_PAYMENT`.
    pub product_code: String,
    /// Ours, at most 64 characters: the same id that reached S or F gives the same result.
    pub payment_request_id: String,
    pub order: Order,
    pub payment_amount: WireAmount,
    pub payment_method: PaymentMethod,
    /// ISO 8601 with offset, e.g. `2026-12-05T10:30:00+08:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_expiry_time: Option<String>,
    pub payment_redirect_url: String,
    pub payment_notify_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_strategy: Option<SettlementStrategy>,
    pub env: Env,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeDetail {
    #[serde(default)]
    pub code_value: String,
    #[serde(default)]
    pub display_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCodeForm {
    #[serde(default)]
    pub code_details: Vec<CodeDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PayResponse {
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_create_time: Option<String>,
    /// The cashier page (web, wap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_url: Option<String>,
    /// The wallet app's scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applink_url: Option<String>,
    /// A QR code, where the wallet offers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_code_form: Option<OrderCodeForm>,
}

/// `POST /ams/api/v1/payments/inquiryPayment` and `/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRef {
    pub payment_request_id: String,
}

/// What `paymentStatus` says (inquiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Success,
    Fail,
    Processing,
    Cancelled,
    Pending,
    /// Absent or a status we do not know: nothing is decided on it.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InquiryPaymentResponse {
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_result_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

impl InquiryPaymentResponse {
    /// The payment's status, read only from an answer whose `result` is S (an F or U answer to
    /// the inquiry says nothing about the payment).
    pub fn status(&self) -> PaymentStatus {
        if self.result.outcome() != Outcome::Success {
            return PaymentStatus::Unknown;
        }
        match self.payment_status.as_deref() {
            Some("SUCCESS") => PaymentStatus::Success,
            Some("FAIL") => PaymentStatus::Fail,
            Some("PROCESSING") => PaymentStatus::Processing,
            Some("CANCELLED") => PaymentStatus::Cancelled,
            Some("PENDING") => PaymentStatus::Pending,
            _ => PaymentStatus::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CancelResponse {
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_time: Option<String>,
}

/// `POST /ams/api/v1/payments/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    /// Ours, at most 64 characters.
    pub refund_request_id: String,
    /// Antom's id of the payment.
    pub payment_id: String,
    pub refund_amount: WireAmount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_notify_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

/// `POST /ams/api/v1/payments/inquiryRefund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRef {
    pub refund_request_id: String,
}

/// What `refundStatus` says (inquiry, notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Success,
    Fail,
    Processing,
    Unknown,
}

fn refund_status(text: Option<&str>) -> RefundStatus {
    match text {
        Some("SUCCESS") => RefundStatus::Success,
        Some("FAIL") => RefundStatus::Fail,
        Some("PROCESSING") => RefundStatus::Processing,
        _ => RefundStatus::Unknown,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InquiryRefundResponse {
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

impl InquiryRefundResponse {
    pub fn status(&self) -> RefundStatus {
        if self.result.outcome() != Outcome::Success {
            return RefundStatus::Unknown;
        }
        refund_status(self.refund_status.as_deref())
    }
}

/// `notifyPayment`: `notifyType` `PAYMENT_RESULT` (its `result` S = paid, F = failed) or
/// `PAYMENT_PENDING` (nothing decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PaymentNotification {
    pub notify_type: String,
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default)]
    pub payment_request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_create_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

/// `notifyRefund`: `notifyType` `REFUND_RESULT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefundNotification {
    pub notify_type: String,
    #[serde(default)]
    pub result: ResultInfo,
    #[serde(default)]
    pub refund_request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_settlement_amount: Option<WireAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_quote: Option<Quote>,
}

impl RefundNotification {
    pub fn status(&self) -> RefundStatus {
        refund_status(self.refund_status.as_deref())
    }
}

/// A verified notification, by `notifyType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Payment(PaymentNotification),
    Refund(RefundNotification),
    /// A kind we do not act on (captures, disputes, …): acknowledged, recorded, nothing decided.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("the notification is not JSON with a notifyType: {0}")]
    Malformed(String),
}

/// Reads a notification's body (after its signature was verified).
pub fn parse_notification(body: &[u8]) -> Result<Notification, NotificationError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        notify_type: String,
    }
    let kind: Kind =
        serde_json::from_slice(body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
    let malformed = |e: serde_json::Error| NotificationError::Malformed(e.to_string());
    match kind.notify_type.as_str() {
        "PAYMENT_RESULT" | "PAYMENT_PENDING" => serde_json::from_slice(body)
            .map(Notification::Payment)
            .map_err(malformed),
        "REFUND_RESULT" => serde_json::from_slice(body)
            .map(Notification::Refund)
            .map_err(malformed),
        other => Ok(Notification::Other(other.to_string())),
    }
}

/// The acknowledgement Antom waits for: exactly this body, unsigned.
pub const ACKNOWLEDGEMENT: &str =
    r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_fail_safe() {
        let result = |status: &str| ResultInfo {
            result_status: status.into(),
            ..ResultInfo::default()
        };
        assert_eq!(result("S").outcome(), Outcome::Success);
        assert_eq!(result("F").outcome(), Outcome::Failure);
        assert_eq!(result("U").outcome(), Outcome::Unknown);
        assert_eq!(result("").outcome(), Outcome::Unknown);
        assert_eq!(result("s").outcome(), Outcome::Unknown);
    }

    #[test]
    fn an_inquiry_decides_only_on_an_s_answer() {
        let answer: InquiryPaymentResponse = serde_json::from_str(
            r#"{"result":{"resultCode":"SUCCESS","resultStatus":"S"},"paymentStatus":"SUCCESS",
                "paymentAmount":{"currency":"USD","value":"1099"},
                "settlementQuote":{"quoteId":"Q1","quoteCurrencyPair":"USD/CNY","quotePrice":7.123456789012345678}}"#,
        )
        .unwrap();
        assert_eq!(answer.status(), PaymentStatus::Success);
        let quote = answer.settlement_quote.unwrap();
        assert_eq!(
            quote.quote_price,
            Some(DecimalText("7.123456789012345678".into()))
        );
        let unknown: InquiryPaymentResponse = serde_json::from_str(
            r#"{"result":{"resultCode":"UNKNOWN_EXCEPTION","resultStatus":"U"},"paymentStatus":"SUCCESS"}"#,
        )
        .unwrap();
        assert_eq!(unknown.status(), PaymentStatus::Unknown);
        let missing: InquiryPaymentResponse =
            serde_json::from_str(r#"{"result":{"resultStatus":"S"}}"#).unwrap();
        assert_eq!(missing.status(), PaymentStatus::Unknown);
    }

    #[test]
    fn notifications_by_type() {
        let paid = br#"{"notifyType":"PAYMENT_RESULT","result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"},"paymentRequestId":"o1","paymentId":"p1","paymentAmount":{"currency":"USD","value":"1099"},"settlementQuote":{"quotePrice":"7.1"}}"#;
        let Ok(Notification::Payment(n)) = parse_notification(paid) else {
            panic!("not a payment notification")
        };
        assert_eq!(n.payment_request_id, "o1");
        assert_eq!(
            n.settlement_quote.and_then(|q| q.quote_price),
            Some(DecimalText("7.1".into()))
        );
        let refund =
            br#"{"notifyType":"REFUND_RESULT","refundRequestId":"r1","refundStatus":"SUCCESS"}"#;
        let Ok(Notification::Refund(r)) = parse_notification(refund) else {
            panic!("not a refund notification")
        };
        assert_eq!(r.status(), RefundStatus::Success);
        assert_eq!(
            parse_notification(br#"{"notifyType":"CAPTURE_RESULT"}"#),
            Ok(Notification::Other("CAPTURE_RESULT".into()))
        );
        assert!(parse_notification(b"{}").is_err());
        assert!(parse_notification(br#"{"notifyType":"REFUND_RESULT","refundStatus":7}"#).is_err());
        assert!(
            serde_json::from_str::<Quote>(r#"{"quotePrice":"seven"}"#).is_err(),
            "a rate that is not a number is refused"
        );
    }
}
