//! Antom's protocol against Ant International's official Python SDK (PyPI
//! `global-open-sdk-python==1.7.1`, in `.venv-antom-oracle`, installed by
//! `scripts/sdk-oracles.sh`; the oracle is `tests/sdk-oracles/antom_oracle.py`).
//!
//! For the same seed as the v1 cases:
//! - requests: random methods, paths (sandbox ones too), client ids, request times (epoch
//!   milliseconds and ISO 8601) and JSON bodies with hostile text: our `Signature` header is the
//!   SDK's `algorithm=RSA256,keyVersion=1,signature=` + its `sign`, byte for byte;
//! - answers and notifications signed by the SDK with Antom's key, and tampered copies of each
//!   (body, path, time, client id, a foreign signature, the signature not URL-encoded, each header
//!   dropped or emptied, the escapes in lower case): our verdict is the SDK's on every copy, except where the SDK lets an
//!   unsigned message through, where ours refuses (fail closed);
//! - amounts: `amount_util`'s `to_amount`, `from_amount` and `validate` against our money type and
//!   wire amount, for every currency of our table.

use ::antom::signature::{SignedHeaders, sign_request, verify_notification, verify_response};
use ::antom::{WireAmount, paths};
use money::{Currency, Money};
use serde_json::{Value, json};

use super::{Rng, env_number, fixture_text, hostile, json_object, root, run_oracle};

const CLIENT_ID: &str = "SANDBOX_5YBZ1Q2YQ4C801234";

const PATHS: &[&str] = &[
    paths::PAY,
    paths::INQUIRY_PAYMENT,
    paths::CANCEL,
    paths::REFUND,
    paths::INQUIRY_REFUND,
    "/ams/sandbox/api/v1/payments/pay",
    "/ams/api/v1/payments/consult",
    "/notify/antom/payments",
    "/v1/notify/antom",
];

fn request_time(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => (1_700_000_000_000 + rng.next() % 100_000_000_000).to_string(),
        1 => format!(
            "2026-12-{:02}T{:02}:{:02}:00+08:00",
            1 + rng.below(28),
            rng.below(24),
            rng.below(60)
        ),
        _ => format!(
            "2026-12-{:02}T{:02}:00:00Z",
            1 + rng.below(28),
            rng.below(24)
        ),
    }
}

fn client_id(rng: &mut Rng) -> String {
    let id: String = (0..8 + rng.below(16))
        .map(|_| *rng.pick(&['A', 'B', 'Z', '0', '5', '9', 'Q']))
        .collect();
    if rng.chance(30) {
        format!("SANDBOX_{id}")
    } else {
        id
    }
}

/// A JSON body as we send one: compact serde_json, hostile text inside.
fn body(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => String::new(),
        1 => json!({
            "paymentRequestId": hostile(rng, false),
            "paymentAmount": {"currency": "USD", "value": (1 + rng.below(1_000_000)).to_string()},
            "order": {"orderDescription": hostile(rng, true), "referenceOrderId": hostile(rng, false)},
        })
        .to_string(),
        _ => json_object(rng, 3).to_string(),
    }
}

fn changed(rng: &mut Rng, text: &str) -> String {
    let mut out = text.to_string();
    match rng.below(3) {
        0 if !out.is_empty() => {
            out.pop();
        }
        1 => out.push(' '),
        _ => out.insert_str(0, &hostile(rng, false)),
    }
    out
}

fn foreign_signature(rng: &mut Rng) -> String {
    let raw: Vec<u8> = (0..256).map(|_| rng.next() as u8).collect();
    ::antom::signature::header_value("1", &raw)
}

/// A message for the SDK to sign, with the tamperings to try on it.
fn message(rng: &mut Rng, time_header: &str, method: &str) -> Value {
    let body = body(rng);
    let time = request_time(rng);
    let path = *rng.pick(PATHS);
    let mut tamper = vec![
        json!(["body", changed(rng, &body)]),
        json!([time_header, changed(rng, &time)]),
        json!([
            "path",
            rng.pick(&PATHS.iter().filter(|p| **p != path).collect::<Vec<_>>())
                .to_string()
        ]),
        json!(["client-id", format!("{CLIENT_ID}X")]),
        json!(["signature", foreign_signature(rng)]),
        json!(["unencoded", ""]),
        json!(["lowercase", ""]),
    ];
    for header in ["signature", time_header, "client-id"] {
        tamper.push(json!(["drop", header]));
    }
    tamper.push(json!(["empty", "signature"]));
    json!({
        "method": method,
        "path": path,
        "client_id": CLIENT_ID,
        "time": time,
        "body": body,
        "tamper": tamper,
    })
}

/// An amount case for `amount_util`, and what we make of it.
fn amount_case(rng: &mut Rng) -> Value {
    let currency = *rng.pick(&Currency::all().collect::<Vec<_>>());
    // A leading digit 1-9, then up to `more` digits.
    let number = |rng: &mut Rng, more: usize| -> String {
        let n = rng.below(more + 1);
        let tail: String = (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect();
        format!("{}{tail}", 1 + rng.below(9))
    };
    match rng.below(3) {
        0 => {
            let major = if rng.chance(20) {
                "0".to_string()
            } else {
                number(rng, 12)
            };
            let text = match rng.below(4) {
                0 => major,
                n => {
                    let decimals: String = (0..n)
                        .map(|_| char::from(b'0' + rng.below(10) as u8))
                        .collect();
                    format!("{major}.{decimals}")
                }
            };
            json!({"op": "to_amount", "currency": currency.code(), "text": text})
        }
        1 => {
            json!({"op": "from_amount", "currency": currency.code(), "text": number(rng, 17)})
        }
        _ => {
            let mut value = number(rng, 10);
            if rng.chance(50) {
                value.push_str("00");
            }
            json!({"op": "validate", "currency": currency.code(), "text": value})
        }
    }
}

/// Ours on an amount case: `Ok(text)` as the SDK would answer, or why not.
fn our_amount(case: &Value) -> Result<String, String> {
    let currency = Currency::parse(case["currency"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let text = case["text"].as_str().unwrap_or_default();
    let wire = |value: &str| WireAmount {
        currency: currency.code().into(),
        value: value.into(),
    };
    match case["op"].as_str() {
        Some("to_amount") => {
            let money = Money::parse(text, currency).map_err(|e| e.to_string())?;
            WireAmount::from_money(money)
                .map(|wire| wire.value)
                .map_err(|e| e.to_string())
        }
        Some("from_amount") => wire(text)
            .to_money()
            .map(Money::decimal)
            .map_err(|e| e.to_string()),
        _ => {
            let money = wire(text).to_money().map_err(|e| e.to_string())?;
            WireAmount::from_money(money)
                .map(|_| text.to_string())
                .map_err(|e| e.to_string())
        }
    }
}

fn our_verdict(key: &alipay::PublicKey, message: &Value, notification: bool) -> Result<(), String> {
    let headers = message["headers"].as_object().cloned().unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(Value::as_str);
    let time_header = if notification {
        "request-time"
    } else {
        "response-time"
    };
    let signed = SignedHeaders {
        client_id: header("client-id"),
        time: header(time_header),
        signature: header("signature"),
    };
    let path = message["path"].as_str().unwrap_or_default();
    let body = message["body"].as_str().unwrap_or_default().as_bytes();
    let result = if notification {
        verify_notification(key, CLIENT_ID, path, signed, body)
    } else {
        verify_response(
            key,
            CLIENT_ID,
            message["method"].as_str().unwrap_or_default(),
            path,
            signed,
            body,
        )
    };
    result.map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn ant_internationals_python_sdk_signs_and_verifies_antom_messages_as_the_gateway_does() {
    let seed = env_number("DIFFERENTIAL_SEED", 20_261_205);
    let count = env_number("DIFFERENTIAL_CASES", 150) as usize;
    let mut rng = Rng(seed);
    let requests: Vec<Value> = (0..count)
        .map(|_| {
            let method = if rng.chance(85) { "POST" } else { "GET" };
            json!({
                "method": method,
                "path": rng.pick(PATHS).to_string(),
                "client_id": client_id(&mut rng),
                "time": request_time(&mut rng),
                "body": body(&mut rng),
            })
        })
        .collect();
    let responses: Vec<Value> = (0..count)
        .map(|_| message(&mut rng, "response-time", "POST"))
        .collect();
    let notifications: Vec<Value> = (0..count)
        .map(|_| message(&mut rng, "request-time", "POST"))
        .collect();
    let amounts: Vec<Value> = (0..count * 2).map(|_| amount_case(&mut rng)).collect();
    let cases = json!({
        "client_id": CLIENT_ID,
        "merchant_private_key": fixture_text("keys/app_private_key.pem"),
        "antom_private_key": fixture_text("keys/antom_private_key.pem"),
        "antom_public_key": fixture_text("keys/antom_public_key.pem"),
        "requests": requests,
        "responses": responses,
        "notifications": notifications,
        "amounts": amounts,
    });
    let sdk = run_oracle(
        &root().join(".venv-antom-oracle/bin/python"),
        "antom_oracle.py",
        &cases,
    );
    let at = |what: &str, i: usize| format!("{what} {i} (DIFFERENTIAL_SEED={seed})");

    let signer = super::test_app_signer();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (i, (case, theirs)) in requests
        .iter()
        .zip(sdk["requests"].as_array().expect("requests"))
        .enumerate()
    {
        let field = |name: &str| case[name].as_str().unwrap_or_default().to_string();
        let ours = runtime
            .block_on(sign_request(
                &signer,
                "1",
                &field("method"),
                &field("path"),
                &field("client_id"),
                &field("time"),
                field("body").as_bytes(),
            ))
            .expect("sign");
        let theirs = format!(
            "algorithm=RSA256,keyVersion=1,signature={}",
            theirs.as_str().unwrap_or_default()
        );
        assert_eq!(ours, theirs, "{}: {case}", at("request", i));
    }

    let key =
        alipay::PublicKey::parse(&fixture_text("keys/antom_public_key.pem")).expect("antom key");
    let mut compared = [0usize; 2];
    // Copies both refused, and both accepted: the originals and their signatures written with
    // lower-case escapes (%2b), which URL decoding reads as the same.
    let mut agreed = [0usize; 2];
    for (kind, notification) in [("responses", false), ("notifications", true)] {
        for (i, theirs) in sdk[kind].as_array().expect(kind).iter().enumerate() {
            let messages = theirs["messages"].as_array().expect("messages");
            let verdicts = theirs["verdicts"].as_array().expect("verdicts");
            assert_eq!(
                verdicts.first(),
                Some(&json!(true)),
                "{}: the SDK refuses its own message",
                at(kind, i)
            );
            for (message, verdict) in messages.iter().zip(verdicts) {
                let ours = our_verdict(&key, message, notification);
                let headers = &message["headers"];
                let unsigned = headers["signature"].as_str().is_none_or(str::is_empty);
                agreed[usize::from(ours.is_ok())] += 1;
                match (verdict.as_bool(), &ours) {
                    (Some(true), Ok(())) | (Some(false), Err(_)) => {}
                    // Fail closed: the SDK may let an unsigned message through; we never do.
                    (Some(true), Err(_)) if unsigned => {}
                    _ => panic!(
                        "{}: the SDK says {verdict}, we say {ours:?}: {message}",
                        at(kind, i)
                    ),
                }
                if unsigned {
                    assert!(
                        ours.is_err(),
                        "{}: an unsigned message was accepted",
                        at(kind, i)
                    );
                }
                compared[usize::from(notification)] += 1;
            }
        }
    }
    assert!(
        compared.iter().all(|n| *n >= count * 12),
        "{compared:?} messages compared"
    );
    eprintln!(
        "antom: {compared:?} answers/notifications compared; refused {}, accepted {}",
        agreed[0], agreed[1]
    );
    assert!(
        agreed[1] > count * 2,
        "only the originals were accepted: {agreed:?}"
    );

    for (i, (case, theirs)) in amounts
        .iter()
        .zip(sdk["amounts"].as_array().expect("amounts"))
        .enumerate()
    {
        let ours = our_amount(case);
        match (theirs.get("ok").and_then(Value::as_str), &ours) {
            (Some(text), Ok(mine)) => assert_eq!(text, mine, "{}: {case}", at("amount", i)),
            (None, Err(_)) => {}
            // We refuse decimals beyond the currency's even when they are zeros ("12.500"): the
            // SDK drops them. Anything else is a difference.
            (Some(_), Err(why)) if why.contains("more decimals") => {}
            _ => panic!(
                "{}: the SDK says {theirs}, we say {ours:?}: {case}",
                at("amount", i)
            ),
        }
    }
}
