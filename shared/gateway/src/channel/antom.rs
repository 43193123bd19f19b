//! The Antom channel in a function that calls Antom: its HTTP client, its signing key (its own
//! KMS key), its circuit breaker. Every call signs with `antom`'s signing string, POSTs JSON to
//! the account's gateway, and takes an answer only once it verifies (fail closed: an answer
//! without a signature is no answer).

use std::sync::Arc;
use std::time::Duration;

use alipay::response::ResponseError;
use alipay::signer::Signer;
use antom::message::{Outcome, ResultInfo};
use antom::signature::{SignedHeaders, verify_response};
use bytes::Bytes;
use domain::breaker::Health;
use domain::channel::ChannelId;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use store::error_chain;

use crate::channel::breaker::Breaker;
use crate::channel::client::CallError;
use crate::clock::now_ms;
use crate::config::antom::AntomChannelConfig;
use crate::deadline::{ANSWER_RESERVE, Deadline, MIN_CALL, STORE_STEP};

/// Antom's answers are small; anything larger is refused unread.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The Antom account's side of a function.
pub struct AntomChannel {
    pub config: AntomChannelConfig,
    client: antom::Client,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub signer: Arc<dyn Signer>,
    pub breaker: Breaker,
    /// The order store (a refund reads its payment's Antom id).
    pub store: store::Store,
    timeout: Duration,
}

impl AntomChannel {
    pub fn new(
        config: AntomChannelConfig,
        signer: Arc<dyn Signer>,
        breaker: Breaker,
        store: store::Store,
        timeout: Duration,
    ) -> Result<AntomChannel, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("loading the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(AntomChannel {
            client: antom::Client {
                client_id: config.client_id.clone(),
                key_version: config.key_version.clone(),
            },
            config,
            http,
            signer,
            breaker,
            store,
            timeout,
        })
    }

    pub fn id(&self) -> ChannelId {
        ChannelId::Antom
    }

    /// One call within what `deadline` leaves (after the store write that may follow it and the
    /// answer), through the breaker; its answer verified and read as `R`.
    pub async fn call_before<M: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        message: &M,
        deadline: &Deadline,
    ) -> Result<R, CallError> {
        let permit = self.breaker.admit(now_ms()).await?;
        let Some(limit) = deadline.for_step(STORE_STEP + ANSWER_RESERVE, MIN_CALL) else {
            tracing::warn!(path, "no time left for an Antom call");
            self.breaker
                .record(permit, Health::Neutral, "", now_ms())
                .await;
            return Err(CallError::Timeout(Duration::ZERO));
        };
        let limit = limit.min(self.timeout);
        let answer = tokio::time::timeout(limit, self.exchange(path, message))
            .await
            .unwrap_or(Err(CallError::Timeout(limit)));
        let (health, what) = match &answer {
            Ok((result, _)) => (
                health_of_result(result),
                format!(
                    "{path} answered {} {}",
                    result.result_status, result.result_code
                ),
            ),
            Err(error) => (
                crate::channel::breaker::health_of(&Err(error)),
                format!("{path}: {}", kind(error)),
            ),
        };
        self.breaker.record(permit, health, &what, now_ms()).await;
        match answer {
            Ok((result, body)) => {
                tracing::info!(
                    path,
                    result_status = %result.result_status,
                    result_code = %result.result_code,
                    "antom answered"
                );
                serde_json::from_slice(&body).map_err(|e| untrusted(path, e.to_string()))
            }
            Err(error) => {
                match &error {
                    CallError::Untrusted(_) => {
                        tracing::warn!(security = true, channel = "antom", error = %error, "Antom answer refused")
                    }
                    _ => tracing::warn!(channel = "antom", error = %error, "Antom call failed"),
                }
                Err(error)
            }
        }
    }

    /// Signs, sends, verifies: the answer's `result` and its body.
    async fn exchange<M: Serialize>(
        &self,
        path: &str,
        message: &M,
    ) -> Result<(ResultInfo, Bytes), CallError> {
        let time = now_ms().to_string();
        let signed = self
            .client
            .sign(self.signer.as_ref(), path, &time, message)
            .await
            .map_err(CallError::Sign)?;
        let mut request =
            hyper::Request::post(format!("{}{}", self.config.gateway_url, signed.path));
        for (name, value) in &signed.headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(signed.body)))
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| CallError::Unavailable(error_chain(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Unavailable(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError::Unavailable(format!("HTTP {status}")));
        }
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let signed_headers = SignedHeaders::from_pairs(pairs, "response-time");
        verify_response(
            &self.config.antom_public_key,
            &self.config.client_id,
            "POST",
            &signed.path,
            signed_headers,
            &body,
        )
        .map_err(|e| untrusted(path, e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(default)]
            result: ResultInfo,
        }
        let head: Head =
            serde_json::from_slice(&body).map_err(|e| untrusted(path, e.to_string()))?;
        Ok((head.result, body))
    }
}

fn untrusted(path: &str, problem: String) -> CallError {
    CallError::Untrusted(ResponseError::Unexpected {
        method: path.to_owned(),
        problem,
    })
}

/// A verified answer counts against the channel only when Antom says it failed itself.
fn health_of_result(result: &ResultInfo) -> Health {
    match (result.outcome(), result.result_code.as_str()) {
        (
            Outcome::Unknown,
            "UNKNOWN_EXCEPTION" | "SYSTEM_ERROR" | "REQUEST_TRAFFIC_EXCEED_LIMIT",
        ) => Health::Failing,
        _ => Health::Healthy,
    }
}

fn kind(error: &CallError) -> &'static str {
    match error {
        CallError::Timeout(_) => "time-out",
        CallError::Unavailable(_) => "unavailable",
        CallError::Untrusted(_) => "untrusted answer",
        CallError::Sign(_) => "signing failed",
        CallError::Open { .. } => "circuit open",
    }
}
