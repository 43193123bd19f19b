//! What every function builds once at start and borrows per request: the configuration, the
//! order store, what each channel trusts Alipay's signatures with, and (in the functions that
//! call Alipay) each channel with its signing key and breaker. Building it also proves the
//! configuration works (the table answers, the keys are usable, the certificates chain), so a
//! misconfigured function stops at start with the problem named.

use std::sync::Arc;

use alipay::ids::OutTradeNo;
use alipay::request::AppParams;
use alipay::signer::Signer;
use alipay::trust::AlipayTrust;
use domain::channel::{ChannelId, Protocol};
use domain::states::Currency;
use store::{Store, StoreError};

use crate::aws::KmsSigner;
use crate::channel::antom::AntomChannel;
use crate::channel::breaker::Breaker;
use crate::channel::client::{AlipayClient, CallError, CertCache, StoreCertCache};
use crate::channel::{Channel, Standby};
use crate::clock::now_ms;
use crate::config::Config;
use crate::config::channels::{ChannelConfig, SealedKey};
use crate::config::trust::Texts;
use crate::provider::{AnyChannel, Provider as _};

/// A channel lookup that found none to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// A payment's channel that this function was not configured with.
    #[error("channel {0} is not configured in this function")]
    NotConfigured(ChannelId),
    /// This function calls no Alipay channel (the notify function's configuration).
    #[error("this function cannot call Alipay")]
    NoneConfigured,
    /// Every channel's circuit is open: nothing is called; the soonest one reopens then.
    #[error(
        "every Alipay channel is failing; new payments are refused for now, without calling Alipay"
    )]
    AllOpen { retry_after_ms: i64 },
    #[error("no payment with out_trade_no {0}")]
    NoSuchPayment(OutTradeNo),
    /// No configured channel prices payments in this currency.
    #[error("no channel of this gateway accepts {currency} (accepted: {accepted})")]
    UnsupportedCurrency {
        currency: Currency,
        accepted: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A channel's application key as configured: in KMS (the default), or sealed.
enum AppKey<'a> {
    Kms(Arc<KmsSigner>),
    Sealed(&'a SealedKey),
}

impl AppKey<'_> {
    /// The signer and its public half: `kms:GetPublicKey`, or the sealed key opened
    /// (`kms:Decrypt`). The error names the key and what to fix.
    async fn open(
        &self,
        kms: &aws_sdk_kms::Client,
        texts: &Texts,
        channel: &ChannelConfig,
    ) -> Result<(Arc<dyn Signer>, alipay::PublicKey), String> {
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
                let prefix = crate::config::channels::env_prefix(channel.id);
                let text = texts.read(&sealed.sealed).await?;
                let ciphertext = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| {
                        format!("{prefix}APP_PRIVATE_KEY_SEALED is not Base64 (alipay-cli seal-key prints it)")
                    })?;
                let signer = crate::aws::sealed_key::LocalSigner::unseal(
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
    pub channels: Vec<Channel>,
    /// What each channel trusts Alipay's signatures with (every function, notify included).
    pub trusts: Vec<(ChannelId, Arc<AlipayTrust>)>,
    /// The Antom account, in the functions that call it (`ANTOM_*` configured).
    pub antom: Option<AntomChannel>,
    /// The risk rule set in force, read from the table at most every `RISK_RULES_CACHE_MS`.
    pub risk: crate::risk::RuleCache,
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
        let texts = crate::config::trust::Texts::new(&sdk);
        let mut signers = Vec::new();
        if role == Role::CallsAlipay {
            for channel in &config.channels {
                let main = match (&channel.kms_key_id, &channel.sealed_key) {
                    (_, Some(sealed)) => AppKey::Sealed(sealed),
                    (Some(key_id), None) => {
                        AppKey::Kms(Arc::new(KmsSigner::new(kms.clone(), key_id)))
                    }
                    (None, None) => {
                        let prefix = crate::config::channels::env_prefix(channel.id);
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
            crate::config::trust::check_app_key(channel, &trust, &app_public_key)?;
            let cache: Arc<dyn CertCache> = Arc::new(StoreCertCache(store.clone()));
            let client = Self::alipay_client(&config, channel, Arc::clone(&trust))?
                .with_cert_cache(Arc::clone(&cache));
            let standby = match (standby, standby_key) {
                (Some(signer), Some(key)) => {
                    // A standby that cannot be used (disabled, its certificate not uploaded
                    // yet) is logged and left out: it must never stop the main key from working.
                    let prefix = crate::config::channels::env_prefix(channel.id);
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
            channels.push(Channel::new(
                channel.id,
                client,
                signer,
                Breaker::new(channel.id, config.breaker.clone(), store.clone()),
                standby,
            ));
        }
        // Only the functions that call Antom hold its key (ANTOM_KMS_KEY_ID): create-payment,
        // refund and the sweeper; elsewhere the channel is known (its currencies, its public
        // key) but not called.
        let antom = match (&config.antom, role) {
            (Some(antom), Role::CallsAlipay) => match &antom.kms_key_id {
                None => None,
                Some(key_id) => {
                    let signer = Arc::new(KmsSigner::new(kms.clone(), key_id));
                    // Proves the key is usable now, not at the first payment.
                    signer
                        .public_key()
                        .await
                        .map_err(|e| format!("ANTOM_KMS_KEY_ID {key_id}: {e}"))?;
                    Some(AntomChannel::new(
                        antom.clone(),
                        signer,
                        Breaker::new(ChannelId::Antom, config.breaker.clone(), store.clone()),
                        store.clone(),
                        config.alipay_timeout,
                    )?)
                }
            },
            _ => None,
        };
        let risk = crate::risk::RuleCache::new(config.risk.clone(), config.risk_cache_ms);
        Ok(Gateway {
            risk,
            config,
            store,
            channels,
            trusts,
            antom,
        })
    }

    /// The risk rule set in force (the table's, cached; see [`crate::risk::RuleCache`]).
    pub async fn rules_in_force(&self) -> Arc<crate::risk::InForce> {
        self.risk
            .in_force(&self.store, self.config.risk_read_budget())
            .await
    }

    /// What `channel` trusts Alipay's signatures with.
    pub fn trust(&self, channel: ChannelId) -> Option<&Arc<AlipayTrust>> {
        self.trusts
            .iter()
            .find(|(id, _)| *id == channel)
            .map(|(_, trust)| trust)
    }

    /// A channel (an order's, a refund's): never another channel's.
    pub fn channel(&self, id: ChannelId) -> Result<&Channel, ChannelError> {
        self.channels
            .iter()
            .find(|channel| channel.id == id)
            .ok_or(ChannelError::NotConfigured(id))
    }

    /// The channel for a new payment in `currency`: the first, in configured order (the Alipay
    /// v1 channels, then Antom), that accepts the currency and whose circuit is not open;
    /// failing over only to channels of the first one's protocol. All open:
    /// [`ChannelError::AllOpen`] with the soonest reopening, and no call; none accepts the
    /// currency: [`ChannelError::UnsupportedCurrency`].
    pub async fn pick(&self, currency: Currency) -> Result<ChannelId, ChannelError> {
        let configured: Vec<ChannelId> = self
            .config
            .channels
            .iter()
            .map(|c| c.id)
            .chain(self.config.antom.as_ref().map(|_| ChannelId::Antom))
            .filter(|id| self.accepts(*id, currency))
            .collect();
        let Some(first) = configured.first() else {
            return Err(ChannelError::UnsupportedCurrency {
                currency,
                accepted: self.accepted_currencies(),
            });
        };
        let protocol = first.protocol();
        let mut soonest: Option<i64> = None;
        for id in configured
            .into_iter()
            .filter(|id| id.protocol() == protocol)
        {
            let Ok(provider) = self.provider(id) else {
                continue;
            };
            match provider.breaker().check(now_ms()).await {
                Ok(()) => return Ok(id),
                Err(CallError::Open { retry_after_ms, .. }) => {
                    soonest = Some(soonest.map_or(retry_after_ms, |s| s.min(retry_after_ms)));
                }
                Err(_) => {}
            }
        }
        Err(match soonest {
            Some(retry_after_ms) => ChannelError::AllOpen { retry_after_ms },
            None => ChannelError::NoneConfigured,
        })
    }

    /// The Alipay v1 channel for a new payment in `currency` (subscriptions: agreements are
    /// v1's), as [`Gateway::pick`].
    pub async fn pick_channel(&self, currency: Currency) -> Result<&Channel, ChannelError> {
        let id = self.pick(currency).await?;
        self.channel(id)
    }

    /// A channel of either protocol (an order's, a refund's): never another's.
    pub fn provider(&self, id: ChannelId) -> Result<AnyChannel<'_>, ChannelError> {
        match id.protocol() {
            Protocol::AlipayV1 => self.channel(id).map(AnyChannel::V1),
            Protocol::Antom => self
                .antom
                .as_ref()
                .map(AnyChannel::Antom)
                .ok_or(ChannelError::NotConfigured(id)),
        }
    }

    /// Whether the configured channel `id` prices payments in `currency`.
    pub fn accepts(&self, id: ChannelId, currency: Currency) -> bool {
        match id.protocol() {
            Protocol::AlipayV1 => self
                .config
                .channels
                .iter()
                .any(|c| c.id == id && c.currencies().contains(&currency)),
            Protocol::Antom => self
                .config
                .antom
                .as_ref()
                .is_some_and(|a| a.currencies.contains(&currency)),
        }
    }

    /// Every currency some channel accepts, for error messages.
    fn accepted_currencies(&self) -> String {
        let mut codes: Vec<&str> = self
            .config
            .channels
            .iter()
            .flat_map(|c| c.currencies().iter().map(|c| c.code()))
            .chain(
                self.config
                    .antom
                    .iter()
                    .flat_map(|a| a.currencies.iter().map(|c| c.code())),
            )
            .collect();
        codes.sort_unstable();
        codes.dedup();
        codes.join(", ")
    }

    /// The channel and currency of an existing order (a refund's): read only when the
    /// configuration cannot tell (more than one channel, or one with several currencies).
    pub async fn refund_target(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<(ChannelId, Currency), ChannelError> {
        if let [only] = self.config.channels.as_slice()
            && let [currency] = only.currencies()
            && self.config.antom.is_none()
        {
            return Ok((only.id, *currency));
        }
        let order = self
            .store
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| ChannelError::NoSuchPayment(out_trade_no.clone()))?;
        Ok((order.alipay_channel, order.currency()))
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
