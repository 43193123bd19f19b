//! The subscriptions API end to end through real HTTP (every answer checked against
//! openapi.yaml by the test client): creation and its repeat, the signing page the simulator
//! verifies, the sign notice at the notify function, bad input, cancel (unsigned at Alipay
//! first, with its notice), and a notice for another application refused.

use gateway_tests::support::{Stack, eventually};
use serde_json::{Value, json};

fn first_date_in(days: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    alipay_sim::china_text(now + days * 86_400)[..10].to_owned()
}

fn body(id: &str) -> Value {
    json!({
        "subscription_id": id,
        "customer_ref": "cust_7",
        "subject": "Streaming Pro monthly",
        "amount": "25.00",
        "period_type": "MONTH",
        "period": 1,
        // Day 5 of the month 40 days ahead: never in the past, never after the 28th.
        "first_charge_date": first_date_in(40)[..8].to_owned() + "05",
        "total_payments": 12,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_created_signed_and_canceled_through_the_api() {
    let stack = Stack::start().await;
    let request = body("subapi1");
    let created = stack
        .http
        .post_json(&stack.api("/subscriptions"), &request)
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let answer = created.json();
    assert_eq!(answer["subscription"]["status"], "incomplete");
    assert_eq!(answer["subscription"]["agreement"]["status"], "TEMP");
    assert_eq!(answer["next_step"]["type"], "qr");
    let url = answer["next_step"]["url"].as_str().expect("url").to_owned();
    assert!(url.contains("alipay.user.agreement.page.sign"), "{url}");

    // The same request again: the same subscription; another plan under its id: 409.
    let again = stack
        .http
        .post_json(&stack.api("/subscriptions"), &request)
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    let mut other = request.clone();
    other["amount"] = json!("26.00");
    let conflict = stack
        .http
        .post_json(&stack.api("/subscriptions"), &other)
        .await;
    assert_eq!(conflict.status, 409, "{}", conflict.text);

    // The buyer opens the page (our signature verified by the simulator) and signs.
    let page = stack.http.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.text);
    stack
        .simulator
        .sign_agreement("subapi1", "2088102177840001", false)
        .expect("sign");
    let active = eventually(20, || async {
        let got = stack.http.get(&stack.api("/subscriptions/subapi1")).await;
        (got.json()["status"] == "active").then(|| got.json())
    })
    .await
    .expect("the sign notice makes it active");
    let agreement_no = active["agreement"]["agreement_no"]
        .as_str()
        .expect("agreement_no")
        .to_owned();
    assert_eq!(
        stack
            .simulator
            .agreement("subapi1")
            .and_then(|a| a.agreement_no),
        Some(agreement_no)
    );
    // Alipay records the answer once it has read it (after the notify function wrote).
    eventually(20, || async {
        stack
            .simulator
            .deliveries()
            .iter()
            .any(|d| {
                d.out_trade_no == "subapi1" && d.trade_status == "dut_user_sign" && d.acknowledged
            })
            .then_some(())
    })
    .await
    .expect("the notify function acknowledged the sign notice");

    // Pause and resume (its current period's window is ahead: nothing skipped).
    let paused = stack
        .http
        .post_json(&stack.api("/subscriptions/subapi1/pause"), &json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(paused.json()["status"], "paused");
    let resumed = stack
        .http
        .post_json(&stack.api("/subscriptions/subapi1/resume"), &json!({}))
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.json()["status"], "active");
    assert_eq!(resumed.json()["current_period"]["number"], 1);

    // Cancel: unsigned at Alipay first.
    let canceled = stack
        .http
        .post_json(&stack.api("/subscriptions/subapi1/cancel"), &json!({}))
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    assert_eq!(canceled.json()["status"], "canceled");
    assert_eq!(canceled.json()["agreement"]["status"], "STOP");
    assert_eq!(
        stack.simulator.agreement("subapi1").map(|a| a.status),
        Some("STOP".to_owned())
    );
    let unknown = stack.http.get(&stack.api("/subscriptions/nosuch1")).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    // Canceled, it can be neither paused nor resumed.
    for action in ["pause", "resume"] {
        let refused = stack
            .http
            .post_json(
                &stack.api(&format!("/subscriptions/subapi1/{action}")),
                &json!({}),
            )
            .await;
        assert_eq!(refused.status, 409, "{}", refused.text);
        assert_eq!(refused.json()["error"]["code"], "invalid_state");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_alipay_would_refuse_is_refused_here_naming_the_field() {
    let stack = Stack::start().await;
    let cases = [
        ("period", json!(6), "DAY"),
        ("first_charge_date", json!("2000-01-05"), "MONTH"),
        (
            "first_charge_date",
            json!(first_date_in(40)[..8].to_owned() + "29"),
            "MONTH",
        ),
        ("single_amount", json!("24.99"), "MONTH"),
        ("subscription_id", json!("sub-1"), "MONTH"),
        ("amount", json!(25), "MONTH"),
        ("period_type", json!("WEEK"), "MONTH"),
        ("total_payments", json!("12"), "MONTH"),
    ];
    for (i, (field, value, period_type)) in cases.into_iter().enumerate() {
        let mut request = body(&format!("subbad{i}"));
        request["period_type"] = json!(period_type);
        if period_type == "DAY" {
            request["period"] = json!(7);
        }
        request[field] = value;
        let answer = stack
            .http
            .post_json(&stack.api("/subscriptions"), &request)
            .await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.text);
        assert_eq!(answer.json()["error"]["field"], field, "{}", answer.text);
    }
    // Nothing was written for any of them.
    for i in 0..8 {
        let got = stack
            .http
            .get(&stack.api(&format!("/subscriptions/subbad{i}")))
            .await;
        assert_eq!(got.status, 404, "{}", got.text);
    }
}
