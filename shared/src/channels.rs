//! Channels: the Alipay applications payments go through. A channel is one application (app
//! id, its KMS signing key, Alipay's public key for it, the seller, the gateway URL), with its
//! own circuit breaker. An order keeps the channel that created it for life.

use crate::alipay::keys::PublicKey;
use crate::ids::{AppId, SellerId};

/// Which channel: the template configures a primary and, optionally, a secondary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelId {
    #[default]
    Primary,
    Secondary,
}

impl ChannelId {
    pub const ALL: [ChannelId; 2] = [ChannelId::Primary, ChannelId::Secondary];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelId::Primary => "primary",
            ChannelId::Secondary => "secondary",
        }
    }

    /// The prefix of its environment variables (`SECONDARY_ALIPAY_APP_ID`, ...).
    pub fn env_prefix(self) -> &'static str {
        match self {
            ChannelId::Primary => "",
            ChannelId::Secondary => "SECONDARY_",
        }
    }

    pub fn parse(text: &str) -> Option<ChannelId> {
        ChannelId::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel's configuration.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub id: ChannelId,
    /// `ALIPAY_APP_ID`
    pub app_id: AppId,
    /// `ALIPAY_PUBLIC_KEY`: Alipay's public key (支付宝公钥) for this application, PEM or bare
    /// Base64.
    pub alipay_public_key: PublicKey,
    /// `ALIPAY_SELLER_ID` (required): notifications for another seller are refused.
    pub seller_id: SellerId,
    /// `ALIPAY_GATEWAY_URL` (default: production; the secondary's: the primary's).
    pub gateway_url: String,
    /// `KMS_KEY_ID`: key id, ARN or alias of the application's signing key; only the functions
    /// that call Alipay have (and need) one.
    pub kms_key_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for id in ChannelId::ALL {
            assert_eq!(ChannelId::parse(id.as_str()), Some(id));
        }
        assert_eq!(ChannelId::parse("Primary"), None);
        assert_eq!(ChannelId::default(), ChannelId::Primary);
    }
}
