//! A channel's configuration: one Alipay application (app id, its KMS signing key, Alipay's
//! public key or certificates for it, the seller, the gateway URL), as the environment gives it.

use alipay::ids::{AppId, SellerId};
use alipay::keys::PublicKey;
use domain::channel::ChannelId;
use domain::states::Currency;

/// The prefix of a channel's environment variables (`SECONDARY_ALIPAY_APP_ID`, ...).
pub fn env_prefix(id: ChannelId) -> &'static str {
    match id {
        ChannelId::Primary => "",
        ChannelId::Secondary => "SECONDARY_",
        ChannelId::Antom => "ANTOM_",
    }
}

/// One channel's configuration.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub id: ChannelId,
    /// `ALIPAY_APP_ID`
    pub app_id: AppId,
    /// How Alipay's signatures are verified: its public key(s) (key mode) or certificates.
    pub alipay_keys: AlipayKeys,
    /// `ALIPAY_SELLER_ID` (required): notifications for another seller are refused.
    pub seller_id: SellerId,
    /// `ALIPAY_GATEWAY_URL` (default: production; the secondary's: the primary's).
    pub gateway_url: String,
    /// `KMS_KEY_ID`: key id, ARN or alias of the application's signing key; only the functions
    /// that call Alipay have (and need) one.
    pub kms_key_id: Option<String>,
    /// Opt-in, instead of `KMS_KEY_ID`: the application's private key sealed under a KMS
    /// symmetric key, opened at start and used to sign in process (`crate::aws::sealed_key`).
    pub sealed_key: Option<SealedKey>,
    /// `STANDBY_KMS_KEY_ID`: a second signing key, used when Alipay refuses the first's
    /// signature (`isv.invalid-signature`): the application key is being rotated.
    pub standby_kms_key_id: Option<String>,
    /// `STANDBY_ALIPAY_APP_CERT` (certificate mode): the standby key's application certificate.
    pub standby_app_cert: Option<TextSource>,
    /// `ALIPAY_AGREEMENT_PRODUCT_CODE`: the product a charge under an agreement is made with,
    /// as the channel is contracted: `GENERAL_WITHHOLDING` (商家扣款, the default) or
    /// `CYCLE_PAY_AUTH` (older 周期扣款 contracts) (docs/alipay/operations.md §4).
    pub agreement_product_code: String,
    /// `ALIPAY_AGREEMENT_SIGN_SCENE`: the merchant's contracted `sign_scene` for agreements
    /// (never `DEFAULT|DEFAULT`, since an `external_agreement_no` is sent).
    pub agreement_sign_scene: String,
    /// `ALIPAY_SETTLE_CURRENCY`: set when the application is contracted for cross-border
    /// settlement: a charge under an agreement is sent with `trans_currency` CNY and this
    /// `settle_currency` (`alipay.trade.pay` is the one v1 API that takes them), and every
    /// paid trade's settlement is recorded as Alipay reports it (docs/alipay/operations.md §5).
    pub settle_currency: Option<Currency>,
}

impl ChannelConfig {
    /// The currencies a payment through this channel may be priced in: Alipay v1 prices web,
    /// wap, app and QR payments in CNY only (docs/alipay/operations.md §5).
    pub fn currencies(&self) -> &'static [Currency] {
        &[Currency::CNY]
    }
}

/// `APP_PRIVATE_KEY_SEALED` (the `kms:Encrypt` ciphertext in Base64, inline or as an
/// `s3://bucket/key` object, as `alipay-cli seal-key` prints it) and
/// `APP_KEY_SEALING_KMS_KEY_ID` (the symmetric key that sealed it; only it may open it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedKey {
    pub sealed: TextSource,
    pub sealing_key_id: String,
}

/// Alipay's side of the trust, as configured.
#[derive(Clone, Debug)]
pub enum AlipayKeys {
    /// `ALIPAY_PUBLIC_KEY`: Alipay's public key (支付宝公钥), PEM or bare Base64; several,
    /// comma-separated, during a rotation (any of them verifies).
    Keys(Vec<PublicKey>),
    /// Certificate mode: `ALIPAY_APP_CERT`, `ALIPAY_CERT`, `ALIPAY_ROOT_CERT`, each PEM text or
    /// an `s3://bucket/key` read at start.
    Certificates {
        app_cert: TextSource,
        alipay_cert: TextSource,
        root_cert: TextSource,
    },
}

/// A configuration text given inline or as an S3 object (certificates exceed Lambda's 4 KB of
/// environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextSource {
    Inline(String),
    S3 { bucket: String, key: String },
}

impl TextSource {
    /// `s3://bucket/key`, or the text itself.
    pub fn parse(value: &str) -> Result<TextSource, String> {
        match value.strip_prefix("s3://") {
            None => Ok(TextSource::Inline(value.to_owned())),
            Some(rest) => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(TextSource::S3 {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    })
                }
                _ => Err(format!("{value} is not s3://bucket/key")),
            },
        }
    }
}

impl std::fmt::Display for TextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextSource::Inline(_) => f.write_str("(inline)"),
            TextSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}
