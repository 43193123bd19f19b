//! Every sample event in `events/` goes through its function's handler in process, in the
//! order a merchant would send them, so the samples for `sam local invoke` cannot rot.

use std::collections::HashMap;
use std::path::PathBuf;

use alipay_sim::{Fault, FaultKind};
use gateway_tests::support::{Stack, fixtures};
use lambda_http::Body;
use local_stack::routes::Routes;
use local_stack::template::{read_template, template_path};
use serde_json::Value;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(name))
        .unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

/// (file, expected status, expected body fragment), in the order they are sent.
const SEQUENCE: &[(&str, u16, &str)] = &[
    ("create-payment.json", 201, "\"type\":\"qr\""),
    ("get-payment.json", 200, "\"status\":\"CREATED\""),
    ("notify.json", 200, "success"),
    ("create-refund.json", 201, "\"status\":\"SUCCEEDED\""),
    (
        "get-refund.json",
        200,
        "\"out_request_no\":\"event_refund_1\"",
    ),
    ("create-subscription.json", 201, "\"type\":\"qr\""),
    ("get-subscription.json", 200, "\"status\":\"incomplete\""),
];

/// The reconcile function's events: (file, the day it names; `None` = yesterday in China).
const RECONCILE_EVENTS: &[(&str, Option<&str>)] = &[
    ("reconcile-scheduled.json", None),
    ("reconcile-date.json", Some("2026-11-26")),
];

#[test]
fn the_reconcile_events_name_their_day() {
    let now_ms = gateway::clock::now_ms();
    let yesterday = alipay::china_time::ChinaDate::of_unix(now_ms / 1000).previous();
    for (file, day) in RECONCILE_EVENTS {
        let event: Value = serde_json::from_str(&read(file)).expect("JSON");
        let named = gateway::reconcile::day_of_event(&event, now_ms).expect(file);
        assert_eq!(
            named.to_string(),
            day.map_or(yesterday.to_string(), str::to_owned),
            "{file}"
        );
    }
    // The schedule sends exactly the scheduled sample.
    let template = read_template(&template_path()).expect("template");
    let input = template["Resources"]["ReconcileFunction"]["Properties"]["Events"]["Daily"]
        ["Properties"]["Input"]
        .as_str()
        .map(|text| serde_json::from_str::<Value>(text).expect("Input is JSON"));
    let sample: Value = serde_json::from_str(&read("reconcile-scheduled.json")).expect("JSON");
    assert_eq!(input, Some(sample));
}

#[test]
fn every_event_file_is_exercised() {
    let mut on_disk: Vec<String> = std::fs::read_dir(events_dir())
        .expect("events/")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name != "env.json")
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = SEQUENCE
        .iter()
        .map(|(name, _, _)| (*name).to_owned())
        .chain(RECONCILE_EVENTS.iter().map(|(name, _)| (*name).to_owned()))
        // Run by tests/it/outbox.rs.
        .chain(["publish-changes.json".to_owned()])
        .collect();
    covered.sort();
    assert_eq!(on_disk, covered, "add new event files to SEQUENCE");
}

#[test]
fn the_env_vars_file_configures_every_function() {
    let env: HashMap<String, HashMap<String, String>> =
        serde_json::from_str(&read("env.json")).expect("env.json");
    let template = read_template(&template_path()).expect("template");
    let resources = template
        .get("Resources")
        .and_then(|r| r.as_mapping())
        .expect("resources");
    let functions: Vec<String> = resources
        .iter()
        .filter(|(_, r)| {
            r.get("Type").and_then(|t| t.as_str()) == Some("AWS::Serverless::Function")
        })
        .filter_map(|(id, _)| id.as_str().map(str::to_owned))
        .collect();
    assert_eq!(functions.len(), 8);
    let test_alipay_key = alipay::PublicKey::parse(
        &std::fs::read_to_string(fixtures().join("keys/alipay_public_key.pem")).expect("key"),
    )
    .expect("key");
    for function in functions {
        let vars = env
            .get(&function)
            .unwrap_or_else(|| panic!("env.json has no {function}"));
        if function == "PublisherFunction" {
            // Reads the stream, publishes to the bus: no Alipay configuration at all.
            assert!(vars.contains_key("EVENT_BUS_NAME"), "{vars:?}");
            continue;
        }
        if function == "RiskSignalsFunction" {
            // Reads the stream, writes signal items: the table, no Alipay configuration.
            assert!(vars.contains_key("ORDERS_TABLE"), "{vars:?}");
            continue;
        }
        let config =
            gateway::config::Config::from_map(vars).unwrap_or_else(|e| panic!("{function}: {e}"));
        let gateway::config::channels::AlipayKeys::Keys(keys) = &config.primary().alipay_keys
        else {
            panic!("{function}: env.json configures key mode");
        };
        assert_eq!(
            keys.as_slice(),
            std::slice::from_ref(&test_alipay_key),
            "{function}: notify.json is signed by the test key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_events_run_in_order_through_their_handlers() {
    let stack = Stack::start().await;
    let routes =
        Routes::from_template(&read_template(&template_path()).expect("template")).expect("routes");
    for (name, status, fragment) in SEQUENCE {
        let text = read(name);
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not an event: {e}"));
        let event: Value = serde_json::from_str(&text).expect("json");
        let function = match event["rawPath"].as_str().and_then(|path| {
            routes.function_for(
                event["requestContext"]["http"]["method"]
                    .as_str()
                    .unwrap_or(""),
                path,
            )
        }) {
            Some(function) => function.to_owned(),
            None => routes
                .function_url
                .clone()
                .expect("the Function URL's function"),
        };
        if *name == "create-refund.json" {
            // The payment was paid at Alipay too (its own notification dropped: notify.json stood in).
            stack.simulator.inject(Fault {
                target: "notify".into(),
                kind: FaultKind::Drop,
                times: 1,
            });
            stack
                .simulator
                .pay("event_order_1", false)
                .expect("pay at the simulator");
        }
        let response = stack
            .gateway
            .functions
            .invoke(&function, request)
            .await
            .expect("function");
        let body = match response.body() {
            Body::Text(text) => text.clone(),
            Body::Binary(bytes) => String::from_utf8_lossy(&bytes[..]).into_owned(),
            _ => String::new(),
        };
        assert_eq!(
            response.status().as_u16(),
            *status,
            "{name} via {function}: {body}"
        );
        assert!(body.contains(fragment), "{name}: {body}");
    }
}
