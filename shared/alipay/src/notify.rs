//! Asynchronous notifications: the raw form body in, decoded exactly once, the RSA2 signature
//! verified with Alipay's public key, a typed trade notification out.
//!
//! Checking that the notification is about *our* order (app id, seller, amount) needs the order
//! and belongs to the caller; this module only establishes that Alipay said it.

use std::collections::BTreeMap;

use percent_encoding::percent_decode;
use serde::Serialize;

use super::canonical::{Omit, signing_string};
use super::keys::{PublicKey, VerifyError};
use crate::ids::BuyerId;
use crate::money::Amount;

/// Real notifications are a few kilobytes; anything far larger is not from Alipay.
pub const MAX_NOTIFY_BODY_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("the body is larger than {MAX_NOTIFY_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body is empty")]
    Empty,
    #[error("the body is not a valid form: {0}")]
    MalformedForm(String),
    #[error("the form decodes to invalid UTF-8")]
    NotUtf8,
    #[error("the field \"{0}\" appears more than once")]
    DuplicateField(String),
    #[error("charset \"{0}\" is not supported; set the application's charset to utf-8")]
    UnsupportedCharset(String),
    #[error("sign_type \"{0}\" is refused; only RSA2 is accepted")]
    UnsupportedSignType(String),
    #[error("the notification carries no sign")]
    MissingSignature,
    #[error("the signature is invalid: {0} (is the Alipay public key the right one?)")]
    BadSignature(VerifyError),
    #[error("the field \"{0}\" is missing")]
    MissingField(&'static str),
    #[error("the field \"{field}\" {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
}

impl NotifyError {
    /// A fixed name for the error, safe to log: unlike the message, it never carries text
    /// from the (not yet verified) body.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyError::TooLarge => "too_large",
            NotifyError::Empty => "empty",
            NotifyError::MalformedForm(_) => "malformed_form",
            NotifyError::NotUtf8 => "not_utf8",
            NotifyError::DuplicateField(_) => "duplicate_field",
            NotifyError::UnsupportedCharset(_) => "unsupported_charset",
            NotifyError::UnsupportedSignType(_) => "unsupported_sign_type",
            NotifyError::MissingSignature => "missing_signature",
            NotifyError::BadSignature(_) => "bad_signature",
            NotifyError::MissingField(_) => "missing_field",
            NotifyError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// `trade_status` of a trade notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeStatus {
    WaitBuyerPay,
    TradeSuccess,
    TradeFinished,
    TradeClosed,
}

impl TradeStatus {
    pub fn parse(text: &str) -> Option<TradeStatus> {
        match text {
            "WAIT_BUYER_PAY" => Some(TradeStatus::WaitBuyerPay),
            "TRADE_SUCCESS" => Some(TradeStatus::TradeSuccess),
            "TRADE_FINISHED" => Some(TradeStatus::TradeFinished),
            "TRADE_CLOSED" => Some(TradeStatus::TradeClosed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
        }
    }

    /// Only these two mean the buyer paid.
    pub fn is_paid(self) -> bool {
        matches!(self, TradeStatus::TradeSuccess | TradeStatus::TradeFinished)
    }
}

/// A verified trade notification. Identifiers are kept as Alipay sent them: whether they name one
/// of our orders is the caller's question. The buyer id is kept masked only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeNotification {
    pub notify_id: String,
    pub notify_type: String,
    pub notify_time: String,
    pub app_id: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: TradeStatus,
    pub total_amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_amount: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    /// The buyer (`buyer_id`, or `buyer_open_id`): masked wherever it is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer: Option<BuyerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmt_payment: Option<String>,
    /// Present on refund notifications: the trade's refunded total so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_fee: Option<Amount>,
    /// Present on refund notifications: our `out_request_no`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_biz_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmt_refund: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gmt_close: Option<String>,
    /// The cross-border fields, when present (the query stays authoritative). Boxed: most
    /// notifications have none.
    #[serde(skip)]
    pub cross_border: Box<crate::cross_border::CrossBorder>,
}

/// Decodes an `application/x-www-form-urlencoded` body exactly once (`+` is a space, `%XX` a
/// byte), refusing invalid UTF-8 and repeated keys.
pub fn decode_form(body: &[u8]) -> Result<BTreeMap<String, String>, NotifyError> {
    if body.len() > MAX_NOTIFY_BODY_BYTES {
        return Err(NotifyError::TooLarge);
    }
    let mut fields = BTreeMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let key = decode_component(key)?;
        if key.is_empty() {
            return Err(NotifyError::MalformedForm("a field has no name".into()));
        }
        let value = decode_component(value)?;
        if fields.contains_key(&key) {
            return Err(NotifyError::DuplicateField(key));
        }
        fields.insert(key, value);
    }
    if fields.is_empty() {
        return Err(NotifyError::Empty);
    }
    Ok(fields)
}

fn decode_component(raw: &[u8]) -> Result<String, NotifyError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| NotifyError::NotUtf8)
}

/// Verifies a raw notification body and types it.
pub fn verify_notification(
    body: &[u8],
    alipay_key: &PublicKey,
) -> Result<TradeNotification, NotifyError> {
    let fields = decode_form(body)?;
    verify_fields(&fields, alipay_key)?;
    TradeNotification::from_fields(&fields)
}

/// A verified notification of either kind Alipay posts to the notify URL, told apart by
/// `notify_type` (docs/alipay/operations.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `trade_status_sync`: a trade's state (and a refund's, in its fields).
    Trade(TradeNotification),
    /// `dut_user_sign` / `dut_user_unsign`: an agreement signed or stopped.
    Agreement(crate::agreement::AgreementNotification),
}

/// Verifies a raw notification body and types it by its `notify_type`.
pub fn verify_any(body: &[u8], alipay_key: &PublicKey) -> Result<Notification, NotifyError> {
    let fields = decode_form(body)?;
    verify_fields(&fields, alipay_key)?;
    if crate::agreement::is_agreement_notification(&fields) {
        return crate::agreement::AgreementNotification::from_fields(&fields)
            .map(Notification::Agreement);
    }
    TradeNotification::from_fields(&fields).map(Notification::Trade)
}

/// Verifies already-decoded fields: charset, `sign_type=RSA2`, and the signature over every
/// field but `sign` and `sign_type` (unknown fields included: Alipay adds fields over time).
pub fn verify_fields(
    fields: &BTreeMap<String, String>,
    alipay_key: &PublicKey,
) -> Result<(), NotifyError> {
    if let Some(charset) = fields.get("charset")
        && !charset.eq_ignore_ascii_case("utf-8")
        && !charset.eq_ignore_ascii_case("utf8")
    {
        return Err(NotifyError::UnsupportedCharset(charset.clone()));
    }
    match fields.get("sign_type").map(String::as_str) {
        Some("RSA2") => {}
        Some(other) => return Err(NotifyError::UnsupportedSignType(other.to_owned())),
        None => return Err(NotifyError::UnsupportedSignType(String::new())),
    }
    let sign = fields
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(NotifyError::MissingSignature)?;
    let content = signing_string(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        Omit::SignAndSignType,
    );
    match alipay_key.verify(content.as_bytes(), sign) {
        Ok(()) => Ok(()),
        // Certificate mode: whether a notification carries `alipay_cert_sn`, and whether it is
        // signed, is not confirmed (docs/alipay/operations.md §3). Signed like any field is tried first (as
        // Java's rsaCertCheckV1 does); then without it. It only names a certificate.
        Err(first) if fields.contains_key("alipay_cert_sn") => {
            let without = signing_string(
                fields
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alipay_cert_sn")
                    .map(|(k, v)| (k.as_str(), v.as_str())),
                Omit::SignAndSignType,
            );
            alipay_key
                .verify(without.as_bytes(), sign)
                .map_err(|_| NotifyError::BadSignature(first))
        }
        Err(error) => Err(NotifyError::BadSignature(error)),
    }
}

impl TradeNotification {
    fn from_fields(fields: &BTreeMap<String, String>) -> Result<Self, NotifyError> {
        let required = |name: &'static str| {
            fields
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(NotifyError::MissingField(name))
        };
        let optional = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let amount = |name: &'static str, text: &str| {
            Amount::parse_allow_zero(text).map_err(|e| NotifyError::InvalidField {
                field: name,
                problem: e.to_string(),
            })
        };
        let optional_amount =
            |name: &'static str| optional(name).map(|text| amount(name, &text)).transpose();

        let status_text = required("trade_status")?;
        let trade_status =
            TradeStatus::parse(&status_text).ok_or_else(|| NotifyError::InvalidField {
                field: "trade_status",
                problem: format!("\"{status_text}\" is not a known trade status"),
            })?;
        Ok(TradeNotification {
            notify_id: required("notify_id")?,
            notify_type: required("notify_type")?,
            notify_time: required("notify_time")?,
            app_id: required("app_id")?,
            out_trade_no: required("out_trade_no")?,
            trade_no: required("trade_no")?,
            trade_status,
            total_amount: amount("total_amount", &required("total_amount")?)?,
            receipt_amount: optional_amount("receipt_amount")?,
            seller_id: optional("seller_id"),
            buyer: optional("buyer_id")
                .or_else(|| optional("buyer_open_id"))
                .map(BuyerId::new),
            gmt_payment: optional("gmt_payment"),
            refund_fee: optional_amount("refund_fee")?,
            out_biz_no: optional("out_biz_no"),
            gmt_refund: optional("gmt_refund"),
            gmt_close: optional("gmt_close"),
            cross_border: Box::new(crate::cross_border::CrossBorder::from_fields(optional)),
        })
    }
}
