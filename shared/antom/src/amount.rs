//! Antom's amounts: `{"currency": "USD", "value": "1099"}`, the value an integer string in the
//! currency's minor unit, at most 16 digits (docs/antom/protocol.md; Ant's `model/amount.py`,
//! `tools/amount_util.py`).

use money::{Currency, Money, MoneyError};
use serde::{Deserialize, Serialize};

/// An amount as Antom writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAmount {
    pub currency: String,
    pub value: String,
}

/// Why an amount on the wire is not money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireAmountError {
    #[error("currency {0:?}: {1}")]
    Currency(String, MoneyError),
    #[error("value must be 1 to 16 digits")]
    Value,
    #[error("{0}")]
    Money(MoneyError),
}

impl WireAmount {
    /// What we send. Antom refuses what its currency rules refuse (IDR values not ending in 00),
    /// so do we, before anything is sent.
    pub fn from_money(money: Money) -> Result<WireAmount, WireAmountError> {
        let multiple = money.currency().minor_multiple();
        if !money.minor().is_multiple_of(multiple) {
            return Err(WireAmountError::Money(MoneyError::NotAMultiple(
                multiple,
                money.currency().code(),
            )));
        }
        Ok(WireAmount {
            currency: money.currency().code().to_string(),
            value: money.minor().to_string(),
        })
    }

    /// What Antom sent. Leading zeros are read as the SDKs read them (`"0100"` is 100).
    pub fn to_money(&self) -> Result<Money, WireAmountError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|e| WireAmountError::Currency(self.currency.clone(), e))?;
        let value = &self.value;
        if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WireAmountError::Value);
        }
        let minor = value.parse::<u64>().map_err(|_| WireAmountError::Value)?;
        Money::from_minor(minor, currency).map_err(WireAmountError::Money)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(currency: &str, value: &str) -> WireAmount {
        WireAmount {
            currency: currency.into(),
            value: value.into(),
        }
    }

    #[test]
    fn minor_units_as_integer_strings() {
        let usd = Money::parse("10.99", Currency::USD).unwrap();
        assert_eq!(WireAmount::from_money(usd), Ok(wire("USD", "1099")));
        let jpy = Money::parse("1099", Currency::parse("JPY").unwrap()).unwrap();
        assert_eq!(WireAmount::from_money(jpy), Ok(wire("JPY", "1099")));
        assert_eq!(wire("JPY", "1099").to_money(), Ok(jpy));
        assert_eq!(wire("USD", "01099").to_money(), Ok(usd));
        let idr = Money::from_minor(150_050, Currency::parse("IDR").unwrap()).unwrap();
        assert!(WireAmount::from_money(idr).is_err());
        for bad in ["", "-1", "1.00", "1e3", "12345678901234567", " 1"] {
            assert_eq!(
                wire("USD", bad).to_money(),
                Err(WireAmountError::Value),
                "{bad:?}"
            );
        }
        assert!(matches!(
            wire("usd", "1").to_money(),
            Err(WireAmountError::Currency(..))
        ));
        assert!(matches!(
            wire("XAU", "1").to_money(),
            Err(WireAmountError::Currency(..))
        ));
    }
}
