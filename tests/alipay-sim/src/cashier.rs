//! The buyer's side: the cashier page (page, wap, QR), paying, and the app opening an order
//! string.

#[allow(unused_imports)]
use crate::*;

/// How a payment is made: by whom, with what.
#[derive(Clone, Debug, Default)]
pub struct Payer {
    /// Also send TRADE_FINISHED (a trade that can no longer be refunded).
    pub finished: bool,
    /// The buyer's Alipay user id (2088…); the trade's own otherwise.
    pub buyer_id: Option<String>,
    /// [`BALANCE`] or [`BANK_CARD`]; by [`RefundProcessing::bank_card_every`] otherwise.
    pub fund_channel: Option<String>,
    /// The payer's age (an adult of 30 otherwise): a trade with `ext_user_info.min_age` above it
    /// cannot be paid by this payer.
    pub age: Option<u8>,
    /// Whether the payer's account is real-name verified (yes otherwise): a trade with
    /// `need_check_info=T` cannot be paid from an account that is not.
    pub not_real_named: bool,
}

pub(crate) fn pay(inner: &Arc<Inner>, out_trade_no: &str, payer: &Payer) -> Result<Trade, String> {
    let mut state = lock(&inner.state);
    let trade = state
        .trades
        .get_mut(out_trade_no)
        .ok_or("no such trade (open the cashier first)")?;
    let (now, unix_now) = china_now(inner);
    trade.expire_if_due(unix_now);
    if trade.status != "WAIT_BUYER_PAY" {
        return Err(format!("the trade is {}", trade.status));
    }
    // ext_user_info with need_check_info=T: Alipay lets only a real-named payer of at least
    // min_age pay; anyone else is stopped at the cashier and the trade stays unpaid.
    if let Some(min_age) = trade.min_age {
        if payer.not_real_named {
            return Err(
                "the payer's account is not real-name verified (ext_user_info need_check_info=T)"
                    .into(),
            );
        }
        if payer.age.unwrap_or(30) < min_age {
            return Err(format!(
                "the payer is younger than {min_age} (ext_user_info min_age)"
            ));
        }
    }
    trade.status = if payer.finished {
        "TRADE_FINISHED"
    } else {
        "TRADE_SUCCESS"
    }
    .into();
    trade.gmt_payment = Some(now);
    if let Some(buyer_id) = &payer.buyer_id {
        trade.buyer_id = buyer_id.clone();
    }
    let n = inner.payments.fetch_add(1, Ordering::Relaxed) + 1;
    let every = inner.config.refunds.bank_card_every;
    trade.fund_channel = match &payer.fund_channel {
        Some(channel) => channel.clone(),
        None if every > 0 && n.is_multiple_of(every) => BANK_CARD.to_owned(),
        None => BALANCE.to_owned(),
    };
    let snapshot = trade.clone();
    let signs = state.pay_and_sign.remove(out_trade_no);
    drop(state);
    notify(inner, &snapshot, "TRADE_SUCCESS", &[]);
    if payer.finished {
        notify(inner, &snapshot, "TRADE_FINISHED", &[]);
    }
    // Pay-and-sign: paying signs the agreement the payment carried.
    if let Some(external) = signs {
        sign_agreement(inner, &external, &snapshot.buyer_id, false)?;
    }
    Ok(snapshot)
}

pub(crate) fn open_app_order(inner: &Inner, order_string: &str) -> Result<Trade, String> {
    let params = decode_form(order_string.trim().as_bytes())?;
    let content = content_to_sign(&params, false);
    let sign = params.get("sign").ok_or("the order string is unsigned")?;
    if params.get("sign_type").map(String::as_str) != Some("RSA2") {
        return Err("sign_type must be RSA2".into());
    }
    lock(&inner.state)
        .signed
        .push((content.clone(), sign.clone()));
    let app_public_key = lock(&inner.keys).app_public_key.clone();
    if !app_public_key.verify_base64(content.as_bytes(), sign) {
        return Err("isv.invalid-signature: the order string's signature does not verify".into());
    }
    if params.get("method").map(String::as_str) != Some("alipay.trade.app.pay") {
        return Err("not an alipay.trade.app.pay order string".into());
    }
    let biz: Value = serde_json::from_str(params.get("biz_content").map_or("", String::as_str))
        .map_err(|e| e.to_string())?;
    open_trade(inner, "alipay.trade.app.pay", &params, &biz)
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn cashier_page(inner: &Inner, trade: &Trade) -> Response {
    let paid = trade.status != "WAIT_BUYER_PAY";
    let action = if paid {
        format!("<p class=\"done\">{}</p>", escape(&trade.status))
    } else {
        format!(
            "<form method=\"post\" action=\"{}/cashier/pay\"><input type=\"hidden\" name=\"out_trade_no\" value=\"{}\"><button type=\"submit\">确认付款 Pay ¥{}</button></form>",
            inner.base_url,
            escape(&trade.out_trade_no),
            escape(&trade.total_amount)
        )
    };
    Html(format!(
        "<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>支付宝 Alipay (local simulator)</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;color:#333}}h1{{color:#1677ff}}\
         .amount{{font-size:2.5rem;margin:.5rem 0}}button{{background:#1677ff;color:#fff;border:0;border-radius:6px;\
         font-size:1.2rem;padding:.8rem 2rem;cursor:pointer}}small{{color:#888}}</style></head><body>\
         <h1>支付宝 · 收银台</h1><small>Local Alipay simulator: no real money moves.</small>\
         <p>{}</p><p class=\"amount\">¥{}</p><p><small>订单号 {} · 交易号 {}</small></p>{}</body></html>",
        escape(&trade.subject),
        escape(&trade.total_amount),
        escape(&trade.out_trade_no),
        escape(&trade.trade_no),
        action
    ))
    .into_response()
}

pub(crate) async fn cashier(
    State(inner): State<Arc<Inner>>,
    Path(out_trade_no): Path<String>,
) -> Response {
    match lock(&inner.state).trades.get(&out_trade_no).cloned() {
        Some(trade) => cashier_page(&inner, &trade),
        None => (
            StatusCode::NOT_FOUND,
            Html("<h1>交易不存在</h1>".to_owned()),
        )
            .into_response(),
    }
}

pub(crate) async fn cashier_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let form = decode_form(&body).unwrap_or_default();
    let out_trade_no = form.get("out_trade_no").cloned().unwrap_or_default();
    match pay(&inner, &out_trade_no, &Payer::default()) {
        Ok(trade) => match &trade.return_url {
            Some(url) => {
                // The synchronous return carries signed parameters; merchants must not trust it
                // for payment state (the notification and query are authoritative).
                let (now, _) = china_now(&inner);
                let mut fields: BTreeMap<String, String> = [
                    ("app_id", inner.config.app_id.clone()),
                    ("method", format!("{}.return", trade.method)),
                    ("charset", "utf-8".into()),
                    ("sign_type", "RSA2".into()),
                    ("timestamp", now),
                    ("version", "1.0".into()),
                    ("out_trade_no", trade.out_trade_no.clone()),
                    ("trade_no", trade.trade_no.clone()),
                    ("total_amount", trade.total_amount.clone()),
                    ("seller_id", inner.config.seller_id.clone()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                let sign = sign(&inner, &content_to_sign(&fields, true));
                fields.insert("sign".into(), sign);
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&fields)
                    .finish();
                let separator = if url.contains('?') { '&' } else { '?' };
                Redirect::to(&format!("{url}{separator}{query}")).into_response()
            }
            None => cashier_page(&inner, &trade),
        },
        Err(e) => (
            StatusCode::CONFLICT,
            Html(format!("<h1>无法付款</h1><p>{}</p>", escape(&e))),
        )
            .into_response(),
    }
}
