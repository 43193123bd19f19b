//! Identifiers and texts with Alipay's limits (docs/alipay/openapi-v1.md, "Field limits"): each type can only be
//! built valid, so code past the edge never checks them again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a field value was refused; the message completes "<field> ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub &'static str);

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: impl Into<String>) -> Result<Self, FieldError> {
                let text = text.into();
                let check: fn(&str) -> Result<(), FieldError> = $check;
                check(&text)?;
                Ok(Self(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn merchant_id(text: &str) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError("is empty"));
    }
    if text.len() > 64 {
        return Err(FieldError("is longer than 64 characters"));
    }
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(FieldError(
            "may contain only letters, digits and underscore",
        ));
    }
    Ok(())
}

checked_string!(
    /// The merchant's order number: 1 to 64 letters, digits or underscores, unique per merchant.
    OutTradeNo,
    merchant_id
);

checked_string!(
    /// The merchant's number for one refund of an order; reused unchanged when a refund is retried.
    OutRequestNo,
    merchant_id
);

checked_string!(
    /// The order title shown to the buyer: 1 to 256 characters, without `/`, `=`, `&` or control
    /// characters.
    Subject,
    |text| {
        if text.trim().is_empty() {
            return Err(FieldError("is empty"));
        }
        if text.chars().count() > 256 {
            return Err(FieldError("is longer than 256 characters"));
        }
        if text.contains(['/', '=', '&']) {
            return Err(FieldError("may not contain '/', '=' or '&'"));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError("may not contain control characters"));
        }
        Ok(())
    }
);

checked_string!(
    /// An Alipay application id (`app_id`): the digits shown on the open platform.
    AppId,
    |text| {
        if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError("must be the application's digits, like 2021000123456789"));
        }
        Ok(())
    }
);

checked_string!(
    /// The merchant's Alipay account id (`seller_id`, the partner id): 16 digits starting `2088`.
    SellerId,
    |text| {
        if text.len() != 16 || !text.starts_with("2088") || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError("must be 16 digits starting with 2088"));
        }
        Ok(())
    }
);

checked_string!(
    /// Alipay's trade number (`trade_no`), as Alipay gives it.
    TradeNo,
    |text| {
        if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError("must be 1 to 64 letters or digits"));
        }
        Ok(())
    }
);

checked_string!(
    /// The merchant's number for an agreement (`external_agreement_no`): 1 to 32 letters or
    /// digits (docs/alipay/operations.md §4).
    ExternalAgreementNo,
    |text| {
        if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError("must be 1 to 32 letters or digits"));
        }
        Ok(())
    }
);

checked_string!(
    /// Alipay's number for a signed agreement (`agreement_no`), as Alipay gives it.
    AgreementNo,
    |text| {
        if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError("must be 1 to 64 letters or digits"));
        }
        Ok(())
    }
);

/// The buyer as Alipay names them (`buyer_id`, `2088…`, or `buyer_open_id`): personal data. It
/// prints and serializes masked; only [`BuyerId::expose`] gives it whole, to digest it.
#[derive(Clone, PartialEq, Eq)]
pub struct BuyerId(String);

impl BuyerId {
    pub fn new(id: impl Into<String>) -> BuyerId {
        BuyerId(id.into())
    }

    /// The first four and last four characters (what is stored and shown).
    pub fn masked(&self) -> String {
        mask_buyer_id(&self.0)
    }

    /// The whole id: for a digest, never for storage or logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BuyerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuyerId({})", self.masked())
    }
}

impl Serialize for BuyerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// Masks a buyer id for storage and logs: the first four and last four characters survive.
pub fn mask_buyer_id(buyer_id: &str) -> String {
    let chars: Vec<char> = buyer_id.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_no_limits() {
        assert!(OutTradeNo::parse("order_2026_0001").is_ok());
        assert!(OutTradeNo::parse("a".repeat(64)).is_ok());
        assert!(OutTradeNo::parse("a".repeat(65)).is_err());
        assert!(OutTradeNo::parse("").is_err());
        for bad in ["a-b", "a b", "订单1", "a/b", "a&b=c", "a\n"] {
            assert!(OutTradeNo::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subject_limits() {
        assert!(Subject::parse("语雀空间 500人规模").is_ok());
        assert!(Subject::parse("字".repeat(256)).is_ok());
        assert!(Subject::parse("字".repeat(257)).is_err());
        for bad in ["", "   ", "a/b", "a=b", "a&b", "tab\there"] {
            assert!(Subject::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_and_seller_ids() {
        assert!(AppId::parse("2019073166072302").is_ok());
        assert!(AppId::parse("20190731660723a2").is_err());
        assert!(SellerId::parse("2088531891668739").is_ok());
        assert!(SellerId::parse("1088531891668739").is_err());
        assert!(SellerId::parse("208853189166873").is_err());
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<OutTradeNo>("\"ok_1\"").is_ok());
        assert!(serde_json::from_str::<OutTradeNo>("\"not ok\"").is_err());
    }

    #[test]
    fn buyer_ids_are_masked() {
        assert_eq!(mask_buyer_id("2088102534368455"), "2088********8455");
        assert_eq!(mask_buyer_id("short"), "*****");
        let buyer = BuyerId::new("2088102534368455");
        assert_eq!(format!("{buyer:?}"), "BuyerId(2088********8455)");
        assert_eq!(
            serde_json::to_string(&buyer).ok().as_deref(),
            Some("\"2088********8455\"")
        );
        assert_eq!(buyer.expose(), "2088102534368455");
    }
}
