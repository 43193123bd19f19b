//! Antom's signatures: the string signed, the `Signature` header, and verification of answers and
//! notifications that fails closed (docs/antom/protocol.md; Ant's SDKs
//! `tools/signature_tool.py`, `SignatureTool.java`).
//!
//! String signed, for a request, an answer and a notification alike:
//! `"<METHOD> <path>\n<client-id>.<time>.<body>"`, the path without host, the time as sent in
//! `request-time` / `response-time` (verbatim), the body the exact bytes on the wire.

use alipay::signer::{SignError, Signer};
use alipay::{PublicKey, VerifyError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The only algorithm Antom names: SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256).
pub const ALGORITHM: &str = "RSA256";

/// The bytes signed.
pub fn signing_bytes(
    method: &str,
    path: &str,
    client_id: &str,
    time: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        method.len() + path.len() + client_id.len() + time.len() + body.len() + 4,
    );
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(client_id.as_bytes());
    out.push(b'.');
    out.extend_from_slice(time.as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

/// The `Signature` header for raw signature bytes:
/// `algorithm=RSA256,keyVersion=<v>,signature=<URL-encoded Base64>`.
pub fn header_value(key_version: &str, raw_signature: &[u8]) -> String {
    format!(
        "algorithm={ALGORITHM},keyVersion={key_version},signature={}",
        encode_signature(raw_signature)
    )
}

/// Base64, then URL-encoded as the SDKs do (`quote_plus`: `+` `/` `=` become `%2B` `%2F` `%3D`).
pub fn encode_signature(raw_signature: &[u8]) -> String {
    utf8_percent_encode(&BASE64.encode(raw_signature), NON_ALPHANUMERIC).to_string()
}

/// Signs a request and gives its `Signature` header.
pub async fn sign_request(
    signer: &dyn Signer,
    key_version: &str,
    method: &str,
    path: &str,
    client_id: &str,
    request_time: &str,
    body: &[u8],
) -> Result<String, SignError> {
    let raw = signer
        .sign(&signing_bytes(method, path, client_id, request_time, body))
        .await?;
    Ok(header_value(key_version, &raw))
}

/// A `Signature` header, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub algorithm: Option<String>,
    pub key_version: Option<String>,
    /// The signature's raw bytes.
    pub signature: Vec<u8>,
}

/// Why an answer or a notification is not taken as Antom's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AntomVerifyError {
    #[error("the signature header is missing: an unsigned message is never trusted")]
    MissingSignature,
    #[error("the {0} header is missing")]
    MissingTime(&'static str),
    #[error("the client-id header is missing")]
    MissingClientId,
    #[error("the client-id header names another client")]
    WrongClientId,
    #[error("the signature header has no signature= part, or it is not URL-encoded Base64")]
    MalformedSignature,
    #[error("the signature header names algorithm {0}, not RSA256")]
    UnknownAlgorithm(String),
    #[error("the signature does not verify: {0}")]
    BadSignature(VerifyError),
}

/// Reads a `Signature` header. Its parts are comma-separated `name=value`; the signature is the
/// last part (Base64 URL-encoded, `+` read as a space as `URLDecoder`/`unquote_plus` do, which a
/// Base64 text never contains).
pub fn parse_header(value: &str) -> Result<SignatureHeader, AntomVerifyError> {
    // The SDKs take everything after "signature=": a URL-encoded signature holds no comma.
    let (head, encoded) = value
        .split_once("signature=")
        .ok_or(AntomVerifyError::MalformedSignature)?;
    let mut algorithm = None;
    let mut key_version = None;
    for part in head.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("algorithm", v)) => algorithm = Some(v.to_string()),
            Some(("keyVersion", v)) => key_version = Some(v.to_string()),
            _ => {}
        }
    }
    if let Some(name) = &algorithm
        && name != ALGORITHM
    {
        return Err(AntomVerifyError::UnknownAlgorithm(name.clone()));
    }
    let plus_as_space = encoded.replace('+', " ");
    let text = percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map_err(|_| AntomVerifyError::MalformedSignature)?;
    let signature = BASE64
        .decode(text.as_bytes())
        .map_err(|_| AntomVerifyError::MalformedSignature)?;
    Ok(SignatureHeader {
        algorithm,
        key_version,
        signature,
    })
}

/// The three headers a signed message carries, as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedHeaders<'a> {
    pub client_id: Option<&'a str>,
    /// `response-time` on an answer, `request-time` on a notification.
    pub time: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl<'a> SignedHeaders<'a> {
    /// Picks the headers out of `(name, value)` pairs, names compared without case.
    pub fn from_pairs<I>(pairs: I, time_header: &str) -> SignedHeaders<'a>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut headers = SignedHeaders::default();
        for (name, value) in pairs {
            if name.eq_ignore_ascii_case("client-id") {
                headers.client_id = Some(value);
            } else if name.eq_ignore_ascii_case(time_header) {
                headers.time = Some(value);
            } else if name.eq_ignore_ascii_case("signature") {
                headers.signature = Some(value);
            }
        }
        headers
    }
}

/// Verifies an answer to `METHOD path` (fail closed: no signature, no time or no client id is a
/// refusal, whatever the body says; Ant's Java and Python SDKs let some of those through).
pub fn verify_response(
    antom_key: &PublicKey,
    our_client_id: &str,
    method: &str,
    request_path: &str,
    headers: SignedHeaders<'_>,
    body: &[u8],
) -> Result<SignatureHeader, AntomVerifyError> {
    verify(
        antom_key,
        our_client_id,
        method,
        request_path,
        headers,
        body,
        "response-time",
    )
}

/// Verifies a notification POSTed to our endpoint at `our_path` (the path only, host excluded).
pub fn verify_notification(
    antom_key: &PublicKey,
    our_client_id: &str,
    our_path: &str,
    headers: SignedHeaders<'_>,
    body: &[u8],
) -> Result<SignatureHeader, AntomVerifyError> {
    verify(
        antom_key,
        our_client_id,
        "POST",
        our_path,
        headers,
        body,
        "request-time",
    )
}

fn verify(
    antom_key: &PublicKey,
    our_client_id: &str,
    method: &str,
    path: &str,
    headers: SignedHeaders<'_>,
    body: &[u8],
    time_header: &'static str,
) -> Result<SignatureHeader, AntomVerifyError> {
    let signature = headers
        .signature
        .filter(|s| !s.is_empty())
        .ok_or(AntomVerifyError::MissingSignature)?;
    let time = headers
        .time
        .filter(|t| !t.is_empty())
        .ok_or(AntomVerifyError::MissingTime(time_header))?;
    let client_id = headers
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or(AntomVerifyError::MissingClientId)?;
    let header = parse_header(signature)?;
    antom_key
        .verify_bytes(
            &signing_bytes(method, path, client_id, time, body),
            &header.signature,
        )
        .map_err(AntomVerifyError::BadSignature)?;
    // Checked after the signature, so that a signed message for another client says so.
    if client_id != our_client_id {
        return Err(AntomVerifyError::WrongClientId);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alipay::{AppPrivateKey, LocalKeySigner};

    const KEY: &str = include_str!("../../../tests/fixtures/keys/app_private_key.pem");

    fn signer() -> LocalKeySigner {
        LocalKeySigner::new(&AppPrivateKey::parse(KEY).unwrap())
    }

    fn signed(body: &[u8], time: &str) -> String {
        let signer = signer();
        let raw = signer
            .sign_now(&signing_bytes("POST", "/notify/antom", "CID", time, body))
            .unwrap();
        header_value("1", &raw)
    }

    #[test]
    fn the_signed_string_is_method_path_client_time_body() {
        assert_eq!(
            signing_bytes(
                "POST",
                "/ams/api/v1/payments/pay",
                "SANDBOX_5Y",
                "1685599933871",
                b"{\"a\":1}"
            ),
            b"POST /ams/api/v1/payments/pay\nSANDBOX_5Y.1685599933871.{\"a\":1}".to_vec()
        );
    }

    #[test]
    fn the_header_is_url_encoded_base64_and_reads_back() {
        let header = header_value("1", &[0xfb, 0xff, 0xbf, 0x00]);
        assert_eq!(
            header,
            "algorithm=RSA256,keyVersion=1,signature=%2B%2F%2B%2FAA%3D%3D"
        );
        let read = parse_header(&header).unwrap();
        assert_eq!(read.signature, vec![0xfb, 0xff, 0xbf, 0x00]);
        assert_eq!(read.key_version.as_deref(), Some("1"));
        assert_eq!(
            parse_header("algorithm=RSA,keyVersion=1,signature=AA%3D%3D"),
            Err(AntomVerifyError::UnknownAlgorithm("RSA".into()))
        );
        assert_eq!(
            parse_header("keyVersion=1"),
            Err(AntomVerifyError::MalformedSignature)
        );
        // A raw '+' is read as a space (as URLDecoder and unquote_plus do): not Base64.
        assert_eq!(
            parse_header("signature=+/+/AA=="),
            Err(AntomVerifyError::MalformedSignature)
        );
    }

    #[test]
    fn a_notification_verifies_only_as_signed_and_only_with_every_header() {
        let key = signer().public_key().clone();
        let body = br#"{"notifyType":"PAYMENT_RESULT"}"#;
        let signature = signed(body, "2026-12-05T10:00:00+08:00");
        let headers = SignedHeaders {
            client_id: Some("CID"),
            time: Some("2026-12-05T10:00:00+08:00"),
            signature: Some(&signature),
        };
        assert!(verify_notification(&key, "CID", "/notify/antom", headers, body).is_ok());
        let refuse = |headers: SignedHeaders<'_>, path: &str, body: &[u8]| {
            verify_notification(&key, "CID", path, headers, body).unwrap_err()
        };
        assert!(matches!(
            refuse(headers, "/notify/other", body),
            AntomVerifyError::BadSignature(_)
        ));
        assert!(matches!(
            refuse(
                headers,
                "/notify/antom",
                br#"{"notifyType":"PAYMENT_PENDING"}"#
            ),
            AntomVerifyError::BadSignature(_)
        ));
        let late = SignedHeaders {
            time: Some("2026-12-05T10:00:01+08:00"),
            ..headers
        };
        assert!(matches!(
            refuse(late, "/notify/antom", body),
            AntomVerifyError::BadSignature(_)
        ));
        let none = SignedHeaders {
            signature: None,
            ..headers
        };
        assert_eq!(
            refuse(none, "/notify/antom", body),
            AntomVerifyError::MissingSignature
        );
        let empty = SignedHeaders {
            signature: Some(""),
            ..headers
        };
        assert_eq!(
            refuse(empty, "/notify/antom", body),
            AntomVerifyError::MissingSignature
        );
        let no_time = SignedHeaders {
            time: None,
            ..headers
        };
        assert_eq!(
            refuse(no_time, "/notify/antom", body),
            AntomVerifyError::MissingTime("request-time")
        );
        let no_client = SignedHeaders {
            client_id: None,
            ..headers
        };
        assert_eq!(
            refuse(no_client, "/notify/antom", body),
            AntomVerifyError::MissingClientId
        );
        assert_eq!(
            verify_notification(&key, "OTHER", "/notify/antom", headers, body).unwrap_err(),
            AntomVerifyError::WrongClientId
        );
    }

    #[test]
    fn headers_are_found_without_case() {
        let pairs = [
            ("Client-Id", "C"),
            ("Response-Time", "T"),
            ("SIGNATURE", "S"),
            ("request-time", "R"),
        ];
        let headers = SignedHeaders::from_pairs(pairs, "response-time");
        assert_eq!(
            (headers.client_id, headers.time, headers.signature),
            (Some("C"), Some("T"), Some("S"))
        );
    }
}
