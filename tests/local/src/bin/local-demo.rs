//! `make demo`: the whole lifecycle against the gateway that `make run` started, step by step:
//! create → pay at the simulator → notification → paid → partial refund → full refund, with the
//! events each step published.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use local_stack::api_auth::Credentials;
use local_stack::http::{Answer, Http, eventually};
use serde_json::{Value, json};

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

fn show(answer: &Answer) {
    println!("    HTTP {}", answer.status);
    for line in serde_json::to_string_pretty(&answer.json())
        .unwrap_or_default()
        .lines()
    {
        println!("    {line}");
    }
}

/// The events `make run` has published for `order` (`.local/events.jsonl`).
fn events_of(order: &str) -> Vec<Value> {
    std::fs::read_to_string(".local/events.jsonl")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| {
            let d = &e["detail"];
            d["payment"]["out_trade_no"] == order || d["refund"]["out_trade_no"] == order
        })
        .collect()
}

/// Waits (up to 5 s) for the events `expected` about `order` after the first `seen`, and
/// prints them as a merchant's rule receives them.
async fn show_events(order: &str, seen: &mut usize, expected: &[&str]) -> Result<(), String> {
    let arrived = eventually(5, || async {
        let events = events_of(order);
        let new: Vec<Value> = events.iter().skip(*seen).cloned().collect();
        let types: Vec<&str> = new
            .iter()
            .filter_map(|e| e["detail-type"].as_str())
            .collect();
        expected.iter().all(|t| types.contains(t)).then_some(new)
    })
    .await
    .ok_or_else(|| {
        format!(
            "demo failed: the events {expected:?} did not arrive within 5 s (see .local/events.log)"
        )
    })?;
    for event in &arrived {
        let detail = &event["detail"];
        let resource = if detail["refund"].is_object() {
            &detail["refund"]
        } else {
            &detail["payment"]
        };
        println!(
            "    event {:<18} {} status={} amount={}",
            event["detail-type"].as_str().unwrap_or(""),
            detail["event_id"].as_str().unwrap_or(""),
            resource["status"].as_str().unwrap_or(""),
            resource["amount"].as_str().unwrap_or("")
        );
    }
    *seen += arrived.len();
    Ok(())
}

/// Refunds `amount` of `order` (number `order` + `suffix`) and waits until it SUCCEEDED: at once
/// (`201`), or, when it is pending (`202`: Alipay executes it later, or it is sent later), as a
/// merchant's backend does: by reading it until the sweeper has settled it. `told`: the answer
/// and the waiting are shown.
async fn refund_and_settle(
    http: &Http,
    api: &str,
    order: &str,
    (suffix, amount, reason): (&str, &str, &str),
    told: bool,
) -> Result<(), String> {
    let out_request_no = format!("{order}{suffix}");
    let answer = http
        .post_json(
            &format!("{api}/payments/{order}/refunds"),
            &json!({"amount": amount, "reason": reason, "out_request_no": out_request_no}),
        )
        .await;
    if told {
        show(&answer);
    }
    check(
        matches!(answer.status, 201 | 202),
        &format!("the refund {amount} failed: {}", answer.text),
    )?;
    if answer.status == 201 {
        return Ok(());
    }
    if told {
        println!(
            "    pending ({}); waiting for the sweeper to finish it...",
            field(&answer.json()["pending_reason"], "code")
        );
    }
    let refund_url = format!("{api}/payments/{order}/refunds/{out_request_no}");
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if http.get(&refund_url).await.json()["refund"]["status"] == "SUCCEEDED" {
            if told {
                println!("    SUCCEEDED");
            }
            return Ok(());
        }
    }
    Err("demo failed: the sweeper did not finish the refund within 30 s".into())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("demo failed: {what}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let text = std::fs::read_to_string(".local/endpoints.json").map_err(|_| {
        "no .local/endpoints.json: start the gateway with `make run` first".to_owned()
    })?;
    let endpoints: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let api = field(&endpoints, "api_base_url").to_owned();
    let simulator = field(&endpoints, "simulator_url").to_owned();
    // Signed with SigV4 as a merchant's backend signs its calls (the local API checks it).
    let credentials = Credentials::from_endpoints(&endpoints)?;
    let http = Http::new().for_api(&api, credentials);
    let shop = field(&endpoints, "shop_url").to_owned();
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let order = format!("demo_{stamp}");

    step(1, &format!("create a payment: POST {api}/payments"));
    let body = json!({"out_trade_no": order, "amount": "299.00", "subject": "Demo: 会员 Pro 年费", "channel": "page",
                      "return_url": format!("{shop}/orders/{order}")});
    let created = http.post_json(&format!("{api}/payments"), &body).await;
    show(&created);
    check(created.status == 201, "payment not created")?;
    let mut seen = 0;
    show_events(&order, &mut seen, &["payment.created"]).await?;
    let url = created.json()["next_step"]["url"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    step(
        2,
        "the buyer opens the cashier URL at the Alipay simulator (which verifies our KMS signature)",
    );
    let cashier = http.get(&url).await;
    println!(
        "    HTTP {} ({} bytes of cashier page)",
        cashier.status,
        cashier.text.len()
    );
    check(
        cashier.status == 200,
        "the simulator refused the signed URL",
    )?;
    step(3, "the buyer presses Pay");
    let paid = http
        .post_form(
            &format!("{simulator}/cashier/pay"),
            &format!("out_trade_no={order}"),
        )
        .await;
    println!(
        "    HTTP {} -> redirect to {}",
        paid.status,
        paid.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
    );

    step(
        4,
        "Alipay notifies the gateway (signed TRADE_SUCCESS); the gateway answers success",
    );
    let delivered = eventually(60, || async {
        let deliveries = http
            .get(&format!("{simulator}/sim/notifications"))
            .await
            .json();
        deliveries
            .as_array()?
            .iter()
            .find(|d| d["out_trade_no"] == order.as_str() && d["acknowledged"] == true)
            .cloned()
    })
    .await
    .ok_or("the notification was not acknowledged")?;
    println!(
        "    notify_id {} trade_status {} answers {}",
        field(&delivered, "notify_id"),
        field(&delivered, "trade_status"),
        delivered["attempts"]
    );

    step(
        5,
        &format!("the payment is PAID: GET {api}/payments/{order}"),
    );
    let payment = http.get(&format!("{api}/payments/{order}")).await;
    show(&payment);
    check(payment.json()["status"] == "PAID", "not paid")?;
    show_events(&order, &mut seen, &["payment.paid"]).await?;

    step(
        6,
        "partial refund of 100.00 (a buyer who paid by bank card is refunded later: 202, then the sweeper confirms it with Alipay)",
    );
    refund_and_settle(
        &http,
        &api,
        &order,
        ("_r1", "100.00", "partial return"),
        true,
    )
    .await?;
    show_events(&order, &mut seen, &["refund.created", "refund.succeeded"]).await?;

    step(
        7,
        "full refund of the remaining 199.00 (sent at once, or by the sweeper: Alipay wants refunds of one trade 3 s apart)",
    );
    refund_and_settle(&http, &api, &order, ("_r2", "199.00", "full return"), true).await?;

    step(8, "final state");
    let last = http.get(&format!("{api}/payments/{order}")).await;
    show(&last);
    check(last.json()["status"] == "REFUNDED", "not fully refunded")?;
    show_events(
        &order,
        &mut seen,
        &["refund.created", "refund.succeeded", "payment.refunded"],
    )
    .await?;
    println!("\nDone: {order} was paid 299.00 and refunded in full (100.00 + 199.00).");
    let antom = field(&endpoints, "antom_simulator_url").to_owned();
    cross_border_demo(&http, &api, &antom, &shop, stamp).await?;
    subscription_demo(&http, &api, &simulator, stamp).await
}

/// A USD payment through the Antom channel: priced in dollars, paid at Antom's cashier,
/// settled in CNY at Antom's quote (recorded as Antom reported it), refunded in two parts; then
/// the same in JPY and IDR, in one line each.
async fn cross_border_demo(
    http: &Http,
    api: &str,
    antom: &str,
    shop: &str,
    stamp: u64,
) -> Result<(), String> {
    let order = format!("demo_usd_{stamp}");
    step(
        9,
        &format!(
            "cross-border: a payment priced in USD goes to the Antom channel: POST {api}/payments"
        ),
    );
    let body = json!({"out_trade_no": order, "amount": "10.99", "currency": "USD",
                      "subject": "Demo: Pro plan (USD)", "channel": "page",
                      "return_url": format!("{shop}/orders/{order}")});
    let created = http.post_json(&format!("{api}/payments"), &body).await;
    show(&created);
    check(created.status == 201, "the USD payment was not created")?;
    check(
        created.json()["payment"]["alipay_channel"] == "antom",
        "the USD payment did not go to Antom",
    )?;
    let cashier = created.json()["next_step"]["url"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    step(
        10,
        "the buyer pays at Antom's cashier (the simulated Antom verified our KMS signature on payments/pay)",
    );
    let page = http.get(&cashier).await;
    println!(
        "    HTTP {} ({} bytes of cashier page)",
        page.status,
        page.text.len()
    );
    println!("    HTTP {} (paid)", buyer_pays_at(http, &cashier).await?);

    step(
        11,
        "Antom notifies the gateway (notifyPayment, signed; answered with Antom's acknowledgement): PAID, settled in CNY",
    );
    let payment = paid_within_30_s(http, api, &order).await?;
    for line in serde_json::to_string_pretty(&payment)
        .unwrap_or_default()
        .lines()
    {
        println!("    {line}");
    }

    step(12, "refund 5.00 USD, then the remaining 5.99 USD");
    refund_and_settle(http, api, &order, ("_r1", "5.00", "partial return"), true).await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    refund_and_settle(http, api, &order, ("_r2", "5.99", "full return"), true).await?;
    let last = http.get(&format!("{api}/payments/{order}")).await.json();
    check(
        last["status"] == "REFUNDED",
        "the USD payment is not fully refunded",
    )?;
    let ledger = http
        .get(&format!("{antom}/sim/payments/{order}"))
        .await
        .json();
    println!(
        "    {order}: {} here; at Antom {} {} paid, {} refunded (minor units)",
        field(&last, "status"),
        ledger["value"],
        field(&ledger, "currency"),
        ledger["refunded"]
    );
    println!(
        "\nDone: {order} was paid 10.99 USD (settled {} {} at {}) and refunded in full.",
        field(&payment["settlement"], "amount"),
        field(&payment["settlement"], "currency"),
        field(&payment["settlement"]["quote"], "rate")
    );
    // The same round trip in a currency without decimals and in one whose amounts end in 00.
    for (currency, amount, part, rest) in [
        ("JPY", "1250", "250", "1000"),
        ("IDR", "150000.00", "50000.00", "100000.00"),
    ] {
        round_trip_quietly(
            http,
            api,
            antom,
            shop,
            stamp,
            currency,
            amount,
            (part, rest),
        )
        .await?;
    }
    Ok(())
}

/// The buyer presses Pay on Antom's cashier page: the status of its answer (a redirect).
async fn buyer_pays_at(http: &Http, cashier: &str) -> Result<u16, String> {
    let paid = http
        .send(
            "POST",
            &format!("{cashier}/pay"),
            "application/x-www-form-urlencoded",
            "",
        )
        .await;
    check(paid.status == 303, "Antom's cashier refused the payment")?;
    Ok(paid.status)
}

/// The payment once it is PAID (read as the merchant does), or an error after 30 s.
async fn paid_within_30_s(http: &Http, api: &str, order: &str) -> Result<Value, String> {
    eventually(30, || async {
        let payment = http.get(&format!("{api}/payments/{order}")).await.json();
        (payment["status"] == "PAID").then_some(payment)
    })
    .await
    .ok_or(format!("{order} was not paid within 30 s"))
}

/// A payment in `currency` through Antom, told in one line: created, paid at the cashier,
/// notified, refunded `parts.0` then `parts.1`, checked against the simulated Antom's ledger.
#[allow(clippy::too_many_arguments)]
async fn round_trip_quietly(
    http: &Http,
    api: &str,
    antom: &str,
    shop: &str,
    stamp: u64,
    currency: &str,
    amount: &str,
    parts: (&str, &str),
) -> Result<(), String> {
    let order = format!("demo_{}_{stamp}", currency.to_ascii_lowercase());
    let body = json!({"out_trade_no": order, "amount": amount, "currency": currency,
                      "subject": format!("Demo: Pro plan ({currency})"), "channel": "page",
                      "return_url": format!("{shop}/orders/{order}")});
    let created = http.post_json(&format!("{api}/payments"), &body).await;
    check(
        created.status == 201 && created.json()["payment"]["alipay_channel"] == "antom",
        &format!(
            "the {currency} payment was not created at Antom: {}",
            created.text
        ),
    )?;
    let cashier = created.json()["next_step"]["url"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    buyer_pays_at(http, &cashier).await?;
    let payment = paid_within_30_s(http, api, &order).await?;
    for refund in [
        ("_r1", parts.0, "partial return"),
        ("_r2", parts.1, "full return"),
    ] {
        refund_and_settle(http, api, &order, refund, false).await?;
    }
    let last = http.get(&format!("{api}/payments/{order}")).await.json();
    check(
        last["status"] == "REFUNDED",
        &format!("the {currency} payment is not fully refunded"),
    )?;
    let ledger = http
        .get(&format!("{antom}/sim/payments/{order}"))
        .await
        .json();
    println!(
        "Done: {order} was paid {amount} {currency} (settled {} {} at {}), refunded {} + {}; at Antom {} paid, {} refunded (minor units).",
        field(&payment["settlement"], "amount"),
        field(&payment["settlement"], "currency"),
        field(&payment["settlement"]["quote"], "rate"),
        parts.0,
        parts.1,
        ledger["value"],
        ledger["refunded"]
    );
    Ok(())
}

fn china_unix(text: &str) -> Option<i64> {
    alipay::china_time::ChinaDateTime::parse(text)
        .ok()
        .map(|at| at.unix_seconds())
}

fn machine_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Moves everyone's clock (the functions, the sweeper, the simulator) to `china_time`.
fn set_clock(china_time: &str) -> Result<(), String> {
    let at = china_unix(china_time).ok_or("bad china time")? * 1000;
    let offset = (at - machine_ms()).max(local_stack::test_clock_offset_ms());
    std::fs::write(".local/test-clock", offset.to_string()).map_err(|e| e.to_string())?;
    println!(
        "    test clock: {} China time",
        alipay::china_time::china_timestamp(at / 1000)
    );
    Ok(())
}

/// A subscription signed and three monthly periods charged on the test clock, one of them
/// after a refusal and a retry the next morning.
async fn subscription_demo(
    http: &Http,
    api: &str,
    simulator: &str,
    stamp: u64,
) -> Result<(), String> {
    let id = format!("demo{stamp}");
    let now_s = (machine_ms() + local_stack::test_clock_offset_ms()) / 1000;
    // Day 5 of the month about 40 days ahead (MONTH dates must be days 1 to 28).
    let first = format!(
        "{}05",
        &alipay::china_time::china_timestamp(now_s + 40 * 86_400)[..8]
    );
    step(
        13,
        &format!("create a monthly subscription (first charge {first}): POST {api}/subscriptions"),
    );
    let body = json!({"subscription_id": id, "subject": "Demo: Streaming Pro monthly", "amount": "25.00",
                      "period_type": "MONTH", "period": 1, "first_charge_date": first, "total_payments": 12,
                      "customer_ref": "demo_customer"});
    let created = http.post_json(&format!("{api}/subscriptions"), &body).await;
    show(&created);
    check(created.status == 201, "subscription not created")?;
    let url = created.json()["next_step"]["url"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    step(
        14,
        "the buyer scans the QR code: the signing page (the simulator verifies our signature), then signs",
    );
    let page = http.get(&url).await;
    println!(
        "    HTTP {} ({} bytes of signing page)",
        page.status,
        page.text.len()
    );
    check(page.status == 200, "the simulator refused the signed page")?;
    let signed = http
        .post_json(
            &format!("{simulator}/sim/agreements/sign"),
            &json!({"external_agreement_no": id}),
        )
        .await;
    check(signed.status == 200, "the simulator could not sign")?;
    let active = eventually(30, || async {
        let got = http.get(&format!("{api}/subscriptions/{id}")).await;
        (got.json()["status"] == "active").then_some(got)
    })
    .await
    .ok_or("the dut_user_sign notice did not make it active")?;
    println!(
        "    dut_user_sign received: status {}, agreement {}",
        field(&active.json(), "status"),
        active.json()["agreement"]["agreement_no"]
    );

    for month in 0..3u32 {
        let date = {
            let base = china_unix(&format!("{first} 00:00:00")).ok_or("date")?;
            // The 5th of each following month.
            let text = alipay::china_time::china_timestamp(base + i64::from(month) * 31 * 86_400);
            format!("{}05", &text[..8])
        };
        let window_day = |days_before: i64| -> Result<String, String> {
            let at = china_unix(&format!("{date} 09:00:30")).ok_or("date")?;
            Ok(alipay::china_time::china_timestamp(
                at - days_before * 86_400,
            ))
        };
        step(
            15 + month,
            &format!(
                "period {} ({date}): the sweeper charges it inside Alipay's window",
                month + 1
            ),
        );
        if month == 1 {
            println!(
                "    the buyer's balance is short once: ACQ.BUYER_BALANCE_NOT_ENOUGH, then a retry the next morning"
            );
            http.post_json(
                &format!("{simulator}/sim/agreements/{id}/script"),
                &json!({"answers": ["ACQ.BUYER_BALANCE_NOT_ENOUGH"]}),
            )
            .await;
        }
        set_clock(&window_day(2)?)?;
        let charged = month + 1;
        let mut outcome = eventually(30, || async {
            let got = http.get(&format!("{api}/subscriptions/{id}")).await.json();
            let done =
                got["charges"].as_u64() == Some(u64::from(charged)) || got["status"] == "past_due";
            done.then_some(got)
        })
        .await
        .ok_or("the sweeper did not charge the period")?;
        if outcome["status"] == "past_due" {
            println!(
                "    refused: status past_due, last refusal counted ({} so far)",
                outcome["current_period"]["refusals"]
            );
            set_clock(&window_day(1)?)?;
            outcome = eventually(30, || async {
                let got = http.get(&format!("{api}/subscriptions/{id}")).await.json();
                (got["charges"].as_u64() == Some(u64::from(charged))).then_some(got)
            })
            .await
            .ok_or("the retry did not charge the period")?;
        }
        let trade = format!("{id}_{month:04}");
        let payment = http.get(&format!("{api}/payments/{trade}")).await.json();
        println!(
            "    paid: {} {} (trade_no {}); subscription {} with {} charges, {} in all",
            trade,
            field(&payment, "status"),
            field(&payment, "trade_no"),
            field(&outcome, "status"),
            outcome["charges"],
            field(&outcome, "charged_amount")
        );
        check(
            field(&payment, "status") == "PAID",
            "the period's payment is not paid",
        )?;
    }

    step(
        18,
        &format!("cancel: POST {api}/subscriptions/{id}/cancel (unsigned at Alipay first)"),
    );
    let canceled = http
        .post_json(&format!("{api}/subscriptions/{id}/cancel"), &json!({}))
        .await;
    println!(
        "    HTTP {}: status {}, agreement {}",
        canceled.status,
        field(&canceled.json(), "status"),
        canceled.json()["agreement"]["status"]
    );
    check(canceled.json()["status"] == "canceled", "not canceled")?;
    let charges = http.get(&format!("{simulator}/sim/charges")).await.json();
    let ours = charges
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|c| {
                    c["out_trade_no"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(&id))
                })
                .count()
        })
        .unwrap_or(0);
    println!(
        "\nDone: {id} was signed, charged 3 periods (one after a retry), and canceled; Alipay's ledger shows {ours} charges."
    );
    check(
        ours == 3,
        "Alipay's ledger does not show exactly three charges",
    )
}
