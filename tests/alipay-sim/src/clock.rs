//! Alipay's clock: China time (UTC+8), moved by the test clock's offset. The simulator's own
//! formatter and parser, apart from the gateway's (`alipay::china_time`).

#[allow(unused_imports)]
use crate::*;

/// The machine's clock, Unix ms.
pub(crate) fn machine_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The world's clock, Unix ms: the machine's, moved by the shared test clock (the file
/// `SimulatorConfig::test_clock_file` names, as the gateway's debug builds read it, plus what a
/// test set in-process). The caller's clock: requests' timestamps are checked against it.
pub(crate) fn world_ms(inner: &Inner) -> i64 {
    let shared = inner
        .config
        .test_clock_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    machine_ms() + shared + inner.world_offset_ms.load(Ordering::Relaxed)
}

/// Alipay's clock, Unix ms: the world's, moved by Alipay's own offset (`POST /sim/clock`: a
/// China-time midnight on demand, or Alipay's clock a little behind ours).
pub(crate) fn alipay_ms(inner: &Inner) -> i64 {
    world_ms(inner) + inner.clock_offset_ms.load(Ordering::Relaxed)
}

/// Alipay's clock: `yyyy-MM-dd HH:mm:ss` in China time (UTC+8; docs/alipay/openapi-v1.md), with the Unix
/// seconds. The simulator's own code, deliberately not the gateway's formatter.
pub(crate) fn china_now(inner: &Inner) -> (String, i64) {
    let unix = alipay_ms(inner).div_euclid(1000);
    (china_text(unix), unix)
}

/// Alipay's clock with milliseconds, `yyyy-MM-dd HH:mm:ss.SSS`: how a refund notification
/// writes `gmt_refund` (docs/alipay/operations.md §6).
pub(crate) fn china_now_millis(inner: &Inner) -> String {
    let ms = alipay_ms(inner);
    format!(
        "{}.{:03}",
        china_text(ms.div_euclid(1000)),
        ms.rem_euclid(1000)
    )
}

pub(crate) const CHINA_OFFSET: time::UtcOffset = match time::UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => time::UtcOffset::UTC,
};

/// `yyyy-MM-dd HH:mm:ss` in China time: the simulator's (and the tests') own formatter, apart
/// from the gateway's `alipay::china_time`.
pub fn china_text(unix: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(CHINA_OFFSET);
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

/// Unix seconds of a China-time `yyyy-MM-dd HH:mm:ss` (the simulator's own parser).
pub fn china_unix(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = time::PrimitiveDateTime::parse(text, format).ok()?;
    Some(at.assume_offset(CHINA_OFFSET).unix_timestamp())
}
