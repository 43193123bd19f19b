//! The KMS signer against KMS on the local stand-in: signatures that Alipay would verify.

use alipay::SignError;
use alipay::ids::{AppId, OutTradeNo};
use alipay::request::{AlipayRequest, AppParams, UnsignedRequest};
use alipay::signer::sign_base64;
use gateway::aws::KmsSigner;
use gateway_tests::support::TestEnv;

#[tokio::test]
async fn kms_signatures_verify_with_the_exported_public_key() {
    let env = TestEnv::new().await;
    let signer = env.kms_signer();
    let public = signer.public_key().await.expect("public key").clone();

    let request = AlipayRequest::Query {
        trade: alipay::request::TradeRef::OutTradeNo(OutTradeNo::parse("order_1").expect("id")),
    };
    let app = AppParams {
        app_id: AppId::parse("2021000123456789").expect("app id"),
        notify_url: None,
        cert_sns: None,
    };
    let unsigned = UnsignedRequest::new(&request, &app, 1_795_710_605);
    let content = unsigned.signing_string();
    let signed = unsigned.sign(&signer).await.expect("signed through KMS");
    assert_eq!(public.verify(content.as_bytes(), signed.sign()), Ok(()));

    // PKCS#1 v1.5 is deterministic: KMS and a second call agree byte for byte.
    let again = sign_base64(&signer, &content).await.expect("sign again");
    assert_eq!(again, signed.sign());
    assert!(public.verify(b"something else", signed.sign()).is_err());

    // Exported the way Alipay's open platform asks for it, it parses back to the same key.
    let registered = alipay::PublicKey::parse(&public.to_spki_base64()).expect("parses");
    assert_eq!(registered, public);
}

#[tokio::test]
async fn raw_messages_up_to_the_kms_limit_verify() {
    let env = TestEnv::new().await;
    let signer = env.kms_signer();
    let public = signer.public_key().await.expect("public key").clone();
    let message = "a".repeat(gateway::aws::KMS_RAW_MESSAGE_LIMIT);
    let sign = sign_base64(&signer, &message).await.expect("sign");
    assert_eq!(public.verify(message.as_bytes(), &sign), Ok(()));
}

#[tokio::test]
async fn the_public_key_is_fetched_once() {
    let env = TestEnv::new().await;
    let signer = env.kms_signer();
    let first: *const alipay::PublicKey = signer.public_key().await.expect("key");
    let second: *const alipay::PublicKey = signer.public_key().await.expect("key");
    assert_eq!(
        first, second,
        "the second call is served from the process cache"
    );
}

#[tokio::test]
async fn an_unknown_key_is_refused_not_retried_forever() {
    let env = TestEnv::new().await;
    let signer = KmsSigner::new(env.kms.clone(), "alias/does-not-exist");
    let result = sign_base64(&signer, "x").await;
    assert!(
        matches!(result, Err(SignError::Refused(ref m)) if m.contains("NotFound")),
        "{result:?}"
    );
}
