//! The sweeper under `make run`: the same `gateway::sweep::run` (then the subscriptions' due
//! periods, `gateway::subscriptions::run_due`) the Lambda runs on its schedule, here
//! every few seconds (`--every-ms`), or once (`--once`, what `make sweep` does). Reads the same
//! environment as the functions.

use std::time::Duration;

use clap::Parser;
use gateway::deadline::Deadline;
use gateway::startup::{Gateway, Role};

#[derive(Parser)]
#[command(about = "Run the gateway's sweeper against the local stack")]
struct Args {
    /// Run once and exit.
    #[arg(long)]
    once: bool,
    /// Milliseconds between runs.
    #[arg(long, default_value_t = 2_000)]
    every_ms: u64,
    /// The budget of one run, as the Lambda's time-out gives it.
    #[arg(long, default_value_t = 60_000)]
    budget_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let gateway = Gateway::init(Role::CallsAlipay).await?;
    loop {
        let deadline = Deadline::after(Duration::from_millis(args.budget_ms));
        let report = gateway::sweep::run(&gateway, &deadline)
            .await
            .map_err(|e| e.to_string())?;
        let charges = gateway::subscriptions::run_due(&gateway, &deadline)
            .await
            .map_err(|e| e.to_string())?;
        if args.once {
            println!(
                "charges: {} subscriptions due; periods paid {}, unpaid {}; refusals {}; canceled {}",
                charges.claimed,
                charges.periods_paid,
                charges.periods_unpaid,
                charges.refusals,
                charges.canceled
            );
            println!(
                "sweep: {} due; refunds succeeded {}, failed {}, still pending {}; orders closed {}, paid {}, left open {}; errors {}",
                report.due,
                report.refunds_succeeded,
                report.refunds_failed,
                report.refunds_pending,
                report.orders_closed,
                report.orders_paid,
                report.orders_open,
                report.errors
            );
            return Ok(());
        }
        if report.due == 0 && charges.claimed == 0 {
            tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
        }
    }
}
