//! The create-payment function: `POST /payments` creates a payment (idempotently) and answers
//! the buyer's next step; `GET /payments/{out_trade_no}` returns it with its refunds, and with
//! `?sync=true` asks Alipay first, applying a payment whose notification was lost.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::alipay::notify::TradeStatus;
use shared::alipay::request::{AlipayRequest, PaymentOrder, TradeRef};
use shared::alipay::response::{Disposition, PrecreateResult, QueryResult};
use shared::alipay_client::CallError;
use shared::china_time::ChinaDateTime;
use shared::domain::{Cause, Channel, NewOrder, Order, OrderStatus};
use shared::gateway::{Alipay, Gateway, TradeReport, apply_trade_report, now_ms, payment_view};
use shared::http::{
    ApiError, JsonBody, json_response, method_not_allowed, path_segments, query_flag,
};
use shared::ids::{OutTradeNo, Subject, mask_buyer_id};
use shared::money::Amount;
use shared::store::Created;

/// The longest `time_expire` Alipay accepts is 15 days ahead.
const MAX_EXPIRY_SECONDS: i64 = 15 * 86_400;

/// Routes one request; every failure becomes the shared error shape.
pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    let result = match (request.method(), path_segments(&request).as_slice()) {
        (&Method::POST, ["payments"]) => create(gateway, &request).await,
        (&Method::GET, ["payments", out_trade_no]) => get(gateway, &request, out_trade_no).await,
        (method, ["payments"] | ["payments", _]) => Err(method_not_allowed(method)),
        _ => Err(ApiError::not_found(format!(
            "no route for {}",
            request.uri().path()
        ))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// Reads and validates the body into a [`NewOrder`]; nothing is written before this passes.
fn parse_new_order(
    gateway: &Gateway,
    request: &Request,
    now_ms: i64,
) -> Result<NewOrder, ApiError> {
    let body = JsonBody::parse(
        request,
        &[
            "out_trade_no",
            "amount",
            "subject",
            "channel",
            "return_url",
            "time_expire",
        ],
    )?;
    let out_trade_no = OutTradeNo::parse(body.required("out_trade_no")?)
        .map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let amount =
        Amount::parse(body.required("amount")?).map_err(|e| ApiError::invalid("amount", e))?;
    let subject =
        Subject::parse(body.required("subject")?).map_err(|e| ApiError::invalid("subject", e))?;
    let channel = Channel::parse(body.required("channel")?)
        .ok_or_else(|| ApiError::invalid("channel", "must be one of page, wap, app, qr"))?;
    let return_url = body.string("return_url")?.map(str::to_owned);
    if let Some(url) = &return_url {
        if !matches!(channel, Channel::Page | Channel::Wap) {
            return Err(ApiError::invalid(
                "return_url",
                "applies to the page and wap channels only",
            ));
        }
        if !gateway.config.return_url_allowed(url) {
            return Err(ApiError::invalid(
                "return_url",
                "does not start with an allowed prefix (RETURN_URL_PREFIXES)",
            ));
        }
    }
    let time_expire = body
        .string("time_expire")?
        .map(|text| ChinaDateTime::parse(text).map_err(|e| ApiError::invalid("time_expire", e)))
        .transpose()?;
    if let Some(at) = &time_expire {
        let ahead = at.unix_seconds() - now_ms.div_euclid(1000);
        if ahead <= 0 {
            return Err(ApiError::invalid("time_expire", "is in the past"));
        }
        if ahead > MAX_EXPIRY_SECONDS {
            return Err(ApiError::invalid(
                "time_expire",
                "is more than 15 days ahead",
            ));
        }
    }
    Ok(NewOrder {
        out_trade_no,
        amount,
        subject,
        channel,
        return_url,
        time_expire,
    })
}

async fn create(gateway: &Gateway, request: &Request) -> Result<Response<Body>, ApiError> {
    let now = now_ms();
    let new = parse_new_order(gateway, request, now)?;
    let alipay = gateway.alipay()?;
    let cause = Cause::Api {
        route: "POST /payments".into(),
    };
    let (status, order) = match gateway.store.create_order(&new, &cause, now).await? {
        Created::New(order) => (StatusCode::CREATED, order),
        Created::Existing(order) => (StatusCode::OK, order),
    };
    tracing::info!(out_trade_no = %order.out_trade_no, channel = order.channel.as_str(), new = status == StatusCode::CREATED, "payment created");
    let next_step = if order.status == OrderStatus::Created {
        Some(next_step(alipay, &new, now).await?)
    } else {
        None
    };
    Ok(json_response(
        status,
        &json!({ "payment": payment_view(&order, None), "next_step": next_step }),
    ))
}

/// What the buyer does next: open a URL, hand an order string to the app, or scan a QR code.
async fn next_step(alipay: &Alipay, new: &NewOrder, now: i64) -> Result<Value, ApiError> {
    let order = PaymentOrder {
        out_trade_no: new.out_trade_no.clone(),
        total_amount: new.amount,
        subject: new.subject.clone(),
        time_expire: new.time_expire.clone(),
    };
    let request = match new.channel {
        Channel::Page => AlipayRequest::PagePay {
            order,
            return_url: new.return_url.clone(),
        },
        Channel::Wap => AlipayRequest::WapPay {
            order,
            return_url: new.return_url.clone(),
            quit_url: None,
        },
        Channel::App => AlipayRequest::AppPay { order },
        Channel::Qr => return precreate(alipay, AlipayRequest::Precreate { order }, now).await,
    };
    let signed = alipay
        .client
        .sign(&request, alipay.signer.as_ref(), now)
        .await
        .map_err(ApiError::from)?;
    Ok(match new.channel {
        Channel::App => json!({ "type": "app", "order_string": signed.order_string() }),
        _ => json!({ "type": "redirect", "url": signed.gateway_url(alipay.client.gateway_url()) }),
    })
}

async fn precreate(alipay: &Alipay, request: AlipayRequest, now: i64) -> Result<Value, ApiError> {
    let method = request.method();
    let answer = alipay
        .client
        .call(&request, alipay.signer.as_ref(), now)
        .await
        .map_err(ApiError::from)?;
    if answer.disposition() != Disposition::Success {
        return Err(ApiError::alipay_refused(&answer.status));
    }
    let result: PrecreateResult = answer
        .parse(method)
        .map_err(|e| ApiError::from(CallError::Untrusted(e)))?;
    Ok(json!({ "type": "qr", "qr_code": result.qr_code }))
}

async fn get(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no =
        OutTradeNo::parse(out_trade_no).map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let (mut order, refunds) = gateway
        .store
        .get_order_with_refunds(&out_trade_no)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no payment with out_trade_no {out_trade_no}"))
        })?;
    if query_flag(request, "sync") && order.status == OrderStatus::Created {
        order = sync_with_alipay(gateway, order).await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &payment_view(&order, Some(&refunds)),
    ))
}

/// Asks Alipay for the trade (`alipay.trade.query`) and applies what it says.
async fn sync_with_alipay(gateway: &Gateway, order: Order) -> Result<Order, ApiError> {
    let alipay = gateway.alipay()?;
    let now = now_ms();
    let request = AlipayRequest::Query {
        trade: TradeRef::OutTradeNo(order.out_trade_no.clone()),
    };
    let answer = alipay
        .client
        .call(&request, alipay.signer.as_ref(), now)
        .await
        .map_err(ApiError::from)?;
    match answer.disposition() {
        Disposition::Success => {}
        // Before the buyer opens the cashier, Alipay has no trade yet.
        _ if answer.status.sub_code.as_deref() == Some("ACQ.TRADE_NOT_EXIST") => return Ok(order),
        _ => {
            return Err(ApiError::alipay_refused(&answer.status));
        }
    }
    let result: QueryResult = answer
        .parse(request.method())
        .map_err(|e| ApiError::from(CallError::Untrusted(e)))?;
    if result.out_trade_no != order.out_trade_no.as_str() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "alipay_mismatch",
            "Alipay answered about another trade",
        ));
    }
    let Some(trade_status) = TradeStatus::parse(&result.trade_status) else {
        return Ok(order);
    };
    let report = TradeReport {
        trade_no: result.trade_no,
        trade_status,
        total_amount: result.total_amount,
        paid_at: result.send_pay_date,
        buyer_id_masked: result.buyer_user_id.as_deref().map(mask_buyer_id),
    };
    let cause = Cause::AlipayAnswer {
        method: request.method().into(),
    };
    match apply_trade_report(&gateway.store, &order, &report, &cause, now).await {
        Ok(
            shared::gateway::Applied::Changed(order) | shared::gateway::Applied::Unchanged(order),
        ) => Ok(order),
        Err(shared::gateway::ApplyError::Mismatch(detail)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "alipay_mismatch",
            detail,
        )),
        Err(shared::gateway::ApplyError::Store(error)) => Err(error.into()),
    }
}
