//! The table "AWS round trips per route" in docs/performance.md, measured: each route is called once through
//! the functions with a counting proxy in front of the stand-in (every DynamoDB and KMS request
//! passes it) and the simulator's call log (every Alipay call), and the counts must equal the
//! table's row. So the table cannot drift from what the code does.
//!
//! A row's cell is read up to its first parenthesis: `1 GetItem + 1 TransactWriteItems (+1 …
//! when …)` means exactly one GetItem and one TransactWriteItems in the case measured here; the
//! parenthesis names the other cases.

use std::collections::BTreeMap;

use gateway_tests::chaos::proxy::FaultProxy;
use gateway_tests::merchant::{close, create, refund, wait_for_status};
use gateway_tests::support::{Stack, StackOptions, eventually};
use serde_json::json;

/// `N Operation + N Operation (…)` → {Operation: N}; `–` → nothing.
fn parse_cell(cell: &str) -> BTreeMap<String, u64> {
    let main = cell.split('(').next().unwrap_or("").trim();
    let mut counts = BTreeMap::new();
    for part in main.split('+') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(op)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else {
            continue;
        };
        *counts
            .entry(op.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
            .or_default() += n;
    }
    counts
}

/// The docs/performance.md row whose first cell is `route`: (DynamoDB, KMS, Alipay) counts.
fn readme_row(route: &str) -> [BTreeMap<String, u64>; 3] {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/performance.md"
    ))
    .expect("docs/performance.md");
    let section = doc
        .split("## AWS round trips per route")
        .nth(1)
        .expect("docs/performance.md has the round-trips table");
    let row = section
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            (cells.len() == 4 && cells[0] == route).then_some(cells)
        })
        .next()
        .unwrap_or_else(|| panic!("no docs/performance.md row for {route}"));
    [parse_cell(row[1]), parse_cell(row[2]), parse_cell(row[3])]
}

struct Meter {
    stack: Stack,
    proxy: FaultProxy,
    alipay_seen: usize,
}

impl Meter {
    /// Starts counting afresh.
    fn reset(&mut self) {
        self.proxy.take_requests();
        self.alipay_seen = self.stack.simulator.calls().len();
    }

    /// What was counted since the last reset: (DynamoDB, KMS, Alipay).
    fn take(&mut self) -> [BTreeMap<String, u64>; 3] {
        let mut dynamodb = BTreeMap::new();
        let mut kms = BTreeMap::new();
        for (operation, n) in self.proxy.take_requests() {
            match operation.split_once('.') {
                Some(("DynamoDB", op)) => dynamodb.insert(op.to_owned(), n),
                Some(("KMS", op)) => kms.insert(op.to_owned(), n),
                _ => panic!("unexpected request {operation}"),
            };
        }
        let calls = self.stack.simulator.calls();
        let mut alipay = BTreeMap::new();
        for (method, _) in calls.iter().skip(self.alipay_seen) {
            let short = method.strip_prefix("alipay.trade.").unwrap_or(method);
            *alipay.entry(short.to_owned()).or_default() += 1;
        }
        self.alipay_seen = calls.len();
        [dynamodb, kms, alipay]
    }

    /// What was counted since the last reset must be the sum of these rows.
    fn check(&mut self, routes: &[&str]) {
        let measured = self.take();
        let mut expected: [BTreeMap<String, u64>; 3] = Default::default();
        for route in routes {
            for (sum, row) in expected.iter_mut().zip(readme_row(route)) {
                for (op, n) in row {
                    *sum.entry(op).or_default() += n;
                }
            }
        }
        assert_eq!(
            measured, expected,
            "{routes:?}: measured (DynamoDB, KMS, Alipay) differs from the rows of docs/performance.md"
        );
    }
}

/// Waits until Alipay's `count`th notification about `out_trade_no` was acknowledged.
async fn delivered(stack: &Stack, out_trade_no: &str, count: usize) {
    eventually(60, || async {
        (stack
            .simulator
            .deliveries()
            .iter()
            .filter(|d| d.out_trade_no == out_trade_no && d.acknowledged)
            .count()
            >= count)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{out_trade_no}: notification {count} was not delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_costs_what_the_readme_says() {
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let proxy = FaultProxy::start(&moto, 1).await.expect("counting proxy");
    // The template's default fraud rules: a create with a customer and a buyer IP adds to their
    // counters; one without either counts nothing.
    let template = local_stack::template::read_template(&local_stack::template::template_path())
        .expect("template");
    let rules = template["Parameters"]["RiskRules"]["Default"]
        .as_str()
        .expect("RiskRules' default")
        .to_owned();
    let stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        // The breaker's shared state is read once (below, while warming up), not again within the test.
        env: vec![("BREAKER_SYNC_MS".into(), "60000".into())],
        certificates: false,
        risk_rules: Some(rules),
        ..StackOptions::default()
    })
    .await;
    let mut meter = Meter {
        stack,
        proxy,
        alipay_seen: 0,
    };

    // Warm-up: each function that calls Alipay reads the breaker's shared state once.
    let warm = create(&meter.stack, "rt_warm", "1.00", "qr").await;
    assert_eq!(warm.status, 201, "{}", warm.text);
    meter.stack.simulator.pay("rt_warm", false).expect("pay");
    wait_for_status(&meter.stack, "rt_warm", "PAID").await;
    let warm = refund(
        &meter.stack,
        "rt_warm",
        json!({"amount": "0.10", "out_request_no": "rt_warm_r"}),
    )
    .await;
    assert_eq!(warm.status, 201, "{}", warm.text);
    delivered(&meter.stack, "rt_warm", 2).await;
    let stack = &meter.stack;
    let _ = stack
        .http
        .get(&stack.api("/payments/rt_warm?sync=true"))
        .await;

    meter.reset();
    let page = create(&meter.stack, "rt_page", "10.00", "page").await;
    assert_eq!(page.status, 201, "{}", page.text);
    meter.check(&["`POST /payments` page/wap/app"]);

    let qr = create(&meter.stack, "rt_qr", "20.00", "qr").await;
    assert_eq!(qr.status, 201, "{}", qr.text);
    meter.check(&["`POST /payments` qr"]);

    let mut counted = gateway_tests::merchant::payment_body("rt_counted", "10.00", "page");
    counted["customer_ref"] = json!("cust_rt");
    counted["buyer_ip"] = json!("203.0.113.9");
    let stack = &meter.stack;
    let answer = stack
        .http
        .post_json(&stack.api("/payments"), &counted)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    meter.check(&["`POST /payments` page/wap/app with `customer_ref` and `buyer_ip`"]);

    let repeat = create(&meter.stack, "rt_qr", "20.00", "qr").await;
    assert_eq!(repeat.status, 200, "{}", repeat.text);
    meter.check(&["repeat of `POST /payments`"]);

    let stack = &meter.stack;
    let got = stack.http.get(&stack.api("/payments/rt_qr")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    meter.check(&["`GET /payments/{id}`"]);

    let stack = &meter.stack;
    let synced = stack
        .http
        .get(&stack.api("/payments/rt_qr?sync=true"))
        .await;
    assert_eq!(synced.json()["status"], "CREATED", "{}", synced.text);
    meter.check(&["`GET ...?sync=true` (unpaid)"]);

    let closed = close(&meter.stack, "rt_page").await;
    assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    meter.check(&["`POST /payments/{id}/close`"]);

    // Alipay's notification of the payment, through the notify function (from the buyer's
    // balance: the refund below moves money in the call).
    let balance = alipay_sim::Payer {
        fund_channel: Some(alipay_sim::BALANCE.into()),
        ..alipay_sim::Payer::default()
    };
    meter
        .stack
        .simulator
        .pay_with("rt_qr", &balance)
        .expect("pay");
    delivered(&meter.stack, "rt_qr", 1).await;
    meter.check(&["notify (payment)"]);

    let refunded = refund(
        &meter.stack,
        "rt_qr",
        json!({"amount": "5.00", "out_request_no": "rt_qr_r1"}),
    )
    .await;
    assert_eq!(
        refunded.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        refunded.text
    );
    // Alipay notifies the refund too (settled already by the answer: nothing to write).
    delivered(&meter.stack, "rt_qr", 2).await;
    meter.check(&["`POST .../refunds`", "notify (refund)"]);

    let stack = &meter.stack;
    let got = stack
        .http
        .get(&stack.api("/payments/rt_qr/refunds/rt_qr_r1"))
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    meter.check(&["`GET .../refunds/{no}`"]);
}

#[test]
fn cells_are_read_up_to_their_parenthesis() {
    let cell = parse_cell("1 GetItem + 1 TransactWriteItems (+1 BatchGetItem when …)");
    assert_eq!(
        cell,
        BTreeMap::from([("GetItem".into(), 1), ("TransactWriteItems".into(), 1)])
    );
    assert!(parse_cell("–").is_empty());
    assert_eq!(
        parse_cell("1 Sign while unpaid"),
        BTreeMap::from([("Sign".into(), 1)])
    );
    assert_eq!(
        parse_cell("3 TransactWriteItems (reserve; claim; settle)")["TransactWriteItems"],
        3
    );
}
