//! Lambda entry point: one EventBridge client for the process, one `publish` per batch of
//! stream records (see the library for what is retried).

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use publisher::{Publisher, publish, records_of};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let bus = std::env::var("EVENT_BUS_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .ok_or("invalid configuration: EVENT_BUS_NAME is not set")?;
    let config = shared::aws::load_config().await;
    let publisher: &'static Publisher = Box::leak(Box::new(Publisher {
        client: aws_sdk_eventbridge::Client::new(&config),
        bus,
    }));
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let function: &'static str = Box::leak(function.into_boxed_str());
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            let outcome = publish(publisher, &records_of(event.payload)).await;
            println!("{}", outcome.emf_line(function));
            Ok::<_, lambda_http::Error>(outcome.response())
        },
    ))
    .await
}
