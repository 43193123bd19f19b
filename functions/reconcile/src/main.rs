//! The reconcile function: each invocation reconciles one day of one channel
//! (`gateway::reconcile`). An EventBridge Scheduler event (no `date`) means the previous
//! China-time day; `{"date": "2026-11-26"}` reconciles that day (a re-run replaces its report);
//! `"channel": "secondary"` the secondary channel's bill, `"antom"` Antom's reports (each has
//! its own schedule); `"if_not_ready": true` leaves a day already reconciled as it is;
//! `"after_settlement": true` (Antom) is the day whose settlement date has just passed.

use gateway::lambda::{init_logs, keep, serve_event};
use gateway::reconcile::{Reports, Settings, run_event};
use gateway::startup::{Gateway, Role};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_logs();
    // A batch job: the SDK's time-outs are minutes-scale, not a request's.
    let sdk = gateway::aws::load_batch_config().await;
    let config = gateway::config::Config::from_env().map_err(|e| e.to_string())?;
    let gateway = keep(Gateway::with_config(config, &sdk, Role::CallsAlipay).await?);
    let deps = keep((
        gateway,
        Reports::from_env(&sdk)?,
        Settings::from_env()?.with_ssm(&sdk),
    ));
    let function = keep(std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default());
    let budget = gateway.config.lifecycle.default_budget_ms;
    serve_event(
        deps,
        budget,
        move |deps, event: serde_json::Value, deadline| async move {
            let (gateway, reports, settings) = deps;
            Ok(run_event(gateway, reports, settings, &event, &deadline, function).await?)
        },
    )
    .await
}
