//! The publisher function: the orders table's DynamoDB stream (the outbox) in, merchant events
//! on the gateway's EventBridge bus out.
//!
//! Lambda's event source mapping reads the stream in order, shard by shard, and hands this
//! function batches of records. Each record becomes at most one event
//! ([`gateway::events::event_of`]); events go out in record order, ten per `PutEvents`. When an
//! entry or a call fails, the function reports the sequence number of the first record not
//! published (`ReportBatchItemFailures`): Lambda retries from there, so nothing after a failure
//! is skipped and nothing before it is lost. Records already published may be published again
//! on a retry: delivery is at least once, and each event's `event_id` is the same every time.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use gateway::events::{Event, Image, SOURCE, event_of};

/// EventBridge takes at most 10 entries and 256 KiB per `PutEvents`.
const ENTRIES_PER_CALL: usize = 10;
const BYTES_PER_CALL: usize = 200 * 1024;

/// Where events go.
#[derive(Clone, Debug)]
pub struct Publisher {
    pub client: aws_sdk_eventbridge::Client,
    /// `EVENT_BUS_NAME`: the bus's name or ARN.
    pub bus: String,
}

/// One stream record: its sequence number and the item before and after.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub sequence: String,
    pub old: Option<Image>,
    pub new: Option<Image>,
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events accepted by EventBridge.
    pub published: usize,
    /// Records that are no event (audit entries, unchanged states, deletions).
    pub skipped: usize,
    /// The first record not published; it and every later record are to be retried.
    pub retry_from: Option<String>,
}

impl Outcome {
    /// The answer for Lambda's event source mapping.
    pub fn response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence) = &self.retry_from {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// An EMF line: CloudWatch turns it into the `EventsPublished` and `EventsFailed` metrics.
    pub fn emf_line(&self, function: &str) -> String {
        serde_json::json!({
            "_aws": {
                "Timestamp": gateway::clock::now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        {"Name": "EventsPublished", "Unit": "Count"},
                        {"Name": "EventsFailed", "Unit": "Count"},
                    ],
                }],
            },
            "Function": function,
            "EventsPublished": self.published,
            "EventsFailed": u8::from(self.retry_from.is_some()),
        })
        .to_string()
    }
}

/// The records of a stream event, images as the DynamoDB SDK's attribute values.
pub fn records_of(event: StreamEvent) -> Vec<Record> {
    event.records.into_iter().map(record_of).collect()
}

fn record_of(record: EventRecord) -> Record {
    let image = |item: serde_dynamo::Item| -> Option<Image> {
        (!item.is_empty()).then(|| HashMap::<String, AttributeValue>::from(item))
    };
    Record {
        sequence: record.change.sequence_number.unwrap_or_default(),
        old: image(record.change.old_image),
        new: image(record.change.new_image),
    }
}

/// Publishes the events of `records`, in order, stopping at the first that cannot be
/// published (or whose item cannot be read: retried, then left to the mapping's on-failure
/// destination, never skipped silently).
pub async fn publish(publisher: &Publisher, records: &[Record]) -> Outcome {
    let mut outcome = Outcome::default();
    let mut events: Vec<Pending<'_>> = Vec::new();
    let mut unreadable = None;
    for record in records {
        match event_of(record.old.as_ref(), record.new.as_ref()) {
            Ok(Some(event)) => events.push(Pending::new(&publisher.bus, &record.sequence, event)),
            Ok(None) => outcome.skipped += 1,
            Err(error) => {
                // The keys only: the item may carry a buyer's data.
                tracing::error!(sequence = %record.sequence, keys = %keys_of(record), %error, "a stream record's item cannot be read");
                unreadable = Some(record.sequence.clone());
                break;
            }
        }
    }
    let mut rest = events.as_slice();
    while !rest.is_empty() {
        let take = batch_len(rest);
        let (chunk, after) = rest.split_at(take);
        match put(publisher, chunk).await {
            Ok(()) => outcome.published += chunk.len(),
            Err((accepted, error)) => {
                outcome.published += accepted;
                let failed = &chunk[accepted];
                tracing::warn!(sequence = %failed.sequence, event_id = %failed.id, error, "events not published; the batch is retried from here");
                outcome.retry_from = Some(failed.sequence.to_owned());
                return outcome;
            }
        }
        rest = after;
    }
    outcome.retry_from = unreadable;
    outcome
}

/// An event ready for `PutEvents`, with the record it came from.
struct Pending<'a> {
    sequence: &'a str,
    id: String,
    /// What the entry counts against the call's size limit.
    bytes: usize,
    entry: PutEventsRequestEntry,
}

impl<'a> Pending<'a> {
    fn new(bus: &str, sequence: &'a str, event: Event) -> Pending<'a> {
        let detail = event.detail.to_string();
        Pending {
            sequence,
            bytes: detail.len() + event.detail_type.len() + SOURCE.len(),
            entry: PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(SOURCE)
                .detail_type(event.detail_type)
                .detail(detail)
                .time(DateTime::from_millis(event.occurred_at_ms))
                .build(),
            id: event.id,
        }
    }
}

/// How many of `events` go in the next call: at most ten, and within the size limit.
fn batch_len(events: &[Pending<'_>]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for event in events.iter().take(ENTRIES_PER_CALL) {
        bytes += event.bytes;
        if count > 0 && bytes > BYTES_PER_CALL {
            break;
        }
        count += 1;
    }
    count
}

/// One `PutEvents`; on failure, how many leading entries were accepted, and why the next was
/// not. EventBridge may accept entries after a failed one: they are published again on the
/// retry (at least once).
async fn put(publisher: &Publisher, chunk: &[Pending<'_>]) -> Result<(), (usize, String)> {
    let entries = chunk.iter().map(|event| event.entry.clone()).collect();
    let answer = publisher
        .client
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| (0, store::error_chain(&e)))?;
    if answer.failed_entry_count() == 0 {
        return Ok(());
    }
    let results = answer.entries();
    let failed = results
        .iter()
        .position(|entry| entry.error_code().is_some() || entry.event_id().is_none())
        .unwrap_or(0);
    let reason = results
        .get(failed)
        .map(|entry| {
            format!(
                "{}: {}",
                entry.error_code().unwrap_or("failed"),
                entry.error_message().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "PutEvents reported failed entries".into());
    Err((failed, reason))
}

fn keys_of(record: &Record) -> String {
    let image = record.new.as_ref().or(record.old.as_ref());
    let key = |name: &str| {
        image
            .and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    format!("{}/{}", key("pk"), key("sk"))
}
