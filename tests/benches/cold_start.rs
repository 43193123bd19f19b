//! Cold start and peak memory of the functions' release binaries, next to the same job written
//! the common Python way (python-alipay-sdk + boto3 under awslambdaric), measured the same way in
//! one run. `make bench` builds the binaries, installs the Python peer and starts the stand-in.
//!
//! Each cold start is a fresh process pointed at a small Lambda Runtime API of our own (below):
//! `init` is the time from spawning the process to its first `GET /invocation/next`, `first
//! answer` to its `POST /invocation/{id}/response`; peak RSS is the kernel's high-water mark
//! (`VmHWM`) once it answered. Every answer is checked (and the order read back PAID for notify),
//! so a run that failed fast cannot pass for a fast one. DynamoDB and KMS are moto on loopback:
//! the figures are this machine's, with moto's latency in them, for both sides alike.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alipay::ids::OutTradeNo;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::states::OrderStatus;
use gateway_tests::support::{RETURN_PREFIX, TestEnv, fixtures, now_ms};
use serde_json::{Value, json};

const RUNS: usize = 7;

/// One invocation's worth of Lambda Runtime API.
#[derive(Default)]
struct Runtime {
    event: Option<Vec<u8>>,
    next_at: Option<Instant>,
    answered: Option<(Instant, Vec<u8>)>,
    error: Option<String>,
}

type Shared = Arc<Mutex<Runtime>>;

async fn next(State(state): State<Shared>) -> Response {
    let event = {
        let mut runtime = state.lock().expect("lock");
        runtime.next_at.get_or_insert_with(Instant::now);
        runtime.event.take()
    };
    match event {
        Some(body) => {
            let mut headers = HeaderMap::new();
            let deadline = (now_ms() + 30_000).to_string();
            for (name, value) in [
                ("lambda-runtime-aws-request-id", "bench-request-1"),
                ("lambda-runtime-deadline-ms", deadline.as_str()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:bench",
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000",
                ),
                ("content-type", "application/json"),
            ] {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            }
            (StatusCode::OK, headers, body).into_response()
        }
        // Later polls wait: the process is stopped once it answered.
        None => std::future::pending().await,
    }
}

async fn respond(
    State(state): State<Shared>,
    UrlPath(_id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    state.lock().expect("lock").answered = Some((Instant::now(), body.to_vec()));
    StatusCode::ACCEPTED
}

async fn error(State(state): State<Shared>, body: Bytes) -> StatusCode {
    state.lock().expect("lock").error = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

struct ColdStart {
    init: Duration,
    first_answer: Duration,
    peak_rss_kb: u64,
    answer: Value,
}

/// Spawns `command` against a fresh Runtime API holding `event`; measures its cold start.
async fn cold_start(
    mut command: std::process::Command,
    event: &Value,
) -> Result<ColdStart, String> {
    let state: Shared = Arc::new(Mutex::new(Runtime {
        event: Some(serde_json::to_vec(event).map_err(|e| e.to_string())?),
        ..Runtime::default()
    }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    command
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id();
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let runtime = state.lock().expect("lock");
        if let Some((at, body)) = &runtime.answered {
            let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            break Ok(ColdStart {
                init: runtime.next_at.map_or(Duration::ZERO, |n| n - started),
                first_answer: *at - started,
                peak_rss_kb: peak,
                answer: serde_json::from_slice(body).unwrap_or(Value::Null),
            });
        }
        if let Some(error) = &runtime.error {
            break Err(format!("the function reported an error: {error}"));
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err("no answer in 30 s".into());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("the process ended: {status}"));
        }
    };
    let _ = child.kill();
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    server.abort();
    outcome.map_err(|e| format!("{e}\n{}", String::from_utf8_lossy(&output.stderr)))
}

/// An API Gateway HTTP API (payload 2.0) event; a Function URL sends the same shape.
fn http_event(method: &str, path: &str, content_type: &str, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": content_type},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.lambda-url.us-east-1.on.aws",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000",
            "timeEpoch": now_ms()
        },
        "body": body,
        "isBase64Encoded": false
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Row {
    name: String,
    init_ms: f64,
    answer_ms: f64,
    rss_mb: f64,
}

fn summarize(name: &str, runs: &[ColdStart]) -> Row {
    Row {
        name: name.to_owned(),
        init_ms: median(runs.iter().map(|r| r.init.as_secs_f64() * 1e3).collect()),
        answer_ms: median(
            runs.iter()
                .map(|r| r.first_answer.as_secs_f64() * 1e3)
                .collect(),
        ),
        rss_mb: median(runs.iter().map(|r| r.peak_rss_kb as f64 / 1024.0).collect()),
    }
}

fn release_binary(name: &str) -> PathBuf {
    gateway_tests::bench::release_binary(name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = TestEnv::new().await;
    let simulator = gateway_tests::bench::simulator(&env).await;
    let mut function_env = gateway_tests::bench::function_env(&env, &simulator);
    function_env.insert("RUST_LOG".into(), "warn".into());
    // A notification for a fresh CREATED order, signed by the simulated Alipay.
    let notification = |out_trade_no: &str| {
        http_event(
            "POST",
            "/",
            "application/x-www-form-urlencoded; charset=utf-8",
            &gateway_tests::bench::paid_notification(&simulator, out_trade_no),
        )
    };

    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-bench/bin/python");
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python_notify");
    let mut results: Vec<(String, Vec<ColdStart>)> = Vec::new();
    for implementation in [
        "notify (Rust, this project)",
        "notify (python-alipay-sdk + boto3, awslambdaric)",
        "create-payment page (Rust, this project)",
    ] {
        let mut runs = Vec::new();
        for run in 0..RUNS {
            let out_trade_no = format!("cold_{}_{run}_{}", results.len(), now_ms());
            let (mut command, event) = if implementation.starts_with("create-payment") {
                let body = json!({"out_trade_no": out_trade_no, "amount": "88.88", "subject": "会员 Pro 年费", "channel": "page", "return_url": format!("{RETURN_PREFIX}done")});
                (
                    std::process::Command::new(release_binary("create-payment")),
                    http_event("POST", "/payments", "application/json", &body.to_string()),
                )
            } else {
                gateway_tests::bench::create_order(&env, &out_trade_no).await;
                let command = if implementation.contains("python") {
                    let mut command = std::process::Command::new(&venv);
                    command
                        .args(["-m", "awslambdaric", "handler.handler"])
                        .current_dir(&python_dir)
                        .env(
                            "APP_PRIVATE_KEY_FILE",
                            fixtures().join("keys/app_private_key.pem"),
                        );
                    command
                } else {
                    std::process::Command::new(release_binary("notify"))
                };
                (command, notification(&out_trade_no))
            };
            command.envs(&function_env);
            let measured = cold_start(command, &event)
                .await
                .unwrap_or_else(|e| panic!("{implementation}: {e}"));
            let status = measured.answer["statusCode"].as_u64();
            let body = measured.answer["body"].as_str().unwrap_or("");
            if implementation.starts_with("create-payment") {
                assert_eq!(status, Some(201), "{implementation}: {}", measured.answer);
            } else {
                assert_eq!(
                    (status, body),
                    (Some(200), "success"),
                    "{implementation}: {}",
                    measured.answer
                );
                let order = env
                    .store
                    .get_order(&OutTradeNo::parse(&out_trade_no).expect("id"))
                    .await
                    .expect("read")
                    .expect("order");
                assert_eq!(
                    order.status,
                    OrderStatus::Paid,
                    "{implementation} did not record the payment"
                );
            }
            runs.push(measured);
        }
        results.push((implementation.to_owned(), runs));
    }

    let rows: Vec<Row> = results
        .iter()
        .map(|(name, runs)| summarize(name, runs))
        .collect();
    println!(
        "\ncold start, medians of {RUNS} (fresh process each; local Runtime API; DynamoDB/KMS on moto):"
    );
    println!(
        "{:<50} {:>10} {:>18} {:>14}",
        "function", "init ms", "first answer ms", "peak RSS MiB"
    );
    for row in &rows {
        println!(
            "{:<50} {:>10.1} {:>18.1} {:>14.1}",
            row.name, row.init_ms, row.answer_ms, row.rss_mb
        );
    }
    if let [rust, python, ..] = rows.as_slice() {
        println!(
            "notify, Python / Rust: init {:.0}x, first answer {:.0}x, peak RSS {:.1}x",
            python.init_ms / rust.init_ms,
            python.answer_ms / rust.answer_ms,
            python.rss_mb / rust.rss_mb
        );
    }

    println!("\nrelease binaries (x86_64, stripped):");
    for name in [
        "create-payment",
        "notify",
        "refund",
        "sweeper",
        "reconcile",
        "publisher",
    ] {
        match std::fs::metadata(release_binary(name)) {
            Ok(meta) => println!("{name:<16} {:>6.2} MiB", meta.len() as f64 / 1_048_576.0),
            Err(_) => println!("{name:<16} not built"),
        }
    }
    env.drop_table().await;
}
