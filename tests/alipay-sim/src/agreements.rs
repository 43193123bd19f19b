//! Agreements (周期扣款 / 商家扣款, docs/alipay/operations.md §4): the signing page, the sign
//! and unsign notifications (and their loss), `alipay.user.agreement.query`, `.unsign`,
//! `.executionplan.modify`, and `alipay.trade.pay` under an agreement, judged as Alipay judges
//! it: by Alipay's China-time clock when the request arrives, against the agreement's own next
//! date, which moves one period on after a success only.
//!
//! What the notes leave open, and what the simulator does (the harsher reading where there is a
//! choice):
//! - the window is 3 days before the next date through it (the notes give 3 and 5);
//! - a refused charge creates no trade, so the same `out_trade_no` may be tried again;
//! - `10003` (a buyer scenario) creates the trade as processing; it is paid by the time it is
//!   queried, and no answer says so at once;
//! - every second successful charge is followed by a `trade_status_sync` notification
//!   (`Simulator::set_charge_notifications`).

#[allow(unused_imports)]
use crate::*;

/// Days before its next date an agreement's period may be charged (the stricter of the notes'
/// 3 and 5).
pub const LEAD_DAYS: i64 = 3;

/// An agreement as Alipay keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub external_agreement_no: String,
    /// Given when the buyer signs.
    pub agreement_no: Option<String>,
    /// `TEMP`, `NORMAL` or `STOP`.
    pub status: String,
    pub product_code: String,
    pub sign_scene: String,
    pub channel: String,
    pub period_type: String,
    pub period: i64,
    /// The next date a charge is for (`yyyy-MM-dd`): the first `execute_time`, then one
    /// period on after each success, or later by `executionplan.modify`.
    pub next_date: String,
    pub single_fen: u64,
    pub total_fen: Option<u64>,
    pub total_payments: Option<u64>,
    pub charged_fen: u64,
    pub charges: u64,
    pub modifications: u64,
    pub notify_url: Option<String>,
    pub buyer_id: String,
    pub sign_time: Option<String>,
    /// The buyer's next answers to charges (a sub-code, or `10003`), taken one per charge.
    pub scripted: VecDeque<String>,
}

/// One successful charge, as the ledger's invariants read them.
#[derive(Clone, Debug, Serialize)]
pub struct Charge {
    pub agreement_no: String,
    pub out_trade_no: String,
    pub fen: u64,
    /// Alipay's China-time day when it was taken.
    pub charged_on: String,
    /// The agreement's next date it was taken for.
    pub period_date: String,
    /// The agreement's status when it was taken.
    pub agreement_status: String,
    /// The `settle_currency` the charge asked for (a merchant contracted for cross-border
    /// settlement).
    pub settle_currency: Option<String>,
}

/// `alipay.user.agreement.page.sign`: the signed request is checked by `gateway.do`; here the
/// agreement is recorded (TEMP) and the buyer's signing page answered.
pub(crate) fn open_sign(
    inner: &Arc<Inner>,
    params: &BTreeMap<String, String>,
    biz: &Value,
) -> Result<Agreement, String> {
    let product_code = biz
        .get("product_code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !["GENERAL_WITHHOLDING", "CYCLE_PAY_AUTH"].contains(&product_code.as_str()) {
        return Err("product_code: GENERAL_WITHHOLDING or CYCLE_PAY_AUTH".into());
    }
    record_agreement(inner, biz, product_code, params.get("notify_url").cloned())
}

/// A cashier payment with `agreement_sign_params` (pay-and-sign): the agreement is recorded
/// (TEMP) with the trade, and signed when the buyer pays; its notice goes to `sign_notify_url`,
/// else `notify_url` (docs/alipay/operations.md §4). Charges under it may use either product.
pub(crate) fn open_pay_and_sign(
    inner: &Inner,
    out_trade_no: &str,
    params: &BTreeMap<String, String>,
    sign_params: &Value,
) -> Result<Agreement, String> {
    let notify_url = sign_params
        .get("sign_notify_url")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| params.get("notify_url").cloned());
    let agreement = record_agreement(inner, sign_params, "*".to_owned(), notify_url)?;
    lock(&inner.state).pay_and_sign.insert(
        out_trade_no.to_owned(),
        agreement.external_agreement_no.clone(),
    );
    Ok(agreement)
}

fn record_agreement(
    inner: &Inner,
    biz: &Value,
    product_code: String,
    notify_url: Option<String>,
) -> Result<Agreement, String> {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_owned();
    let external = text(biz.get("external_agreement_no"));
    if external.is_empty()
        || external.len() > 32
        || !external.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err("external_agreement_no: 1 to 32 letters or digits".into());
    }
    if text(biz.get("personal_product_code")) != "CYCLE_PAY_AUTH_P" {
        return Err("personal_product_code must be CYCLE_PAY_AUTH_P".into());
    }
    let sign_scene = text(biz.get("sign_scene"));
    if sign_scene.is_empty() || sign_scene == "DEFAULT|DEFAULT" {
        return Err("sign_scene: not DEFAULT|DEFAULT with an external_agreement_no".into());
    }
    let channel = text(biz.get("access_params").and_then(|a| a.get("channel")));
    if !["ALIPAYAPP", "QRCODE", "QRCODEORSMS"].contains(&channel.as_str()) {
        return Err("access_params.channel: ALIPAYAPP, QRCODE or QRCODEORSMS".into());
    }
    let rule = biz
        .get("period_rule_params")
        .ok_or("period_rule_params is required")?;
    let period_type = text(rule.get("period_type"));
    let period = rule.get("period").and_then(Value::as_i64).unwrap_or(0);
    let execute_time = text(rule.get("execute_time"));
    let day = execute_time
        .get(8..10)
        .and_then(|d| d.parse::<u32>().ok())
        .unwrap_or(0);
    match period_type.as_str() {
        "DAY" if period >= 7 => {}
        "MONTH" if period >= 1 && (1..=28).contains(&day) => {}
        _ => return Err("period_rule_params: DAY (period >= 7) or MONTH (day 1 to 28)".into()),
    }
    if china_unix(&format!("{execute_time} 00:00:00")).is_none() {
        return Err("period_rule_params.execute_time: yyyy-MM-dd".into());
    }
    let amount = |name: &str| rule.get(name).and_then(Value::as_str).and_then(fen);
    let single_fen =
        amount("single_amount").ok_or("period_rule_params.single_amount is required")?;
    let agreement = Agreement {
        external_agreement_no: external.clone(),
        agreement_no: None,
        status: "TEMP".into(),
        product_code,
        sign_scene,
        channel,
        period_type,
        period,
        next_date: execute_time,
        single_fen,
        total_fen: amount("total_amount"),
        total_payments: rule.get("total_payments").and_then(Value::as_u64),
        charged_fen: 0,
        charges: 0,
        modifications: 0,
        notify_url,
        buyer_id: String::new(),
        sign_time: None,
        scripted: VecDeque::new(),
    };
    let mut state = lock(&inner.state);
    match state.agreements.get(&external) {
        // Opening the same signing page again shows it again; a signed one is not re-signed.
        Some(existing) if existing.status != "TEMP" => {
            Err(format!("the agreement is already {}", existing.status))
        }
        _ => {
            state.agreements.insert(external, agreement.clone());
            Ok(agreement)
        }
    }
}

/// The signing page the buyer sees.
pub(crate) fn sign_page(agreement: &Agreement) -> Response {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>支付宝 - 签约</title><h1>开通周期扣款</h1>\
         <p>每{} {} 扣款，单次不超过 {} 元，首次 {}</p>\
         <form method=post action=/sim/agreements/sign>\
         <input type=hidden name=external_agreement_no value=\"{}\">\
         <button>同意协议并开通</button></form>",
        agreement.period,
        escape(&agreement.period_type),
        yuan(agreement.single_fen),
        escape(&agreement.next_date),
        escape(&agreement.external_agreement_no),
    ))
    .into_response()
}

/// The buyer signs: NORMAL, an `agreement_no`, and a `dut_user_sign` notification unless
/// `lose_notice` (a notice that never arrives: the gateway must ask).
pub(crate) fn sign_agreement(
    inner: &Arc<Inner>,
    external: &str,
    buyer_id: &str,
    lose_notice: bool,
) -> Result<Agreement, String> {
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let (now, _) = china_now(inner);
    let agreement = {
        let mut state = lock(&inner.state);
        let agreement = state
            .agreements
            .get_mut(external)
            .ok_or("no such agreement (open the signing page first)")?;
        if agreement.status != "TEMP" {
            return Err(format!("the agreement is {}", agreement.status));
        }
        agreement.status = "NORMAL".into();
        agreement.agreement_no = Some(format!("2026{n:016}"));
        agreement.buyer_id = buyer_id.to_owned();
        agreement.sign_time = Some(now);
        agreement.clone()
    };
    if !lose_notice {
        agreement_notice(inner, &agreement, "dut_user_sign");
    }
    Ok(agreement)
}

/// The agreement stops: the buyer unsigns in the Alipay app (`notice`: with a notification or
/// without one), or it lapses.
pub(crate) fn stop_agreement(
    inner: &Arc<Inner>,
    external: &str,
    notice: bool,
) -> Result<Agreement, String> {
    let agreement = {
        let mut state = lock(&inner.state);
        let agreement = state
            .agreements
            .get_mut(external)
            .ok_or("no such agreement")?;
        agreement.status = "STOP".into();
        agreement.clone()
    };
    if notice {
        agreement_notice(inner, &agreement, "dut_user_unsign");
    }
    Ok(agreement)
}

fn agreement_notice(inner: &Arc<Inner>, agreement: &Agreement, notify_type: &str) {
    let Some(notify_url) = agreement.notify_url.clone() else {
        return;
    };
    let fault = take_fault(inner, "notify");
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let (now, _) = china_now(inner);
    let status = if notify_type == "dut_user_unsign" {
        "UNSIGN"
    } else {
        agreement.status.as_str()
    };
    let mut fields: BTreeMap<String, String> = [
        ("notify_id", format!("2026{n:028}")),
        ("notify_type", notify_type.to_owned()),
        ("notify_time", now),
        ("charset", "utf-8".to_owned()),
        ("version", "1.0".to_owned()),
        ("sign_type", "RSA2".to_owned()),
        ("app_id", inner.config.app_id.clone()),
        ("auth_app_id", inner.config.app_id.clone()),
        ("alipay_user_id", agreement.buyer_id.clone()),
        ("alipay_logon_id", "157******67".to_owned()),
        (
            "external_agreement_no",
            agreement.external_agreement_no.clone(),
        ),
        (
            "agreement_no",
            agreement.agreement_no.clone().unwrap_or_default(),
        ),
        ("personal_product_code", "CYCLE_PAY_AUTH_P".to_owned()),
        ("sign_scene", agreement.sign_scene.clone()),
        ("status", status.to_owned()),
        ("sign_time", agreement.sign_time.clone().unwrap_or_default()),
        (
            "valid_time",
            agreement.sign_time.clone().unwrap_or_default(),
        ),
        ("invalid_time", "2115-02-01 00:00:00".to_owned()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(certs) = &lock(&inner.keys).certificates {
        fields.insert("alipay_cert_sn".into(), certs.alipay_cert.sn.clone());
    }
    send_notification(
        inner,
        notify_url,
        fields,
        &agreement.external_agreement_no,
        notify_type,
        fault,
    );
}

fn by_number<'a>(state: &'a mut State_, agreement_no: &str) -> Option<&'a mut Agreement> {
    state
        .agreements
        .values_mut()
        .find(|a| a.agreement_no.as_deref() == Some(agreement_no))
}

fn agreement_fields(agreement: &Agreement) -> Value {
    json!({
        "agreement_no": agreement.agreement_no,
        "external_agreement_no": agreement.external_agreement_no,
        "personal_product_code": "CYCLE_PAY_AUTH_P",
        "sign_scene": agreement.sign_scene,
        "status": agreement.status,
        "sign_time": agreement.sign_time,
        "valid_time": agreement.sign_time,
        "invalid_time": "2115-02-01 00:00:00",
        "principal_id": agreement.buyer_id,
        "single_quota": yuan(agreement.single_fen),
        "next_deduct_time": agreement.next_date,
    })
}

/// The agreement APIs of `gateway.do` (query, unsign, modify).
pub(crate) fn agreement_api(inner: &Arc<Inner>, api: &str, biz: &Value) -> Value {
    let agreement_no = biz
        .get("agreement_no")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut state = lock(&inner.state);
    let Some(agreement) = by_number(&mut state, &agreement_no) else {
        return business_error("USER_AGREEMENT_NOT_EXIST", "用户协议不存在");
    };
    match api {
        "alipay.user.agreement.query" => success(agreement_fields(agreement)),
        "alipay.user.agreement.unsign" => {
            if agreement.status != "STOP" {
                agreement.status = "STOP".into();
                let snapshot = agreement.clone();
                drop(state);
                // A merchant's unsign is told to notify_url too (docs/alipay/operations.md §4).
                agreement_notice(inner, &snapshot, "dut_user_unsign");
            }
            success(json!({}))
        }
        _ => {
            // executionplan.modify: later only, never day 29 to 31 for MONTH.
            let deduct_time = biz
                .get("deduct_time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let day = deduct_time.get(8..10).and_then(|d| d.parse::<u32>().ok());
            let valid = china_unix(&format!("{deduct_time} 00:00:00")).is_some();
            if agreement.status != "NORMAL" {
                return business_error("AGREEMENT_STATUS_NOT_NORMAL", "协议状态非正常");
            }
            if !valid
                || deduct_time <= agreement.next_date
                || (agreement.period_type == "MONTH" && day.is_none_or(|d| d > 28))
            {
                return business_error("ILLEGAL_EXECUTION_TIME", "扣款时间不合法");
            }
            agreement.next_date = deduct_time.clone();
            agreement.modifications += 1;
            success(json!({"agreement_no": agreement_no, "deduct_time": deduct_time}))
        }
    }
}

/// The next date after `date` by one period of `agreement`.
fn one_period_on(agreement: &Agreement, date: &str) -> String {
    let unix = china_unix(&format!("{date} 00:00:00")).unwrap_or(0);
    if agreement.period_type == "DAY" {
        return china_text(unix + agreement.period * 86_400)
            .get(..10)
            .unwrap_or("")
            .to_owned();
    }
    let (year, month, day) = (
        date.get(..4)
            .and_then(|y| y.parse::<i64>().ok())
            .unwrap_or(0),
        date.get(5..7)
            .and_then(|m| m.parse::<i64>().ok())
            .unwrap_or(1),
        date.get(8..10).unwrap_or("01"),
    );
    let index = year * 12 + (month - 1) + agreement.period;
    format!("{:04}-{:02}-{day}", index / 12, index % 12 + 1)
}

/// `alipay.trade.pay` under an agreement.
pub(crate) fn agreement_pay(
    inner: &Arc<Inner>,
    params: &BTreeMap<String, String>,
    biz: &Value,
) -> Value {
    let text = |name: &str| {
        biz.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let out_trade_no = text("out_trade_no");
    let agreement_no = biz
        .get("agreement_params")
        .and_then(|a| a.get("agreement_no"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(amount_fen) = fen(&text("total_amount")) else {
        return business_error("ACQ.INVALID_PARAMETER", "total_amount 不合法");
    };
    if out_trade_no.is_empty() || text("subject").is_empty() {
        return business_error("ACQ.INVALID_PARAMETER", "参数有误");
    }
    // trans_currency and settle_currency: only for a merchant contracted for them, in the
    // contracted settlement currency; when they differ, trans_currency is CNY or TWD
    // (ALIPAY-OPS.md §5). Our amounts are CNY yuan.
    let (trans, settle) = (text("trans_currency"), text("settle_currency"));
    if !trans.is_empty() || !settle.is_empty() {
        let contracted = lock(&inner.cross_border)
            .as_ref()
            .is_some_and(|c| c.currency == settle);
        if !contracted || !matches!(trans.as_str(), "CNY" | "") {
            return business_error("ACQ.CURRENCY_NOT_SUPPORT", "币种不支持");
        }
    }
    let (now_text, now_unix) = china_now(inner);
    let today = now_text.get(..10).unwrap_or("").to_owned();
    let mut state = lock(&inner.state);
    if let Some(trade) = state.trades.get(&out_trade_no) {
        match trade.status.as_str() {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                return business_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付");
            }
            "TRADE_CLOSED" => return business_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
            _ => return business_error("ACQ.SYSTEM_ERROR", "交易处理中"),
        }
    }
    let Some(agreement) = by_number(&mut state, &agreement_no) else {
        return business_error("ACQ.AGREEMENT_NOT_EXIST", "用户协议不存在");
    };
    if agreement.status != "NORMAL" {
        return business_error("ACQ.AGREEMENT_STATUS_NOT_NORMAL", "用户协议状态非NORMAL");
    }
    if agreement.product_code != "*" && text("product_code") != agreement.product_code {
        return business_error("ACQ.ACCESS_FORBIDDEN", "产品码与协议不符");
    }
    // The window: LEAD_DAYS before the agreement's next date through it, by Alipay's clock.
    let next = agreement.next_date.clone();
    let opens = china_unix(&format!("{next} 00:00:00")).unwrap_or(0) - LEAD_DAYS * 86_400;
    let closes = china_unix(&format!("{next} 00:00:00")).unwrap_or(0) + 86_400;
    if !(opens..closes).contains(&now_unix) {
        return business_error(
            "ACQ.CYCLE_PAY_DATE_NOT_MATCH",
            "扣款日期不在签约时的扣款周期内",
        );
    }
    if amount_fen > agreement.single_fen {
        return business_error("ACQ.CYCLE_PAY_SINGLE_FEE_EXCEED", "周期扣款单笔金额超限");
    }
    if agreement
        .total_payments
        .is_some_and(|count| agreement.charges >= count)
    {
        return business_error("ACQ.CYCLE_PAY_TOTAL_TIMES_EXCEED", "周期扣款总次数超限");
    }
    if agreement
        .total_fen
        .is_some_and(|total| agreement.charged_fen + amount_fen > total)
    {
        return business_error("ACQ.CYCLE_PAY_TOTAL_FEE_EXCEED", "周期扣款总金额超限");
    }
    let scripted = agreement.scripted.pop_front();
    let processing = scripted.as_deref() == Some("10003");
    if let Some(code) = scripted.filter(|code| code != "10003") {
        let sub_msg = match code.as_str() {
            "ACQ.BUYER_BALANCE_NOT_ENOUGH" => "买家余额不足",
            "ACQ.PAYMENT_REQUEST_HAS_RISK" => "支付存在风险",
            _ => "支付失败",
        };
        return business_error(&code, sub_msg);
    }
    // Paid: the agreement's next date moves one period on.
    agreement.next_date = one_period_on(agreement, &next);
    agreement.charged_fen += amount_fen;
    agreement.charges += 1;
    let buyer_id = agreement.buyer_id.clone();
    let agreement_status = agreement.status.clone();
    state.charges.push(Charge {
        agreement_no: agreement_no.clone(),
        out_trade_no: out_trade_no.clone(),
        fen: amount_fen,
        charged_on: today,
        period_date: next,
        agreement_status,
        settle_currency: (!settle.is_empty()).then_some(settle),
    });
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let trade = Trade {
        out_trade_no: out_trade_no.clone(),
        trade_no: format!("2026{n:024}"),
        total_amount: yuan(amount_fen),
        total_fen: amount_fen,
        subject: text("subject"),
        status: "TRADE_SUCCESS".into(),
        method: "alipay.trade.pay".into(),
        notify_url: params.get("notify_url").cloned(),
        return_url: None,
        buyer_id,
        refunded_fen: 0,
        refunds: Vec::new(),
        gmt_create: now_text.clone(),
        gmt_payment: Some(now_text.clone()),
        expires_at: None,
        refund_requests_ms: Vec::new(),
        fund_channel: BALANCE.to_owned(),
        min_age: None,
    };
    state.trades.insert(out_trade_no.clone(), trade.clone());
    let every = inner.charge_notify_every.load(Ordering::Relaxed);
    let notify_later = every > 0 && (state.charges.len() as u64).is_multiple_of(every);
    drop(state);
    if processing {
        // 10003: the outcome is not told now; a query finds it paid.
        return json!({"code": "10003", "msg": "Waiting Payment", "out_trade_no": out_trade_no, "trade_no": trade.trade_no});
    }
    if notify_later {
        notify(inner, &trade, "TRADE_SUCCESS", &[]);
    }
    let mut answer = json!({
        "out_trade_no": out_trade_no,
        "trade_no": trade.trade_no,
        "total_amount": trade.total_amount,
        "receipt_amount": trade.total_amount,
        "buyer_user_id": trade.buyer_id,
        "gmt_payment": now_text,
    });
    for (name, value) in crate::cross_border_fields(inner, &trade) {
        answer[name] = json!(value);
    }
    success(answer)
}

/// `alipay.trade.cancel`: a trade not paid is closed, and one Alipay never saw can no longer be
/// made; a paid one is refused (`ACQ.TRADE_STATUS_ERROR`): the gateway cancels only what a query
/// showed unpaid.
pub(crate) fn cancel_trade(inner: &Arc<Inner>, out_trade_no: &str) -> Value {
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(out_trade_no) else {
        // Nothing to cancel: it never reached Alipay, and now it cannot.
        return success(
            json!({"out_trade_no": out_trade_no, "retry_flag": "N", "action": "close"}),
        );
    };
    match trade.status.as_str() {
        "WAIT_BUYER_PAY" => {
            trade.status = "TRADE_CLOSED".into();
            success(
                json!({"out_trade_no": out_trade_no, "trade_no": trade.trade_no, "retry_flag": "N", "action": "close"}),
            )
        }
        "TRADE_CLOSED" => success(
            json!({"out_trade_no": out_trade_no, "trade_no": trade.trade_no, "retry_flag": "N", "action": "close"}),
        ),
        _ => business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    }
}
