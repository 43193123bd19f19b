//! `make outage`: an outage of the primary channel's Alipay application, against the gateway
//! that `make run` started, measured from outside as a merchant sees it:
//! 1. healthy: payment latency on the primary channel;
//! 2. the primary application times out (the simulator's `/sim/outage`): waves of concurrent
//!    payments until one lands on the secondary channel (time to detect; the timed-out answers);
//! 3. open: refunds and queries of primary payments answer 503 at once (fail-fast latency), new
//!    payments go to the secondary channel;
//! 4. the outage ends: time until payments land on the primary again and until the channel is
//!    closed (`channel.closed`), and the refund kept PENDING finishes;
//! 5. the shared state's cost: breaker syncs (each one Query, plus one `ADD` when there are
//!    counts) per request, counted from the functions' log (one `ChannelState` line per sync).

use std::time::{Duration, Instant};

use local_stack::api_auth::Credentials;
use local_stack::http::{Answer, Http};
use serde_json::{Value, json};

struct Local {
    api: String,
    simulator: String,
    min_calls: usize,
    credentials: Credentials,
    http: Http,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A QR payment (from the merchant's one backend address: the fraud checks count only the
/// `buyer_ip` it would send), and how long the answer took.
async fn create_payment(api: String, credentials: Credentials, no: String) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = Http::new()
        .for_api(&api, credentials)
        .post_json(
            &format!("{api}/payments"),
            &json!({"out_trade_no": no, "amount": "9.90", "subject": "outage demo", "channel": "qr"}),
        )
        .await;
    (answer, started.elapsed())
}

/// A fail-fast answer: `503 circuit_open`.
fn expect_open(answer: &Answer) -> Result<(), String> {
    if answer.status == 503 && code_of(answer) == "circuit_open" {
        Ok(())
    } else {
        Err(format!(
            "expected 503 circuit_open: {} {}",
            answer.status, answer.text
        ))
    }
}

impl Local {
    async fn create(&self, no: &str) -> (Answer, Duration) {
        create_payment(self.api.clone(), self.credentials.clone(), no.to_owned()).await
    }

    async fn outage(&self, seconds: u64) -> Result<(), String> {
        let answer = self
            .http
            .post_json(
                &format!("{}/sim/outage", self.simulator),
                &json!({"kind": "timeout", "seconds": seconds}),
            )
            .await;
        (answer.status == 204)
            .then_some(())
            .ok_or_else(|| format!("the simulator refused the outage: {}", answer.text))
    }
}

fn channel_of(answer: &Answer) -> String {
    serde_json::from_str::<Value>(&answer.text)
        .ok()
        .and_then(|v| v["payment"]["alipay_channel"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn code_of(answer: &Answer) -> String {
    serde_json::from_str::<Value>(&answer.text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Breaker syncs (`ChannelState` lines: one Query each) in the functions' log after `from`
/// bytes, and how many of them also wrote counts to the shared window (one `ADD` each).
fn syncs_since(from: u64) -> (u64, u64) {
    let log = std::fs::read(".local/functions.log").unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(log.len());
    let text = String::from_utf8_lossy(&log[start..]);
    let (mut syncs, mut writes) = (0, 0);
    for line in text.lines().filter(|l| l.contains("\"ChannelState\"")) {
        syncs += 1;
        let shared = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["shared_calls"].as_u64())
            .unwrap_or(0);
        writes += u64::from(shared > 0);
    }
    (syncs, writes)
}

fn log_len() -> u64 {
    std::fs::metadata(".local/functions.log").map_or(0, |m| m.len())
}

/// The first event of `detail_type` for `channel` published after `after_ms`.
fn channel_event(detail_type: &str, channel: &str, after_ms: u128) -> Option<u128> {
    std::fs::read_to_string(".local/events.jsonl")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["detail-type"] == detail_type && e["detail"]["channel"]["channel"] == channel)
        .filter_map(|e| e["detail"]["occurred_at_ms"].as_u64().map(u128::from))
        .find(|at| *at >= after_ms)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let endpoints: Value = std::fs::read_to_string(".local/endpoints.json")
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or("start make run first (no .local/endpoints.json)")?;
    let text = |name: &str| endpoints[name].as_str().unwrap_or_default().to_owned();
    let env = std::fs::read_to_string(".local/sweeper.env").unwrap_or_default();
    let min_calls = env
        .lines()
        .find_map(|l| l.strip_prefix("BREAKER_MIN_CALLS="))
        .and_then(|v| v.trim_matches('\'').parse().ok())
        .unwrap_or(10);
    // The credentials make run signs the merchant API with.
    let credentials = Credentials::from_endpoints(&endpoints)?;
    let local = Local {
        api: text("api_base_url"),
        simulator: text("simulator_url"),
        min_calls,
        http: Http::new().for_api(&text("api_base_url"), credentials.clone()),
        credentials,
    };
    let run = stamp();

    println!("[1] healthy: 5 payments on the primary channel");
    let mark = log_len();
    let mut healthy = Vec::new();
    for i in 0..5 {
        let (answer, took) = local.create(&format!("outage_{run}_ok_{i}")).await;
        if answer.status != 201 || channel_of(&answer) != "primary" {
            return Err(format!(
                "a healthy payment failed (is the primary channel open from an earlier run? wait for its cool-down): HTTP {} {}",
                answer.status, answer.text
            ));
        }
        healthy.push(millis(took));
    }
    println!("    p50 {:.1} ms", median(healthy.clone()));
    // A paid payment on the primary channel, to refund during the outage.
    let paid = format!("outage_{run}_paid");
    let (answer, _) = local.create(&paid).await;
    if answer.status != 201 {
        return Err(answer.text);
    }
    local
        .http
        .post_json(
            &format!("{}/sim/pay", local.simulator),
            &json!({"out_trade_no": paid}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("\n[2] the primary application stops answering (time-outs, 120 s)");
    local.outage(120).await?;
    let outage_started = Instant::now();
    let outage_ms = stamp();
    let mut timed_out = Vec::new();
    let mut detected = None;
    let mut wave = 0;
    while detected.is_none() && outage_started.elapsed() < Duration::from_secs(100) {
        wave += 1;
        let tasks: Vec<_> = (0..local.min_calls)
            .map(|i| {
                tokio::spawn(create_payment(
                    local.api.clone(),
                    local.credentials.clone(),
                    format!("outage_{run}_w{wave}_{i}"),
                ))
            })
            .collect();
        for task in tasks {
            let (answer, took) = task.await.map_err(|e| e.to_string())?;
            match (answer.status, channel_of(&answer).as_str()) {
                (201, "secondary") if detected.is_none() => {
                    detected = Some(outage_started.elapsed());
                }
                (201, _) => {}
                _ => timed_out.push((millis(took), code_of(&answer))),
            }
        }
        println!(
            "    wave {wave}: {} concurrent payments; {} failed so far",
            local.min_calls,
            timed_out.len()
        );
    }
    let detected = detected.ok_or("no payment reached the secondary channel")?;
    let opened_at = channel_event("channel.opened", "primary", outage_ms);
    println!(
        "    detected: {:.1} s after the outage began ({} failed answers, median {:.0} ms, {:?}); channel.opened {}",
        detected.as_secs_f64(),
        timed_out.len(),
        median(timed_out.iter().map(|(ms, _)| *ms).collect()),
        timed_out
            .first()
            .map(|(_, code)| code.as_str())
            .unwrap_or(""),
        opened_at.map_or("not seen yet".into(), |at| format!(
            "at +{:.1} s",
            (at - outage_ms) as f64 / 1000.0
        ))
    );

    println!("\n[3] open: primary refunds and queries fail fast; new payments go to the secondary");
    let mut fast = Vec::new();
    let mut retry_after = String::new();
    for i in 0..3 {
        let started = Instant::now();
        let answer = local
            .http
            .post_json(
                &format!("{}/payments/{paid}/refunds", local.api),
                &json!({"amount": "0.10", "out_request_no": format!("{paid}_r{i}")}),
            )
            .await;
        fast.push(millis(started.elapsed()));
        expect_open(&answer)?;
        retry_after = answer
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
    }
    // Queries of a primary payment (GET ?sync=true): the same, never asked of the secondary.
    let unpaid = format!("outage_{run}_w1_0");
    for _ in 0..7 {
        let started = Instant::now();
        let answer = local
            .http
            .get(&format!("{}/payments/{unpaid}?sync=true", local.api))
            .await;
        fast.push(millis(started.elapsed()));
        expect_open(&answer)?;
    }
    let mut moved = Vec::new();
    for i in 0..10 {
        let (answer, took) = local.create(&format!("outage_{run}_moved_{i}")).await;
        if channel_of(&answer) != "secondary" {
            return Err(format!("expected the secondary channel: {}", answer.text));
        }
        moved.push(millis(took));
    }
    let waited: Vec<f64> = timed_out.iter().map(|(ms, _)| *ms).collect();
    println!(
        "    refunds and queries of primary payments: 503 circuit_open in {:.1} ms (p50 of 10; Retry-After {retry_after} s), refunds kept PENDING",
        median(fast.clone())
    );
    println!(
        "    before the opening, a payment waited {:.0} ms (shortest: the time-out) to {:.0} ms (longest: queued behind others), median {:.0} ms",
        waited.iter().copied().fold(f64::INFINITY, f64::min),
        waited.iter().copied().fold(0.0, f64::max),
        median(waited.clone())
    );
    println!(
        "    new payment on the secondary channel: {:.1} ms (p50)",
        median(moved)
    );

    println!("\n[4] the outage ends");
    local.outage(0).await?;
    let ended = Instant::now();
    let ended_ms = stamp();
    let mut back = None;
    let mut attempts = 0;
    while ended.elapsed() < Duration::from_secs(120) {
        attempts += 1;
        let (answer, _) = local.create(&format!("outage_{run}_back_{attempts}")).await;
        if channel_of(&answer) == "primary" {
            back.get_or_insert(ended.elapsed());
            if channel_event("channel.closed", "primary", ended_ms).is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = back.ok_or("payments never returned to the primary channel")?;
    let closed = channel_event("channel.closed", "primary", ended_ms);
    println!(
        "    first payment on the primary again (a trial call): {:.1} s after the outage ended; channel.closed {}",
        back.as_secs_f64(),
        closed.map_or("not seen".into(), |at| format!(
            "at +{:.1} s",
            (at - ended_ms) as f64 / 1000.0
        ))
    );
    let mut finished = false;
    for _ in 0..60 {
        let answer = local
            .http
            .get(&format!("{}/payments/{paid}", local.api))
            .await;
        let view: Value = serde_json::from_str(&answer.text).unwrap_or_default();
        let refunds = view["refunds"].as_array().cloned().unwrap_or_default();
        if !refunds.is_empty() && refunds.iter().all(|r| r["status"] == "SUCCEEDED") {
            println!(
                "    the {} refunds kept PENDING during the outage: SUCCEEDED (sent by the sweeper)",
                refunds.len()
            );
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !finished {
        println!("    the refunds kept PENDING are still pending (see .local/sweeper.log)");
    }
    let (all_syncs, all_writes) = syncs_since(mark);
    println!(
        "    over the outage: {all_syncs} breaker syncs (Query), {all_writes} of them with counts to share (ADD)"
    );
    let opened = std::fs::read_to_string(".local/events.jsonl")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|e| {
            e["detail-type"] == "channel.opened"
                && e["detail"]["occurred_at_ms"]
                    .as_u64()
                    .is_some_and(|at| u128::from(at) >= outage_ms)
        });
    if let Some(event) = opened {
        let channel = &event["detail"]["channel"];
        println!(
            "    channel.opened at +{:.1} s: {} failures in {} calls in the window ({})",
            (event["detail"]["occurred_at_ms"]
                .as_u64()
                .map_or(0, u128::from)
                - outage_ms) as f64
                / 1000.0,
            channel["window_failures"],
            channel["window_calls"],
            channel["reason"].as_str().unwrap_or("")
        );
    }

    println!("\n[5] the shared state's cost: 100 payments on a healthy channel, 4 at a time");
    let mark = log_len();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for round in 0..25 {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                tokio::spawn(create_payment(
                    local.api.clone(),
                    local.credentials.clone(),
                    format!("outage_{run}_cost_{round}_{i}"),
                ))
            })
            .collect();
        for task in tasks {
            let (answer, took) = task.await.map_err(|e| e.to_string())?;
            if answer.status != 201 {
                return Err(format!("a healthy payment failed: HTTP {}", answer.status));
            }
            latencies.push(millis(took));
        }
    }
    let elapsed = started.elapsed();
    let (syncs, writes) = syncs_since(mark);
    println!(
        "    100 payments in {:.1} s: {syncs} breaker reads ({:.3} per payment), {writes} breaker writes; p50 {:.1} ms",
        elapsed.as_secs_f64(),
        syncs as f64 / 100.0,
        median(latencies)
    );
    Ok(())
}
