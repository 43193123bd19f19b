//! One Alipay channel (application) in a function that calls Alipay: its HTTP client, its signing
//! key (and the standby key of a rotation), and its circuit breaker. Every call and every
//! signature goes through the breaker; a call refused for its signature is tried once with the
//! other key, and the key Alipay accepted signs first from then on.

pub mod antom;
pub mod breaker;
pub mod client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alipay::request::{AlipayRequest, SignedRequest};
use alipay::response::VerifiedResponse;
use alipay::signer::Signer;
use domain::breaker::Health;
use domain::channel::ChannelId;

use crate::clock::now_ms;
use crate::deadline::{ANSWER_RESERVE, Deadline, MIN_CALL, STORE_STEP};
use breaker::{Breaker, Permit, health_of};
use client::{AlipayClient, CallError};

/// One channel's Alipay side: the client, the channel's signer, and its circuit breaker.
pub struct Channel {
    pub id: ChannelId,
    pub client: AlipayClient,
    pub signer: Arc<dyn Signer>,
    pub breaker: Breaker,
    /// `STANDBY_KMS_KEY_ID`: the application key being rotated to (or from), with its client
    /// (in certificate mode its `app_cert_sn` differs).
    pub standby: Option<Standby>,
    /// Set once Alipay refused the main key's signature and accepted the standby's: this
    /// process then signs with the standby first.
    standby_first: AtomicBool,
}

/// A client and the signer it signs with.
type Key<'a> = (&'a AlipayClient, &'a dyn Signer);

/// The second signing key of a rotation.
pub struct Standby {
    pub client: AlipayClient,
    pub signer: Arc<dyn Signer>,
}

impl Channel {
    pub fn new(
        channel: ChannelId,
        client: AlipayClient,
        signer: Arc<dyn Signer>,
        breaker: Breaker,
        standby: Option<Standby>,
    ) -> Channel {
        Channel {
            id: channel,
            client,
            signer,
            breaker,
            standby,
            standby_first: AtomicBool::new(false),
        }
    }

    /// The client and signer to use first, then the other one (if a standby is configured), and
    /// whether the second is the standby.
    fn keys_in_order(&self) -> ([Option<Key<'_>>; 2], bool) {
        let main = Some((&self.client, self.signer.as_ref()));
        let standby = self
            .standby
            .as_ref()
            .map(|s| (&s.client, s.signer.as_ref()));
        if self.standby_first.load(Ordering::Relaxed) && standby.is_some() {
            ([standby, main], false)
        } else {
            ([main, standby], true)
        }
    }

    /// One call within what `deadline` leaves after the store write that may follow it and the
    /// answer; not started with less than [`MIN_CALL`]. Failures are logged here, once:
    /// an untrusted answer as a security warning.
    pub async fn call_before(
        &self,
        request: &AlipayRequest,
        deadline: &Deadline,
    ) -> Result<VerifiedResponse, CallError> {
        // Admission first: the time it takes (a read of the shared state, at most once a
        // second) comes out of the deadline before the call's share is measured.
        let permit = self.breaker.admit(now_ms()).await?;
        let Some(limit) = deadline.for_step(STORE_STEP + ANSWER_RESERVE, MIN_CALL) else {
            tracing::warn!(method = request.method(), "no time left for an Alipay call");
            self.breaker
                .record(permit, Health::Neutral, "", now_ms())
                .await;
            return Err(CallError::Timeout(std::time::Duration::ZERO));
        };
        self.exchange(permit, request, limit).await
    }

    /// One call bounded by `limit` (and the configured time-out), through the breaker.
    pub async fn call_within(
        &self,
        request: &AlipayRequest,
        limit: std::time::Duration,
    ) -> Result<VerifiedResponse, CallError> {
        let permit = self.breaker.admit(now_ms()).await?;
        self.exchange(permit, request, limit).await
    }

    /// The admitted call, its outcome counted and its failure logged.
    async fn exchange(
        &self,
        permit: Permit,
        request: &AlipayRequest,
        limit: std::time::Duration,
    ) -> Result<VerifiedResponse, CallError> {
        let started = std::time::Instant::now();
        let ([first, second], second_is_standby) = self.keys_in_order();
        let mut answer = match first {
            Some((client, signer)) => client.call_within(request, signer, now_ms(), limit).await,
            None => Err(CallError::Timeout(std::time::Duration::ZERO)),
        };
        if let Some((client, signer)) = second
            && credentials_refused(&answer)
            && let Some(left) = limit.checked_sub(started.elapsed())
        {
            let retry = client.call_within(request, signer, now_ms(), left).await;
            if !credentials_refused(&retry) && retry.is_ok() {
                // The key Alipay accepted signs first from now on: set, never toggled, so that
                // two calls falling back at once agree instead of flipping it back.
                self.standby_first
                    .store(second_is_standby, Ordering::Relaxed);
                tracing::warn!(
                    channel = %self.id,
                    signing_with = if second_is_standby { "STANDBY_KMS_KEY_ID" } else { "KMS_KEY_ID" },
                    "Alipay refused one application key and accepted the other: finish the key rotation (docs/operations.md, rotating keys without downtime)"
                );
            }
            answer = retry;
        }
        let health = health_of(&answer.as_ref().map(VerifiedResponse::disposition));
        let what = match &answer {
            Ok(answer) => format!("{} answered {}", request.method(), answer.status.code),
            Err(error) => format!("{}: {}", request.method(), error_kind(error)),
        };
        self.breaker.record(permit, health, &what, now_ms()).await;
        match &answer {
            Err(error @ CallError::Untrusted(_)) => {
                tracing::warn!(security = true, channel = %self.id, error = %error, "Alipay answer refused");
            }
            Err(error) => {
                tracing::warn!(channel = %self.id, error = %error, "Alipay call failed")
            }
            Ok(_) => {}
        }
        answer
    }

    /// Signs a request the buyer's device takes to Alipay (page, wap, app): a KMS call, through
    /// the breaker.
    pub async fn sign(&self, request: &AlipayRequest) -> Result<SignedRequest, CallError> {
        let permit = self.breaker.admit(now_ms()).await?;
        let signed = match self.keys_in_order().0[0] {
            Some((client, signer)) => client
                .sign(request, signer, now_ms())
                .await
                .map_err(CallError::Sign),
            None => Err(CallError::Sign(alipay::signer::SignError::Refused(
                "no signing key".into(),
            ))),
        };
        let health = match &signed {
            Ok(_) => Health::Healthy,
            Err(_) => Health::Failing,
        };
        let what = format!("{}: signing", request.method());
        self.breaker.record(permit, health, &what, now_ms()).await;
        signed
    }
}

/// Alipay refused our signature or certificate (an unsigned `isv.*` error about them): the
/// application key was rotated on the open platform. Nothing was executed.
fn credentials_refused(answer: &Result<VerifiedResponse, CallError>) -> bool {
    match answer {
        Ok(answer) if !answer.signed => answer.status.sub_code.as_deref().is_some_and(|code| {
            code.starts_with("isv.") && (code.contains("signature") || code.contains("cert"))
        }),
        _ => false,
    }
}

/// A failure's kind, without its text (which may quote an answer).
fn error_kind(error: &CallError) -> &'static str {
    match error {
        CallError::Timeout(_) => "time-out",
        CallError::Unavailable(_) => "unavailable",
        CallError::Untrusted(_) => "untrusted answer",
        CallError::Sign(_) => "signing failed",
        CallError::Open { .. } => "circuit open",
    }
}
