//! The merchant events under `make run`: the table's stream read as Lambda's event source
//! mapping reads it, the publisher function's handler, an EventBridge bus on the stand-in and a
//! rule to a queue; every event that arrives is printed (one line) and appended in full to
//! `.local/events.jsonl` (what `make demo` shows). Polls every `--every-ms`.

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use local_stack::events_path::EventsPath;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Publish and show the local gateway's events")]
struct Args {
    /// The bus (and queue) name on the stand-in.
    #[arg(long, default_value = "alipay-gateway-local-events")]
    bus: String,
    /// Where every event is appended, one JSON document a line.
    #[arg(long, default_value = ".local/events.jsonl")]
    log: std::path::PathBuf,
    /// Milliseconds between two reads of the stream.
    #[arg(long, default_value_t = 250)]
    every_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let table = std::env::var("ORDERS_TABLE").map_err(|_| "ORDERS_TABLE is not set")?;
    let config = gateway::aws::load_config().await;
    let mut path = EventsPath::create(&config, &table, &args.bus).await?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(|e| format!("{}: {e}", args.log.display()))?;
    loop {
        match path.events().await {
            Ok(events) => {
                for event in events {
                    println!("{}", one_line(&event));
                    writeln!(log, "{event}").map_err(|e| e.to_string())?;
                }
            }
            Err(error) => eprintln!("events: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
    }
}

/// `payment.paid  demo_1 PAID 299.00  evt_…`
fn one_line(event: &Value) -> String {
    let detail = &event["detail"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let what = if detail["payment"].is_object() {
        let p = &detail["payment"];
        let flagged = if p["risk"]["flagged"] == true {
            format!(" FLAGGED {}", p["risk"]["rules"])
        } else {
            String::new()
        };
        format!(
            "{} {} {}{flagged}",
            text(&p["out_trade_no"]),
            text(&p["status"]),
            text(&p["amount"])
        )
    } else if detail["refund"].is_object() {
        let r = &detail["refund"];
        format!(
            "{}/{} {} {}",
            text(&r["out_trade_no"]),
            text(&r["out_request_no"]),
            text(&r["status"]),
            text(&r["amount"])
        )
    } else if detail["subscription"].is_object() {
        let s = &detail["subscription"];
        format!(
            "{} {} period {} charged {}",
            text(&s["subscription_id"]),
            text(&s["status"]),
            s["current_period"]["number"],
            text(&s["charged_amount"])
        )
    } else {
        let r = &detail["reconciliation"];
        format!("{} {} discrepancies", text(&r["date"]), r["discrepancies"])
    };
    format!(
        "event {:<28} {what}  {}",
        text(&event["detail-type"]),
        text(&detail["event_id"])
    )
}
