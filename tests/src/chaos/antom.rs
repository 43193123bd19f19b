//! Antom in the chaos run: payments priced in USD, EUR, JPY and IDR go to the simulated Antom
//! (its own KMS key, its own notify route), paid and failed at its cashier, refunded (concurrent
//! and retried), closed, asked about, with its notifications dropped, duplicated, delayed and
//! forged, and its answers lost, unsigned, wrongly signed and `U` at every operation. Checked at
//! the end against the simulated Antom's ledger: paid here exactly when paid there, at the amount
//! and in the currency it was paid, with the settlement Antom reported; every refund it executed
//! recorded as succeeded once, none failed that it executed, none above what was paid.

use std::collections::BTreeMap;

use alipay::ids::OutTradeNo;
use alipay_sim::antom::{AntomFault, AntomSimulator, PaymentState, RefundState};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use super::{ChaosReport, World, check_order_rules, invoke, pick_where, post_refund};
use crate::support::{Stack, now_ms};

/// The currencies the chaos stack's Antom channel accepts (`ANTOM_CURRENCIES` in
/// `support::Stack`), with their decimals and Antom's rule that IDR amounts end in `00`.
const CURRENCIES: [(&str, u32, u64); 4] =
    [("USD", 2, 1), ("EUR", 2, 1), ("JPY", 0, 1), ("IDR", 2, 100)];

/// What the workload knows about one Antom payment.
#[derive(Clone, Debug)]
pub(super) struct AntomKnown {
    currency: &'static str,
    exponent: u32,
    multiple: u64,
    minor: u64,
    body: Value,
    /// (out_request_no, amount) of every refund asked for.
    refunds: Vec<(String, String)>,
}

/// An amount as the merchant API takes it: decimal text in the currency.
fn text(minor: u64, exponent: u32) -> String {
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = exponent as usize
    )
}

fn simulator(stack: &Stack) -> &AntomSimulator {
    stack
        .antom
        .as_ref()
        .unwrap_or_else(|| panic!("the chaos stack runs an Antom channel"))
}

/// One random Antom operation.
pub(super) async fn operation(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    match rng.u32(0..100) {
        0..=23 => create(stack, world, rng, prefix).await,
        24..=29 => retry_create(stack, world, rng).await,
        30..=49 => pay(stack, world, rng),
        50..=71 => refund(stack, world, rng, prefix).await,
        72..=76 => close(stack, world, rng).await,
        77..=85 => sync(stack, world, rng).await,
        86..=90 => forge(stack, world, rng).await,
        _ => fault(stack, world, rng),
    }
}

fn pick(world: &World, rng: &mut fastrand::Rng) -> Option<(String, AntomKnown)> {
    pick_where(&world.antom, rng, |_| true)
}

/// A payment Antom says succeeded, most of the time.
fn pick_paid(
    stack: &Stack,
    world: &World,
    rng: &mut fastrand::Rng,
) -> Option<(String, AntomKnown)> {
    if rng.u32(0..100) < 15 {
        return pick(world, rng);
    }
    let antom = simulator(stack);
    pick_where(&world.antom, rng, |no| {
        antom
            .payment(no)
            .is_some_and(|p| p.status == PaymentState::Success)
    })
}

async fn create(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    world.count("antom create");
    let (currency, exponent, multiple) = CURRENCIES[rng.usize(0..CURRENCIES.len())];
    // Up to 500.00 (50,000 yen; IDR in whole rupiah up to 1,000,000).
    let minor = match currency {
        "IDR" => rng.u64(1_000..=1_000_000) * multiple,
        _ => rng.u64(1..=50_000),
    };
    let out_trade_no = format!("{prefix}_a");
    let expiry_ms = now_ms() + i64::try_from(rng.u64(2_500..7_000)).unwrap_or(5_000);
    let channel = ["page", "wap", "app"][rng.usize(0..3)];
    let mut body = json!({
        "out_trade_no": out_trade_no,
        "amount": text(minor, exponent),
        "currency": currency,
        "subject": "chaos order abroad",
        "channel": channel,
        "time_expire": alipay_sim::china_text(expiry_ms / 1000 + 1),
    });
    if channel != "app" || rng.bool() {
        body["return_url"] = json!(format!("{}a/{out_trade_no}", crate::support::RETURN_PREFIX));
    }
    if let Ok(mut latest) = world.latest_expiry_ms.lock() {
        *latest = (*latest).max(expiry_ms + 1_000);
    }
    // Remembered first: a crash after the write still leaves it to look at.
    if let Ok(mut orders) = world.antom.lock() {
        orders.insert(
            out_trade_no,
            AntomKnown {
                currency,
                exponent,
                multiple,
                minor,
                body: body.clone(),
                refunds: Vec::new(),
            },
        );
    }
    invoke(
        stack,
        world,
        rng,
        "create-payment",
        "POST",
        "/payments",
        Some(&body),
    )
    .await;
}

async fn retry_create(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom create (retry)");
    let Some((_, known)) = pick(world, rng) else {
        return;
    };
    invoke(
        stack,
        world,
        rng,
        "create-payment",
        "POST",
        "/payments",
        Some(&known.body),
    )
    .await;
}

/// The buyer pays at Antom's cashier (or the wallet refuses), its notification now and then
/// lost, doubled, late or forged on the way.
fn pay(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom pay at the cashier");
    let antom = simulator(stack);
    // Mostly a payment still waiting at Antom (a buyer at the cashier); now and then any.
    let waiting = |no: &String| {
        antom
            .payment(no)
            .is_some_and(|p| p.status == PaymentState::Pending)
    };
    let Some((out_trade_no, _)) = (match rng.u32(0..100) {
        0..=19 => pick(world, rng),
        _ => pick_where(&world.antom, rng, waiting),
    }) else {
        return;
    };
    if rng.u32(0..100) < 25 {
        let fault = match rng.u32(0..4) {
            0 => AntomFault::Drop,
            1 => AntomFault::Duplicate,
            2 => AntomFault::Delay {
                ms: rng.u64(50..800),
            },
            _ => AntomFault::BadNotifySignature,
        };
        world.fault("antom notify", name(&fault));
        antom.inject("notify", fault);
    }
    // Not yet at Antom (its pay call failed or never came), expired, already paid: refused
    // there, as a cashier would.
    let _ = if rng.u32(0..100) < 8 {
        antom.fail(&out_trade_no)
    } else {
        antom.pay(&out_trade_no)
    };
}

async fn refund(stack: &Stack, world: &World, rng: &mut fastrand::Rng, prefix: &str) {
    world.count("antom refund");
    let Some((out_trade_no, known)) = pick_paid(stack, world, rng) else {
        return;
    };
    let (out_request_no, amount) = match known.refunds.len() {
        n if n > 0 && rng.bool() => known.refunds[rng.usize(0..n)].clone(),
        _ => {
            let units = known.minor / known.multiple;
            let minor = rng.u64(1..=units.div_ceil(2).max(1)) * known.multiple;
            (format!("{prefix}_ar"), text(minor, known.exponent))
        }
    };
    if let Ok(mut orders) = world.antom.lock()
        && let Some(known) = orders.get_mut(&out_trade_no)
        && !known.refunds.iter().any(|(no, _)| *no == out_request_no)
    {
        known.refunds.push((out_request_no.clone(), amount.clone()));
    }
    let mut body = json!({"amount": amount, "out_request_no": out_request_no});
    if rng.bool() {
        body["currency"] = json!(known.currency);
    }
    post_refund(
        stack,
        world,
        rng,
        &out_trade_no,
        &body,
        "antom refund (two at once)",
    )
    .await;
}

async fn close(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom close");
    let Some((out_trade_no, _)) = pick(world, rng) else {
        return;
    };
    let path = format!("/payments/{out_trade_no}/close");
    invoke(stack, world, rng, "create-payment", "POST", &path, None).await;
}

async fn sync(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom get ?sync=true");
    let Some((out_trade_no, known)) = pick(world, rng) else {
        return;
    };
    let (function, path) = match known.refunds.first() {
        Some((no, _)) if rng.bool() => (
            "refund",
            format!("/payments/{out_trade_no}/refunds/{no}?sync=true"),
        ),
        _ => (
            "create-payment",
            format!("/payments/{out_trade_no}?sync=true"),
        ),
    };
    invoke(stack, world, rng, function, "GET", &path, None).await;
}

/// Antom notifications nobody should believe: signed by Antom's key but for another amount,
/// the right amount signed by nobody, or signed for an order that does not exist.
async fn forge(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom forged notification");
    let Some((out_trade_no, known)) = pick(world, rng) else {
        return;
    };
    let kind = rng.u32(0..3);
    let (request_id, value) = match kind {
        0 => (out_trade_no.clone(), known.minor + known.multiple),
        2 => ("nobody_here".to_owned(), known.minor),
        _ => (out_trade_no.clone(), known.minor),
    };
    let body = json!({
        "notifyType": "PAYMENT_RESULT",
        "result": {"resultStatus": "S", "resultCode": "SUCCESS", "resultMessage": "success"},
        "paymentRequestId": request_id,
        "paymentId": format!("2026F{:023}", rng.u64(..) % 10u64.pow(18)),
        "paymentAmount": {"currency": known.currency, "value": value.to_string()},
        "paymentCreateTime": "2026-12-05T10:00:00+08:00",
        "paymentTime": "2026-12-05T10:00:01+08:00",
    })
    .to_string();
    let path = "/notify/antom";
    let mut headers = simulator(stack).sign_notification(path, &body);
    if kind == 1 {
        for (name, value) in &mut headers {
            if name == "signature" {
                *value = "algorithm=RSA256,keyVersion=1,signature=Zm9yZ2Vk".into();
            }
        }
    }
    let mut request = Request::new(Body::Text(body));
    *request.method_mut() = lambda_http::http::Method::POST;
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    for (name, value) in headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain([("content-type", "application/json; charset=UTF-8")])
    {
        if let (Ok(name), Ok(value)) = (
            lambda_http::http::HeaderName::from_bytes(name.as_bytes()),
            lambda_http::http::HeaderValue::from_str(value),
        ) {
            request.headers_mut().insert(name, value);
        }
    }
    let _ = Box::pin(stack.gateway.functions.invoke("notify", request)).await;
}

/// A fault armed for Antom's next answer to one operation.
fn fault(stack: &Stack, world: &World, rng: &mut fastrand::Rng) {
    world.count("antom fault armed");
    let scope = ["pay", "inquiryPayment", "cancel", "refund", "inquiryRefund"][rng.usize(0..5)];
    let fault = match (scope, rng.u32(0..9)) {
        (_, 0) => AntomFault::Timeout,
        (_, 1) => AntomFault::TimeoutAfterExecute,
        (_, 2) => AntomFault::Http500,
        (_, 3) => AntomFault::Unsigned,
        (_, 4) => AntomFault::BadSignature,
        (_, 5) => AntomFault::Unknown,
        (_, 6) => AntomFault::UnknownAfterExecute,
        ("refund", 7) => AntomFault::Refuse,
        _ => AntomFault::Slow {
            ms: rng.u64(100..900),
        },
    };
    world.fault("antom", &format!("{scope} {}", name(&fault)));
    simulator(stack).inject(scope, fault);
}

fn name(fault: &AntomFault) -> &'static str {
    match fault {
        AntomFault::Timeout => "Timeout",
        AntomFault::TimeoutAfterExecute => "TimeoutAfterExecute",
        AntomFault::Http500 => "Http500",
        AntomFault::Unsigned => "Unsigned",
        AntomFault::BadSignature => "BadSignature",
        AntomFault::Unknown => "Unknown",
        AntomFault::UnknownAfterExecute => "UnknownAfterExecute",
        AntomFault::Slow { .. } => "Slow",
        AntomFault::Refuse => "Refuse",
        AntomFault::Drop => "Drop",
        AntomFault::Duplicate => "Duplicate",
        AntomFault::Delay { .. } => "Delay",
        AntomFault::BadNotifySignature => "BadNotifySignature",
    }
}

/// The refund request id Antom was sent for one of our refunds, as docs/antom/operations.md
/// gives it (the chaos run's ids are short enough never to need the digest form).
fn refund_request_id(out_trade_no: &str, out_request_no: &str) -> String {
    format!("{out_trade_no}-{out_request_no}")
}

/// Every Antom invariant, against the simulated Antom's ledger.
pub(super) async fn check(
    stack: &Stack,
    known: &BTreeMap<String, AntomKnown>,
    report: &mut ChaosReport,
) {
    let antom = simulator(stack);
    let now = now_ms();
    let refunds_there = antom.refunds();
    let paid_there = antom
        .payments()
        .iter()
        .filter(|p| p.status == PaymentState::Success)
        .count() as u64;
    *report
        .operations
        .entry("antom payments paid (Antom's ledger)")
        .or_default() += paid_there;
    *report
        .operations
        .entry("antom refunds (Antom's ledger)")
        .or_default() += refunds_there.len() as u64;
    let violations = &mut report.violations;
    for (out_trade_no, mine) in known {
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
        let there = antom.payment(out_trade_no);
        let paid_there = there
            .as_ref()
            .is_some_and(|p| p.status == PaymentState::Success);
        let Some((order, refunds)) = stored else {
            if paid_there {
                violations.push(format!("{out_trade_no}: paid at Antom, unknown here"));
            }
            continue;
        };
        report.orders += 1;
        report.refunds += refunds.len() as u64;
        if order.currency().code() != mine.currency || order.amount.minor() != mine.minor {
            violations.push(format!(
                "{out_trade_no}: asked {} {} here, stored {}",
                mine.minor,
                mine.currency,
                order.amount.with_code()
            ));
        }
        let paid_here = order.status.is_paid();
        match (&there, paid_here) {
            (Some(payment), true) if paid_there => {
                if order.trade_no.as_deref() != Some(payment.payment_id.as_str())
                    || order.paid_amount.map(|a| (a.minor(), a.currency().code()))
                        != Some((payment.value, payment.currency.as_str()))
                {
                    violations.push(format!(
                        "{out_trade_no}: paid {:?} {:?} here, {} {} {} at Antom",
                        order.trade_no,
                        order.paid_amount.map(|a| a.with_code()),
                        payment.payment_id,
                        payment.value,
                        payment.currency
                    ));
                }
                // The settlement as Antom reported it, recorded and never computed here.
                let ours = order.settlement.as_ref().map(|s| {
                    (
                        s.amount.currency().code().to_owned(),
                        s.amount.minor(),
                        s.quote_id.clone().unwrap_or_default(),
                        s.quote_price.clone().unwrap_or_default(),
                    )
                });
                if ours != payment.settlement {
                    violations.push(format!(
                        "{out_trade_no}: settlement {ours:?} here, {:?} at Antom",
                        payment.settlement
                    ));
                }
            }
            (_, true) => violations.push(format!(
                "{out_trade_no}: {} here, {:?} at Antom",
                order.status,
                there.as_ref().map(|p| p.status)
            )),
            (_, false) if paid_there => violations.push(format!(
                "{out_trade_no}: paid at Antom, {} here",
                order.status
            )),
            _ => {}
        }
        // Refunds: what Antom executed is exactly what we recorded as succeeded.
        let executed: BTreeMap<&str, &alipay_sim::antom::AntomRefund> = refunds_there
            .iter()
            .filter(|r| r.payment_request_id == *out_trade_no)
            .filter(|r| r.status == RefundState::Success)
            .map(|r| (r.refund_request_id.as_str(), r))
            .collect();
        if refunds_there
            .iter()
            .any(|r| r.payment_request_id == *out_trade_no && r.status == RefundState::Processing)
        {
            violations.push(format!(
                "{out_trade_no}: a refund still processing at Antom after the drain"
            ));
        }
        let executed_minor: u64 = executed.values().map(|r| r.value).sum();
        if executed_minor != order.refunded.minor() {
            violations.push(format!(
                "{out_trade_no}: Antom refunded {executed_minor} (minor units), we recorded {}",
                order.refunded.with_code()
            ));
        }
        if let Some(payment) = &there
            && (payment.refunded > payment.value || executed_minor > payment.value)
        {
            violations.push(format!("{out_trade_no}: refunded more than paid"));
        }
        for refund in &refunds {
            let at_antom = executed
                .get(refund_request_id(out_trade_no, refund.out_request_no.as_str()).as_str());
            match refund.status {
                domain::states::RefundStatus::Pending => violations.push(format!(
                    "{out_trade_no}/{}: still PENDING after the drain",
                    refund.out_request_no
                )),
                domain::states::RefundStatus::Succeeded => {
                    if at_antom.map(|r| (r.value, r.currency.as_str()))
                        != Some((refund.amount.minor(), refund.amount.currency().code()))
                    {
                        violations.push(format!(
                            "{out_trade_no}/{}: SUCCEEDED here ({}), not executed at Antom",
                            refund.out_request_no,
                            refund.amount.with_code()
                        ));
                    }
                }
                domain::states::RefundStatus::Failed => {
                    if at_antom.is_some() {
                        violations.push(format!(
                            "{out_trade_no}/{}: FAILED here, executed at Antom",
                            refund.out_request_no
                        ));
                    }
                }
            }
        }
        for no in executed.keys() {
            if !refunds
                .iter()
                .any(|r| refund_request_id(out_trade_no, r.out_request_no.as_str()) == *no)
            {
                violations.push(format!(
                    "{out_trade_no}/{no}: executed at Antom, unknown here"
                ));
            }
        }
        check_order_rules(stack, &id, &order, &refunds, now, violations).await;
    }
}

/// Antom's harsh defaults as they happened this round: answers `U` (in process) and
/// notifications delivered more than once.
pub(super) fn harsh_answers(antom: &AntomSimulator, report: &mut ChaosReport) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (path, status) in antom.calls() {
        if status == "U" {
            let operation = path.rsplit('/').next().unwrap_or("").to_owned();
            *counts.entry(format!("{operation} U")).or_default() += 1;
        }
    }
    let mut attempts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for delivery in antom.deliveries() {
        *attempts
            .entry((delivery.notify_type, delivery.id))
            .or_default() += 1;
    }
    let repeated = attempts.values().filter(|n| **n > 1).count() as u64;
    *counts
        .entry("notifications delivered more than once".into())
        .or_default() += repeated;
    for (kind, count) in counts {
        report.fault("antom, as Antom answers", &kind, count);
    }
}
