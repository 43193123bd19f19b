//! `gateway.do`: the open platform's checks of every request (common parameters, signature,
//! certificates, timestamp), the faults a call takes, and the server APIs themselves (precreate,
//! query, close, refund, refund query, the bill's URL, certificate download).

#[allow(unused_imports)]
use crate::*;

pub(crate) async fn gateway(
    State(inner): State<Arc<Inner>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = match decode_form(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if method == Method::POST {
        match decode_form(&body) {
            Ok(form) => params.extend(form),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }
    let api = params.get("method").cloned().unwrap_or_default();
    let reply = |code: &str, sub_code: &str, sub_msg: &str| {
        lock(&inner.state)
            .calls
            .push((api.clone(), sub_code.to_owned()));
        answer(
            &inner,
            &api,
            &json!({"code": code, "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg}),
            false,
            false,
        )
    };
    // Common parameters and the signature, checked as the open platform checks them.
    for required in [
        "app_id",
        "method",
        "charset",
        "sign_type",
        "timestamp",
        "version",
        "biz_content",
    ] {
        if params.get(required).is_none_or(String::is_empty) {
            return reply(
                "40001",
                &format!("isv.missing-{}", required.replace('_', "-")),
                &format!("缺少{required}参数"),
            );
        }
    }
    if params.get("sign").is_none_or(String::is_empty) {
        return reply("40001", "isv.missing-signature", "缺少签名参数");
    }
    if params.get("sign_type").map(String::as_str) != Some("RSA2") {
        return reply("40002", "isv.invalid-signature-type", "无效的签名类型");
    }
    if params.get("app_id") != Some(&inner.config.app_id) {
        return reply("40002", "isv.invalid-app-id", "无效的AppID参数");
    }
    if params
        .get("charset")
        .map(|c| c.to_ascii_lowercase())
        .as_deref()
        != Some("utf-8")
    {
        return reply("40002", "isv.invalid-charset", "字符集错误");
    }
    let content = content_to_sign(&params, false);
    let sign = params.get("sign").cloned().unwrap_or_default();
    let (app_public_key, certificates) = {
        let keys = lock(&inner.keys);
        (keys.app_public_key.clone(), keys.certificates.clone())
    };
    lock(&inner.state)
        .signed
        .push((content.clone(), sign.clone()));
    if !app_public_key.verify_base64(content.as_bytes(), &sign) {
        return reply(
            "40002",
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        );
    }
    // Certificate mode (docs/alipay/operations.md §3): both SNs are common parameters. The sub-codes are
    // the simulator's own naming (the notes do not give Alipay's).
    if let Some(certs) = &certificates {
        if params.get("app_cert_sn") != Some(&certs.app_cert_sn) {
            return reply(
                "40002",
                "isv.invalid-app-cert-sn",
                "应用公钥证书序列号不正确",
            );
        }
        if params.get("alipay_root_cert_sn") != Some(&certs.ca.root_cert_sn()) {
            return reply(
                "40002",
                "isv.invalid-alipay-root-cert-sn",
                "支付宝根证书序列号不正确",
            );
        }
    } else if params.contains_key("app_cert_sn") {
        return reply("40002", "isv.invalid-app-cert-sn", "应用未开启公钥证书模式");
    }
    // Inference from docs/alipay/openapi-v1.md: the timestamp is China time; a UTC one is 8 hours off. Checked
    // against the world's clock (the machine's moved by the shared test clock): Alipay's own
    // offset moves its business times (answers, notifications, the bill's day), not the
    // caller's.
    let now = world_ms(&inner).div_euclid(1000);
    let sent = params.get("timestamp").and_then(|t| china_unix(t));
    if sent.is_none_or(|t| (t - now).abs() > 600) {
        return reply("40002", "isv.invalid-timestamp", "非法的时间戳参数");
    }
    let Ok(biz) =
        serde_json::from_str::<Value>(params.get("biz_content").map_or("", String::as_str))
    else {
        return reply(
            "40002",
            "isv.invalid-biz-content",
            "biz_content不是合法的JSON",
        );
    };
    let field = |name: &str| {
        biz.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };

    match api.as_str() {
        "alipay.trade.page.pay" | "alipay.trade.wap.pay" if method == Method::GET => {
            match open_trade(&inner, &api, &params, &biz) {
                Ok(trade) => cashier_page(&inner, &trade),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    Html(format!("<h1>支付宝</h1><p>{e}</p>")),
                )
                    .into_response(),
            }
        }
        "alipay.user.agreement.page.sign" if method == Method::GET => {
            match open_sign(&inner, &params, &biz) {
                Ok(agreement) => sign_page(&agreement),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    Html(format!("<h1>支付宝</h1><p>{}</p>", escape(&e))),
                )
                    .into_response(),
            }
        }
        "alipay.trade.precreate"
        | "alipay.trade.pay"
        | "alipay.trade.cancel"
        | "alipay.user.agreement.query"
        | "alipay.user.agreement.unsign"
        | "alipay.user.agreement.executionplan.modify"
        | "alipay.data.dataservice.bill.downloadurl.query"
        | "alipay.trade.query"
        | "alipay.trade.close"
        | "alipay.trade.refund"
        | "alipay.trade.fastpay.refund.query" => {
            let fault = take_fault(&inner, &api).or_else(|| outage_fault(&inner));
            match fault {
                Some(FaultKind::Timeout) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "fault:timeout".into()));
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                }
                Some(FaultKind::Http500) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "fault:http500".into()));
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                Some(FaultKind::SystemError) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SYSTEM_ERROR".into()));
                    return answer(
                        &inner,
                        &api,
                        &business_error("ACQ.SYSTEM_ERROR", "系统错误"),
                        false,
                        true,
                    );
                }
                Some(FaultKind::SellerBalanceNotEnough) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SELLER_BALANCE_NOT_ENOUGH".into()));
                    let content = business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
                    return answer(&inner, &api, &content, false, true);
                }
                Some(FaultKind::UnsignedError { code, sub_code }) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), format!("unsigned:{sub_code}")));
                    let content = json!({"code": code, "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": "injected"});
                    return answer(&inner, &api, &content, false, false);
                }
                Some(FaultKind::ServiceUnavailable) => {
                    lock(&inner.state).calls.push((api.clone(), "20000".into()));
                    let content = json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"});
                    return answer(&inner, &api, &content, false, false);
                }
                Some(FaultKind::SlowRefusal { ms }) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SELLER_BALANCE_NOT_ENOUGH".into()));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let content = business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
                    return answer(&inner, &api, &content, false, true);
                }
                Some(FaultKind::Slow { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Some(FaultKind::BuyerPaysFirst) => {
                    // The buyer's payment reaches Alipay just before this call does.
                    let _ = pay(&inner, &field("out_trade_no"), &Payer::default());
                }
                _ => {}
            }
            let content = execute(&inner, &api, &params, &biz, &field, fault.as_ref());
            let code = content
                .get("sub_code")
                .or(content.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            lock(&inner.state).calls.push((api.clone(), code));
            if fault == Some(FaultKind::TimeoutAfterExecute) {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return StatusCode::GATEWAY_TIMEOUT.into_response();
            }
            answer(
                &inner,
                &api,
                &content,
                fault == Some(FaultKind::BadSignature),
                true,
            )
        }
        "alipay.open.app.alipaycert.download" if certificates.is_some() => {
            let pem = lock(&inner.keys)
                .issued
                .get(&field("alipay_cert_sn"))
                .cloned();
            lock(&inner.state).calls.push((
                api.clone(),
                if pem.is_some() { "10000" } else { "40004" }.into(),
            ));
            let content = match pem {
                Some(pem) => json!({
                    "code": "10000",
                    "msg": "Success",
                    "alipay_cert_content": base64::engine::general_purpose::STANDARD.encode(pem),
                }),
                None => business_error("CERT_NOT_EXIST", "证书不存在"),
            };
            answer(&inner, &api, &content, false, true)
        }
        _ => reply("40002", "isv.invalid-method", "不存在的方法名"),
    }
}

/// Page, wap and precreate open a trade waiting for the buyer; a repeat must match.
pub(crate) fn open_trade(
    inner: &Inner,
    api: &str,
    params: &BTreeMap<String, String>,
    biz: &Value,
) -> Result<Trade, String> {
    let field = |name: &str| {
        biz.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let out_trade_no = field("out_trade_no");
    let total_amount = field("total_amount");
    let subject = field("subject");
    if out_trade_no.is_empty() || subject.is_empty() {
        return Err("缺少必选参数 out_trade_no / subject".into());
    }
    let total_fen = fen(&total_amount)
        .filter(|f| *f >= 1 && *f <= 10_000_000_000)
        .ok_or("total_amount 格式错误")?;
    let expected_product = match api {
        "alipay.trade.page.pay" => Some("FAST_INSTANT_TRADE_PAY"),
        "alipay.trade.wap.pay" => Some("QUICK_WAP_WAY"),
        "alipay.trade.app.pay" => Some("QUICK_MSECURITY_PAY"),
        _ => None,
    };
    if let Some(product) = expected_product
        && field("product_code") != product
    {
        return Err(format!("product_code 应为 {product}"));
    }
    // ext_user_info (page, wap, app): with need_check_info=T Alipay checks the payer; min_age
    // is a whole number of years, written as a string in Alipay's examples.
    let min_age =
        match biz.get("ext_user_info") {
            None => None,
            Some(info) => {
                if api == "alipay.trade.precreate" {
                    return Err("ext_user_info: not a field of alipay.trade.precreate".into());
                }
                let text = |name: &str| info.get(name).and_then(Value::as_str).unwrap_or("");
                match text("need_check_info") {
                    "T" => Some(text("min_age").parse::<u8>().map_err(
                        |_| "ext_user_info.min_age 格式错误 (a whole number, as a string)",
                    )?),
                    "" | "F" => None,
                    _ => return Err("ext_user_info.need_check_info must be T or F".into()),
                }
            }
        };
    let (now, unix_now) = china_now(inner);
    let time_expire = field("time_expire");
    let expires_at = if time_expire.is_empty() {
        None
    } else {
        let at = china_unix(&time_expire).ok_or("time_expire 格式错误")?;
        if at <= unix_now {
            return Err("交易已过期 (time_expire)".into());
        }
        Some(at)
    };
    if let Some(sign_params) = biz.get("agreement_sign_params") {
        if api == "alipay.trade.wap.pay" || api == "alipay.trade.precreate" {
            return Err("agreement_sign_params: page or app pay only".into());
        }
        open_pay_and_sign(inner, &out_trade_no, params, sign_params)?;
    }
    let mut state = lock(&inner.state);
    if let Some(existing) = state.trades.get_mut(&out_trade_no) {
        existing.expire_if_due(unix_now);
        if existing.total_fen != total_fen || existing.subject != subject {
            return Err("交易信息被篡改 (ACQ.TRADE_INFO_MISMATCH)".into());
        }
        return Ok(existing.clone());
    }
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let trade = Trade {
        out_trade_no: out_trade_no.clone(),
        trade_no: format!("2026{:024}", n),
        total_amount: yuan(total_fen),
        total_fen,
        subject,
        status: "WAIT_BUYER_PAY".into(),
        method: api.to_owned(),
        notify_url: params.get("notify_url").cloned(),
        return_url: params.get("return_url").cloned(),
        buyer_id: format!("2088{:012}", 102_534_000_000 + n),
        refunded_fen: 0,
        refunds: Vec::new(),
        gmt_create: now,
        gmt_payment: None,
        expires_at,
        refund_requests_ms: Vec::new(),
        fund_channel: BALANCE.to_owned(),
        min_age,
    };
    state.trades.insert(out_trade_no, trade.clone());
    Ok(trade)
}

pub(crate) fn trade_fields(trade: &Trade) -> Value {
    json!({"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no})
}

/// The server APIs. `fault`: the fault this call took, for those that act inside it.
pub(crate) fn execute(
    inner: &Arc<Inner>,
    api: &str,
    params: &BTreeMap<String, String>,
    biz: &Value,
    field: &dyn Fn(&str) -> String,
    fault: Option<&FaultKind>,
) -> Value {
    if api == "alipay.data.dataservice.bill.downloadurl.query" {
        return bill_url(inner, &field("bill_type"), &field("bill_date"));
    }
    if api == "alipay.trade.precreate" {
        return match open_trade(inner, api, params, biz) {
            Ok(trade) => success(
                json!({"out_trade_no": trade.out_trade_no, "qr_code": format!("{}/qr/{}", inner.base_url, trade.out_trade_no)}),
            ),
            Err(e) => business_error("ACQ.INVALID_PARAMETER", &e),
        };
    }
    if api == "alipay.trade.refund" {
        return refund(inner, field, fault);
    }
    match api {
        "alipay.trade.pay" => return agreement_pay(inner, params, biz),
        "alipay.trade.cancel" => return cancel_trade(inner, &field("out_trade_no")),
        "alipay.user.agreement.query"
        | "alipay.user.agreement.unsign"
        | "alipay.user.agreement.executionplan.modify" => return agreement_api(inner, api, biz),
        _ => {}
    }
    let out_trade_no = field("out_trade_no");
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    trade.expire_if_due(china_now(inner).1);
    match api {
        "alipay.trade.query" => {
            let mut content = trade_fields(trade);
            if let Some(object) = content.as_object_mut() {
                object.insert("trade_status".into(), json!(trade.status));
                object.insert("total_amount".into(), json!(trade.total_amount));
                object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
                if trade.status != "WAIT_BUYER_PAY" {
                    object.insert("buyer_user_id".into(), json!(trade.buyer_id));
                }
                if let Some(at) = &trade.gmt_payment {
                    object.insert("send_pay_date".into(), json!(at));
                }
                if matches!(trade.status.as_str(), "TRADE_SUCCESS" | "TRADE_FINISHED") {
                    for (name, value) in crate::cross_border_fields(inner, trade) {
                        object.insert(name.into(), json!(value));
                    }
                }
            }
            success(content)
        }
        "alipay.trade.close" => {
            if trade.status != "WAIT_BUYER_PAY" {
                return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
            }
            trade.status = "TRADE_CLOSED".into();
            success(trade_fields(trade))
        }
        "alipay.trade.fastpay.refund.query" => {
            let out_request_no = field("out_request_no");
            // Our identifiers are echoed back whether or not Alipay has the refund.
            let mut content = trade_fields(trade);
            let asked_pay_time = biz
                .get("query_options")
                .and_then(Value::as_array)
                .is_some_and(|options| options.iter().any(|o| o == "gmt_refund_pay"));
            let record = trade
                .refunds
                .iter()
                .find(|r| r.out_request_no == out_request_no);
            let harsh = match record.map(|r| r.state) {
                None => Some("refund query: an echo (no such refund)"),
                Some(RefundState::Processing) => Some("refund query: data without a status"),
                Some(RefundState::Fail) => Some("refund query: REFUND_FAIL"),
                Some(RefundState::Success) => None,
            };
            if let Some(object) = content.as_object_mut() {
                object.insert("out_request_no".into(), json!(out_request_no));
                if let Some(record) = record {
                    object.insert("refund_amount".into(), json!(record.refund_amount));
                    object.insert("total_amount".into(), json!(trade.total_amount));
                    match record.state {
                        // Accepted, not executed: the data, no status.
                        RefundState::Processing => {}
                        RefundState::Success => {
                            object.insert("refund_status".into(), json!("REFUND_SUCCESS"));
                            // Only when asked for (docs/alipay/operations.md §6).
                            if asked_pay_time {
                                object.insert("gmt_refund_pay".into(), json!(record.gmt_refund));
                            }
                        }
                        RefundState::Fail => {
                            object.insert("refund_status".into(), json!("REFUND_FAIL"));
                        }
                    }
                }
            }
            if let Some(kind) = harsh {
                *state.harsh.entry(kind).or_default() += 1;
            }
            success(content)
        }
        _ => business_error("ACQ.INVALID_PARAMETER", "unsupported"),
    }
}

/// `alipay.trade.refund`: executed at once (a refund to the buyer's balance, `fund_change=Y`),
/// or accepted and executed later (to a bank card, or as a fault says: `fund_change=N`). One
/// `out_request_no` moves money at most once; a repeat is answered without moving any.
pub(crate) fn refund(
    inner: &Arc<Inner>,
    field: &dyn Fn(&str) -> String,
    fault: Option<&FaultKind>,
) -> Value {
    let out_trade_no = field("out_trade_no");
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    trade.expire_if_due(china_now(inner).1);
    trade.refund_requests_ms.push(alipay_ms(inner));
    let out_request_no = field("out_request_no");
    let refund_amount = field("refund_amount");
    let Some(amount) = fen(&refund_amount).filter(|f| *f > 0) else {
        return business_error("ACQ.INVALID_PARAMETER", "refund_amount 格式错误");
    };
    if out_request_no.is_empty() {
        return business_error("ACQ.INVALID_PARAMETER", "缺少 out_request_no");
    }
    if let Some(record) = trade
        .refunds
        .iter_mut()
        .find(|r| r.out_request_no == out_request_no)
    {
        record.requests += 1;
        if record.refund_amount != refund_amount {
            return business_error("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致");
        }
        if record.state == RefundState::Fail {
            // The reason it failed still holds.
            return business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
        }
        // A repeat (executed or still processing): answered, but no money moves.
        let mut content = trade_fields(trade);
        if let Some(object) = content.as_object_mut() {
            object.insert("fund_change".into(), json!("N"));
            object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
        }
        return success(content);
    }
    match trade.status.as_str() {
        "TRADE_SUCCESS" => {}
        "TRADE_FINISHED" => return business_error("ACQ.TRADE_HAS_FINISHED", "交易已完结"),
        _ => return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    }
    let processing: u64 = trade
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Processing)
        .filter_map(|r| fen(&r.refund_amount))
        .sum();
    if trade.refunded_fen + processing + amount > trade.total_fen {
        return business_error("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限");
    }
    let fails = fault == Some(&FaultKind::RefundFailsLater);
    let later = fails || fault == Some(&FaultKind::AsyncRefund) || trade.fund_channel == BANK_CARD;
    trade.refunds.push(RefundRecord {
        out_request_no: out_request_no.clone(),
        refund_amount,
        executions: 0,
        requests: 1,
        gmt_refund: String::new(),
        state: RefundState::Processing,
    });
    if later {
        let mut content = trade_fields(trade);
        if let Some(object) = content.as_object_mut() {
            object.insert("fund_change".into(), json!("N"));
            object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
            object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
        }
        *state
            .harsh
            .entry("refund accepted (fund_change=N), executed later")
            .or_default() += 1;
        drop(state);
        let (inner, delay) = (Arc::clone(inner), inner.config.refunds.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            complete_refund(&inner, &out_trade_no, &out_request_no, !fails);
        });
        return success(content);
    }
    drop(state);
    complete_refund(inner, &out_trade_no, &out_request_no, true);
    let state = lock(&inner.state);
    let Some(trade) = state.trades.get(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let paid_at = trade
        .refunds
        .iter()
        .find(|r| r.out_request_no == out_request_no)
        .map(|r| r.gmt_refund.clone())
        .unwrap_or_default();
    let mut content = trade_fields(trade);
    if let Some(object) = content.as_object_mut() {
        object.insert("fund_change".into(), json!("Y"));
        object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
        object.insert("gmt_refund_pay".into(), json!(paid_at));
        object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
    }
    success(content)
}

/// Executes (or fails) an accepted refund: money moves, the trade closes when fully refunded,
/// and the refund notification goes out (`gmt_refund` with milliseconds, as Alipay writes it).
pub(crate) fn complete_refund(
    inner: &Arc<Inner>,
    out_trade_no: &str,
    out_request_no: &str,
    executes: bool,
) {
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(out_trade_no) else {
        return;
    };
    let Some(record) = trade
        .refunds
        .iter_mut()
        .find(|r| r.out_request_no == out_request_no && r.state == RefundState::Processing)
    else {
        return;
    };
    if !executes {
        record.state = RefundState::Fail;
        return;
    }
    let (now, _) = china_now(inner);
    let now_millis = china_now_millis(inner);
    record.state = RefundState::Success;
    record.executions += 1;
    record.gmt_refund = now;
    let amount = fen(&record.refund_amount).unwrap_or(0);
    trade.refunded_fen += amount;
    let full = trade.refunded_fen == trade.total_fen;
    if full {
        trade.status = "TRADE_CLOSED".into();
    }
    let refund_fields = [
        ("refund_fee", yuan(trade.refunded_fen)),
        ("gmt_refund", now_millis),
        ("out_biz_no", out_request_no.to_owned()),
    ];
    let status = if full {
        "TRADE_CLOSED"
    } else {
        "TRADE_SUCCESS"
    };
    let snapshot = trade.clone();
    drop(state);
    notify(inner, &snapshot, status, &refund_fields);
}
