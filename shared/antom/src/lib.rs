//! Ant International's Antom acquiring API (`/ams/api/v1/…`) as pure functions over bytes and
//! keys, the way `alipay` is for OpenAPI v1: the string signed and the `Signature` header,
//! verification of answers and notifications that fails closed, amounts in minor units, and the
//! messages of the payment flow. No sockets, clock or AWS: the gateway sends what this builds.
//! What it relies on about Antom, with sources: `docs/antom/protocol.md`.

pub mod amount;
pub mod message;
pub mod report;
pub mod signature;

pub use amount::{WireAmount, WireAmountError};
pub use message::{Notification, Outcome, ResultInfo};
pub use signature::{AntomVerifyError, SignedHeaders};

use alipay::signer::{SignError, Signer};
use serde::Serialize;

/// The API paths we call (Ant's `antom_path_constants.py`).
pub mod paths {
    pub const PAY: &str = "/ams/api/v1/payments/pay";
    pub const INQUIRY_PAYMENT: &str = "/ams/api/v1/payments/inquiryPayment";
    pub const CANCEL: &str = "/ams/api/v1/payments/cancel";
    pub const REFUND: &str = "/ams/api/v1/payments/refund";
    pub const INQUIRY_REFUND: &str = "/ams/api/v1/payments/inquiryRefund";

    /// A client id starting `SANDBOX_` calls `/ams/sandbox/api/…`; the rewritten path is the one
    /// signed and sent.
    pub fn for_client(path: &str, client_id: &str) -> String {
        match (
            client_id.starts_with("SANDBOX_"),
            path.strip_prefix("/ams/api/"),
        ) {
            (true, Some(rest)) => format!("/ams/sandbox/api/{rest}"),
            _ => path.to_string(),
        }
    }
}

/// An Antom time (ISO 8601 / RFC 3339 with its offset, milliseconds or not:
/// `2026-12-05T10:30:00+08:00`, `2026-12-05T02:30:00.123Z`) as Unix milliseconds.
pub fn unix_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A request ready to send: POST `path` with these headers and exactly this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Who we are to Antom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    /// The `keyVersion` Antom holds our public key under.
    pub key_version: String,
}

impl Client {
    /// Serialises `message`, signs it at `request_time` (sent and signed verbatim; we send epoch
    /// milliseconds as the Java and Go SDKs do) and gives what to send.
    pub async fn sign<T: Serialize>(
        &self,
        signer: &dyn Signer,
        path: &str,
        request_time: &str,
        message: &T,
    ) -> Result<SignedRequest, SignError> {
        let body = serde_json::to_vec(message)
            .map_err(|e| SignError::Refused(format!("serialising the request: {e}")))?;
        self.sign_body(signer, path, request_time, body).await
    }

    /// As [`Client::sign`], with the body's bytes.
    pub async fn sign_body(
        &self,
        signer: &dyn Signer,
        path: &str,
        request_time: &str,
        body: Vec<u8>,
    ) -> Result<SignedRequest, SignError> {
        let path = paths::for_client(path, &self.client_id);
        let signature = signature::sign_request(
            signer,
            &self.key_version,
            "POST",
            &path,
            &self.client_id,
            request_time,
            &body,
        )
        .await?;
        Ok(SignedRequest {
            headers: vec![
                (
                    "content-type",
                    "application/json; charset=UTF-8".to_string(),
                ),
                ("client-id", self.client_id.clone()),
                ("request-time", request_time.to_string()),
                ("signature", signature),
            ],
            path,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_any_offset_read_as_the_same_instant() {
        assert_eq!(
            unix_ms("2025-12-05T10:00:00+08:00"),
            Some(1_764_900_000_000)
        );
        assert_eq!(unix_ms("2025-12-05T02:00:00.250Z"), Some(1_764_900_000_250));
        assert_eq!(unix_ms("2025-12-05 10:00:00"), None);
    }

    #[test]
    fn sandbox_clients_call_the_sandbox_path() {
        assert_eq!(
            paths::for_client(paths::PAY, "SANDBOX_5YBZ"),
            "/ams/sandbox/api/v1/payments/pay"
        );
        assert_eq!(paths::for_client(paths::PAY, "5YBZ"), paths::PAY);
    }
}
