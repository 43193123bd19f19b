//! Property tests: signing and verification over hostile parameter values, and response
//! extraction over hostile JSON.

mod common;

use std::collections::BTreeMap;

use alipay::canonical::{Omit, signing_string};
use alipay::notify::{decode_form, verify_fields};
use alipay::response::extract;
use common::{test_alipay_public_key, test_alipay_signer, test_app_signer};
use proptest::prelude::*;
use serde_json::Value;

/// Values with Chinese text, form metacharacters, emoji and JSON inside.
fn hostile_value() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "中文",
        "支付宝",
        "&",
        "=",
        "%",
        "%25",
        "+",
        " ",
        "  ",
        "😀",
        "{\"a\":[1,{\"b\":\"}\"}]}",
        "\\",
        "\"",
        "a",
        "Z",
        "0.01",
        "\t",
        "/",
        "?",
        "#",
        "é",
    ]);
    prop::collection::vec(pieces, 0..8).prop_map(|p| p.concat())
}

fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z][a-z_]{0,11}", hostile_value(), 1..10)
}

fn form(params: &BTreeMap<String, String>, extra: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
    {
        form.append_pair(k, v);
    }
    form.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn request_signatures_verify_and_tampering_fails(params in params(), tamper in hostile_value()) {
        let signer = test_app_signer();
        let content = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), Omit::Sign);
        let sign = common::base64(&signer.sign_now(content.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?);
        prop_assert!(signer.public_key().verify(content.as_bytes(), &sign).is_ok());

        // Whatever key we change, to whatever different non-empty value, the signature breaks.
        let (key, old) = params.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
        let new = format!("{tamper}x");
        prop_assume!(new != old);
        let mut changed = params.clone();
        changed.insert(key, new);
        let content = signing_string(changed.iter().map(|(k, v)| (k.as_str(), v.as_str())), Omit::Sign);
        prop_assert!(signer.public_key().verify(content.as_bytes(), &sign).is_err());
    }

    #[test]
    fn notifications_round_trip_through_the_form_encoding(mut params in params()) {
        params.remove("sign");
        params.remove("sign_type");
        params.remove("charset");
        let signer = test_alipay_signer();
        // Signed as Alipay signs it (the tests' own canonical string, not the gateway's).
        let content = common::alipay_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
        let sign = common::base64(&signer.sign_now(content.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let body = form(&params, &[("sign_type", "RSA2"), ("sign", &sign)]);
        let decoded = decode_form(body.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (k, v) in &params {
            prop_assert_eq!(decoded.get(k), Some(v), "decoded exactly once");
        }
        prop_assert_eq!(verify_fields(&decoded, &test_alipay_public_key()), Ok(()));
    }

    #[test]
    fn response_extraction_returns_the_exact_bytes(content in json_object(), before in json_value(), after in json_value()) {
        let text = content.to_string();
        let body = format!(
            "{{\"before\":{before},\"alipay_trade_query_response\":{text} ,\"after\":{after},\"sign\":\"c2ln\"}}"
        );
        let raw = extract(&body, "alipay.trade.query").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(raw.content, text.as_str());
        prop_assert_eq!(raw.sign.as_deref(), Some("c2ln"));
    }
}

fn json_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "{", "}", "[", "]", "\"", "\\", "\\\"", "/", "\\/", "a", "中", ":", ",", "\n", "\u{1}",
        ]),
        0..10,
    )
    .prop_map(|p| p.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(json_string(), json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}
