//! The circuit breaker of one Alipay channel, as decisions (no I/O): what a call's outcome
//! counts as, when the failure rate opens the channel, what a caller may do while it is open,
//! and when trial calls close it again. `store::breaker` keeps the state in the table, shared by
//! every instance; `channels::Breaker` drives these decisions with it.
//!
//! The window is a sliding-window counter over two fixed buckets of `window_ms`: the current
//! bucket's counts plus the previous bucket's, weighted by how much of it is still inside the
//! window. Two numbers per bucket, kept in one item, added to with `ADD` (no read first).

/// The breaker's settings (`BREAKER_*` in the environment; see `config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `BREAKER_WINDOW_SECONDS` (default 60): the sliding window the failure rate is taken over.
    pub window_ms: i64,
    /// `BREAKER_MIN_CALLS` (default 10): no opening on fewer calls than this in the window.
    pub min_calls: u64,
    /// `BREAKER_FAILURE_PERCENT` (default 50): the failure rate, in percent, that opens it.
    pub failure_percent: u64,
    /// `BREAKER_COOL_DOWN_SECONDS` (default 30): how long an open channel refuses every call
    /// before a trial call is let through.
    pub cool_down_ms: i64,
    /// `BREAKER_TRIAL_CALLS` (default 3): trial calls that must succeed, one after the other,
    /// to close it again; one failure re-opens it for another cool-down.
    pub trial_calls: u64,
    /// `BREAKER_SYNC_MS` (default 1000): how old an instance's copy of the shared state may get
    /// before a call reads it again (and adds the instance's counts to the shared window).
    pub sync_ms: i64,
    /// How long one trial call may hold the trial lease (the Alipay time-out and a margin); a
    /// trial whose instance died frees it after this.
    pub trial_lease_ms: i64,
}

impl Settings {
    /// The window bucket `now_ms` falls in.
    pub fn bucket(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.window_ms.max(1))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_ms: 60_000,
            min_calls: 10,
            failure_percent: 50,
            cool_down_ms: 30_000,
            trial_calls: 3,
            sync_ms: 1_000,
            trial_lease_ms: 10_000,
        }
    }
}

/// What one call said about the channel's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Alipay answered (a business refusal, a closed trade, a buyer's balance: all healthy).
    Healthy,
    /// No usable answer: time-out, connection error, HTTP 5xx, `20000`, `ACQ.SYSTEM_ERROR`, an
    /// answer whose signature fails, or KMS could not sign.
    Failing,
    /// Says nothing about the channel (the call was never made: no time left, or refused by the
    /// breaker itself).
    Neutral,
}

/// The shared window's counts: the bucket (`now / window_ms`) they belong to, and the bucket
/// before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub bucket: i64,
    pub calls: u64,
    pub failures: u64,
    pub prev_calls: u64,
    pub prev_failures: u64,
}

impl Window {
    /// Calls and failures inside the sliding window ending at `now_ms`: the current bucket's,
    /// and the previous bucket's share still inside the window. Rounded up, so that a burst of
    /// failures at the end of a bucket still counts whole at the start of the next.
    pub fn counts(&self, now_ms: i64, window_ms: i64) -> (u64, u64) {
        let window_ms = window_ms.max(1);
        let bucket = now_ms.div_euclid(window_ms);
        let into = u64::try_from(now_ms.rem_euclid(window_ms)).unwrap_or(0);
        let span = u64::try_from(window_ms).unwrap_or(1);
        let share = |count: u64| (count * (span - into)).div_ceil(span);
        match bucket.saturating_sub(self.bucket) {
            0 => (
                self.calls + share(self.prev_calls),
                self.failures + share(self.prev_failures),
            ),
            1 => (share(self.calls), share(self.failures)),
            _ => (0, 0),
        }
    }

    /// The window after a bucket roll-over to `bucket` (the counts before `delta` is added).
    pub fn rolled_to(&self, bucket: i64) -> Window {
        match bucket.saturating_sub(self.bucket) {
            0 => *self,
            1 => Window {
                bucket,
                calls: 0,
                failures: 0,
                prev_calls: self.calls,
                prev_failures: self.failures,
            },
            _ => Window {
                bucket,
                ..Window::default()
            },
        }
    }
}

/// Whether the window's failure rate opens the channel.
pub fn trips(settings: &Settings, window: &Window, now_ms: i64) -> bool {
    let (calls, failures) = window.counts(now_ms, settings.window_ms);
    calls >= settings.min_calls.max(1) && failures * 100 >= settings.failure_percent * calls
}

/// What an instance does with the counts it holds, at a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// Add them to the shared window (it has failures, or the instance has).
    All,
    /// Keep them: with no failure anywhere, successes change nothing.
    Keep,
    /// Drop them: successes older than the window would dilute failures they never saw.
    Drop,
}

/// Whether an instance shares its counts now: `pending_failures` of its own, the window as it
/// last read it, and when its oldest pending call was made.
pub fn share(
    settings: &Settings,
    pending_failures: u64,
    window: &Window,
    pending_since_ms: Option<i64>,
    now_ms: i64,
) -> Share {
    if pending_failures > 0 || window.counts(now_ms, settings.window_ms).1 > 0 {
        Share::All
    } else if pending_since_ms.is_some_and(|since| now_ms - since >= settings.window_ms) {
        Share::Drop
    } else {
        Share::Keep
    }
}

/// The shared phase of a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Phase {
    pub open: bool,
    /// Changes at every opening and re-opening: the trial writes are conditional on it.
    pub generation: u64,
    pub opened_at_ms: i64,
    /// No call before this (the cool-down); trial calls after.
    pub until_ms: i64,
    /// A trial call is under way until this.
    pub trial_lease_until_ms: i64,
    /// Trial calls that succeeded since the last (re-)opening.
    pub trial_successes: u64,
}

/// What a caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Call.
    Call,
    /// The cool-down is over: call as a trial, once the lease is won.
    Trial { generation: u64 },
    /// Do not call; ask again after this long.
    Refuse { retry_after_ms: i64 },
}

/// Shortest `Retry-After` of a refusal: a second.
pub const MIN_RETRY_AFTER_MS: i64 = 1_000;

/// The admission of a call at `now_ms`, given the phase as last read.
pub fn admit(phase: &Phase, now_ms: i64) -> Admission {
    if !phase.open {
        return Admission::Call;
    }
    if now_ms < phase.until_ms {
        return Admission::Refuse {
            retry_after_ms: (phase.until_ms - now_ms).max(MIN_RETRY_AFTER_MS),
        };
    }
    if now_ms < phase.trial_lease_until_ms {
        return Admission::Refuse {
            retry_after_ms: (phase.trial_lease_until_ms - now_ms).max(MIN_RETRY_AFTER_MS),
        };
    }
    Admission::Trial {
        generation: phase.generation,
    }
}

/// What a finished trial call does to the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterTrial {
    /// Count it and free the lease for the next trial.
    Count,
    /// The last trial needed: close the channel.
    Close,
    /// A failure: open again for another cool-down.
    Reopen { until_ms: i64 },
    /// Neither (the call was not made): free the lease.
    Release,
}

pub fn after_trial(settings: &Settings, phase: &Phase, health: Health, now_ms: i64) -> AfterTrial {
    match health {
        Health::Healthy if phase.trial_successes + 1 >= settings.trial_calls.max(1) => {
            AfterTrial::Close
        }
        Health::Healthy => AfterTrial::Count,
        Health::Failing => AfterTrial::Reopen {
            until_ms: now_ms + settings.cool_down_ms,
        },
        Health::Neutral => AfterTrial::Release,
    }
}

/// A channel's state as a number, for the per-channel metric: 0 closed, 1 open (cooling
/// down), 0.5 open with trial calls allowed.
pub fn state_value(phase: &Phase, now_ms: i64) -> f64 {
    match (phase.open, now_ms < phase.until_ms) {
        (false, _) => 0.0,
        (true, true) => 1.0,
        (true, false) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            window_ms: 10_000,
            min_calls: 4,
            failure_percent: 50,
            cool_down_ms: 5_000,
            trial_calls: 2,
            sync_ms: 1_000,
            trial_lease_ms: 3_000,
        }
    }

    #[test]
    fn the_window_slides_over_two_buckets() {
        let window = Window {
            bucket: 3,
            calls: 10,
            failures: 6,
            prev_calls: 20,
            prev_failures: 2,
        };
        // At the start of bucket 3 the previous bucket counts whole; halfway, half of it.
        assert_eq!(window.counts(30_000, 10_000), (30, 8));
        assert_eq!(window.counts(35_000, 10_000), (20, 7));
        // In bucket 4, bucket 3 is the previous one; in bucket 5, it has left the window.
        assert_eq!(window.counts(40_000, 10_000), (10, 6));
        assert_eq!(window.counts(47_500, 10_000), (3, 2));
        assert_eq!(window.counts(50_000, 10_000), (0, 0));
        assert_eq!(window.rolled_to(4).prev_calls, 10);
        assert_eq!(window.rolled_to(4).calls, 0);
        assert_eq!(
            window.rolled_to(5),
            Window {
                bucket: 5,
                ..Window::default()
            }
        );
        assert_eq!(window.rolled_to(3), window);
        // A window never written (its bucket the lowest there is) rolls over without overflow.
        let never = Window {
            bucket: i64::MIN,
            ..Window::default()
        };
        assert_eq!(
            never.rolled_to(4),
            Window {
                bucket: 4,
                ..Window::default()
            }
        );
        assert_eq!(never.counts(40_000, 10_000), (0, 0));
    }

    #[test]
    fn it_trips_on_the_rate_with_enough_calls_only() {
        let s = settings();
        let at = |calls, failures| Window {
            bucket: 1,
            calls,
            failures,
            ..Window::default()
        };
        assert!(!trips(&s, &at(3, 3), 10_000), "fewer calls than min_calls");
        assert!(trips(&s, &at(4, 2), 10_000), "50% of 4");
        assert!(!trips(&s, &at(5, 2), 10_000), "40%");
        assert!(trips(&s, &at(4, 4), 10_000));
        let high = Settings {
            failure_percent: 100,
            ..settings()
        };
        assert!(!trips(&high, &at(4, 3), 10_000));
        assert!(trips(&high, &at(4, 4), 10_000));
    }

    #[test]
    fn an_open_channel_refuses_then_lets_one_trial_through() {
        let closed = Phase::default();
        assert_eq!(admit(&closed, 0), Admission::Call);
        let open = Phase {
            open: true,
            generation: 7,
            opened_at_ms: 1_000,
            until_ms: 6_000,
            trial_lease_until_ms: 0,
            trial_successes: 0,
        };
        assert_eq!(
            admit(&open, 2_000),
            Admission::Refuse {
                retry_after_ms: 4_000
            }
        );
        assert_eq!(
            admit(&open, 5_900),
            Admission::Refuse {
                retry_after_ms: MIN_RETRY_AFTER_MS
            }
        );
        assert_eq!(admit(&open, 6_000), Admission::Trial { generation: 7 });
        let leased = Phase {
            trial_lease_until_ms: 9_000,
            ..open.clone()
        };
        assert_eq!(
            admit(&leased, 6_500),
            Admission::Refuse {
                retry_after_ms: 2_500
            }
        );
        assert_eq!(admit(&leased, 9_000), Admission::Trial { generation: 7 });
    }

    #[test]
    fn trials_close_it_after_enough_successes_and_a_failure_reopens() {
        let s = settings();
        let open = Phase {
            open: true,
            until_ms: 6_000,
            ..Phase::default()
        };
        assert_eq!(
            after_trial(&s, &open, Health::Healthy, 7_000),
            AfterTrial::Count
        );
        let one_done = Phase {
            trial_successes: 1,
            ..open.clone()
        };
        assert_eq!(
            after_trial(&s, &one_done, Health::Healthy, 7_000),
            AfterTrial::Close
        );
        assert_eq!(
            after_trial(&s, &one_done, Health::Failing, 7_000),
            AfterTrial::Reopen { until_ms: 12_000 }
        );
        assert_eq!(
            after_trial(&s, &open, Health::Neutral, 7_000),
            AfterTrial::Release
        );
    }

    #[test]
    fn successes_are_shared_only_beside_failures_and_never_stale() {
        let s = settings();
        let quiet = Window {
            bucket: 1,
            calls: 40,
            ..Window::default()
        };
        let failing = Window {
            failures: 1,
            ..quiet
        };
        assert_eq!(share(&s, 0, &quiet, Some(10_000), 12_000), Share::Keep);
        assert_eq!(share(&s, 1, &quiet, Some(10_000), 12_000), Share::All);
        assert_eq!(share(&s, 0, &failing, Some(10_000), 12_000), Share::All);
        // A failure from the previous bucket still counts while it is inside the window.
        assert_eq!(share(&s, 0, &failing, Some(10_000), 25_000), Share::All);
        assert_eq!(share(&s, 0, &quiet, Some(10_000), 20_000), Share::Drop);
        assert_eq!(share(&s, 0, &quiet, None, 20_000), Share::Keep);
    }

    #[test]
    fn the_state_metric_reads_closed_open_and_trial() {
        let open = Phase {
            open: true,
            until_ms: 6_000,
            ..Phase::default()
        };
        assert_eq!(state_value(&Phase::default(), 0), 0.0);
        assert_eq!(state_value(&open, 5_000), 1.0);
        assert_eq!(state_value(&open, 6_000), 0.5);
    }
}
