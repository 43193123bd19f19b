//! Keys in every form merchants hold them, and the errors for the usual mix-ups.

mod common;

use alipay::{AppPrivateKey, KeyError, PublicKey};
use common::fixture_text;

/// The Base64 body of a PEM file, as Alipay's key tool exports keys.
fn bare(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.starts_with('#'))
        .collect()
}

fn parse_private(text: &str) -> Result<AppPrivateKey, KeyError> {
    AppPrivateKey::parse(text)
}

#[test]
fn private_key_in_every_form_is_the_same_key() {
    let pkcs1 = fixture_text("keys/app_private_key.pem");
    let pkcs8 = fixture_text("keys/app_private_key_pkcs8.pem");
    let want = PublicKey::parse(&fixture_text("keys/app_public_key.pem")).expect("public");
    for (form, text) in [
        ("PKCS#1 PEM", pkcs1.clone()),
        ("PKCS#8 PEM", pkcs8.clone()),
        ("bare PKCS#1", bare(&pkcs1)),
        ("bare PKCS#8", bare(&pkcs8)),
        ("CRLF PEM", pkcs1.replace('\n', "\r\n")),
        ("bare with spaces", format!("  {}\n", bare(&pkcs8))),
    ] {
        let key = parse_private(&text).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(key.public_key(), want, "{form}");
    }
}

#[test]
fn public_key_in_every_form() {
    let pem = fixture_text("keys/app_public_key.pem");
    let from_pem = PublicKey::parse(&pem).expect("pem");
    let from_bare = PublicKey::parse(&bare(&pem)).expect("bare");
    assert_eq!(from_pem, from_bare);
    assert_eq!(
        from_pem.to_spki_base64(),
        bare(&pem),
        "exports the form Alipay asks for"
    );
}

#[test]
fn mix_ups_are_named() {
    let public_pem = fixture_text("keys/app_public_key.pem");
    let private_pem = fixture_text("keys/app_private_key.pem");
    assert_eq!(
        parse_private(&public_pem).err(),
        Some(KeyError::PublicWherePrivateBelongs)
    );
    assert_eq!(
        parse_private(&bare(&public_pem)).err(),
        Some(KeyError::PublicWherePrivateBelongs)
    );
    assert_eq!(
        PublicKey::parse(&private_pem).err(),
        Some(KeyError::PrivateWherePublicBelongs)
    );
    assert_eq!(
        PublicKey::parse(&bare(&private_pem)).err(),
        Some(KeyError::PrivateWherePublicBelongs)
    );
    assert_eq!(
        PublicKey::parse(&fixture_text("keys/app_cert.pem")).err(),
        Some(KeyError::Certificate)
    );
    let app_public = PublicKey::parse(&public_pem).expect("public");
    assert_eq!(
        PublicKey::parse_alipay_key(&public_pem, Some(&app_public)).err(),
        Some(KeyError::AppKeyConfiguredAsAlipayKey)
    );
    let alipay_pem = fixture_text("keys/alipay_public_key.pem");
    assert!(PublicKey::parse_alipay_key(&alipay_pem, Some(&app_public)).is_ok());
    let message = KeyError::PrivateWherePublicBelongs.to_string();
    assert!(message.contains("Alipay's public key"), "{message}");
}

#[test]
fn broken_and_weak_keys_are_refused() {
    assert_eq!(parse_private("").err(), Some(KeyError::Empty));
    assert_eq!(parse_private("not a key!").err(), Some(KeyError::NotBase64));
    assert!(matches!(
        parse_private("QUJDRA==").err(),
        Some(KeyError::Malformed(_))
    ));
    assert_eq!(
        parse_private(&fixture_text("keys/short_1024_private_key.pem")).err(),
        Some(KeyError::TooShort(1024))
    );
    let truncated =
        fixture_text("keys/app_private_key.pem").replace("-----END RSA PRIVATE KEY-----", "");
    assert!(matches!(
        parse_private(&truncated).err(),
        Some(KeyError::Malformed(_))
    ));
    assert!(matches!(
        parse_private(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
        )
        .err(),
        Some(KeyError::UnsupportedPem(_))
    ));
}

#[test]
fn debug_output_never_shows_key_material() {
    let key = parse_private(&fixture_text("keys/app_private_key.pem")).expect("key");
    assert_eq!(format!("{key:?}"), "AppPrivateKey(2048 bits, redacted)");
}
