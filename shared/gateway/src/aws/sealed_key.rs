//! Opt-in signing past KMS's request quota: the application's private key, sealed (encrypted)
//! under a KMS symmetric key, opened once per execution environment with one `kms:Decrypt`, and
//! then used to sign in process with aws-lc-rs (AWS-LC, already linked for TLS).
//!
//! The default stays `kms:Sign`, where the key never leaves KMS. Here the key is in the
//! function's memory for the life of the execution environment: whoever can run code in the
//! function, or read its memory, can take the key, where with `kms:Sign` they could only sign
//! while they held the role. What this buys: no KMS call per signature (KMS's RSA quota is 500
//! requests/s per account and Region, shared), and a signature in well under a millisecond.
//!
//! The sealed key is bound to its use by KMS's encryption context (`purpose`, `app_id`): a
//! ciphertext made for anything else does not open, and CloudTrail records every opening with
//! that context. The decrypted bytes are wiped when dropped (`Zeroizing`); AWS-LC cleanses the
//! key's own memory when the key is freed. Nothing here logs or formats the key.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use alipay::keys::PublicKey;
use alipay::signer::{BoxFuture, SignError, Signer};

/// What a sealed application key is for, in KMS's encryption context.
pub const PURPOSE: &str = "alipay-app-private-key";

/// Signs in process with the application's private key (opened from its sealed form).
pub struct LocalSigner {
    key: RsaKeyPair,
    public_key: PublicKey,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalSigner({:?}, private half redacted)",
            self.public_key
        )
    }
}

impl LocalSigner {
    /// From the private key's DER, PKCS#8 or PKCS#1 (an RSA key of 2048 bits or more).
    pub fn from_der(der: &[u8]) -> Result<Self, SignError> {
        let key = RsaKeyPair::from_pkcs8(der)
            .or_else(|_| RsaKeyPair::from_der(der))
            .map_err(|e| {
                SignError::Refused(format!("the sealed key is not an RSA private key: {e}"))
            })?;
        let spki = key.public_key().as_der().map_err(|_| {
            SignError::Refused("the sealed key's public half cannot be encoded".into())
        })?;
        let public_key = PublicKey::from_der(spki.as_ref())
            .map_err(|e| SignError::Refused(format!("the sealed key: {e}")))?;
        Ok(LocalSigner { key, public_key })
    }

    /// Opens a sealed key: one `kms:Decrypt` with `sealing_key_id` (only that key is accepted)
    /// and the encryption context of `app_id`.
    pub async fn unseal(
        kms: &aws_sdk_kms::Client,
        sealing_key_id: &str,
        sealed: &[u8],
        app_id: &str,
    ) -> Result<Self, SignError> {
        let mut answer = kms
            .decrypt()
            .key_id(sealing_key_id)
            .ciphertext_blob(Blob::new(sealed))
            .encryption_context("purpose", PURPOSE)
            .encryption_context("app_id", app_id)
            .send()
            .await
            .map_err(|e| crate::aws::classify(&e, "Decrypt"))?;
        let plaintext = Zeroizing::new(
            answer
                .plaintext
                .take()
                .map(Blob::into_inner)
                .ok_or_else(|| SignError::Refused("kms:Decrypt returned nothing".into()))?,
        );
        Self::from_der(&plaintext)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (Alipay's RSA2).
    pub fn sign_now(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignError::Refused("local RSA signing failed".into()))?;
        Ok(signature)
    }
}

impl Signer for LocalSigner {
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(std::future::ready(self.sign_now(message)))
    }
}

/// A new RSA-2048 application private key, PKCS#8 DER, generated in memory (`alipay-cli seal-key`
/// without `--private-key`: only its sealed form and its public half leave the process).
pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, SignError> {
    use aws_lc_rs::encoding::Pkcs8V1Der;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| SignError::Refused("RSA key generation failed".into()))?;
    let der: Pkcs8V1Der<'static> = key
        .as_der()
        .map_err(|_| SignError::Refused("the new key cannot be encoded".into()))?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

/// Seals a private key (its DER) for `app_id` under the KMS symmetric key `sealing_key_id`: the
/// ciphertext to configure as `APP_PRIVATE_KEY_SEALED` (`alipay-cli seal-key`).
pub async fn seal(
    kms: &aws_sdk_kms::Client,
    sealing_key_id: &str,
    private_key_der: &[u8],
    app_id: &str,
) -> Result<Vec<u8>, SignError> {
    // Refuse to seal what would not open as a key.
    LocalSigner::from_der(private_key_der)?;
    let answer = kms
        .encrypt()
        .key_id(sealing_key_id)
        .plaintext(Blob::new(private_key_der))
        .encryption_context("purpose", PURPOSE)
        .encryption_context("app_id", app_id)
        .send()
        .await
        .map_err(|e| crate::aws::classify(&e, "Encrypt"))?;
    answer
        .ciphertext_blob()
        .map(|blob| blob.as_ref().to_vec())
        .ok_or_else(|| SignError::Refused("kms:Encrypt returned nothing".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alipay::keys::AppPrivateKey;
    use alipay::signer::LocalKeySigner;

    const PKCS8: &str = include_str!("../../../../tests/fixtures/keys/app_private_key_pkcs8.pem");
    const PKCS1: &str = include_str!("../../../../tests/fixtures/keys/app_private_key.pem");

    fn der(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    /// PKCS#1 v1.5 is deterministic: aws-lc-rs must produce the very bytes RustCrypto's `rsa`
    /// (the path the vectors check) produces, and its public half must be the same key.
    #[test]
    fn signs_exactly_as_the_vector_checked_signer() {
        let reference = LocalKeySigner::new(&AppPrivateKey::parse(PKCS8).expect("key"));
        for pem in [PKCS8, PKCS1] {
            let local = LocalSigner::from_der(&der(pem)).expect("key");
            assert_eq!(local.public_key(), reference.public_key());
            for message in [
                &b""[..],
                "app_id=2021000000000001&biz_content={\"subject\":\"会员\"}".as_bytes(),
            ] {
                assert_eq!(
                    local.sign_now(message).expect("sign"),
                    reference.sign_now(message).expect("sign")
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_private_key_and_never_prints_one() {
        let public = der(include_str!(
            "../../../../tests/fixtures/keys/app_public_key.pem"
        ));
        assert!(LocalSigner::from_der(&public).is_err());
        assert!(LocalSigner::from_der(b"not a key").is_err());
        let short = der(include_str!(
            "../../../../tests/fixtures/keys/short_1024_private_key.pem"
        ));
        assert!(
            LocalSigner::from_der(&short).is_err(),
            "1024-bit keys are refused"
        );
        let local = LocalSigner::from_der(&der(PKCS8)).expect("key");
        let shown = format!("{local:?}");
        assert!(
            shown.contains("redacted") && !shown.contains("MII"),
            "{shown}"
        );
    }
}
