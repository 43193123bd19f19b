//! The gateway's rules, pure (no I/O, no clock: time comes in as an argument): what payments and
//! refunds are and which states they move through, and the decisions every request handler and
//! scheduled function drives alike.
//!
//! | module | what it decides |
//! |---|---|
//! | [`states`] | orders and refunds, their states and transitions, what caused a change |
//! | [`reports`] | what a verified Alipay report (a notification, a query answer) does to an order |
//! | [`lifecycle`] | given what Alipay answered about a refund or an unpaid order, what next |
//! | [`antom`] | the same decisions for Antom's answers (pay, inquiry, cancel, refund), and its settlement facts |
//! | [`risk`] | the fraud rules: configuration, screening, counters, after-payment flags |
//! | [`decisions`] | real-time risk decisions: allow, review, step-up, block, shadow rules, the journal's entry |
//! | [`breaker`] | the circuit breaker's arithmetic: windows, opening, trials |
//! | [`reconciliation`] | matching Alipay's bill with our books, and classifying what differs |
//! | [`subscriptions`] | plans on Alipay agreements: dates, windows, what a charge's answer means, dunning |
//! | [`channel`] | which Alipay application (channel) a payment belongs to |

pub mod antom;
pub mod breaker;
pub mod channel;
pub mod decisions;
pub mod lifecycle;
pub mod reconciliation;
pub mod reports;
pub mod risk;
pub mod states;
pub mod subscriptions;
