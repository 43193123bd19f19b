//! RSA2 keys as Alipay's side holds them: its own private key, which signs answers and
//! notifications, and the application's public key, which verifies requests. Written on the
//! `rsa` crate directly, apart from the gateway's key code, so that a bug there is not repeated
//! here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use rsa::signature::{Keypair as _, SignatureEncoding as _, Signer as _, Verifier as _};
use sha2::Sha256;

/// A private key that signs SHA256withRSA (RSASSA-PKCS1-v1_5), as Alipay signs.
pub struct SigningKey(rsa::pkcs1v15::SigningKey<Sha256>);

impl SigningKey {
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(text: &str) -> Result<SigningKey, String> {
        let key = rsa::PrivateKey::from_pkcs1_pem(text)
            .or_else(|_| rsa::PrivateKey::from_pkcs8_pem(text))
            .map_err(|e| format!("not an RSA private key: {e}"))?;
        Ok(SigningKey(rsa::pkcs1v15::SigningKey::new(key)))
    }

    /// The standard Base64 signature over `content` (Alipay's `sign`).
    pub fn sign_base64(&self, content: &str) -> String {
        match self.0.try_sign(content.as_bytes()) {
            Ok(signature) => BASE64.encode(signature.to_vec()),
            Err(_) => String::new(),
        }
    }

    /// The standard Base64 signature over bytes (an Antom message's string to sign).
    pub fn sign_base64_bytes(&self, content: &[u8]) -> String {
        match self.0.try_sign(content) {
            Ok(signature) => BASE64.encode(signature.to_vec()),
            Err(_) => String::new(),
        }
    }

    /// Its public half as SPKI DER (what a certificate for it carries).
    pub fn spki_der(&self) -> Vec<u8> {
        self.0
            .verifying_key()
            .to_public_key_der()
            .map(|der| der.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// Its public half, to verify with.
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey(self.0.verifying_key())
    }
}

/// A public key that verifies SHA256withRSA signatures.
#[derive(Clone)]
pub struct VerifyKey(VerifyingKey<Sha256>);

impl VerifyKey {
    /// An SPKI DER public key (what KMS's `GetPublicKey` and a CSR carry).
    pub fn from_spki_der(der: &[u8]) -> Result<VerifyKey, String> {
        rsa::PublicKey::from_public_key_der(der)
            .map(|key| VerifyKey(VerifyingKey::new(key)))
            .map_err(|e| format!("not an RSA public key: {e}"))
    }

    /// An SPKI public key as PEM (`BEGIN PUBLIC KEY`) or as the bare Base64 the open platform
    /// shows and takes (`alipay-cli public-key` prints it so).
    pub fn from_text(text: &str) -> Result<VerifyKey, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return rsa::PublicKey::from_public_key_pem(text)
                .map(|key| VerifyKey(VerifyingKey::new(key)))
                .map_err(|e| format!("not an RSA public key: {e}"));
        }
        let der = BASE64
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|e| format!("not Base64: {e}"))?;
        VerifyKey::from_spki_der(&der)
    }

    /// Whether `sign` (standard Base64) is this key's signature over `content`.
    pub fn verify_base64(&self, content: &[u8], sign: &str) -> bool {
        BASE64
            .decode(sign.trim())
            .is_ok_and(|raw| self.verify_bytes(content, &raw))
    }

    /// Whether `signature` is this key's signature over `content`.
    pub fn verify_bytes(&self, content: &[u8], signature: &[u8]) -> bool {
        Signature::try_from(signature).is_ok_and(|s| self.0.verify(content, &s).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let text = std::fs::read_to_string(crate::fixtures().join("keys/alipay_private_key.pem"))
            .expect("key");
        let key = SigningKey::from_pem(&text).expect("key");
        let sign = key.sign_base64("a=1&b=2");
        assert!(key.verify_key().verify_base64(b"a=1&b=2", &sign));
        assert!(!key.verify_key().verify_base64(b"a=1&b=3", &sign));
        let public = std::fs::read_to_string(crate::fixtures().join("keys/alipay_public_key.pem"))
            .expect("public key");
        let published = VerifyKey::from_text(&public).expect("public key");
        assert!(published.verify_base64(b"a=1&b=2", &sign));
        // The bare Base64 the open platform shows: the PEM's body.
        let bare: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
        let bare = VerifyKey::from_text(&bare).expect("bare Base64 key");
        assert!(bare.verify_base64(b"a=1&b=2", &sign));
        let spki = VerifyKey::from_spki_der(&key.spki_der()).expect("spki");
        assert!(spki.verify_base64(b"a=1&b=2", &sign));
    }
}
