//! The gateway's services and edges: what the Lambda functions build at start and call per
//! request or per schedule. The rules they follow are `domain`'s; the protocol is `alipay`'s;
//! the table is `store`'s.
//!
//! | module | its job |
//! |---|---|
//! | [`startup`] | the [`startup::Gateway`] a function builds once: configuration, the store, its channels |
//! | [`channel`] | one Alipay application: calls through its breaker, signing with its key (and a standby), the HTTP client |
//! | [`notifications`] | Alipay's notifications: verified with the channels' keys or certificates, checked against the order, applied |
//! | [`payments`] | ending unpaid orders (close, expiry) and accepting the trade states Alipay reports |
//! | [`risk`] | risk decisions in a create: the rule set in force (cached, checked, last good kept), lists and signals read in time, the journal |
//! | [`refunds`] | driving a refund to its end: send, query, settle; Alipay's refund notices |
//! | [`sweep`] | the sweeper: due work, claimed and driven |
//! | [`subscriptions`] | subscriptions on Alipay agreements: signing, agreement notices, cancelling, the scheduled charges |
//! | [`reconcile`] | the daily reconciliation: the bill against our books, the report |
//! | [`events`] | which change of the table is which merchant event |
//! | [`config`] | the environment, read once and checked whole; a channel's keys and certificates |
//! | [`aws`] | SDK configuration, the KMS signer, the sealed application key |
//! | [`http`] | the merchant API's error shape, request parsing and resource views |
//! | [`lambda`] | the entry points the functions' `main`s call |
//! | [`deadline`] | time budgets from the invocation's deadline |
//! | [`clock`] | the process clock (the one place that reads it), and the test clock of debug builds |

pub mod antom;
pub mod aws;
pub mod channel;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod events;
pub mod http;
pub mod lambda;
pub mod notifications;
pub mod payments;
pub mod provider;
pub mod reconcile;
pub mod refunds;
pub mod risk;
pub mod sftp;
pub mod startup;
pub mod subscriptions;
pub mod sweep;
