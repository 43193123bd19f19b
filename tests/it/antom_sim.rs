//! The Antom simulator speaks the protocol our `antom` crate speaks (which the differential
//! tests hold to Ant's own SDK): a USD cashier payment paid, notified twice with a settlement
//! quote in CNY, inquired, refunded in two parts (one executed later and notified), refused
//! beyond what was paid; unsigned and badly signed answers refused; idempotency ids honoured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alipay_sim::antom::{AntomConfig, AntomFault, AntomSimulator, PaymentState};
use alipay_sim::{SigningKey, VerifyKey};
use antom::message::{
    Env, InquiryPaymentResponse, InquiryRefundResponse, Notification, Order, PayResponse,
    PaymentMethod, PaymentRef, PaymentStatus, RefundRef, RefundRequest, RefundResponse,
    RefundStatus, SettlementStrategy,
};
use antom::signature::{AntomVerifyError, SignedHeaders, verify_notification, verify_response};
use antom::{Client, Outcome, WireAmount, paths};
use axum::body::Bytes;
use axum::http::HeaderMap;
use gateway_tests::support::fixtures;
use serde_json::Value;

const CLIENT_ID: &str = "SANDBOX_5YTEST";

fn read(relative: &str) -> String {
    std::fs::read_to_string(fixtures().join(relative)).expect("fixture")
}

fn antom_key() -> alipay::PublicKey {
    alipay::PublicKey::parse(&read("keys/antom_public_key.pem")).expect("antom key")
}

fn merchant() -> alipay::LocalKeySigner {
    alipay::LocalKeySigner::new(
        &alipay::AppPrivateKey::parse(&read("keys/app_private_key.pem")).expect("key"),
    )
}

async fn simulator() -> AntomSimulator {
    let config = AntomConfig::with_keys(
        CLIENT_ID,
        VerifyKey::from_text(&read("keys/app_public_key.pem")).expect("app key"),
        SigningKey::from_pem(&read("keys/antom_private_key.pem")).expect("antom key"),
    );
    AntomSimulator::start(config, 0).await.expect("simulator")
}

/// A notify endpoint: verifies each notification (fail closed) and acknowledges it.
struct Receiver {
    url: String,
    verified: Arc<Mutex<Vec<Notification>>>,
    refused: Arc<Mutex<Vec<AntomVerifyError>>>,
}

async fn receiver() -> Receiver {
    let verified = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let (v, r) = (Arc::clone(&verified), Arc::clone(&refused));
    let app = axum::Router::new().route(
        "/notify/antom",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (v, r) = (Arc::clone(&v), Arc::clone(&r));
            async move {
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .filter_map(|(n, value)| Some((n.as_str(), value.to_str().ok()?)))
                    .collect();
                let signed = SignedHeaders::from_pairs(pairs, "request-time");
                match verify_notification(&antom_key(), CLIENT_ID, "/notify/antom", signed, &body) {
                    Ok(_) => {
                        let parsed = antom::message::parse_notification(&body).expect("parse");
                        v.lock().expect("lock").push(parsed);
                        antom::message::ACKNOWLEDGEMENT.to_owned()
                    }
                    Err(error) => {
                        r.lock().expect("lock").push(error);
                        "refused".to_owned()
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{address}/notify/antom"),
        verified,
        refused,
    }
}

/// Signs and sends `message` to `path`; the answer verified (fail closed) and parsed.
async fn call<T: serde::de::DeserializeOwned>(
    sim: &AntomSimulator,
    path: &str,
    message: &impl serde::Serialize,
) -> Result<T, AntomVerifyError> {
    let client = Client {
        client_id: CLIENT_ID.into(),
        key_version: "1".into(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    let signed = client
        .sign(&merchant(), path, &now, message)
        .await
        .expect("sign");
    let (headers, body) = post(sim, &signed).await;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(n, value)| Some((n.as_str(), value.to_str().ok()?)))
        .collect();
    let verified = SignedHeaders::from_pairs(pairs, "response-time");
    verify_response(
        &antom_key(),
        CLIENT_ID,
        "POST",
        &signed.path,
        verified,
        &body,
    )?;
    Ok(serde_json::from_slice(&body).expect("answer JSON"))
}

async fn post(sim: &AntomSimulator, signed: &antom::SignedRequest) -> (HeaderMap, Bytes) {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut request = hyper::Request::post(format!("{}{}", sim.base_url(), signed.path));
    for (name, value) in &signed.headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from(signed.body.clone())))
        .expect("request");
    let response = client.request(request).await.expect("simulator answers");
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (headers, body)
}

fn pay_request(id: &str, value: &str, notify_url: &str) -> antom::message::PayRequest {
    let amount = WireAmount {
        currency: "USD".into(),
        value: value.into(),
    };
    antom::message::PayRequest {
        product_code: "CASHIER_PAYMENT".into(),
        payment_request_id: id.into(),
        order: Order {
            reference_order_id: id.into(),
            order_description: "Pro plan".into(),
            order_amount: amount.clone(),
        },
        payment_amount: amount,
        payment_method: PaymentMethod {
            payment_method_type: "ALIPAY_HK".into(),
        },
        payment_expiry_time: None,
        payment_redirect_url: "https://shop.example.com/done".into(),
        payment_notify_url: notify_url.into(),
        settlement_strategy: Some(SettlementStrategy {
            settlement_currency: "CNY".into(),
        }),
        env: Env {
            terminal_type: "WEB".into(),
            os_type: None,
        },
    }
}

async fn eventually<F: Fn() -> bool>(what: &str, check: F) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usd_payment_paid_notified_inquired_and_refunded_through_the_simulator() {
    let sim = simulator().await;
    let notify = receiver().await;

    let answer: PayResponse = call(
        &sim,
        paths::PAY,
        &pay_request("o-usd-1", "1099", &notify.url),
    )
    .await
    .expect("a signed answer");
    // A cashier payment is decided later: U, PAYMENT_IN_PROCESS, and the cashier's URL.
    assert_eq!(answer.result.outcome(), Outcome::Unknown);
    assert!(answer.result.in_process());
    let cashier = answer.normal_url.clone().expect("normalUrl");
    assert!(cashier.contains("/antom/cashier/"), "{cashier}");
    // The same id and request: the same payment; another amount under it: refused.
    let again: PayResponse = call(
        &sim,
        paths::PAY,
        &pay_request("o-usd-1", "1099", &notify.url),
    )
    .await
    .expect("signed");
    assert_eq!(again.payment_id, answer.payment_id);
    let other: PayResponse = call(
        &sim,
        paths::PAY,
        &pay_request("o-usd-1", "2000", &notify.url),
    )
    .await
    .expect("signed");
    assert_eq!(
        (other.result.outcome(), other.result.result_code.as_str()),
        (Outcome::Failure, "REPEAT_REQ_INCONSISTENT")
    );

    sim.pay("o-usd-1").expect("the buyer pays");
    eventually("the payment notification", || {
        !notify.verified.lock().expect("lock").is_empty()
    })
    .await;
    let first = notify.verified.lock().expect("lock")[0].clone();
    let Notification::Payment(paid) = first else {
        panic!("not a payment notification: {first:?}");
    };
    assert_eq!(paid.result.outcome(), Outcome::Success);
    assert_eq!(paid.payment_request_id, "o-usd-1");
    assert_eq!(
        paid.gross_settlement_amount,
        Some(WireAmount {
            currency: "CNY".into(),
            value: "7829".into()
        })
    );
    let quote = paid.settlement_quote.expect("settlementQuote");
    assert_eq!(quote.quote_currency_pair.as_deref(), Some("USD/CNY"));
    assert_eq!(quote.quote_price.map(|p| p.0), Some("7.123456".to_owned()));

    // Soon after paying, an inquiry may still say PROCESSING; then SUCCESS.
    let inquiry = PaymentRef {
        payment_request_id: "o-usd-1".into(),
    };
    let mut status = PaymentStatus::Unknown;
    for _ in 0..30 {
        let answer: InquiryPaymentResponse = call(&sim, paths::INQUIRY_PAYMENT, &inquiry)
            .await
            .expect("signed");
        status = answer.status();
        if status == PaymentStatus::Success {
            assert!(answer.settlement_quote.is_some());
            break;
        }
        assert_eq!(status, PaymentStatus::Processing);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, PaymentStatus::Success);
    // A paid payment does not cancel.
    let cancel: antom::message::CancelResponse =
        call(&sim, paths::CANCEL, &inquiry).await.expect("signed");
    assert_eq!(cancel.result.result_code, "ORDER_STATUS_INVALID");

    let payment_id = answer.payment_id.expect("paymentId");
    let refund = |id: &str, value: &str| RefundRequest {
        refund_request_id: id.into(),
        payment_id: payment_id.clone(),
        refund_amount: WireAmount {
            currency: "USD".into(),
            value: value.into(),
        },
        refund_reason: None,
        refund_notify_url: Some(notify.url.clone()),
    };
    let first: RefundResponse = call(&sim, paths::REFUND, &refund("r-1", "500"))
        .await
        .expect("signed");
    let second: RefundResponse = call(&sim, paths::REFUND, &refund("r-2", "599"))
        .await
        .expect("signed");
    // One of the two at once, the other later (every second refund, by default).
    let outcomes = [first.result.outcome(), second.result.outcome()];
    assert!(outcomes.contains(&Outcome::Success), "{outcomes:?}");
    assert!(outcomes.contains(&Outcome::Unknown), "{outcomes:?}");
    let beyond: RefundResponse = call(&sim, paths::REFUND, &refund("r-3", "1"))
        .await
        .expect("signed");
    assert_eq!(beyond.result.result_code, "REFUND_AMOUNT_EXCEED");
    let later = if first.result.outcome() == Outcome::Unknown {
        "r-1"
    } else {
        "r-2"
    };
    eventually("the refund notification", || {
        notify
            .verified
            .lock()
            .expect("lock")
            .iter()
            .any(|n| matches!(n, Notification::Refund(r) if r.refund_request_id == later))
    })
    .await;
    let asked: InquiryRefundResponse = call(
        &sim,
        paths::INQUIRY_REFUND,
        &RefundRef {
            refund_request_id: later.into(),
        },
    )
    .await
    .expect("signed");
    assert_eq!(asked.status(), RefundStatus::Success);
    // The simulator's ledger: paid once, refunded exactly what was paid.
    let ledger = sim.payment("o-usd-1").expect("payment");
    assert_eq!(
        (ledger.status, ledger.value, ledger.refunded),
        (PaymentState::Success, 1099, 1099)
    );
    assert!(notify.refused.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_good_signature_are_refused() {
    let sim = simulator().await;
    let notify = receiver().await;
    let _: PayResponse = call(
        &sim,
        paths::PAY,
        &pay_request("o-usd-2", "100", &notify.url),
    )
    .await
    .expect("signed");
    let inquiry = PaymentRef {
        payment_request_id: "o-usd-2".into(),
    };
    sim.inject("inquiryPayment", AntomFault::Unsigned);
    let unsigned = call::<Value>(&sim, paths::INQUIRY_PAYMENT, &inquiry).await;
    assert_eq!(unsigned.err(), Some(AntomVerifyError::MissingSignature));
    sim.inject("inquiryPayment", AntomFault::BadSignature);
    let forged = call::<Value>(&sim, paths::INQUIRY_PAYMENT, &inquiry).await;
    assert!(
        matches!(forged, Err(AntomVerifyError::BadSignature(_))),
        "{forged:?}"
    );
    // A notification with a broken signature (on every attempt) is refused.
    sim.inject("notify", AntomFault::BadNotifySignature);
    sim.pay("o-usd-2").expect("pays");
    eventually("the refused notification", || {
        !notify.refused.lock().expect("lock").is_empty()
    })
    .await;
    assert!(notify.verified.lock().expect("lock").is_empty());
}
