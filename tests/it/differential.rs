//! Differential tests against Alipay's own SDKs: Alipay's official Node.js SDK (npm `alipay-sdk`)
//! and `python-alipay-sdk` (PyPI), installed by `scripts/sdk-oracles.sh` (make test runs it).
//!
//! Seeded random requests, notifications and responses (Chinese text, `+ % & = /`, empty values,
//! escaped JSON, `biz_content` with nested objects) go to both SDKs and to the gateway's code:
//! - requests: the three signatures must be byte for byte the same, and alipay-sdk's
//!   `JSON.stringify` of our `biz_content` must give back our exact text;
//! - notifications, signed as Alipay would by python-alipay-sdk with the Alipay key and sent as
//!   its form encoding: all three accept it, and all three refuse a tampered copy;
//! - responses laid out as Alipay's gateway does and signed over the content's exact text: all
//!   three accept, all three refuse a tampered copy.
//!
//! Both SDKs keep empty values in what they sign and verify, where the Java SDK and Alipay leave
//! them out (docs/alipay/openapi-v1.md): the oracles drop empty values before they reach the SDKs, the gateway
//! gets them as sent. A gateway that signed an empty value would differ from both.
//!
//! `DIFFERENTIAL_SEED` picks another seed (printed on failure); `DIFFERENTIAL_CASES` the count.
//!
//! Antom's protocol against Ant International's Python SDK: `differential/antom.rs`.

#[path = "differential/antom.rs"]
mod antom_sdk;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use alipay::Amount;
use alipay::canonical::{Omit, signing_string};
use alipay::china_time::ChinaDateTime;
use alipay::ids::{AppId, OutRequestNo, OutTradeNo, Subject};
use alipay::notify::{decode_form, verify_fields};
use alipay::request::{AlipayRequest, AppParams, PaymentOrder, TradeRef, UnsignedRequest};
use alipay::response::verify_response;
use serde_json::{Value, json};

const APP_ID: &str = "2021000123456789";

/// splitmix64: a seeded, reproducible stream (the cases must be the same on every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces of hostile text: what breaks a canonical string, a form encoding or a JSON layout.
const PIECES: &[&str] = &[
    "中文",
    "支付宝",
    "会员 Pro 年费",
    "+",
    "%",
    "%20",
    "&",
    "=",
    "/",
    "a+b=c&d=e",
    " ",
    "\"",
    "\\",
    "'",
    "?",
    "#",
    ";",
    ",",
    ":",
    "😀",
    "é",
    "100.00",
    "\n",
    "\t",
    "&amp;",
    "\\/",
    "{\"inner\":\"a/b\",\"n\":1}",
    "[1,2]",
    "sign=",
    "sign_type=RSA2",
];

fn hostile(rng: &mut Rng, allow_empty: bool) -> String {
    if allow_empty && rng.chance(15) {
        return String::new();
    }
    (0..1 + rng.below(5))
        .map(|_| (*rng.pick(PIECES)).to_owned())
        .collect()
}

/// Text without lone braces: python-alipay-sdk finds a response's content by counting braces
/// without regard to strings (a balanced `{...}` inside a string is fine).
fn brace_free(rng: &mut Rng) -> String {
    hostile(rng, true).replace(['{', '}'], "")
}

const KEYS: &[&str] = &[
    "alpha",
    "zeta",
    "out_trade_no",
    "subject",
    "body",
    "notify_url",
    "return_url",
    "quit_url",
    "extra_info",
    "goods_detail",
    "a",
    "z_z",
    "passback_params",
    "store_id",
];

fn json_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 3 } else { 5 }) {
        0 => Value::String(hostile(rng, true)),
        1 => json!(rng.below(1_000_000)),
        2 => json!(rng.chance(50)),
        3 => Value::Array(
            (0..rng.below(3))
                .map(|_| json_value(rng, depth - 1))
                .collect(),
        ),
        _ => json_object(rng, depth - 1),
    }
}

fn json_object(rng: &mut Rng, depth: u32) -> Value {
    let mut map = serde_json::Map::new();
    for _ in 0..rng.below(5) {
        map.insert((*rng.pick(KEYS)).to_owned(), json_value(rng, depth));
    }
    Value::Object(map)
}

/// A request's parameters as free as the protocol allows: the common ones, random others
/// (some empty), a nested `biz_content`.
fn free_request(rng: &mut Rng) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = [
        ("app_id", APP_ID.to_owned()),
        (
            "method",
            (*rng.pick(&["alipay.trade.precreate", "alipay.trade.refund", "x.y.z"])).to_owned(),
        ),
        ("charset", "utf-8".to_owned()),
        ("version", "1.0".to_owned()),
        ("sign_type", "RSA2".to_owned()),
        (
            "timestamp",
            format!(
                "2026-11-2{} 1{}:3{}:0{}",
                rng.below(10),
                rng.below(10),
                rng.below(10),
                rng.below(10)
            ),
        ),
        ("format", "JSON".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for _ in 0..rng.below(5) {
        params.insert((*rng.pick(KEYS)).to_owned(), hostile(rng, true));
    }
    if rng.chance(85) {
        params.insert("biz_content".into(), json_object(rng, 3).to_string());
    }
    params
}

/// A request the gateway builds itself, from its typed request with hostile business text.
fn typed_request(rng: &mut Rng) -> BTreeMap<String, String> {
    let subject = loop {
        let text = hostile(rng, false).replace(['/', '=', '&', '\n', '\t'], "");
        if let Ok(subject) = Subject::parse(text) {
            break subject;
        }
    };
    let order = PaymentOrder {
        out_trade_no: OutTradeNo::parse(format!("order_{}", rng.next() % 1_000_000)).expect("id"),
        total_amount: Amount::from_fen(1 + rng.next() % 10_000_000).expect("amount"),
        subject,
        time_expire: rng
            .chance(50)
            .then(|| ChinaDateTime::parse("2026-11-27 02:00:00").expect("time")),
        identity_check: None,
    };
    let url = format!(
        "https://shop.example.com/return?o={}&q=a+b%20c",
        rng.below(100)
    );
    let trade = TradeRef::OutTradeNo(order.out_trade_no.clone());
    let request = match rng.below(5) {
        0 => AlipayRequest::PagePay {
            order,
            return_url: Some(url),
        },
        1 => AlipayRequest::WapPay {
            order,
            return_url: Some(url.clone()),
            quit_url: Some(url),
        },
        2 => AlipayRequest::AppPay { order },
        3 => AlipayRequest::Precreate { order },
        _ => AlipayRequest::Refund {
            trade,
            refund_amount: Amount::from_fen(1 + rng.next() % 10_000).expect("amount"),
            out_request_no: OutRequestNo::parse(format!("r{}", rng.below(1000))).expect("id"),
            refund_reason: Some(hostile(rng, false)),
        },
    };
    let app = AppParams {
        app_id: AppId::parse(APP_ID).expect("app id"),
        notify_url: rng
            .chance(70)
            .then(|| "https://notify.example.com/alipay?x=1&y=2".to_owned()),
        cert_sns: None,
    };
    UnsignedRequest::new(&request, &app, 1_795_710_605 + rng.below(100_000) as i64)
        .params()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn notification(rng: &mut Rng) -> (BTreeMap<String, String>, (String, String)) {
    let fund_bill_list = json!([{"amount": "1.00", "fundChannel": "ALIPAYACCOUNT"}]).to_string();
    let mut fields: BTreeMap<String, String> = [
        ("notify_time", "2026-11-26 18:30:05".to_owned()),
        ("notify_type", "trade_status_sync".to_owned()),
        (
            "notify_id",
            format!(
                "2026112600222183005{:015}",
                rng.next() % 1_000_000_000_000_000
            ),
        ),
        ("charset", "utf-8".to_owned()),
        ("version", "1.0".to_owned()),
        ("sign_type", "RSA2".to_owned()),
        ("app_id", APP_ID.to_owned()),
        (
            "trade_no",
            format!("2026112622001{:015}", rng.next() % 1_000_000_000_000_000),
        ),
        ("out_trade_no", format!("order_{}", rng.below(1_000_000))),
        ("buyer_id", "2088102534368455".to_owned()),
        ("seller_id", "2088101568358171".to_owned()),
        (
            "trade_status",
            (*rng.pick(&["TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"])).to_owned(),
        ),
        (
            "total_amount",
            Amount::from_fen(1 + rng.next() % 1_000_000)
                .expect("amount")
                .to_string(),
        ),
        ("subject", hostile(rng, false)),
        ("body", hostile(rng, true)),
        ("fund_bill_list", fund_bill_list),
        ("passback_params", hostile(rng, true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for _ in 0..rng.below(3) {
        fields.insert(format!("extra_{}", rng.pick(KEYS)), hostile(rng, true));
    }
    // Any field but sign_type (whose value picks the algorithm) changed: to another value, to
    // empty, or from empty to something.
    let keys: Vec<String> = fields
        .keys()
        .filter(|k| *k != "sign_type")
        .cloned()
        .collect();
    let key = rng.pick(&keys).clone();
    let value = match fields[&key].as_str() {
        "" => "x".to_owned(),
        old if rng.chance(20) => old.chars().skip(1).collect(),
        old => format!("{old}1"),
    };
    (fields, (key, value))
}

/// A response's content, as Alipay lays it out: compact JSON, `/` escaped as `\/` (Alipay's
/// gateway does) or not; and a copy with one value changed.
fn response(rng: &mut Rng) -> (String, String, String) {
    let method = (*rng.pick(&[
        "alipay.trade.precreate",
        "alipay.trade.query",
        "alipay.trade.refund",
        "alipay.trade.close",
    ]))
    .to_owned();
    let mut content = serde_json::Map::new();
    content.insert("code".into(), json!("10000"));
    content.insert("msg".into(), json!("Success"));
    content.insert(
        "out_trade_no".into(),
        json!(format!("order_{}", rng.below(1000))),
    );
    content.insert("total_amount".into(), json!("88.80"));
    for _ in 0..rng.below(4) {
        let value = match rng.below(3) {
            0 => Value::String(brace_free(rng)),
            1 => json!({"nested": brace_free(rng), "list": [brace_free(rng), 1]}),
            _ => Value::String(format!(
                "{{\"escaped\":\"{}\"}}",
                brace_free(rng).replace(['"', '\\'], "")
            )),
        };
        content.insert((*rng.pick(KEYS)).to_owned(), value);
    }
    let escape = rng.chance(50);
    let layout = |value: &serde_json::Map<String, Value>| {
        let text = Value::Object(value.clone()).to_string();
        if escape {
            text.replace('/', "\\/")
        } else {
            text
        }
    };
    let text = layout(&content);
    content.insert("total_amount".into(), json!("88.81"));
    (method, text, layout(&content))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs an oracle with `input` on stdin and parses what it prints.
fn run_oracle(program: &PathBuf, script: &str, input: &Value) -> Value {
    let missing = || {
        format!(
            "{} is not installed: run scripts/sdk-oracles.sh (make test does)",
            program.display()
        )
    };
    let mut child = Command::new(program)
        .arg(root().join("tests/sdk-oracles").join(script))
        .current_dir(root().join("tests/sdk-oracles"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", missing()));
    let mut stdin = child.stdin.take().expect("stdin");
    let text = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer").expect("write stdin");
    assert!(
        output.status.success(),
        "{script} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn alipays_sdks_sign_and_verify_exactly_as_the_gateway_does() {
    let seed = env_number("DIFFERENTIAL_SEED", 20_261_128);
    let count = env_number("DIFFERENTIAL_CASES", 150) as usize;
    let mut rng = Rng(seed);
    let requests: Vec<BTreeMap<String, String>> = (0..count)
        .map(|i| {
            if i % 3 == 0 {
                typed_request(&mut rng)
            } else {
                free_request(&mut rng)
            }
        })
        .collect();
    let notifications: Vec<_> = (0..count).map(|_| notification(&mut rng)).collect();
    let responses: Vec<_> = (0..count).map(|_| response(&mut rng)).collect();
    let cases = json!({
        "app_id": APP_ID,
        "app_private_key": fixture_text("keys/app_private_key.pem"),
        "alipay_private_key": fixture_text("keys/alipay_private_key.pem"),
        "alipay_public_key": fixture_text("keys/alipay_public_key.pem"),
        "requests": requests.iter().map(|p| json!({"params": p})).collect::<Vec<_>>(),
        "notifications": notifications.iter()
            .map(|(fields, (k, v))| json!({"fields": fields, "tamper": [k, v]}))
            .collect::<Vec<_>>(),
        "responses": responses.iter()
            .map(|(method, content, tampered)| json!({"method": method, "content": content, "tampered": tampered}))
            .collect::<Vec<_>>(),
    });
    let python = run_oracle(
        &root().join(".venv-oracles/bin/python"),
        "oracle.py",
        &cases,
    );
    let node = run_oracle(
        &PathBuf::from("node"),
        "oracle.js",
        &json!({"cases": cases, "python": python}),
    );
    let at = |what: &str, i: usize| format!("seed {seed}, {what} {i}");

    // Requests: one signature, three implementations.
    let signer = test_app_signer();
    for (i, params) in requests.iter().enumerate() {
        let content = signing_string(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            Omit::Sign,
        );
        let ours = base64(&signer.sign_now(content.as_bytes()).expect("sign"));
        assert_eq!(
            python["requests"][i]["sign"],
            ours,
            "{}: python-alipay-sdk, {params:?}",
            at("request", i)
        );
        assert_eq!(
            node["requests"][i]["sign"],
            ours,
            "{}: alipay-sdk, {params:?}",
            at("request", i)
        );
        let biz = params.get("biz_content").filter(|b| !b.is_empty());
        assert_eq!(
            node["requests"][i]["biz_content"].as_str(),
            biz.map(String::as_str),
            "{}: JSON.stringify of our biz_content",
            at("request", i)
        );
    }

    // Notifications: the same verdicts, on the real one and on a tampered copy.
    let alipay_key = test_alipay_public_key();
    let ours_accepts = |body: &str| {
        decode_form(body.as_bytes())
            .and_then(|fields| verify_fields(&fields, &alipay_key))
            .is_ok()
    };
    for (i, (fields, tamper)) in notifications.iter().enumerate() {
        let sent = &python["notifications"][i];
        let body = sent["body"].as_str().expect("body");
        let tampered = sent["tampered_body"].as_str().expect("tampered body");
        let verdicts = [
            (ours_accepts(body), ours_accepts(tampered)),
            (sent["verdict"] == true, sent["tampered_verdict"] == true),
            (
                node["notifications"][i]["verdict"] == true,
                node["notifications"][i]["tampered_verdict"] == true,
            ),
        ];
        assert_eq!(
            verdicts,
            [(true, false); 3],
            "{}: (ours, python-alipay-sdk, alipay-sdk) on (sent, tampered {tamper:?}); {fields:?}",
            at("notification", i)
        );
    }

    // Responses: the same.
    for (i, (method, content, _)) in responses.iter().enumerate() {
        let sent = &python["responses"][i];
        let body = sent["body"].as_str().expect("body");
        let tampered = sent["tampered_body"].as_str().expect("tampered body");
        let verdicts = [
            (
                verify_response(body, method, &alipay_key).is_ok(),
                verify_response(tampered, method, &alipay_key).is_ok(),
            ),
            (sent["verdict"] == true, sent["tampered_verdict"] == true),
            (
                node["responses"][i]["verdict"] == true,
                node["responses"][i]["tampered_verdict"] == true,
            ),
        ];
        assert_eq!(
            verdicts,
            [(true, false); 3],
            "{}: (ours, python-alipay-sdk, alipay-sdk) on (sent, tampered); {content}",
            at("response", i)
        );
    }
}

fn fixture_text(relative: &str) -> String {
    let path = gateway_tests::support::fixtures().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn test_alipay_public_key() -> alipay::PublicKey {
    alipay::PublicKey::parse(&fixture_text("keys/alipay_public_key.pem")).expect("test alipay key")
}

fn test_app_signer() -> alipay::LocalKeySigner {
    let key = alipay::AppPrivateKey::parse(&fixture_text("keys/app_private_key.pem"))
        .expect("test app key");
    alipay::LocalKeySigner::new(&key)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One agreement API call, typed for the gateway and as documented fields for the oracle.
fn agreement_case(rng: &mut Rng, i: usize) -> (AlipayRequest, Value, Option<String>) {
    use alipay::agreement::{AgreementSign, PeriodRule, PeriodType, SignChannel};
    use alipay::china_time::ChinaDate;
    use alipay::ids::{AgreementNo, ExternalAgreementNo};
    let agreement_no = format!("2026{:016}", rng.next() % 10_000_000_000_000_000);
    let amount = Amount::from_fen(1 + rng.next() % 100_000).expect("amount");
    let product = (*rng.pick(&["GENERAL_WITHHOLDING", "CYCLE_PAY_AUTH"])).to_owned();
    let notify = Some("https://notify.example.com/alipay?x=1&y=2".to_owned());
    match i % 6 {
        5 => {
            let out_trade_no = format!("sub{}_0000", rng.next() % 1_000_000);
            let external = format!("sub{}", rng.next() % 1_000_000_000);
            let execute_time = ChinaDate::parse(&format!(
                "2027-{:02}-{:02}",
                1 + rng.below(12),
                1 + rng.below(28)
            ))
            .expect("date");
            let sign = AgreementSign {
                external_agreement_no: ExternalAgreementNo::parse(external.clone()).expect("no"),
                product_code: product.clone(),
                sign_scene: "INDUSTRY|DIGITAL_MEDIA".to_owned(),
                channel: SignChannel::Qrcode,
                rule: PeriodRule {
                    period_type: PeriodType::Month,
                    period: 1,
                    execute_time,
                    single_amount: amount,
                    total_amount: None,
                    total_payments: None,
                },
            };
            let sign_notify = "https://notify.example.com/alipay?x=1&y=2".to_owned();
            let return_url = Some(format!(
                "https://shop.example.com/subscribed?s={}",
                rng.below(99)
            ));
            let subject = format!("Plan {} first month", rng.below(9));
            (
                AlipayRequest::PagePayAndSign {
                    order: PaymentOrder {
                        out_trade_no: OutTradeNo::parse(out_trade_no.clone()).expect("id"),
                        total_amount: amount,
                        subject: Subject::parse(subject.clone()).expect("subject"),
                        time_expire: None,
                        identity_check: None,
                    },
                    return_url: return_url.clone(),
                    sign,
                    sign_notify_url: Some(sign_notify.clone()),
                },
                json!({"method": "alipay.trade.page.pay", "notify_url": notify, "return_url": return_url,
                       "fields": {"out_trade_no": out_trade_no, "total_amount": amount.to_string(),
                                  "subject": subject, "sign": {
                                      "period_type": "MONTH", "period": 1,
                                      "execute_time": execute_time.to_string(),
                                      "single_amount": amount.to_string(),
                                      "sign_scene": "INDUSTRY|DIGITAL_MEDIA",
                                      "external_agreement_no": external, "channel": "QRCODE",
                                      "sign_notify_url": sign_notify}}}),
                notify,
            )
        }
        0 => {
            let (period_type, period) = if rng.chance(50) {
                (PeriodType::Month, 1 + rng.below(3) as u32)
            } else {
                (PeriodType::Day, 7 + rng.below(60) as u32)
            };
            let execute_time = ChinaDate::parse(&format!(
                "2027-{:02}-{:02}",
                1 + rng.below(12),
                1 + rng.below(28)
            ))
            .expect("date");
            let total_amount = rng
                .chance(50)
                .then(|| Amount::from_fen(amount.fen() * 12).expect("total"));
            let total_payments = rng.chance(50).then(|| 1 + rng.below(36) as u32);
            let channel = *rng.pick(&[
                SignChannel::AlipayApp,
                SignChannel::Qrcode,
                SignChannel::QrcodeOrSms,
            ]);
            let external = format!("sub{}", rng.next() % 1_000_000_000);
            let sign = AgreementSign {
                external_agreement_no: ExternalAgreementNo::parse(external.clone()).expect("no"),
                product_code: product.clone(),
                sign_scene: "INDUSTRY|DIGITAL_MEDIA".to_owned(),
                channel,
                rule: PeriodRule {
                    period_type,
                    period,
                    execute_time,
                    single_amount: amount,
                    total_amount,
                    total_payments,
                },
            };
            let fields = json!({
                "period_type": period_type.as_str(), "period": period,
                "execute_time": execute_time.to_string(), "single_amount": amount.to_string(),
                "total_amount": total_amount.map(|a| a.to_string()),
                "total_payments": total_payments,
                "product_code": product, "sign_scene": "INDUSTRY|DIGITAL_MEDIA",
                "external_agreement_no": external, "channel": channel.as_str(),
            });
            let return_url = Some(format!(
                "https://shop.example.com/signed?s={}",
                rng.below(99)
            ));
            (
                AlipayRequest::AgreementPageSign {
                    sign,
                    return_url: return_url.clone(),
                },
                json!({"method": "alipay.user.agreement.page.sign", "fields": fields,
                       "notify_url": notify, "return_url": return_url}),
                notify,
            )
        }
        1 => {
            let out_trade_no = format!("sub{}p{}", rng.next() % 1_000_000, rng.below(40));
            let subject = format!("Plan {} month {}", rng.below(9), rng.below(12));
            // A merchant contracted for cross-border settlement, now and then.
            let settle_currency = ["USD", "HKD", "EUR"]
                .get(rng.below(6))
                .map(|c| (*c).to_owned());
            (
                AlipayRequest::AgreementPay {
                    out_trade_no: OutTradeNo::parse(out_trade_no.clone()).expect("id"),
                    total_amount: amount,
                    subject: Subject::parse(subject.clone()).expect("subject"),
                    agreement_no: AgreementNo::parse(agreement_no.clone()).expect("no"),
                    product_code: product.clone(),
                    settle_currency: settle_currency.clone(),
                },
                json!({"method": "alipay.trade.pay", "notify_url": notify, "fields": {
                    "out_trade_no": out_trade_no, "total_amount": amount.to_string(),
                    "subject": subject, "product_code": product, "agreement_no": agreement_no,
                    "settle_currency": settle_currency}}),
                notify,
            )
        }
        2 => {
            let deduct_time =
                ChinaDate::parse(&format!("2027-03-{:02}", 1 + rng.below(28))).expect("date");
            (
                AlipayRequest::AgreementModify {
                    agreement_no: AgreementNo::parse(agreement_no.clone()).expect("no"),
                    deduct_time,
                    memo: "paused".to_owned(),
                },
                json!({"method": "alipay.user.agreement.executionplan.modify", "fields": {
                    "agreement_no": agreement_no, "deduct_time": deduct_time.to_string(),
                    "memo": "paused"}}),
                None,
            )
        }
        3 => (
            AlipayRequest::AgreementUnsign {
                agreement_no: AgreementNo::parse(agreement_no.clone()).expect("no"),
            },
            json!({"method": "alipay.user.agreement.unsign", "notify_url": notify,
                   "fields": {"agreement_no": agreement_no}}),
            notify,
        ),
        _ => (
            AlipayRequest::AgreementQuery {
                agreement_no: AgreementNo::parse(agreement_no.clone()).expect("no"),
            },
            json!({"method": "alipay.user.agreement.query", "fields": {"agreement_no": agreement_no}}),
            None,
        ),
    }
}

#[test]
fn agreement_requests_are_signed_as_python_alipay_sdks_generic_apis_sign_them() {
    let seed = env_number("DIFFERENTIAL_SEED", 20_261_204);
    let mut rng = Rng(seed);
    let signer = test_app_signer();
    let mut ours = Vec::new();
    let mut cases = Vec::new();
    for i in 0..48 {
        let (request, mut case, notify_url) = agreement_case(&mut rng, i);
        let now = 1_796_000_000 + rng.below(100_000) as i64;
        let app = AppParams {
            app_id: AppId::parse(APP_ID).expect("app id"),
            notify_url: Some("https://notify.example.com/alipay?x=1&y=2".to_owned()),
            cert_sns: None,
        };
        let unsigned = UnsignedRequest::new(&request, &app, now);
        let sign = base64(
            &signer
                .sign_now(unsigned.signing_string().as_bytes())
                .expect("sign"),
        );
        let mut params: BTreeMap<String, String> = unsigned
            .params()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(
            params.get("notify_url"),
            notify_url.as_ref(),
            "seed {seed}, agreement {i}: notify_url sent exactly where Alipay takes one"
        );
        params.insert("sign".to_owned(), sign);
        case["timestamp"] = json!(alipay::china_time::china_timestamp(now));
        ours.push(params);
        cases.push(case);
    }
    let python = run_oracle(
        &root().join(".venv-oracles/bin/python"),
        "oracle.py",
        &json!({
            "app_id": APP_ID,
            "app_private_key": fixture_text("keys/app_private_key.pem"),
            "alipay_private_key": fixture_text("keys/alipay_private_key.pem"),
            "alipay_public_key": fixture_text("keys/alipay_public_key.pem"),
            "requests": [], "notifications": [], "responses": [],
            "agreements": cases,
        }),
    );
    for (i, params) in ours.iter().enumerate() {
        let theirs: BTreeMap<String, String> =
            serde_json::from_value(python["agreements"][i]["params"].clone()).expect("params");
        assert_eq!(
            &theirs, params,
            "seed {seed}, agreement {i}: python-alipay-sdk built and signed {:?}",
            cases[i]
        );
    }
}
