//! A fault-injecting HTTP proxy between the AWS SDK and the local stand-in. Each request to
//! DynamoDB or KMS may, with a seeded probability, be answered with a throttling error or an
//! HTTP 500 without reaching moto, hang past the SDK's attempt time-out, or be executed by moto
//! with its answer lost (the connection drops).
//!
//! It also counts every request it receives by operation (`DynamoDB.GetItem`, `KMS.Sign`), so
//! a test can measure a route's round trips where the stand-in sees them.
//!
//! And it gives DynamoDB's answers to contention, which the stand-in (one request at a time)
//! never gives: with [`FaultProxy::set_contention`], a `TransactWriteItems` that touches an item
//! another write still in flight through the proxy touches is cancelled with
//! `TransactionConflict` (a single-item write to an item a transaction holds gets
//! `TransactionConflictException`), as DynamoDB cancels conflicting transactions; and requests are
//! throttled at random (`ThrottlingException`, `ProvisionedThroughputExceededException`, or a
//! transaction cancelled for `ThrottlingError`). [`FaultProxy::script`] answers the next
//! requests of one operation with chosen contention answers, for deterministic tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy can do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AwsFault {
    Throttle,
    Http500,
    Timeout,
    ExecutedAnswerLost,
}

impl AwsFault {
    pub fn name(self) -> &'static str {
        match self {
            AwsFault::Throttle => "throttled",
            AwsFault::Http500 => "http 500",
            AwsFault::Timeout => "time-out",
            AwsFault::ExecutedAnswerLost => "executed, answer lost",
        }
    }
}

/// DynamoDB's answers to contention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contention {
    /// `TransactionCanceledException`, reason `TransactionConflict` on the contended items.
    TransactionConflict,
    /// `TransactionCanceledException`, reason `ThrottlingError`.
    TransactionThrottled,
    /// `TransactionCanceledException`, reason `ProvisionedThroughputExceeded`.
    TransactionOverCapacity,
    /// `TransactionConflictException`: a single-item write to an item a transaction holds.
    WriteConflict,
    /// `ThrottlingException`.
    Throttling,
    /// `ProvisionedThroughputExceededException`.
    ProvisionedThroughputExceeded,
}

/// Writes in flight through the proxy: (id, the items they touch, whether a transaction).
type InFlight = Vec<(u64, Vec<String>, bool)>;

struct State {
    upstream: String,
    /// Contention: throttles per 1000 DynamoDB requests, and conflicts between writes in flight;
    /// `None` when off.
    contention: Mutex<Option<u32>>,
    /// Scripted contention answers per operation (`DynamoDB.TransactWriteItems`), used first.
    scripted: Mutex<BTreeMap<String, std::collections::VecDeque<Contention>>>,
    contended: Mutex<BTreeMap<Contention, u64>>,
    in_flight: Mutex<InFlight>,
    next_write: std::sync::atomic::AtomicU64,
    /// Faults per 1000 requests.
    rate_per_mille: AtomicU32,
    rng: Mutex<fastrand::Rng>,
    injected: Mutex<BTreeMap<(String, AwsFault), u64>>,
    /// Requests received, by operation.
    seen: Mutex<BTreeMap<String, u64>>,
    /// The last answer moto gave, by operation: (status, body), for replaying.
    answers: Mutex<BTreeMap<String, (u16, Bytes)>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

pub struct FaultProxy {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (moto's URL).
    pub async fn start(upstream: &str, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            contention: Mutex::new(None),
            scripted: Mutex::new(BTreeMap::new()),
            contended: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(Vec::new()),
            next_write: std::sync::atomic::AtomicU64::new(0),
            rate_per_mille: AtomicU32::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            injected: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
            answers: Mutex::new(BTreeMap::new()),
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new()),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { handle(&state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy { url, state, task })
    }

    pub fn set_rate_per_mille(&self, rate: u32) {
        self.state.rate_per_mille.store(rate, Ordering::Relaxed);
    }

    /// The requests received since the last call, by operation (`DynamoDB.GetItem`,
    /// `KMS.Sign`); the count starts again at zero.
    pub fn take_requests(&self) -> BTreeMap<String, u64> {
        self.state
            .seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    /// The last answer the stand-in gave to each operation: (HTTP status, body).
    pub fn recorded(&self) -> BTreeMap<String, (u16, Bytes)> {
        self.state
            .answers
            .lock()
            .map(|answers| answers.clone())
            .unwrap_or_default()
    }

    /// DynamoDB's contention from now on: conflicting writes in flight are refused as DynamoDB
    /// refuses them, and `throttle_per_mille` of the DynamoDB requests are throttled.
    pub fn set_contention(&self, throttle_per_mille: u32) {
        if let Ok(mut contention) = self.state.contention.lock() {
            *contention = Some(throttle_per_mille);
        }
    }

    /// The next requests of `operation` (`DynamoDB.TransactWriteItems`) get these answers, one
    /// each, before anything else is decided.
    pub fn script(&self, operation: &str, answers: &[Contention]) {
        if let Ok(mut scripted) = self.state.scripted.lock() {
            scripted
                .entry(operation.to_owned())
                .or_default()
                .extend(answers.iter().copied());
        }
    }

    /// Contention answers given so far, by kind.
    pub fn contended(&self) -> BTreeMap<Contention, u64> {
        self.state
            .contended
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Faults injected so far, by (boundary, fault).
    pub fn injected(&self) -> BTreeMap<(String, AwsFault), u64> {
        self.state
            .injected
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

fn pick(state: &State, boundary: &str) -> Option<AwsFault> {
    let rate = state.rate_per_mille.load(Ordering::Relaxed);
    let mut rng = state.rng.lock().ok()?;
    if rate == 0 || rng.u32(0..1000) >= rate {
        return None;
    }
    let fault = match rng.u32(0..10) {
        0..=3 => AwsFault::Throttle,
        4..=5 => AwsFault::Http500,
        6 => AwsFault::Timeout,
        _ => AwsFault::ExecutedAnswerLost,
    };
    drop(rng);
    if let Ok(mut injected) = state.injected.lock() {
        *injected.entry((boundary.to_owned(), fault)).or_default() += 1;
    }
    Some(fault)
}

fn error_response(status: u16, kind: &str, json_version: &str) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"__type":"{kind}","message":"injected by the chaos proxy"}}"#);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(value) = format!("application/x-amz-json-{json_version}").parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(
    state: &State,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (boundary, throttle_type, json_version) = if target.starts_with("DynamoDB") {
        (
            "dynamodb",
            "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            "1.0",
        )
    } else if target.starts_with("TrentService") {
        ("kms", "ThrottlingException", "1.1")
    } else {
        ("other", "ThrottlingException", "1.1")
    };
    let operation = match target.split_once('.') {
        Some((_, name)) if boundary == "dynamodb" => format!("DynamoDB.{name}"),
        Some((_, name)) if boundary == "kms" => format!("KMS.{name}"),
        _ => format!("other {}", request.uri().path()),
    };
    if let Ok(mut seen) = state.seen.lock() {
        *seen.entry(operation.clone()).or_default() += 1;
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    // Held until the answer is back (dropped at the end of this function).
    let _holding = match boundary {
        "dynamodb" => match contend(state, &operation, &body) {
            Ok(holding) => holding,
            Err(answer) => return Ok(*answer),
        },
        _ => None,
    };
    let fault = if boundary == "other" {
        None
    } else {
        pick(state, boundary)
    };
    match fault {
        Some(AwsFault::Throttle) => return Ok(error_response(400, throttle_type, json_version)),
        Some(AwsFault::Http500) => {
            return Ok(error_response(500, "InternalServerError", json_version));
        }
        Some(AwsFault::Timeout) => {
            // Past the SDK's 2 s attempt time-out; never forwarded.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            return Ok(error_response(500, "InternalServerError", json_version));
        }
        _ => {}
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut forward = Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let forward = forward
        .body(Full::new(body))
        .map_err(std::io::Error::other)?;
    let answer = state
        .client
        .request(forward)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    if fault == Some(AwsFault::ExecutedAnswerLost) {
        // moto executed it; the caller never hears (the connection drops).
        return Err(std::io::Error::other("answer lost"));
    }
    if let Ok(mut answers) = state.answers.lock() {
        answers.insert(operation, (parts.status.as_u16(), body.clone()));
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

// ---- contention ------------------------------------------------------------------------------

/// A write's hold on its items while it is in flight; released when the answer is back (or lost).
struct Holding<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.state.in_flight.lock() {
            in_flight.retain(|(id, _, _)| *id != self.id);
        }
    }
}

/// The items a DynamoDB write touches (`table|pk|sk`) and whether it is a transaction; reads
/// touch none.
fn written_items(operation: &str, body: &[u8]) -> (Vec<String>, bool) {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (Vec::new(), false);
    };
    let item_of = |write: &serde_json::Value| {
        let key = if write["Key"].is_object() {
            &write["Key"]
        } else {
            &write["Item"]
        };
        format!("{}|{}|{}", write["TableName"], key["pk"], key["sk"])
    };
    match operation {
        "DynamoDB.TransactWriteItems" => {
            let items = request["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let keys = items
                .iter()
                .filter_map(|item| item.as_object().and_then(|o| o.values().next()))
                .map(item_of)
                .collect();
            (keys, true)
        }
        "DynamoDB.PutItem" | "DynamoDB.UpdateItem" | "DynamoDB.DeleteItem" => {
            (vec![item_of(&request)], false)
        }
        _ => (Vec::new(), false),
    }
}

/// DynamoDB's contention, decided as the request arrives: `Err` with DynamoDB's answer, or `Ok`
/// with the write's hold on its items until its answer is back.
fn contend<'a>(
    state: &'a State,
    operation: &str,
    body: &[u8],
) -> Result<Option<Holding<'a>>, Box<Response<Full<Bytes>>>> {
    let (items, transaction) = written_items(operation, body);
    let scripted = state
        .scripted
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(operation).and_then(|q| q.pop_front()));
    let rate = state.contention.lock().ok().and_then(|c| *c);
    let decided = match scripted {
        Some(answer) => Some((answer, (0..items.len()).collect::<Vec<_>>())),
        None if rate.is_none() => None,
        None => {
            let mut in_flight = state
                .in_flight
                .lock()
                .map_err(|_| error_response(500, "InternalServerError", "1.0"))?;
            // Conflicts: a transaction meets any write in flight on one of its items; a single
            // write meets a transaction in flight on its item.
            let held = |key: &String, by_transactions_only: bool| {
                in_flight
                    .iter()
                    .any(|(_, keys, tx)| (*tx || !by_transactions_only) && keys.contains(key))
            };
            let contended: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, key)| held(key, !transaction))
                .map(|(i, _)| i)
                .collect();
            let throttled = state
                .rng
                .lock()
                .ok()
                .map(|mut rng| (rng.u32(0..1000) < rate.unwrap_or(0), rng.u32(0..3)));
            // Throttling is decided first, for every request: DynamoDB throttles before it looks
            // at the items (and so a run sees throttles however many writes conflict).
            let throttle = match throttled {
                Some((true, 0)) if transaction => Some((Contention::TransactionThrottled, vec![0])),
                Some((true, 1)) => Some((Contention::ProvisionedThroughputExceeded, Vec::new())),
                Some((true, _)) => Some((Contention::Throttling, Vec::new())),
                _ => None,
            };
            let answer = throttle.or_else(|| {
                let kind = if transaction {
                    Contention::TransactionConflict
                } else {
                    Contention::WriteConflict
                };
                (!contended.is_empty()).then_some((kind, contended))
            });
            if answer.is_none() && !items.is_empty() {
                let id = state.next_write.fetch_add(1, Ordering::Relaxed);
                in_flight.push((id, items.clone(), transaction));
                return Ok(Some(Holding { state, id }));
            }
            answer
        }
    };
    let Some((answer, contended)) = decided else {
        return Ok(None);
    };
    if let Ok(mut counts) = state.contended.lock() {
        *counts.entry(answer).or_default() += 1;
    }
    let cancelled = |reason: &str| {
        let reasons: Vec<serde_json::Value> = (0..items.len().max(1))
            .map(|i| {
                if contended.contains(&i) {
                    serde_json::json!({"Code": reason, "Message": "injected by the proxy"})
                } else {
                    serde_json::json!({"Code": "None"})
                }
            })
            .collect();
        let codes: Vec<&str> = reasons
            .iter()
            .map(|r| r["Code"].as_str().unwrap_or("None"))
            .collect();
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
            "CancellationReasons": reasons,
        });
        json_response(400, body)
    };
    let plain = |kind: &str| {
        json_response(
            400,
            serde_json::json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": "injected by the proxy"}),
        )
    };
    Err(Box::new(match answer {
        Contention::TransactionConflict => cancelled("TransactionConflict"),
        Contention::TransactionThrottled => cancelled("ThrottlingError"),
        Contention::TransactionOverCapacity => cancelled("ProvisionedThroughputExceeded"),
        Contention::WriteConflict => plain("TransactionConflictException"),
        Contention::Throttling => plain("ThrottlingException"),
        Contention::ProvisionedThroughputExceeded => {
            plain("ProvisionedThroughputExceededException")
        }
    }))
}

fn json_response(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(value) = "application/x-amz-json-1.0".parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
