//! Money with a currency: an integer count of the currency's minor unit (cent, fen, sen; the yen
//! itself) and an ISO 4217 code. Text is read digit by digit and written back the same way: there
//! is no float anywhere on this path.
//!
//! The table of currencies is our own (a processor's exponent may differ from ISO 4217's, and
//! ISO's list changes): each row keeps the exponent the providers use beside ISO's, and the tests
//! check the ISO column against an independent copy of SIX Group's list (the `doubloon` crate).
//! Serialising for a protocol is the protocol crate's work: Alipay v1 writes CNY yuan with two
//! decimals, Antom writes `{"currency","value"}` with the value in minor units.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest amount in minor units: sixteen digits, the longest `value` Antom accepts (and far
/// above Alipay v1's 100000000.00 yuan).
pub const MAX_MINOR: u64 = 9_999_999_999_999_999;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrencyInfo {
    /// ISO 4217 alphabetic code.
    pub code: &'static str,
    /// ISO 4217 numeric code.
    pub numeric: u16,
    /// Decimal places the providers use (Antom's table, docs/antom/protocol.md).
    pub exponent: u8,
    /// Decimal places in ISO 4217's list.
    pub iso_exponent: u8,
    /// An amount in minor units must be a multiple of this for the providers to take it (Antom:
    /// IDR values end in `00`, so whole rupiah).
    pub minor_multiple: u64,
    pub name: &'static str,
}

const fn row(code: &'static str, numeric: u16, exponent: u8, name: &'static str) -> CurrencyInfo {
    CurrencyInfo {
        code,
        numeric,
        exponent,
        iso_exponent: exponent,
        minor_multiple: 1,
        name,
    }
}

/// The currencies we price in, sorted by code: Antom's table (docs.antom.com/ac/ref/cc) with CNY.
/// Antom's exponents equal ISO 4217's for all of them today; IDR has Antom's `00` rule on top.
const TABLE: [CurrencyInfo; 24] = [
    row("AUD", 36, 2, "Australian Dollar"),
    row("BDT", 50, 2, "Taka"),
    row("BRL", 986, 2, "Brazilian Real"),
    row("CAD", 124, 2, "Canadian Dollar"),
    row("CLP", 152, 0, "Chilean Peso"),
    row("CNY", 156, 2, "Yuan Renminbi"),
    row("EUR", 978, 2, "Euro"),
    row("GBP", 826, 2, "Pound Sterling"),
    row("HKD", 344, 2, "Hong Kong Dollar"),
    CurrencyInfo {
        minor_multiple: 100,
        ..row("IDR", 360, 2, "Rupiah")
    },
    row("JPY", 392, 0, "Yen"),
    row("KRW", 410, 0, "Won"),
    row("MXN", 484, 2, "Mexican Peso"),
    row("MYR", 458, 2, "Malaysian Ringgit"),
    row("NZD", 554, 2, "New Zealand Dollar"),
    row("PEN", 604, 2, "Sol"),
    row("PHP", 608, 2, "Philippine Peso"),
    row("PKR", 586, 2, "Pakistan Rupee"),
    row("PLN", 985, 2, "Zloty"),
    row("SGD", 702, 2, "Singapore Dollar"),
    row("THB", 764, 2, "Baht"),
    row("TWD", 901, 2, "New Taiwan Dollar"),
    row("USD", 840, 2, "US Dollar"),
    row("VND", 704, 0, "Dong"),
];

/// A currency of our table. Ordered by code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(u8);

/// Why a text or a number is not money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be three capital letters, an ISO 4217 code like \"USD\"")]
    MalformedCurrency,
    #[error(
        "is not a currency this gateway prices in (supported: {})",
        Currency::codes()
    )]
    UnsupportedCurrency,
    #[error("is empty")]
    Empty,
    #[error("must be digits with at most {0} decimals, like \"{1}\"")]
    Malformed(u8, &'static str),
    #[error("has more decimals than {0} allows ({1})")]
    TooManyDecimals(&'static str, u8),
    #[error("must be at least the currency's smallest unit")]
    Zero,
    #[error("is too large (at most 16 digits of minor units)")]
    TooLarge,
    #[error("must be a multiple of {0} in {1}'s minor unit")]
    NotAMultiple(u64, &'static str),
    #[error("mixes {0} and {1}")]
    CurrencyMismatch(&'static str, &'static str),
}

impl Currency {
    pub const CNY: Currency = Currency(5);
    pub const USD: Currency = Currency(22);

    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(MoneyError::MalformedCurrency);
        }
        TABLE
            .binary_search_by(|row| row.code.cmp(code))
            .map(|index| Currency(index as u8))
            .map_err(|_| MoneyError::UnsupportedCurrency)
    }

    pub fn all() -> impl Iterator<Item = Currency> {
        (0..TABLE.len()).map(|index| Currency(index as u8))
    }

    /// The codes of the table, comma-separated (for error messages and docs).
    pub fn codes() -> String {
        TABLE
            .iter()
            .map(|row| row.code)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn info(self) -> &'static CurrencyInfo {
        &TABLE[usize::from(self.0)]
    }

    pub fn code(self) -> &'static str {
        self.info().code
    }

    pub fn exponent(self) -> u8 {
        self.info().exponent
    }

    pub fn minor_multiple(self) -> u64 {
        self.info().minor_multiple
    }

    /// An example amount for error messages: "12.50", "1250".
    fn example(self) -> &'static str {
        match self.exponent() {
            0 => "1250",
            _ => "12.50",
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Currency::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An amount of one currency in its minor unit: 0 to [`MAX_MINOR`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Money {
    minor: u64,
    currency: Currency,
}

impl Money {
    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// Any amount from 0 to [`MAX_MINOR`] (what a provider reports may be zero).
    pub fn from_minor(minor: u64, currency: Currency) -> Result<Money, MoneyError> {
        if minor > MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { minor, currency })
    }

    /// A decimal text in the currency's major unit, exactly: `"12.50"` USD is 1250 cents, `"1250"`
    /// JPY is 1250 yen. At most the currency's decimals (fewer are padded: `"12.5"` = 1250); one
    /// leading zero only; no sign, exponent, spaces or separators. Zero is allowed here; a payment
    /// amount uses [`Money::parse_payment`].
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let exponent = currency.exponent();
        let malformed = || MoneyError::Malformed(exponent, currency.example());
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        let (major, decimals) = match text.split_once('.') {
            Some((major, decimals)) => (major, Some(decimals)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(major) || (major.len() > 1 && major.starts_with('0')) {
            return Err(malformed());
        }
        let decimals = match decimals {
            None => "",
            Some(d) if !all_digits(d) => return Err(malformed()),
            Some(d) if d.len() > usize::from(exponent) => {
                return Err(MoneyError::TooManyDecimals(currency.code(), exponent));
            }
            Some(d) => d,
        };
        // Sixteen digits of minor units at most: count before any arithmetic, so u64 is safe.
        if major.len() + usize::from(exponent) > 16 {
            return Err(MoneyError::TooLarge);
        }
        let mut minor: u64 = 0;
        for digit in major.bytes() {
            minor = minor * 10 + u64::from(digit - b'0');
        }
        let decimals = decimals.as_bytes();
        for place in 0..usize::from(exponent) {
            let digit = decimals.get(place).map_or(0, |d| u64::from(d - b'0'));
            minor = minor * 10 + digit;
        }
        Money::from_minor(minor, currency)
    }

    /// A payment or refund amount: at least one minor unit, and a multiple of what the providers
    /// accept for the currency (IDR: whole rupiah).
    pub fn parse_payment(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let money = Money::parse(text, currency)?;
        money.check_payment()?;
        Ok(money)
    }

    /// Whether this can be a payment or refund amount (see [`Money::parse_payment`]).
    pub fn check_payment(self) -> Result<(), MoneyError> {
        if self.minor == 0 {
            return Err(MoneyError::Zero);
        }
        let multiple = self.currency.minor_multiple();
        if !self.minor.is_multiple_of(multiple) {
            return Err(MoneyError::NotAMultiple(multiple, self.currency.code()));
        }
        Ok(())
    }

    pub fn minor(self) -> u64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    /// The amount as a decimal text with exactly the currency's decimals: `"12.50"`, `"1250"`.
    pub fn decimal(self) -> String {
        let exponent = u32::from(self.currency.exponent());
        if exponent == 0 {
            return self.minor.to_string();
        }
        let scale = 10u64.pow(exponent);
        format!(
            "{}.{:0width$}",
            self.minor / scale,
            self.minor % scale,
            width = exponent as usize
        )
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.code(),
                other.currency.code(),
            ));
        }
        Ok(())
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(minor, self.currency)
    }

    /// `None` when `other` is larger (or of another currency).
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.same_currency(other).ok()?;
        self.minor.checked_sub(other.minor).map(|minor| Money {
            minor,
            currency: self.currency,
        })
    }

    /// Compares two amounts of the same currency; `None` for two currencies.
    pub fn compare(self, other: Money) -> Option<std::cmp::Ordering> {
        self.same_currency(other).ok()?;
        Some(self.minor.cmp(&other.minor))
    }
}

impl fmt::Display for Money {
    /// The decimal text, `12.50` (as [`Money::decimal`]; as `Serialize` writes it). With the
    /// code: [`Money::with_code`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decimal())
    }
}

impl Money {
    /// `12.50 USD`, for messages.
    pub fn with_code(self) -> String {
        format!("{} {}", self.decimal(), self.currency)
    }
}

/// As its decimal text (`"12.50"`): a resource states its currency once, beside its amounts.
/// There is no `Deserialize`: reading an amount needs its currency ([`Money::parse`]).
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::{Decimal, RoundingStrategy};

    fn usd(text: &str) -> Result<u64, MoneyError> {
        Money::parse(text, Currency::USD).map(Money::minor)
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn the_table_is_sorted_and_its_constants_point_at_their_rows() {
        assert!(TABLE.windows(2).all(|w| w[0].code < w[1].code));
        assert_eq!(Currency::CNY.code(), "CNY");
        assert_eq!(Currency::USD.code(), "USD");
    }

    /// Our ISO column, row by row, against SIX Group's list as the doubloon crate carries it:
    /// code, numeric code and decimals. A row that differs from ISO on purpose must say so in its
    /// `exponent` (none does today).
    #[test]
    fn every_currency_matches_the_independent_iso_list() {
        for currency in Currency::all() {
            let row = currency.info();
            let iso = doubloon::iso_currencies::find(row.code)
                .unwrap_or_else(|| panic!("{} is not in ISO 4217's list", row.code));
            assert_eq!(iso.code(), row.code);
            assert_eq!(iso.numeric_code(), u32::from(row.numeric), "{}", row.code);
            assert_eq!(
                iso.minor_units(),
                u32::from(row.iso_exponent),
                "{}",
                row.code
            );
            assert_eq!(
                row.exponent, row.iso_exponent,
                "{} departs from ISO",
                row.code
            );
        }
    }

    #[test]
    fn antoms_rules_are_in_the_table() {
        for code in ["CLP", "JPY", "KRW", "VND"] {
            assert_eq!(cur(code).exponent(), 0, "{code}");
        }
        assert_eq!(cur("IDR").minor_multiple(), 100);
        assert_eq!(
            Money::parse_payment("1000.50", cur("IDR")),
            Err(MoneyError::NotAMultiple(100, "IDR"))
        );
        assert_eq!(
            Money::parse_payment("1000", cur("IDR")).map(Money::minor),
            Ok(100_000)
        );
        assert_eq!(
            Currency::all().filter(|c| c.minor_multiple() != 1).count(),
            1
        );
    }

    #[test]
    fn currencies_are_three_capitals_of_the_table() {
        assert_eq!(Currency::parse("usd"), Err(MoneyError::MalformedCurrency));
        assert_eq!(Currency::parse("US"), Err(MoneyError::MalformedCurrency));
        assert_eq!(Currency::parse("USDX"), Err(MoneyError::MalformedCurrency));
        assert_eq!(Currency::parse("XXX"), Err(MoneyError::UnsupportedCurrency));
        assert_eq!(Currency::parse("BHD"), Err(MoneyError::UnsupportedCurrency));
    }

    #[test]
    fn parses_exactly_per_currency() {
        assert_eq!(usd("12.50"), Ok(1250));
        assert_eq!(usd("12.5"), Ok(1250));
        assert_eq!(usd("12"), Ok(1200));
        assert_eq!(usd("0.01"), Ok(1));
        assert_eq!(usd("0"), Ok(0));
        assert_eq!(usd("12.505"), Err(MoneyError::TooManyDecimals("USD", 2)));
        assert_eq!(
            Money::parse("1250.0", cur("JPY")),
            Err(MoneyError::TooManyDecimals("JPY", 0))
        );
        assert_eq!(Money::parse("1250", cur("JPY")).map(Money::minor), Ok(1250));
        for bad in [
            "", "01.00", "1.", ".5", "-1", "+1", "1e3", " 1", "1,000.00", "１",
        ] {
            assert!(usd(bad).is_err(), "{bad:?}");
        }
        assert_eq!(usd("99999999999999.99"), Ok(MAX_MINOR));
        assert_eq!(usd("100000000000000.00"), Err(MoneyError::TooLarge));
        assert_eq!(
            Money::parse("9999999999999999", cur("JPY")).map(Money::minor),
            Ok(MAX_MINOR)
        );
        assert_eq!(
            Money::parse("99999999999999999", cur("JPY")),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Money::parse_payment("0.00", Currency::USD),
            Err(MoneyError::Zero)
        );
    }

    #[test]
    fn arithmetic_stays_in_one_currency() {
        let a = Money::parse("10.00", Currency::USD).unwrap();
        let b = Money::parse("2.50", Currency::USD).unwrap();
        let y = Money::parse("10.00", Currency::CNY).unwrap();
        assert_eq!(a.checked_add(b).map(Money::minor), Ok(1250));
        assert_eq!(a.checked_sub(b).map(Money::minor), Some(750));
        assert_eq!(b.checked_sub(a), None);
        assert_eq!(
            a.checked_add(y),
            Err(MoneyError::CurrencyMismatch("USD", "CNY"))
        );
        assert_eq!(a.checked_sub(y), None);
        assert_eq!(a.compare(y), None);
        let top = Money::from_minor(MAX_MINOR, Currency::USD).unwrap();
        assert_eq!(top.checked_add(b), Err(MoneyError::TooLarge));
        assert_eq!(a.to_string(), "10.00");
        assert_eq!(a.with_code(), "10.00 USD");
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        (0..TABLE.len()).prop_map(|index| Currency(index as u8))
    }

    proptest! {
        /// Formatting, for every currency of the table: our text is what the independent
        /// Decimal arithmetic (doubloon's `from_minor_units`, with ISO's decimals) prints.
        #[test]
        fn formats_as_the_independent_decimal_does(
            currency in any_currency(),
            minor in 0..=MAX_MINOR,
        ) {
            let ours = Money::from_minor(minor, currency).unwrap();
            let iso = doubloon::iso_currencies::find(currency.code()).unwrap();
            let theirs = doubloon::Money::from_minor_units(minor as i64, iso);
            prop_assert_eq!(ours.decimal(), theirs.amount().to_string());
        }

        /// Parsing, for every currency: a decimal text with up to the currency's decimals reads
        /// as the minor units the independent Decimal arithmetic gives, and formats back to the
        /// padded form; one decimal more is refused (never rounded).
        #[test]
        fn parses_as_the_independent_decimal_does(
            currency in any_currency(),
            major in 0u64..=99_999_999_999_999,
            fraction in 0u64..10_000,
            places in 0usize..=4,
        ) {
            let exponent = usize::from(currency.exponent());
            let digits = format!("{fraction:04}");
            let text = match places {
                0 => major.to_string(),
                n => format!("{major}.{}", &digits[..n]),
            };
            let iso = doubloon::iso_currencies::find(currency.code()).unwrap();
            let decimal = Decimal::from_str_exact(&text).unwrap();
            let theirs = doubloon::Money::new(decimal, iso);
            let fits = major.to_string().len() + exponent <= 16;
            match Money::parse(&text, currency) {
                Ok(ours) => {
                    prop_assert!(places <= exponent && fits);
                    let exact = theirs.to_minor_units(RoundingStrategy::ToZero).unwrap();
                    prop_assert_eq!(ours.minor() as i64, exact);
                    prop_assert_eq!(theirs.round(RoundingStrategy::ToZero).amount(), decimal);
                    prop_assert_eq!(Money::parse(&ours.decimal(), currency), Ok(ours));
                }
                Err(MoneyError::TooManyDecimals(..)) => prop_assert!(places > exponent),
                Err(MoneyError::TooLarge) => prop_assert!(!fits),
                Err(other) => prop_assert!(false, "{text} {currency}: {other}"),
            }
        }
    }
}
