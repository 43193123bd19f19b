//! The process clock: milliseconds since the Unix epoch. The one place the gateway reads the
//! time; everything below it (the rules, the store, the protocol) takes `now` as an argument.
//!
//! The test clock (docs/testing.md, "The test clock"): in a debug build the clock runs ahead of
//! the machine's by an offset, read from the file `TEST_CLOCK_FILE` names (milliseconds, one
//! integer; under `make run` every process shares `.local/test-clock`, moved with
//! `alipay-cli clock advance`), or set in-process by a test ([`set_test_offset_ms`]). A release
//! build has none of it: the code is compiled out, and a release binary started with
//! `TEST_CLOCK_FILE` set refuses to start ([`refuse_test_clock_in_release`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// The machine's clock, Unix ms.
fn machine_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the machine's clock, moved by the test clock in a debug
/// build.
pub fn now_ms() -> i64 {
    machine_ms().saturating_add(test_offset_ms())
}

/// The environment variable naming the shared test clock's file.
pub const TEST_CLOCK_FILE: &str = "TEST_CLOCK_FILE";

#[cfg(debug_assertions)]
static IN_PROCESS_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How far the test clock is ahead of the machine's.
#[cfg(debug_assertions)]
pub fn test_offset_ms() -> i64 {
    use std::sync::atomic::Ordering;
    let in_process = IN_PROCESS_OFFSET_MS.load(Ordering::Relaxed);
    match std::env::var_os(TEST_CLOCK_FILE) {
        Some(path) => std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .saturating_add(in_process),
        None => in_process,
    }
}

#[cfg(not(debug_assertions))]
pub fn test_offset_ms() -> i64 {
    0
}

/// Moves this process's test clock to `offset_ms` ahead of the machine's (tests; debug builds
/// only). Every caller of [`now_ms`] in the process sees it: a test that moves it runs alone in
/// its test binary.
#[cfg(debug_assertions)]
pub fn set_test_offset_ms(offset_ms: i64) {
    IN_PROCESS_OFFSET_MS.store(offset_ms, std::sync::atomic::Ordering::Relaxed);
}

/// A release build started with `TEST_CLOCK_FILE` set: the message it refuses to start with.
pub fn refuse_test_clock_in_release() -> Result<(), String> {
    if cfg!(debug_assertions) || std::env::var_os(TEST_CLOCK_FILE).is_none() {
        return Ok(());
    }
    Err(format!(
        "{TEST_CLOCK_FILE} is set, but this is a release build: its clock cannot be moved (the \
         test clock exists in debug builds only); unset {TEST_CLOCK_FILE}"
    ))
}
