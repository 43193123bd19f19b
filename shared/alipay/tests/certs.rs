//! Certificate mode against the published test certificates (tests/fixtures/certs, from gopay,
//! with SNs recomputed independently by the shared vectors' authors): byte for byte.

mod common;

use alipay::cert::{CertError, app_cert_sn, leaves, parse_pem_bundle, root_cert_sn, verify_chain};
use common::fixture_text;

fn bundle(name: &str) -> Vec<alipay::cert::Cert> {
    parse_pem_bundle(&fixture_text(&format!("certs/{name}"))).expect("certificates parse")
}

/// 2020-06-01T00:00:00Z: inside every period of the 2019 Alipay chain.
const IN_2020: u64 = 1_590_969_600;
/// 2026-11-28: the 2019 leaf expired in 2021.
const IN_2026: u64 = 1_795_824_000;

#[test]
fn alipay_root_cert_sn_skips_sm2_and_ecdsa() {
    let roots = bundle("alipayRootCert.crt");
    assert_eq!(
        roots.len(),
        4,
        "all four certificates are read, SM2 included"
    );
    assert_eq!(
        root_cert_sn(&roots).expect("sn"),
        "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    );
}

#[test]
fn app_cert_sn_matches_with_its_issuer_and_serial() {
    let app = bundle("appCertPublicKey.crt");
    assert_eq!(
        app_cert_sn(&app).expect("sn"),
        "4498aaa8ab0c8986c15c41b36186db7d"
    );
    assert_eq!(
        app[0].issuer(),
        "CN=Ant Financial Certification Authority Class 2 R1,OU=Certification Authority,O=Ant Financial,C=CN"
    );
    assert_eq!(app[0].serial(), "42665286089147897176658588328833420416");
}

#[test]
fn alipay_cert_sns_match() {
    let alipay = bundle("alipayCertPublicKey_RSA2.crt");
    let leaf = leaves(&alipay);
    assert_eq!(leaf.len(), 1);
    assert_eq!(leaf[0].sn(), "04afd423ea5bd6f5c5482854ed73278c");
    assert_eq!(leaf[0].serial(), "42665269422442016215313010142161679333");
    assert_eq!(
        app_cert_sn(&bundle("appPublicCert_2024.crt")).expect("sn"),
        "f5476a255774929671073404f7af2b90"
    );
    let leaf_2024 = bundle("alipayPublicCert_2024.crt");
    assert_eq!(
        leaves(&leaf_2024)[0].sn(),
        "b09baa7d1d5b198c713b230c5a6ec8e7"
    );
}

#[test]
fn alipays_certificate_chains_to_the_root_bundle_at_its_time() {
    let roots = bundle("alipayRootCert.crt");
    let alipay = bundle("alipayCertPublicKey_RSA2.crt");
    let leaf = leaves(&alipay)[0].clone();
    verify_chain(&leaf, &alipay, &roots, IN_2020).expect("chains in 2020");
    // The application certificate has the same issuer: its intermediate comes from Alipay's file.
    let app = bundle("appCertPublicKey.crt");
    verify_chain(&app[0], &alipay, &roots, IN_2020).expect("app certificate chains");
    // Expired by now: refused, naming the certificate.
    match verify_chain(&leaf, &alipay, &roots, IN_2026) {
        Err(CertError::NotValidNow { sn, .. }) => assert_eq!(sn, leaf.sn()),
        other => panic!("expected NotValidNow, got {other:?}"),
    }
    // Without its intermediate, or with another CA's roots, it does not chain.
    let alone = verify_chain(&leaf, &[], &roots, IN_2020);
    assert!(
        matches!(alone, Err(CertError::Untrusted { .. })),
        "{alone:?}"
    );
    let other_ca = bundle("alipayPublicCert_2024.crt");
    assert!(matches!(
        verify_chain(&leaf, &alipay, &other_ca, IN_2020),
        Err(CertError::Untrusted { .. })
    ));
    // The 2024 sandbox chain ends at a test root that is not in the bundle.
    let sandbox = bundle("alipayPublicCert_2024.crt");
    let sandbox_leaf = leaves(&sandbox)[0].clone();
    let at = sandbox_leaf.validity().0 + 60;
    assert!(matches!(
        verify_chain(&sandbox_leaf, &sandbox, &roots, at),
        Err(CertError::Untrusted { .. })
    ));
}

#[test]
fn a_changed_byte_breaks_the_chain() {
    let roots = bundle("alipayRootCert.crt");
    let alipay = bundle("alipayCertPublicKey_RSA2.crt");
    let leaf = leaves(&alipay)[0].clone();
    // Flip one bit inside the leaf's subject (the TBS part, after the first 200 bytes): still
    // parses, no longer what the intermediate signed.
    let mut der = leaf.der().to_vec();
    let at = der
        .windows(6)
        .position(|w| w == b"Alipay")
        .expect("subject OU");
    der[at] ^= 0x20;
    let forged = alipay::cert::Cert::from_der(der, 0).expect("still parses");
    assert!(matches!(
        verify_chain(&forged, &alipay, &roots, IN_2020),
        Err(CertError::BadSignature { .. })
    ));
}

#[test]
fn the_certificates_public_key_is_read() {
    let alipay = bundle("alipayCertPublicKey_RSA2.crt");
    let key = leaves(&alipay)[0].public_key().expect("RSA key");
    assert!(!key.to_spki_base64().is_empty());
    assert!(matches!(
        parse_pem_bundle("no pem here"),
        Err(CertError::Empty)
    ));
    assert!(matches!(
        parse_pem_bundle("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
        Err(CertError::NotPem { index: 0 })
    ));
}
