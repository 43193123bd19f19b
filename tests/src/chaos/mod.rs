//! The chaos run: a seeded random workload (creates, payments at the simulator, notifications
//! duplicated, reordered, delayed and forged, refunds concurrent and retried, closes, sweeper
//! runs) with faults at every boundary: DynamoDB and KMS through [`proxy::FaultProxy`], Alipay
//! through the simulator's faults, and crashes (a handler's future dropped at a random await
//! point, as Lambda drops an invocation it kills). Then faults off, the sweeper drained, and the
//! invariants checked against the simulator's ledger: what Alipay executed.
//!
//! Subscriptions are in the mix: created through their function, signed at the simulator (the
//! sign notice lost now and then), buyers whose accounts refuse (soft, risk, `10003`, a hard
//! agreement refusal), buyers who unsign with and without a notice, merchants who cancel, and
//! faults on `alipay.trade.pay` and `alipay.user.agreement.query`; the sweeper's runs charge
//! them. Checked against the simulator's charges: at most one per period, none outside its
//! window, none above the signed cap, none under a stopped agreement, each recorded here as a
//! paid payment, and each subscription's count of charges equal to Alipay's.
//!
//! The run is split into rounds, each on a fresh table, key and simulator, so that the
//! stand-in's cost (it copies state on every transaction) stays flat however long the run.

mod antom;
pub mod proxy;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alipay::ids::OutTradeNo;
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use crate::support::{Stack, StackOptions, now_ms};
use alipay_sim::{Fault, FaultKind};
use proxy::FaultProxy;

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    pub seed: u64,
    pub operations: u32,
    /// Operations per round (a fresh stack each).
    pub round: u32,
    /// Operations in flight at once.
    pub concurrency: u32,
    /// DynamoDB/KMS faults per 1000 requests.
    pub aws_fault_per_mille: u32,
    /// Handler invocations abandoned mid-flight, per 1000.
    pub crash_per_mille: u32,
}

impl ChaosConfig {
    pub fn new(seed: u64, operations: u32) -> ChaosConfig {
        ChaosConfig {
            seed,
            operations,
            round: 400,
            concurrency: 4,
            aws_fault_per_mille: 40,
            crash_per_mille: 50,
        }
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    pub operations: BTreeMap<&'static str, u64>,
    /// (boundary, fault) → count.
    pub faults: BTreeMap<(String, String), u64>,
    pub violations: Vec<String>,
    pub orders: u64,
    pub refunds: u64,
    pub elapsed: Duration,
}

impl ChaosReport {
    /// The tables the closing note and `make chaos` print.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "chaos run, seed {}", self.seed);
        let _ = writeln!(out, "\n| operation | count |\n|---|---:|");
        for (kind, count) in &self.operations {
            let _ = writeln!(out, "| {kind} | {count} |");
        }
        let total: u64 = self.operations.values().sum();
        let _ = writeln!(out, "| **total** | **{total}** |");
        let _ = writeln!(out, "\n| boundary | fault | count |\n|---|---|---:|");
        for ((boundary, fault), count) in &self.faults {
            let _ = writeln!(out, "| {boundary} | {fault} | {count} |");
        }
        let _ = writeln!(
            out,
            "\norders {}, refunds {}, violations {}, time {:.1} s",
            self.orders,
            self.refunds,
            self.violations.len(),
            self.elapsed.as_secs_f64()
        );
        for violation in self.violations.iter().take(30) {
            let _ = writeln!(out, "VIOLATION: {violation}");
        }
        out
    }

    fn count(&mut self, kind: &'static str) {
        *self.operations.entry(kind).or_default() += 1;
    }

    fn fault(&mut self, boundary: &str, fault: &str, n: u64) {
        *self
            .faults
            .entry((boundary.to_owned(), fault.to_owned()))
            .or_default() += n;
    }
}

/// What the workload knows about one order (what a merchant's backend would remember).
#[derive(Clone, Debug, Default)]
struct Known {
    channel: String,
    amount_fen: u64,
    body: Value,
    next_step: Option<Value>,
    /// (out_request_no, amount) of every refund asked for.
    refunds: Vec<(String, String)>,
}

/// What the workload knows about one subscription.
#[derive(Clone, Debug)]
struct SubKnown {
    body: Value,
    signed: bool,
}

/// The chaos run's shift of the test clock (it moves forward at the end of each round, so that
/// charges left in doubt are asked about): every round's simulator starts from it.
static CLOCK_SHIFT_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

struct World {
    orders: Mutex<BTreeMap<String, Known>>,
    /// The payments priced in another currency, at the simulated Antom.
    antom: Mutex<BTreeMap<String, antom::AntomKnown>>,
    subscriptions: Mutex<BTreeMap<String, SubKnown>>,
    report: Mutex<ChaosReport>,
    crash_per_mille: u32,
    latest_expiry_ms: Mutex<i64>,
}

impl World {
    fn count(&self, kind: &'static str) {
        if let Ok(mut report) = self.report.lock() {
            report.count(kind);
        }
    }

    fn fault(&self, boundary: &str, fault: &str) {
        if let Ok(mut report) = self.report.lock() {
            report.fault(boundary, fault, 1);
        }
    }

    /// An order the buyer paid at Alipay, most of the time (refunds of unpaid orders are
    /// refused before anything is reserved, so they exercise little).
    fn pick_paid(&self, stack: &Stack, rng: &mut fastrand::Rng) -> Option<(String, Known)> {
        if rng.u32(0..100) < 15 {
            return self.pick(rng);
        }
        pick_where(&self.orders, rng, |no| {
            stack
                .simulator
                .trade(no)
                .is_some_and(|t| t.gmt_payment.is_some())
        })
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> Option<(String, Known)> {
        pick_where(&self.orders, rng, |_| true)
    }
}

/// One of the workload's entries that `wanted` takes, at random.
fn pick_where<T: Clone>(
    entries: &Mutex<BTreeMap<String, T>>,
    rng: &mut fastrand::Rng,
    wanted: impl Fn(&String) -> bool,
) -> Option<(String, T)> {
    let entries = entries.lock().ok()?;
    let matching: Vec<(&String, &T)> = entries.iter().filter(|(no, _)| wanted(no)).collect();
    if matching.is_empty() {
        return None;
    }
    let (no, entry) = matching[rng.usize(0..matching.len())];
    Some((no.clone(), entry.clone()))
}

/// Runs the whole chaos run.
pub async fn run(config: &ChaosConfig) -> ChaosReport {
    let started = Instant::now();
    let mut report = ChaosReport {
        seed: config.seed,
        ..ChaosReport::default()
    };
    let mut master = fastrand::Rng::with_seed(config.seed);
    let mut done = 0;
    let mut round = 0;
    while done < config.operations {
        let ops = config.round.min(config.operations - done);
        let round_report = run_round(config, master.u64(..), round, ops).await;
        for (kind, count) in round_report.operations {
            *report.operations.entry(kind).or_default() += count;
        }
        for (key, count) in round_report.faults {
            *report.faults.entry(key).or_default() += count;
        }
        report.violations.extend(
            round_report
                .violations
                .into_iter()
                .map(|v| format!("round {round}: {v}")),
        );
        report.orders += round_report.orders;
        report.refunds += round_report.refunds;
        done += ops;
        round += 1;
    }
    report.elapsed = started.elapsed();
    report
}

async fn run_round(config: &ChaosConfig, seed: u64, round: u32, operations: u32) -> ChaosReport {
    let moto = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let proxy = FaultProxy::start(&moto, seed ^ 0x5eed)
        .await
        .unwrap_or_else(|e| panic!("chaos proxy: {e}"));
    let stack = Stack::start_custom(StackOptions {
        alipay_timeout_ms: 600,
        aws_endpoint: Some(proxy.url.clone()),
        risk_rules: None,
        // Alipay's clock runs behind ours by up to the skew below: unpaid orders are ended
        // after it has passed at Alipay too (production waits 60 s).
        env: vec![("EXPIRY_GRACE_MS".into(), "2500".into())],
        antom: true,
        ..StackOptions::default()
    })
    .await;
    // Alipay's clock, this round: up to 2 s behind ours (answers, notifications and expiry at
    // Alipay by its clock).
    let mut clock = fastrand::Rng::with_seed(seed ^ 0xc10c);
    stack
        .simulator
        .set_clock_offset_ms(-i64::try_from(clock.u64(0..=2_000)).unwrap_or(0));
    stack
        .simulator
        .set_world_offset_ms(CLOCK_SHIFT_MS.load(std::sync::atomic::Ordering::Relaxed));
    if let Some(antom) = &stack.antom {
        antom.set_world_offset_ms(CLOCK_SHIFT_MS.load(std::sync::atomic::Ordering::Relaxed));
    }
    // The events path reads the stand-in directly (the stream is Lambda's to read, not ours).
    let mut path = stack.events_path().await;
    let stack = Arc::new(stack);
    let world = Arc::new(World {
        orders: Mutex::new(BTreeMap::new()),
        antom: Mutex::new(BTreeMap::new()),
        subscriptions: Mutex::new(BTreeMap::new()),
        report: Mutex::new(ChaosReport::default()),
        crash_per_mille: config.crash_per_mille,
        latest_expiry_ms: Mutex::new(0),
    });
    proxy.set_rate_per_mille(config.aws_fault_per_mille);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut issued = 0;
    while issued < operations {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..config.concurrency.min(operations - issued) {
            let (stack, world) = (Arc::clone(&stack), Arc::clone(&world));
            let op_seed = rng.u64(..);
            let prefix = format!("c{round}_{issued}");
            batch.spawn(async move { operation(&stack, &world, op_seed, &prefix).await });
            issued += 1;
        }
        while batch.join_next().await.is_some() {}
    }

    // Faults off; every order past its time_expire; the sweeper drained.
    proxy.set_rate_per_mille(0);
    stack.simulator.clear_faults();
    if let Some(antom) = &stack.antom {
        antom.clear_faults();
    }
    let latest = world.latest_expiry_ms.lock().map_or(0, |l| *l);
    // Past the last time_expire and the grace after it.
    let wait = (latest - now_ms() + 2_500 + 500).max(0);
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let drained = stack.drain(120).await;
    let mut report = world
        .report
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    if drained
        .next_due_at_ms
        .is_some_and(|at| at <= now_ms() + 2_000)
    {
        report
            .violations
            .push(format!("the sweeper could not drain: {drained:?}"));
    }
    // Charges left in doubt are asked about a minute after they were sent, a claim cut short
    // (a crash, a store fault) is taken again after its 5-minute lease, and a subscription whose
    // agreement could not be asked about is due again 10 minutes later: everyone's clock moves on
    // 11 minutes, and the sweeper runs; then twice 2 minutes more (a charge sent by those runs,
    // answered "processing", is asked about after its minute).
    for step in [
        gateway::subscriptions::UNREACHABLE_RETRY_MS + 60_000,
        2 * domain::subscriptions::QUERY_AFTER_MS,
        2 * domain::subscriptions::QUERY_AFTER_MS,
    ] {
        let shift = CLOCK_SHIFT_MS.fetch_add(step, std::sync::atomic::Ordering::Relaxed) + step;
        // (The test clock exists in debug builds only; the chaos run is a test, never a bench.)
        #[cfg(debug_assertions)]
        gateway::clock::set_test_offset_ms(shift);
        stack.simulator.set_world_offset_ms(shift);
        if let Some(antom) = &stack.antom {
            antom.set_world_offset_ms(shift);
        }
        stack.gateway.functions.sweep(Duration::from_secs(30)).await;
    }
    for ((boundary, fault), count) in proxy.injected() {
        report.fault(&boundary, fault.name(), count);
    }
    for (kind, count) in stack.simulator.harsh_answers() {
        report.fault("alipay, as Alipay answers", kind, count);
    }
    if let Some(antom) = &stack.antom {
        antom::harsh_answers(antom, &mut report);
    }
    let known = world.orders.lock().map(|o| o.clone()).unwrap_or_default();
    let events = match path.events().await {
        Ok(events) => events,
        Err(error) => {
            report.violations.push(format!("events: {error}"));
            Vec::new()
        }
    };
    check_invariants(&stack, &known, &mut report).await;
    let abroad = world.antom.lock().map(|o| o.clone()).unwrap_or_default();
    antom::check(&stack, &abroad, &mut report).await;
    // Events are checked for every order the workload made, whatever its channel.
    let mut every_order = known.clone();
    every_order.extend(abroad.keys().map(|no| (no.clone(), Known::default())));
    let subscriptions = world
        .subscriptions
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    check_subscriptions(&stack, &subscriptions, &mut report).await;
    check_events(&stack, &every_order, &subscriptions, &events, &mut report).await;
    stack.env.drop_table().await;
    report
}

/// One random operation.
async fn operation(stack: &Stack, world: &World, seed: u64, prefix: &str) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // One operation in six is on a payment priced in another currency, at Antom.
    if rng.u32(0..6) == 0 {
        return Box::pin(antom::operation(stack, world, &mut rng, prefix)).await;
    }
    match rng.u32(0..100) {
        0..=21 => create(stack, world, &mut rng, prefix).await,
        22..=26 => retry_create(stack, world, &mut rng).await,
        27..=36 => open(stack, world, &mut rng).await,
        37..=49 => pay(stack, world, &mut rng).await,
        50..=66 => refund(stack, world, &mut rng, prefix).await,
        67..=69 => slow_refusal_raced(stack, world, &mut rng, prefix).await,
        70..=75 => close(stack, world, &mut rng).await,
        76..=80 => sync(stack, world, &mut rng).await,
        81..=87 => sweep(stack, world, &mut rng).await,
        88..=90 => forge(stack, world, &mut rng).await,
        91..=96 => subscription(stack, world, &mut rng, prefix).await,
        _ => alipay_fault(stack, world, &mut rng),
    }
}

/// Invokes a function's handler in process, abandoning it at a random point now and then.
async fn invoke(
    stack: &Stack,
    world: &World,
    rng: &mut fastrand::Rng,
    function: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut request = Request::new(match body {
        Some(body) => Body::Text(body.to_string()),
        None => Body::Empty,
    });
    *request.method_mut() = method.parse().ok()?;
    *request.uri_mut() = path.parse().ok()?;
    if let Ok(value) = "application/json".parse() {
        request
            .headers_mut()
            .insert(lambda_http::http::header::CONTENT_TYPE, value);
    }
    // Boxed: a handler's future is large in a debug build, and a worker's stack is 2 MiB.
    let call = Box::pin(stack.gateway.functions.invoke(function, request));
    let response = if rng.u32(0..1000) < world.crash_per_mille {
        world.fault("lambda", "crash (future dropped)");
        let after = Duration::from_millis(rng.u64(0..120));
        tokio::time::timeout(after, call).await.ok()??
    } else {
        call.await?
    };
    let status = response.status().as_u16();
    let value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Some((status, value))
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

async fn create(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    world.count("create");
    let channel = ["page", "wap", "app", "qr"][rng.usize(0..4)];
    let amount_fen = rng.u64(1..=50_000);
    let out_trade_no = format!("{prefix}_o");
    let expiry_ms = now_ms() + i64::try_from(rng.u64(2_500..7_000)).unwrap_or(5_000);
    let mut body = json!({
        "out_trade_no": out_trade_no,
        "amount": yuan(amount_fen),
        "subject": "chaos 订单",
        "channel": channel,
        "time_expire": alipay_sim::china_text(expiry_ms / 1000 + 1),
    });
    if matches!(channel, "page" | "wap") {
        body["return_url"] = json!(format!("{}c/{out_trade_no}", crate::support::RETURN_PREFIX));
    }
    if let Ok(mut latest) = world.latest_expiry_ms.lock() {
        *latest = (*latest).max(expiry_ms + 1_000);
    }
    let known = Known {
        channel: channel.into(),
        amount_fen,
        body: body.clone(),
        next_step: None,
        refunds: Vec::new(),
    };
    if let Ok(mut orders) = world.orders.lock() {
        orders.insert(out_trade_no.clone(), known);
    }
    let answer = invoke(
        stack,
        world,
        rng,
        "create-payment",
        "POST",
        "/payments",
        Some(&body),
    )
    .await;
    remember_next_step(world, &out_trade_no, answer);
}

fn remember_next_step(world: &World, out_trade_no: &str, answer: Option<(u16, Value)>) {
    if let Some((200 | 201, value)) = answer
        && !value["next_step"].is_null()
        && let Ok(mut orders) = world.orders.lock()
        && let Some(known) = orders.get_mut(out_trade_no)
    {
        known.next_step = Some(value["next_step"].clone());
    }
}

async fn retry_create(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("create (retry)");
    let Some((out_trade_no, known)) = world.pick(rng) else {
        return;
    };
    let answer = invoke(
        stack,
        world,
        rng,
        "create-payment",
        "POST",
        "/payments",
        Some(&known.body),
    )
    .await;
    remember_next_step(world, &out_trade_no, answer);
}

/// The buyer opens the cashier (page, wap), or the app opens the order string.
async fn open(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("open at Alipay");
    if let Some((_, known)) = world.pick(rng) {
        open_at_alipay(stack, &known).await;
    }
}

async fn open_at_alipay(stack: &Stack, known: &Known) {
    let Some(step) = &known.next_step else {
        return;
    };
    match known.channel.as_str() {
        "page" | "wap" => {
            if let Some(url) = step["url"].as_str() {
                let _ = stack.http.get(url).await;
            }
        }
        "app" => {
            if let Some(order_string) = step["order_string"].as_str() {
                let _ = stack.simulator.open_app_order(order_string);
            }
        }
        _ => {}
    }
}

async fn pay(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("pay at Alipay");
    let Some((out_trade_no, known)) = world.pick(rng) else {
        return;
    };
    if stack.simulator.trade(&out_trade_no).is_none() && rng.u32(0..100) < 80 {
        open_at_alipay(stack, &known).await;
    }
    if rng.u32(0..100) < 25 {
        let kind = match rng.u32(0..4) {
            0 => FaultKind::Drop,
            1 => FaultKind::Duplicate,
            2 => FaultKind::Delay {
                ms: rng.u64(50..800),
            },
            _ => FaultKind::BadNotifySignature,
        };
        world.fault("notify", &fault_name(&kind));
        stack.simulator.inject(Fault {
            target: "notify".into(),
            kind,
            times: 1,
        });
    }
    // From the balance (refunds executed in the call) or by bank card (accepted, executed
    // 1.5 s later).
    let fund_channel = if rng.bool() {
        alipay_sim::BANK_CARD
    } else {
        alipay_sim::BALANCE
    };
    let payer = alipay_sim::Payer {
        finished: rng.u32(0..100) < 5,
        buyer_id: None,
        fund_channel: Some(fund_channel.to_owned()),
        ..alipay_sim::Payer::default()
    };
    let _ = stack.simulator.pay_with(&out_trade_no, &payer);
}

async fn refund(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    world.count("refund");
    let Some((out_trade_no, known)) = world.pick_paid(stack, rng) else {
        return;
    };
    let (out_request_no, amount) = match known.refunds.len() {
        n if n > 0 && rng.bool() => known.refunds[rng.usize(0..n)].clone(),
        _ => {
            let fen = rng.u64(1..=known.amount_fen.div_ceil(2).max(1));
            (format!("{prefix}_r"), yuan(fen))
        }
    };
    if let Ok(mut orders) = world.orders.lock()
        && let Some(known) = orders.get_mut(&out_trade_no)
        && !known.refunds.iter().any(|(no, _)| *no == out_request_no)
    {
        known.refunds.push((out_request_no.clone(), amount.clone()));
    }
    let body = json!({"amount": amount, "out_request_no": out_request_no});
    post_refund(
        stack,
        world,
        rng,
        &out_trade_no,
        &body,
        "refund (two at once)",
    )
    .await;
}

/// `POST /payments/{out_trade_no}/refunds` as the merchant's client sends it: sometimes the
/// same refund twice at once (counted as `twice`).
async fn post_refund(
    stack: &Stack,
    world: &World,
    rng: &mut fastrand::Rng,
    out_trade_no: &str,
    body: &Value,
    twice: &'static str,
) {
    let path = format!("/payments/{out_trade_no}/refunds");
    let mut first = fastrand::Rng::with_seed(rng.u64(..));
    let mut second = fastrand::Rng::with_seed(rng.u64(..));
    let send = |rng: &mut fastrand::Rng| {
        let mut own = fastrand::Rng::with_seed(rng.u64(..));
        let path = path.clone();
        async move { invoke(stack, world, &mut own, "refund", "POST", &path, Some(body)).await }
    };
    if rng.u32(0..100) < 20 {
        world.count(twice);
        tokio::join!(send(&mut first), send(&mut second));
    } else {
        send(&mut first).await;
    }
}

/// A refund whose first send Alipay refuses, signed, but slowly, while the merchant's
/// `?sync=true` (past the query delay) finds no such refund at Alipay and sends the identical
/// request again: the slow refusal must never fail a refund that the second send executes.
async fn slow_refusal_raced(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    world.count("refund (slow refusal, ?sync=true meanwhile)");
    let Some((out_trade_no, known)) = world.pick_paid(stack, rng) else {
        return;
    };
    let fen = rng.u64(1..=known.amount_fen.div_ceil(2).max(1));
    let out_request_no = format!("{prefix}_s");
    let amount = yuan(fen);
    if let Ok(mut orders) = world.orders.lock()
        && let Some(known) = orders.get_mut(&out_trade_no)
    {
        known.refunds.push((out_request_no.clone(), amount.clone()));
    }
    let ms = rng.u64(350..550);
    world.fault("alipay", "alipay.trade.refund SlowRefusal");
    stack.simulator.inject(Fault {
        target: "alipay.trade.refund".into(),
        kind: FaultKind::SlowRefusal { ms },
        times: 1,
    });
    let body = json!({"amount": amount, "out_request_no": out_request_no});
    let post_path = format!("/payments/{out_trade_no}/refunds");
    let sync_path = format!("/payments/{out_trade_no}/refunds/{out_request_no}?sync=true");
    let mut post_rng = fastrand::Rng::with_seed(rng.u64(..));
    let mut sync_rng = fastrand::Rng::with_seed(rng.u64(..));
    let delay = crate::support::REFUND_QUERY_DELAY_MS.max(crate::support::REFUND_SPACING_MS)
        + rng.u64(0..150);
    tokio::join!(
        invoke(
            stack,
            world,
            &mut post_rng,
            "refund",
            "POST",
            &post_path,
            Some(&body)
        ),
        async {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            invoke(
                stack,
                world,
                &mut sync_rng,
                "refund",
                "GET",
                &sync_path,
                None,
            )
            .await
        }
    );
}

async fn close(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("close");
    let Some((out_trade_no, _)) = world.pick(rng) else {
        return;
    };
    let path = format!("/payments/{out_trade_no}/close");
    invoke(stack, world, rng, "create-payment", "POST", &path, None).await;
}

async fn sync(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("get ?sync=true");
    let Some((out_trade_no, known)) = world.pick(rng) else {
        return;
    };
    let path = match known.refunds.first() {
        Some((no, _)) if rng.bool() => format!("/payments/{out_trade_no}/refunds/{no}?sync=true"),
        _ => format!("/payments/{out_trade_no}?sync=true"),
    };
    let function = if path.contains("/refunds/") {
        "refund"
    } else {
        "create-payment"
    };
    invoke(stack, world, rng, function, "GET", &path, None).await;
}

async fn sweep(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("sweeper run");
    let run = stack
        .gateway
        .functions
        .sweep(Duration::from_secs(rng.u64(3..20)));
    if rng.u32(0..1000) < world.crash_per_mille * 2 {
        world.fault("lambda", "crash (future dropped)");
        let _ = tokio::time::timeout(Duration::from_millis(rng.u64(0..300)), run).await;
    } else {
        run.await;
    }
}

/// Notifications nobody should believe: a bad signature, another amount, an unknown order.
async fn forge(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("forged notification");
    let Some((out_trade_no, known)) = world.pick(rng) else {
        return;
    };
    let mut fields: BTreeMap<String, String> = [
        ("notify_id", format!("forged_{}", rng.u64(..))),
        ("notify_type", "trade_status_sync".into()),
        ("notify_time", "2026-11-27 10:00:00".into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("app_id", crate::support::APP_ID.into()),
        ("seller_id", crate::support::SELLER_ID.into()),
        ("out_trade_no", out_trade_no),
        ("trade_no", format!("2026{:024}", rng.u64(..))),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", yuan(known.amount_fen + 1)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let body = match rng.u32(0..3) {
        // Signed by Alipay's key, but the amount is not the order's.
        0 => stack.simulator.sign_notification(&fields),
        // The right amount, signed by nobody.
        1 => {
            fields.insert("total_amount".into(), yuan(known.amount_fen));
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &fields {
                form.append_pair(k, v);
            }
            form.append_pair("sign", "Zm9yZ2Vk");
            form.finish()
        }
        _ => {
            fields.insert("out_trade_no".into(), "nobody_here".into());
            stack.simulator.sign_notification(&fields)
        }
    };
    let _ = stack.http.post_form(&stack.gateway.notify_url, &body).await;
}

fn alipay_fault(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("alipay fault armed");
    let target = [
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
        "alipay.trade.query",
        "alipay.trade.close",
        "alipay.trade.precreate",
        "alipay.trade.pay",
        "alipay.user.agreement.query",
    ][rng.usize(0..7)];
    let kind = match (target, rng.u32(0..11)) {
        (_, 0) => FaultKind::Timeout,
        (_, 1) => FaultKind::TimeoutAfterExecute,
        (_, 2) => FaultKind::Http500,
        (_, 3) => FaultKind::SystemError,
        (_, 4) => FaultKind::ServiceUnavailable,
        (_, 5) => FaultKind::BadSignature,
        (_, 6) => FaultKind::UnsignedError {
            code: "40002".into(),
            sub_code: "isv.invalid-signature".into(),
        },
        // Alipay's harsher answers, each where it applies.
        ("alipay.trade.refund", 7) => FaultKind::SlowRefusal {
            ms: rng.u64(100..550),
        },
        ("alipay.trade.refund", 8) => FaultKind::RefundFailsLater,
        ("alipay.trade.refund", 9) => FaultKind::AsyncRefund,
        ("alipay.trade.close", 7..=9) => FaultKind::BuyerPaysFirst,
        _ => FaultKind::SellerBalanceNotEnough,
    };
    world.fault("alipay", &format!("{target} {}", fault_name(&kind)));
    stack.simulator.inject(Fault {
        target: target.into(),
        kind,
        times: 1,
    });
}

/// A subscription operation: create, open the signing page and sign, a buyer's account that
/// will refuse, a buyer who unsigns, a merchant who cancels.
async fn subscription(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    let pick = |signed: Option<bool>, rng: &mut fastrand::Rng| {
        let subscriptions = world.subscriptions.lock().ok()?;
        let ids: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| signed.is_none_or(|want| s.signed == want))
            .map(|(id, _)| id)
            .collect();
        (!ids.is_empty()).then(|| ids[rng.usize(0..ids.len())].clone())
    };
    // Most of them are created and signed; fewer are stopped, so that charges happen.
    match rng.u32(0..10) {
        0..=2 => {
            world.count("subscription created");
            let id: String = format!("s{prefix}")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            let fen = rng.u64(100..5_000);
            // Due tomorrow (China time): its window is open now, its first try due.
            let tomorrow = alipay_sim::china_text(now_ms() / 1000 + 86_400)[..10].to_owned();
            let body = json!({
                "subscription_id": id, "subject": "Chaos plan", "amount": yuan(fen),
                "period_type": "DAY", "period": 7, "first_charge_date": tomorrow,
                "single_amount": yuan(fen + rng.u64(0..100)), "total_payments": rng.u32(1..4),
                "customer_ref": "chaos_subscriber",
            });
            let id_signed = id.clone();
            // Remembered first: a crash after the write still leaves it to look at.
            if let Ok(mut subscriptions) = world.subscriptions.lock() {
                subscriptions.insert(
                    id,
                    SubKnown {
                        body: body.clone(),
                        signed: false,
                    },
                );
            }
            invoke(
                stack,
                world,
                rng,
                "subscriptions",
                "POST",
                "/subscriptions",
                Some(&body),
            )
            .await;
            // Most buyers sign at once.
            if rng.u32(0..10) < 7 {
                sign_subscription(stack, world, rng, id_signed).await;
            }
        }
        3..=5 => {
            let Some(id) = pick(Some(false), rng) else {
                return;
            };
            sign_subscription(stack, world, rng, id).await;
        }
        6 | 7 => {
            let Some(id) = pick(Some(true), rng) else {
                return;
            };
            world.count("subscription buyer's account scripted");
            let answer = [
                "ACQ.BUYER_BALANCE_NOT_ENOUGH",
                "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
                "ACQ.PAYMENT_REQUEST_HAS_RISK",
                "10003",
                "ACQ.AGREEMENT_INVALID",
            ][rng.usize(0..5)];
            world.fault("alipay", &format!("buyer answers {answer}"));
            let _ = stack.simulator.script_charges(&id, &[answer]);
        }
        8 => {
            let Some(id) = pick(Some(true), rng) else {
                return;
            };
            world.count("subscription unsigned by the buyer");
            let _ = stack.simulator.stop_agreement(&id, rng.bool());
        }
        _ => {
            let Some(id) = pick(None, rng) else { return };
            world.count("subscription canceled");
            let path = format!("/subscriptions/{id}/cancel");
            invoke(
                stack,
                world,
                rng,
                "subscriptions",
                "POST",
                &path,
                Some(&json!({})),
            )
            .await;
        }
    }
}

/// The merchant asks (again, idempotently) where the buyer signs; the buyer opens the page and
/// signs (Alipay's sign notice lost one time in five).
async fn sign_subscription(stack: &Stack, world: &World, rng: &mut fastrand::Rng, id: String) {
    world.count("subscription signed");
    let body = world
        .subscriptions
        .lock()
        .ok()
        .and_then(|s| s.get(&id).map(|k| k.body.clone()));
    let Some(body) = body else { return };
    // The merchant asks again (idempotent) for where the buyer signs.
    let Some((_, answer)) = invoke(
        stack,
        world,
        rng,
        "subscriptions",
        "POST",
        "/subscriptions",
        Some(&body),
    )
    .await
    else {
        return;
    };
    let Some(url) = answer["next_step"]["url"].as_str() else {
        return;
    };
    if stack.http.get(url).await.status != 200 {
        return;
    }
    let lose_notice = rng.u32(0..5) == 0;
    if stack
        .simulator
        .sign_agreement(&id, "2088102177849999", lose_notice)
        .is_ok()
        && let Ok(mut subscriptions) = world.subscriptions.lock()
        && let Some(known) = subscriptions.get_mut(&id)
    {
        known.signed = true;
    }
}

/// The subscriptions' charges against the simulator's ledger.
async fn check_subscriptions(
    stack: &Stack,
    known: &BTreeMap<String, SubKnown>,
    report: &mut ChaosReport,
) {
    use alipay::china_time::ChinaDate;
    let charges = stack.simulator.charges();
    *report
        .operations
        .entry("subscription charges (Alipay's ledger)")
        .or_default() += charges.len() as u64;
    let violations = &mut report.violations;
    let mut per_period: BTreeMap<(String, String), u32> = BTreeMap::new();
    for charge in &charges {
        let count = per_period
            .entry((charge.agreement_no.clone(), charge.period_date.clone()))
            .or_default();
        *count += 1;
        if *count > 1 {
            violations.push(format!(
                "agreement {}: charged twice for {}",
                charge.agreement_no, charge.period_date
            ));
        }
        let (Ok(date), Ok(on)) = (
            ChinaDate::parse(&charge.period_date),
            ChinaDate::parse(&charge.charged_on),
        ) else {
            violations.push(format!("{}: unreadable dates", charge.out_trade_no));
            continue;
        };
        if on < date.add_days(-3) || on > date {
            violations.push(format!(
                "{}: charged on {on}, outside the window of {date}",
                charge.out_trade_no
            ));
        }
        if charge.agreement_status != "NORMAL" {
            violations.push(format!(
                "{}: charged under a {} agreement",
                charge.out_trade_no, charge.agreement_status
            ));
        }
        // Recorded here as a paid payment, with Alipay's trade.
        let paid_here = match OutTradeNo::parse(charge.out_trade_no.as_str()) {
            Ok(id) => stack.env.store.get_order(&id).await.ok().flatten(),
            Err(_) => None,
        };
        let trade = stack.simulator.trade(&charge.out_trade_no);
        match paid_here {
            Some(order)
                if order.status.is_paid()
                    && order.trade_no.as_deref() == trade.as_ref().map(|t| t.trade_no.as_str()) => {
            }
            Some(order) => violations.push(format!(
                "{}: charged at Alipay, {} here",
                charge.out_trade_no, order.status
            )),
            None => violations.push(format!(
                "{}: charged at Alipay, unknown here",
                charge.out_trade_no
            )),
        }
    }
    for id in known.keys() {
        let Some(agreement) = stack.simulator.agreement(id) else {
            continue;
        };
        let ours: Vec<&alipay_sim::Charge> = charges
            .iter()
            .filter(|c| Some(&c.agreement_no) == agreement.agreement_no.as_ref())
            .collect();
        if ours.iter().any(|c| c.fen > agreement.single_fen) {
            violations.push(format!("{id}: a charge above the signed cap"));
        }
        let Ok(sub_id) = alipay::ids::ExternalAgreementNo::parse(id.as_str()) else {
            continue;
        };
        match stack.env.store.get_subscription(&sub_id).await {
            Ok(Some(subscription)) => {
                let state = match subscription.status.as_str() {
                    "incomplete" => "subscriptions ending incomplete",
                    "active" => "subscriptions ending active",
                    "past_due" => "subscriptions ending past_due",
                    "unpaid" => "subscriptions ending unpaid",
                    "canceled" => "subscriptions ending canceled",
                    _ => "subscriptions ending paused",
                };
                *report.operations.entry(state).or_default() += 1;
                if subscription.charges as usize != ours.len() {
                    violations.push(format!(
                        "{id}: {} charges here, {} at Alipay ({} {:?} {:?}, agreement {})",
                        subscription.charges,
                        ours.len(),
                        subscription.status.as_str(),
                        subscription.period,
                        subscription.last_period_end,
                        subscription.agreement_status.as_str()
                    ));
                }
            }
            Ok(None) if !ours.is_empty() => {
                violations.push(format!("{id}: charged at Alipay, unknown here"))
            }
            Ok(None) => {}
            Err(error) => violations.push(format!("{id}: unreadable: {error}")),
        }
    }
}

fn fault_name(kind: &FaultKind) -> String {
    match kind {
        FaultKind::UnsignedError { code, .. } => format!("unsigned {code}"),
        FaultKind::Delay { .. } => "Delay".into(),
        FaultKind::SlowRefusal { .. } => "SlowRefusal".into(),
        other => format!("{other:?}"),
    }
}

/// Every invariant, against the simulator's own ledger.
/// Exactly one event per change a merchant sees: per order, one `payment.created`; one paid event
/// when it was paid; one `payment.refunded` when it is REFUNDED; per refund one
/// `refund.created` and the one event of its final state; and no event id twice.
async fn check_events(
    stack: &Stack,
    known: &BTreeMap<String, Known>,
    subscriptions: &BTreeMap<String, SubKnown>,
    events: &[Value],
    report: &mut ChaosReport,
) {
    let violations = &mut report.violations;
    let mut ids = std::collections::BTreeSet::new();
    let mut by_order: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    // channel → (opened, closed)
    let mut channels: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for event in events {
        let detail = &event["detail"];
        if !ids.insert(detail["event_id"].as_str().unwrap_or("").to_owned()) {
            violations.push(format!("event {} published twice", detail["event_id"]));
        }
        // A channel's circuit opening and closing (the faults can open one): a channel we run,
        // and never closed more often than opened (counted below).
        if detail["channel"].is_object() {
            let channel = detail["channel"]["channel"].as_str().unwrap_or("");
            if !["primary", "secondary", "antom"].contains(&channel) {
                violations.push(format!("a channel event for {channel:?}"));
            }
            let kind = event["detail-type"].as_str().unwrap_or("");
            let entry = channels.entry(channel.to_owned()).or_insert((0, 0));
            match kind {
                "channel.opened" => entry.0 += 1,
                "channel.closed" => entry.1 += 1,
                _ => violations.push(format!("a channel event {kind}")),
            }
            continue;
        }
        if detail["subscription"].is_object() {
            let id = detail["subscription"]["subscription_id"]
                .as_str()
                .unwrap_or("");
            if !subscriptions.contains_key(id) {
                violations.push(format!(
                    "a subscription event for {id}, which does not exist"
                ));
            }
            continue;
        }
        let (order, refund) = if detail["refund"].is_object() {
            (
                &detail["refund"]["out_trade_no"],
                detail["refund"]["out_request_no"]
                    .as_str()
                    .map(str::to_owned),
            )
        } else {
            (&detail["payment"]["out_trade_no"], None)
        };
        by_order
            .entry(order.as_str().unwrap_or("").to_owned())
            .or_default()
            .push((
                event["detail-type"].as_str().unwrap_or("").to_owned(),
                refund,
            ));
    }
    // The orders the workload made, and the subscriptions' periods (payments like any other).
    let periods: Vec<String> = by_order
        .keys()
        .filter(|no| {
            no.rsplit_once('_')
                .is_some_and(|(id, _)| subscriptions.contains_key(id))
        })
        .cloned()
        .collect();
    for out_trade_no in known.keys().chain(periods.iter()) {
        let Ok(id) = OutTradeNo::parse(out_trade_no.as_str()) else {
            continue;
        };
        let Ok(Some((order, refunds))) = stack.env.store.get_order_with_refunds(&id).await else {
            continue;
        };
        let mine = by_order.remove(out_trade_no).unwrap_or_default();
        let count = |kind: &str, refund: Option<&str>| {
            mine.iter()
                .filter(|(k, r)| k == kind && r.as_deref() == refund)
                .count()
        };
        let paid = u8::from(order.status.is_paid());
        let mut expected = vec![
            ("payment.created", None, 1),
            (
                "payment.paid",
                None,
                usize::from(paid == 1 && !order.paid_after_close),
            ),
            (
                "payment.paid_after_close",
                None,
                usize::from(order.paid_after_close),
            ),
            (
                "payment.closed",
                None,
                usize::from(
                    order.status == domain::states::OrderStatus::Closed || order.paid_after_close,
                ),
            ),
            (
                "payment.refunded",
                None,
                usize::from(gateway::http::views::payment_status(&order) == "REFUNDED"),
            ),
        ];
        for refund in &refunds {
            let no = refund.out_request_no.as_str();
            use domain::states::RefundStatus::*;
            expected.push(("refund.created", Some(no), 1));
            expected.push((
                "refund.succeeded",
                Some(no),
                usize::from(refund.status == Succeeded),
            ));
            expected.push((
                "refund.failed",
                Some(no),
                usize::from(refund.status == Failed),
            ));
        }
        for (kind, refund, want) in expected {
            let got = count(kind, refund);
            if got != want {
                violations.push(format!(
                    "{out_trade_no}{}: {got} {kind} events, expected {want}",
                    refund.map(|r| format!("/{r}")).unwrap_or_default()
                ));
            }
        }
    }
    for (out_trade_no, kinds) in by_order {
        violations.push(format!(
            "events for {out_trade_no}, which does not exist: {kinds:?}"
        ));
    }
    for (channel, (opened, closed)) in channels {
        if closed > opened || opened > closed + 1 {
            violations.push(format!(
                "channel {channel}: opened {opened} times, closed {closed} times"
            ));
        }
        *report
            .operations
            .entry("channel circuits opened (events)")
            .or_default() += opened;
    }
}

async fn check_invariants(
    stack: &Stack,
    known: &BTreeMap<String, Known>,
    report: &mut ChaosReport,
) {
    let now = now_ms();
    let trades: BTreeMap<String, alipay_sim::Trade> = stack
        .simulator
        .trades()
        .into_iter()
        .map(|t| (t.out_trade_no.clone(), t))
        .collect();
    let violations = &mut report.violations;
    for out_trade_no in known.keys() {
        let Ok(id) = OutTradeNo::parse(out_trade_no.as_str()) else {
            continue;
        };
        let stored = match stack.env.store.get_order_with_refunds(&id).await {
            Ok(stored) => stored,
            Err(error) => {
                violations.push(format!("{out_trade_no}: unreadable: {error}"));
                continue;
            }
        };
        let trade = trades.get(out_trade_no);
        let paid_there = trade.is_some_and(|t| t.gmt_payment.is_some());
        let Some((order, refunds)) = stored else {
            if paid_there {
                violations.push(format!("{out_trade_no}: paid at Alipay, unknown here"));
            }
            continue;
        };
        report.orders += 1;
        report.refunds += refunds.len() as u64;
        let paid_here = order.status.is_paid();
        match (paid_there, paid_here, trade) {
            (true, false, _) => violations.push(format!(
                "{out_trade_no}: paid at Alipay, {} here",
                order.status
            )),
            (false, true, _) => violations.push(format!(
                "{out_trade_no}: {} here, never paid at Alipay",
                order.status
            )),
            (true, true, Some(trade))
                if order.trade_no.as_deref() != Some(trade.trade_no.as_str())
                    || order.paid_amount.map(|a| a.minor()) != Some(trade.total_fen) =>
            {
                violations.push(format!(
                    "{out_trade_no}: paid {:?} {:?} here, {} {} at Alipay",
                    order.trade_no, order.paid_amount, trade.trade_no, trade.total_amount
                ));
            }
            _ => {}
        }
        // Refunds: what Alipay executed is exactly what we recorded as succeeded.
        // What Alipay executed (a refund it accepted and failed, or still processes, moved no
        // money).
        let executed: BTreeMap<&str, &alipay_sim::RefundRecord> = trade
            .map(|t| {
                t.executed_refunds()
                    .map(|r| (r.out_request_no.as_str(), r))
                    .collect()
            })
            .unwrap_or_default();
        for record in executed.values() {
            if record.executions > 1 {
                violations.push(format!(
                    "{out_trade_no}: {} executed {} times",
                    record.out_request_no, record.executions
                ));
            }
        }
        let executed_fen: u64 = trade.map_or(0, |t| t.refunded_fen);
        if executed_fen != order.refunded.minor() {
            violations.push(format!(
                "{out_trade_no}: Alipay refunded {} fen, we recorded {}",
                executed_fen, order.refunded
            ));
        }
        if let Some(trade) = trade
            && trade.refunded_fen > trade.total_fen
        {
            violations.push(format!("{out_trade_no}: refunded more than paid"));
        }
        for refund in &refunds {
            let at_alipay = executed.get(refund.out_request_no.as_str());
            match refund.status {
                domain::states::RefundStatus::Pending => violations.push(format!(
                    "{out_trade_no}/{}: still PENDING after the drain",
                    refund.out_request_no
                )),
                domain::states::RefundStatus::Succeeded => {
                    if at_alipay.map(|r| r.refund_amount.as_str())
                        != Some(refund.amount.to_string().as_str())
                    {
                        violations.push(format!(
                            "{out_trade_no}/{}: SUCCEEDED here, not executed at Alipay",
                            refund.out_request_no
                        ));
                    }
                }
                domain::states::RefundStatus::Failed => {
                    if at_alipay.is_some() {
                        violations.push(format!(
                            "{out_trade_no}/{}: FAILED here, executed at Alipay",
                            refund.out_request_no
                        ));
                    }
                }
            }
        }
        for no in executed.keys() {
            if !refunds.iter().any(|r| r.out_request_no.as_str() == *no) {
                violations.push(format!(
                    "{out_trade_no}/{no}: executed at Alipay, unknown here"
                ));
            }
        }
        check_order_rules(stack, &id, &order, &refunds, now, violations).await;
    }
}

/// The rules every order keeps, whichever provider took it: never `CREATED` past its
/// `time_expire`; while PAID, refunded + refundable = paid; every state change audited; every
/// refund reserved and settled once.
async fn check_order_rules(
    stack: &Stack,
    id: &OutTradeNo,
    order: &domain::states::Order,
    refunds: &[domain::states::Refund],
    now: i64,
    violations: &mut Vec<String>,
) {
    let out_trade_no = id.as_str();
    if order.status == domain::states::OrderStatus::Created {
        let expired = order
            .time_expire
            .as_deref()
            .and_then(alipay_sim::china_unix)
            .is_some_and(|t| t * 1000 < now);
        if expired {
            violations.push(format!("{out_trade_no}: CREATED past its time_expire"));
        }
    }
    if order.status == domain::states::OrderStatus::Paid
        && Some(order.refunded.minor() + order.refundable.minor())
            != order.paid_amount.map(|a| a.minor())
    {
        violations.push(format!(
            "{out_trade_no}: refunded {} + refundable {} != paid {:?}",
            order.refunded,
            order.refundable,
            order.paid_amount.map(|a| a.with_code())
        ));
    }
    // Every state change has its audit event.
    let kinds: Vec<String> = match stack.env.store.audit_trail(id).await {
        Ok(trail) => trail.into_iter().map(|e| e.kind).collect(),
        Err(error) => {
            violations.push(format!("{out_trade_no}: audit unreadable: {error}"));
            return;
        }
    };
    let has = |kind: &str| kinds.iter().any(|k| k == kind);
    let mut expected = vec!["order.created"];
    match order.status {
        domain::states::OrderStatus::Closed => expected.push("order.closed"),
        domain::states::OrderStatus::Paid | domain::states::OrderStatus::Finished => {
            if !(has("order.paid") || has("order.finished") || has("order.paid_after_close")) {
                violations.push(format!("{out_trade_no}: paid without an audit event"));
            }
        }
        domain::states::OrderStatus::Created => {}
    }
    for kind in expected {
        if !has(kind) {
            violations.push(format!("{out_trade_no}: no {kind} audit event"));
        }
    }
    let reserved = kinds.iter().filter(|k| *k == "refund.reserved").count();
    let settled = kinds
        .iter()
        .filter(|k| *k == "refund.succeeded" || *k == "refund.failed")
        .count();
    if reserved != refunds.len() || settled != refunds.len() {
        violations.push(format!(
            "{out_trade_no}: {} refunds, {reserved} reserved and {settled} settled events",
            refunds.len()
        ));
    }
}
