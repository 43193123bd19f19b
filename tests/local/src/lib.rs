//! The gateway on one machine: what `make run` starts around the functions, and what the tests
//! and the demo drive it with.
//!
//! - [`template`]: the stack's resources (table, KMS keys) made on the AWS stand-in from
//!   `template.yaml` itself, so the local table is the deployed one;
//! - [`routes`] and [`api_auth`]: API Gateway's routes (from the template) and its IAM
//!   authorization (SigV4), as the local API serves them;
//! - [`events_path`]: the stream → publisher → EventBridge → SQS path, pumped locally;
//! - [`http`] and [`contract`]: a merchant's signed client, every answer checked against
//!   `openapi.yaml`.

pub mod api_auth;
pub mod contract;
pub mod events_path;
pub mod http;
pub mod routes;
pub mod template;

/// `make run`'s shared test clock (`.local/test-clock`): how far it is ahead of the machine's.
pub fn test_clock_offset_ms() -> i64 {
    std::fs::read_to_string(".local/test-clock")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}
