//! Lambda entry point: build everything once; each invocation reconciles one day. An
//! EventBridge Scheduler event (no `date`) means the previous China-time day; `{"date":
//! "2026-11-26"}` reconciles that day (a re-run replaces its report). `"channel": "secondary"`
//! reconciles the secondary channel's bill (its own schedule sends it); none: the primary's.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use shared::budget::Deadline;
use shared::gateway::{Gateway, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    // A batch job: the SDK's time-outs are minutes-scale, not a request's.
    let sdk = shared::aws::load_batch_config().await;
    let config = shared::config::Config::from_env().map_err(|e| e.to_string())?;
    let gateway: &'static Gateway = Box::leak(Box::new(
        Gateway::with_config(config, &sdk, Role::CallsAlipay).await?,
    ));
    let reports: &'static reconcile::Reports =
        Box::leak(Box::new(reconcile::Reports::from_env(&sdk)?));
    let settings: &'static reconcile::Settings =
        Box::leak(Box::new(reconcile::Settings::from_env()?));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Deadline::from_lambda(
                Some(event.context.deadline),
                std::time::SystemTime::now(),
                gateway.config.lifecycle.default_budget_ms,
            );
            let day = reconcile::day_of_event(&event.payload, shared::gateway::now_ms())
                .map_err(lambda_http::Error::from)?;
            let channel =
                reconcile::channel_of_event(&event.payload).map_err(lambda_http::Error::from)?;
            let report = reconcile::run(gateway, channel, reports, settings, day, &deadline)
                .await
                .map_err(|e| lambda_http::Error::from(e.to_string()))?;
            let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
            println!("{}", report.emf_line(&function));
            Ok::<_, lambda_http::Error>(report.summary())
        },
    ))
    .await
}
