//! The Alipay OpenAPI v1 protocol as pure functions over bytes and keys (the rustls way): no
//! sockets, no clock, no AWS, no async runtime. It builds and signs requests, verifies
//! notifications and answers, computes certificate SNs, parses money, identifiers, China time and
//! the daily bill; the gateway's adapters send and receive what it builds. What it relies on about
//! Alipay, with sources: `docs/alipay/`.

pub mod agreement;
#[cfg(feature = "bill")]
pub mod bill;
pub mod canonical;
pub mod cert;
pub mod china_time;
pub mod cross_border;
pub mod csr;
pub mod ids;
pub mod keys;
pub mod money;
pub mod notify;
pub mod request;
pub mod response;
pub mod signer;
pub mod trust;

pub use keys::{AppPrivateKey, KeyError, PublicKey, VerifyError};
pub use money::{Amount, AmountError};
pub use signer::{LocalKeySigner, SignError, Signer};
