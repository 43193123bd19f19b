//! Notification verification: what must pass and every way it must fail.

mod common;

use alipay::VerifyError;
use alipay::notify::{
    MAX_NOTIFY_BODY_BYTES, NotifyError, TradeStatus, decode_form, verify_fields,
    verify_notification,
};
use common::{signed_notification, test_alipay_public_key, test_alipay_signer, test_app_signer};

const FIELDS: &[(&str, &str)] = &[
    ("notify_id", "2026112600222155624068450559358070"),
    ("notify_type", "trade_status_sync"),
    ("notify_time", "2026-11-26 18:30:05"),
    ("charset", "utf-8"),
    ("version", "1.0"),
    ("sign_type", "RSA2"),
    ("app_id", "2021000123456789"),
    ("seller_id", "2088123456789012"),
    ("buyer_id", "2088102534368455"),
    ("out_trade_no", "order_1"),
    ("trade_no", "2026112622001468450512505578"),
    ("trade_status", "TRADE_SUCCESS"),
    ("total_amount", "299.00"),
    ("receipt_amount", "299.00"),
    ("gmt_payment", "2026-11-26 18:30:04"),
    // `+`, `%`, `&`, `=` and JSON: what a double decode or a re-encode would break.
    ("subject", "A+B 100% off & more=yes"),
    ("passback_params", "k%3Dv+x"),
    (
        "fund_bill_list",
        r#"[{"amount":"299.00","fundChannel":"ALIPAYACCOUNT"}]"#,
    ),
];

fn body() -> String {
    signed_notification(FIELDS, &test_alipay_signer())
}

fn replace_field(body: &str, key: &str, value: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        form.append_pair(&k, if k == key { value } else { &v });
    }
    form.finish()
}

fn verify(body: &str) -> Result<alipay::notify::TradeNotification, NotifyError> {
    verify_notification(body.as_bytes(), &test_alipay_public_key())
}

#[test]
fn genuine_notification_verifies_and_is_typed() {
    let n = verify(&body()).expect("verifies");
    assert_eq!(n.trade_status, TradeStatus::TradeSuccess);
    assert!(n.trade_status.is_paid());
    assert_eq!(n.total_amount.fen(), 29_900);
    assert_eq!(n.out_trade_no, "order_1");
    assert_eq!(
        n.buyer.as_ref().map(|b| b.masked()).as_deref(),
        Some("2088********8455")
    );
    let json = serde_json::to_string(&n).expect("json");
    assert!(
        !json.contains("2088102534368455"),
        "the full buyer id never leaves verification"
    );
}

#[test]
fn changed_value_fails() {
    let tampered = replace_field(&body(), "total_amount", "0.01");
    assert_eq!(
        verify(&tampered),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
}

#[test]
fn added_parameter_fails() {
    let tampered = format!("{}&refund_fee=299.00", body());
    assert_eq!(
        verify(&tampered),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
}

#[test]
fn removed_parameter_fails() {
    let body = body();
    let tampered: Vec<&str> = body
        .split('&')
        .filter(|p| !p.starts_with("seller_id="))
        .collect();
    assert_eq!(
        verify(&tampered.join("&")),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
}

#[test]
fn an_added_empty_parameter_is_ignored_as_alipay_ignores_it() {
    // Empty values are not signed, so adding one changes nothing.
    assert!(verify(&format!("{}&extra=", body())).is_ok());
}

#[test]
fn unknown_extra_fields_are_signed_and_kept_in_the_check() {
    let mut fields = FIELDS.to_vec();
    fields.push(("a_field_alipay_added_in_2027", "x"));
    let body = signed_notification(&fields, &test_alipay_signer());
    assert!(verify(&body).is_ok());
    let tampered = replace_field(&body, "a_field_alipay_added_in_2027", "y");
    assert!(matches!(
        verify(&tampered),
        Err(NotifyError::BadSignature(_))
    ));
}

#[test]
fn wrong_key_fails() {
    // Signed by the app key, verified as if from Alipay: the wrong-key configuration mistake.
    let forged = signed_notification(FIELDS, &test_app_signer());
    assert_eq!(
        verify(&forged),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
}

#[test]
fn sign_type_rsa_is_refused_even_if_signed() {
    let downgraded = replace_field(&body(), "sign_type", "RSA");
    assert_eq!(
        verify(&downgraded),
        Err(NotifyError::UnsupportedSignType("RSA".into()))
    );
    let body = body();
    let missing: Vec<&str> = body
        .split('&')
        .filter(|p| !p.starts_with("sign_type="))
        .collect();
    assert!(matches!(
        verify(&missing.join("&")),
        Err(NotifyError::UnsupportedSignType(_))
    ));
}

#[test]
fn sign_type_kept_in_the_string_fails() {
    let signer = test_alipay_signer();
    let content = common::alipay_content(FIELDS.iter().copied(), false);
    let sign = common::base64(&signer.sign_now(content.as_bytes()).expect("sign"));
    let wrong = replace_field(&body(), "sign", &sign);
    assert!(matches!(
        verify(&wrong),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    ));
}

#[test]
fn a_doubly_decoded_body_fails() {
    let body = body();
    assert!(verify(&body).is_ok(), "decoded once, it verifies");
    let once = decode_form(body.as_bytes()).expect("decodes");
    // What a framework that decodes, then decodes again, would hand over.
    let twice = once
        .iter()
        .map(|(k, v)| {
            let again: String = form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            (k.clone(), again)
        })
        .collect();
    assert_ne!(once, twice, "the fixture has + and % in values");
    assert!(matches!(
        verify_fields(&twice, &test_alipay_public_key()),
        Err(NotifyError::BadSignature(_))
    ));
}

#[test]
fn corrupt_and_truncated_signatures_fail() {
    let body = body();
    let fields = decode_form(body.as_bytes()).expect("decodes");
    let sign = fields["sign"].clone();
    let mut flipped = sign.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    assert_eq!(
        verify(&replace_field(&body, "sign", &flipped)),
        Err(NotifyError::BadSignature(VerifyError::Mismatch))
    );
    assert!(matches!(
        verify(&replace_field(&body, "sign", &sign[..sign.len() - 8])),
        Err(NotifyError::BadSignature(
            VerifyError::WrongLength { .. } | VerifyError::NotBase64
        ))
    ));
    assert_eq!(
        verify(&replace_field(&body, "sign", "not base64!")),
        Err(NotifyError::BadSignature(VerifyError::NotBase64))
    );
    assert_eq!(
        verify(&replace_field(&body, "sign", "")),
        Err(NotifyError::MissingSignature)
    );
}

#[test]
fn malformed_bodies_are_refused() {
    assert_eq!(verify(""), Err(NotifyError::Empty));
    assert_eq!(
        verify(&format!("{}&trade_status=TRADE_SUCCESS", body())),
        Err(NotifyError::DuplicateField("trade_status".into()))
    );
    assert_eq!(verify("a=%FF%FE"), Err(NotifyError::NotUtf8));
    assert!(matches!(verify("=x"), Err(NotifyError::MalformedForm(_))));
    let huge = "a".repeat(MAX_NOTIFY_BODY_BYTES + 1);
    assert_eq!(verify(&huge), Err(NotifyError::TooLarge));
    let gbk = replace_field(&body(), "charset", "GBK");
    assert_eq!(
        verify(&gbk),
        Err(NotifyError::UnsupportedCharset("GBK".into()))
    );
}

#[test]
fn signed_but_unusable_fields_are_reported() {
    let mut fields = FIELDS.to_vec();
    fields.retain(|(k, _)| *k != "total_amount");
    let body = signed_notification(&fields, &test_alipay_signer());
    assert_eq!(
        verify(&body),
        Err(NotifyError::MissingField("total_amount"))
    );

    let mut fields = FIELDS.to_vec();
    for field in &mut fields {
        if field.0 == "trade_status" {
            field.1 = "TRADE_PENDING_FOREVER";
        }
    }
    let body = signed_notification(&fields, &test_alipay_signer());
    assert!(matches!(
        verify(&body),
        Err(NotifyError::InvalidField {
            field: "trade_status",
            ..
        })
    ));
}

/// Certificate mode: a notification may carry `alipay_cert_sn` (unconfirmed), signed like any
/// field or not signed at all. Both verify; a changed SN on the signed one does not, and nothing
/// else may be left out.
#[test]
fn an_alipay_cert_sn_verifies_signed_or_unsigned() {
    use base64::Engine as _;
    let sn = ("alipay_cert_sn", "04afd423ea5bd6f5c5482854ed73278c");
    // The signing string written out here (sorted k=v, sign and sign_type left out), not the
    // gateway's canonicalization.
    let sign_over = |fields: &[(&str, &str)]| {
        let mut pairs: Vec<(&str, &str)> = fields
            .iter()
            .copied()
            .filter(|(k, v)| *k != "sign" && *k != "sign_type" && !v.is_empty())
            .collect();
        pairs.sort();
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        base64::engine::general_purpose::STANDARD.encode(
            test_alipay_signer()
                .sign_now(text.as_bytes())
                .expect("sign"),
        )
    };
    let form = |fields: &[(&str, &str)], sign: &str| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        form.append_pair("sign", sign);
        form.finish()
    };
    let with_sn: Vec<(&str, &str)> = FIELDS.iter().copied().chain([sn]).collect();
    // Signed with the SN.
    let signed = form(&with_sn, &sign_over(&with_sn));
    assert!(verify(&signed).is_ok());
    assert!(matches!(
        verify(&replace_field(
            &signed,
            "alipay_cert_sn",
            "ffffffffffffffffffffffffffffffff"
        )),
        Err(NotifyError::BadSignature(_))
    ));
    // Sent, but signed without it.
    let unsigned_sn = form(&with_sn, &sign_over(FIELDS));
    assert!(verify(&unsigned_sn).is_ok());
    // Leaving out another field is not allowed: only the SN may be unsigned.
    let with_extra: Vec<(&str, &str)> = with_sn.iter().copied().chain([("extra", "x")]).collect();
    assert!(matches!(
        verify(&form(&with_extra, &sign_over(&with_sn))),
        Err(NotifyError::BadSignature(_))
    ));
}
