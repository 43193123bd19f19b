//! Certificate mode (公钥证书) end to end: the application certificate issued from a CSR signed
//! in KMS, requests carrying both SNs, answers verified with the certificate they name, Alipay
//! rotating its certificate mid-run (downloaded once, kept for the notify function), forged
//! certificates refused, and the application key rotated through a standby key without a failed
//! call. The rest of the end-to-end suite also runs in this mode (`make test` runs it with
//! `GATEWAY_TEST_ALIPAY_MODE=certificate`).

use alipay_sim::{Fault, FaultKind};
use gateway::aws::KmsSigner;
use gateway_tests::merchant::{create, create_and_pay, payment, refund, wait_for_status};
use gateway_tests::support::{Stack, StackOptions, certificate_vars, open_platform_certificates};
use local_stack::template::{create_signing_key, read_template, template_path};
use serde_json::json;

const DOWNLOAD: &str = "alipay.open.app.alipaycert.download";

async fn cert_stack(env: Vec<(String, String)>) -> Stack {
    Stack::start_custom(StackOptions {
        certificates: true,
        env,
        ..StackOptions::default()
    })
    .await
}

/// Waits (10 s at most) until the gateway answered a delivery of the notification for
/// `out_trade_no`, whatever it answered.
async fn first_delivery_answered(stack: &Stack, out_trade_no: &str) -> Option<()> {
    gateway_tests::support::eventually(60, || async {
        stack
            .simulator
            .deliveries()
            .iter()
            .any(|d| d.out_trade_no == out_trade_no && !d.attempts.is_empty())
            .then_some(())
    })
    .await
}

fn downloads(stack: &Stack) -> usize {
    stack
        .simulator
        .calls()
        .iter()
        .filter(|(method, code)| method == DOWNLOAD && code == "10000")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alipay_rotates_its_certificate_mid_run_and_nothing_fails() {
    let stack = cert_stack(Vec::new()).await;
    // Before: the simulator (which refuses requests without the right SNs) answered with the
    // configured certificate; nothing was downloaded.
    create_and_pay(&stack, "cert_before", "10.00").await;
    assert_eq!(downloads(&stack), 0);
    assert!(
        stack
            .env
            .store
            .alipay_certs()
            .await
            .expect("read")
            .is_empty()
    );

    let new_sn = stack.simulator.rotate_alipay_cert(false).expect("rotate");
    // A query answered under the new certificate: the answering function downloads it once,
    // checks it chains to the root bundle, and keeps it.
    let created = create(&stack, "cert_after", "20.00", "qr").await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(downloads(&stack), 1, "{:?}", stack.simulator.calls());
    let stored = stack.env.store.alipay_certs().await.expect("read");
    assert_eq!(
        stored.iter().map(|c| c.sn.as_str()).collect::<Vec<_>>(),
        [new_sn.as_str()]
    );
    // The notification is signed with the new key: the notify function never downloaded it,
    // it reads the kept certificate (after checking its chain again).
    stack.simulator.pay("cert_after", false).expect("pay");
    wait_for_status(&stack, "cert_after", "PAID").await;
    // Another function (refunds) meets the new SN too: taken from the store, not downloaded.
    let refunded = refund(
        &stack,
        "cert_before",
        json!({"amount": "10.00", "out_request_no": "cert_r1"}),
    )
    .await;
    assert_eq!(refunded.status, 201, "{}", refunded.text);
    assert_eq!(refunded.json()["refund"]["status"], "SUCCEEDED");
    assert_eq!(downloads(&stack), 1, "{:?}", stack.simulator.calls());
    let synced = stack
        .http
        .get(&stack.api("/payments/cert_after?sync=true"))
        .await;
    assert_eq!(synced.status, 200, "{}", synced.text);
    assert_eq!(synced.json()["status"], "PAID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_that_does_not_chain_is_refused() {
    let stack = cert_stack(Vec::new()).await;
    let created = create(&stack, "forged_1", "10.00", "qr").await;
    assert_eq!(created.status, 201, "{}", created.text);
    stack.simulator.rotate_alipay_cert(true).expect("rotate");
    stack
        .simulator
        .pay("forged_1", false)
        .expect("pay at Alipay");
    // The query's answer names a certificate whose chain does not verify: refused, never kept,
    // and the notification signed with its key is refused too.
    let synced = stack
        .http
        .get(&stack.api("/payments/forged_1?sync=true"))
        .await;
    assert_ne!(synced.json()["status"], "PAID", "{}", synced.text);
    assert!(
        stack
            .simulator
            .calls()
            .iter()
            .any(|(method, _)| method == DOWNLOAD),
        "the certificate was fetched: {:?}",
        stack.simulator.calls()
    );
    assert!(
        stack
            .env
            .store
            .alipay_certs()
            .await
            .expect("read")
            .is_empty()
    );
    // Once the notification was answered (refused), the payment is still unpaid.
    let answered = first_delivery_answered(&stack, "forged_1").await;
    assert!(answered.is_some(), "{:?}", stack.simulator.deliveries());
    assert_eq!(payment(&stack, "forged_1").await["status"], "CREATED");
    let deliveries: Vec<_> = stack
        .simulator
        .deliveries()
        .into_iter()
        .filter(|d| d.out_trade_no == "forged_1")
        .collect();
    assert!(
        !deliveries.is_empty() && deliveries.iter().all(|d| !d.acknowledged),
        "{deliveries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_certificates_that_cannot_work_and_says_what_to_do() {
    use gateway::startup::{Gateway, Role};
    let stack = cert_stack(Vec::new()).await;
    let ca = std::sync::Arc::new(alipay_sim::ca::TestCa::new());
    // An application certificate issued for another key than the KMS key.
    let other = gateway_tests::support::TestEnv::new().await;
    let mut certs = open_platform_certificates(
        &ca,
        &other.kms_signer(),
        "2021000000000001",
        "alipay_private_key.pem",
        500,
    )
    .await;
    let base = |vars: Vec<(String, String)>| {
        let mut map: std::collections::HashMap<String, String> = [
            ("ORDERS_TABLE", stack.env.table.clone()),
            ("KMS_KEY_ID", stack.env.key_alias.clone()),
            ("ALIPAY_APP_ID", "2021000000000001".to_owned()),
            ("ALIPAY_SELLER_ID", "2088000000000001".to_owned()),
            ("ALIPAY_GATEWAY_URL", stack.simulator.gateway_url()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        map.extend(vars);
        gateway::config::Config::from_map(&map)
    };
    let vars = certificate_vars(&stack.env, "", &certs, &ca, true).await;
    let config = base(vars).expect("configuration reads");
    let error = Gateway::with_config(config.clone(), &stack.env.sdk_config, Role::CallsAlipay)
        .await
        .err()
        .expect("refused");
    assert!(
        error.contains("ALIPAY_APP_CERT is not the certificate of KMS_KEY_ID's key")
            && error.contains("alipay-cli csr"),
        "{error}"
    );
    // The notify function holds no KMS key: it starts (it only verifies Alipay).
    assert!(
        Gateway::with_config(config, &stack.env.sdk_config, Role::NotifyOnly)
            .await
            .is_ok()
    );

    // Alipay's certificate signed by a key other than its issuer's: it does not chain.
    let alipay_key = alipay::AppPrivateKey::parse(
        &std::fs::read_to_string(
            gateway_tests::support::fixtures().join("keys/alipay_private_key.pem"),
        )
        .expect("key"),
    )
    .expect("key");
    let genuine = certs.alipay_cert.clone();
    certs.alipay_cert = ca.issue_forged(
        "CN=Alipay,C=CN",
        601,
        &alipay_key.public_key().to_spki_der(),
    );
    let vars = certificate_vars(&stack.env, "", &certs, &ca, false).await;
    let error = Gateway::with_config(
        base(vars).expect("reads"),
        &stack.env.sdk_config,
        Role::NotifyOnly,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        error.contains("Alipay's public certificate") && error.contains("does not verify"),
        "{error}"
    );
    // The published 2019 certificate (another CA, long expired): an expired Alipay certificate
    // is left out, not refused (Alipay rotates it by itself; the current one is learned).
    let fixtures = gateway_tests::support::fixtures().join("certs");
    certs.alipay_cert.pem =
        std::fs::read_to_string(fixtures.join("alipayCertPublicKey_RSA2.crt")).expect("cert");
    let vars = certificate_vars(&stack.env, "", &certs, &ca, false).await;
    let notify = Gateway::with_config(
        base(vars).expect("reads"),
        &stack.env.sdk_config,
        Role::NotifyOnly,
    )
    .await
    .unwrap_or_else(|e| panic!("starts: {e}"));
    assert!(
        notify
            .trust(domain::channel::ChannelId::Primary)
            .expect("trust")
            .known_sns()
            .is_empty()
    );
    certs.alipay_cert = genuine;
    // A missing object names itself.
    let mut vars = certificate_vars(&stack.env, "", &certs, &ca, false).await;
    vars[2].1 = "s3://no-such-bucket-here/alipayRootCert.crt".into();
    let error = Gateway::with_config(
        base(vars).expect("reads"),
        &stack.env.sdk_config,
        Role::NotifyOnly,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        error.contains("s3://no-such-bucket-here/alipayRootCert.crt"),
        "{error}"
    );
    // Key and certificates together: a configuration error naming both.
    let mut vars = certificate_vars(&stack.env, "", &certs, &ca, false).await;
    vars.push(("ALIPAY_PUBLIC_KEY".into(), "MIIB".into()));
    let error = base(vars).expect_err("refused").to_string();
    assert!(error.contains("choose key mode"), "{error}");
    other.drop_table().await;
}

/// A second KMS key for the application (what `STANDBY_KMS_KEY_ID` names).
async fn standby_key(stack: &Stack) -> (String, alipay::PublicKey) {
    let template = read_template(&template_path()).expect("template");
    let alias = create_signing_key(
        &stack.env.kms,
        &template,
        "AppSigningKey",
        &format!("standby-{}", uuid::Uuid::new_v4().simple()),
    )
    .await
    .expect("standby key");
    let public = KmsSigner::new(stack.env.kms.clone(), &alias)
        .public_key()
        .await
        .expect("public key")
        .clone();
    (alias, public)
}

async fn rotate_app_key_without_a_failed_call(certificates: bool) {
    // The standby key exists before the stack starts (it is a template parameter).
    let probe = Stack::start_custom(StackOptions {
        certificates,
        ..StackOptions::default()
    })
    .await;
    let (alias, public) = standby_key(&probe).await;
    let mut env = vec![("STANDBY_KMS_KEY_ID".to_owned(), alias.clone())];
    let ca = std::sync::Arc::new(alipay_sim::ca::TestCa::new());
    let standby_cert = if certificates {
        let certs = open_platform_certificates(
            &ca,
            &KmsSigner::new(probe.env.kms.clone(), &alias),
            "2021000000000001",
            "alipay_private_key.pem",
            900,
        )
        .await;
        env.push(("STANDBY_ALIPAY_APP_CERT".into(), certs.app_cert.pem.clone()));
        Some(certs.app_cert)
    } else {
        None
    };
    drop(probe);
    let stack = Stack::start_custom(StackOptions {
        certificates,
        env,
        ..StackOptions::default()
    })
    .await;
    if let Some(cert) = &standby_cert {
        // The stack's own CA issued the main certificate; the standby's comes from another
        // test CA instance with the same keys and names, so it chains the same way.
        assert!(!cert.sn.is_empty());
    }
    create_and_pay(&stack, "rotate_1", "30.00").await;
    // The merchant uploads the standby key on the open platform: from now on Alipay refuses
    // the main key's signatures.
    stack.simulator.set_app_key(
        alipay_sim::VerifyKey::from_spki_der(&public.to_spki_der()).expect("standby key"),
        standby_cert.map(|c| c.sn),
    );
    // Two payments at once in one process, both refused with the main key and both accepted with
    // the standby (each accepted answer a second late, so that both fall back before either
    // has its answer).
    stack.simulator.inject(Fault {
        target: "alipay.trade.precreate".into(),
        kind: FaultKind::Slow { ms: 1_000 },
        times: 2,
    });
    let (first, second) = tokio::join!(
        create(&stack, "rotate_2", "40.00", "qr"),
        create(&stack, "rotate_2b", "41.00", "qr")
    );
    for created in [&first, &second] {
        assert_eq!(created.status, 201, "{}", created.text);
    }
    let calls = stack.simulator.calls();
    let mut precreates: Vec<&str> = calls
        .iter()
        .filter(|(method, _)| method == "alipay.trade.precreate")
        .map(|(_, code)| code.as_str())
        .collect();
    let last = precreates.split_off(precreates.len() - 4);
    assert_eq!(
        last,
        [
            "isv.invalid-signature",
            "isv.invalid-signature",
            "10000",
            "10000"
        ],
        "each refused once, then accepted with the standby key: {calls:?}"
    );
    // From now on this process signs with the standby key first, whatever order the two
    // fallbacks ended in: a cashier URL (signed, never sent by us) opens at Alipay.
    let page = create(&stack, "rotate_3", "50.00", "page").await;
    assert_eq!(page.status, 201, "{}", page.text);
    let url = page.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let cashier = stack.http.get(&url).await;
    assert!(
        cashier.text.contains("收银台"),
        "the cashier opens: {}",
        cashier.text
    );
    stack.simulator.pay("rotate_2", false).expect("pay");
    wait_for_status(&stack, "rotate_2", "PAID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_key_rotates_through_the_standby_key_in_key_mode() {
    rotate_app_key_without_a_failed_call(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_key_rotates_through_the_standby_key_in_certificate_mode() {
    rotate_app_key_without_a_failed_call(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cashier_only_shop_meets_the_new_certificate_through_the_sweeper() {
    let stack = cert_stack(Vec::new()).await;
    let new_sn = stack.simulator.rotate_alipay_cert(false).expect("rotate");
    // A page payment makes no server call: nothing has met the new certificate when Alipay's
    // notification, signed with the new key, arrives.
    let page = create(&stack, "cashier_1", "12.00", "page").await;
    assert_eq!(page.status, 201, "{}", page.text);
    let url = page.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_eq!(stack.http.get(&url).await.status, 200);
    stack.simulator.pay("cashier_1", false).expect("pay");
    let refused = first_delivery_answered(&stack, "cashier_1").await;
    assert!(refused.is_some());
    assert_eq!(payment(&stack, "cashier_1").await["status"], "CREATED");
    assert_eq!(downloads(&stack), 0);
    // The notify function asked for a probe; the sweeper's next run makes it, learns the
    // certificate, and Alipay's next delivery verifies.
    assert!(
        stack
            .env
            .store
            .cert_probe_wanted()
            .await
            .expect("read")
            .is_some(),
        "the notify function asked for a probe"
    );
    stack.sweep().await;
    assert_eq!(downloads(&stack), 1, "{:?}", stack.simulator.calls());
    assert!(
        stack
            .env
            .store
            .alipay_certs()
            .await
            .expect("read")
            .iter()
            .any(|c| c.sn == new_sn)
    );
    assert_eq!(
        stack.env.store.cert_probe_wanted().await.expect("read"),
        None
    );
    wait_for_status(&stack, "cashier_1", "PAID").await;
}
