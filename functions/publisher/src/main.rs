//! Lambda entry point: one EventBridge client for the process, one `publish` per batch of
//! stream records (see the library for what is retried).

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use gateway::lambda::{init_logs, keep, serve_event};
use publisher::{Publisher, publish, records_of};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logs();
    let bus = std::env::var("EVENT_BUS_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .ok_or("invalid configuration: EVENT_BUS_NAME is not set")?;
    let config = gateway::aws::load_config().await;
    let publisher = keep(Publisher {
        client: aws_sdk_eventbridge::Client::new(&config),
        bus,
    });
    let function = keep(std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default());
    // Publishing has no deadline of its own: Lambda's time-out bounds a batch.
    serve_event(
        publisher,
        60_000,
        move |publisher, event: StreamEvent, _| async move {
            let outcome = publish(publisher, &records_of(event)).await;
            println!("{}", outcome.emf_line(function));
            Ok(outcome.response())
        },
    )
    .await
}
