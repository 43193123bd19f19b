//! RSA keys in the forms merchants hold them, and RSA2 verification.
//!
//! App private keys come as PKCS#1 PEM, PKCS#8 PEM or bare Base64 of either (what Alipay's key
//! tool exports); public keys as SPKI PEM or bare Base64. The errors name the usual mix-ups.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;

/// The verifier of the `aws-lc` feature (AWS-LC's RSA, what the functions use); without it the
/// rsa crate verifies.
#[cfg(feature = "aws-lc")]
type FastVerifier = aws_lc_rs::signature::ParsedPublicKey;
#[cfg(not(feature = "aws-lc"))]
type FastVerifier = std::convert::Infallible;

/// Alipay's RSA2 keys are 2048 bits; anything shorter is refused.
const MIN_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is neither PEM nor Base64")]
    NotBase64,
    #[error("this is a public key, but a private key belongs here (the app private key, 应用私钥)")]
    PublicWherePrivateBelongs,
    #[error(
        "this is a private key, but Alipay's public key (支付宝公钥) belongs here; never put a private key in this setting"
    )]
    PrivateWherePublicBelongs,
    #[error(
        "this is a certificate; certificate mode is not supported yet, configure the public key instead"
    )]
    Certificate,
    #[error(
        "the private key is encrypted; export it without a passphrase (KMS keeps it safe in production)"
    )]
    Encrypted,
    #[error("unsupported PEM block \"{0}\"; expected PRIVATE KEY, RSA PRIVATE KEY or PUBLIC KEY")]
    UnsupportedPem(String),
    #[error("the key is not a valid RSA key: {0}")]
    Malformed(String),
    #[error("the key has {0} bits; Alipay RSA2 keys have at least 2048")]
    TooShort(usize),
    #[error(
        "the configured Alipay public key is your application's own public key; download Alipay's public key (支付宝公钥) from the open platform instead"
    )]
    AppKeyConfiguredAsAlipayKey,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature is not valid Base64")]
    NotBase64,
    #[error("the signature has {got} bytes; RSA2 with this key gives {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the signature does not match the signed content and key")]
    Mismatch,
}

/// The DER inside a key text, and what kind of PEM block (if any) held it.
struct Der {
    label: Option<String>,
    bytes: Vec<u8>,
}

fn decode_text(text: &str) -> Result<Der, KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    // Text before the PEM block (comments, "Bag Attributes") is allowed, as OpenSSL allows it.
    let pem_start = text.find("-----BEGIN ");
    let (label, body) = match pem_start.map(|at| &text[at + "-----BEGIN ".len()..]) {
        Some(rest) => {
            let (label, rest) = rest.split_once("-----").ok_or(KeyError::NotBase64)?;
            let end = format!("-----END {label}-----");
            let body = rest.split(end.as_str()).next().ok_or(KeyError::NotBase64)?;
            if !rest.contains(end.as_str()) {
                return Err(KeyError::Malformed(format!("missing \"{end}\"")));
            }
            (Some(label.to_owned()), body)
        }
        None => (None, text),
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = BASE64.decode(compact).map_err(|_| KeyError::NotBase64)?;
    Ok(Der { label, bytes })
}

/// The merchant's application private key, held in memory (tests, the CLI and the local stack;
/// production signs in KMS).
pub struct AppPrivateKey(rsa::PrivateKey);

impl std::fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppPrivateKey({} bits, redacted)", self.0.size() * 8)
    }
}

impl AppPrivateKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let der = decode_text(text)?;
        let key = match der.label.as_deref() {
            Some("PRIVATE KEY") => rsa::PrivateKey::from_pkcs8_der(&der.bytes)
                .map_err(|e| KeyError::Malformed(e.to_string()))?,
            Some("RSA PRIVATE KEY") => rsa::PrivateKey::from_pkcs1_der(&der.bytes)
                .map_err(|e| KeyError::Malformed(e.to_string()))?,
            Some(label) => return Err(misplaced(label, Role::Private)),
            None => rsa::PrivateKey::from_pkcs8_der(&der.bytes)
                .or_else(|_| rsa::PrivateKey::from_pkcs1_der(&der.bytes))
                .map_err(|_| {
                    if is_public_der(&der.bytes) {
                        KeyError::PublicWherePrivateBelongs
                    } else {
                        KeyError::Malformed("not PKCS#8 or PKCS#1 DER".into())
                    }
                })?,
        };
        check_bits(key.size())?;
        Ok(AppPrivateKey(key))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.0.to_public_key())
    }

    /// PKCS#8 DER (to seal it; `alipay-cli seal-key --private-key`), wiped when dropped.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        use rsa::pkcs8::EncodePrivateKey as _;
        self.0
            .to_pkcs8_der()
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|e| KeyError::Malformed(e.to_string()))
    }

    pub(crate) fn rsa(&self) -> &rsa::PrivateKey {
        &self.0
    }
}

/// An RSA public key: Alipay's (to verify what Alipay sends) or the app's (what the simulator
/// and Alipay use to verify what we send).
///
/// Signatures are verified with AWS-LC (`aws-lc-rs`, about 3x the `rsa` crate's speed on the
/// same key: `cargo bench -p shared --bench rsa2`), the key parsed once; the `rsa` crate reads
/// the key and verifies the rare key AWS-LC does not take (over 8192 bits).
#[derive(Clone)]
pub struct PublicKey(
    rsa::PublicKey,
    #[cfg_attr(not(feature = "aws-lc"), allow(dead_code))] Option<std::sync::Arc<FastVerifier>>,
);

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} bits)", self.0.size() * 8)
    }
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let der = decode_text(text)?;
        let key = match der.label.as_deref() {
            Some("PUBLIC KEY") => rsa::PublicKey::from_public_key_der(&der.bytes)
                .map_err(|e| KeyError::Malformed(e.to_string()))?,
            Some("RSA PUBLIC KEY") => rsa::PublicKey::from_pkcs1_der(&der.bytes)
                .map_err(|e| KeyError::Malformed(e.to_string()))?,
            Some(label) => return Err(misplaced(label, Role::Public)),
            None => Self::from_der(&der.bytes)?.0,
        };
        check_bits(key.size())?;
        Ok(PublicKey::new(key))
    }

    /// SPKI DER, as KMS `GetPublicKey` returns it.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = rsa::PublicKey::from_public_key_der(der)
            .or_else(|_| rsa::PublicKey::from_pkcs1_der(der))
            .map_err(|_| {
                if rsa::PrivateKey::from_pkcs8_der(der).is_ok()
                    || rsa::PrivateKey::from_pkcs1_der(der).is_ok()
                {
                    KeyError::PrivateWherePublicBelongs
                } else {
                    KeyError::Malformed("not SPKI or PKCS#1 DER".into())
                }
            })?;
        check_bits(key.size())?;
        Ok(PublicKey::new(key))
    }

    fn new(key: rsa::PublicKey) -> PublicKey {
        let verifier = key
            .to_public_key_der()
            .ok()
            .and_then(|der| fast_verifier(der.as_bytes()))
            .map(std::sync::Arc::new);
        PublicKey(key, verifier)
    }

    /// Alipay's public key, refusing the app's own public key in its place (the commonest
    /// configuration mistake: every notification would then fail verification).
    pub fn parse_alipay_key(
        text: &str,
        app_public_key: Option<&PublicKey>,
    ) -> Result<Self, KeyError> {
        let key = Self::parse(text)?;
        if app_public_key == Some(&key) {
            return Err(KeyError::AppKeyConfiguredAsAlipayKey);
        }
        Ok(key)
    }

    /// Bare Base64 of the SPKI DER: the form Alipay's open platform asks for.
    pub fn to_spki_base64(&self) -> String {
        BASE64.encode(self.to_spki_der())
    }

    /// The SPKI DER (what a certificate or a certificate request carries).
    pub fn to_spki_der(&self) -> Vec<u8> {
        match self.0.to_public_key_der() {
            Ok(doc) => doc.as_bytes().to_vec(),
            // Encoding a key we already hold cannot fail; an empty key would fail loudly upstream.
            Err(_) => Vec::new(),
        }
    }

    /// Verifies an RSA2 (SHA256withRSA, PKCS#1 v1.5) Base64 signature over `message`.
    pub fn verify(&self, message: &[u8], sign_base64: &str) -> Result<(), VerifyError> {
        let raw = BASE64
            .decode(sign_base64.trim())
            .map_err(|_| VerifyError::NotBase64)?;
        self.verify_bytes(message, &raw)
    }

    /// As [`PublicKey::verify`], with the signature's raw bytes.
    pub fn verify_bytes(&self, message: &[u8], raw: &[u8]) -> Result<(), VerifyError> {
        let want = self.0.size();
        if raw.len() != want {
            return Err(VerifyError::WrongLength {
                got: raw.len(),
                want,
            });
        }
        #[cfg(feature = "aws-lc")]
        if let Some(verifier) = &self.1 {
            return verifier
                .verify_sig(message, raw)
                .map_err(|_| VerifyError::Mismatch);
        }
        let signature = Signature::try_from(raw).map_err(|_| VerifyError::Mismatch)?;
        VerifyingKey::<Sha256>::new(self.0.clone())
            .verify(message, &signature)
            .map_err(|_| VerifyError::Mismatch)
    }
}

#[cfg(feature = "aws-lc")]
fn fast_verifier(spki_der: &[u8]) -> Option<FastVerifier> {
    use aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
    FastVerifier::new(&RSA_PKCS1_2048_8192_SHA256, spki_der).ok()
}

#[cfg(not(feature = "aws-lc"))]
fn fast_verifier(_spki_der: &[u8]) -> Option<FastVerifier> {
    None
}

enum Role {
    Private,
    Public,
}

fn misplaced(label: &str, role: Role) -> KeyError {
    match (label, role) {
        ("PUBLIC KEY" | "RSA PUBLIC KEY", Role::Private) => KeyError::PublicWherePrivateBelongs,
        ("PRIVATE KEY" | "RSA PRIVATE KEY", Role::Public) => KeyError::PrivateWherePublicBelongs,
        ("CERTIFICATE", _) => KeyError::Certificate,
        ("ENCRYPTED PRIVATE KEY", Role::Private) => KeyError::Encrypted,
        ("ENCRYPTED PRIVATE KEY", Role::Public) => KeyError::PrivateWherePublicBelongs,
        (other, _) => KeyError::UnsupportedPem(other.to_owned()),
    }
}

fn is_public_der(der: &[u8]) -> bool {
    rsa::PublicKey::from_public_key_der(der).is_ok() || rsa::PublicKey::from_pkcs1_der(der).is_ok()
}

fn check_bits(size_bytes: usize) -> Result<(), KeyError> {
    let bits = size_bytes * 8;
    if bits < MIN_BITS {
        return Err(KeyError::TooShort(bits));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalKeySigner;

    /// AWS-LC verifies every key it accepts, and the `rsa` crate (kept for keys over 8192 bits)
    /// gives the same verdicts: genuine, one byte changed in the message or the signature.
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_and_the_rsa_crate_agree() {
        let key = AppPrivateKey::parse(include_str!(
            "../../../tests/fixtures/keys/app_private_key.pem"
        ))
        .expect("key");
        let public = key.public_key();
        assert!(public.1.is_some(), "verified with AWS-LC");
        let rsa_only = PublicKey(public.0.clone(), None);
        let message = "app_id=2021000000000001&biz_content={\"a\":\"+ % & =\"}".as_bytes();
        let signature = LocalKeySigner::new(&key).sign_now(message).expect("sign");
        let mut other_message = message.to_vec();
        other_message[3] ^= 1;
        let mut other_signature = signature.clone();
        other_signature[10] ^= 1;
        for verifier in [&public, &rsa_only] {
            assert_eq!(verifier.verify_bytes(message, &signature), Ok(()));
            assert_eq!(
                verifier.verify_bytes(&other_message, &signature),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(
                verifier.verify_bytes(message, &other_signature),
                Err(VerifyError::Mismatch)
            );
        }
    }
}
