//! Lambda entry point: build everything once, then one sweep per scheduled event, within the
//! invocation's deadline.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use shared::budget::Deadline;
use shared::gateway::{Gateway, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let gateway: &'static Gateway = Box::leak(Box::new(Gateway::init(Role::CallsAlipay).await?));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Deadline::from_lambda(
                Some(event.context.deadline),
                std::time::SystemTime::now(),
                gateway.config.lifecycle.default_budget_ms,
            );
            let report = sweeper::run(gateway, &deadline)
                .await
                .map_err(|e| lambda_http::Error::from(e.message))?;
            // EMF: CloudWatch turns this line into metrics (the template alarms on the age of
            // the oldest due item), with no PutMetricData call.
            let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
            println!("{}", report.emf_line(&function));
            Ok::<_, lambda_http::Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}
