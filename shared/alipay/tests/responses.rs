//! Synchronous responses: extraction of the exact bytes, verification, classification.

mod common;

use alipay::VerifyError;
use alipay::response::{
    Disposition, PrecreateResult, RefundResult, ResponseError, extract, verify_response,
};
use common::{signed_response, test_alipay_public_key, test_alipay_signer, test_app_signer};

const PRECREATE: &str = "alipay.trade.precreate";
const REFUND: &str = "alipay.trade.refund";

/// Escaped slashes, braces and quotes inside strings, non-ASCII text: everything a
/// re-serialization or a naive brace counter gets wrong.
const PRECREATE_CONTENT: &str = r#"{"code":"10000","msg":"Success","out_trade_no":"order_1","qr_code":"https:\/\/qr.alipay.com\/bax0}{\"x","note":"中文 }}} {{{ \\"}"#;

#[test]
fn extracts_exact_bytes_and_verifies() {
    let body = signed_response(PRECREATE, PRECREATE_CONTENT, &test_alipay_signer());
    let raw = extract(&body, PRECREATE).expect("extracts");
    assert_eq!(raw.content, PRECREATE_CONTENT);
    let verified = verify_response(&body, PRECREATE, &test_alipay_public_key()).expect("verifies");
    assert_eq!(verified.disposition(), Disposition::Success);
    let result: PrecreateResult = verified.parse(PRECREATE).expect("typed");
    assert_eq!(result.qr_code, "https://qr.alipay.com/bax0}{\"x");
}

#[test]
fn sign_before_the_response_and_whitespace_are_fine() {
    let signer = test_alipay_signer();
    let body = signed_response(PRECREATE, PRECREATE_CONTENT, &signer);
    let sign = extract(&body, PRECREATE)
        .expect("extracts")
        .sign
        .expect("signed");
    let reordered = format!(
        "{{ \"sign\" : \"{sign}\" ,\n  \"alipay_cert_sn\":\"x\", \"alipay_trade_precreate_response\" :  {PRECREATE_CONTENT} }}"
    );
    assert!(verify_response(&reordered, PRECREATE, &test_alipay_public_key()).is_ok());
}

#[test]
fn a_re_serialized_response_fails() {
    let body = signed_response(PRECREATE, PRECREATE_CONTENT, &test_alipay_signer());
    let value: serde_json::Value = serde_json::from_str(&body).expect("json");
    let reserialized = serde_json::to_string(&value).expect("json");
    assert_ne!(reserialized, body);
    assert!(matches!(
        verify_response(&reserialized, PRECREATE, &test_alipay_public_key()),
        Err(ResponseError::BadSignature(_))
    ));
}

#[test]
fn signature_over_unescaped_slashes_is_accepted_as_the_java_sdk_does() {
    let unescaped = PRECREATE_CONTENT.replace("\\/", "/");
    let signer = test_alipay_signer();
    let sign = common::base64(&signer.sign_now(unescaped.as_bytes()).expect("sign"));
    let body =
        format!("{{\"alipay_trade_precreate_response\":{PRECREATE_CONTENT},\"sign\":\"{sign}\"}}");
    let verified =
        verify_response(&body, PRECREATE, &test_alipay_public_key()).expect("fallback verifies");
    assert_eq!(verified.content, unescaped);
}

#[test]
fn duplicated_response_key_is_refused() {
    let body = signed_response(PRECREATE, PRECREATE_CONTENT, &test_alipay_signer());
    let forged = body.replacen(
        "{\"alipay",
        "{\"alipay_trade_precreate_response\":{\"code\":\"10000\",\"qr_code\":\"evil\"},\"alipay",
        1,
    );
    assert_eq!(
        extract(&forged, PRECREATE),
        Err(ResponseError::DuplicateResponse(
            "alipay_trade_precreate_response".into()
        ))
    );
}

#[test]
fn wrong_key_and_changed_content_fail() {
    let forged = signed_response(PRECREATE, PRECREATE_CONTENT, &test_app_signer());
    assert_eq!(
        verify_response(&forged, PRECREATE, &test_alipay_public_key()),
        Err(ResponseError::BadSignature(VerifyError::Mismatch))
    );
    let body = signed_response(PRECREATE, PRECREATE_CONTENT, &test_alipay_signer());
    let changed = body.replace("order_1", "order_2");
    assert!(matches!(
        verify_response(&changed, PRECREATE, &test_alipay_public_key()),
        Err(ResponseError::BadSignature(_))
    ));
}

#[test]
fn success_without_a_signature_is_refused() {
    let body = format!("{{\"alipay_trade_precreate_response\":{PRECREATE_CONTENT}}}");
    assert_eq!(
        verify_response(&body, PRECREATE, &test_alipay_public_key()),
        Err(ResponseError::MissingSignature)
    );
}

#[test]
fn unsigned_errors_are_read_but_prove_nothing() {
    let body = r#"{"alipay_trade_refund_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}}"#;
    let verified = verify_response(body, REFUND, &test_alipay_public_key()).expect("readable");
    assert!(!verified.signed);
    assert_eq!(verified.disposition(), Disposition::Rejected);

    let body = r#"{"alipay_trade_refund_response":{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST"}}"#;
    let verified = verify_response(body, REFUND, &test_alipay_public_key()).expect("readable");
    assert_eq!(
        verified.disposition(),
        Disposition::QueryFirst,
        "an unsigned failure is not proof"
    );

    let body = r#"{"error_response":{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"}}"#;
    let verified = verify_response(body, REFUND, &test_alipay_public_key()).expect("readable");
    assert_eq!(verified.disposition(), Disposition::RetrySame);
}

#[test]
fn codes_are_classified() {
    let signer = test_alipay_signer();
    let cases = [
        (
            r#"{"code":"10000","msg":"Success","trade_no":"1","out_trade_no":"o","fund_change":"Y","refund_fee":"1.00"}"#,
            Disposition::Success,
        ),
        (
            r#"{"code":"20000","msg":"Service Currently Unavailable"}"#,
            Disposition::RetrySame,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}"#,
            Disposition::RetrySame,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.DISCORDANT_REPEAT_REQUEST"}"#,
            Disposition::QueryFirst,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SELLER_BALANCE_NOT_ENOUGH"}"#,
            Disposition::BusinessFailure,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REASON_TRADE_REFUND_FEE_ERR"}"#,
            Disposition::BusinessFailure,
        ),
        (
            r#"{"code":"40006","msg":"Insufficient Permissions"}"#,
            Disposition::Rejected,
        ),
        (
            r#"{"code":"20001","msg":"Insufficient Token Permissions"}"#,
            Disposition::Rejected,
        ),
        (r#"{"code":"99999","msg":"?"}"#, Disposition::QueryFirst),
    ];
    for (content, want) in cases {
        let body = signed_response(REFUND, content, &signer);
        let verified = verify_response(&body, REFUND, &test_alipay_public_key()).expect("verifies");
        assert_eq!(verified.disposition(), want, "{content}");
    }
    let body = signed_response(REFUND, cases[0].0, &signer);
    let refund: RefundResult = verify_response(&body, REFUND, &test_alipay_public_key())
        .and_then(|v| v.parse(REFUND))
        .expect("typed");
    assert_eq!(
        (refund.fund_change.as_str(), refund.refund_fee.fen()),
        ("Y", 100)
    );
}

#[test]
fn garbage_is_refused_without_panicking() {
    for body in [
        "",
        "[]",
        "{",
        "{\"a\":",
        "{\"alipay_trade_refund_response\":{\"code\":\"1\"",
        "{} trailing",
        "{\"a\" 1}",
        "null",
    ] {
        assert!(
            verify_response(body, REFUND, &test_alipay_public_key()).is_err(),
            "{body:?}"
        );
    }
    assert_eq!(
        extract(r#"{"other_response":{}}"#, REFUND),
        Err(ResponseError::MissingResponse(
            "alipay_trade_refund_response".into()
        ))
    );
}
