//! Time budgets. Every invocation works from the deadline Lambda gives it: each step (an Alipay
//! call, a DynamoDB write) gets what remains less what the steps after it need, so the function
//! always answers (a PENDING refund, a 503) before Lambda kills it.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// What a store write is given at least (the settle after an Alipay call); a write that cannot
/// finish in it is left to the sweeper.
pub const STORE_STEP: Duration = Duration::from_millis(2_000);
/// Kept back at the end to build and send the answer.
pub const ANSWER_RESERVE: Duration = Duration::from_millis(300);
/// An Alipay call with less than this is not started.
pub const MIN_CALL: Duration = Duration::from_millis(300);

/// Lambda's longest time-out.
const LONGEST_LAMBDA_MS: u64 = 900_000;

/// A wait in milliseconds as whole seconds (what `Retry-After` and a pending refund's
/// `retry_after` say), rounded up, at least 1.
pub fn seconds_after(ms: i64) -> u32 {
    let ms = ms.max(1_000);
    u32::try_from(ms.div_euclid(1_000) + i64::from(ms.rem_euclid(1_000) > 0)).unwrap_or(u32::MAX)
}

#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
        }
    }

    /// The invocation's deadline as Lambda gives it (`default_ms` when there is none, as in
    /// tests).
    pub fn of_request(request: &lambda_http::Request, default_ms: i64) -> Deadline {
        use lambda_http::RequestExt as _;
        let given = request.lambda_context_ref().map(|context| context.deadline);
        Self::from_lambda(given, SystemTime::now(), default_ms)
    }

    /// A deadline Lambda could have given: after now, and at most 15 minutes (Lambda's longest
    /// time-out) ahead. Anything else is an emulator's stand-in (`cargo lambda watch` sends the
    /// constant 600000, a moment in 1970) and is replaced by `default_ms`.
    pub fn from_lambda(deadline_ms: Option<u64>, now: SystemTime, default_ms: i64) -> Deadline {
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match deadline_ms {
            Some(at) if at > now_ms && at - now_ms <= LONGEST_LAMBDA_MS => {
                Self::after(Duration::from_millis(at - now_ms))
            }
            _ => Self::after(Duration::from_millis(
                u64::try_from(default_ms).unwrap_or(0),
            )),
        }
    }

    /// A deadline given as wall-clock time.
    pub fn at_system_time(at: SystemTime) -> Deadline {
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self::after(left)
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The time a step may take when `reserve` must be left for what follows; `None` when that
    /// is less than `minimum`.
    pub fn for_step(&self, reserve: Duration, minimum: Duration) -> Option<Duration> {
        self.remaining()
            .checked_sub(reserve)
            .filter(|left| *left >= minimum)
    }

    /// Runs `step` with the time left less `reserve`; `None` when it did not finish (it is
    /// dropped, as Lambda would drop it at the deadline).
    pub async fn bound<F: Future>(&self, reserve: Duration, step: F) -> Option<F::Output> {
        let limit = self.for_step(reserve, Duration::from_millis(1))?;
        tokio::time::timeout(limit, step).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_leave_the_reserve() {
        let deadline = Deadline::after(Duration::from_millis(1_000));
        let step = deadline
            .for_step(Duration::from_millis(600), MIN_CALL)
            .expect("time left");
        assert!(step <= Duration::from_millis(400), "{step:?}");
        assert_eq!(
            deadline.for_step(Duration::from_millis(800), MIN_CALL),
            None
        );
        let slow = deadline.bound(
            Duration::from_millis(900),
            tokio::time::sleep(Duration::from_secs(5)),
        );
        assert_eq!(slow.await, None);
        let quick = deadline.bound(Duration::from_millis(100), async { 7 });
        assert_eq!(quick.await, Some(7));
    }

    #[tokio::test]
    async fn only_a_deadline_lambda_could_give_is_believed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_800_000);
        let now_ms = 1_795_800_000_000u64;
        let budget = |given| Deadline::from_lambda(given, now, 7_000).remaining();
        let close_to = |d: Duration, ms: u64| {
            d <= Duration::from_millis(ms)
                && d + Duration::from_millis(200) >= Duration::from_millis(ms)
        };
        assert!(close_to(budget(Some(now_ms + 20_000)), 20_000));
        // cargo lambda watch's constant, a past instant, none, and beyond 15 minutes.
        for odd in [
            Some(600_000),
            Some(now_ms - 1),
            None,
            Some(now_ms + 901_000),
        ] {
            assert!(close_to(budget(odd), 7_000), "{odd:?}");
        }
    }

    #[test]
    fn a_past_deadline_leaves_nothing() {
        let past = Deadline::at_system_time(SystemTime::UNIX_EPOCH);
        assert_eq!(past.remaining(), Duration::ZERO);
        assert_eq!(
            past.for_step(Duration::ZERO, Duration::from_millis(1)),
            None
        );
    }
}
