//! Creates the orders table, the signing key and the reports bucket on the local AWS stand-in, as template.yaml
//! defines them; does nothing for what already exists. Prints what the functions need.
//!
//! Usage: local-bootstrap --table NAME --key-alias alias/NAME

use clap::Parser;
use local_stack::template::{
    create_signing_key, create_table, endpoint_from_env, read_template, table_definition,
    template_path,
};

#[derive(Parser)]
#[command(
    about = "Create the gateway's table and KMS key on the local AWS stand-in (from template.yaml)"
)]
struct Args {
    #[arg(long, default_value = "alipay-gateway-local-orders")]
    table: String,
    #[arg(long, default_value = "alias/alipay-gateway-local")]
    key_alias: String,
    /// The second channel's signing key (SecondaryAppSigningKey).
    #[arg(long, default_value = "alias/alipay-gateway-local-secondary")]
    secondary_key_alias: String,
    /// The Antom channel's signing key (AntomSigningKey).
    #[arg(long, default_value = "alias/alipay-gateway-local-antom")]
    antom_key_alias: String,
    /// The reconciliation reports bucket (ReconcileReportsBucket).
    #[arg(long, default_value = "alipay-gateway-local-reports")]
    bucket: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    endpoint_from_env()?;
    let sdk = gateway::aws::load_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let kms = aws_sdk_kms::Client::new(&sdk);
    let template = read_template(&template_path())?;

    let exists = dynamodb
        .describe_table()
        .table_name(&args.table)
        .send()
        .await
        .is_ok();
    if !exists {
        create_table(
            &dynamodb,
            &args.table,
            &table_definition(&template, "OrdersTable")?,
        )
        .await?;
    }
    let alias = format!("alias/{}", args.key_alias.trim_start_matches("alias/"));
    let key_exists = kms.describe_key().key_id(&alias).send().await.is_ok();
    if !key_exists {
        create_signing_key(&kms, &template, "AppSigningKey", &alias).await?;
    }
    let secondary_alias = format!(
        "alias/{}",
        args.secondary_key_alias.trim_start_matches("alias/")
    );
    if kms
        .describe_key()
        .key_id(&secondary_alias)
        .send()
        .await
        .is_err()
    {
        create_signing_key(&kms, &template, "SecondaryAppSigningKey", &secondary_alias).await?;
    }
    let antom_alias = format!(
        "alias/{}",
        args.antom_key_alias.trim_start_matches("alias/")
    );
    if kms
        .describe_key()
        .key_id(&antom_alias)
        .send()
        .await
        .is_err()
    {
        create_signing_key(&kms, &template, "AntomSigningKey", &antom_alias).await?;
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket_exists = s3.head_bucket().bucket(&args.bucket).send().await.is_ok();
    if !bucket_exists {
        s3.create_bucket()
            .bucket(&args.bucket)
            .send()
            .await
            .map_err(|e| format!("CreateBucket {}: {}", args.bucket, store::error_chain(&e)))?;
    }
    println!(
        "{}",
        serde_json::json!({ "table": args.table, "kms_key_id": alias, "secondary_kms_key_id": secondary_alias, "antom_kms_key_id": antom_alias, "bucket": args.bucket, "created_table": !exists, "created_key": !key_exists, "created_bucket": !bucket_exists,
            // The fraud rules a deployment gets by default (template.yaml's RiskRules).
            "risk_rules": template["Parameters"]["RiskRules"]["Default"].as_str() })
    );
    Ok(())
}
