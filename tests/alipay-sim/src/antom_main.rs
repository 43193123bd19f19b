//! The local Antom simulator as a server, for `make run`.
//!
//! Usage: antom-simulator --port 9102 --client-id SANDBOX_5YLOCAL --merchant-public-key FILE
//! --antom-private-key FILE [--test-clock-file FILE] [--reports-dir DIR]

use std::path::PathBuf;

use alipay_sim::antom::{AntomConfig, AntomSimulator};
use alipay_sim::{SigningKey, VerifyKey};
use clap::Parser;

#[derive(Parser)]
#[command(
    about = "A local Antom simulator (payments/pay, inquiry, cancel, refunds, notifications, faults)"
)]
struct Args {
    #[arg(long, default_value_t = 9102)]
    port: u16,
    #[arg(long, default_value = "SANDBOX_5YLOCAL0001")]
    client_id: String,
    /// The merchant's public key (the Antom channel's KMS key, from `alipay-cli public-key`).
    #[arg(long)]
    merchant_public_key: PathBuf,
    /// The simulator's own Antom private key (a TEST key).
    #[arg(long)]
    antom_private_key: PathBuf,
    /// Multiplies Antom's notification retry schedule (2 min, 10 min, ...); 0.01 makes 2 min 1.2 s.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// The shared test clock's file (milliseconds ahead of the machine).
    #[arg(long, env = "TEST_CLOCK_FILE")]
    test_clock_file: Option<PathBuf>,
    /// Where its reports are written (`POST /sim/reports`): the local SFTP server's folder.
    #[arg(long)]
    reports_dir: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut config = AntomConfig::with_keys(
        &args.client_id,
        VerifyKey::from_text(&read(&args.merchant_public_key)?)?,
        SigningKey::from_pem(&read(&args.antom_private_key)?)?,
    );
    config.time_scale = args.time_scale;
    config.test_clock_file = args.test_clock_file;
    config.reports_dir = args.reports_dir;
    let simulator = AntomSimulator::start(config, args.port)
        .await
        .map_err(|e| format!("port {}: {e}", args.port))?;
    eprintln!("antom simulator on {}", simulator.base_url());
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    Ok(())
}
