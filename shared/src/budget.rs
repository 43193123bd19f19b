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
    /// local runs and tests).
    pub fn of_request(request: &lambda_http::Request, default_ms: i64) -> Deadline {
        use lambda_http::RequestExt as _;
        match request.lambda_context_ref() {
            Some(context) if context.deadline > 0 => Self::at_system_time(context.deadline()),
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
