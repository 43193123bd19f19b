//! Money as integer fen (分), parsed from and formatted to Alipay's two-decimal strings exactly.
//!
//! There is no float anywhere on this path: `"299.00"` is read digit by digit into `29900`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount Alipay accepts for `total_amount` and `refund_amount`: 100000000.00 yuan.
pub const MAX_FEN: u64 = 100_000_000 * 100;

/// An amount of CNY in fen. Payment and refund amounts are at least one fen and at most
/// [`MAX_FEN`]; amounts that Alipay reports (a refunded total, a points amount) may be zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u64);

/// Why a string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is empty")]
    Empty,
    #[error("must be digits with at most two decimals, like \"299.00\"")]
    Malformed,
    #[error("has more than two decimals")]
    TooManyDecimals,
    #[error("must be at least 0.01")]
    Zero,
    #[error("must be at most 100000000.00")]
    TooLarge,
    #[error("must be in CNY: Alipay v1 prices web, wap, app and QR payments in yuan")]
    NotCny,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// A payment or refund amount: 0.01 to 100000000.00.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        match Self::parse_allow_zero(text)? {
            Amount(0) => Err(AmountError::Zero),
            amount => Ok(amount),
        }
    }

    /// An amount reported by Alipay that may legitimately be `0.00`.
    pub fn parse_allow_zero(text: &str) -> Result<Amount, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        let (yuan, decimals) = match text.split_once('.') {
            Some((yuan, decimals)) => (yuan, Some(decimals)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // One leading zero only ("0.50", not "00.50"): ambiguity in money strings is a bug magnet.
        if !all_digits(yuan) || (yuan.len() > 1 && yuan.starts_with('0')) {
            return Err(AmountError::Malformed);
        }
        let fen_part = match decimals {
            None => 0,
            Some(d) if !all_digits(d) => return Err(AmountError::Malformed),
            Some(d) if d.len() > 2 => return Err(AmountError::TooManyDecimals),
            Some(d) => {
                let digits = d.as_bytes();
                let tens = u64::from(digits[0] - b'0') * 10;
                let ones = digits.get(1).map_or(0, |b| u64::from(b - b'0'));
                tens + ones
            }
        };
        // Eleven digits of yuan already exceed the maximum; refusing early keeps u64 safe.
        if yuan.len() > 10 {
            return Err(AmountError::TooLarge);
        }
        let yuan: u64 = yuan.parse().map_err(|_| AmountError::Malformed)?;
        Self::from_fen_allow_zero(yuan * 100 + fen_part)
    }

    /// A payment or refund amount from fen: 1 to [`MAX_FEN`].
    pub fn from_fen(fen: u64) -> Result<Amount, AmountError> {
        match fen {
            0 => Err(AmountError::Zero),
            _ => Self::from_fen_allow_zero(fen),
        }
    }

    pub fn from_fen_allow_zero(fen: u64) -> Result<Amount, AmountError> {
        if fen > MAX_FEN {
            return Err(AmountError::TooLarge);
        }
        Ok(Amount(fen))
    }

    pub fn fen(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_add(other.0)
            .filter(|&fen| fen <= MAX_FEN)
            .map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

/// Alipay v1 prices page, wap, app and QR payments in CNY only: a [`money::Money`] crosses into
/// v1 only in CNY.
impl TryFrom<money::Money> for Amount {
    type Error = AmountError;
    fn try_from(money: money::Money) -> Result<Amount, AmountError> {
        if money.currency() != money::Currency::CNY {
            return Err(AmountError::NotCny);
        }
        Amount::from_fen_allow_zero(money.minor())
    }
}

impl From<Amount> for money::Money {
    fn from(amount: Amount) -> money::Money {
        // At most MAX_FEN, far below money's sixteen digits.
        money::Money::from_minor(amount.0, money::Currency::CNY)
            .unwrap_or_else(|_| money::Money::zero(money::Currency::CNY))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Deserializes only from a string: a JSON number would already have been through a float.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse_allow_zero(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crosses_to_and_from_money_in_cny_only() {
        let yuan = money::Money::parse("299.00", money::Currency::CNY).unwrap();
        assert_eq!(Amount::try_from(yuan).map(Amount::fen), Ok(29_900));
        assert_eq!(money::Money::from(Amount(29_900)), yuan);
        let dollars = money::Money::parse("299.00", money::Currency::USD).unwrap();
        assert_eq!(Amount::try_from(dollars), Err(AmountError::NotCny));
        let too_much = money::Money::from_minor(MAX_FEN + 1, money::Currency::CNY).unwrap();
        assert_eq!(Amount::try_from(too_much), Err(AmountError::TooLarge));
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(Amount::parse("299.00").map(Amount::fen), Ok(29_900));
        assert_eq!(Amount::parse("0.01").map(Amount::fen), Ok(1));
        assert_eq!(Amount::parse("0.1").map(Amount::fen), Ok(10));
        assert_eq!(Amount::parse("12").map(Amount::fen), Ok(1_200));
        assert_eq!(Amount::parse("100000000.00").map(Amount::fen), Ok(MAX_FEN));
        // The classic float trap: 0.1 + 0.2 style values stay exact.
        assert_eq!(Amount::parse("19.99").map(Amount::fen), Ok(1_999));
        assert_eq!(Amount::parse("0.29").map(Amount::fen), Ok(29));
    }

    #[test]
    fn rejects_what_alipay_rejects() {
        use AmountError::*;
        let cases = [
            ("", Empty),
            ("0", Zero),
            ("0.00", Zero),
            ("0.001", TooManyDecimals),
            ("1.234", TooManyDecimals),
            ("100000000.01", TooLarge),
            ("99999999999", TooLarge),
            ("18446744073709551616", TooLarge),
            ("-1.00", Malformed),
            ("+1.00", Malformed),
            ("1e2", Malformed),
            (" 1.00", Malformed),
            ("1.00 ", Malformed),
            ("1.", Malformed),
            (".5", Malformed),
            ("01.00", Malformed),
            ("1,00", Malformed),
            ("1.0.0", Malformed),
            ("NaN", Malformed),
            ("１.00", Malformed),
        ];
        for (text, want) in cases {
            assert_eq!(Amount::parse(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn zero_only_where_allowed() {
        assert_eq!(Amount::parse_allow_zero("0.00"), Ok(Amount::ZERO));
        assert_eq!(Amount::from_fen(0), Err(AmountError::Zero));
        assert_eq!(Amount::from_fen(MAX_FEN + 1), Err(AmountError::TooLarge));
    }

    #[test]
    fn formats_two_decimals() {
        assert_eq!(Amount(1).to_string(), "0.01");
        assert_eq!(Amount(10).to_string(), "0.10");
        assert_eq!(Amount(29_900).to_string(), "299.00");
        assert_eq!(Amount(MAX_FEN).to_string(), "100000000.00");
        assert_eq!(Amount::ZERO.to_string(), "0.00");
    }

    #[test]
    fn serde_is_a_string_never_a_number() {
        assert_eq!(
            serde_json::to_string(&Amount(123)).ok().as_deref(),
            Some("\"1.23\"")
        );
        assert!(serde_json::from_str::<Amount>("1.23").is_err());
        assert_eq!(
            serde_json::from_str::<Amount>("\"1.23\"").ok(),
            Some(Amount(123))
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount(5).checked_sub(Amount(6)), None);
        assert_eq!(Amount(MAX_FEN).checked_add(Amount(1)), None);
        assert_eq!(Amount(5).checked_add(Amount(6)), Some(Amount(11)));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(fen in 1..=MAX_FEN) {
            let amount = Amount::from_fen(fen).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Amount::parse(&amount.to_string()), Ok(amount));
        }

        #[test]
        fn parse_agrees_with_a_reference_on_valid_and_near_valid_amounts(text in near_amount()) {
            prop_assert_eq!(Amount::parse(&text), reference_parse(&text), "{:?}", text);
        }

        #[test]
        fn parse_never_panics_on_any_text(text in "\\PC{0,24}") {
            let _ = Amount::parse(&text);
        }
    }

    /// Text that is an amount, or one step from being one: digits (leading zeros, up to 13),
    /// a separator (`.`, `,`, `..` or none), decimals (0 to 4 digits), sometimes a sign, a space,
    /// an exponent or a full-width digit around it.
    fn near_amount() -> impl Strategy<Value = String> {
        let digits = |max: usize| proptest::collection::vec(0u8..10, 0..=max);
        let separator = prop_oneof![
            6 => Just("."),
            2 => Just(""),
            1 => Just(","),
            1 => Just(".."),
        ];
        let affix = prop_oneof![
            12 => Just(""),
            1 => Just("-"),
            1 => Just("+"),
            1 => Just(" "),
            1 => Just("e2"),
            1 => Just("１"),
        ];
        let yuan = prop_oneof![
            3 => digits(13),
            2 => Just(vec![0]),
            1 => Just(vec![1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ];
        (affix.clone(), yuan, separator, digits(4), affix).prop_map(
            |(pre, yuan, sep, dec, post)| {
                let text = |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
                let dec = if sep.is_empty() {
                    String::new()
                } else {
                    text(&dec)
                };
                format!("{pre}{}{sep}{dec}{post}", text(&yuan))
            },
        )
    }

    /// What `Amount::parse` must answer, worked out apart from it: the shape by character
    /// classes, the value in u128.
    fn reference_parse(text: &str) -> Result<Amount, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let mut parts = text.split('.');
        let yuan = parts.next().unwrap_or_default();
        let decimals = parts.next();
        if parts.next().is_some()
            || !digits(yuan)
            || (yuan.len() > 1 && yuan.starts_with('0'))
            || decimals.is_some_and(|d| !digits(d))
        {
            return Err(AmountError::Malformed);
        }
        let decimals = decimals.unwrap_or("");
        if decimals.len() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        let padded = format!("{decimals:0<2}");
        let fen = yuan.parse::<u128>().unwrap_or(u128::MAX / 1000) * 100
            + padded.parse::<u128>().unwrap_or_default();
        match fen {
            0 => Err(AmountError::Zero),
            f if f > u128::from(MAX_FEN) => Err(AmountError::TooLarge),
            f => Ok(Amount(f as u64)),
        }
    }

    /// The generator reaches every answer `parse` can give, often: 2,000 draws.
    #[test]
    fn near_amounts_reach_every_branch() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..2_000 {
            let text = near_amount().new_tree(&mut runner).map(|t| t.current());
            let outcome = match text.map(|t| reference_parse(&t)) {
                Ok(Ok(_)) => "ok".to_owned(),
                Ok(Err(e)) => format!("{e:?}"),
                Err(e) => panic!("{e}"),
            };
            *seen.entry(outcome).or_default() += 1;
        }
        for outcome in ["ok", "Malformed", "TooManyDecimals", "Zero", "TooLarge"] {
            let count = seen.get(outcome).copied().unwrap_or_default();
            assert!(count >= 40, "{outcome}: {count} of 2,000 ({seen:?})");
        }
    }
}
