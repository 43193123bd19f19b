//! One instance's view of a channel's circuit breaker: the decisions of `crate::breaker`,
//! driven with the shared state in the table (`store::breaker`).
//!
//! Per request, in the closed state, nothing: outcomes are counted in memory. At most once per
//! `sync_ms`, a call first re-reads the shared state (one Query). A failure is added to the
//! shared window at once (one `ADD`, carrying the instance's successes with it), so that an
//! outage is seen across instances within a few failed calls. Successes alone are only worth
//! sharing while the window holds failures (they are what keeps a few failures from opening the
//! channel): an instance adds them at its next sync once it has seen failures there, and
//! otherwise drops those older than the window. A healthy channel costs one read per instance
//! per `sync_ms` and no write. The state item is written only when it changes: an opening, a
//! trial, a closing.

use std::sync::Mutex;

use alipay::response::Disposition;
use serde_json::json;

use crate::channel::client::CallError;
use domain::breaker::{
    Admission, Health, Phase, Settings, Share, Window, admit, after_trial, share, trips,
};
use domain::channel::ChannelId;
use store::{Opening, Store, StoreError};

/// The longest wait for the shared state: about one DynamoDB attempt. Beyond it the breaker
/// goes on with what it last knew rather than hold the call.
const STATE_IO_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `io`, or a store error once [`STATE_IO_LIMIT`] has passed.
async fn bounded<T>(
    io: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    // On the heap: the store's futures are large, and every Alipay call awaits these.
    tokio::time::timeout(STATE_IO_LIMIT, Box::pin(io))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the breaker's state did not answer in time".into(),
            ))
        })
}

/// What a call was admitted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    Call,
    /// A trial call: its outcome closes the channel or opens it again.
    Trial {
        generation: u64,
    },
}

#[derive(Debug, Default)]
struct Local {
    phase: Phase,
    window: Window,
    /// When the shared state was last read (`None`: never).
    seen_at_ms: Option<i64>,
    pending_calls: u64,
    pending_failures: u64,
    /// When the oldest pending call was made.
    pending_since_ms: Option<i64>,
    last_failure: String,
}

pub struct Breaker {
    channel: ChannelId,
    settings: Settings,
    store: Store,
    local: Mutex<Local>,
}

impl Breaker {
    pub fn new(channel: ChannelId, settings: Settings, store: Store) -> Breaker {
        Breaker {
            channel,
            settings,
            store,
            local: Mutex::new(Local::default()),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call would be refused now (re-reading the shared state when this instance's
    /// copy is older than `sync_ms`), without taking a trial lease: how a new payment picks its
    /// channel, and how a refund decides to wait before it is sent.
    pub async fn check(&self, now_ms: i64) -> Result<(), CallError> {
        self.sync_if_stale(now_ms).await;
        match admit(&self.local().phase, now_ms) {
            Admission::Refuse { retry_after_ms } => Err(self.open_error(retry_after_ms)),
            Admission::Call | Admission::Trial { .. } => Ok(()),
        }
    }

    /// Admits one call: `Err(CallError::Open)` while the channel is open; once its cool-down
    /// is over, the one instance that takes the trial lease makes a trial call.
    pub async fn admit(&self, now_ms: i64) -> Result<Permit, CallError> {
        self.sync_if_stale(now_ms).await;
        let phase = self.local().phase.clone();
        match admit(&phase, now_ms) {
            Admission::Call => Ok(Permit::Call),
            Admission::Refuse { retry_after_ms } => Err(self.open_error(retry_after_ms)),
            Admission::Trial { generation } => {
                let lease = now_ms + self.settings.trial_lease_ms;
                match bounded(self.store.breaker_claim_trial(
                    self.channel,
                    generation,
                    lease,
                    now_ms,
                ))
                .await
                {
                    Ok(Some(phase)) => {
                        tracing::info!(channel = %self.channel, generation, "trial call");
                        self.local().phase = phase;
                        Ok(Permit::Trial { generation })
                    }
                    // Another instance has the trial, or the state moved: read it again next time.
                    Ok(None) => {
                        self.local().seen_at_ms = None;
                        Err(self.open_error(domain::breaker::MIN_RETRY_AFTER_MS))
                    }
                    Err(error) => {
                        tracing::warn!(channel = %self.channel, error = %error, "the trial lease could not be taken");
                        Err(self.open_error(domain::breaker::MIN_RETRY_AFTER_MS))
                    }
                }
            }
        }
    }

    /// Counts a call's outcome. `what`: the method and error kind, for the state item when
    /// this failure opens the channel (never a request's content).
    pub async fn record(&self, permit: Permit, health: Health, what: &str, now_ms: i64) {
        if health == Health::Failing {
            emit_failure(self.channel, now_ms);
        }
        match permit {
            Permit::Call => {
                let flush = {
                    let mut local = self.local();
                    if health != Health::Neutral && local.pending_since_ms.is_none() {
                        local.pending_since_ms = Some(now_ms);
                    }
                    match health {
                        Health::Neutral => false,
                        Health::Healthy => {
                            local.pending_calls += 1;
                            false
                        }
                        Health::Failing => {
                            local.pending_calls += 1;
                            local.pending_failures += 1;
                            what.clone_into(&mut local.last_failure);
                            true
                        }
                    }
                };
                if flush {
                    self.sync(now_ms).await;
                }
            }
            Permit::Trial { generation } => {
                let phase = self.local().phase.clone();
                let after = after_trial(&self.settings, &phase, health, now_ms);
                let bucket = self.settings.bucket(now_ms);
                match bounded(self.store.breaker_after_trial(
                    self.channel,
                    generation,
                    after,
                    now_ms,
                    bucket,
                ))
                .await
                {
                    Ok(Some(phase)) => {
                        match after {
                            domain::breaker::AfterTrial::Close => {
                                tracing::warn!(channel = %self.channel, "channel closed: trial calls succeeded");
                                self.local().window = Window {
                                    bucket,
                                    ..Window::default()
                                };
                            }
                            domain::breaker::AfterTrial::Reopen { .. } => {
                                tracing::warn!(channel = %self.channel, failure = what, "trial call failed: channel open again");
                            }
                            _ => {}
                        }
                        let mut local = self.local();
                        local.phase = phase;
                        local.seen_at_ms = Some(now_ms);
                    }
                    Ok(None) => self.local().seen_at_ms = None,
                    Err(error) => {
                        tracing::warn!(channel = %self.channel, error = %error, "a trial's outcome could not be recorded");
                        self.local().seen_at_ms = None;
                    }
                }
            }
        }
    }

    fn open_error(&self, retry_after_ms: i64) -> CallError {
        CallError::Open {
            channel: self.channel.as_str().to_owned(),
            retry_after_ms,
        }
    }

    async fn sync_if_stale(&self, now_ms: i64) {
        let stale = self
            .local()
            .seen_at_ms
            .is_none_or(|at| now_ms - at >= self.settings.sync_ms);
        if stale {
            self.sync(now_ms).await;
        }
    }

    /// Reads the shared state and adds this instance's counts to the shared window (at once);
    /// opens the channel when the window says so. A failed read leaves the copy as it was
    /// (calls go on as before), and the counts are kept for the next try.
    async fn sync(&self, now_ms: i64) {
        let (calls, failures, reason) = {
            let mut local = self.local();
            local.seen_at_ms = Some(now_ms);
            match share(
                &self.settings,
                local.pending_failures,
                &local.window,
                local.pending_since_ms,
                now_ms,
            ) {
                Share::All => {
                    local.pending_since_ms = None;
                    (
                        std::mem::take(&mut local.pending_calls),
                        std::mem::take(&mut local.pending_failures),
                        local.last_failure.clone(),
                    )
                }
                Share::Drop => {
                    local.pending_calls = 0;
                    local.pending_since_ms = None;
                    (0, 0, String::new())
                }
                Share::Keep => (0, 0, String::new()),
            }
        };
        let bucket = self.settings.bucket(now_ms);
        let add = async {
            if calls == 0 {
                return Ok(None);
            }
            self.store
                .breaker_add(self.channel, bucket, calls, failures)
                .await
                .map(Some)
        };
        let (read, added) = tokio::join!(
            bounded(self.store.breaker_state(self.channel)),
            bounded(add)
        );
        if let Err(error) = &added {
            tracing::warn!(channel = %self.channel, error = %error, "the breaker's counts could not be shared");
            let mut local = self.local();
            local.pending_calls += calls;
            local.pending_failures += failures;
        }
        let (phase, read_window) = match read {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(channel = %self.channel, error = %error, "the breaker's state could not be read");
                return;
            }
        };
        let window = match added {
            Ok(Some(window)) => window,
            _ => read_window,
        };
        let opening = !phase.open && trips(&self.settings, &window, now_ms);
        {
            let mut local = self.local();
            local.phase = phase.clone();
            local.window = window;
        }
        emit_state(self.channel, &phase, calls, now_ms);
        if opening {
            self.open(&phase, &window, reason, now_ms).await;
        }
    }

    async fn open(&self, seen: &Phase, window: &Window, reason: String, now_ms: i64) {
        let (calls, failures) = window.counts(now_ms, self.settings.window_ms);
        let opening = Opening {
            calls,
            failures,
            reason,
        };
        let until = now_ms + self.settings.cool_down_ms;
        match bounded(
            self.store
                .breaker_open(self.channel, seen, &opening, until, now_ms),
        )
        .await
        {
            Ok(Some(phase)) => {
                tracing::warn!(
                    channel = %self.channel,
                    calls,
                    failures,
                    reason = %opening.reason,
                    cool_down_ms = self.settings.cool_down_ms,
                    "channel opened: calls fail fast until the cool-down is over"
                );
                emit_opened(self.channel, now_ms);
                let mut local = self.local();
                local.phase = phase;
            }
            // Another instance opened it first (or it changed): read it again next time.
            Ok(None) => self.local().seen_at_ms = None,
            Err(error) => {
                tracing::warn!(channel = %self.channel, error = %error, "the channel could not be opened");
            }
        }
    }
}

/// One per-channel metric, in the Embedded Metric Format (from the log, no API call).
fn emf(channel: ChannelId, now_ms: i64, metric: &str, unit: &str, value: f64) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": "AlipayGateway",
                "Dimensions": [["Channel"]],
                "Metrics": [{"Name": metric, "Unit": unit}],
            }],
        },
        "Channel": channel.as_str(),
        metric: value,
    })
}

/// `ChannelState`: 0 closed, 1 open, 0.5 trial calls allowed (at each sync; `shared_calls`,
/// not a metric, is what this sync added to the shared window: 0 when it wrote nothing).
fn emit_state(channel: ChannelId, phase: &Phase, shared_calls: u64, now_ms: i64) {
    let value = domain::breaker::state_value(phase, now_ms);
    let mut line = emf(channel, now_ms, "ChannelState", "None", value);
    line["shared_calls"] = json!(shared_calls);
    println!("{line}");
}

/// `ChannelFailures`: one per failed call.
fn emit_failure(channel: ChannelId, now_ms: i64) {
    println!("{}", emf(channel, now_ms, "ChannelFailures", "Count", 1.0));
}

/// `ChannelOpened`: once per opening, by the instance that opened it (the alarm's metric).
fn emit_opened(channel: ChannelId, now_ms: i64) {
    println!("{}", emf(channel, now_ms, "ChannelOpened", "Count", 1.0));
}

/// The health of a channel that a call's result shows (a call's error is the HTTP edge's, which
/// is why this is here and not in `domain::breaker`).
pub fn health_of(result: &Result<Disposition, &CallError>) -> Health {
    match result {
        Ok(Disposition::RetrySame) => Health::Failing,
        Ok(_) => Health::Healthy,
        Err(CallError::Open { .. }) => Health::Neutral,
        Err(CallError::Timeout(limit)) if limit.is_zero() => Health::Neutral,
        Err(CallError::Timeout(_) | CallError::Unavailable(_)) => Health::Failing,
        Err(CallError::Untrusted(_) | CallError::Sign(_)) => Health::Failing,
    }
}

#[cfg(test)]
mod health_tests {
    use std::time::Duration;

    use alipay::response::Disposition;
    use domain::breaker::Health;

    use super::health_of;
    use crate::channel::client::CallError;

    #[test]
    fn outages_fail_and_business_answers_do_not() {
        assert_eq!(health_of(&Ok(Disposition::Success)), Health::Healthy);
        assert_eq!(
            health_of(&Ok(Disposition::BusinessFailure)),
            Health::Healthy
        );
        assert_eq!(health_of(&Ok(Disposition::Rejected)), Health::Healthy);
        assert_eq!(health_of(&Ok(Disposition::QueryFirst)), Health::Healthy);
        assert_eq!(health_of(&Ok(Disposition::RetrySame)), Health::Failing);
        let timeout = CallError::Timeout(Duration::from_secs(6));
        assert_eq!(health_of(&Err(&timeout)), Health::Failing);
        let http = CallError::Unavailable("HTTP 502".into());
        assert_eq!(health_of(&Err(&http)), Health::Failing);
        // KMS is part of the channel: a signature that cannot be made fails it.
        let kms = CallError::Sign(alipay::signer::SignError::Unavailable("throttled".into()));
        assert_eq!(health_of(&Err(&kms)), Health::Failing);
        let forged =
            CallError::Untrusted(alipay::response::ResponseError::NotJson("<html>".into()));
        assert_eq!(health_of(&Err(&forged)), Health::Failing);
        let no_time = CallError::Timeout(Duration::ZERO);
        assert_eq!(health_of(&Err(&no_time)), Health::Neutral);
        let open = CallError::Open {
            channel: "primary".into(),
            retry_after_ms: 1_000,
        };
        assert_eq!(health_of(&Err(&open)), Health::Neutral);
    }
}
