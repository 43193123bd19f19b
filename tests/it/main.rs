//! The integration tests, one binary (one link): each module drives the gateway's real parts
//! against the AWS stand-in (moto, reached with `AWS_ENDPOINT_URL`; `scripts/with-moto.sh`
//! starts it) and the Alipay simulator.
//!
//! Run one module or one test:
//! `scripts/with-moto.sh cargo test -p gateway-tests --test it -- lifecycle::`
//!
//! Apart, in their own binaries: `logs` (it installs the process's log subscriber), `chaos`
//! (the long run, `make chaos`), `template` (reads template.yaml only, needs nothing running)
//! and `differential` (against Alipay's SDKs, which `scripts/sdk-oracles.sh` installs).

mod antom_e2e;
mod antom_reconcile;
mod antom_sim;
mod breaker;
mod certificates;
mod contention;
mod contract;
mod cross_border_v1;
mod decisions;
mod e2e;
mod events;
mod kms;
mod lifecycle;
mod outbox;
mod reconcile;
mod risk;
mod round_trips;
mod sealed;
mod store;
mod subscriptions_api;
