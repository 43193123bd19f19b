//! The edge to Alipay: signs a request through the [`Signer`], POSTs it to `gateway.do`, and
//! verifies the answer. Everything protocol-shaped is in [`crate::alipay`]; this is transport.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::sync::Arc;

use alipay::request::{AlipayRequest, AppParams, SignedRequest, UnsignedRequest};
use alipay::response::{
    CertDownloadResult, Disposition, ResponseError, VerifiedResponse, extract, verify_response_with,
};
use alipay::signer::{BoxFuture, SignError, Signer};
use alipay::trust::AlipayTrust;
use store::error_chain;

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

/// Where Alipay certificates learned at run time are kept, so that every function (the notify
/// function, which never calls Alipay, among them) and every new process knows them.
pub trait CertCache: Send + Sync {
    /// The PEM text stored for `sn`, if any.
    fn load<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Keeps a certificate that was checked; failures are logged, not fatal.
    fn save<'a>(&'a self, sn: &'a str, pem: &'a str, not_after_unix: u64) -> BoxFuture<'a, ()>;
}

/// A configured Alipay client; build once per process and share.
#[derive(Clone)]
pub struct AlipayClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    gateway_url: String,
    app: AppParams,
    trust: Arc<AlipayTrust>,
    cert_cache: Option<Arc<dyn CertCache>>,
    timeout: Duration,
}

impl AlipayClient {
    /// A client whose requests carry `app` (with the certificate SNs of `trust` in certificate
    /// mode) and whose answers are verified with `trust`.
    pub fn new(
        gateway_url: String,
        mut app: AppParams,
        trust: Arc<AlipayTrust>,
        timeout: Duration,
    ) -> Result<Self, String> {
        app.cert_sns = trust.cert_sns().cloned();
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
            trust,
            cert_cache: None,
            timeout,
        })
    }

    /// Where learned Alipay certificates are looked up first and kept.
    pub fn with_cert_cache(mut self, cache: Arc<dyn CertCache>) -> Self {
        self.cert_cache = Some(cache);
        self
    }

    /// Certificate mode: the SNs this client's requests carry (a standby key has its own
    /// application certificate).
    pub fn set_cert_sns(&mut self, sns: Option<alipay::trust::CertSns>) {
        self.app.cert_sns = sns;
    }

    pub fn trust(&self) -> &Arc<AlipayTrust> {
        &self.trust
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
            match verify_response_with(&body, signed.method(), &self.trust) {
                Err(ResponseError::UnknownCert(sn)) => {
                    self.fetch_cert(&sn, signer, now_ms).await?;
                    verify_response_with(&body, signed.method(), &self.trust)
                        .map_err(CallError::Untrusted)
                }
                verified => verified.map_err(CallError::Untrusted),
            }
        };
        let verified = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| CallError::Timeout(limit))??;
        tracing::info!(
            code = %verified.status.code,
            sub_code = verified.status.sub_code.as_deref().unwrap_or(""),
            signed = verified.signed,
            "alipay answered"
        );
        Ok(verified)
    }

    /// Learns Alipay's certificate `sn`: from the cache when another process stored it, else
    /// downloaded with `alipay.open.app.alipaycert.download`. Either way it must chain to the
    /// configured root bundle; the download's own answer must then verify with it.
    async fn fetch_cert(
        &self,
        sn: &str,
        signer: &dyn Signer,
        now_ms: i64,
    ) -> Result<(), CallError> {
        let now_unix = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
        let untrusted = |e: alipay::cert::CertError| {
            CallError::Untrusted(ResponseError::Unexpected {
                method: "alipay.open.app.alipaycert.download".into(),
                problem: format!("certificate {sn}: {e}"),
            })
        };
        if let Some(cache) = &self.cert_cache
            && let Some(pem) = cache.load(sn).await
        {
            match self.trust.learn(&pem, sn, now_unix) {
                Ok(_) => return Ok(()),
                Err(error) => {
                    tracing::warn!(security = true, sn, error = %error, "stored Alipay certificate refused")
                }
            }
        }
        let request = AlipayRequest::CertDownload {
            alipay_cert_sn: sn.to_owned(),
        };
        let signed = self
            .sign(&request, signer, now_ms)
            .await
            .map_err(CallError::Sign)?;
        let body = self.post(&signed).await?;
        let raw = extract(&body, signed.method()).map_err(CallError::Untrusted)?;
        let result: CertDownloadResult = serde_json::from_str(raw.content).map_err(|e| {
            CallError::Untrusted(ResponseError::Unexpected {
                method: signed.method().into(),
                problem: format!("no alipay_cert_content: {e}"),
            })
        })?;
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(result.alipay_cert_content.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| untrusted(alipay::cert::CertError::NotPem { index: 0 }))?;
        let not_after = self.trust.learn(&pem, sn, now_unix).map_err(untrusted)?;
        // The download answer itself must verify, now that its certificate is known.
        let answer = verify_response_with(&body, signed.method(), &self.trust)
            .map_err(CallError::Untrusted)?;
        if answer.disposition() != Disposition::Success {
            return Err(CallError::Unavailable(format!(
                "{} answered {}",
                signed.method(),
                answer.status.code
            )));
        }
        tracing::warn!(
            sn,
            "learned a new Alipay certificate (Alipay rotated its certificate)"
        );
        if let Some(cache) = &self.cert_cache {
            cache.save(sn, &pem, not_after).await;
        }
        Ok(())
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

/// The store as the Alipay client's certificate cache.
pub struct StoreCertCache(pub store::Store);

impl CertCache for StoreCertCache {
    fn load<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.0.alipay_cert(sn).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(error = %error, "reading stored Alipay certificates");
                    None
                }
            }
        })
    }

    fn save<'a>(&'a self, sn: &'a str, pem: &'a str, not_after_unix: u64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let now = crate::clock::now_ms();
            if let Err(error) = self.0.put_alipay_cert(sn, pem, not_after_unix, now).await {
                tracing::warn!(error = %error, "keeping a learned Alipay certificate");
            }
        })
    }
}
