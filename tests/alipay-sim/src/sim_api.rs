//! The simulator's own API for tests and scripts (`/sim/*`): pay, faults, the test clock, the
//! ledger, early bills, certificate rotation, what it saw.

#[allow(unused_imports)]
use crate::*;

/// Alipay rotates its certificate (see [`Simulator::rotate_alipay_cert`]).
pub(crate) fn rotate_alipay_cert(inner: &Inner, forged: bool) -> Result<String, String> {
    let signer = SigningKey::from_pem(
        &std::fs::read_to_string(crate::fixtures().join("keys/alipay_rotated_private_key.pem"))
            .map_err(|e| e.to_string())?,
    )?;
    let spki = signer.spki_der();
    let mut keys = lock(&inner.keys);
    keys.next_serial += 1;
    let serial = keys.next_serial;
    let certs = keys
        .certificates
        .as_mut()
        .ok_or("the simulator is in key mode")?;
    let subject =
        "CN=支付宝(中国)网络技术有限公司-2088000000000000,OU=Alipay,O=Local Alipay Simulator,C=CN";
    let issued = if forged {
        certs.ca.issue_forged(subject, serial, &spki)
    } else {
        certs.ca.issue_leaf(subject, serial, &spki, 365)
    };
    certs.alipay_cert = issued.clone();
    keys.issued.insert(issued.sn.clone(), issued.pem);
    keys.alipay_signer = Arc::new(signer);
    Ok(issued.sn)
}

/// `POST /sim/rotate-cert` (`{"forged": false}`): Alipay rotates its certificate (certificate
/// mode); answers the new SN.
pub(crate) async fn sim_rotate_cert(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let forged = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("forged").and_then(Value::as_bool))
        .unwrap_or(false);
    match rotate_alipay_cert(&inner, forged) {
        Ok(sn) => axum::Json(json!({"alipay_cert_sn": sn})).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct PayRequest {
    out_trade_no: String,
    #[serde(default)]
    finished: bool,
    /// `ALIPAYACCOUNT` or `BANKCARD` (refunds executed later).
    #[serde(default)]
    fund_channel: Option<String>,
    /// The paying buyer's Alipay user id (2088…); the trade's own otherwise.
    #[serde(default)]
    buyer_id: Option<String>,
    /// The payer's age (30 otherwise), for a trade with `ext_user_info`.
    #[serde(default)]
    age: Option<u8>,
    /// The payer's account is not real-name verified.
    #[serde(default)]
    not_real_named: bool,
}

pub(crate) async fn sim_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<PayRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"out_trade_no\": \"...\"}",
        )
            .into_response();
    };
    let payer = Payer {
        finished: request.finished,
        buyer_id: request.buyer_id,
        fund_channel: request.fund_channel,
        age: request.age,
        not_real_named: request.not_real_named,
    };
    match pay(&inner, &request.out_trade_no, &payer) {
        Ok(trade) => axum::Json(trade).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
    }
}

pub(crate) async fn sim_app_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match open_app_order(&inner, &String::from_utf8_lossy(&body)) {
        Ok(trade) => axum::Json(trade).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response(),
    }
}

pub(crate) async fn sim_fault(
    State(inner): State<Arc<Inner>>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            lock(&inner.state).faults.push_back(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

pub(crate) async fn sim_release(State(inner): State<Arc<Inner>>) -> Response {
    release_held(&inner);
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn sim_outage(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let outage = match serde_json::from_slice::<Outage>(&body) {
        Ok(outage) if outage.seconds.is_finite() && outage.seconds >= 0.0 => outage,
        Ok(_) => return (StatusCode::BAD_REQUEST, "seconds must be 0 or more").into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match set_outage(&inner, outage.kind, Duration::from_secs_f64(outage.seconds)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub(crate) async fn sim_trade(
    State(inner): State<Arc<Inner>>,
    Path(out_trade_no): Path<String>,
) -> Response {
    match lock(&inner.state).trades.get(&out_trade_no).cloned() {
        Some(trade) => axum::Json(trade).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(crate) async fn sim_notifications(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(lock(&inner.state).deliveries.clone()).into_response()
}

pub(crate) async fn sim_ledger(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<LedgerEdit>(&body) {
        Ok(edit) => match edit_ledger(&inner, edit) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
        },
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// `POST /sim/clock`: `{"china_time": "yyyy-MM-dd HH:mm:ss"}` (Alipay's clock reads that now)
/// or `{"offset_ms": n}` (Alipay's clock this far from the machine's; 0 puts it back).
#[derive(Deserialize)]
pub(crate) struct ClockRequest {
    #[serde(default)]
    china_time: Option<String>,
    #[serde(default)]
    offset_ms: Option<i64>,
}

pub(crate) async fn sim_clock(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let request = match serde_json::from_slice::<ClockRequest>(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let offset = match (request.china_time, request.offset_ms) {
        (Some(text), None) => match china_unix(&text) {
            Some(at) => at * 1000 - world_ms(&inner),
            None => {
                return (StatusCode::BAD_REQUEST, "china_time: yyyy-MM-dd HH:mm:ss")
                    .into_response();
            }
        },
        (None, Some(offset)) => offset,
        _ => {
            return (StatusCode::BAD_REQUEST, "give china_time or offset_ms").into_response();
        }
    };
    inner.clock_offset_ms.store(offset, Ordering::Relaxed);
    axum::Json(json!({"offset_ms": offset, "china_time": china_now(&inner).0})).into_response()
}

#[derive(Deserialize)]
pub(crate) struct CloseDay {
    date: String,
}

pub(crate) async fn sim_close_day(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<CloseDay>(&body) {
        Ok(CloseDay { date }) => {
            lock(&inner.state).closed_days.insert(date);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct SignAgreement {
    external_agreement_no: String,
    #[serde(default = "default_buyer")]
    buyer_id: String,
    /// The `dut_user_sign` notification never arrives.
    #[serde(default)]
    lose_notice: bool,
}

fn default_buyer() -> String {
    "2088102177846880".to_owned()
}

/// `POST /sim/agreements/sign` (the signing page's button, a form; or JSON): the buyer signs.
pub(crate) async fn sim_sign_agreement(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request = if json {
        serde_json::from_slice::<SignAgreement>(&body).map_err(|e| e.to_string())
    } else {
        decode_form(&body).and_then(|form| {
            Ok(SignAgreement {
                external_agreement_no: form
                    .get("external_agreement_no")
                    .cloned()
                    .ok_or("external_agreement_no is required")?,
                buyer_id: default_buyer(),
                lose_notice: false,
            })
        })
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match sign_agreement(
        &inner,
        &request.external_agreement_no,
        &request.buyer_id,
        request.lose_notice,
    ) {
        Ok(agreement) if json => axum::Json(agreement).into_response(),
        Ok(_) => Html("<h1>签约成功</h1>".to_owned()).into_response(),
        Err(e) => (StatusCode::CONFLICT, e).into_response(),
    }
}

pub(crate) async fn sim_agreement(
    State(inner): State<Arc<Inner>>,
    Path(external): Path<String>,
) -> Response {
    match lock(&inner.state).agreements.get(&external) {
        Some(agreement) => axum::Json(agreement.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such agreement").into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct StopAgreement {
    /// Whether Alipay tells the merchant (`dut_user_unsign`); a lapsed agreement sends nothing.
    #[serde(default)]
    notice: bool,
}

/// `POST /sim/agreements/{external}/stop` `{"notice": true|false}`: the buyer unsigns.
pub(crate) async fn sim_stop_agreement(
    State(inner): State<Arc<Inner>>,
    Path(external): Path<String>,
    body: Bytes,
) -> Response {
    let notice = serde_json::from_slice::<StopAgreement>(&body)
        .map(|s| s.notice)
        .unwrap_or(false);
    match stop_agreement(&inner, &external, notice) {
        Ok(agreement) => axum::Json(agreement).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Script {
    answers: Vec<String>,
}

/// `POST /sim/agreements/{external}/script` `{"answers": ["ACQ.BUYER_BALANCE_NOT_ENOUGH", "10003"]}`:
/// the buyer's next answers to charges.
pub(crate) async fn sim_script_charges(
    State(inner): State<Arc<Inner>>,
    Path(external): Path<String>,
    body: Bytes,
) -> Response {
    let script = match serde_json::from_slice::<Script>(&body) {
        Ok(script) => script,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut state = lock(&inner.state);
    match state.agreements.get_mut(&external) {
        Some(agreement) => {
            agreement.scripted.extend(script.answers);
            axum::Json(agreement.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such agreement").into_response(),
    }
}

/// `GET /sim/charges`: every successful charge under an agreement.
pub(crate) async fn sim_charges(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(lock(&inner.state).charges.clone()).into_response()
}
