//! Test support for the gateway: the local stack's bootstrap (from `template.yaml`) and the
//! fixtures every integration test shares.

pub mod bench;
pub mod chaos;
pub mod host;
pub mod merchant;
pub mod round_trips;
pub mod sftp;
pub mod store_cases;
pub mod support;
