//! Alipay's clock: `yyyy-MM-dd HH:mm:ss` in China time (UTC+8), whatever zone the host runs in.
//! Times come in as Unix seconds from an injected clock, so nothing here reads the system time.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::ids::FieldError;

/// Formats Unix seconds as Alipay's `timestamp`: China time, `yyyy-MM-dd HH:mm:ss`.
pub fn china_timestamp(unix_seconds: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset!(+8));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// An absolute China-time instant in Alipay's format, such as `time_expire`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChinaDateTime {
    text: String,
    unix_seconds: i64,
}

impl ChinaDateTime {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let parsed = PrimitiveDateTime::parse(text, format)
            .map_err(|_| FieldError("must be a China time like \"2026-11-26 18:30:00\""))?;
        Ok(ChinaDateTime {
            text: text.to_owned(),
            unix_seconds: parsed.assume_offset(offset!(+8)).unix_timestamp(),
        })
    }

    /// A time as Alipay writes it in answers and notifications: `yyyy-MM-dd HH:mm:ss`, or with
    /// milliseconds (`yyyy-MM-dd HH:mm:ss.SSS`, as in a refund notification's `gmt_refund`,
    /// docs/alipay/operations.md §6). The fraction is dropped: Alipay's days and our records are to the
    /// second. Merchant input (`time_expire`) stays [`ChinaDateTime::parse`]'s exact form.
    pub fn parse_alipay(text: &str) -> Result<Self, FieldError> {
        let format = format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        let parsed = PrimitiveDateTime::parse(text, format).map_err(|_| {
            FieldError(
                "must be a China time like \"2026-11-26 18:30:00\" or \"2026-11-26 18:30:00.123\"",
            )
        })?;
        Ok(ChinaDateTime {
            text: text.to_owned(),
            unix_seconds: parsed.assume_offset(offset!(+8)).unix_timestamp(),
        })
    }

    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ChinaDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ChinaDateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ChinaDateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ChinaDateTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A China-time calendar day (`yyyy-MM-dd`, 00:00 to 24:00 UTC+8): the day of Alipay's bill.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ChinaDate(time::Date);

impl ChinaDate {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let format = format_description!("[year]-[month]-[day]");
        time::Date::parse(text, format)
            .map(ChinaDate)
            .map_err(|_| FieldError("must be a date like \"2026-11-26\""))
    }

    /// The China-time day that contains `unix_seconds`.
    pub fn of_unix(unix_seconds: i64) -> Self {
        let at = OffsetDateTime::from_unix_timestamp(unix_seconds)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(offset!(+8));
        ChinaDate(at.date())
    }

    /// The day of an Alipay time (`yyyy-MM-dd HH:mm:ss`, with or without milliseconds, China
    /// time), when it is one.
    pub fn of_alipay_time(text: &str) -> Option<Self> {
        ChinaDateTime::parse_alipay(text)
            .ok()
            .map(|at| ChinaDate::of_unix(at.unix_seconds()))
    }

    pub fn previous(self) -> Self {
        ChinaDate(self.0.previous_day().unwrap_or(self.0))
    }

    /// Unix seconds at 00:00 China time of this day.
    pub fn start_unix(self) -> i64 {
        self.0
            .midnight()
            .assume_offset(offset!(+8))
            .unix_timestamp()
    }

    /// The day `days` later (earlier when negative); the same day outside time's range.
    pub fn add_days(self, days: i64) -> Self {
        ChinaDate(
            self.0
                .checked_add(time::Duration::days(days))
                .unwrap_or(self.0),
        )
    }

    /// The same day of the month `months` later: `None` when that month has no such day (a
    /// day after the 28th), or past the calendar's range.
    pub fn add_months(self, months: u32) -> Option<Self> {
        let index = i64::from(self.0.year()) * 12 + i64::from(u8::from(self.0.month())) - 1
            + i64::from(months);
        let year = i32::try_from(index.div_euclid(12)).ok()?;
        let month = time::Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
        time::Date::from_calendar_date(year, month, self.0.day())
            .ok()
            .map(ChinaDate)
    }

    /// The day of the month, 1 to 31.
    pub fn day(self) -> u8 {
        self.0.day()
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: ChinaDate) -> i64 {
        (later.0 - self.0).whole_days()
    }

    /// `yyyyMMdd`, as in the bill's file names.
    pub fn compact(self) -> String {
        format!(
            "{:04}{:02}{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl fmt::Display for ChinaDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_steps_keep_the_day_or_say_there_is_none() {
        let day = ChinaDate::parse("2027-11-28").expect("date");
        assert_eq!(day.add_months(3).expect("date").to_string(), "2028-02-28");
        assert_eq!(day.add_months(14).expect("date").to_string(), "2029-01-28");
        let end = ChinaDate::parse("2027-01-31").expect("date");
        assert_eq!(end.add_months(1), None);
        assert_eq!(end.add_days(29).to_string(), "2027-03-01");
        assert_eq!(end.add_days(-31).to_string(), "2026-12-31");
        assert_eq!(day.days_until(day.add_months(1).expect("date")), 30);
        assert_eq!(day.day(), 28);
    }

    #[test]
    fn timestamp_is_china_time_not_utc() {
        // 2026-11-26 16:30:05 UTC is 2026-11-27 00:30:05 in Beijing: the date rolls over too.
        assert_eq!(china_timestamp(1_795_710_605), "2026-11-27 00:30:05");
        assert_eq!(china_timestamp(0), "1970-01-01 08:00:00");
    }

    #[test]
    fn china_datetime_round_trips() {
        let at = ChinaDateTime::parse("2026-11-27 00:30:05").ok();
        assert_eq!(
            at.as_ref().map(ChinaDateTime::unix_seconds),
            Some(1_795_710_605)
        );
        assert_eq!(
            at.map(|t| china_timestamp(t.unix_seconds())).as_deref(),
            Some("2026-11-27 00:30:05")
        );
        for bad in [
            "2026-02-30 00:00:00",
            "2026-11-27T00:30:05",
            "2026-11-27 24:00:00",
            "",
            "2026-11-27",
        ] {
            assert!(ChinaDateTime::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn china_dates_roll_over_at_china_midnight() {
        // 2026-11-26 15:59:59 UTC is 23:59:59 in Beijing; one second later is the next day.
        let before = ChinaDate::of_unix(1_795_708_799);
        let after = ChinaDate::of_unix(1_795_708_800);
        assert_eq!(before.to_string(), "2026-11-26");
        assert_eq!(after.to_string(), "2026-11-27");
        assert_eq!(after.previous(), before);
        assert_eq!(after.start_unix(), 1_795_708_800);
        assert_eq!(before.compact(), "20261126");
        assert_eq!(
            ChinaDate::of_alipay_time("2026-11-26 23:59:59").map(|d| d.to_string()),
            Some("2026-11-26".into())
        );
        assert_eq!(ChinaDate::parse("2026-11-26").ok(), Some(before));
        // Alipay's times with milliseconds (a refund notification's gmt_refund) keep their day:
        // a refund at 23:59:59.999 is the day before the one at 00:00:00.000.
        assert_eq!(
            ChinaDate::of_alipay_time("2026-11-26 23:59:59.999").map(|d| d.to_string()),
            Some("2026-11-26".into())
        );
        assert_eq!(
            ChinaDate::of_alipay_time("2026-11-27 00:00:00.000").map(|d| d.to_string()),
            Some("2026-11-27".into())
        );
        assert_eq!(
            ChinaDateTime::parse_alipay("2026-11-26 23:59:59.5").map(|t| t.unix_seconds()),
            Ok(1_795_708_799)
        );
        // Merchant input keeps the exact form.
        assert!(ChinaDateTime::parse("2026-11-26 23:59:59.999").is_err());
        for bad in [
            "2026-11-26 23:59:59.",
            "2026-11-26 23:59:59,123",
            "2026-11-26T23:59:59.1",
        ] {
            assert!(ChinaDateTime::parse_alipay(bad).is_err(), "{bad:?}");
        }
        for bad in ["2026-11-31", "20261126", "2026-11-26 00:00:00", ""] {
            assert!(ChinaDate::parse(bad).is_err(), "{bad:?}");
        }
    }
}
