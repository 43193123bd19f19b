//! The sweeper function: on an EventBridge schedule (a template parameter, every 5 minutes by
//! default) it finishes interrupted work: PENDING refunds (query, re-send the same request,
//! settle) and unpaid orders past their `time_expire` (query; paid → apply; waiting → close at
//! Alipay; never existed → close here). See `shared::sweeping`.

use shared::budget::Deadline;
use shared::gateway::Gateway;
use shared::http::ApiError;
use shared::sweeping::{SweepReport, sweep};

/// One run within `deadline`.
pub async fn run(gateway: &Gateway, deadline: &Deadline) -> Result<SweepReport, ApiError> {
    if gateway.channels.is_empty() {
        return Err(ApiError::unavailable(
            "misconfigured",
            "this function cannot call Alipay",
            60,
        ));
    }
    let report = sweep(gateway, deadline).await;
    if report.due > 0 {
        tracing::info!(report = ?report, "sweep");
    }
    if report.oldest_due_age_seconds > 0 || report.errors > 0 {
        tracing::warn!(
            oldest_due_age_seconds = report.oldest_due_age_seconds,
            errors = report.errors,
            "due work remains"
        );
    }
    Ok(report)
}
