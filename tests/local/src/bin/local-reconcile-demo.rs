//! `make reconcile-demo`: with `make run` going, one discrepancy of each kind between the
//! gateway's books and the simulated Antom's reports, found by the real reconcile function
//! fetching them over SFTP. The simulated Antom's world is moved three days back first, so that
//! the day's settlement date has passed; it is moved back when the demo ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use local_stack::api_auth::Credentials;
use local_stack::http::{Http, eventually};
use serde_json::{Value, json};

const DAYS_BACK: i64 = 3;

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

struct Demo {
    http: Http,
    api: String,
    antom: String,
    stamp: u64,
}

impl Demo {
    fn id(&self, name: &str) -> String {
        format!("rd_{name}_{}", self.stamp)
    }

    async fn sim(&self, path: &str, body: Value) -> Result<Value, String> {
        let answer = self
            .http
            .post_json(&format!("{}{path}", self.antom), &body)
            .await;
        if !(200..300).contains(&answer.status) {
            return Err(format!("{path}: HTTP {} {}", answer.status, answer.text));
        }
        Ok(if answer.text.is_empty() {
            Value::Null
        } else {
            answer.json()
        })
    }

    async fn create(&self, order: &str, amount: &str, currency: &str) -> Result<String, String> {
        let body = json!({"out_trade_no": order, "amount": amount, "currency": currency,
                          "subject": format!("Demo: reconciled ({currency})"), "channel": "page",
                          "return_url": "http://127.0.0.1:3001/orders/demo"});
        let created = self
            .http
            .post_json(&format!("{}/payments", self.api), &body)
            .await;
        if created.status != 201 || created.json()["payment"]["alipay_channel"] != "antom" {
            return Err(format!("{order} not created at Antom: {}", created.text));
        }
        Ok(field(&created.json()["next_step"], "url").to_owned())
    }

    /// Created, paid at Antom's cashier, and (unless the notification is dropped) PAID here.
    async fn pay(&self, name: &str, amount: &str, currency: &str) -> Result<String, String> {
        let order = self.id(name);
        let cashier = self.create(&order, amount, currency).await?;
        let paid = self
            .http
            .send(
                "POST",
                &format!("{cashier}/pay"),
                "application/x-www-form-urlencoded",
                "",
            )
            .await;
        if paid.status != 303 {
            return Err(format!("Antom's cashier refused {order}"));
        }
        self.until(&format!("/payments/{order}"), |p| p["status"] == "PAID")
            .await?;
        Ok(order)
    }

    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let url = format!("{}{path}", self.api);
        eventually(30, || async {
            let view = self.http.get(&url).await.json();
            done(&view).then_some(view)
        })
        .await
        .ok_or(format!("{path}: not within 30 s"))
    }

    /// A refund driven to its end; its final status.
    async fn refund(&self, order: &str, amount: &str) -> Result<String, String> {
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        let answer = self
            .http
            .post_json(
                &format!("{}/payments/{order}/refunds", self.api),
                &json!({"amount": amount, "out_request_no": "r"}),
            )
            .await;
        if !matches!(answer.status, 201 | 202 | 422) {
            return Err(format!("refund of {order}: {}", answer.text));
        }
        let done = self
            .until(&format!("/payments/{order}/refunds/r?sync=true"), |r| {
                r["refund"]["status"] != "PENDING"
            })
            .await?;
        Ok(field(&done["refund"], "status").to_owned())
    }

    async fn edit(&self, edit: Value) -> Result<(), String> {
        self.sim("/sim/report-edits", edit).await.map(|_| ())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let text = std::fs::read_to_string(".local/endpoints.json").map_err(|_| {
        "no .local/endpoints.json: start the gateway with `make run` first".to_owned()
    })?;
    let endpoints: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let api = field(&endpoints, "api_base_url").to_owned();
    let demo = Demo {
        http: Http::new().for_api(&api, Credentials::from_endpoints(&endpoints)?),
        api,
        antom: field(&endpoints, "antom_simulator_url").to_owned(),
        stamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let offset_ms = -DAYS_BACK * 86_400_000;
    demo.sim("/sim/world-offset", json!({"ms": offset_ms}))
        .await?;
    let outcome = run(&demo, &endpoints).await;
    demo.sim("/sim/world-offset", json!({"ms": 0})).await?;
    outcome
}

async fn run(demo: &Demo, endpoints: &Value) -> Result<(), String> {
    let antom_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + local_stack::test_clock_offset_ms() / 1000
        - DAYS_BACK * 86_400;
    let date = alipay::china_time::ChinaDate::of_unix(antom_now).to_string();
    println!("==> the simulated Antom's world is {DAYS_BACK} days back: its day is {date}");

    println!("==> agreeing books: USD, JPY and EUR payments, one refunded in part");
    let ok = demo.pay("ok_usd", "10.99", "USD").await?;
    demo.refund(&ok, "5.00").await?;
    demo.pay("ok_jpy", "1250", "JPY").await?;

    println!("==> one discrepancy of each kind, made at \"Antom\"");
    let lost = demo.id("lost");
    let cashier = demo.create(&lost, "20.00", "EUR").await?;
    demo.sim("/sim/faults", json!({"scope": "notify", "kind": "drop"}))
        .await?;
    demo.http
        .send(
            "POST",
            &format!("{cashier}/pay"),
            "application/x-www-form-urlencoded",
            "",
        )
        .await;
    println!("    {lost}: paid at Antom, its notification dropped");
    let amount = demo.pay("amount", "30.00", "USD").await?;
    demo.edit(json!({"kind": "set_amount", "payment_request_id": amount, "value": 3100}))
        .await?;
    println!("    {amount}: Antom's report says 31.00 USD");
    let gone = demo.pay("gone", "4000", "JPY").await?;
    demo.edit(json!({"kind": "forget", "payment_request_id": gone}))
        .await?;
    println!("    {gone}: not in Antom's report");
    let rhere = demo.pay("rhere", "60.00", "EUR").await?;
    demo.edit(json!({"kind": "add_refund", "payment_request_id": rhere,
                     "refund_request_id": format!("{rhere}-extra"), "value": 600}))
        .await?;
    println!("    {rhere}: a refund at Antom we never made");
    let rgone = demo.pay("rgone", "70.00", "USD").await?;
    demo.refund(&rgone, "7.00").await?;
    demo.edit(json!({"kind": "remove_refund", "refund_request_id": format!("{rgone}-r")}))
        .await?;
    println!("    {rgone}: our refund not in Antom's report");
    let ramount = demo.pay("ramount", "8000", "JPY").await?;
    demo.refund(&ramount, "800").await?;
    demo.edit(json!({"kind": "set_refund_amount", "refund_request_id": format!("{ramount}-r"), "value": 880}))
        .await?;
    println!("    {ramount}: Antom's report refunds 880 JPY, we refunded 800");
    let rstatus = demo.pay("rstatus", "90.00", "EUR").await?;
    demo.sim("/sim/faults", json!({"scope": "refund", "kind": "refuse"}))
        .await?;
    let refused = demo.refund(&rstatus, "9.00").await?;
    demo.edit(json!({"kind": "add_refund", "payment_request_id": rstatus,
                     "refund_request_id": format!("{rstatus}-r"), "value": 900}))
        .await?;
    println!("    {rstatus}: refund {refused} here, executed at Antom after all");
    let settle = demo.pay("settle", "40.00", "USD").await?;
    let told = demo
        .http
        .get(&format!("{}/sim/payments/{settle}", demo.antom))
        .await
        .json();
    let settled = told["settlement"][1].as_u64().unwrap_or(0);
    demo.edit(
        json!({"kind": "set_settlement", "payment_request_id": settle, "value": settled + 1}),
    )
    .await?;
    println!("    {settle}: settled 0.01 CNY more than Antom told us");
    let unsettled = demo.pay("unsettled", "5000", "JPY").await?;
    demo.edit(json!({"kind": "unsettled", "payment_request_id": unsettled}))
        .await?;
    println!("    {unsettled}: in no settlement report");

    let written = demo.sim("/sim/reports", json!({"date": date})).await?;
    println!(
        "==> Antom writes its reports of {date} to its SFTP server ({} files)",
        written["files"].as_array().map_or(0, Vec::len)
    );
    println!("==> the reconcile function fetches them over SFTP and reconciles {date}");
    let answer = demo
        .http
        .post_json(
            &format!(
                "{}/2015-03-31/functions/reconcile/invocations",
                field(endpoints, "functions_url")
            ),
            &json!({"date": date, "channel": "antom"}),
        )
        .await;
    let summary = answer.json();
    if summary.get("counts").is_none() {
        return Err(format!("reconcile failed: {}", answer.text));
    }
    println!("    status {}; counts:", summary["status"]);
    for (category, count) in summary["counts"].as_object().into_iter().flatten() {
        println!("      {category:<26} {count}");
    }
    println!(
        "    settlement: {}",
        serde_json::to_string(&summary["settlement"]).unwrap_or_default()
    );
    let repaired = demo
        .until(&format!("/payments/{lost}"), |p| p["status"] == "PAID")
        .await?;
    println!(
        "    {lost} is {} now: repaired from a signed inquiryPayment",
        field(&repaired, "status")
    );
    let objects = summary["objects"].as_array().cloned().unwrap_or_default();
    if let Some(csv) = objects
        .iter()
        .filter_map(Value::as_str)
        .find(|o| o.ends_with(".csv"))
    {
        println!("    the report: {csv} (CHANNEL=antom DATE={date} make reconcile prints it)");
    }
    let every_kind = summary["counts"]
        .as_object()
        .is_some_and(|c| c.values().all(|v| v.as_u64() >= Some(1)));
    if !every_kind {
        return Err("not every kind of discrepancy was found".into());
    }
    Ok(())
}
