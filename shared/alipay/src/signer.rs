//! Who signs our requests: the [`Signer`] trait, async so that KMS can implement it, and a
//! local-key implementation for tests, the CLI and the local stack.

use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use sha2::Sha256;

use super::keys::{AppPrivateKey, PublicKey};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The signing service could not be reached or was throttled: try again later.
    #[error("signing service unavailable: {0}")]
    Unavailable(String),
    /// The signing service refused (permissions, disabled key, wrong key type): a configuration
    /// problem that retrying will not fix.
    #[error("signing refused: {0}")]
    Refused(String),
}

/// Produces RSA2 signatures (RSASSA-PKCS1-v1_5 over SHA-256) with the app private key.
pub trait Signer: Send + Sync {
    /// The raw signature bytes over `message`.
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignError>>;
}

/// Signs `signing_string` and gives Alipay's `sign` value (standard Base64).
pub async fn sign_base64(signer: &dyn Signer, signing_string: &str) -> Result<String, SignError> {
    let raw = signer.sign(signing_string.as_bytes()).await?;
    Ok(BASE64.encode(raw))
}

/// Signs in process with a key held in memory.
pub struct LocalKeySigner {
    key: SigningKey<Sha256>,
    public_key: PublicKey,
}

impl LocalKeySigner {
    pub fn new(key: &AppPrivateKey) -> Self {
        LocalKeySigner {
            key: SigningKey::new(key.rsa().clone()),
            public_key: key.public_key(),
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub fn sign_now(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key
            .try_sign(message)
            .map(|signature| signature.to_vec())
            .map_err(|e| SignError::Refused(e.to_string()))
    }
}

impl Signer for LocalKeySigner {
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(std::future::ready(self.sign_now(message)))
    }
}
