//! The local Alipay simulator as a server, for `make run`.
//!
//! Usage: alipay-simulator --port 9100 --app-public-key FILE --alipay-private-key FILE
//! [--certificates DIR] (certificate mode: DIR/app.csr in, the open platform's three files out)
//! [--bank-card-every N] [--refund-delay-ms MS] (refunds executed later, as Alipay does for
//! bank cards)

use std::path::PathBuf;

use alipay_sim::{SigningKey, Simulator, SimulatorConfig, VerifyKey};
use clap::Parser;

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
    #[arg(long, default_value = "2021000000000001")]
    app_id: String,
    #[arg(long, default_value = "2088000000000001")]
    seller_id: String,
    /// Multiplies Alipay's notification retry schedule (4m, 10m, ...); 0.01 makes 4m 2.4s.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// Certificate mode: DIR/app.csr is the application's certificate request (from
    /// `alipay-cli csr`); the simulated open platform issues the certificates and writes
    /// appCertPublicKey.crt, alipayCertPublicKey_RSA2.crt and alipayRootCert.crt into DIR.
    #[arg(long, value_name = "DIR")]
    certificates: Option<PathBuf>,
    /// The first serial number of the certificates it issues.
    #[arg(long, default_value_t = 100)]
    serial: u64,
    /// Every n-th payment is paid by bank card: its refunds are accepted (`fund_change=N`) and
    /// executed later, as Alipay does (0: every refund at once).
    #[arg(long, default_value_t = 2)]
    bank_card_every: u64,
    /// How long after it is accepted a bank-card refund is executed, in milliseconds.
    #[arg(long, default_value_t = 3_000)]
    refund_delay_ms: u64,
    /// The shared test clock's file (milliseconds ahead of the machine), the one the gateway's
    /// debug builds read through TEST_CLOCK_FILE (its default here too).
    #[arg(long, env = "TEST_CLOCK_FILE")]
    test_clock_file: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let app_public_key = VerifyKey::from_text(&read(&args.app_public_key)?)?;
    let alipay_key = SigningKey::from_pem(&read(&args.alipay_private_key)?)?;
    let certificates = match &args.certificates {
        None => None,
        Some(dir) => {
            let ca = std::sync::Arc::new(alipay_sim::ca::TestCa::new());
            let app = ca.issue_from_csr(&read(&dir.join("app.csr"))?, &args.app_id, args.serial)?;
            let alipay_cert = ca.issue_leaf(
                "CN=支付宝(中国)网络技术有限公司-2088000000000000,OU=Alipay,O=Local Alipay Simulator,C=CN",
                args.serial + 1,
                &alipay_key.spki_der(),
                365,
            );
            for (name, text) in [
                ("alipayRootCert.crt", ca.root_bundle()),
                ("alipayCertPublicKey_RSA2.crt", alipay_cert.pem.clone()),
                ("appCertPublicKey.crt", app.pem.clone()),
            ] {
                std::fs::write(dir.join(name), text)
                    .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
            }
            Some(alipay_sim::Certificates {
                ca,
                app_cert_sn: app.sn.clone(),
                app_cert: app,
                alipay_cert,
            })
        }
    };
    let simulator = Simulator::start(
        SimulatorConfig {
            app_public_key,
            alipay_signer: std::sync::Arc::new(alipay_key),
            certificates,
            app_id: args.app_id,
            seller_id: args.seller_id,
            time_scale: args.time_scale,
            refunds: alipay_sim::RefundProcessing {
                bank_card_every: args.bank_card_every,
                delay: std::time::Duration::from_millis(args.refund_delay_ms),
            },
            test_clock_file: args.test_clock_file,
        },
        args.port,
    )
    .await
    .map_err(|e| format!("port {}: {e}", args.port))?;
    println!("Alipay simulator listening on {}", simulator.base_url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
