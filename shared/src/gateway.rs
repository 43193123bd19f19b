//! What every function builds once at init and borrows per request: configuration, the order
//! store, and (for the functions that call Alipay) the Alipay client with the KMS signer. Also
//! the resource views the merchant API answers with, and applying a trade state that Alipay
//! reported, which both the notify function and `GET ?sync=true` do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::alipay::notify::TradeStatus;
use crate::alipay::request::{AlipayRequest, AppParams, SignedRequest};
use crate::alipay::response::VerifiedResponse;
use crate::alipay::signer::Signer;
use crate::alipay::trust::AlipayTrust;
use crate::alipay_client::AlipayClient;
use crate::alipay_client::CallError;
use crate::aws::KmsSigner;
use crate::breaker::{Health, health_of};
use crate::budget::{ANSWER_RESERVE, Deadline, MIN_CALL, STORE_STEP};
use crate::channels::{ChannelConfig, ChannelId};
use crate::circuit::{Breaker, Permit};
use sha2::{Digest as _, Sha256};

use crate::config::{Config, Lifecycle};
use crate::domain::{Cause, NewRefund, Order, OrderStatus, PaidRisk, Payment, Refund};
use crate::ids::OutRequestNo;
use crate::money::Amount;
use crate::risk::Rules;
use crate::store::{AuditEvent, Store, StoreError, Transition};

/// One channel's Alipay side, in a function that calls Alipay: the client, the channel's KMS
/// signer, and its circuit breaker. Every call and every signature goes through the breaker.
pub struct Alipay {
    pub channel: ChannelId,
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

impl Alipay {
    pub fn new(
        channel: ChannelId,
        client: AlipayClient,
        signer: Arc<dyn Signer>,
        breaker: Breaker,
        standby: Option<Standby>,
    ) -> Alipay {
        Alipay {
            channel,
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
                    channel = %self.channel,
                    signing_with = if second_is_standby { "STANDBY_KMS_KEY_ID" } else { "KMS_KEY_ID" },
                    "Alipay refused one application key and accepted the other: finish the key rotation (README, rotating the application key)"
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
                tracing::warn!(security = true, channel = %self.channel, error = %error, "Alipay answer refused");
            }
            Err(error) => {
                tracing::warn!(channel = %self.channel, error = %error, "Alipay call failed")
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
            None => Err(CallError::Sign(crate::alipay::signer::SignError::Refused(
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

/// A channel's application key as configured: in KMS (the default), or sealed.
enum AppKey<'a> {
    Kms(Arc<KmsSigner>),
    Sealed(&'a crate::channels::SealedKey),
}

impl AppKey<'_> {
    /// The signer and its public half: `kms:GetPublicKey`, or the sealed key opened
    /// (`kms:Decrypt`). The error names the key and what to fix.
    async fn open(
        &self,
        kms: &aws_sdk_kms::Client,
        texts: &crate::trust_config::Texts,
        channel: &ChannelConfig,
    ) -> Result<(Arc<dyn Signer>, crate::PublicKey), String> {
        match self {
            AppKey::Kms(signer) => {
                let key = signer
                    .public_key()
                    .await
                    .map_err(|e| format!("KMS key {}: {e}", signer.key_id()))?
                    .clone();
                Ok((Arc::clone(signer) as Arc<dyn Signer>, key))
            }
            AppKey::Sealed(sealed) => {
                use base64::Engine as _;
                let prefix = channel.id.env_prefix();
                let text = texts.read(&sealed.sealed).await?;
                let ciphertext = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| {
                        format!("{prefix}APP_PRIVATE_KEY_SEALED is not Base64 (alipay-cli seal-key prints it)")
                    })?;
                let signer = crate::sealed_key::LocalSigner::unseal(
                    kms,
                    &sealed.sealing_key_id,
                    &ciphertext,
                    channel.app_id.as_str(),
                )
                .await
                .map_err(|e| {
                    format!(
                        "{prefix}APP_PRIVATE_KEY_SEALED cannot be opened with {} for app {}: {e}",
                        sealed.sealing_key_id, channel.app_id
                    )
                })?;
                tracing::info!(channel = %channel.id, "signing locally with the sealed application key");
                let key = signer.public_key().clone();
                Ok((Arc::new(signer), key))
            }
        }
    }
}

pub struct Gateway {
    pub config: Config,
    pub store: Store,
    /// The configured channels' Alipay sides, primary first; empty in the notify function,
    /// which never calls Alipay and holds no KMS permission.
    pub channels: Vec<Alipay>,
    /// What each channel trusts Alipay's signatures with (every function, notify included).
    pub trusts: Vec<(ChannelId, Arc<AlipayTrust>)>,
}

/// Whether the function calls Alipay (and so signs through KMS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    CallsAlipay,
    NotifyOnly,
}

impl Gateway {
    /// Reads the environment, builds the AWS clients, and opens the DynamoDB and KMS
    /// connections (fetching the public keys also proves the keys are usable), so that the first
    /// request pays for none of it.
    pub async fn init(role: Role) -> Result<Gateway, String> {
        let config = Config::from_env().map_err(|e| e.to_string())?;
        let sdk = crate::aws::load_config().await;
        Self::with_config(config, &sdk, role).await
    }

    /// As [`Gateway::init`], with a configuration and SDK settings given (tests, the local host).
    pub async fn with_config(
        config: Config,
        sdk: &aws_config::SdkConfig,
        role: Role,
    ) -> Result<Gateway, String> {
        let sdk = sdk.clone();
        let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.orders_table);
        let kms = aws_sdk_kms::Client::new(&sdk);
        let texts = crate::trust_config::Texts::new(&sdk);
        let mut signers = Vec::new();
        if role == Role::CallsAlipay {
            for channel in &config.channels {
                let main = match (&channel.kms_key_id, &channel.sealed_key) {
                    (_, Some(sealed)) => AppKey::Sealed(sealed),
                    (Some(key_id), None) => {
                        AppKey::Kms(Arc::new(KmsSigner::new(kms.clone(), key_id)))
                    }
                    (None, None) => {
                        let prefix = channel.id.env_prefix();
                        return Err(format!(
                            "{prefix}KMS_KEY_ID is not set (or, to sign locally, {prefix}APP_PRIVATE_KEY_SEALED and {prefix}APP_KEY_SEALING_KMS_KEY_ID)"
                        ));
                    }
                };
                let standby = channel
                    .standby_kms_key_id
                    .as_ref()
                    .map(|id| KmsSigner::new(kms.clone(), id));
                signers.push((channel, main, standby));
            }
        }
        let warm_keys = async {
            let mut keys = Vec::new();
            for (channel, signer, standby) in &signers {
                let main = signer.open(&kms, &texts, channel).await;
                let standby = match standby {
                    Some(standby) => Some(standby.public_key().await.cloned()),
                    None => None,
                };
                keys.push((main, standby));
            }
            keys
        };
        let now_unix = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let trusts = async {
            let mut trusts = Vec::new();
            for channel in &config.channels {
                trusts.push((channel.id, Arc::new(texts.trust(channel, now_unix).await?)));
            }
            Ok::<_, String>(trusts)
        };
        let (warm_store, keys, trusts) = tokio::join!(store.warm_up(), warm_keys, trusts);
        warm_store.map_err(|e| format!("DynamoDB table {}: {e}", config.orders_table))?;
        let trusts = trusts?;
        let mut channels = Vec::new();
        for ((channel, _, standby), (key, standby_key)) in signers.into_iter().zip(keys) {
            let (signer, app_public_key) = key?;
            let trust = trusts
                .iter()
                .find(|(id, _)| *id == channel.id)
                .map(|(_, trust)| Arc::clone(trust))
                .ok_or("no trust for the channel")?;
            crate::trust_config::check_app_key(channel, &trust, &app_public_key)?;
            let cache: Arc<dyn crate::alipay_client::CertCache> =
                Arc::new(crate::store::StoreCertCache(store.clone()));
            let client = Self::alipay_client(&config, channel, Arc::clone(&trust))?
                .with_cert_cache(Arc::clone(&cache));
            let standby = match (standby, standby_key) {
                (Some(signer), Some(key)) => {
                    // A standby that cannot be used (disabled, its certificate not uploaded
                    // yet) is logged and left out: it must never stop the main key from working.
                    let prefix = channel.id.env_prefix();
                    let usable = match key {
                        Ok(key) => texts.standby_sns(channel, &trust, &key, now_unix).await,
                        Err(e) => Err(format!(
                            "{prefix}STANDBY_KMS_KEY_ID {}: {e}",
                            signer.key_id()
                        )),
                    };
                    match usable {
                        Ok(sns) => {
                            let mut client = client.clone();
                            client.set_cert_sns(sns);
                            Some(Standby {
                                client,
                                signer: Arc::new(signer),
                            })
                        }
                        Err(problem) => {
                            tracing::warn!(channel = %channel.id, problem = %problem, "the standby signing key is not used");
                            None
                        }
                    }
                }
                _ => None,
            };
            channels.push(Alipay::new(
                channel.id,
                client,
                signer,
                Breaker::new(channel.id, config.breaker.clone(), store.clone()),
                standby,
            ));
        }
        Ok(Gateway {
            config,
            store,
            channels,
            trusts,
        })
    }

    /// What `channel` trusts Alipay's signatures with.
    pub fn trust(&self, channel: ChannelId) -> Option<&Arc<AlipayTrust>> {
        self.trusts
            .iter()
            .find(|(id, _)| *id == channel)
            .map(|(_, trust)| trust)
    }

    /// The Alipay side of a channel (an order's, a refund's): never another channel's.
    pub fn alipay_for(&self, channel: ChannelId) -> Result<&Alipay, crate::http::ApiError> {
        self.channels
            .iter()
            .find(|alipay| alipay.channel == channel)
            .ok_or_else(|| {
                crate::http::ApiError::unavailable(
                    "misconfigured",
                    format!("channel {channel} is not configured in this function"),
                    60,
                )
            })
    }

    /// The channel for a new payment: the first, in configured order, whose circuit is not
    /// open. All open: `503 circuit_open` with the soonest `Retry-After`, and no call.
    pub async fn pick_channel(&self) -> Result<&Alipay, crate::http::ApiError> {
        let mut soonest: Option<i64> = None;
        for alipay in &self.channels {
            match alipay.breaker.check(now_ms()).await {
                Ok(()) => return Ok(alipay),
                Err(CallError::Open { retry_after_ms, .. }) => {
                    soonest = Some(soonest.map_or(retry_after_ms, |s| s.min(retry_after_ms)));
                }
                Err(_) => {}
            }
        }
        Err(match soonest {
            Some(retry_after_ms) => crate::http::ApiError::unavailable(
                "circuit_open",
                "every Alipay channel is failing; new payments are refused for now, without calling Alipay",
                crate::http::retry_after_seconds(retry_after_ms),
            ),
            None => crate::http::ApiError::unavailable(
                "misconfigured",
                "this function cannot call Alipay",
                60,
            ),
        })
    }

    /// The channel of an existing order: read only when more than one is configured.
    pub async fn channel_of(
        &self,
        out_trade_no: &crate::ids::OutTradeNo,
    ) -> Result<ChannelId, crate::http::ApiError> {
        if self.config.channels.len() < 2 {
            return Ok(ChannelId::Primary);
        }
        let order = self.store.get_order(out_trade_no).await?.ok_or_else(|| {
            crate::http::ApiError::not_found(format!("no payment with out_trade_no {out_trade_no}"))
        })?;
        Ok(order.alipay_channel)
    }

    /// The Alipay client for one channel of a configuration.
    pub fn alipay_client(
        config: &Config,
        channel: &ChannelConfig,
        trust: Arc<AlipayTrust>,
    ) -> Result<AlipayClient, String> {
        AlipayClient::new(
            channel.gateway_url.clone(),
            AppParams {
                app_id: channel.app_id.clone(),
                notify_url: config.notify_url.clone(),
                cert_sns: None,
            },
            trust,
            config.alipay_timeout,
        )
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The status the merchant sees: the trade state, or `REFUNDED` once refunds add up to the
/// amount paid.
pub fn payment_status(order: &Order) -> &'static str {
    if order.fully_refunded() {
        "REFUNDED"
    } else {
        order.status.as_str()
    }
}

/// The payment resource.
pub fn payment_view(order: &Order, refunds: Option<&[Refund]>) -> Value {
    let mut view = json!({
        "object": "payment",
        "out_trade_no": order.out_trade_no,
        "amount": order.amount,
        "currency": order.currency,
        "subject": order.subject,
        "channel": order.channel,
        "alipay_channel": order.alipay_channel.as_str(),
        "status": payment_status(order),
        "trade_no": order.trade_no,
        "paid_amount": order.paid_amount,
        "paid_at": order.paid_at,
        "refunded_amount": order.refunded,
        "refundable_amount": order.refundable,
        "return_url": order.return_url,
        "time_expire": order.time_expire,
        "paid_after_close": order.paid_after_close,
        "customer_ref": order.customer_ref,
        "risk": {
            "flagged": !order.risk_rules.is_empty(),
            "rules": order.risk_rules,
        },
        "created_at_ms": order.created_at_ms,
        "updated_at_ms": order.updated_at_ms,
    });
    if let (Some(refunds), Some(object)) = (refunds, view.as_object_mut()) {
        object.insert(
            "refunds".into(),
            Value::Array(refunds.iter().map(refund_view).collect()),
        );
    }
    view
}

/// The refund resource.
pub fn refund_view(refund: &Refund) -> Value {
    json!({
        "object": "refund",
        "out_trade_no": refund.out_trade_no,
        "out_request_no": refund.out_request_no,
        "amount": refund.amount,
        "reason": refund.reason,
        "status": refund.status,
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
        "created_at_ms": refund.created_at_ms,
        "updated_at_ms": refund.updated_at_ms,
    })
}

/// A trade state that Alipay reported (in a notification or a query answer), already verified.
#[derive(Clone, Debug)]
pub struct TradeReport {
    pub trade_no: String,
    pub trade_status: TradeStatus,
    pub total_amount: Amount,
    pub paid_at: Option<String>,
    pub buyer_id_masked: Option<String>,
    /// A digest of the buyer's id (fraud checks).
    pub buyer_key: Option<String>,
}

/// What applying a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed(Order),
    /// Nothing to change: a duplicate, or a state that needs no change (`WAIT_BUYER_PAY`, a
    /// `TRADE_CLOSED` after a full refund).
    Unchanged(Order),
}

impl Applied {
    pub fn into_order(self) -> Order {
        match self {
            Applied::Changed(order) | Applied::Unchanged(order) => order,
        }
    }
}

/// Why a verified report was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies a verified trade report to an order: the amount must match exactly before a paid
/// state is believed; mismatches and refused transitions are written to the audit trail. A
/// genuine payment for an order we closed is recorded (the money is real) and, when so
/// configured, refunded in full through the normal refund path (the sweeper sends it).
pub async fn apply_trade_report(
    store: &Store,
    lifecycle: &Lifecycle,
    rules: &Rules,
    order: &Order,
    report: &TradeReport,
    cause: &Cause,
    now_ms: i64,
) -> Result<Applied, ApplyError> {
    let result = match report.trade_status {
        status if status.is_paid() => {
            if report.total_amount != order.amount {
                let detail = format!(
                    "total_amount {} does not match the order's {}",
                    report.total_amount, order.amount
                );
                return Err(record_mismatch(store, order, cause, now_ms, detail).await);
            }
            let payment = Payment {
                trade_no: report.trade_no.clone(),
                amount: report.total_amount,
                paid_at: report.paid_at.clone(),
                buyer_id_masked: report.buyer_id_masked.clone(),
                finished: status == TradeStatus::TradeFinished,
                risk: paid_risk(store, rules, order, report).await?,
                alipay_channel: order.alipay_channel,
            };
            let marked = if order.status == OrderStatus::Closed {
                Err(StoreError::IllegalTransition {
                    from: OrderStatus::Closed.to_string(),
                    to: OrderStatus::Paid.to_string(),
                })
            } else {
                store.mark_paid_from(order, &payment, cause, now_ms).await
            };
            match marked {
                Err(StoreError::IllegalTransition { from, .. })
                    if from == OrderStatus::Closed.as_str() =>
                {
                    paid_after_close(store, lifecycle, order, &payment, cause, now_ms).await
                }
                other => other,
            }
        }
        TradeStatus::TradeClosed if order.status == OrderStatus::Created => {
            store.close(&order.out_trade_no, None, cause, now_ms).await
        }
        // Closed after payment means fully refunded, which the refund flow records; waiting
        // for the buyer changes nothing.
        TradeStatus::TradeClosed | TradeStatus::WaitBuyerPay => {
            Ok(Transition::Duplicate(order.clone()))
        }
        _ => Ok(Transition::Duplicate(order.clone())),
    };
    match result {
        Ok(Transition::Applied(order)) => Ok(Applied::Changed(order)),
        Ok(Transition::Duplicate(order)) => Ok(Applied::Unchanged(order)),
        Err(error @ (StoreError::IllegalTransition { .. } | StoreError::Conflict(_))) => {
            let detail = format!(
                "{} reported {}: {error}",
                report.trade_no,
                report.trade_status.as_str()
            );
            Err(record_mismatch(store, order, cause, now_ms, detail).await)
        }
        Err(error) => Err(ApplyError::Store(error)),
    }
}

/// The after-payment fraud checks of a payment about to be recorded (not of a repeat): one
/// read of the customer's history and the buyer's customers. A flag never refuses the payment.
async fn paid_risk(
    store: &Store,
    rules: &Rules,
    order: &Order,
    report: &TradeReport,
) -> Result<Option<PaidRisk>, StoreError> {
    let checked = rules.buyer_max_customers.is_some() || rules.history_factor.is_some();
    let Some(customer) = order.customer_ref.as_deref().filter(|_| checked) else {
        return Ok(None);
    };
    // A repeat (already paid) is not judged again; a payment after close is refunded in full
    // by default and recorded without the checks.
    if order.status != OrderStatus::Created {
        return Ok(None);
    }
    let customer = crate::risk::digest("customer", customer);
    let history = store
        .risk_history(&customer, report.buyer_key.as_deref())
        .await?;
    let flags = crate::risk::assess_paid(rules, &customer, report.total_amount, &history);
    if !flags.is_empty() {
        tracing::warn!(out_trade_no = %order.out_trade_no, rules = ?flags, "payment flagged by the fraud checks");
    }
    Ok(Some(PaidRisk {
        rules: flags.into_iter().map(str::to_owned).collect(),
        customer,
        buyer: report.buyer_key.clone(),
    }))
}

/// A genuine payment for a CLOSED order: recorded with a security-style warning (it alarms),
/// and by default its whole amount reserved for an automatic refund.
async fn paid_after_close(
    store: &Store,
    lifecycle: &Lifecycle,
    order: &Order,
    payment: &Payment,
    cause: &Cause,
    now_ms: i64,
) -> Result<Transition<Order>, StoreError> {
    // The order as it is now (it may have changed since the caller read it).
    let current = store
        .get_order(&order.out_trade_no)
        .await?
        .ok_or_else(|| StoreError::OrderNotFound(order.out_trade_no.to_string()))?;
    if current.status != OrderStatus::Closed {
        return store.mark_paid_from(&current, payment, cause, now_ms).await;
    }
    let refund = lifecycle
        .auto_refund_paid_after_close
        .then(|| auto_refund(payment, current.alipay_channel))
        .flatten();
    tracing::warn!(
        security = true,
        out_trade_no = %order.out_trade_no,
        trade_no = %payment.trade_no,
        amount = %payment.amount,
        auto_refund = refund.is_some(),
        "payment received for a closed order"
    );
    store
        .mark_paid_after_close(
            &current,
            payment,
            refund.as_ref().map(|r| (r, now_ms)),
            cause,
            now_ms,
        )
        .await
}

/// The automatic refund of a payment after close: its number is derived from Alipay's trade
/// number, so every retry of the notification names the same refund.
pub fn auto_refund(payment: &Payment, channel: ChannelId) -> Option<NewRefund> {
    let digest = Sha256::digest(payment.trade_no.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let out_request_no = OutRequestNo::parse(format!("pac_{hex}")).ok()?;
    Some(NewRefund {
        out_request_no,
        amount: payment.amount,
        reason: Some("paid after the order was closed".into()),
        alipay_channel: channel,
    })
}

/// Records a refused report in the audit trail and logs it as a security warning. If the
/// record cannot be written, that is the error returned (so the caller answers with a retry).
async fn record_mismatch(
    store: &Store,
    order: &Order,
    cause: &Cause,
    now_ms: i64,
    detail: String,
) -> ApplyError {
    tracing::warn!(
        security = true,
        out_trade_no = %order.out_trade_no,
        detail = %detail,
        "Alipay report refused"
    );
    let event = AuditEvent::new("alipay.report_refused", cause, now_ms).detail(detail.clone());
    match store.record_event(&order.out_trade_no, &event).await {
        Ok(()) => ApplyError::Mismatch(detail),
        Err(error) => ApplyError::Store(error),
    }
}

/// The entry point of the HTTP functions (`fn main`): [`serve`] on a multi-threaded runtime.
///
/// `GATEWAY_MAX_CONCURRENCY`, when set, stands for Lambda's `AWS_LAMBDA_MAX_CONCURRENCY`: only
/// `make run` sets it, because `cargo lambda watch` forces the latter to 1 for every function it
/// starts. It is applied here, before the runtime starts any thread.
pub fn main<F, Fut>(role: Role, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static Gateway, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    if let Ok(text) = std::env::var("GATEWAY_MAX_CONCURRENCY") {
        let n = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1_000).contains(n))
            .ok_or("invalid configuration: GATEWAY_MAX_CONCURRENCY must be 1 to 1000")?;
        // SAFETY: nothing else runs yet (the runtime and its threads are built below), so no
        // other thread reads the environment while it changes.
        unsafe { std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", n.to_string()) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(role, handler))
}

/// The Lambda entry point every HTTP function shares: logs as Lambda configures them (JSON in
/// the template), dependencies built once at init, then the handler for each request.
///
/// Requests run concurrently when Lambda says so (`AWS_LAMBDA_MAX_CONCURRENCY` > 1, as on
/// Lambda Managed Instances: that many at once in one process, sharing the SDK clients, the
/// breaker and the learned certificates); on classic Lambda one at a time. Nothing in a handler
/// relies on running alone: every change is a conditional write.
pub async fn serve<F, Fut>(role: Role, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static Gateway, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    lambda_http::tracing::init_default_subscriber();
    // Kept for the life of the process, as a Lambda execution environment keeps it.
    let gateway: &'static Gateway = Box::leak(Box::new(Gateway::init(role).await?));
    lambda_http::run_concurrent(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(handler(gateway, request).await)
    }))
    .await
}
