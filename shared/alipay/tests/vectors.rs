//! Alipay's published vectors (tests/fixtures/alipay-vectors.json), byte for byte.

mod common;

use std::collections::BTreeMap;

use alipay::canonical::{Omit, signing_string};
use alipay::notify::{NotifyError, TradeStatus, verify_fields, verify_notification};
use alipay::{AppPrivateKey, LocalKeySigner, PublicKey, VerifyError};
use common::{str_at, vectors};
use serde_json::Value;

fn params_of(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .expect("params object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string param").to_owned()))
        .collect()
}

fn pairs(params: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

#[test]
fn java_sdk_request_signatures_match_byte_for_byte() {
    let vectors = vectors();
    let key = AppPrivateKey::parse(str_at(
        &vectors,
        "/request_signing/app_private_key_pkcs8_base64",
    ))
    .expect("key");
    let signer = LocalKeySigner::new(&key);
    let public = PublicKey::parse(str_at(
        &vectors,
        "/request_signing/app_public_key_spki_base64",
    ))
    .expect("public");
    assert_eq!(
        signer.public_key(),
        &public,
        "the vector key pair belongs together"
    );

    let cases = vectors
        .pointer("/request_signing/cases")
        .and_then(Value::as_array)
        .expect("cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = str_at(case, "/name");
        let params = params_of(&case["params"]);
        let content = signing_string(pairs(&params), Omit::Sign);
        assert_eq!(
            content,
            str_at(case, "/signing_string"),
            "{name}: signing string"
        );
        let sign = common::base64(&signer.sign_now(content.as_bytes()).expect("sign"));
        assert_eq!(sign, str_at(case, "/expected_sign"), "{name}: signature");
        assert_eq!(
            public.verify(content.as_bytes(), &sign),
            Ok(()),
            "{name}: verifies"
        );
    }
}

#[test]
fn real_alipay_notification_verifies_from_its_form_body() {
    let vectors = vectors();
    let alipay_key = PublicKey::parse(str_at(
        &vectors,
        "/notify_verification/alipay_public_key_spki_base64",
    ))
    .expect("key");
    let body = str_at(&vectors, "/notify_verification/valid/form_body");
    let notification =
        verify_notification(body.as_bytes(), &alipay_key).expect("genuine notification verifies");
    assert_eq!(notification.trade_status, TradeStatus::TradeSuccess);
    assert_eq!(notification.total_amount.fen(), 10);
    assert_eq!(notification.out_trade_no, "20190815155618536-564-57");
    assert_eq!(notification.app_id, "2019073166072302");
    assert_eq!(notification.seller_id.as_deref(), Some("2088531891668739"));
    assert_eq!(notification.notify_id, "2019081500222155624068450559358070");
    assert_eq!(
        notification.buyer.as_ref().map(|b| b.masked()).as_deref(),
        Some("2088********8455")
    );

    let params = params_of(&vectors["notify_verification"]["valid"]["params"]);
    assert_eq!(
        signing_string(pairs(&params), Omit::SignAndSignType),
        str_at(&vectors, "/notify_verification/valid/signing_string")
    );
    assert_eq!(verify_fields(&params, &alipay_key), Ok(()));
}

#[test]
fn tampered_amount_fails() {
    let vectors = vectors();
    let alipay_key = PublicKey::parse(str_at(
        &vectors,
        "/notify_verification/alipay_public_key_spki_base64",
    ))
    .expect("key");
    let case = &vectors["notify_verification"]["must_fail"][0];
    assert_eq!(str_at(case, "/why"), "total_amount changed after signing");
    let params = params_of(&case["params"]);
    assert_eq!(
        verify_fields(&params, &alipay_key),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
}

#[test]
fn keeping_sign_type_in_a_trade_notification_string_fails() {
    let vectors = vectors();
    let alipay_key = PublicKey::parse(str_at(
        &vectors,
        "/notify_verification/alipay_public_key_spki_base64",
    ))
    .expect("key");
    let params = params_of(&vectors["notify_verification"]["valid"]["params"]);
    let wrong = signing_string(pairs(&params), Omit::Sign);
    assert!(wrong.contains("sign_type=RSA2"));
    assert_eq!(
        alipay_key.verify(wrong.as_bytes(), &params["sign"]),
        Err(VerifyError::Mismatch)
    );
}
