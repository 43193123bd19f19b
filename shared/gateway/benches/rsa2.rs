//! RSA2 sign and verify speed: the `rsa` crate (tests, the CLI) and AWS-LC (verification in the
//! functions, local signing with a sealed key), plus the notification and response paths.
//! Run with `cargo bench -p shared --bench rsa2`; compare with `openssl speed rsa2048`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alipay::canonical::{Omit, signing_string};
use alipay::{AppPrivateKey, LocalKeySigner, PublicKey};

fn fixture(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `op` for about `budget`, after a warm-up, and prints microseconds per operation.
fn measure(name: &str, budget: Duration, mut op: impl FnMut()) {
    for _ in 0..10 {
        op();
    }
    let start = Instant::now();
    let mut iterations = 0u64;
    while start.elapsed() < budget {
        op();
        iterations += 1;
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!(
        "{name:<44} {micros:>10.1} µs/op  ({:>8.0} ops/s, {iterations} iterations)",
        1e6 / micros
    );
}

fn main() {
    let key = AppPrivateKey::parse(&fixture("keys/app_private_key.pem")).expect("key");
    let signer = LocalKeySigner::new(&key);
    let public: PublicKey = key.public_key();
    let message = b"app_id=2021000123456789&biz_content={\"out_trade_no\":\"order_1\",\"total_amount\":\"299.00\"}&charset=utf-8&method=alipay.trade.precreate&sign_type=RSA2&timestamp=2026-11-26 18:30:05&version=1.0";
    let sign = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(signer.sign_now(message).expect("sign"))
    };
    let budget = Duration::from_secs(3);
    println!(
        "RSA-2048, PKCS#1 v1.5 + SHA-256 (the rsa crate), {} byte message",
        message.len()
    );
    measure("sign (with blinding)", budget, || {
        black_box(signer.sign_now(black_box(message)).expect("sign"));
    });
    let raw_sign = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&sign)
            .expect("b64")
    };
    {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::signature::Verifier as _;
        let key = rsa::PublicKey::from_public_key_der(&public.to_spki_der()).expect("key");
        let signature = rsa::pkcs1v15::Signature::try_from(raw_sign.as_slice()).expect("sig");
        measure("verify (the rsa crate, before; comparison)", budget, || {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
                .verify(black_box(message), black_box(&signature))
                .expect("verify");
        });
    }

    // Verification in the functions, and the opt-in local signing (a sealed key): AWS-LC.
    let local = gateway::aws::sealed_key::LocalSigner::from_der(&key.to_pkcs8_der().expect("der"))
        .expect("key");
    println!("RSA-2048, PKCS#1 v1.5 + SHA-256 (AWS-LC through aws-lc-rs)");
    measure("sign (the sealed-key mode's signer)", budget, || {
        black_box(local.sign_now(black_box(message)).expect("sign"));
    });
    measure(
        "verify: PublicKey::verify (Base64 decode included)",
        budget,
        || {
            public
                .verify(black_box(message), black_box(&sign))
                .expect("verify");
        },
    );

    let vectors: serde_json::Value =
        serde_json::from_str(&fixture("alipay-vectors.json")).expect("vectors");
    let alipay_key = PublicKey::parse(
        vectors["notify_verification"]["alipay_public_key_spki_base64"]
            .as_str()
            .expect("key"),
    )
    .expect("alipay key");
    let body = vectors["notify_verification"]["valid"]["form_body"]
        .as_str()
        .expect("body")
        .to_owned();
    measure("notification: decode + verify + type", budget, || {
        black_box(
            alipay::notify::verify_notification(black_box(body.as_bytes()), &alipay_key)
                .expect("ok"),
        );
    });
    let params = [("b", "2"), ("a", "1"), ("sign", "x")];
    measure(
        "signing string (3 params)",
        Duration::from_millis(500),
        || {
            black_box(signing_string(black_box(params), Omit::Sign));
        },
    );
}
