//! Channels: the provider accounts payments go through. A deployment has a primary Alipay v1
//! application and, optionally, a secondary one and an Antom account (each with its own circuit
//! breaker); an order keeps the channel that created it for life.

/// Which channel: the template configures a primary and, optionally, a secondary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelId {
    #[default]
    Primary,
    Secondary,
    /// Ant International's Antom (cross-border, foreign currencies).
    Antom,
}

impl ChannelId {
    pub const ALL: [ChannelId; 3] = [ChannelId::Primary, ChannelId::Secondary, ChannelId::Antom];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelId::Primary => "primary",
            ChannelId::Secondary => "secondary",
            ChannelId::Antom => "antom",
        }
    }

    /// The protocol the channel speaks.
    pub fn protocol(self) -> Protocol {
        match self {
            ChannelId::Primary | ChannelId::Secondary => Protocol::AlipayV1,
            ChannelId::Antom => Protocol::Antom,
        }
    }

    pub fn parse(text: &str) -> Option<ChannelId> {
        ChannelId::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// What a channel speaks: the breaker fails over only between channels of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    AlipayV1,
    Antom,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::AlipayV1 => "alipay-v1",
            Protocol::Antom => "antom",
        }
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
