//! The events path on the stand-in, as AWS runs it: the table's stream read the way Lambda's
//! event source mapping reads it (shard by shard, in order, ten records a batch, retried from
//! the first record the function reports as failed), each batch handed to the publisher
//! function's handler as the JSON event Lambda sends, the events put on an EventBridge bus of
//! the stand-in, and a rule there sending them to an SQS queue that tests and `make run` read.
//! EventBridge's routing and the queue are the stand-in's, not ours.

use std::collections::BTreeMap;

use aws_sdk_dynamodbstreams::types::{Record as StreamRecord, ShardIteratorType};
use publisher::{Publisher, publish, records_of};
use serde_json::{Value, json};

/// Records per batch, as the template's event source mapping sets it.
const BATCH_SIZE: usize = 10;

pub struct EventsPath {
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    stream_arn: String,
    /// Per shard: where the next read starts.
    positions: BTreeMap<String, Position>,
    pub publisher: Publisher,
    pub queue_url: String,
    /// The event source mapping's filter from template.yaml: the sort keys that reach the
    /// function (exact, or a prefix).
    filter: Vec<SortKeyFilter>,
    /// The risk-signals function on the same stream: its handler, its filter, and its tumbling
    /// window as Lambda keeps it (the window's start and state).
    signals: SignalsWindow,
}

/// The risk-signals function's event source mapping: the template's tumbling windows (state
/// carried between batches of a window, a last invoke when a window ends).
struct SignalsWindow {
    handler: risk_signals::Signals,
    filter: Vec<SortKeyFilter>,
    window_ms: i64,
    started_ms: i64,
    state: std::collections::HashMap<String, String>,
}

impl SignalsWindow {
    async fn invoke(
        &mut self,
        batch: &[StreamRecord],
        stream_arn: &str,
    ) -> Result<Option<String>, String> {
        let now = gateway::clock::now_ms();
        let start = now - now.rem_euclid(self.window_ms);
        if start != self.started_ms {
            if !self.state.is_empty() {
                let last = self.event(&[], stream_arn, true)?;
                risk_signals::handle(&self.handler, last).await;
            }
            self.started_ms = start;
            self.state.clear();
        }
        let event = self.event(batch, stream_arn, false)?;
        let response = risk_signals::handle(&self.handler, event).await;
        self.state = response.time_window_event_response_properties.state;
        Ok(response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.clone()))
    }

    fn event(
        &self,
        batch: &[StreamRecord],
        stream_arn: &str,
        last: bool,
    ) -> Result<aws_lambda_events::event::dynamodb::TimeWindowEvent, String> {
        let iso = |ms: i64| {
            aws_sdk_dynamodb::primitives::DateTime::from_millis(ms)
                .fmt(aws_sdk_dynamodb::primitives::DateTimeFormat::DateTime)
                .unwrap_or_default()
        };
        let mut event = lambda_event(batch, stream_arn);
        if let Some(object) = event.as_object_mut() {
            object.insert(
                "window".into(),
                json!({"start": iso(self.started_ms), "end": iso(self.started_ms + self.window_ms)}),
            );
            object.insert("state".into(), json!(self.state));
            object.insert("shardId".into(), json!("local"));
            object.insert("eventSourceARN".into(), json!(stream_arn));
            object.insert("isFinalInvokeForWindow".into(), json!(last));
            object.insert("isWindowTerminatedEarly".into(), json!(false));
        }
        serde_json::from_value(event).map_err(|e| format!("the window event does not parse: {e}"))
    }
}

/// The template's `TumblingWindowInSeconds` of the risk-signals function, in ms.
fn signals_window_ms() -> Result<i64, String> {
    let template = crate::template::read_template(&crate::template::template_path())?;
    template["Resources"]["RiskSignalsFunction"]["Properties"]["Events"]["Changes"]["Properties"]
        ["TumblingWindowInSeconds"]
        .as_i64()
        .map(|s| s * 1000)
        .ok_or_else(|| "template.yaml: RiskSignalsFunction has no TumblingWindowInSeconds".into())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortKeyFilter {
    Exactly(String),
    Prefix(String),
}

/// The publisher's event filter in template.yaml (`{"dynamodb":{"Keys":{"sk":{"S":[...]}}}}`).
pub fn template_filter() -> Result<Vec<SortKeyFilter>, String> {
    function_filter("PublisherFunction")
}

/// The stream filter of a function of template.yaml.
pub fn function_filter(function: &str) -> Result<Vec<SortKeyFilter>, String> {
    let template = crate::template::read_template(&crate::template::template_path())?;
    let pattern = template
        .get("Resources")
        .and_then(|r| r.get(function))
        .and_then(|f| f.get("Properties"))
        .and_then(|p| p.get("Events"))
        .and_then(|e| e.get("Changes"))
        .and_then(|c| c.get("Properties"))
        .and_then(|p| p.get("FilterCriteria"))
        .and_then(|f| f.get("Filters"))
        .and_then(|f| f.get(0))
        .and_then(|f| f.get("Pattern"))
        .and_then(serde_yaml_ng::Value::as_str)
        .ok_or_else(|| format!("template.yaml: {function} has no stream filter"))?;
    let pattern: Value = serde_json::from_str(pattern).map_err(|e| format!("filter: {e}"))?;
    pattern["dynamodb"]["Keys"]["sk"]["S"]
        .as_array()
        .ok_or("the filter is not on the sort key")?
        .iter()
        .map(|rule| match (rule.as_str(), rule["prefix"].as_str()) {
            (Some(exact), _) => Ok(SortKeyFilter::Exactly(exact.to_owned())),
            (None, Some(prefix)) => Ok(SortKeyFilter::Prefix(prefix.to_owned())),
            _ => Err(format!("a filter rule this stand-in does not know: {rule}")),
        })
        .collect()
}

fn passes(filter: &[SortKeyFilter], record: &StreamRecord) -> bool {
    let sk = record
        .dynamodb
        .as_ref()
        .and_then(|c| c.keys.as_ref())
        .and_then(|k| k.get("sk"))
        .and_then(|v| v.as_s().ok());
    sk.is_some_and(|sk| {
        filter.iter().any(|rule| match rule {
            SortKeyFilter::Exactly(exact) => sk == exact,
            SortKeyFilter::Prefix(prefix) => sk.starts_with(prefix.as_str()),
        })
    })
}

/// Where a shard's next read starts. A fresh iterator for every read: on the stand-in, an
/// iterator taken before a cancelled transaction keeps reading the table's pre-rollback copy
/// (it shows the cancelled writes and never the later ones).
#[derive(Clone, Debug)]
enum Position {
    After(String),
    /// Re-read from this record (the publisher asked for a retry).
    At(String),
}

/// What one pump did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    pub records: usize,
    pub published: usize,
    /// Batches the publisher asked to retry.
    pub retries: usize,
}

impl EventsPath {
    /// Creates the bus `name`, a queue `name` and a rule between them, and finds `table`'s
    /// stream.
    pub async fn create(
        sdk_config: &aws_config::SdkConfig,
        table: &str,
        name: &str,
    ) -> Result<EventsPath, String> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk_config);
        let events = aws_sdk_eventbridge::Client::new(sdk_config);
        let sqs = aws_sdk_sqs::Client::new(sdk_config);
        let streams = aws_sdk_dynamodbstreams::Client::new(sdk_config);
        let described = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| format!("DescribeTable: {}", store::error_chain(&e)))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or("the table has no stream (template.yaml: StreamSpecification)")?
            .to_owned();
        let bus = events
            .create_event_bus()
            .name(name)
            .send()
            .await
            .map_err(|e| format!("CreateEventBus: {}", store::error_chain(&e)))?;
        let queue_url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| format!("CreateQueue: {}", store::error_chain(&e)))?
            .queue_url
            .ok_or("CreateQueue returned no URL")?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("GetQueueAttributes: {}", store::error_chain(&e)))?
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .ok_or("the queue has no ARN")?;
        events
            .put_rule()
            .name(name)
            .event_bus_name(name)
            .event_pattern(json!({ "source": [gateway::events::SOURCE] }).to_string())
            .send()
            .await
            .map_err(|e| format!("PutRule: {}", store::error_chain(&e)))?;
        events
            .put_targets()
            .rule(name)
            .event_bus_name(name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| format!("PutTargets: {}", store::error_chain(&e)))?;
        Ok(EventsPath {
            streams,
            sqs,
            stream_arn,
            positions: BTreeMap::new(),
            filter: template_filter()?,
            signals: SignalsWindow {
                handler: risk_signals::Signals::new(
                    store::Store::new(dynamodb.clone(), table),
                    &std::env::vars().collect(),
                )?,
                filter: function_filter("RiskSignalsFunction")?,
                window_ms: signals_window_ms()?,
                started_ms: 0,
                state: Default::default(),
            },
            publisher: Publisher {
                client: events,
                bus: bus.event_bus_arn.unwrap_or_else(|| name.to_owned()),
            },
            queue_url,
        })
    }

    /// Reads every new stream record and publishes it through the publisher's handler, batch by
    /// batch; a batch the publisher reports as failed is re-read from the failed record next
    /// time (as Lambda retries).
    pub async fn pump(&mut self) -> Result<Pumped, String> {
        let mut pumped = Pumped::default();
        let shards = self
            .streams
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| format!("DescribeStream: {}", store::error_chain(&e)))?
            .stream_description
            .map(|d| d.shards.unwrap_or_default())
            .unwrap_or_default();
        for shard in shards {
            let Some(shard_id) = shard.shard_id else {
                continue;
            };
            let (kind, sequence) = match self.positions.get(&shard_id).cloned() {
                Some(Position::After(sequence)) => {
                    (ShardIteratorType::AfterSequenceNumber, Some(sequence))
                }
                Some(Position::At(sequence)) => {
                    (ShardIteratorType::AtSequenceNumber, Some(sequence))
                }
                None => (ShardIteratorType::TrimHorizon, None),
            };
            let mut iterator = Some(self.iterator(&shard_id, kind, sequence).await?);
            let mut records = Vec::new();
            while let Some(current) = iterator.take() {
                let answer = self
                    .streams
                    .get_records()
                    .shard_iterator(current)
                    .send()
                    .await
                    .map_err(|e| format!("GetRecords: {}", store::error_chain(&e)))?;
                let page = answer.records.unwrap_or_default();
                if !page.is_empty() {
                    iterator = answer.next_shard_iterator;
                }
                records.extend(page);
            }
            // Filtered records are dropped by the mapping: read past, never sent.
            let mut position = records
                .last()
                .and_then(|r| r.dynamodb.as_ref())
                .and_then(|c| c.sequence_number.clone())
                .map(Position::After);
            // The signals function's own mapping on the same records (its retries are its
            // own: a failed batch is logged and read past here, as its bounded retries end).
            let for_signals: Vec<StreamRecord> = records
                .iter()
                .filter(|r| passes(&self.signals.filter, r))
                .cloned()
                .collect();
            for batch in for_signals.chunks(100) {
                if let Some(failed) = self.signals.invoke(batch, &self.stream_arn).await? {
                    eprintln!("risk signals: a batch failed at record {failed}");
                }
            }
            let records: Vec<StreamRecord> = records
                .into_iter()
                .filter(|r| passes(&self.filter, r))
                .collect();
            for batch in records.chunks(BATCH_SIZE) {
                pumped.records += batch.len();
                let event: aws_lambda_events::event::dynamodb::Event =
                    serde_json::from_value(lambda_event(batch, &self.stream_arn))
                        .map_err(|e| format!("the stream event does not parse: {e}"))?;
                let outcome = publish(&self.publisher, &records_of(event)).await;
                pumped.published += outcome.published;
                if let Some(sequence) = outcome.retry_from {
                    pumped.retries += 1;
                    position = Some(Position::At(sequence));
                    break;
                }
            }
            if let Some(position) = position {
                self.positions.insert(shard_id, position);
            }
        }
        Ok(pumped)
    }

    async fn iterator(
        &self,
        shard_id: &str,
        kind: ShardIteratorType,
        sequence: Option<String>,
    ) -> Result<String, String> {
        self.streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence)
            .send()
            .await
            .map_err(|e| format!("GetShardIterator: {}", store::error_chain(&e)))?
            .shard_iterator
            .ok_or_else(|| "GetShardIterator returned none".to_owned())
    }

    /// Every event the rule has delivered to the queue since the last call (as EventBridge
    /// delivers them: the envelope with `detail-type` and `detail`).
    pub async fn received(&self) -> Result<Vec<Value>, String> {
        let mut events = Vec::new();
        loop {
            let answer = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| format!("ReceiveMessage: {}", store::error_chain(&e)))?;
            let messages = answer.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(events);
            }
            let mut received = Vec::new();
            for (n, message) in messages.into_iter().enumerate() {
                let body = message.body.unwrap_or_default();
                events.push(
                    serde_json::from_str(&body)
                        .map_err(|e| format!("an event is not JSON ({e}): {body}"))?,
                );
                if let Some(handle) = message.receipt_handle {
                    received.push(
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(n.to_string())
                            .receipt_handle(handle)
                            .build()
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(received))
                .send()
                .await
                .map_err(|e| format!("DeleteMessageBatch: {}", store::error_chain(&e)))?;
        }
    }

    /// Pumps the stream, then returns what reached the queue.
    pub async fn events(&mut self) -> Result<Vec<Value>, String> {
        self.pump().await?;
        self.received().await
    }
}

/// A batch as Lambda's event source mapping sends it to the function (the wire format of the
/// DynamoDB stream event: images in DynamoDB JSON, times in epoch seconds).
pub fn lambda_event(batch: &[StreamRecord], stream_arn: &str) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .map(|record| {
            let change = record.dynamodb.as_ref();
            let image = |image: Option<
                &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
            >| {
                image.map(|image| {
                    serde_json::to_value(serde_dynamo::Item::from(image.clone()))
                        .unwrap_or(Value::Null)
                })
            };
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": change
                    .and_then(|c| c.approximate_creation_date_time)
                    .map_or(0, |t| t.secs()),
                "Keys": image(change.and_then(|c| c.keys.as_ref())),
                "SequenceNumber": change.and_then(|c| c.sequence_number.clone()),
                "SizeBytes": change.and_then(|c| c.size_bytes).unwrap_or(0),
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            });
            if let Some(object) = dynamodb.as_object_mut() {
                for (name, value) in [
                    ("NewImage", image(change.and_then(|c| c.new_image.as_ref()))),
                    ("OldImage", image(change.and_then(|c| c.old_image.as_ref()))),
                ] {
                    if let Some(value) = value {
                        object.insert(name.into(), value);
                    }
                }
            }
            json!({
                "eventID": record.event_id,
                "eventName": record.event_name.as_ref().map(|n| n.as_str().to_owned()),
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": record.aws_region,
                "eventSourceARN": stream_arn,
                "dynamodb": dynamodb,
            })
        })
        .collect();
    json!({ "Records": records })
}
