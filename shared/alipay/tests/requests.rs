//! Request building: common parameters, biz_content, China-time timestamps and the transports.

mod common;

use std::collections::BTreeMap;

use alipay::Amount;
use alipay::PublicKey;
use alipay::china_time::ChinaDateTime;
use alipay::ids::{AppId, OutRequestNo, OutTradeNo, Subject};
use alipay::request::{
    AlipayRequest, AppParams, PaymentOrder, SignedRequest, TradeRef, UnsignedRequest,
};
use common::{alipay_content, fixture_text, test_app_signer};

/// 2026-11-26 16:30:05 UTC, 2026-11-27 00:30:05 in Beijing.
const NOW: i64 = 1_795_710_605;

fn app() -> AppParams {
    AppParams {
        app_id: AppId::parse("2021000123456789").expect("app id"),
        notify_url: Some("https://notify.example.com/alipay".into()),
        cert_sns: None,
    }
}

fn order() -> PaymentOrder {
    PaymentOrder {
        out_trade_no: OutTradeNo::parse("order_1").expect("id"),
        total_amount: Amount::parse("299.00").expect("amount"),
        subject: Subject::parse("会员 Pro + 年费 100%").expect("subject"),
        time_expire: Some(ChinaDateTime::parse("2026-11-27 02:00:00").expect("time")),
        identity_check: None,
    }
}

async fn signed(request: &AlipayRequest) -> SignedRequest {
    UnsignedRequest::new(request, &app(), NOW)
        .sign(&test_app_signer())
        .await
        .expect("signed")
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    // The local signer is ready at once; no runtime is needed to poll it.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// What Alipay does with a request: decode the form once, verify over everything but `sign`.
fn decode_and_verify(form: &str) -> BTreeMap<String, String> {
    let params: BTreeMap<String, String> = form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    let content = alipay_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), false);
    let app_public = PublicKey::parse(&fixture_text("keys/app_public_key.pem")).expect("key");
    app_public
        .verify(content.as_bytes(), &params["sign"])
        .expect("Alipay would accept the signature");
    params
}

#[test]
fn page_pay_url_carries_every_signed_parameter() {
    let request = AlipayRequest::PagePay {
        order: order(),
        return_url: Some("https://shop.example.com/done?a=1&b=2".into()),
    };
    let signed = block_on(signed(&request));
    let url = signed.gateway_url("https://openapi.alipay.com/gateway.do");
    let (gateway, query) = url.split_once('?').expect("query");
    assert_eq!(gateway, "https://openapi.alipay.com/gateway.do");
    let params = decode_and_verify(query);
    assert_eq!(params["method"], "alipay.trade.page.pay");
    assert_eq!(params["app_id"], "2021000123456789");
    assert_eq!(params["format"], "JSON");
    assert_eq!(params["charset"], "utf-8");
    assert_eq!(params["sign_type"], "RSA2");
    assert_eq!(params["version"], "1.0");
    assert_eq!(
        params["timestamp"], "2026-11-27 00:30:05",
        "China time, not UTC"
    );
    assert_eq!(params["notify_url"], "https://notify.example.com/alipay");
    assert_eq!(
        params["return_url"],
        "https://shop.example.com/done?a=1&b=2"
    );
    assert_eq!(
        params["biz_content"],
        r#"{"out_trade_no":"order_1","product_code":"FAST_INSTANT_TRADE_PAY","subject":"会员 Pro + 年费 100%","time_expire":"2026-11-27 02:00:00","total_amount":"299.00"}"#
    );
    assert_eq!(params.len(), 11);
}

#[test]
fn the_signing_string_is_over_exactly_what_is_sent() {
    let request = AlipayRequest::WapPay {
        order: order(),
        return_url: None,
        quit_url: None,
    };
    let unsigned = UnsignedRequest::new(&request, &app(), NOW);
    let content = unsigned.signing_string();
    assert!(
        content.contains("&sign_type=RSA2&"),
        "sign_type is signed in requests"
    );
    assert!(
        !content.contains("return_url"),
        "absent parameters are neither sent nor signed"
    );
    let signed = block_on(unsigned.sign(&test_app_signer()));
    let params = decode_and_verify(&signed.expect("signed").form_body());
    assert!(params["biz_content"].contains("\"product_code\":\"QUICK_WAP_WAY\""));
}

#[test]
fn app_pay_order_string_and_precreate_form() {
    let app_pay = block_on(signed(&AlipayRequest::AppPay { order: order() }));
    let params = decode_and_verify(&app_pay.order_string());
    assert!(params["biz_content"].contains("QUICK_MSECURITY_PAY"));
    let precreate = block_on(signed(&AlipayRequest::Precreate { order: order() }));
    let params = decode_and_verify(&precreate.form_body());
    assert_eq!(params["method"], "alipay.trade.precreate");
    assert!(!params["biz_content"].contains("product_code"));
}

#[test]
fn server_calls_have_their_fields_and_no_notify_url() {
    let trade = TradeRef::OutTradeNo(OutTradeNo::parse("order_1").expect("id"));
    let out_request_no = OutRequestNo::parse("refund_1").expect("id");
    let cases = [
        (
            AlipayRequest::Query {
                trade: trade.clone(),
            },
            "alipay.trade.query",
            r#"{"out_trade_no":"order_1"}"#,
        ),
        (
            AlipayRequest::Close {
                trade: trade.clone(),
            },
            "alipay.trade.close",
            r#"{"out_trade_no":"order_1"}"#,
        ),
        (
            AlipayRequest::Refund {
                trade: trade.clone(),
                refund_amount: Amount::parse("0.5").expect("amount"),
                out_request_no: out_request_no.clone(),
                refund_reason: Some("退货 & \"return\"".into()),
            },
            "alipay.trade.refund",
            r#"{"out_request_no":"refund_1","out_trade_no":"order_1","refund_amount":"0.50","refund_reason":"退货 & \"return\""}"#,
        ),
        (
            AlipayRequest::RefundQuery {
                trade,
                out_request_no,
            },
            "alipay.trade.fastpay.refund.query",
            // gmt_refund_pay comes back only when asked for (docs/alipay/operations.md §6).
            r#"{"out_request_no":"refund_1","out_trade_no":"order_1","query_options":["gmt_refund_pay"]}"#,
        ),
    ];
    for (request, method, biz) in cases {
        let params = decode_and_verify(&block_on(signed(&request)).form_body());
        assert_eq!(params["method"], method);
        assert_eq!(params["biz_content"], biz, "{method}");
        assert!(!params.contains_key("notify_url"), "{method}");
    }
}

#[test]
fn empty_optional_values_are_never_sent() {
    let app = AppParams {
        notify_url: Some(String::new()),
        ..app()
    };
    let request = AlipayRequest::PagePay {
        order: order(),
        return_url: Some(String::new()),
    };
    let unsigned = UnsignedRequest::new(&request, &app, NOW);
    assert!(!unsigned.params().contains_key("notify_url"));
    assert!(!unsigned.params().contains_key("return_url"));
}

#[test]
fn certificate_mode_sends_and_signs_both_sns() {
    let cert_app = AppParams {
        cert_sns: Some(alipay::trust::CertSns {
            app_cert_sn: "4498aaa8ab0c8986c15c41b36186db7d".into(),
            alipay_root_cert_sn:
                "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6".into(),
        }),
        ..app()
    };
    let request = AlipayRequest::Query {
        trade: TradeRef::OutTradeNo(OutTradeNo::parse("o1").expect("no")),
    };
    let unsigned = UnsignedRequest::new(&request, &cert_app, NOW);
    let signing = unsigned.signing_string();
    // Sorted by name with the others: alipay_root_cert_sn, app_cert_sn, app_id, ...
    assert!(
        signing.starts_with(
            "alipay_root_cert_sn=687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6&app_cert_sn=4498aaa8ab0c8986c15c41b36186db7d&app_id="
        ),
        "{signing}"
    );
    let form = unsigned.with_sign("x".into()).form_body();
    assert!(form.contains("app_cert_sn=4498aaa8ab0c8986c15c41b36186db7d"));
    assert!(
        !UnsignedRequest::new(&request, &app(), NOW)
            .signing_string()
            .contains("cert_sn")
    );
}
