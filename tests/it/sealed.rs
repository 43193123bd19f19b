//! Opt-in local signing: the application key sealed under a KMS symmetric key, opened once at
//! start (`kms:Decrypt` on the stand-in) and used in process. Alipay (the simulator, which checks
//! every signature with the application's public key) accepts what it signs, and no signature
//! costs a `kms:Sign` (counted at a proxy in front of the stand-in).

use gateway::startup::{Gateway, Role};
use gateway_tests::chaos::proxy::FaultProxy;
use gateway_tests::merchant::{create, refund, wait_for_status};
use gateway_tests::support::{APP_ID, Stack, StackOptions, TestEnv, seal_fixture_app_key};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_key_signs_payments_and_refunds_without_kms_sign() {
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let proxy = FaultProxy::start(&moto, 7).await.expect("proxy");
    let stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        sealed_app_key: true,
        ..StackOptions::default()
    })
    .await;
    let at_start = proxy.take_requests();
    // Each function that signs opened the sealed key once, at start.
    assert_eq!(at_start.get("KMS.Decrypt"), Some(&5), "{at_start:?}");
    assert_eq!(at_start.get("KMS.GetPublicKey"), None, "{at_start:?}");

    let created = create(&stack, "sealed_qr", "30.00", "qr").await;
    assert_eq!(created.status, 201, "{}", created.text);
    let page = create(&stack, "sealed_page", "1.00", "page").await;
    let url = page.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    // The cashier checks the page URL's signature with the application's public key.
    assert_eq!(stack.http.get(&url).await.status, 200);
    stack.simulator.pay("sealed_qr", false).expect("pay");
    wait_for_status(&stack, "sealed_qr", "PAID").await;
    let refunded = refund(
        &stack,
        "sealed_qr",
        json!({"amount": "10.00", "out_request_no": "sealed_r1"}),
    )
    .await;
    assert_eq!(
        refunded.json()["refund"]["status"],
        "SUCCEEDED",
        "{}",
        refunded.text
    );
    let trade = stack.simulator.trade("sealed_qr").expect("trade");
    assert_eq!(trade.refunded_fen, 1_000);

    let kms: Vec<_> = proxy
        .take_requests()
        .into_iter()
        .filter(|(op, _)| op.starts_with("KMS."))
        .collect();
    assert!(kms.is_empty(), "no KMS call per signature: {kms:?}");
}

/// What cannot be opened stops the function at start, with a message that names the setting.
#[tokio::test]
async fn a_key_sealed_for_another_application_or_tampered_does_not_open() {
    let env = TestEnv::new().await;
    let (sealed, sealing_key) = seal_fixture_app_key(&env, "2021000000009999").await;
    let alipay_key = std::fs::read_to_string(
        gateway_tests::support::fixtures().join("keys/alipay_public_key.pem"),
    )
    .expect("key");
    let config = |sealed: &str, kms_key_id: Option<&str>| {
        let mut vars: std::collections::HashMap<String, String> = [
            ("ORDERS_TABLE", env.table.as_str()),
            ("ALIPAY_APP_ID", APP_ID),
            ("ALIPAY_SELLER_ID", gateway_tests::support::SELLER_ID),
            ("ALIPAY_PUBLIC_KEY", alipay_key.as_str()),
            ("ALIPAY_NOTIFY_URL", "https://notify.example.com/"),
            ("APP_PRIVATE_KEY_SEALED", sealed),
            ("APP_KEY_SEALING_KMS_KEY_ID", sealing_key.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(id) = kms_key_id {
            vars.insert("KMS_KEY_ID".into(), id.into());
        }
        gateway::config::Config::from_map(&vars)
    };
    // Sealed for application 2021000000009999: KMS refuses to open it for APP_ID.
    let error = match Gateway::with_config(
        config(&sealed, None).expect("config"),
        &env.sdk_config,
        Role::CallsAlipay,
    )
    .await
    {
        Ok(_) => panic!("a key sealed for another application opened"),
        Err(error) => error,
    };
    assert!(
        error.contains("APP_PRIVATE_KEY_SEALED cannot be opened"),
        "{error}"
    );
    // One byte changed in the ciphertext.
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sealed).expect("b64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let error = match Gateway::with_config(
        config(&tampered, None).expect("config"),
        &env.sdk_config,
        Role::CallsAlipay,
    )
    .await
    {
        Ok(_) => panic!("a tampered sealed key opened"),
        Err(error) => error,
    };
    assert!(
        error.contains("APP_PRIVATE_KEY_SEALED cannot be opened"),
        "{error}"
    );
    // Both ways of signing configured at once is refused before anything runs.
    let both = config(&sealed, Some(&env.key_alias))
        .map(|_| ())
        .expect_err("both refused");
    assert!(
        both.to_string()
            .contains("KMS_KEY_ID and APP_PRIVATE_KEY_SEALED are both set"),
        "{both}"
    );
    env.drop_table().await;
}
