//! The Alipay OpenAPI v1 protocol as pure functions over bytes and keys (the rustls way): no
//! sockets, no clock, no AWS. Adapters at the edge send what these functions build.

pub mod canonical;
pub mod cert;
pub mod csr;
pub mod keys;
pub mod notify;
pub mod request;
pub mod response;
pub mod signer;
pub mod trust;
