//! A fresh, isolated environment per integration test: its own table and signing key on the
//! local stand-in, so tests run in parallel without seeing each other's orders.

use std::path::PathBuf;

use gateway::aws::KmsSigner;
use store::Store;

use local_stack::template::{
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
        // The functions' configuration, but for its 2 s attempt time-out: the stand-in answers
        // one request at a time, and on a busy machine a request can wait in its queue longer
        // than that (the chaos and contention proxies put the 2 s back, see `start_custom`).
        let sdk_config = gateway::aws::load_config()
            .await
            .to_builder()
            .timeout_config(gateway::aws::timeouts(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(30),
            ))
            .build();
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config);
        let kms = aws_sdk_kms::Client::new(&sdk_config);
        let template = read_template(&template_path()).unwrap_or_else(|e| panic!("{e}"));
        let id = uuid::Uuid::new_v4().simple().to_string();
        let table = format!("orders-{id}");
        let definition =
            table_definition(&template, "OrdersTable").unwrap_or_else(|e| panic!("{e}"));
        // Set-up, not the code under test: a stand-in that is slow to answer while every test
        // binary starts at once (a time-out, seen on CI machines) gets two more tries; a table
        // the lost answer had created is as good as a new one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match create_table(&dynamodb, &table, &definition).await {
                Ok(()) => break,
                Err(e) if attempt > 1 && e.contains("ResourceInUse") => break,
                Err(e) if attempt < 3 => {
                    eprintln!("creating the test table (attempt {attempt}): {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
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

    /// Deletes the table (the stand-in keeps every table in memory, and copies its state on
    /// each transaction: a long run drops what it no longer reads).
    pub async fn drop_table(&self) {
        if let Err(error) = self
            .dynamodb
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
        {
            eprintln!("could not delete table {}: {error}", self.table);
        }
    }

    pub fn kms_signer(&self) -> KmsSigner {
        KmsSigner::new(self.kms.clone(), &self.key_alias)
    }
}

/// Milliseconds since the Unix epoch (the clock the functions use).
pub use gateway::clock::now_ms;
pub use local_stack::http::{Answer, Http, eventually};

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The test application's identifiers (what the simulator and the gateway agree on).
pub const APP_ID: &str = "2021000000000001";
pub const SELLER_ID: &str = "2088000000000001";
/// The second channel's application (a second simulated Alipay application, own keys).
pub const APP_ID_2: &str = "2021000000000002";
/// The simulated Antom account's client id.
pub const ANTOM_CLIENT_ID: &str = "SANDBOX_5YTEST0001";
pub const SELLER_ID_2: &str = "2088000000000002";
/// Where test payments may return the buyer to.
pub const RETURN_PREFIX: &str = "https://shop.example.com/";

/// The whole gateway on this machine: AWS stand-in resources, the Alipay simulator, and the
/// three functions behind real HTTP.
pub struct Stack {
    pub env: TestEnv,
    pub simulator: alipay_sim::Simulator,
    /// The second channel's Alipay application, when the stack has one.
    pub secondary: Option<alipay_sim::Simulator>,
    /// The Antom account, when the stack has an Antom channel.
    pub antom: Option<alipay_sim::antom::AntomSimulator>,
    /// The simulated Antom's SFTP server (`antom_reports`).
    pub antom_sftp: Option<crate::sftp::LocalSftp>,
    pub gateway: crate::host::LocalGateway,
    pub http: Http,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with_timeout_ms(3_000).await
    }

    /// `alipay_timeout_ms` bounds each call to the simulator (injected hangs outlast it).
    pub async fn start_with_timeout_ms(alipay_timeout_ms: u64) -> Stack {
        Self::start_custom(StackOptions {
            alipay_timeout_ms,
            ..StackOptions::default()
        })
        .await
    }

    /// A stack whose functions reach AWS at `aws_endpoint` (the chaos run's fault proxy) instead
    /// of the stand-in itself; the tests' own reads go to the stand-in directly.
    pub async fn start_custom(options: StackOptions) -> Stack {
        // On the heap: the set-up's state machine is large in a debug build, and a test's own
        // future holding it inline overflowed a 2 MiB test thread's stack.
        Box::pin(Self::start_boxed(options)).await
    }

    async fn start_boxed(options: StackOptions) -> Stack {
        use gateway::startup::{Gateway, Role};
        let StackOptions {
            alipay_timeout_ms,
            aws_endpoint,
            risk_rules,
            secondary,
            env: extra_env,
            certificates,
            sealed_app_key,
            refunds,
            antom,
            antom_reports,
        } = options;
        let certificates = certificates && !sealed_app_key;
        let env = TestEnv::new().await;
        let functions_sdk = match &aws_endpoint {
            // The environment's AWS_ENDPOINT_URL (service configuration) would win over the
            // endpoint set here: drop it, so that the functions reach the proxy.
            // Behind a proxy the functions keep their own time-outs: its hangs outlast them.
            Some(url) => sdk_via(&env, url)
                .to_builder()
                .timeout_config(gateway::aws::request_timeouts())
                .build(),
            None => env.sdk_config.clone(),
        };
        let sealed = match sealed_app_key {
            true => Some(seal_fixture_app_key(&env, APP_ID).await),
            false => None,
        };
        let app_public_key = match &sealed {
            Some(_) => alipay::PublicKey::parse(
                &std::fs::read_to_string(fixtures().join("keys/app_public_key.pem")).expect("key"),
            )
            .expect("fixture public key"),
            None => env
                .kms_signer()
                .public_key()
                .await
                .expect("KMS public key")
                .clone(),
        };
        let ca = certificates.then(|| std::sync::Arc::new(alipay_sim::ca::TestCa::new()));
        let primary_certs = match &ca {
            Some(ca) => Some(
                open_platform_certificates(
                    ca,
                    &env.kms_signer(),
                    APP_ID,
                    "alipay_private_key.pem",
                    100,
                )
                .await,
            ),
            None => None,
        };
        let simulator = simulate(
            app_public_key,
            "alipay_private_key.pem",
            APP_ID,
            SELLER_ID,
            primary_certs.clone(),
            refunds,
        )
        .await;
        // The second channel: a second application key in KMS, a second Alipay application.
        let second = match secondary {
            false => None,
            true => {
                let template = read_template(&template_path()).expect("template");
                let id = uuid::Uuid::new_v4().simple().to_string();
                let alias = create_signing_key(
                    &env.kms,
                    &template,
                    "SecondaryAppSigningKey",
                    &format!("test2-{id}"),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                let public = KmsSigner::new(env.kms.clone(), &alias)
                    .public_key()
                    .await
                    .expect("KMS public key")
                    .clone();
                let certs = match &ca {
                    Some(ca) => Some(
                        open_platform_certificates(
                            ca,
                            &KmsSigner::new(env.kms.clone(), &alias),
                            APP_ID_2,
                            "alipay2_private_key.pem",
                            200,
                        )
                        .await,
                    ),
                    None => None,
                };
                let sim = simulate(
                    public,
                    "alipay2_private_key.pem",
                    APP_ID_2,
                    SELLER_ID_2,
                    certs.clone(),
                    refunds,
                )
                .await;
                Some((alias, sim, certs))
            }
        };
        let listeners = crate::host::LocalGateway::bind().await.expect("listeners");
        let notify_url = format!("http://{}/", listeners.1.local_addr().expect("address"));
        // The Antom channel: its own KMS key (registered with the simulated Antom) and account.
        let mut antom = match antom {
            false => None,
            true => {
                let template = read_template(&template_path()).expect("template");
                let id = uuid::Uuid::new_v4().simple().to_string();
                let alias = create_signing_key(
                    &env.kms,
                    &template,
                    "AntomSigningKey",
                    &format!("antom-{id}"),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                let public = KmsSigner::new(env.kms.clone(), &alias)
                    .public_key()
                    .await
                    .expect("KMS public key")
                    .to_spki_der();
                let config = alipay_sim::antom::AntomConfig::with_keys(
                    ANTOM_CLIENT_ID,
                    alipay_sim::VerifyKey::from_spki_der(&public).expect("key"),
                    alipay_sim::SigningKey::from_pem(
                        &std::fs::read_to_string(fixtures().join("keys/antom_private_key.pem"))
                            .expect("key"),
                    )
                    .expect("antom key"),
                );
                let sim = alipay_sim::antom::AntomSimulator::start(config, 0)
                    .await
                    .expect("antom simulator");
                let mut vars = vec![
                    ("ANTOM_CLIENT_ID".to_owned(), ANTOM_CLIENT_ID.to_owned()),
                    (
                        "ANTOM_PUBLIC_KEY".to_owned(),
                        std::fs::read_to_string(fixtures().join("keys/antom_public_key.pem"))
                            .expect("key"),
                    ),
                    ("ANTOM_GATEWAY_URL".to_owned(), sim.base_url().to_owned()),
                    ("ANTOM_KMS_KEY_ID".to_owned(), alias),
                    ("ANTOM_CURRENCIES".to_owned(), "USD,JPY,IDR,EUR".to_owned()),
                    ("ANTOM_SETTLEMENT_CURRENCY".to_owned(), "CNY".to_owned()),
                    (
                        "ANTOM_NOTIFY_URL".to_owned(),
                        format!("{notify_url}notify/antom"),
                    ),
                    (
                        "ANTOM_REDIRECT_URL".to_owned(),
                        format!("{RETURN_PREFIX}antom-done"),
                    ),
                ];
                // Its reports on a local SFTP server, our key to it in SSM (as deployed).
                let sftp = match antom_reports {
                    false => None,
                    true => {
                        let sftp = crate::sftp::LocalSftp::start();
                        let parameter = format!("/gateway-test/{id}/antom-sftp-key");
                        aws_sdk_ssm::Client::new(&env.sdk_config)
                            .put_parameter()
                            .name(&parameter)
                            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                            .value(&sftp.client_key)
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("PutParameter: {}", store::error_chain(&e)));
                        vars.extend([
                            ("ANTOM_SFTP_HOST".to_owned(), "127.0.0.1".to_owned()),
                            ("ANTOM_SFTP_PORT".to_owned(), sftp.port.to_string()),
                            ("ANTOM_SFTP_USER".to_owned(), sftp.user.clone()),
                            ("ANTOM_SFTP_HOST_KEY".to_owned(), sftp.host_key.clone()),
                            ("ANTOM_SFTP_KEY_PARAMETER".to_owned(), parameter),
                            (
                                "ANTOM_REPORTS_ROOT".to_owned(),
                                alipay_sim::antom::merchant_root(&sim.merchant_id()),
                            ),
                            ("ANTOM_SETTLEMENT_DAYS".to_owned(), "1".to_owned()),
                        ]);
                        Some(sftp)
                    }
                };
                Some((sim, vars, sftp))
            }
        };
        // Key mode: Alipay's public key. Certificate mode: the three files, the primary's from
        // S3 (as deployed), the secondary's inline.
        let primary_trust = match (&primary_certs, &ca) {
            (Some(certs), Some(ca)) => certificate_vars(&env, "", certs, ca, true).await,
            _ => vec![(
                "ALIPAY_PUBLIC_KEY".to_owned(),
                std::fs::read_to_string(fixtures().join("keys/alipay_public_key.pem"))
                    .expect("key"),
            )],
        };
        let secondary_trust = match (second.as_ref().and_then(|(_, _, c)| c.as_ref()), &ca) {
            (Some(certs), Some(ca)) => certificate_vars(&env, "SECONDARY_", certs, ca, false).await,
            _ => vec![(
                "SECONDARY_ALIPAY_PUBLIC_KEY".to_owned(),
                std::fs::read_to_string(fixtures().join("keys/alipay2_public_key.pem"))
                    .expect("key"),
            )],
        };
        let mut vars: std::collections::HashMap<String, String> = [
            ("ORDERS_TABLE", env.table.clone()),
            ("KMS_KEY_ID", env.key_alias.clone()),
            ("ALIPAY_APP_ID", APP_ID.to_owned()),
            ("ALIPAY_SELLER_ID", SELLER_ID.to_owned()),
            ("ALIPAY_GATEWAY_URL", simulator.gateway_url()),
            ("ALIPAY_NOTIFY_URL", notify_url),
            ("RETURN_URL_PREFIXES", RETURN_PREFIX.to_owned()),
            ("ALIPAY_TIMEOUT_MS", alipay_timeout_ms.to_string()),
            // Alipay's delays, scaled down as `make run` scales them.
            ("REFUND_QUERY_DELAY_MS", REFUND_QUERY_DELAY_MS.to_string()),
            ("REFUND_SPACING_MS", REFUND_SPACING_MS.to_string()),
            ("EXPIRY_GRACE_MS", "0".to_owned()),
            ("SWEEP_BACKOFF_MAX_MS", "1000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(risk_rules.map(|rules| ("RISK_RULES".to_owned(), rules)))
        .chain(primary_trust)
        .chain(second.iter().flat_map(|_| secondary_trust.clone()))
        .chain(second.iter().flat_map(|(alias, sim, _)| {
            [
                ("SECONDARY_ALIPAY_APP_ID".to_owned(), APP_ID_2.to_owned()),
                ("SECONDARY_KMS_KEY_ID".to_owned(), alias.clone()),
                (
                    "SECONDARY_ALIPAY_SELLER_ID".to_owned(),
                    SELLER_ID_2.to_owned(),
                ),
                ("SECONDARY_ALIPAY_GATEWAY_URL".to_owned(), sim.gateway_url()),
            ]
        }))
        .chain(antom.iter().flat_map(|(_, vars, _)| vars.clone()))
        .chain(extra_env)
        .collect();
        if let Some((ciphertext, sealing_key)) = sealed {
            vars.remove("KMS_KEY_ID");
            vars.insert("APP_PRIVATE_KEY_SEALED".into(), ciphertext);
            vars.insert("APP_KEY_SEALING_KMS_KEY_ID".into(), sealing_key);
        }
        let config = gateway::config::Config::from_map(&vars).expect("config");
        let gateway = |role| Gateway::with_config(config.clone(), &functions_sdk, role);
        let functions = crate::host::Functions {
            create_payment: gateway(Role::CallsAlipay).await.expect("create-payment"),
            refund: gateway(Role::CallsAlipay).await.expect("refund"),
            subscriptions: gateway(Role::CallsAlipay).await.expect("subscriptions"),
            notify: gateway(Role::NotifyOnly).await.expect("notify"),
            sweeper: gateway(Role::CallsAlipay).await.expect("sweeper"),
            reconcile: gateway(Role::CallsAlipay).await.expect("reconcile"),
        };
        let template = read_template(&template_path()).expect("template");
        let routes = local_stack::routes::Routes::from_template(&template).expect("routes");
        let gateway =
            crate::host::LocalGateway::serve(listeners, std::sync::Arc::new(functions), routes)
                .expect("serve");
        Stack {
            http: Http::new().for_api(
                &gateway.api_base_url,
                local_stack::api_auth::Credentials::local(),
            ),
            env,
            simulator,
            secondary: second.map(|(_, sim, _)| sim),
            antom_sftp: antom.as_mut().and_then(|(_, _, sftp)| sftp.take()),
            antom: antom.map(|(sim, _, _)| sim),
            gateway,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.api_base_url)
    }

    /// One sweeper run (a 30 s budget).
    pub async fn sweep(&self) -> gateway::sweep::SweepReport {
        self.gateway
            .functions
            .sweep(std::time::Duration::from_secs(30))
            .await
    }

    /// Runs the sweeper until nothing is due within the next 2 s, for at most `seconds`; the
    /// last report.
    pub async fn drain(&self, seconds: u64) -> gateway::sweep::SweepReport {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let report = self.sweep().await;
            let idle = report.next_due_at_ms.is_none_or(|at| at > now_ms() + 2_000);
            if idle || std::time::Instant::now() > deadline {
                return report;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A bucket of its own on the stand-in, for reconciliation reports.
    pub async fn reports_bucket(&self) -> (aws_sdk_s3::Client, String) {
        let config = aws_sdk_s3::config::Builder::from(&self.env.sdk_config)
            .force_path_style(true)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(config);
        let bucket = format!("reports-{}", uuid::Uuid::new_v4().simple());
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket: {}", store::error_chain(&e)));
        (s3, bucket)
    }

    /// An object of a reports bucket, as UTF-8 text.
    pub async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {}", store::error_chain(&e)))
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    /// One reconciliation of `day`, as the function runs it (a 60 s budget).
    pub async fn reconcile(
        &self,
        reports: &gateway::reconcile::Reports,
        settings: &gateway::reconcile::Settings,
        day: alipay::china_time::ChinaDate,
    ) -> Result<gateway::reconcile::Report, gateway::reconcile::ReconcileError> {
        self.reconcile_channel(domain::channel::ChannelId::Primary, reports, settings, day)
            .await
    }

    /// One reconciliation of one channel's bill of `day`.
    pub async fn reconcile_channel(
        &self,
        channel: domain::channel::ChannelId,
        reports: &gateway::reconcile::Reports,
        settings: &gateway::reconcile::Settings,
        day: alipay::china_time::ChinaDate,
    ) -> Result<gateway::reconcile::Report, gateway::reconcile::ReconcileError> {
        let deadline = gateway::deadline::Deadline::after(std::time::Duration::from_secs(60));
        gateway::reconcile::run(
            &self.gateway.functions.reconcile,
            channel,
            reports,
            settings,
            day,
            &deadline,
        )
        .await
    }

    /// The events path (stream → publisher → bus → queue) for this stack's table, on a bus and
    /// queue of its own.
    pub async fn events_path(&self) -> local_stack::events_path::EventsPath {
        let name = format!("events-{}", uuid::Uuid::new_v4().simple());
        local_stack::events_path::EventsPath::create(&self.env.sdk_config, &self.env.table, &name)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits out the refund spacing, so that the next refund of a trade is sent at once.
    pub async fn after_spacing(&self) {
        tokio::time::sleep(std::time::Duration::from_millis(REFUND_SPACING_MS + 50)).await;
    }
}

/// The test environment's SDK configuration sent to `url` (a proxy in front of the stand-in)
/// instead of the stand-in itself.
pub fn sdk_via(env: &TestEnv, url: &str) -> aws_config::SdkConfig {
    let mut builder = env.sdk_config.to_builder();
    // The environment's AWS_ENDPOINT_URL (service configuration) would win over the endpoint
    // set here.
    builder.set_service_config(Some(NoEnvironmentEndpoints));
    builder.endpoint_url(url).build()
}

/// Service configuration that reads nothing from the environment (see `start_custom`).
#[derive(Debug)]
struct NoEnvironmentEndpoints;

impl aws_types::service_config::LoadServiceConfig for NoEnvironmentEndpoints {
    fn load_config(&self, _key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        None
    }
}

/// How a [`Stack`] is built.
pub struct StackOptions {
    pub alipay_timeout_ms: u64,
    pub aws_endpoint: Option<String>,
    /// `RISK_RULES` for the functions (none: no fraud checks).
    pub risk_rules: Option<String>,
    /// A second channel (a second KMS key and a second simulated Alipay application).
    pub secondary: bool,
    /// More environment for the functions (`BREAKER_*`, say).
    pub env: Vec<(String, String)>,
    /// Certificate mode (公钥证书) instead of key mode: the default when
    /// `GATEWAY_TEST_ALIPAY_MODE=certificate` (how `make test` runs the end-to-end suites a
    /// second time).
    pub certificates: bool,
    /// Local signing: the application key (the fixture key) sealed under a KMS symmetric key
    /// made from the template's `AppKeySealingKey`, configured as `APP_PRIVATE_KEY_SEALED`
    /// instead of `KMS_KEY_ID` (key mode only).
    pub sealed_app_key: bool,
    /// How the simulated Alipay executes refunds: by default as harshly as Alipay may (every
    /// second payment by bank card, its refunds accepted with `fund_change=N` and executed
    /// later); [`alipay_sim::RefundProcessing::IMMEDIATE`] for tests about something else.
    pub refunds: alipay_sim::RefundProcessing,
    /// An Antom channel (its own KMS key, a simulated Antom) for `ANTOM_CURRENCIES`.
    pub antom: bool,
    /// With `antom`: its reports served by a local SFTP server (settled by the next day).
    pub antom_reports: bool,
}

/// Whether the suite runs in certificate mode (`GATEWAY_TEST_ALIPAY_MODE=certificate`).
pub fn certificate_mode_from_env() -> bool {
    std::env::var("GATEWAY_TEST_ALIPAY_MODE").is_ok_and(|mode| mode == "certificate")
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            alipay_timeout_ms: 3_000,
            aws_endpoint: None,
            risk_rules: None,
            secondary: false,
            env: Vec::new(),
            certificates: certificate_mode_from_env(),
            sealed_app_key: false,
            refunds: alipay_sim::RefundProcessing::default(),
            antom: false,
            antom_reports: false,
        }
    }
}

/// The fixture application key (`keys/app_private_key_pkcs8.pem`) sealed for `app_id` under a
/// new KMS key made from the template's `AppKeySealingKey`: (the Base64 ciphertext, the key's
/// alias), as `alipay-cli seal-key` prints and the template configures them.
pub async fn seal_fixture_app_key(env: &TestEnv, app_id: &str) -> (String, String) {
    use base64::Engine as _;
    let template = read_template(&template_path()).expect("template");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let alias = create_signing_key(
        &env.kms,
        &template,
        "AppKeySealingKey",
        &format!("seal-{id}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let key = alipay::AppPrivateKey::parse(
        &std::fs::read_to_string(fixtures().join("keys/app_private_key_pkcs8.pem")).expect("key"),
    )
    .expect("fixture key");
    let sealed =
        gateway::aws::sealed_key::seal(&env.kms, &alias, &key.to_pkcs8_der().expect("der"), app_id)
            .await
            .expect("kms:Encrypt");
    (
        base64::engine::general_purpose::STANDARD.encode(sealed),
        alias,
    )
}

/// A simulated Alipay application on a free port: its own key pair (`keys/<private_key>`),
/// verifying requests with `app_public_key`.
pub async fn simulate(
    app_public_key: alipay::PublicKey,
    private_key: &str,
    app_id: &str,
    seller_id: &str,
    certificates: Option<alipay_sim::Certificates>,
    refunds: alipay_sim::RefundProcessing,
) -> alipay_sim::Simulator {
    let text = std::fs::read_to_string(fixtures().join("keys").join(private_key)).expect("key");
    let alipay_key = alipay_sim::SigningKey::from_pem(&text).expect("simulator key");
    let app_public_key = alipay_sim::VerifyKey::from_spki_der(&app_public_key.to_spki_der())
        .expect("the application's public key");
    alipay_sim::Simulator::start(
        alipay_sim::SimulatorConfig {
            app_public_key,
            alipay_signer: std::sync::Arc::new(alipay_key),
            certificates,
            app_id: app_id.into(),
            seller_id: seller_id.into(),
            time_scale: 0.0005,
            refunds,
            test_clock_file: None,
        },
        0,
    )
    .await
    .expect("simulator")
}

/// What the open platform gives a certificate-mode application: the application certificate
/// issued from a CSR our own code made with `signer` (KMS), and Alipay's certificate for the
/// simulator's key `alipay_key` (a fixture).
pub async fn open_platform_certificates(
    ca: &std::sync::Arc<alipay_sim::ca::TestCa>,
    signer: &KmsSigner,
    app_id: &str,
    alipay_key: &str,
    serial: u64,
) -> alipay_sim::Certificates {
    let public = signer.public_key().await.expect("KMS public key").clone();
    let csr = alipay::csr::certificate_request(
        &format!("CN={app_id},O=Local Merchant,C=CN"),
        &public,
        signer,
    )
    .await
    .expect("CSR signed in KMS");
    let app = ca
        .issue_from_csr(&csr, app_id, serial)
        .expect("the simulated open platform accepts our CSR");
    let alipay_private =
        std::fs::read_to_string(fixtures().join("keys").join(alipay_key)).expect("key");
    let alipay_public = alipay_sim::SigningKey::from_pem(&alipay_private)
        .expect("key")
        .spki_der();
    let alipay_cert = ca.issue_leaf(
        "CN=支付宝(中国)网络技术有限公司-2088000000000000,OU=Alipay,O=Local Alipay Simulator,C=CN",
        serial + 1,
        &alipay_public,
        365,
    );
    alipay_sim::Certificates {
        ca: std::sync::Arc::clone(ca),
        app_cert_sn: app.sn.clone(),
        alipay_cert,
        app_cert: app,
    }
}

/// `ALIPAY_APP_CERT`, `ALIPAY_CERT`, `ALIPAY_ROOT_CERT` (with `prefix`): S3 objects on the
/// stand-in (`in_s3`) or the PEM texts.
pub async fn certificate_vars(
    env: &TestEnv,
    prefix: &str,
    certs: &alipay_sim::Certificates,
    ca: &alipay_sim::ca::TestCa,
    in_s3: bool,
) -> Vec<(String, String)> {
    let files = [
        (
            "ALIPAY_APP_CERT",
            "appCertPublicKey.crt",
            certs.app_cert.pem.clone(),
        ),
        (
            "ALIPAY_CERT",
            "alipayCertPublicKey_RSA2.crt",
            certs.alipay_cert.pem.clone(),
        ),
        ("ALIPAY_ROOT_CERT", "alipayRootCert.crt", ca.root_bundle()),
    ];
    let mut vars = Vec::new();
    let bucket = format!("certs-{}", uuid::Uuid::new_v4().simple());
    let s3 = if in_s3 {
        let config = aws_sdk_s3::config::Builder::from(&env.sdk_config)
            .force_path_style(true)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(config);
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket: {}", store::error_chain(&e)));
        Some(s3)
    } else {
        None
    };
    for (name, file, pem) in files {
        let value = match &s3 {
            Some(s3) => {
                s3.put_object()
                    .bucket(&bucket)
                    .key(format!("alipay/{file}"))
                    .body(pem.into_bytes().into())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("PutObject: {}", store::error_chain(&e)));
                format!("s3://{bucket}/alipay/{file}")
            }
            None => pem,
        };
        vars.push((format!("{prefix}{name}"), value));
    }
    vars
}

/// The stack's scaled delays (production: 10 s and 3 s).
pub const REFUND_QUERY_DELAY_MS: u64 = 200;
pub const REFUND_SPACING_MS: u64 = 300;
