//! A fresh, isolated environment per integration test: its own table and signing key on the
//! local stand-in, so tests run in parallel without seeing each other's orders.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use shared::aws::KmsSigner;
use shared::store::Store;

use crate::local_stack::{
    create_signing_key, create_table, endpoint_from_env, read_template, table_definition,
    template_path,
};

pub struct TestEnv {
    pub sdk_config: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub table: String,
    pub key_alias: String,
    pub store: Store,
}

impl TestEnv {
    /// Creates a table and a key named after a fresh UUID. Panics with instructions when the
    /// stand-in is not configured: a test that needs it must fail loudly, never skip.
    pub async fn new() -> TestEnv {
        if let Err(message) = endpoint_from_env() {
            panic!("{message}");
        }
        let sdk_config = shared::aws::load_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config);
        let kms = aws_sdk_kms::Client::new(&sdk_config);
        let template = read_template(&template_path()).unwrap_or_else(|e| panic!("{e}"));
        let id = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("orders-{id}");
        let definition =
            table_definition(&template, "OrdersTable").unwrap_or_else(|e| panic!("{e}"));
        create_table(&dynamodb, &table, &definition)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key_alias = create_signing_key(&kms, &template, "AppSigningKey", &format!("test-{id}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::new(dynamodb.clone(), &table);
        TestEnv {
            sdk_config,
            dynamodb,
            kms,
            table,
            key_alias,
            store,
        }
    }

    pub fn kms_signer(&self) -> KmsSigner {
        KmsSigner::new(self.kms.clone(), &self.key_alias)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
