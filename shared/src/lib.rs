//! What the gateway's functions share: the Alipay protocol (pure), money and identifiers.

pub mod alipay;
pub mod alipay_client;
pub mod aws;
pub mod bill;
pub mod breaker;
pub mod budget;
pub mod channels;
pub mod china_time;
pub mod circuit;
pub mod closing;
pub mod config;
pub mod domain;
pub mod events;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod lifecycle;
pub mod money;
pub mod reconciliation;
pub mod refunding;
pub mod risk;
pub mod sealed_key;
pub mod store;
pub mod sweeping;
pub mod trust_config;

pub use alipay::keys::{AppPrivateKey, KeyError, PublicKey, VerifyError};
pub use alipay::signer::{LocalKeySigner, SignError, Signer};
pub use money::{Amount, AmountError};
