//! `make risk-demo`: with `make run` going, a streaming risk signal blocking the next create.
//! One Alipay buyer pays for four of the shop's customers (QR payments, paid at the simulated
//! Alipay's cashier as that one buyer); the paid transitions reach the table's stream, the
//! risk-signals function (fed by `make run`'s events path, in tumbling windows) raises each
//! customer's `buyer_customers`, and the template's rule `shared_alipay_buyer` (block at 4)
//! refuses the next payment of any of them. Timed from the fourth payment being recorded.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use local_stack::api_auth::Credentials;
use local_stack::http::Http;
use serde_json::{Value, json};

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let text = std::fs::read_to_string(".local/endpoints.json").map_err(|_| {
        "no .local/endpoints.json: start the gateway with `make run` first".to_owned()
    })?;
    let endpoints: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let api = field(&endpoints, "api_base_url").to_owned();
    let simulator = field(&endpoints, "simulator_url").to_owned();
    let http = Http::new().for_api(&api, Credentials::from_endpoints(&endpoints)?);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let buyer = format!("2088{:012}", stamp % 1_000_000_000_000);
    let create = |no: String, customer: String| {
        let http = &http;
        let api = &api;
        async move {
            let body = json!({"out_trade_no": no, "amount": "10.00", "subject": "Demo: risk",
                              "channel": "qr", "customer_ref": customer});
            http.post_json(&format!("{api}/payments"), &body).await
        }
    };
    println!(
        "==> one Alipay buyer ({}…) pays for four customers",
        &buyer[..8]
    );
    for n in 1..=4 {
        let no = format!("rk_{stamp}_{n}");
        let customer = format!("cust_rk_{stamp}_{n}");
        let created = create(no.clone(), customer.clone()).await;
        if created.status != 201 {
            return Err(format!("{no}: {} {}", created.status, created.text));
        }
        let paid = http
            .post_json(
                &format!("{simulator}/sim/pay"),
                &json!({"out_trade_no": no, "buyer_id": buyer}),
            )
            .await;
        if paid.status != 200 {
            return Err(format!("{no}: the cashier refused: {}", paid.text));
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = http.get(&format!("{api}/payments/{no}")).await;
            if shown.status == 200 && shown.json()["status"] == "PAID" {
                break;
            }
            if Instant::now() > until {
                return Err(format!("{no} was not recorded paid within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("    {no}: {customer} paid");
    }
    let paid = Instant::now();
    println!("==> the next payment of the first customer, until the signal blocks it");
    for attempt in 1.. {
        let no = format!("rk_{stamp}_next_{attempt}");
        let answer = create(no.clone(), format!("cust_rk_{stamp}_1")).await;
        if answer.status == 422 {
            let error = &answer.json()["error"];
            println!(
                "    {no}: 422 {} ({}) {} ms after the fourth payment was recorded",
                field(error, "rule"),
                field(error, "message"),
                paid.elapsed().as_millis()
            );
            println!(
                "    see it: ORDERS_TABLE=… alipay-cli risk journal --rule {}",
                field(error, "rule")
            );
            return Ok(());
        }
        if paid.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "not blocked within 30 s (last answer {})",
                answer.status
            ));
        }
        println!(
            "    {no}: {} (the signal is not written yet)",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}
