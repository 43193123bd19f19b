//! The create-payment function: `POST /payments` creates a payment (idempotently) and answers
//! the buyer's next step; `GET /payments/{out_trade_no}` returns it with its refunds, and with
//! `?sync=true` asks Alipay first, applying a payment whose notification was lost;
//! `POST /payments/{out_trade_no}/close` closes an unpaid payment (at Alipay, then here).
//!
//! Every payment is sent to Alipay with a `time_expire` (the merchant's, or the configured
//! default), so no pay URL stays payable after it; the sweeper ends what nobody paid.

use std::net::IpAddr;

use alipay::china_time::{ChinaDateTime, china_timestamp};
use alipay::ids::{OutTradeNo, Subject};
use alipay::money::Amount;
use alipay::request::IdentityCheck;
use alipay::request::{AlipayRequest, PaymentOrder};
use alipay::response::{Disposition, PrecreateResult};
use domain::channel::ChannelId;
use domain::decisions::{Action, Decision};
use domain::lifecycle::TradeNext;
use domain::states::Hold;
use domain::states::{Cashier, Cause, Currency, Money, NewOrder, Order, OrderStatus};
use gateway::antom::{self, NextStep};
use gateway::channel::Channel;
use gateway::channel::antom::AntomChannel;
use gateway::channel::client::CallError;
use gateway::clock::now_ms;
use gateway::deadline::Deadline;
use gateway::http::views::payment_view;
use gateway::http::{
    ApiError, JsonBody, json_response, method_not_allowed, path_segments, query_flag,
};
use gateway::payments::{Ended, apply_paid_because, end_unpaid_order};
use gateway::provider::{AnyChannel, Provider as _};
use gateway::risk::{Facts, Screened, create_screened, record_refusal};
use gateway::startup::Gateway;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use store::{Created, StoreError};

/// The longest `time_expire` Alipay accepts is 15 days ahead.
const MAX_EXPIRY_SECONDS: i64 = 15 * 86_400;

/// Routes one request; every failure becomes the shared error shape.
pub async fn handle(gateway: &Gateway, request: Request) -> Response<Body> {
    let deadline = Deadline::of_request(&request, gateway.config.lifecycle.default_budget_ms);
    let result = match (request.method(), path_segments(&request).as_slice()) {
        (&Method::POST, ["payments"]) => create(gateway, &request).await,
        (&Method::GET, ["payments", out_trade_no]) => {
            get(gateway, &request, out_trade_no, &deadline).await
        }
        (&Method::POST, ["payments", out_trade_no, "close"]) => {
            close(gateway, out_trade_no, &deadline).await
        }
        (&Method::POST, ["payments", out_trade_no, "release"]) => {
            release(gateway, out_trade_no).await
        }
        (&Method::POST, ["payments", out_trade_no, "cancel"]) => {
            cancel(gateway, out_trade_no, &deadline).await
        }
        (
            method,
            ["payments"] | ["payments", _] | ["payments", _, "close" | "release" | "cancel"],
        ) => Err(method_not_allowed(method)),
        _ => Err(ApiError::not_found(format!(
            "no route for {}",
            request.uri().path()
        ))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// What the merchant says about the buyer, for the risk decision only (neither stored nor part
/// of the order).
struct BuyerFacts {
    ip: Option<IpAddr>,
    device: Option<String>,
}

/// Reads and validates the body into a [`NewOrder`] and what it says about the buyer; nothing
/// is written before this passes.
fn parse_new_order(
    gateway: &Gateway,
    request: &Request,
) -> Result<(NewOrder, BuyerFacts), ApiError> {
    let body = JsonBody::parse(
        request,
        &[
            "out_trade_no",
            "amount",
            "currency",
            "subject",
            "channel",
            "return_url",
            "time_expire",
            "customer_ref",
            "goods_type",
            "buyer_ip",
            "device_fingerprint",
        ],
    )?;
    let out_trade_no = OutTradeNo::parse(body.required("out_trade_no")?)
        .map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let currency = match body.string("currency")? {
        None => Currency::CNY,
        Some(code) => Currency::parse(code).map_err(|e| ApiError::invalid("currency", e))?,
    };
    let amount = Money::parse_payment(body.required("amount")?, currency)
        .map_err(|e| ApiError::invalid("amount", e))?;
    // Alipay v1's ceiling for a CNY payment: 100000000.00.
    if currency == Currency::CNY {
        Amount::try_from(amount).map_err(|e| ApiError::invalid("amount", e))?;
    }
    let subject =
        Subject::parse(body.required("subject")?).map_err(|e| ApiError::invalid("subject", e))?;
    let channel = Cashier::parse(body.required("channel")?)
        .filter(|channel| *channel != Cashier::Agreement)
        .ok_or_else(|| ApiError::invalid("channel", "must be one of page, wap, app, qr"))?;
    let return_url = body.string("return_url")?.map(str::to_owned);
    if let Some(url) = &return_url {
        if !matches!(channel, Cashier::Page | Cashier::Wap) {
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
    let customer_ref = body.customer_ref()?;
    let virtual_goods = match body.string("goods_type")? {
        None | Some("virtual") => true,
        Some("physical") => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "goods_type",
                "must be virtual or physical",
            ));
        }
    };
    let buyer_ip = body
        .string("buyer_ip")?
        .map(|text| {
            parse_buyer_ip(text).ok_or_else(|| {
                ApiError::invalid(
                    "buyer_ip",
                    "must be the buyer's IPv4 or IPv6 address, like 203.0.113.7 or 2001:db8::7",
                )
            })
        })
        .transpose()?;
    let device = body
        .string("device_fingerprint")?
        .map(|text| {
            let ok = (1..=128).contains(&text.len())
                && text.bytes().all(|b| b.is_ascii_graphic());
            ok.then(|| text.to_owned()).ok_or_else(|| {
                ApiError::invalid(
                    "device_fingerprint",
                    "must be 1 to 128 printable ASCII characters (your fingerprint of the buyer's device)",
                )
            })
        })
        .transpose()?;
    let order = NewOrder {
        out_trade_no,
        amount,
        subject,
        channel,
        return_url,
        time_expire,
        customer_ref,
        virtual_goods,
        // Picked once the request is known to be valid.
        alipay_channel: ChannelId::Primary,
    };
    Ok((
        order,
        BuyerFacts {
            ip: buyer_ip,
            device,
        },
    ))
}

/// The buyer's IP as the merchant's backend saw it (its web server's client address): an IPv4 or
/// IPv6 literal, an IPv4-mapped IPv6 address read as the IPv4 one it is (so both forms count
/// alike), never the unspecified address.
fn parse_buyer_ip(text: &str) -> Option<IpAddr> {
    let ip: IpAddr = text.parse().ok()?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    (!ip.is_unspecified()).then_some(ip)
}

/// A new payment's `time_expire` must be ahead, by at most 15 days (Alipay's limit).
fn expiry_problem(time_expire: &ChinaDateTime, now_ms: i64) -> Option<ApiError> {
    let ahead = time_expire.unix_seconds() - now_ms.div_euclid(1000);
    if ahead <= 0 {
        return Some(ApiError::invalid("time_expire", "is in the past"));
    }
    if ahead > MAX_EXPIRY_SECONDS {
        return Some(ApiError::invalid(
            "time_expire",
            "is more than 15 days ahead",
        ));
    }
    None
}

async fn create(gateway: &Gateway, request: &Request) -> Result<Response<Body>, ApiError> {
    let now = now_ms();
    let (mut new, buyer) = parse_new_order(gateway, request)?;
    let lifecycle = &gateway.config.lifecycle;
    if let Some(problem) = new
        .time_expire
        .as_ref()
        .and_then(|at| expiry_problem(at, now))
    {
        // A repeat of a create whose time_expire has since passed answers the payment.
        return match gateway.store.get_order(&new.out_trade_no).await? {
            Some(order) if order.fingerprint == new.fingerprint() => Ok(json_response(
                StatusCode::OK,
                &json!({ "payment": payment_view(&order, None), "next_step": Value::Null }),
            )),
            _ => Err(problem),
        };
    }
    let time_expire = match &new.time_expire {
        Some(at) => at.clone(),
        None => default_expiry(now, lifecycle.default_expiry_seconds)?,
    };
    let due_at_ms = time_expire.unix_seconds() * 1000 + lifecycle.expiry_grace_ms;
    // The first channel whose circuit is closed; none: 503 at once, nothing written.
    new.alipay_channel = gateway.pick(new.amount.currency()).await?;
    let cause = Cause::Api {
        route: "POST /payments".into(),
    };
    // The API's caller is the merchant's backend (IAM-signed), so the connection's address
    // (API Gateway's sourceIp) is the shop's, never the buyer's: only what the merchant says
    // about the buyer is counted and decided on.
    let facts = Facts {
        buyer_ip: buyer.ip,
        device: buyer.device.as_deref(),
        buyer: None,
        // Alipay's identity check rides on the cashier's request (page, wap, app) of v1.
        can_step_up: matches!(new.channel, Cashier::Page | Cashier::Wap | Cashier::App)
            && matches!(gateway.provider(new.alipay_channel), Ok(AnyChannel::V1(_))),
    };
    let screened =
        create_screened(gateway, &new, &time_expire, due_at_ms, &cause, now, &facts).await?;
    let (status, order) = match screened {
        Screened::Created(created) => match *created {
            Created::New(order) => (StatusCode::CREATED, order),
            Created::Existing(order) => (StatusCode::OK, order),
        },
        Screened::Refused {
            decision,
            rule,
            message,
        } => {
            return Err(refused(gateway, &new, &cause, &decision, rule, message, now).await);
        }
    };
    tracing::info!(out_trade_no = %order.out_trade_no, channel = order.channel.as_str(), alipay_channel = %order.alipay_channel, new = status == StatusCode::CREATED, "payment created");
    // A repeat keeps the channel that created the order, open or not.
    let (order, next_step) = match payable_until(&order, now) {
        None => (order, None),
        Some(time_expire) => match gateway.provider(order.alipay_channel)? {
            AnyChannel::V1(alipay) => {
                let step = next_step(alipay, &order, time_expire).await?;
                (order, Some(step))
            }
            AnyChannel::Antom(antom) => {
                let deadline =
                    Deadline::of_request(request, gateway.config.lifecycle.default_budget_ms);
                match antom_next_step(gateway, antom, order, &time_expire, &cause, &deadline)
                    .await?
                {
                    Ok(next) => next,
                    Err(answered) => return Ok(answered),
                }
            }
        },
    };
    Ok(json_response(
        status,
        &json!({ "payment": payment_view(&order, None), "next_step": next_step }),
    ))
}

/// Antom's cashier: `payments/pay` for the stored order (a repeat sends the same request id and
/// gets the same payment). Paid already: the inquiry's answer applied, no next step. Refused
/// for good: the order closed, 422 with Antom's code. No answer: 503, the order unchanged.
/// `Ok(Err(response))`: the answer to give, the payment in it.
async fn antom_next_step(
    gateway: &Gateway,
    antom: &AntomChannel,
    order: Order,
    time_expire: &ChinaDateTime,
    cause: &Cause,
    deadline: &Deadline,
) -> Result<Result<(Order, Option<Value>), Response<Body>>, ApiError> {
    let step = antom::pay(antom, &order, time_expire, deadline)
        .await
        .map_err(|problem| ApiError::unavailable("misconfigured", problem, 60))?;
    Ok(match step {
        NextStep::Cashier(step) => Ok((order, Some(step))),
        NextStep::Inquire => match end_unpaid_order_probe(gateway, antom, order, deadline).await? {
            Ended::Paid(order) | Ended::Closed(order) => Ok((order, None)),
            Ended::Open { order, reason } => {
                Err(ApiError::unavailable("antom_unavailable", reason, 5)
                    .into_response_with("payment", payment_view(&order, None)))
            }
        },
        NextStep::Refused { code, message } => {
            let closed = gateway
                .store
                .close(&order.out_trade_no, None, cause, now_ms())
                .await?
                .into_inner();
            tracing::warn!(out_trade_no = %closed.out_trade_no, code = %code, "Antom refused the payment");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "payment_refused",
                format!("Antom refused the payment: {code} {message}"),
            )
            .into_response_with("payment", payment_view(&closed, None)))
        }
        NextStep::Unknown(reason) => Err(ApiError::unavailable(
            "antom_unavailable",
            format!("Antom did not answer the payment ({reason}); retry the same request"),
            5,
        )
        .into_response_with("payment", payment_view(&order, None))),
    })
}

/// Antom says a payment it was just asked to start is paid: ask, apply what it says.
async fn end_unpaid_order_probe(
    gateway: &Gateway,
    antom: &AntomChannel,
    order: Order,
    deadline: &Deadline,
) -> Result<Ended, ApiError> {
    let queried = antom.query_trade(&order, deadline).await;
    let cause = Cause::AlipayAnswer {
        method: antom.names().query.into(),
    };
    Ok(match (queried.next, queried.report) {
        (TradeNext::ApplyPaid, Some(report)) => {
            apply_paid_because(gateway, order, &report, &cause).await?
        }
        _ => Ended::Open {
            order,
            reason: queried
                .reason
                .unwrap_or_else(|| "Antom could not be asked".into()),
        },
    })
}

/// A create the risk decision blocked: 422 naming the rule, an audit entry under the
/// out_trade_no (no order is created) with the journal's lines, and the `RiskRefusals` metric
/// (EMF, by rule).
async fn refused(
    gateway: &Gateway,
    new: &NewOrder,
    cause: &Cause,
    decision: &Decision,
    rule: String,
    message: String,
    now: i64,
) -> ApiError {
    // A repeat of a create that succeeded is answered above; this one never made an order.
    record_refusal(gateway, new, cause, decision, now).await;
    tracing::warn!(out_trade_no = %new.out_trade_no, rule = %rule, "payment refused by the fraud checks");
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    println!(
        "{}",
        json!({
            "_aws": {
                "Timestamp": now,
                "CloudWatchMetrics": [{
                    "Namespace": "AlipayGateway",
                    "Dimensions": [["Rule"], []],
                    "Metrics": [{"Name": "RiskRefusals", "Unit": "Count"}],
                }],
            },
            "Function": function,
            "Rule": rule,
            "RiskRefusals": 1,
        })
    );
    ApiError::from(StoreError::RiskRefused { rule, message })
}

/// The configured default: `seconds` from now, in China time.
fn default_expiry(now_ms: i64, seconds: i64) -> Result<ChinaDateTime, ApiError> {
    ChinaDateTime::parse(&china_timestamp(now_ms.div_euclid(1000) + seconds)).map_err(|_| {
        ApiError::unavailable(
            "misconfigured",
            "the default expiry cannot be formatted",
            60,
        )
    })
}

/// The order's `time_expire` while the buyer may still pay it; `None` once it is paid, closed
/// or expired (a repeat of the create then gets no pay URL).
fn payable_until(order: &Order, now_ms: i64) -> Option<ChinaDateTime> {
    if order.status != OrderStatus::Created {
        return None;
    }
    let at = ChinaDateTime::parse(order.time_expire.as_deref()?).ok()?;
    (at.unix_seconds() > now_ms.div_euclid(1000)).then_some(at)
}

/// What the buyer does next: open a URL, hand an order string to the app, or scan a QR code.
/// Built from the stored order, so a repeat signs exactly what the first request signed.
async fn next_step(
    alipay: &Channel,
    stored: &Order,
    time_expire: ChinaDateTime,
) -> Result<Value, ApiError> {
    let total_amount = Amount::try_from(stored.amount).map_err(|e| {
        ApiError::new(StatusCode::CONFLICT, "unsupported_currency", e.to_string())
            .with_field("currency")
    })?;
    // A step-up rides on the cashier's request: Alipay checks who pays.
    let identity_check = stored
        .decision
        .as_ref()
        .filter(|d| d.outcome == Action::StepUp)
        .and_then(|d| d.min_age)
        .map(|min_age| IdentityCheck { min_age });
    let order = PaymentOrder {
        out_trade_no: stored.out_trade_no.clone(),
        total_amount,
        subject: stored.subject.clone(),
        time_expire: Some(time_expire),
        identity_check,
    };
    let request = match stored.channel {
        Cashier::Page => AlipayRequest::PagePay {
            order,
            return_url: stored.return_url.clone(),
        },
        Cashier::Wap => AlipayRequest::WapPay {
            order,
            return_url: stored.return_url.clone(),
            quit_url: None,
        },
        Cashier::App => AlipayRequest::AppPay { order },
        Cashier::Qr => return precreate(alipay, AlipayRequest::Precreate { order }).await,
        // A subscription's period: charged under its agreement, never paid at a cashier.
        Cashier::Agreement => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "subscription_charge",
                "this payment is a subscription's period, charged under its agreement",
            )
            .with_field("out_trade_no"));
        }
    };
    let signed = alipay.sign(&request).await.map_err(ApiError::from)?;
    Ok(match stored.channel {
        Cashier::App => json!({ "type": "app", "order_string": signed.order_string() }),
        _ => json!({ "type": "redirect", "url": signed.gateway_url(alipay.client.gateway_url()) }),
    })
}

/// `POST /payments/{out_trade_no}/close`: closes an unpaid payment at Alipay (a trade Alipay
/// never knew is closed here only). Paid: `409` with the payment. Alipay unreachable: `503`
/// with the payment unchanged (the sweeper ends it after its `time_expire`).
async fn close(
    gateway: &Gateway,
    out_trade_no: &str,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let out_trade_no =
        OutTradeNo::parse(out_trade_no).map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let order = gateway
        .store
        .get_order(&out_trade_no)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no payment with out_trade_no {out_trade_no}"))
        })?;
    close_order(gateway, order, deadline).await
}

/// [`close`] for the order as read.
async fn close_order(
    gateway: &Gateway,
    order: Order,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let ended = match order.status {
        OrderStatus::Closed => Ended::Closed(order),
        OrderStatus::Paid | OrderStatus::Finished => Ended::Paid(order),
        OrderStatus::Created => {
            let cause = Cause::Api {
                route: "POST /payments/{out_trade_no}/close".into(),
            };
            let provider = gateway.provider(order.alipay_channel)?;
            // The order's channel is failing: say so at once, the order unchanged.
            if let Err(open) = provider.breaker().check(now_ms()).await {
                return Ok(
                    ApiError::from(open).into_response_with("payment", payment_view(&order, None))
                );
            }
            end_unpaid_order(
                gateway,
                &provider,
                order,
                TradeNext::CloseAtAlipay,
                &cause,
                deadline,
            )
            .await?
        }
    };
    Ok(match ended {
        Ended::Closed(order) => json_response(StatusCode::OK, &payment_view(&order, None)),
        Ended::Paid(order) => ApiError::new(
            StatusCode::CONFLICT,
            "payment_paid",
            "the payment was paid and cannot be closed; refund it instead",
        )
        .into_response_with("payment", payment_view(&order, None)),
        Ended::Open { order, reason } => ApiError::unavailable(
            "close_unconfirmed",
            format!("Alipay did not confirm the close ({reason}); retry"),
            5,
        )
        .into_response_with("payment", payment_view(&order, None)),
    })
}

/// `POST /payments/{out_trade_no}/release`: a payment held for review may be delivered. A
/// repeat answers the released payment; a payment never held, or cancelled: `409`.
async fn release(gateway: &Gateway, out_trade_no: &str) -> Result<Response<Body>, ApiError> {
    let out_trade_no =
        OutTradeNo::parse(out_trade_no).map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let cause = Cause::Api {
        route: "POST /payments/{out_trade_no}/release".into(),
    };
    match gateway
        .store
        .change_hold(&out_trade_no, Hold::Released, &cause, now_ms())
        .await
    {
        Ok(changed) => Ok(json_response(
            StatusCode::OK,
            &payment_view(&changed.into_inner(), None),
        )),
        Err(StoreError::IllegalTransition { from, .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!("the payment's hold is {from}: only a held payment can be released"),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `POST /payments/{out_trade_no}/cancel`: the merchant will not deliver a held payment.
/// Unpaid, it is closed at Alipay first (as `close`), then its hold cancelled (`200`); paid,
/// its hold is cancelled (`202`) and the money goes back by a refund
/// (`POST /payments/{out_trade_no}/refunds`, the refund function's).
async fn cancel(
    gateway: &Gateway,
    out_trade_no: &str,
    deadline: &Deadline,
) -> Result<Response<Body>, ApiError> {
    let parsed =
        OutTradeNo::parse(out_trade_no).map_err(|e| ApiError::invalid("out_trade_no", e))?;
    let order = gateway
        .store
        .get_order(&parsed)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no payment with out_trade_no {parsed}")))?;
    if !matches!(order.hold, Some(Hold::Held | Hold::Cancelled)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            "only a payment held for review is cancelled this way; close or refund it",
        ));
    }
    if order.status == OrderStatus::Created {
        // Closed at Alipay first: a cancelled hold on a payable trade would not be true.
        let closed = close_order(gateway, order, deadline).await?;
        if closed.status() != StatusCode::OK {
            return Ok(closed);
        }
    }
    let cause = Cause::Api {
        route: "POST /payments/{out_trade_no}/cancel".into(),
    };
    let order = gateway
        .store
        .change_hold(&parsed, Hold::Cancelled, &cause, now_ms())
        .await?
        .into_inner();
    let status = if order.status.is_paid() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &payment_view(&order, None)))
}

async fn precreate(alipay: &Channel, request: AlipayRequest) -> Result<Value, ApiError> {
    let method = request.method();
    let answer = alipay
        .call_within(&request, alipay.client.timeout())
        .await
        .map_err(ApiError::from)?;
    if answer.disposition() != Disposition::Success {
        return Err(ApiError::alipay_refused(&answer.status));
    }
    let result: PrecreateResult = answer.parse(method).map_err(|e| {
        tracing::warn!(security = true, error = %e, "Alipay answer unreadable");
        ApiError::from(CallError::Untrusted(e))
    })?;
    Ok(json!({ "type": "qr", "qr_code": result.qr_code }))
}

async fn get(
    gateway: &Gateway,
    request: &Request,
    out_trade_no: &str,
    deadline: &Deadline,
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
        order = sync_with_alipay(gateway, order, deadline).await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &payment_view(&order, Some(&refunds)),
    ))
}

/// Asks Alipay for the trade (`alipay.trade.query`) and applies a payment it reports (the
/// same reading and decision the sweeper uses); anything else leaves the order as it is.
async fn sync_with_alipay(
    gateway: &Gateway,
    order: Order,
    deadline: &Deadline,
) -> Result<Order, ApiError> {
    let provider = gateway.provider(order.alipay_channel)?;
    provider
        .breaker()
        .check(now_ms())
        .await
        .map_err(ApiError::from)?;
    let queried = provider.query_trade(&order, deadline).await;
    let cause = Cause::AlipayAnswer {
        method: provider.names().query.into(),
    };
    match (queried.next, queried.report) {
        (TradeNext::ApplyPaid, Some(report)) => {
            match apply_paid_because(gateway, order, &report, &cause).await? {
                Ended::Paid(order) | Ended::Closed(order) => Ok(order),
                Ended::Open { reason, .. } => Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "alipay_mismatch",
                    reason,
                )),
            }
        }
        (TradeNext::Wait, _) => Err(ApiError::unavailable(
            "alipay_unavailable",
            queried
                .reason
                .unwrap_or_else(|| "Alipay could not be asked".into()),
            5,
        )),
        // Waiting for the buyer, closed, or not yet known to Alipay: nothing to apply.
        _ => Ok(order),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_buyer_ip;

    #[test]
    fn a_buyer_ip_is_an_address_and_both_forms_of_an_ipv4_one_count_alike() {
        assert_eq!(
            parse_buyer_ip("203.0.113.7").map(|ip| ip.to_string()),
            Some("203.0.113.7".into())
        );
        assert_eq!(
            parse_buyer_ip("::ffff:203.0.113.7").map(|ip| ip.to_string()),
            Some("203.0.113.7".into())
        );
        assert_eq!(
            parse_buyer_ip("2001:db8::7").map(|ip| ip.to_string()),
            Some("2001:db8::7".into())
        );
        for bad in [
            "",
            "0.0.0.0",
            "::",
            "203.0.113",
            "203.0.113.7/32",
            "203.000.113.7",
            " 203.0.113.7",
            "fe80::1%eth0",
            "localhost",
        ] {
            assert_eq!(parse_buyer_ip(bad), None, "{bad:?}");
        }
    }
}
