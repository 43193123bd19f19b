//! The Lambda entry points the functions' `main`s call: one for the HTTP functions (the merchant
//! API, the notify Function URL) and one for the event functions (schedules, streams), so the
//! set-up (logs as Lambda configures them, dependencies built once, the runtime) is written once.

use crate::startup::{Gateway, Role};

/// The entry point of the HTTP functions (`fn main`): [`serve`] on a multi-threaded runtime.
///
/// `GATEWAY_MAX_CONCURRENCY`, when set, stands for Lambda's `AWS_LAMBDA_MAX_CONCURRENCY`: only
/// `make run` sets it, because `cargo lambda watch` forces the latter to 1 for every function it
/// starts. It is applied here, before the runtime starts any thread.
pub fn main<F, Fut>(role: Role, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static Gateway, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    if let Ok(text) = std::env::var("GATEWAY_MAX_CONCURRENCY") {
        let n = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1_000).contains(n))
            .ok_or("invalid configuration: GATEWAY_MAX_CONCURRENCY must be 1 to 1000")?;
        // SAFETY: nothing else runs yet (the runtime and its threads are built below), so no
        // other thread reads the environment while it changes.
        unsafe { std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", n.to_string()) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(role, handler))
}

/// The Lambda entry point every HTTP function shares: logs as Lambda configures them (JSON in
/// the template), dependencies built once at init, then the handler for each request.
///
/// Requests run concurrently when Lambda says so (`AWS_LAMBDA_MAX_CONCURRENCY` > 1, as on
/// Lambda Managed Instances: that many at once in one process, sharing the SDK clients, the
/// breaker and the learned certificates); on classic Lambda one at a time. Nothing in a handler
/// relies on running alone: every change is a conditional write.
pub async fn serve<F, Fut>(role: Role, handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static Gateway, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    init_logs();
    // Kept for the life of the process, as a Lambda execution environment keeps it.
    let gateway: &'static Gateway = Box::leak(Box::new(Gateway::init(role).await?));
    lambda_http::run_concurrent(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(handler(gateway, request).await)
    }))
    .await
}

/// Logs as Lambda configures them (JSON in the template): the first thing every `main` does.
pub fn init_logs() {
    lambda_http::tracing::init_default_subscriber();
    // A release binary never runs on a moved clock (crate::clock): it says so and stops.
    if let Err(refusal) = crate::clock::refuse_test_clock_in_release() {
        tracing::error!(refusal = %refusal, "refusing to start");
        eprintln!("{refusal}");
        std::process::exit(78);
    }
}

/// Keeps `value` for the life of the process, as a Lambda execution environment keeps what its
/// init built.
pub fn keep<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// The entry point every event function shares (the sweeper's and the reconciliation's
/// schedules, the table's stream): `handler` for each event, with the invocation's deadline
/// (`default_budget_ms` where the runtime gives none), and its answer as the invocation's.
pub async fn serve_event<D, E, R, F, Fut>(
    deps: &'static D,
    default_budget_ms: i64,
    handler: F,
) -> Result<(), lambda_http::Error>
where
    D: Sync + 'static,
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + 'static,
    F: Fn(&'static D, E, crate::deadline::Deadline) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, lambda_http::Error>> + Send + 'static,
{
    use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| async move {
        let deadline = crate::deadline::Deadline::from_lambda(
            Some(event.context.deadline),
            std::time::SystemTime::now(),
            default_budget_ms,
        );
        handler(deps, event.payload, deadline).await
    }))
    .await
}
