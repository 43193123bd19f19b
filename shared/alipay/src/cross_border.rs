//! The cross-border fields of a trade, as Alipay writes them in `alipay.trade.query` and
//! `alipay.trade.pay` answers and (per the notify documentation's sample) in notifications:
//! the currency `total_amount` is priced in, the settlement currency and amount with its rate,
//! and what the buyer paid in its own currency with that rate (`ALIPAY-OPS.md` §5). Present
//! only for merchants contracted for them; kept as written, never computed.

use serde::{Deserialize, Deserializer};

/// The fields, each as Alipay wrote it (a JSON number is kept as its text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CrossBorder {
    #[serde(default, deserialize_with = "text")]
    pub trans_currency: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub settle_currency: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub settle_amount: Option<String>,
    /// The rate from `trans_currency` to `settle_currency`.
    #[serde(default, deserialize_with = "text")]
    pub settle_trans_rate: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub pay_currency: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub pay_amount: Option<String>,
    /// The rate from `trans_currency` to `pay_currency`.
    #[serde(default, deserialize_with = "text")]
    pub trans_pay_rate: Option<String>,
}

impl CrossBorder {
    /// From a notification's fields (`name` → decoded value); empty values are absent.
    pub fn from_fields(field: impl Fn(&str) -> Option<String>) -> CrossBorder {
        let get = |name: &str| field(name).filter(|v| !v.trim().is_empty());
        CrossBorder {
            trans_currency: get("trans_currency"),
            settle_currency: get("settle_currency"),
            settle_amount: get("settle_amount"),
            settle_trans_rate: get("settle_trans_rate"),
            pay_currency: get("pay_currency"),
            pay_amount: get("pay_amount"),
            trans_pay_rate: get("trans_pay_rate"),
        }
    }
}

/// A string, or a number kept as the text serde_json read (an absent, null or empty value is
/// `None`; anything else is not a cross-border field and is dropped rather than failing the
/// whole answer).
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_are_read_as_written_and_their_absence_is_nothing() {
        let answer: CrossBorder = serde_json::from_str(
            r#"{"trans_currency":"CNY","settle_currency":"USD","settle_amount":"14.04",
                "settle_trans_rate":"0.140380","pay_currency":"CNY","pay_amount":"100.00",
                "trans_pay_rate":1}"#,
        )
        .expect("parses");
        assert_eq!(answer.settle_currency.as_deref(), Some("USD"));
        assert_eq!(answer.settle_amount.as_deref(), Some("14.04"));
        assert_eq!(answer.settle_trans_rate.as_deref(), Some("0.140380"));
        assert_eq!(answer.trans_pay_rate.as_deref(), Some("1"));
        let none: CrossBorder =
            serde_json::from_str(r#"{"settle_amount":"","pay_amount":null}"#).expect("parses");
        assert_eq!(none, CrossBorder::default());
        let odd: CrossBorder =
            serde_json::from_str(r#"{"settle_amount":{"x":1}}"#).expect("an odd field is dropped");
        assert_eq!(odd, CrossBorder::default());
    }
}
