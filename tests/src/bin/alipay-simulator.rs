//! The local Alipay simulator as a server, for `make run`.
//!
//! Usage: alipay-simulator --port 9100 --app-public-key FILE --alipay-private-key FILE

use std::path::PathBuf;

use clap::Parser;
use gateway_tests::simulator::{Simulator, SimulatorConfig};

#[derive(Parser)]
#[command(about = "A local Alipay OpenAPI simulator (gateway.do, cashier, notifications, faults)")]
struct Args {
    #[arg(long, default_value_t = 9100)]
    port: u16,
    /// The application's public key (from `alipay-cli public-key`), to verify requests.
    #[arg(long)]
    app_public_key: PathBuf,
    /// The simulator's own Alipay private key (a TEST key).
    #[arg(long)]
    alipay_private_key: PathBuf,
    #[arg(long, default_value = gateway_tests::support::APP_ID)]
    app_id: String,
    #[arg(long, default_value = gateway_tests::support::SELLER_ID)]
    seller_id: String,
    /// Multiplies Alipay's notification retry schedule (4m, 10m, ...); 0.01 makes 4m 2.4s.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let app_public_key =
        shared::PublicKey::parse(&read(&args.app_public_key)?).map_err(|e| e.to_string())?;
    let alipay_key = shared::AppPrivateKey::parse(&read(&args.alipay_private_key)?)
        .map_err(|e| e.to_string())?;
    let simulator = Simulator::start(
        SimulatorConfig {
            app_public_key,
            alipay_signer: std::sync::Arc::new(shared::LocalKeySigner::new(&alipay_key)),
            certificates: None,
            app_id: args.app_id,
            seller_id: args.seller_id,
            time_scale: args.time_scale,
        },
        args.port,
    )
    .await
    .map_err(|e| format!("port {}: {e}", args.port))?;
    println!("Alipay simulator listening on {}", simulator.base_url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
