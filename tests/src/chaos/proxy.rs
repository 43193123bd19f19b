//! A fault-injecting HTTP proxy between the AWS SDK and the local stand-in. Each request to
//! DynamoDB or KMS may, with a seeded probability, be answered with a throttling error or an
//! HTTP 500 without reaching moto, hang past the SDK's attempt time-out, or be executed by moto
//! with its answer lost (the connection drops).
//!
//! It also counts every request it receives by operation (`DynamoDB.GetItem`, `KMS.Sign`), so
//! a test can measure a route's round trips where the stand-in sees them.

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

struct State {
    upstream: String,
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
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
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
