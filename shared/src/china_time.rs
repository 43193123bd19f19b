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

#[cfg(test)]
mod tests {
    use super::*;

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
}
