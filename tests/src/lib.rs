//! Test support for the gateway: the local stack's bootstrap (from `template.yaml`) and the
//! fixtures every integration test shares.

pub mod api_auth;
pub mod bench;
pub mod chaos;
pub mod contract;
pub mod events_path;
pub mod host;
pub mod local_stack;
pub mod merchant;
pub mod routes;
pub mod simulator;
pub mod store_cases;
pub mod support;
