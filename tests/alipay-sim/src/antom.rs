//! A local Antom (Ant International's acquiring API, `/ams/api/v1/payments/…`), a server of its
//! own beside the v1 simulator: `pay` (the cashier), `inquiryPayment`, `cancel`, `refund`,
//! `inquiryRefund`, the payment and refund notifications with Antom's retry schedule, a
//! settlement quote in another currency, and faults on demand.
//!
//! What it assumes comes from `docs/antom/protocol.md` (ALIPAY-OPS §5), never from the gateway:
//! its own string to sign, `Signature` header, amounts, currencies, rates and clock.
//!
//! As harsh as the documentation allows, by default: `pay` answers `U` `PAYMENT_IN_PROCESS`
//! (the cashier decides later); the payment notification comes late and every third one twice;
//! an inquiry soon after the buyer paid still says `PROCESSING`; every second refund is
//! answered `U` and executed later (then notified); answers and notifications carry times with
//! milliseconds; a request it cannot verify is answered without a signature.
//!
//! Routes: `POST /ams/api/v1/payments/{pay,inquiryPayment,cancel,refund,inquiryRefund}` (and
//! `/ams/sandbox/api/…`); the cashier `GET /antom/cashier/{paymentId}` and
//! `POST /antom/cashier/{paymentId}/pay`; for tests and scripts `POST /sim/pay`
//! (`{"paymentRequestId"}`), `POST /sim/fail`, `POST /sim/faults` (`{"scope", "kind", "ms"}`),
//! `GET /sim/payments/{paymentRequestId}`, `GET /sim/refunds/{refundRequestId}`,
//! `GET /sim/notifications`; its reports: `POST /sim/reports` (`{"date"}`, written under
//! `reports_dir`), `POST /sim/report-edits` ([`ReportEdit`]), `POST /sim/world-offset`
//! (`{"ms"}`: its world's times moved, e.g. a day three days back).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ServerGuard;

mod reports;
use crate::keys::{SigningKey, VerifyKey};
pub use reports::{ReportEdit, merchant_root};

/// Antom's currencies and their decimals (docs/antom/protocol.md), written out here apart from
/// the gateway's table; IDR values must end in `00`.
const CURRENCIES: [(&str, u32); 24] = [
    ("AUD", 2),
    ("BDT", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("IDR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MXN", 2),
    ("MYR", 2),
    ("NZD", 2),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TWD", 2),
    ("USD", 2),
    ("VND", 0),
];

/// The simulator's own exchange rates to one unit of the settlement currency, in millionths:
/// what its quotes say (Antom's are its own; ours are made up and fixed, so tests can check
/// them).
const RATES: [(&str, &str, u64); 6] = [
    ("USD", "CNY", 7_123_456),
    ("JPY", "CNY", 47_890),
    ("IDR", "CNY", 452),
    ("EUR", "CNY", 7_712_340),
    ("GBP", "USD", 1_265_000),
    ("CNY", "USD", 140_380),
];

/// Antom's notification retry schedule, in seconds after the first attempt's time (0 s, 2 min,
/// 10 min, 10 min, 1 h, 2 h, 6 h, 15 h), multiplied by `time_scale`.
const RETRY_SECONDS: [u64; 8] = [0, 120, 600, 600, 3_600, 7_200, 21_600, 54_000];

/// The acknowledgement Antom waits for.
const ACK_STATUS: &str = "S";

/// How the simulator behaves.
pub struct AntomConfig {
    pub client_id: String,
    /// The merchant's id at Antom: its reports' `customerId` and folder.
    pub merchant_id: String,
    /// The merchant's public key: verifies requests.
    pub merchant_public_key: VerifyKey,
    /// Antom's private key: signs answers and notifications.
    pub antom_signer: Arc<SigningKey>,
    /// Multiplies the retry schedule (0.01: 2 min becomes 1.2 s).
    pub time_scale: f64,
    /// How long after the buyer pays the payment notification goes out.
    pub notify_delay_ms: u64,
    /// Every n-th notification is delivered twice (0: never).
    pub duplicate_every: u64,
    /// For this long after the buyer paid, an inquiry still says `PROCESSING`.
    pub inquiry_lag_ms: u64,
    /// Every n-th refund is answered `U` and executed later (0: every refund at once).
    pub async_refund_every: u64,
    pub refund_delay_ms: u64,
    /// The shared test clock's file (milliseconds ahead of the machine).
    pub test_clock_file: Option<PathBuf>,
    /// Where `POST /sim/reports` writes the reports (what the local SFTP server serves).
    pub reports_dir: Option<PathBuf>,
}

impl AntomConfig {
    /// The harsh defaults, with the repository's test keys.
    pub fn with_keys(
        client_id: &str,
        merchant_public_key: VerifyKey,
        antom_signer: SigningKey,
    ) -> AntomConfig {
        AntomConfig {
            client_id: client_id.to_owned(),
            merchant_id: "1022188000000000001".to_owned(),
            merchant_public_key,
            antom_signer: Arc::new(antom_signer),
            time_scale: 0.01,
            notify_delay_ms: 300,
            duplicate_every: 3,
            inquiry_lag_ms: 500,
            async_refund_every: 2,
            refund_delay_ms: 1_000,
            test_clock_file: None,
            reports_dir: None,
        }
    }
}

/// A fault for the next call of a scope (`pay`, `inquiryPayment`, `cancel`, `refund`,
/// `inquiryRefund`, or `notify`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AntomFault {
    /// Hang without executing.
    Timeout,
    /// Execute, then hang.
    TimeoutAfterExecute,
    /// HTTP 500 without executing.
    Http500,
    /// `F` `UNKNOWN_EXCEPTION` without a signature header, without executing (Ant's Java SDK
    /// would return it unverified).
    Unsigned,
    /// Execute, answer with a broken signature.
    BadSignature,
    /// `U` `UNKNOWN_EXCEPTION` (signed), without executing.
    Unknown,
    /// Execute, then answer `U` `UNKNOWN_EXCEPTION` (signed).
    UnknownAfterExecute,
    /// Answer correctly, this long after the call arrives.
    Slow { ms: u64 },
    /// Refunds: `F` `PROCESS_FAIL` (signed), without executing.
    Refuse,
    /// Notifications: never deliver.
    Drop,
    /// Notifications: deliver the first attempt twice at once.
    Duplicate,
    /// Notifications: hold the first attempt back this long.
    Delay { ms: u64 },
    /// Notifications: a broken signature on every attempt.
    BadNotifySignature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentState {
    Pending,
    Success,
    Fail,
    Cancelled,
}

/// A payment as Antom knows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AntomPayment {
    pub payment_request_id: String,
    pub payment_id: String,
    pub currency: String,
    pub value: u64,
    pub settlement_currency: Option<String>,
    pub status: PaymentState,
    pub notify_url: String,
    pub redirect_url: String,
    pub expiry_ms: Option<i64>,
    pub created_ms: i64,
    pub paid_ms: Option<i64>,
    /// What the pay request asked, to tell a retry from a different request.
    #[serde(skip)]
    digest: String,
    /// The settlement: (currency, value, quote id, rate text) when the settlement currency
    /// differs from the payment's.
    pub settlement: Option<(String, u64, String, String)>,
    /// Refunds executed or in process.
    pub refunded: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundState {
    Processing,
    Success,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AntomRefund {
    pub refund_request_id: String,
    pub refund_id: String,
    pub payment_request_id: String,
    pub currency: String,
    pub value: u64,
    pub status: RefundState,
    pub notify_url: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
    #[serde(skip)]
    digest: String,
}

/// One notification attempt.
#[derive(Clone, Debug, Serialize)]
pub struct AntomDelivery {
    pub notify_type: String,
    pub id: String,
    pub attempt: usize,
    pub answer: String,
    pub acknowledged: bool,
}

#[derive(Default)]
struct AntomState {
    payments: HashMap<String, AntomPayment>,
    by_payment_id: HashMap<String, String>,
    refunds: HashMap<String, AntomRefund>,
    faults: VecDeque<(String, AntomFault)>,
    deliveries: Vec<AntomDelivery>,
    /// Every call: (path, resultStatus answered or the fault's name).
    calls: Vec<(String, String)>,
    /// What the reports are to say otherwise than the ledger.
    report_edits: Vec<ReportEdit>,
}

struct AntomInner {
    config: AntomConfig,
    state: Mutex<AntomState>,
    base_url: String,
    counter: AtomicU64,
    refunds_seen: AtomicU64,
    notifications_sent: AtomicU64,
    world_offset_ms: AtomicI64,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

impl AntomInner {
    fn state(&self) -> MutexGuard<'_, AntomState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> i64 {
        let shared = self
            .config
            .test_clock_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0);
        crate::clock::machine_ms() + shared + self.world_offset_ms.load(Ordering::Relaxed)
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }
}

/// The running simulator.
pub struct AntomSimulator {
    inner: Arc<AntomInner>,
    _server: Arc<ServerGuard>,
}

impl AntomSimulator {
    /// Starts on `127.0.0.1:port` (0 for any free port).
    pub async fn start(config: AntomConfig, port: u16) -> std::io::Result<AntomSimulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let address: SocketAddr = listener.local_addr()?;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let inner = Arc::new(AntomInner {
            config,
            state: Mutex::new(AntomState::default()),
            base_url: format!("http://{address}"),
            counter: AtomicU64::new(1),
            refunds_seen: AtomicU64::new(0),
            notifications_sent: AtomicU64::new(0),
            world_offset_ms: AtomicI64::new(0),
            http,
        });
        let app = Router::new()
            .route("/ams/api/v1/payments/{operation}", post(api))
            .route("/ams/sandbox/api/v1/payments/{operation}", post(api))
            .route("/antom/cashier/{payment_id}", get(cashier))
            .route("/antom/cashier/{payment_id}/pay", post(cashier_pay))
            .route("/sim/pay", post(sim_pay))
            .route("/sim/fail", post(sim_fail))
            .route("/sim/faults", post(sim_fault))
            .route("/sim/payments/{id}", get(sim_payment))
            .route("/sim/refunds/{id}", get(sim_refund))
            .route("/sim/notifications", get(sim_notifications))
            .route("/sim/reports", post(sim_reports))
            .route("/sim/report-edits", post(sim_report_edit))
            .route("/sim/world-offset", post(sim_world_offset))
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("antom simulator stopped: {error}");
            }
        });
        Ok(AntomSimulator {
            inner,
            _server: Arc::new(ServerGuard(server)),
        })
    }

    /// `http://127.0.0.1:port`: the gateway's `ANTOM_GATEWAY_URL`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The merchant's id at Antom (its reports' folder).
    pub fn merchant_id(&self) -> String {
        self.inner.config.merchant_id.clone()
    }

    pub fn inject(&self, scope: &str, fault: AntomFault) {
        self.inner
            .state()
            .faults
            .push_back((scope.to_owned(), fault));
    }

    pub fn clear_faults(&self) {
        self.inner.state().faults.clear();
    }

    pub fn payment(&self, payment_request_id: &str) -> Option<AntomPayment> {
        self.inner.state().payments.get(payment_request_id).cloned()
    }

    pub fn payments(&self) -> Vec<AntomPayment> {
        self.inner.state().payments.values().cloned().collect()
    }

    pub fn refund(&self, refund_request_id: &str) -> Option<AntomRefund> {
        self.inner.state().refunds.get(refund_request_id).cloned()
    }

    pub fn refunds(&self) -> Vec<AntomRefund> {
        self.inner.state().refunds.values().cloned().collect()
    }

    pub fn deliveries(&self) -> Vec<AntomDelivery> {
        self.inner.state().deliveries.clone()
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.inner.state().calls.clone()
    }

    /// The buyer pays at the cashier: the payment succeeds and is notified.
    pub fn pay(&self, payment_request_id: &str) -> Result<AntomPayment, String> {
        buyer_pays(&self.inner, payment_request_id, true)
    }

    /// The buyer's payment fails (the wallet refused it): notified with `F`.
    pub fn fail(&self, payment_request_id: &str) -> Result<AntomPayment, String> {
        buyer_pays(&self.inner, payment_request_id, false)
    }

    pub fn set_world_offset_ms(&self, offset_ms: i64) {
        self.inner
            .world_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }

    /// Signs `body` as a notification Antom POSTs to `path` would be signed: the headers.
    pub fn sign_notification(&self, path: &str, body: &str) -> Vec<(String, String)> {
        let time = iso_millis(self.inner.now_ms());
        let signature = sign(&self.inner, "POST", path, &time, body.as_bytes());
        vec![
            ("client-id".into(), self.inner.config.client_id.clone()),
            ("request-time".into(), time),
            ("signature".into(), signature),
        ]
    }
}

// ---- the protocol, the simulator's own ------------------------------------------------------

fn exponent(currency: &str) -> Option<u32> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, e)| *e)
}

/// `"<METHOD> <path>\n<client-id>.<time>.<body>"`.
fn to_sign(method: &str, path: &str, client_id: &str, time: &str, body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {path}\n{client_id}.{time}.").into_bytes();
    text.extend_from_slice(body);
    text
}

/// The `Signature` header over a message: Base64, then URL-encoded.
fn sign(inner: &AntomInner, method: &str, path: &str, time: &str, body: &[u8]) -> String {
    let text = to_sign(method, path, &inner.config.client_id, time, body);
    let base64 = inner.config.antom_signer.sign_base64_bytes(&text);
    format!(
        "algorithm=RSA256,keyVersion=1,signature={}",
        url_encode(&base64)
    )
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn url_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Whether a request is the merchant's: its headers, its client id, its signature.
fn check_request(
    inner: &AntomInner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (&'static str, &'static str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(client_id), Some(time), Some(signature)) = (
        header("client-id"),
        header("request-time"),
        header("signature"),
    ) else {
        return Err((
            "PARAM_ILLEGAL",
            "client-id, request-time and signature are required",
        ));
    };
    if client_id != inner.config.client_id {
        return Err(("INVALID_CLIENT", "unknown client-id"));
    }
    let encoded = signature
        .split_once("signature=")
        .map(|(_, s)| s)
        .ok_or(("INVALID_SIGNATURE", "no signature= in the signature header"))?;
    let raw = url_decode(encoded)
        .and_then(|b64| BASE64.decode(b64).ok())
        .ok_or((
            "INVALID_SIGNATURE",
            "the signature is not URL-encoded Base64",
        ))?;
    let text = to_sign(method.as_str(), path, client_id, time, body);
    if !inner.config.merchant_public_key.verify_bytes(&text, &raw) {
        return Err(("INVALID_SIGNATURE", "the signature does not verify"));
    }
    Ok(())
}

/// ISO 8601 with milliseconds, in UTC+8 (how Antom's examples write times).
fn iso_millis(ms: i64) -> String {
    let unix = ms.div_euclid(1000);
    let china = crate::clock::china_text(unix);
    format!(
        "{}T{}.{:03}+08:00",
        &china[..10],
        &china[11..],
        ms.rem_euclid(1000)
    )
}

/// ISO 8601 without milliseconds, in UTC+8.
fn iso(ms: i64) -> String {
    let china = crate::clock::china_text(ms.div_euclid(1000));
    format!("{}T{}+08:00", &china[..10], &china[11..])
}

/// `2026-12-05T10:30:00+08:00` (or with `Z`, or another offset) as Unix ms.
fn parse_iso(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn amount(value: &Value) -> Option<(String, u64)> {
    let currency = value.get("currency")?.as_str()?;
    let text = value.get("value")?.as_str()?;
    let exponent = exponent(currency)?;
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let minor: u64 = text.parse().ok()?;
    if currency == "IDR" && !minor.is_multiple_of(100) {
        return None;
    }
    let _ = exponent;
    Some((currency.to_owned(), minor))
}

fn wire(currency: &str, value: u64) -> Value {
    json!({"currency": currency, "value": value.to_string()})
}

/// The settlement of a payment in another currency: the simulator's rate, its quote, and the
/// amount in the settlement currency (rounded half up in the settlement currency's unit).
fn settle(currency: &str, value: u64, into: &str, n: u64) -> Option<(String, u64, String, String)> {
    if currency == into {
        return None;
    }
    let rate = RATES
        .iter()
        .find(|(from, to, _)| *from == currency && *to == into)
        .map(|(_, _, rate)| *rate)?;
    let (from_exp, to_exp) = (exponent(currency)?, exponent(into)?);
    // value / 10^from_exp * rate / 10^6 * 10^to_exp, in integers.
    let numerator = u128::from(value) * u128::from(rate) * 10u128.pow(to_exp);
    let denominator = 10u128.pow(from_exp) * 1_000_000;
    let settled = (numerator + denominator / 2) / denominator;
    let rate_text = crate::millionths_text(rate);
    Some((
        into.to_owned(),
        u64::try_from(settled).ok()?,
        format!("QUOTE{n:012}"),
        rate_text,
    ))
}

// ---- answers --------------------------------------------------------------------------------

/// Marks a string that is written as a JSON number (a rate with more digits than a float keeps
/// is written exactly as text; serde_json's `Value` would go through `f64`).
const NUMBER: &str = "@number:";

/// The message's text, numbers marked with [`NUMBER`] written as JSON numbers.
fn to_text(body: &Value) -> String {
    let text = body.to_string();
    let marker = format!("\"{NUMBER}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn result(status: &str, code: &str, message: &str) -> Value {
    json!({"resultCode": code, "resultStatus": status, "resultMessage": message})
}

/// A signed answer to `METHOD path`; `corrupt`: the signature broken.
fn signed_answer(inner: &AntomInner, path: &str, body: Value, corrupt: bool) -> Response {
    let text = to_text(&body);
    let time = iso_millis(inner.now_ms());
    let mut signature = sign(inner, "POST", path, &time, text.as_bytes());
    if corrupt {
        signature = signature.replace("signature=", "signature=AAAA");
    }
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    let put = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put(headers, "content-type", "application/json; charset=UTF-8");
    put(headers, "client-id", &inner.config.client_id);
    put(headers, "response-time", &time);
    put(headers, "signature", &signature);
    response
}

fn unsigned_answer(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn take_fault(inner: &AntomInner, scope: &str) -> Option<AntomFault> {
    let mut state = inner.state();
    let index = state.faults.iter().position(|(s, _)| s == scope)?;
    state.faults.remove(index).map(|(_, fault)| fault)
}

async fn api(
    State(inner): State<Arc<AntomInner>>,
    Path(operation): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Err((code, message)) = check_request(&inner, &method, &path, &headers, &body) {
        inner.state().calls.push((path, format!("unsigned {code}")));
        return unsigned_answer(json!({"result": result("F", code, message)}));
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return signed_answer(
            &inner,
            &path,
            json!({"result": result("F", "PARAM_ILLEGAL", "the body is not JSON")}),
            false,
        );
    };
    let fault = take_fault(&inner, &operation);
    let execute = !matches!(
        fault,
        Some(
            AntomFault::Timeout
                | AntomFault::Http500
                | AntomFault::Unsigned
                | AntomFault::Unknown
                | AntomFault::Refuse
        )
    );
    if let Some(AntomFault::Slow { ms }) = &fault {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
    let answer = if execute {
        match operation.as_str() {
            "pay" => pay(&inner, &request),
            "inquiryPayment" => inquiry_payment(&inner, &request),
            "cancel" => cancel(&inner, &request),
            "refund" => refund(&inner, &request),
            "inquiryRefund" => inquiry_refund(&inner, &request),
            _ => json!({"result": result("F", "PARAM_ILLEGAL", "no such operation")}),
        }
    } else {
        Value::Null
    };
    let status = answer["result"]["resultStatus"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let noted = |what: &str| (path.clone(), what.to_owned());
    match fault {
        Some(AntomFault::Timeout | AntomFault::TimeoutAfterExecute) => {
            inner.state().calls.push(noted("timeout"));
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(AntomFault::Http500) => {
            inner.state().calls.push(noted("http500"));
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Some(AntomFault::Unsigned) => {
            inner.state().calls.push(noted("unsigned"));
            unsigned_answer(json!({"result": result("F", "UNKNOWN_EXCEPTION", "unsigned")}))
        }
        Some(AntomFault::Unknown | AntomFault::UnknownAfterExecute) => {
            inner.state().calls.push(noted("U"));
            signed_answer(
                &inner,
                &path,
                json!({"result": result("U", "UNKNOWN_EXCEPTION", "try again later")}),
                false,
            )
        }
        Some(AntomFault::Refuse) if operation == "refund" => {
            inner.state().calls.push(noted("F"));
            signed_answer(
                &inner,
                &path,
                json!({"result": result("F", "PROCESS_FAIL", "refused")}),
                false,
            )
        }
        Some(AntomFault::BadSignature) => {
            inner.state().calls.push(noted("bad signature"));
            signed_answer(&inner, &path, answer, true)
        }
        _ => {
            inner.state().calls.push(noted(&status));
            signed_answer(&inner, &path, answer, false)
        }
    }
}

fn digest(parts: &[&Value]) -> String {
    parts
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

fn pay(inner: &Arc<AntomInner>, request: &Value) -> Value {
    let illegal = |message: &str| json!({"result": result("F", "PARAM_ILLEGAL", message)});
    let Some(id) = request["paymentRequestId"]
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 64)
    else {
        return illegal("paymentRequestId");
    };
    let Some((currency, value)) = amount(&request["paymentAmount"]).filter(|(_, v)| *v > 0) else {
        return illegal("paymentAmount");
    };
    if request["productCode"] != "CASHIER_PAYMENT" {
        return illegal("productCode");
    }
    let (Some(notify_url), Some(redirect_url)) = (
        request["paymentNotifyUrl"].as_str(),
        request["paymentRedirectUrl"].as_str(),
    ) else {
        return illegal("paymentNotifyUrl and paymentRedirectUrl");
    };
    let settlement_currency = request["settlementStrategy"]["settlementCurrency"]
        .as_str()
        .map(str::to_owned);
    if settlement_currency
        .as_deref()
        .is_some_and(|c| exponent(c).is_none())
    {
        return json!({"result": result("F", "CURRENCY_NOT_SUPPORT", "settlementCurrency")});
    }
    let expiry_ms = match request["paymentExpiryTime"].as_str() {
        None => None,
        Some(text) => match parse_iso(text) {
            Some(ms) => Some(ms),
            None => return illegal("paymentExpiryTime"),
        },
    };
    let key = digest(&[
        &request["paymentAmount"],
        &request["paymentMethod"],
        &request["settlementStrategy"],
        &request["order"]["referenceOrderId"],
    ]);
    let now = inner.now_ms();
    let mut state = inner.state();
    if let Some(existing) = state.payments.get(id) {
        if existing.digest != key {
            return json!({"result": result("F", "REPEAT_REQ_INCONSISTENT", "another request used this paymentRequestId")});
        }
        return pay_answer(inner, existing);
    }
    let payment_id = format!("2026{:024}", inner.next());
    let payment = AntomPayment {
        payment_request_id: id.to_owned(),
        payment_id: payment_id.clone(),
        currency,
        value,
        settlement_currency,
        status: PaymentState::Pending,
        notify_url: notify_url.to_owned(),
        redirect_url: redirect_url.to_owned(),
        expiry_ms,
        created_ms: now,
        paid_ms: None,
        digest: key,
        settlement: None,
        refunded: 0,
    };
    let answer = pay_answer(inner, &payment);
    state.by_payment_id.insert(payment_id, id.to_owned());
    state.payments.insert(id.to_owned(), payment);
    answer
}

fn pay_answer(inner: &AntomInner, payment: &AntomPayment) -> Value {
    let base = json!({
        "paymentRequestId": payment.payment_request_id,
        "paymentId": payment.payment_id,
        "paymentAmount": wire(&payment.currency, payment.value),
        "paymentCreateTime": iso(payment.created_ms),
    });
    let mut answer = match payment.status {
        PaymentState::Pending => json!({
            "result": result("U", "PAYMENT_IN_PROCESS", "payment in process"),
            "normalUrl": format!("{}/antom/cashier/{}", inner.base_url, payment.payment_id),
        }),
        PaymentState::Success => json!({"result": result("S", "SUCCESS", "success")}),
        PaymentState::Fail => {
            json!({"result": result("F", "USER_PAYMENT_VERIFICATION_FAILED", "the payment failed")})
        }
        PaymentState::Cancelled => {
            json!({"result": result("F", "ORDER_IS_CLOSED", "the payment was cancelled")})
        }
    };
    if let (Some(answer), Some(base)) = (answer.as_object_mut(), base.as_object()) {
        answer.extend(base.clone());
    }
    answer
}

/// A pending payment past its expiry fails (nobody paid in time).
fn expire(payment: &mut AntomPayment, now: i64) {
    if payment.status == PaymentState::Pending && payment.expiry_ms.is_some_and(|at| now >= at) {
        payment.status = PaymentState::Fail;
    }
}

fn inquiry_payment(inner: &AntomInner, request: &Value) -> Value {
    let Some(id) = request["paymentRequestId"].as_str() else {
        return json!({"result": result("F", "PARAM_ILLEGAL", "paymentRequestId")});
    };
    let now = inner.now_ms();
    let mut state = inner.state();
    let Some(payment) = state.payments.get_mut(id) else {
        return json!({"result": result("F", "ORDER_NOT_EXIST", "no such payment")});
    };
    expire(payment, now);
    let lagging = payment
        .paid_ms
        .is_some_and(|paid| now - paid < inner.config.inquiry_lag_ms as i64);
    let status = match payment.status {
        PaymentState::Pending => "PROCESSING",
        PaymentState::Success if lagging => "PROCESSING",
        PaymentState::Success => "SUCCESS",
        PaymentState::Fail => "FAIL",
        PaymentState::Cancelled => "CANCELLED",
    };
    let mut answer = json!({
        "result": result("S", "SUCCESS", "success"),
        "paymentStatus": status,
        "paymentRequestId": payment.payment_request_id,
        "paymentId": payment.payment_id,
        "paymentAmount": wire(&payment.currency, payment.value),
    });
    if status == "SUCCESS" {
        answer["paymentTime"] = json!(payment.paid_ms.map(iso));
        if let Some((currency, value, quote_id, rate)) = &payment.settlement {
            answer["grossSettlementAmount"] = wire(currency, *value);
            answer["settlementQuote"] = quote(payment, currency, quote_id, rate);
        }
    }
    if status == "FAIL" {
        answer["paymentResultCode"] = json!("ORDER_IS_CLOSED");
    }
    answer
}

fn quote(payment: &AntomPayment, into: &str, quote_id: &str, rate: &str) -> Value {
    let at = payment.paid_ms.unwrap_or(payment.created_ms);
    json!({
        "quoteId": quote_id,
        "quoteCurrencyPair": format!("{}/{}", payment.currency, into),
        // A JSON number, as Antom writes it (see `to_text`): read by the gateway as text.
        "quotePrice": format!("{NUMBER}{rate}"),
        "quoteStartTime": iso(at),
        "quoteExpiryTime": iso(at + 86_400_000),
    })
}

fn cancel(inner: &AntomInner, request: &Value) -> Value {
    let Some(id) = request["paymentRequestId"].as_str() else {
        return json!({"result": result("F", "PARAM_ILLEGAL", "paymentRequestId")});
    };
    let now = inner.now_ms();
    let mut state = inner.state();
    let Some(payment) = state.payments.get_mut(id) else {
        return json!({"result": result("F", "ORDER_NOT_EXIST", "no such payment")});
    };
    expire(payment, now);
    match payment.status {
        PaymentState::Pending | PaymentState::Fail | PaymentState::Cancelled => {
            payment.status = PaymentState::Cancelled;
            json!({
                "result": result("S", "SUCCESS", "success"),
                "paymentRequestId": payment.payment_request_id,
                "paymentId": payment.payment_id,
                "cancelTime": iso(now),
            })
        }
        PaymentState::Success => {
            json!({"result": result("F", "ORDER_STATUS_INVALID", "the payment succeeded; refund it")})
        }
    }
}

fn refund(inner: &Arc<AntomInner>, request: &Value) -> Value {
    let illegal = |message: &str| json!({"result": result("F", "PARAM_ILLEGAL", message)});
    let Some(id) = request["refundRequestId"]
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 64)
    else {
        return illegal("refundRequestId");
    };
    let Some(payment_id) = request["paymentId"].as_str() else {
        return illegal("paymentId");
    };
    let Some((currency, value)) = amount(&request["refundAmount"]).filter(|(_, v)| *v > 0) else {
        return illegal("refundAmount");
    };
    let key = digest(&[&request["paymentId"], &request["refundAmount"]]);
    let now = inner.now_ms();
    let mut state = inner.state();
    if let Some(existing) = state.refunds.get(id) {
        if existing.digest != key {
            return json!({"result": result("F", "REPEAT_REQ_INCONSISTENT", "another refund used this refundRequestId")});
        }
        return refund_answer(existing);
    }
    let Some(request_id) = state.by_payment_id.get(payment_id).cloned() else {
        return json!({"result": result("F", "ORDER_NOT_EXIST", "no such payment")});
    };
    let Some(payment) = state.payments.get_mut(&request_id) else {
        return json!({"result": result("F", "ORDER_NOT_EXIST", "no such payment")});
    };
    if payment.status != PaymentState::Success {
        return json!({"result": result("F", "ORDER_STATUS_INVALID", "the payment did not succeed")});
    }
    if currency != payment.currency {
        return json!({"result": result("F", "CURRENCY_NOT_SAME", "refund in the payment's currency")});
    }
    if payment.refunded + value > payment.value {
        return json!({"result": result("F", "REFUND_AMOUNT_EXCEED", "more than the payment")});
    }
    payment.refunded += value;
    let seen = inner.refunds_seen.fetch_add(1, Ordering::Relaxed) + 1;
    let every = inner.config.async_refund_every;
    let later = every > 0 && seen.is_multiple_of(every);
    let record = AntomRefund {
        refund_request_id: id.to_owned(),
        refund_id: format!("2026R{:023}", inner.next()),
        payment_request_id: request_id,
        currency,
        value,
        status: if later {
            RefundState::Processing
        } else {
            RefundState::Success
        },
        notify_url: request["refundNotifyUrl"].as_str().map(str::to_owned),
        created_ms: now,
        done_ms: (!later).then_some(now),
        digest: key,
    };
    let answer = refund_answer(&record);
    state.refunds.insert(id.to_owned(), record);
    drop(state);
    if later {
        let inner = Arc::clone(inner);
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(inner.config.refund_delay_ms)).await;
            let done = {
                let mut state = inner.state();
                let now = inner.now_ms();
                state.refunds.get_mut(&id).map(|refund| {
                    refund.status = RefundState::Success;
                    refund.done_ms = Some(now);
                    refund.clone()
                })
            };
            if let Some(refund) = done {
                notify_refund(&inner, &refund);
            }
        });
    }
    answer
}

fn refund_answer(refund: &AntomRefund) -> Value {
    let mut answer = json!({
        "refundRequestId": refund.refund_request_id,
        "refundId": refund.refund_id,
        "refundAmount": wire(&refund.currency, refund.value),
    });
    match refund.status {
        RefundState::Success => {
            answer["result"] = result("S", "SUCCESS", "success");
            answer["refundTime"] = json!(refund.done_ms.map(iso));
        }
        RefundState::Processing => {
            answer["result"] = result("U", "REFUND_IN_PROCESS", "the refund is in process");
        }
        RefundState::Fail => {
            answer["result"] = result("F", "PROCESS_FAIL", "the refund failed");
        }
    }
    answer
}

fn inquiry_refund(inner: &AntomInner, request: &Value) -> Value {
    let Some(id) = request["refundRequestId"].as_str() else {
        return json!({"result": result("F", "PARAM_ILLEGAL", "refundRequestId")});
    };
    let state = inner.state();
    let Some(refund) = state.refunds.get(id) else {
        return json!({"result": result("F", "ORDER_NOT_EXIST", "no such refund")});
    };
    let status = match refund.status {
        RefundState::Processing => "PROCESSING",
        RefundState::Success => "SUCCESS",
        RefundState::Fail => "FAIL",
    };
    let mut answer = json!({
        "result": result("S", "SUCCESS", "success"),
        "refundRequestId": refund.refund_request_id,
        "refundId": refund.refund_id,
        "refundAmount": wire(&refund.currency, refund.value),
        "refundStatus": status,
    });
    if let Some(done) = refund.done_ms {
        answer["refundTime"] = json!(iso(done));
    }
    answer
}

// ---- the buyer ------------------------------------------------------------------------------

fn buyer_pays(
    inner: &Arc<AntomInner>,
    payment_request_id: &str,
    succeeds: bool,
) -> Result<AntomPayment, String> {
    let now = inner.now_ms();
    let paid = {
        let mut state = inner.state();
        let payment = state
            .payments
            .get_mut(payment_request_id)
            .ok_or_else(|| format!("no payment {payment_request_id}"))?;
        expire(payment, now);
        if payment.status != PaymentState::Pending {
            return Err(format!(
                "payment {payment_request_id} is {:?}",
                payment.status
            ));
        }
        if succeeds {
            payment.status = PaymentState::Success;
            payment.paid_ms = Some(now);
            let n = inner.next();
            payment.settlement = payment
                .settlement_currency
                .clone()
                .and_then(|into| settle(&payment.currency, payment.value, &into, n));
        } else {
            payment.status = PaymentState::Fail;
        }
        payment.clone()
    };
    let inner = Arc::clone(inner);
    let notified = paid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(inner.config.notify_delay_ms)).await;
        notify_payment(&inner, &notified);
    });
    Ok(paid)
}

async fn cashier(State(inner): State<Arc<AntomInner>>, Path(payment_id): Path<String>) -> Response {
    let state = inner.state();
    let Some(payment) = state
        .by_payment_id
        .get(&payment_id)
        .and_then(|id| state.payments.get(id))
    else {
        return (StatusCode::NOT_FOUND, "no such payment").into_response();
    };
    let exponent = exponent(&payment.currency).unwrap_or(2);
    let scale = 10u64.pow(exponent);
    let shown = if exponent == 0 {
        payment.value.to_string()
    } else {
        format!(
            "{}.{:0width$}",
            payment.value / scale,
            payment.value % scale,
            width = exponent as usize
        )
    };
    Html(format!(
        "<!doctype html><title>Antom cashier</title><h1>Pay {shown} {}</h1>\
         <form method=post action=\"/antom/cashier/{payment_id}/pay\"><button>Pay</button></form>",
        payment.currency
    ))
    .into_response()
}

async fn cashier_pay(
    State(inner): State<Arc<AntomInner>>,
    Path(payment_id): Path<String>,
) -> Response {
    let id = inner.state().by_payment_id.get(&payment_id).cloned();
    match id.map(|id| buyer_pays(&inner, &id, true)) {
        Some(Ok(payment)) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, payment.redirect_url)],
        )
            .into_response(),
        Some(Err(error)) => (StatusCode::CONFLICT, error).into_response(),
        None => (StatusCode::NOT_FOUND, "no such payment").into_response(),
    }
}

// ---- notifications --------------------------------------------------------------------------

fn notify_payment(inner: &Arc<AntomInner>, payment: &AntomPayment) {
    let succeeded = payment.status == PaymentState::Success;
    let mut body = json!({
        "notifyType": "PAYMENT_RESULT",
        "result": if succeeded {
            result("S", "SUCCESS", "success")
        } else {
            result("F", "USER_PAYMENT_VERIFICATION_FAILED", "the payment failed")
        },
        "paymentRequestId": payment.payment_request_id,
        "paymentId": payment.payment_id,
        "paymentAmount": wire(&payment.currency, payment.value),
        "paymentCreateTime": iso(payment.created_ms),
    });
    if succeeded {
        body["paymentTime"] = json!(payment.paid_ms.map(iso));
        if let Some((currency, value, quote_id, rate)) = &payment.settlement {
            body["grossSettlementAmount"] = wire(currency, *value);
            body["settlementQuote"] = quote(payment, currency, quote_id, rate);
        }
    }
    send(
        inner,
        "PAYMENT_RESULT",
        &payment.payment_request_id,
        &payment.notify_url,
        body,
    );
}

fn notify_refund(inner: &Arc<AntomInner>, refund: &AntomRefund) {
    let Some(url) = refund.notify_url.clone() else {
        return;
    };
    let body = json!({
        "notifyType": "REFUND_RESULT",
        "result": result("S", "SUCCESS", "success"),
        "refundRequestId": refund.refund_request_id,
        "refundId": refund.refund_id,
        "refundAmount": wire(&refund.currency, refund.value),
        "refundStatus": match refund.status {
            RefundState::Success => "SUCCESS",
            RefundState::Fail => "FAIL",
            RefundState::Processing => "PROCESSING",
        },
        "refundTime": refund.done_ms.map(iso),
    });
    send(
        inner,
        "REFUND_RESULT",
        &refund.refund_request_id,
        &url,
        body,
    );
}

/// Delivers a notification on Antom's schedule until it is acknowledged (`resultStatus` S).
fn send(inner: &Arc<AntomInner>, notify_type: &str, id: &str, url: &str, body: Value) {
    let fault = take_fault(inner, "notify");
    if fault == Some(AntomFault::Drop) {
        inner.state().deliveries.push(AntomDelivery {
            notify_type: notify_type.to_owned(),
            id: id.to_owned(),
            attempt: 0,
            answer: "dropped".into(),
            acknowledged: false,
        });
        return;
    }
    let n = inner.notifications_sent.fetch_add(1, Ordering::Relaxed) + 1;
    let every = inner.config.duplicate_every;
    let twice = fault == Some(AntomFault::Duplicate) || (every > 0 && n.is_multiple_of(every));
    let corrupt = fault == Some(AntomFault::BadNotifySignature);
    let delay = match fault {
        Some(AntomFault::Delay { ms }) => ms,
        _ => 0,
    };
    let inner = Arc::clone(inner);
    let (notify_type, id, url) = (notify_type.to_owned(), id.to_owned(), url.to_owned());
    let text = to_text(&body);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let path = url_path(&url);
        for (attempt, seconds) in RETRY_SECONDS.iter().enumerate() {
            let wait = (*seconds as f64 * inner.config.time_scale * 1000.0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let answers = if attempt == 0 && twice {
                let (a, b) = tokio::join!(
                    deliver(&inner, &url, &path, &text, corrupt),
                    deliver(&inner, &url, &path, &text, corrupt)
                );
                vec![a, b]
            } else {
                vec![deliver(&inner, &url, &path, &text, corrupt).await]
            };
            let mut acknowledged = false;
            for answer in answers {
                let ok = acknowledges(&answer);
                acknowledged |= ok;
                inner.state().deliveries.push(AntomDelivery {
                    notify_type: notify_type.clone(),
                    id: id.clone(),
                    attempt,
                    answer,
                    acknowledged: ok,
                });
            }
            if acknowledged {
                return;
            }
        }
    });
}

/// The answer's body is `{"result":{"resultStatus":"S",…}}`.
fn acknowledges(answer: &str) -> bool {
    let Some(body) = answer.strip_prefix("HTTP 200 ") else {
        return false;
    };
    serde_json::from_str::<Value>(body).is_ok_and(|v| {
        v["result"]["resultStatus"] == ACK_STATUS && v["result"]["resultCode"] == "SUCCESS"
    })
}

fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(at) => rest[at..]
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_owned(),
        None => "/".to_owned(),
    }
}

async fn deliver(inner: &AntomInner, url: &str, path: &str, body: &str, corrupt: bool) -> String {
    let time = iso_millis(inner.now_ms());
    let mut signature = sign(inner, "POST", path, &time, body.as_bytes());
    if corrupt {
        signature = signature.replace("signature=", "signature=AAAA");
    }
    let request = match hyper::Request::post(url)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .header("client-id", &inner.config.client_id)
        .header("request-time", &time)
        .header("signature", signature)
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
    {
        Ok(request) => request,
        Err(e) => return format!("error: {e}"),
    };
    match tokio::time::timeout(Duration::from_secs(15), inner.http.request(request)).await {
        Err(_) => "error: timeout".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            use http_body_util::BodyExt as _;
            let text = match response.into_body().collect().await {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(e) => format!("error: {e}"),
            };
            format!("HTTP {status} {text}")
        }
    }
}

// ---- the simulator's own API ----------------------------------------------------------------

#[derive(Deserialize)]
struct DateBody {
    date: String,
}

/// Writes a day's reports where the SFTP server serves them; the files written.
async fn sim_reports(State(inner): State<Arc<AntomInner>>, body: axum::Json<DateBody>) -> Response {
    let Some(base) = inner.config.reports_dir.clone() else {
        return (StatusCode::CONFLICT, "started without --reports-dir").into_response();
    };
    match reports::write_reports(&inner, &body.date, &base) {
        Ok(files) => axum::Json(json!({
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn sim_report_edit(
    State(inner): State<Arc<AntomInner>>,
    body: axum::Json<ReportEdit>,
) -> Response {
    match reports::edit_reports(&inner, body.0) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => (StatusCode::CONFLICT, error).into_response(),
    }
}

#[derive(Deserialize)]
struct OffsetBody {
    ms: i64,
}

/// Moves the simulated Antom's world (its payments' and refunds' times) by `ms`.
async fn sim_world_offset(
    State(inner): State<Arc<AntomInner>>,
    body: axum::Json<OffsetBody>,
) -> Response {
    inner.world_offset_ms.store(body.ms, Ordering::Relaxed);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayBody {
    payment_request_id: String,
}

async fn sim_pay(State(inner): State<Arc<AntomInner>>, body: axum::Json<PayBody>) -> Response {
    match buyer_pays(&inner, &body.payment_request_id, true) {
        Ok(payment) => axum::Json(payment).into_response(),
        Err(error) => (StatusCode::CONFLICT, error).into_response(),
    }
}

async fn sim_fail(State(inner): State<Arc<AntomInner>>, body: axum::Json<PayBody>) -> Response {
    match buyer_pays(&inner, &body.payment_request_id, false) {
        Ok(payment) => axum::Json(payment).into_response(),
        Err(error) => (StatusCode::CONFLICT, error).into_response(),
    }
}

#[derive(Deserialize)]
struct FaultBody {
    scope: String,
    #[serde(flatten)]
    fault: AntomFault,
}

async fn sim_fault(
    State(inner): State<Arc<AntomInner>>,
    body: axum::Json<FaultBody>,
) -> StatusCode {
    let FaultBody { scope, fault } = body.0;
    inner.state().faults.push_back((scope, fault));
    StatusCode::NO_CONTENT
}

async fn sim_payment(State(inner): State<Arc<AntomInner>>, Path(id): Path<String>) -> Response {
    match inner.state().payments.get(&id) {
        Some(payment) => axum::Json(payment.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_refund(State(inner): State<Arc<AntomInner>>, Path(id): Path<String>) -> Response {
    match inner.state().refunds.get(&id) {
        Some(refund) => axum::Json(refund.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_notifications(State(inner): State<Arc<AntomInner>>) -> Response {
    let deliveries = inner.state().deliveries.clone();
    let by_id: BTreeMap<String, usize> = deliveries.iter().fold(BTreeMap::new(), |mut map, d| {
        *map.entry(d.id.clone()).or_default() += 1;
        map
    });
    axum::Json(json!({"deliveries": deliveries, "attempts_by_id": by_id})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_signed_and_the_header() {
        assert_eq!(
            to_sign("POST", "/ams/api/v1/payments/pay", "C", "T", b"{}"),
            b"POST /ams/api/v1/payments/pay\nC.T.{}".to_vec()
        );
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(url_decode("a%2Bb%2fc%3D+"), Some(b"a+b/c= ".to_vec()));
        assert_eq!(
            url_path("http://127.0.0.1:9/notify/antom?x=1"),
            "/notify/antom"
        );
    }

    #[test]
    fn amounts_follow_antoms_table() {
        assert_eq!(
            amount(&json!({"currency": "USD", "value": "1099"})),
            Some(("USD".into(), 1099))
        );
        assert_eq!(amount(&json!({"currency": "IDR", "value": "150050"})), None);
        assert_eq!(amount(&json!({"currency": "XAU", "value": "1"})), None);
        assert_eq!(amount(&json!({"currency": "USD", "value": "10.99"})), None);
        assert_eq!(amount(&json!({"currency": "USD", "value": 1099})), None);
    }

    #[test]
    fn settlement_in_another_currency_rounds_half_up_in_its_unit() {
        // 10.99 USD at 7.123456 = 78.28678... CNY: 78.29.
        let (currency, value, _, rate) = settle("USD", 1099, "CNY", 1).unwrap();
        assert_eq!(
            (currency.as_str(), value, rate.as_str()),
            ("CNY", 7829, "7.123456")
        );
        // 1250 JPY at 0.047890 = 59.8625 CNY: 59.86.
        assert_eq!(settle("JPY", 1250, "CNY", 1).map(|s| s.1), Some(5986));
        assert_eq!(settle("USD", 1099, "USD", 1), None);
    }

    #[test]
    fn rates_are_written_as_json_numbers_exactly() {
        let body = json!({"a": format!("{NUMBER}7.123456789012345678"), "b": "x"});
        assert_eq!(to_text(&body), r#"{"a":7.123456789012345678,"b":"x"}"#);
    }

    #[test]
    fn times_are_iso_8601_in_china_time() {
        assert_eq!(
            iso_millis(1_764_900_000_123),
            "2025-12-05T10:00:00.123+08:00"
        );
        assert_eq!(
            parse_iso("2025-12-05T10:00:00+08:00"),
            Some(1_764_900_000_000)
        );
        assert_eq!(parse_iso("2025-12-05T02:00:00Z"), Some(1_764_900_000_000));
    }
}
