//! The CLI as a process: stdin, stdout, stderr and exit codes.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(fixtures().join("alipay-vectors.json")).expect("vectors");
    serde_json::from_str(&text).expect("json")
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .expect(pointer)
}

/// A file in a fresh per-test directory; the CLI reads keys from files.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alipay-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alipay-cli"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn alipay-cli");
    // A usage error exits before reading stdin; the broken pipe that causes is expected.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn sign_reproduces_the_java_sdk_vectors_from_stdin() {
    let vectors = vectors();
    let key = temp_file(
        "vector_key.txt",
        text_at(&vectors, "/request_signing/app_private_key_pkcs8_base64"),
    );
    for case in vectors
        .pointer("/request_signing/cases")
        .and_then(Value::as_array)
        .expect("cases")
    {
        let stdin = serde_json::to_vec(&case["params"]).expect("params");
        let output = run(
            &["sign", "--private-key", key.to_str().expect("path")],
            &stdin,
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer = stdout_json(&output);
        assert_eq!(answer["signing_string"], case["signing_string"]);
        assert_eq!(answer["sign"], case["expected_sign"]);
    }
}

#[test]
fn sign_takes_pem_keys_too() {
    let key = fixtures().join("keys/app_private_key_pkcs8.pem");
    let output = run(
        &["sign", "--private-key", key.to_str().expect("path")],
        br#"{"b":"2","a":"1","sign":"x","e":""}"#,
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout_json(&output)["signing_string"], "a=1&b=2");
}

#[test]
fn verify_notify_accepts_the_real_notification_and_rejects_a_tampered_one() {
    let vectors = vectors();
    let key = temp_file(
        "alipay_key.txt",
        text_at(
            &vectors,
            "/notify_verification/alipay_public_key_spki_base64",
        ),
    );
    let key = key.to_str().expect("path");
    let body = text_at(&vectors, "/notify_verification/valid/form_body");

    let output = run(
        &["verify-notify", "--alipay-public-key", key],
        body.as_bytes(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let notification = stdout_json(&output);
    assert_eq!(notification["out_trade_no"], "20190815155618536-564-57");
    assert_eq!(notification["total_amount"], "0.10");
    assert_eq!(notification["trade_status"], "TRADE_SUCCESS");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("2088102534368455"));

    let tampered = body.replace("total_amount=0.10", "total_amount=100.00");
    let output = run(
        &["verify-notify", "--alipay-public-key", key],
        tampered.as_bytes(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("signature"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line reason");
}

#[test]
fn verify_response_prints_the_verified_object() {
    let content = r#"{"code":"10000","msg":"Success","trade_no":"2026","out_trade_no":"o_1","fund_change":"Y","refund_fee":"1.00","note":"}\"{"}"#;
    let key = alipay_sim::SigningKey::from_pem(
        &std::fs::read_to_string(fixtures().join("keys/alipay_private_key.pem")).expect("key"),
    )
    .expect("key");
    let sign = key.sign_base64(content);
    let body = format!(r#"{{"alipay_trade_refund_response":{content},"sign":"{sign}"}}"#);
    let public = fixtures().join("keys/alipay_public_key.pem");
    let args = [
        "verify-response",
        "--alipay-public-key",
        public.to_str().expect("path"),
        "--method",
        "alipay.trade.refund",
    ];

    let output = run(&args, body.as_bytes());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), content);

    let output = run(&args, body.replace("1.00", "9.00").as_bytes());
    assert_eq!(output.status.code(), Some(1));

    let mut wrong_method = args;
    wrong_method[4] = "alipay.trade.query";
    let output = run(&wrong_method, body.as_bytes());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("alipay_trade_query_response"));
}

#[test]
fn usage_errors_exit_2() {
    let public = fixtures().join("keys/app_public_key.pem");
    let public = public.to_str().expect("path");
    let private = fixtures().join("keys/app_private_key.pem");
    let private = private.to_str().expect("path");
    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (vec![], b"", "Usage"),
        (vec!["sign"], b"{}", "--private-key"),
        (vec!["frobnicate"], b"", "unrecognized"),
        (
            vec!["sign", "--private-key", "/nonexistent/key.pem"],
            b"{}",
            "cannot read",
        ),
        (
            vec!["sign", "--private-key", public],
            b"{}",
            "a private key belongs here",
        ),
        (
            vec!["sign", "--private-key", private],
            b"not json",
            "JSON object",
        ),
        (
            vec!["sign", "--private-key", private],
            br#"{"a":1}"#,
            "must be a string",
        ),
        (
            vec!["verify-notify", "--alipay-public-key", private],
            b"a=b",
            "Alipay's public key",
        ),
        (
            vec!["verify-response", "--alipay-public-key", public],
            b"{}",
            "--method",
        ),
    ];
    for (args, stdin, needle) in cases {
        let output = run(&args, stdin);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn help_explains_keys_and_exit_codes() {
    let output = run(&["--help"], b"");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "sign",
        "verify-notify",
        "verify-response",
        "Exit status",
        "PKCS#8",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}

#[tokio::test]
async fn public_key_prints_what_alipay_asks_for_from_kms() {
    let env = gateway_tests::support::TestEnv::new().await;
    let expected = env
        .kms_signer()
        .public_key()
        .await
        .expect("public key")
        .to_spki_base64();
    let output = run(&["public-key", "--kms-key-id", &env.key_alias], b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(printed, expected);
    assert!(
        !printed.contains("BEGIN"),
        "bare Base64, as the open platform wants it"
    );
    assert!(alipay::PublicKey::parse(&printed).is_ok());

    let output = run(&["public-key", "--kms-key-id", "alias/nope"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("NotFound"));
}

/// `openssl req -verify` on a PEM request: openssl's verdict and the public key it holds.
fn openssl_verify_csr(pem: &str, name: &str) -> (bool, String) {
    let path = temp_file(name, pem);
    let path = path.to_str().expect("utf-8 path");
    let verdict = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in", path])
        .output()
        .expect("openssl (the machine's) runs");
    let key = Command::new("openssl")
        .args(["req", "-pubkey", "-noout", "-in", path])
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&verdict.stderr).into_owned()
        + &String::from_utf8_lossy(&verdict.stdout);
    (
        verdict.status.success() && text.contains("verify OK"),
        String::from_utf8_lossy(&key.stdout).into_owned(),
    )
}

#[tokio::test]
async fn csr_from_kms_verifies_with_openssl_and_carries_the_kms_key() {
    let env = gateway_tests::support::TestEnv::new().await;
    let public = env
        .kms_signer()
        .public_key()
        .await
        .expect("public key")
        .clone();
    let output = run(
        &[
            "csr",
            "--kms-key-id",
            &env.key_alias,
            "--subject",
            "CN=2021000123456789,OU=支付,O=Example Ltd,C=CN",
        ],
        b"",
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
    let (verified, key) = openssl_verify_csr(&pem, "kms.csr");
    assert!(verified, "openssl req -verify refused the request:\n{pem}");
    assert_eq!(
        alipay::PublicKey::parse(&key).expect("openssl's key"),
        public,
        "the request is for the KMS key"
    );
    // One changed byte in the signed part: openssl refuses it.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    let at = der
        .windows(11)
        .position(|w| w == b"Example Ltd")
        .expect("subject");
    der[at] = b'e';
    let forged = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    assert!(!openssl_verify_csr(&forged, "forged.csr").0);

    let output = run(
        &["csr", "--kms-key-id", "alias/nope", "--subject", "CN=x"],
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn csr_from_a_local_key_verifies_and_bad_subjects_are_usage_errors() {
    let key = fixtures().join("keys/app_private_key.pem");
    let key = key.to_str().expect("path");
    let output = run(
        &[
            "csr",
            "--private-key",
            key,
            "--subject",
            "CN=2021000123456789,C=CN",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(0));
    let (verified, public) =
        openssl_verify_csr(&String::from_utf8_lossy(&output.stdout), "local.csr");
    assert!(verified);
    let app_public =
        std::fs::read_to_string(fixtures().join("keys/app_public_key.pem")).expect("key");
    assert_eq!(
        alipay::PublicKey::parse(&public).expect("key"),
        alipay::PublicKey::parse(&app_public).expect("key")
    );
    let output = run(&["csr", "--private-key", key, "--subject", "nonsense"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("distinguished name"));
    let output = run(&["csr", "--subject", "CN=x"], b"");
    assert_eq!(output.status.code(), Some(2), "a key is required");
}

#[test]
fn cert_sn_prints_the_published_sns() {
    let certs = fixtures().join("certs");
    let path = |name: &str| certs.join(name).to_str().expect("path").to_owned();
    let output = run(
        &[
            "cert-sn",
            "--app-cert",
            &path("appCertPublicKey.crt"),
            "--root-cert",
            &path("alipayRootCert.crt"),
            "--alipay-cert",
            &path("alipayCertPublicKey_RSA2.crt"),
        ],
        b"",
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sns = stdout_json(&output);
    assert_eq!(sns["app_cert_sn"], "4498aaa8ab0c8986c15c41b36186db7d");
    assert_eq!(
        sns["alipay_root_cert_sn"],
        "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    );
    assert_eq!(sns["alipay_cert_sn"], "04afd423ea5bd6f5c5482854ed73278c");
    let key = fixtures().join("keys/app_public_key.pem");
    let output = run(&["cert-sn", "--app-cert", key.to_str().expect("path")], b"");
    assert_eq!(output.status.code(), Some(2), "a key is not a certificate");
}

#[test]
fn verify_response_and_notify_take_alipays_certificate() {
    let ca = alipay_sim::ca::TestCa::new();
    // Alipay's side signs with the simulator's own RSA code, apart from the CLI's.
    let alipay_key = alipay_sim::SigningKey::from_pem(
        &std::fs::read_to_string(fixtures().join("keys/alipay_private_key.pem")).expect("key"),
    )
    .expect("key");
    let issued = ca.issue_leaf("CN=Alipay,C=CN", 77, &alipay_key.spki_der(), 30);
    let cert = temp_file("alipayCertPublicKey_RSA2.crt", &issued.pem);
    let cert = cert.to_str().expect("path");
    let sign = |text: &str| alipay_key.sign_base64(text);
    let content = r#"{"code":"10000","msg":"Success","trade_no":"2026","out_trade_no":"o1","trade_status":"TRADE_SUCCESS","total_amount":"1.00"}"#;
    let body = |sn: &str| {
        format!(
            r#"{{"alipay_trade_query_response":{content},"alipay_cert_sn":"{sn}","sign":"{}"}}"#,
            sign(content)
        )
    };
    let args = [
        "verify-response",
        "--alipay-cert",
        cert,
        "--method",
        "alipay.trade.query",
    ];
    let output = run(&args, body(&issued.sn).as_bytes());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["trade_status"], "TRADE_SUCCESS");
    // An answer naming another certificate: not genuine, and the reason says what to do.
    let output = run(&args, body("00000000000000000000000000000000").as_bytes());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not hold"));

    // A notification signed with the certificate's key (signing string written out here).
    let fields = [
        ("app_id", "2021000000000001"),
        ("notify_id", "n1"),
        ("notify_time", "2026-11-28 10:00:00"),
        ("notify_type", "trade_status_sync"),
        ("out_trade_no", "o1"),
        ("total_amount", "1.00"),
        ("trade_no", "2026"),
        ("trade_status", "TRADE_SUCCESS"),
    ];
    let text = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut form = form_urlencoded_pairs(&fields);
    form.push_str(&format!("&sign_type=RSA2&sign={}", urlencode(&sign(&text))));
    let output = run(&["verify-notify", "--alipay-cert", cert], form.as_bytes());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(
        &["verify-notify", "--alipay-cert", cert],
        form.replace("o1", "o2").as_bytes(),
    );
    assert_eq!(output.status.code(), Some(1));
}

fn form_urlencoded_pairs(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encoding of everything but unreserved characters.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `seal-key`: what it prints opens (kms:Decrypt on the stand-in, for that app id only) into the
/// key whose public half it printed; a key given with --private-key is the one sealed.
#[tokio::test]
async fn seal_key_prints_a_sealed_key_that_opens_to_the_printed_public_key() {
    use base64::Engine as _;
    let env = gateway_tests::support::TestEnv::new().await;
    let created = env
        .kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .send()
        .await
        .expect("CreateKey");
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .expect("key id");
    let fixture_key = fixtures().join("keys/app_private_key.pem");
    let fixture_public = alipay::PublicKey::parse(
        &std::fs::read_to_string(fixtures().join("keys/app_public_key.pem")).expect("key"),
    )
    .expect("public key");
    for private_key in [None, Some(fixture_key.to_string_lossy().into_owned())] {
        let mut args = vec![
            "seal-key",
            "--kms-key-id",
            &key_id,
            "--app-id",
            "2021000123456789",
        ];
        if let Some(path) = &private_key {
            args.extend(["--private-key", path.as_str()]);
        }
        let output = run(&args, b"");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = stdout_json(&output);
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(text_at(&printed, "/app_private_key_sealed"))
            .expect("base64");
        let public = alipay::PublicKey::parse(text_at(&printed, "/app_public_key")).expect("key");
        let opened = gateway::aws::sealed_key::LocalSigner::unseal(
            &env.kms,
            &key_id,
            &sealed,
            "2021000123456789",
        )
        .await
        .expect("opens");
        assert_eq!(opened.public_key(), &public);
        if private_key.is_some() {
            assert_eq!(public, fixture_public, "the given key is the one sealed");
        } else {
            assert_ne!(public, fixture_public, "a new key each time");
        }
        // Never the key itself on stdout or stderr.
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let fixture_body: String = std::fs::read_to_string(&fixture_key)
            .expect("key")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
            .take(2)
            .collect();
        assert!(
            !all.contains("PRIVATE KEY") && !all.contains(&fixture_body[..60]),
            "{all}"
        );
        let other_app = gateway::aws::sealed_key::LocalSigner::unseal(
            &env.kms,
            &key_id,
            &sealed,
            "2021000999999999",
        )
        .await;
        assert!(other_app.is_err(), "opened for another application");
    }
}

/// openssl's SHA256withRSA over `message` with a key file: the raw signature.
fn openssl_sign(key: &str, message: &[u8], name: &str) -> Vec<u8> {
    let input = temp_file(name, "");
    std::fs::write(&input, message).expect("write message");
    let output = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-sign",
            key,
            input.to_str().expect("path"),
        ])
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("escape");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn antom_sign_gives_the_headers_openssl_agrees_with() {
    let key = fixtures().join("keys/app_private_key.pem");
    let body = br#"{"paymentRequestId":"o-1","paymentAmount":{"currency":"USD","value":"1099"}}"#;
    let output = run(
        &[
            "antom-sign",
            "--private-key",
            key.to_str().expect("path"),
            "--client-id",
            "SANDBOX_5YBZ",
            "--path",
            "/ams/api/v1/payments/pay",
            "--request-time",
            "1764900000000",
        ],
        body,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = stdout_json(&output);
    let expected = format!(
        "POST /ams/sandbox/api/v1/payments/pay\nSANDBOX_5YBZ.1764900000000.{}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(answer["signing_string"], expected.as_str());
    assert_eq!(answer["headers"]["request-time"], "1764900000000");
    let header = answer["headers"]["signature"].as_str().expect("signature");
    let encoded = header
        .strip_prefix("algorithm=RSA256,keyVersion=1,signature=")
        .expect("header layout");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(percent_decode(encoded))
        .expect("url-encoded base64");
    // PKCS#1 v1.5 signatures are deterministic: openssl's over the same string is the same.
    let theirs = openssl_sign(
        key.to_str().expect("path"),
        expected.as_bytes(),
        "antom-sign",
    );
    assert_eq!(raw, theirs);
}

#[test]
fn antom_verify_notify_takes_antoms_signature_and_shows_the_string_on_failure() {
    let antom_private = fixtures().join("keys/antom_private_key.pem");
    let antom_public = fixtures().join("keys/antom_public_key.pem");
    let body = br#"{"notifyType":"PAYMENT_RESULT","result":{"resultStatus":"S"},"paymentRequestId":"o-1"}"#;
    let time = "2026-12-05T10:00:00+08:00";
    let signed = format!(
        "POST /notify/antom\nCID.{time}.{}",
        String::from_utf8_lossy(body)
    );
    let raw = openssl_sign(
        antom_private.to_str().expect("path"),
        signed.as_bytes(),
        "antom-notify",
    );
    use base64::Engine as _;
    let encoded: String = base64::engine::general_purpose::STANDARD
        .encode(raw)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let signature = format!("signature: algorithm=RSA256,keyVersion=1,signature={encoded}");
    let request_time = format!("request-time: {time}");
    let verify = |path: &str, extra: &[&str], body: &[u8]| {
        let mut args = vec![
            "antom-verify-notify",
            "--antom-public-key",
            antom_public.to_str().expect("path"),
            "--client-id",
            "CID",
            "--path",
            path,
            "-H",
            "client-id: CID",
        ];
        args.extend_from_slice(extra);
        run(&args, body)
    };
    let ok = verify(
        "/notify/antom",
        &["-H", &request_time, "-H", &signature],
        body,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(ok.stdout.trim_ascii_end(), body);

    let wrong_path = verify(
        "/notify/other",
        &["-H", &request_time, "-H", &signature],
        body,
    );
    assert_eq!(wrong_path.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong_path.stderr);
    assert!(
        stderr.contains("POST /notify/other\nCID.2026-12-05T10:00:00+08:00.{"),
        "{stderr}"
    );
    assert!(stderr.contains("does not verify"), "{stderr}");

    let unsigned = verify("/notify/antom", &["-H", &request_time], body);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("signature header is missing"));
}
