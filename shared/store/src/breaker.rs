//! Circuit breaker items: the shared state of each channel's breaker (see `crate::breaker`).
//!
//! | item   | pk                   | sk       |                                             |
//! |--------|----------------------|----------|---------------------------------------------|
//! | window | `BREAKER#<channel>`  | `WINDOW` | calls and failures of this bucket and the last |
//! | state  | `BREAKER#<channel>`  | `STATE`  | open or closed, cool-down, trial lease      |
//!
//! Both are read with one Query. The window is written with `ADD` (no read first); the state
//! only when it changes (an opening, a trial, a closing), always under a condition on its
//! generation, so that of many instances deciding the same change one writes it. Only the
//! state item reaches the events (the publisher's filter); the window changes every second.

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};

use super::*;
use domain::breaker::{AfterTrial, Phase, Window};
use domain::channel::ChannelId;

const WINDOW_SK: &str = "WINDOW";
pub const BREAKER_STATE_SK: &str = "STATE";

fn breaker_pk(channel: ChannelId) -> String {
    format!("BREAKER#{channel}")
}

/// Why a channel opened, for the state item (and so the event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub calls: u64,
    pub failures: u64,
    /// The last failure, as the breaker saw it (no buyer data: an error kind and method).
    pub reason: String,
}

impl Store {
    /// The channel's phase and window as stored (absent items: closed, empty). One eventually
    /// consistent Query.
    pub async fn breaker_state(&self, channel: ChannelId) -> Result<(Phase, Window), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(breaker_pk(channel)))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        let mut phase = Phase::default();
        let mut window = Window::default();
        for item in output.items() {
            match get_opt_s(item, "sk").as_deref() {
                Some(BREAKER_STATE_SK) => phase = parse_phase(item)?,
                Some(WINDOW_SK) => window = parse_window(item)?,
                _ => {}
            }
        }
        Ok((phase, window))
    }

    /// Adds calls and failures to the window's `bucket`, rolling the window over when it still
    /// holds an older bucket; the window as written. One write (two at a roll-over).
    pub async fn breaker_add(
        &self,
        channel: ChannelId,
        bucket: i64,
        calls: u64,
        failures: u64,
    ) -> Result<Window, StoreError> {
        for _ in 0..3 {
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(breaker_pk(channel)))
                .key("sk", s(WINDOW_SK))
                .update_expression("ADD calls :c, failures :f")
                .condition_expression("#bucket = :bucket")
                .expression_attribute_names("#bucket", "bucket")
                .expression_attribute_values(":bucket", n(bucket))
                .expression_attribute_values(":c", n(calls))
                .expression_attribute_values(":f", n(failures))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match added {
                Ok(output) => return parse_window(output.attributes().unwrap_or(&Item::new())),
                Err(error) => match conditional_old(&error) {
                    Some(old) => old,
                    None => return Err(sdk_error(&error)),
                },
            };
            let old = match old {
                Some(item) => parse_window(&item)?,
                None => Window {
                    bucket: i64::MIN,
                    ..Window::default()
                },
            };
            if old.bucket > bucket {
                // Another instance's clock is ahead: count these in its bucket next time.
                return Ok(old);
            }
            let rolled = old.rolled_to(bucket);
            let condition = if old.bucket == i64::MIN {
                "attribute_not_exists(pk)"
            } else {
                "#bucket = :old"
            };
            let mut put = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(breaker_pk(channel)))
                .key("sk", s(WINDOW_SK))
                .update_expression("SET #bucket = :bucket, calls = :c, failures = :f, prev_calls = :pc, prev_failures = :pf")
                .condition_expression(condition)
                .expression_attribute_names("#bucket", "bucket")
                .expression_attribute_values(":bucket", n(bucket))
                .expression_attribute_values(":c", n(calls))
                .expression_attribute_values(":f", n(failures))
                .expression_attribute_values(":pc", n(rolled.prev_calls))
                .expression_attribute_values(":pf", n(rolled.prev_failures))
                .return_values(ReturnValue::AllNew);
            if old.bucket != i64::MIN {
                put = put.expression_attribute_values(":old", n(old.bucket));
            }
            match put.send().await {
                Ok(output) => return parse_window(output.attributes().unwrap_or(&Item::new())),
                // Another instance rolled it first: add to its bucket.
                Err(error) if conditional_old(&error).is_some() => continue,
                Err(error) => return Err(sdk_error(&error)),
            }
        }
        Err(StoreError::Conflict(
            "the breaker window kept changing".into(),
        ))
    }

    /// Opens a closed channel (or a channel never written): `Some(phase)` when this call made
    /// the change, `None` when another instance already had.
    pub async fn breaker_open(
        &self,
        channel: ChannelId,
        seen: &Phase,
        opening: &Opening,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Phase>, StoreError> {
        let update = self
            .state_update(channel)
            .update_expression(
                "SET #open = :true, generation = :next, opened_at_ms = :now, until_ms = :until, \
                 trial_lease_until_ms = :zero, trial_successes = :zero, calls = :calls, \
                 failures = :failures, reason = :reason, channel = :channel, updated_at_ms = :now",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#open = :false AND generation = :seen)",
            )
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":seen", n(seen.generation))
            .expression_attribute_values(":next", n(seen.generation + 1))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":calls", n(opening.calls))
            .expression_attribute_values(":failures", n(opening.failures))
            .expression_attribute_values(":reason", s(opening.reason.clone()))
            .expression_attribute_values(":channel", s(channel.as_str()));
        self.phase_change(update).await
    }

    /// Takes the trial lease of an open channel whose cool-down is over: `Some(phase)` when
    /// this call may make the trial call.
    pub async fn breaker_claim_trial(
        &self,
        channel: ChannelId,
        generation: u64,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Phase>, StoreError> {
        let update = self
            .state_update(channel)
            .update_expression("SET trial_lease_until_ms = :lease")
            .condition_expression(
                "#open = :true AND generation = :g AND until_ms <= :now AND trial_lease_until_ms <= :now",
            )
            .expression_attribute_values(":g", n(generation))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":lease", n(lease_until_ms));
        self.phase_change(update).await
    }

    /// Records a trial call's outcome (see [`AfterTrial`]). A closing also empties the window,
    /// so that the outage's failures cannot open it again at once.
    pub async fn breaker_after_trial(
        &self,
        channel: ChannelId,
        generation: u64,
        after: AfterTrial,
        now_ms: i64,
        bucket: i64,
    ) -> Result<Option<Phase>, StoreError> {
        let base = |expression: &str| {
            Update::builder()
                .table_name(&self.table)
                .key("pk", s(breaker_pk(channel)))
                .key("sk", s(BREAKER_STATE_SK))
                .update_expression(expression)
                .condition_expression("#open = :true AND generation = :g")
                .expression_attribute_names("#open", "open")
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":g", n(generation))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":now", n(now_ms))
        };
        let update = match after {
            AfterTrial::Count => base(
                "SET trial_lease_until_ms = :zero, updated_at_ms = :now ADD trial_successes :one",
            )
            .expression_attribute_values(":one", n(1)),
            AfterTrial::Release => base("SET trial_lease_until_ms = :zero, updated_at_ms = :now"),
            AfterTrial::Reopen { until_ms } => base(
                "SET until_ms = :until, trial_lease_until_ms = :zero, trial_successes = :zero, \
                 generation = :next, updated_at_ms = :now",
            )
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":next", n(generation + 1)),
            AfterTrial::Close => base(
                "SET #open = :false, trial_lease_until_ms = :zero, trial_successes = :zero, \
                 closed_at_ms = :now, updated_at_ms = :now",
            )
            .expression_attribute_values(":false", AttributeValue::Bool(false)),
        }
        .build()
        .map_err(build_error)?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if after == AfterTrial::Close {
            let empty = Put::builder()
                .table_name(&self.table)
                .item("pk", s(breaker_pk(channel)))
                .item("sk", s(WINDOW_SK))
                .item("bucket", n(bucket))
                .item("calls", n(0))
                .item("failures", n(0))
                .item("prev_calls", n(0))
                .item("prev_failures", n(0))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(empty).build());
        }
        match self.transact(items).await? {
            Ok(()) => Ok(Some(self.breaker_state(channel).await?.0)),
            Err(_) => Ok(None),
        }
    }

    /// An update of a channel's state item, `#open` and `:true` defined.
    fn state_update(
        &self,
        channel: ChannelId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(breaker_pk(channel)))
            .key("sk", s(BREAKER_STATE_SK))
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
    }

    /// A conditional change of a state item: the phase as written, or `None` when the
    /// condition refused it.
    async fn phase_change(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<Option<Phase>, StoreError> {
        match update.return_values(ReturnValue::AllNew).send().await {
            Ok(output) => Ok(Some(parse_phase(
                output.attributes().unwrap_or(&Item::new()),
            )?)),
            Err(error) if conditional_old(&error).is_some() => Ok(None),
            Err(error) => Err(sdk_error(&error)),
        }
    }
}

/// `Some(old item)` when a conditional update failed its condition (`Some(None)`: no item).
fn conditional_old<R>(
    error: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> Option<Option<Item>> {
    match error {
        SdkError::ServiceError(service) => match service.err() {
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed) => {
                Some(failed.item().cloned())
            }
            _ => None,
        },
        _ => None,
    }
}

fn parse_window(item: &Item) -> Result<Window, StoreError> {
    Ok(Window {
        bucket: get_n_or_zero(item, "bucket")?,
        calls: get_n_or_zero(item, "calls")?,
        failures: get_n_or_zero(item, "failures")?,
        prev_calls: get_n_or_zero(item, "prev_calls")?,
        prev_failures: get_n_or_zero(item, "prev_failures")?,
    })
}

pub fn parse_phase(item: &Item) -> Result<Phase, StoreError> {
    Ok(Phase {
        open: item
            .get("open")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        generation: get_n_or_zero(item, "generation")?,
        opened_at_ms: get_n_or_zero(item, "opened_at_ms")?,
        until_ms: get_n_or_zero(item, "until_ms")?,
        trial_lease_until_ms: get_n_or_zero(item, "trial_lease_until_ms")?,
        trial_successes: get_n_or_zero(item, "trial_successes")?,
    })
}
