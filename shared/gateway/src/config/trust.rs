//! Turning a channel's configured keys or certificates into an [`AlipayTrust`] at start:
//! certificate texts read inline or from S3, and the checks that refuse a mismatch with a
//! message that says what to do.

use crate::config::channels::{AlipayKeys, ChannelConfig, TextSource};
use alipay::keys::{KeyError, PublicKey};
use alipay::trust::{AlipayTrust, CertSns};

/// Certificates are larger than an environment variable may be in Lambda (4 KB in all): they
/// are read from S3 at start.
pub struct Texts {
    s3: aws_sdk_s3::Client,
}

impl Texts {
    pub fn new(sdk: &aws_config::SdkConfig) -> Texts {
        // A local stand-in (AWS_ENDPOINT_URL) has no bucket host names: use path-style there.
        let local = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(local)
            .build();
        Texts {
            s3: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// The text of a source: inline, or the S3 object's body (UTF-8).
    pub async fn read(&self, source: &TextSource) -> Result<String, String> {
        match source {
            TextSource::Inline(text) => Ok(text.clone()),
            TextSource::S3 { bucket, key } => {
                let object = self
                    .s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| format!("{source}: {}", store::error_chain(&e)))?;
                let bytes = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| format!("{source}: {e}"))?
                    .into_bytes();
                String::from_utf8(bytes.to_vec()).map_err(|_| format!("{source} is not text"))
            }
        }
    }

    /// The channel's trust: its Alipay keys, or its certificates read and checked at `now_unix`.
    pub async fn trust(
        &self,
        channel: &ChannelConfig,
        now_unix: u64,
    ) -> Result<AlipayTrust, String> {
        let prefix = crate::config::channels::env_prefix(channel.id);
        match &channel.alipay_keys {
            AlipayKeys::Keys(keys) => Ok(AlipayTrust::keys(keys.clone())),
            AlipayKeys::Certificates {
                app_cert,
                alipay_cert,
                root_cert,
            } => {
                let (app, alipay, root) = tokio::try_join!(
                    self.read(app_cert),
                    self.read(alipay_cert),
                    self.read(root_cert)
                )?;
                AlipayTrust::certificates(&app, &alipay, &root, now_unix).map_err(|e| {
                    format!(
                        "{prefix}ALIPAY_APP_CERT/ALIPAY_CERT/ALIPAY_ROOT_CERT: {e}. Download the three files again from Alipay's open platform (开发设置 → 接口加签方式 → 公钥证书); an expired application certificate is renewed by uploading a new CSR (alipay-cli csr)"
                    )
                })
            }
        }
    }

    /// The standby key's SNs: in certificate mode from `STANDBY_ALIPAY_APP_CERT`, whose key must
    /// be the standby KMS key's.
    pub async fn standby_sns(
        &self,
        channel: &ChannelConfig,
        trust: &AlipayTrust,
        standby_key: &PublicKey,
        now_unix: u64,
    ) -> Result<Option<CertSns>, String> {
        let prefix = crate::config::channels::env_prefix(channel.id);
        if !trust.is_certificate_mode() {
            return Ok(None);
        }
        let Some(source) = &channel.standby_app_cert else {
            return Err(format!("{prefix}STANDBY_ALIPAY_APP_CERT is not set"));
        };
        let text = self.read(source).await?;
        match trust
            .sns_for_app_cert(&text, now_unix)
            .map_err(|e| format!("{prefix}STANDBY_ALIPAY_APP_CERT: {e}"))?
        {
            Some((sns, key)) if &key == standby_key => Ok(Some(sns)),
            Some(_) => Err(format!(
                "{prefix}STANDBY_ALIPAY_APP_CERT is not the certificate of {prefix}STANDBY_KMS_KEY_ID's key: issue it from `alipay-cli csr --kms-key-id <the standby key>`"
            )),
            None => Ok(None),
        }
    }
}

/// Refuses an application key that cannot work: in key mode, the app's own key configured as
/// Alipay's; in certificate mode, an application certificate for another key than KMS holds.
pub fn check_app_key(
    channel: &ChannelConfig,
    trust: &AlipayTrust,
    app_public_key: &PublicKey,
) -> Result<(), String> {
    let prefix = crate::config::channels::env_prefix(channel.id);
    match trust.app_cert_key() {
        None if trust.all_keys().contains(app_public_key) => {
            Err(KeyError::AppKeyConfiguredAsAlipayKey.to_string())
        }
        Some(cert_key) if cert_key != app_public_key => Err(format!(
            "{prefix}ALIPAY_APP_CERT is not the certificate of {prefix}KMS_KEY_ID's key: the application certificate must be issued for the KMS key. Run `alipay-cli csr --kms-key-id <key> --subject ...`, upload the request on Alipay's open platform, and configure the certificate it returns"
        )),
        _ => Ok(()),
    }
}
