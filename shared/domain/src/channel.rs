//! Channels: the Alipay applications payments go through. A deployment has a primary and,
//! optionally, a secondary (each with its own circuit breaker); an order keeps the channel that
//! created it for life.

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

    pub fn parse(text: &str) -> Option<ChannelId> {
        ChannelId::ALL.into_iter().find(|c| c.as_str() == text)
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
