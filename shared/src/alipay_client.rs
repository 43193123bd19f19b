//! The edge to Alipay: signs a request through the [`Signer`], POSTs it to `gateway.do`, and
//! verifies the answer. Everything protocol-shaped is in [`crate::alipay`]; this is transport.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::alipay::keys::PublicKey;
use crate::alipay::request::{AlipayRequest, AppParams, SignedRequest, UnsignedRequest};
use crate::alipay::response::{ResponseError, VerifiedResponse, verify_response};
use crate::alipay::signer::{SignError, Signer};
use crate::aws::error_chain;

/// Alipay's answers are small; anything larger is refused unread.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer in time: the call may or may not have taken effect.
    #[error("Alipay did not answer within {0:?}")]
    Timeout(Duration),
    /// The call could not be made or Alipay answered with an HTTP error.
    #[error("Alipay unavailable: {0}")]
    Unavailable(String),
    /// An answer came but cannot be trusted (bad signature, unexpected shape).
    #[error("Alipay's answer was refused: {0}")]
    Untrusted(ResponseError),
    #[error(transparent)]
    Sign(SignError),
    /// Not called: the channel's circuit is open (Alipay, or our path to it, is failing).
    #[error("Alipay channel {channel} is failing; calls are refused for now")]
    Open {
        channel: String,
        retry_after_ms: i64,
    },
}

/// A configured Alipay client; build once per process and share.
#[derive(Clone)]
pub struct AlipayClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    gateway_url: String,
    app: AppParams,
    alipay_key: PublicKey,
    timeout: Duration,
}

impl AlipayClient {
    pub fn new(
        gateway_url: String,
        app: AppParams,
        alipay_key: PublicKey,
        timeout: Duration,
    ) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("loading the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(AlipayClient {
            http,
            gateway_url,
            app,
            alipay_key,
            timeout,
        })
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The longest wait for one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn app(&self) -> &AppParams {
        &self.app
    }

    /// Builds and signs a request (one signer call); no network.
    pub async fn sign(
        &self,
        request: &AlipayRequest,
        signer: &dyn Signer,
        now_ms: i64,
    ) -> Result<SignedRequest, SignError> {
        UnsignedRequest::new(request, &self.app, now_ms.div_euclid(1000))
            .sign(signer)
            .await
    }

    /// A server call: sign, POST the form, verify the answer; bounded by the configured time-out.
    pub async fn call(
        &self,
        request: &AlipayRequest,
        signer: &dyn Signer,
        now_ms: i64,
    ) -> Result<VerifiedResponse, CallError> {
        self.call_within(request, signer, now_ms, self.timeout)
            .await
    }

    /// As [`AlipayClient::call`], with signing and the exchange together bounded by `limit`
    /// (or the configured time-out, when shorter): what the caller's deadline leaves.
    #[tracing::instrument(skip_all, fields(method = request.method()))]
    pub async fn call_within(
        &self,
        request: &AlipayRequest,
        signer: &dyn Signer,
        now_ms: i64,
        limit: Duration,
    ) -> Result<VerifiedResponse, CallError> {
        let limit = limit.min(self.timeout);
        let exchange = async {
            let signed = self
                .sign(request, signer, now_ms)
                .await
                .map_err(CallError::Sign)?;
            let body = self.post(&signed).await?;
            Ok::<_, CallError>((signed, body))
        };
        let (signed, body) = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| CallError::Timeout(limit))??;
        let verified = verify_response(&body, signed.method(), &self.alipay_key)
            .map_err(CallError::Untrusted)?;
        tracing::info!(
            code = %verified.status.code,
            sub_code = verified.status.sub_code.as_deref().unwrap_or(""),
            signed = verified.signed,
            "alipay answered"
        );
        Ok(verified)
    }

    /// Downloads `url` (the bill's, from a verified answer) into `file` as it arrives, at most
    /// `max_bytes`, within `limit`. Only HTTPS, or HTTP to this machine (the local simulator).
    pub async fn download(
        &self,
        url: &str,
        file: &mut tokio::fs::File,
        max_bytes: u64,
        limit: Duration,
    ) -> Result<u64, CallError> {
        use tokio::io::AsyncWriteExt as _;
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| CallError::Unavailable("the download URL is not a URL".into()))?;
        let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if uri.scheme_str() != Some("https") && !(uri.scheme_str() == Some("http") && loopback) {
            return Err(CallError::Unavailable(
                "the download URL is not HTTPS".into(),
            ));
        }
        let fetch = async {
            let request = hyper::Request::get(uri)
                .body(Full::new(Bytes::new()))
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CallError::Unavailable(error_chain(&e)))?;
            if !response.status().is_success() {
                return Err(CallError::Unavailable(format!(
                    "download: HTTP {}",
                    response.status()
                )));
            }
            let mut body = response.into_body();
            let mut written = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| CallError::Unavailable(format!("download: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    written += data.len() as u64;
                    if written > max_bytes {
                        return Err(CallError::Unavailable(format!(
                            "download: larger than {max_bytes} bytes"
                        )));
                    }
                    file.write_all(&data)
                        .await
                        .map_err(|e| CallError::Unavailable(format!("writing the bill: {e}")))?;
                }
            }
            file.flush()
                .await
                .map_err(|e| CallError::Unavailable(format!("writing the bill: {e}")))?;
            Ok(written)
        };
        tokio::time::timeout(limit, fetch)
            .await
            .map_err(|_| CallError::Timeout(limit))?
    }

    async fn post(&self, signed: &SignedRequest) -> Result<String, CallError> {
        let request = hyper::Request::post(&self.gateway_url)
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(Full::new(Bytes::from(signed.form_body())))
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| CallError::Unavailable(error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Unavailable(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError::Unavailable(format!("HTTP {status}")));
        }
        String::from_utf8(body.to_vec())
            .map_err(|_| CallError::Unavailable("the answer is not UTF-8".into()))
    }
}
