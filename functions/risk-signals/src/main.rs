#![recursion_limit = "256"]

//! Lambda entry point: one store for the process, one `handle` per batch of a tumbling window.

use aws_lambda_events::event::dynamodb::TimeWindowEvent;
use gateway::lambda::{init_logs, keep, serve_event};
use risk_signals::{Signals, handle};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logs();
    let table = std::env::var("ORDERS_TABLE")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .ok_or("invalid configuration: ORDERS_TABLE is not set")?;
    let config = gateway::aws::load_config().await;
    let signals = keep(Signals::new(
        store::Store::new(aws_sdk_dynamodb::Client::new(&config), table),
        &std::env::vars().collect(),
    )?);
    serve_event(
        signals,
        60_000,
        move |signals, event: TimeWindowEvent, _| async move { Ok(handle(signals, event).await) },
    )
    .await
}
