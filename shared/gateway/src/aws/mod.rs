//! The edge to AWS: one SDK configuration for every function, and the KMS signer.

pub mod sealed_key;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use alipay::keys::PublicKey;
use alipay::signer::{BoxFuture, SignError, Signer};

/// Loads the SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL` for the local stand-in), with bounded retries and time-outs: a Lambda
/// waiting on a throttled table must give up well within its own time-out.
pub async fn load_config() -> aws_config::SdkConfig {
    load_config_with(request_timeouts()).await
}

/// As [`load_config`], for a batch job with minutes to spend (the daily reconciliation): one
/// slow page of a day's Query must not fail the whole day's run.
pub async fn load_batch_config() -> aws_config::SdkConfig {
    load_config_with(timeouts(Duration::from_secs(10), Duration::from_secs(30))).await
}

/// Three attempts, backing off 20 ms to 500 ms (throttling and transient errors), within
/// `timeouts`.
async fn load_config_with(timeouts: TimeoutConfig) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(500)),
        )
        .timeout_config(timeouts)
        .load()
        .await
}

/// The request path's time-outs ([`load_config`]): 2 s per attempt, 5 s in all.
pub fn request_timeouts() -> TimeoutConfig {
    timeouts(Duration::from_secs(2), Duration::from_secs(5))
}

/// Time-outs with a 1 s connect time-out.
pub fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// KMS accepts at most this many bytes with `MessageType=RAW`; longer messages are hashed here
/// and sent as a digest.
pub const KMS_RAW_MESSAGE_LIMIT: usize = 4096;

/// Signs with an asymmetric KMS key (`RSA_2048`, `SIGN_VERIFY`) using
/// `RSASSA_PKCS1_V1_5_SHA_256`: exactly one KMS call per signature. The private key never
/// leaves KMS.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    public_key: OnceCell<PublicKey>,
}

impl KmsSigner {
    /// `key_id` may be a key id, a key ARN, an alias (`alias/NAME`) or an alias ARN.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsSigner {
            client,
            key_id: key_id.into(),
            public_key: OnceCell::new(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key's public half, fetched once (`kms:GetPublicKey`) and kept for the life of the
    /// process.
    pub async fn public_key(&self) -> Result<&PublicKey, SignError> {
        self.public_key
            .get_or_try_init(|| async {
                let answer = self
                    .client
                    .get_public_key()
                    .key_id(&self.key_id)
                    .send()
                    .await
                    .map_err(|e| classify(&e, "GetPublicKey"))?;
                let der = answer
                    .public_key()
                    .ok_or_else(|| SignError::Refused("KMS returned no public key".into()))?;
                PublicKey::from_der(der.as_ref())
                    .map_err(|e| SignError::Refused(format!("KMS key {}: {e}", self.key_id)))
            })
            .await
    }

    async fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let (payload, message_type) = kms_payload(message);
        let answer = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(payload))
            .message_type(message_type)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|e| classify(&e, "Sign"))?;
        answer
            .signature()
            .map(|blob| blob.as_ref().to_vec())
            .ok_or_else(|| SignError::Refused("KMS returned no signature".into()))
    }
}

/// What KMS is asked to sign: the message itself up to [`KMS_RAW_MESSAGE_LIMIT`] bytes, its
/// SHA-256 (sent as a digest, which KMS does not hash again) above that.
pub fn kms_payload(message: &[u8]) -> (Vec<u8>, MessageType) {
    if message.len() <= KMS_RAW_MESSAGE_LIMIT {
        (message.to_vec(), MessageType::Raw)
    } else {
        (Sha256::digest(message).to_vec(), MessageType::Digest)
    }
}

impl Signer for KmsSigner {
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(self.sign_message(message))
    }
}

/// Throttling and transport failures can pass; permission, key-state and key-type errors need
/// an operator.
pub(crate) fn classify<E, R>(
    error: &aws_sdk_kms::error::SdkError<E, R>,
    operation: &str,
) -> SignError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kms::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown");
            let message = format!(
                "kms:{operation} {code}: {}",
                service.err().message().unwrap_or("")
            );
            match code {
                "ThrottlingException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
                | "LimitExceededException" => SignError::Unavailable(message),
                _ => SignError::Refused(message),
            }
        }
        other => SignError::Unavailable(format!("kms:{operation}: {}", store::error_chain(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_sent_as_their_digest() {
        let limit = vec![b'a'; KMS_RAW_MESSAGE_LIMIT];
        assert_eq!(kms_payload(&limit), (limit.clone(), MessageType::Raw));
        let long = vec![b'a'; KMS_RAW_MESSAGE_LIMIT + 1];
        let (payload, kind) = kms_payload(&long);
        assert_eq!(kind, MessageType::Digest);
        assert_eq!(payload, Sha256::digest(&long).to_vec());
    }
}
