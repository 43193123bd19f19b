//! The sweeper function: on an EventBridge schedule (a template parameter, every 5 minutes by
//! default) one sweep within the invocation's deadline (`gateway::sweep`): PENDING refunds
//! finished, unpaid orders past their `time_expire` ended; then the subscriptions' due periods
//! charged (`gateway::subscriptions::run_due`).

use gateway::lambda::{init_logs, keep, serve_event};
use gateway::startup::{Gateway, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logs();
    let gateway = keep(Gateway::init(Role::CallsAlipay).await?);
    let function = keep(std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default());
    let budget = gateway.config.lifecycle.default_budget_ms;
    serve_event(
        gateway,
        budget,
        move |gateway, _event: serde_json::Value, deadline| async move {
            let report = gateway::sweep::run(gateway, &deadline).await?;
            // EMF: CloudWatch turns this line into metrics (the template alarms on the age of the
            // oldest due item), with no PutMetricData call.
            println!("{}", report.emf_line(function));
            // Then the subscriptions' due periods (their tries are due on China-time mornings).
            let charges = gateway::subscriptions::run_due(gateway, &deadline).await?;
            println!("{}", charges.emf_line());
            Ok(serde_json::json!({"sweep": report, "charges": charges}))
        },
    )
    .await
}
