//! `alipay-cli`: sign and verify Alipay OpenAPI messages from the command line, with the same
//! code the gateway runs. For merchants debugging an integration, and for scripts.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alipay::canonical::{Omit, signing_string};
use alipay::notify::verify_notification;
use alipay::response::verify_response;
use alipay::{AppPrivateKey, LocalKeySigner, PublicKey};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

const EXAMPLES: &str = "\
Keys may be PEM (PKCS#1 \"RSA PRIVATE KEY\", PKCS#8 \"PRIVATE KEY\", SPKI \"PUBLIC KEY\") or the bare
Base64 that Alipay's key tool exports.

Exit status: 0 done (signed, or genuine); 1 not genuine (the reason is on stderr);
2 usage error (bad arguments, unreadable key or input).

Examples:
  echo '{\"app_id\":\"2021000123456789\",\"method\":\"alipay.trade.query\",\"sign_type\":\"RSA2\"}' \\
    | alipay-cli sign --private-key app_private_key.pem
  alipay-cli verify-notify --alipay-public-key alipay_public_key.txt < notify_body.txt
  alipay-cli public-key --kms-key-id alias/my-stack-alipay-app-key
  alipay-cli csr --kms-key-id alias/my-stack-alipay-app-key \\
    --subject 'CN=2021000123456789,O=Example Ltd,C=CN' > app.csr
  alipay-cli cert-sn --app-cert appCertPublicKey_2021000123456789.crt --root-cert alipayRootCert.crt
  curl -s ... | alipay-cli verify-response --alipay-public-key alipay_public_key.txt \\
    --method alipay.trade.refund

Antom (cross-border, /ams/api/v1):
  alipay-cli antom-sign --private-key merchant_private_key.pem --client-id SANDBOX_5Y... \\
    --path /ams/api/v1/payments/pay < pay.json
  alipay-cli antom-verify-notify --antom-public-key antom_public_key.pem --client-id SANDBOX_5Y... \\
    --path /notify/antom -H 'request-time: 2026-12-05T10:00:00+08:00' \\
    -H 'signature: algorithm=RSA256,keyVersion=1,signature=...' -H 'client-id: SANDBOX_5Y...' < body.json
  curl -s -D headers.txt ... > body.json; alipay-cli antom-verify-response \\
    --antom-public-key antom_public_key.pem --client-id SANDBOX_5Y... \\
    --path /ams/api/v1/payments/inquiryPayment --headers-file headers.txt < body.json";

#[derive(Parser)]
#[command(name = "alipay-cli", version, about = "Sign and verify Alipay OpenAPI (v1, RSA2) and Antom messages", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign request parameters. Stdin: a JSON object of string parameters (sign_type included;
    /// sign and empty values are left out). Stdout: {"signing_string", "sign"}.
    Sign {
        /// The application private key (应用私钥).
        #[arg(long, value_name = "FILE")]
        private_key: PathBuf,
    },
    /// Verify an asynchronous notification. Stdin: the raw form-encoded body exactly as Alipay
    /// POSTed it. Stdout: the verified notification as JSON (the buyer id masked).
    VerifyNotify {
        /// Alipay's public key (支付宝公钥), not the application's own.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "alipay_cert",
            conflicts_with = "alipay_cert"
        )]
        alipay_public_key: Option<PathBuf>,
        /// Certificate mode: Alipay's public certificate (alipayCertPublicKey_RSA2.crt; several
        /// concatenated are all tried).
        #[arg(long, value_name = "FILE")]
        alipay_cert: Option<PathBuf>,
    },
    /// Print the public half of the KMS signing key as bare Base64 SPKI: the text to paste into
    /// Alipay's open platform as the application public key (应用公钥). Uses the usual AWS
    /// environment (AWS_REGION, credentials, AWS_ENDPOINT_URL).
    PublicKey {
        /// Key id, key ARN, alias (alias/NAME) or alias ARN.
        #[arg(long, value_name = "ID")]
        kms_key_id: String,
    },
    /// Print a PKCS#10 certificate request (PEM) for the application certificate (应用公钥证书),
    /// signed by the KMS key (or a local private key): upload it to Alipay's open platform in
    /// certificate mode; the private key never leaves KMS.
    Csr {
        /// The KMS signing key: key id, key ARN, alias (alias/NAME) or alias ARN.
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "private_key",
            required_unless_present = "private_key"
        )]
        kms_key_id: Option<String>,
        /// A local application private key instead (tests, keys not in KMS).
        #[arg(long, value_name = "FILE")]
        private_key: Option<PathBuf>,
        /// The request's subject, most specific first, such as
        /// 'CN=2021000123456789,O=Example Ltd,C=CN' (Alipay writes its own subject into the
        /// certificate it issues).
        #[arg(long, value_name = "DN")]
        subject: String,
    },
    /// Seal an application private key under a KMS symmetric key (the stack's SealingKeyId), for
    /// local signing (APP_PRIVATE_KEY_SEALED; docs/deploying.md, "Signing past KMS's quota"). Without
    /// --private-key a new RSA-2048 key is generated in memory: only its sealed form and its
    /// public half leave this process. Stdout: JSON {"app_private_key_sealed", "app_public_key"}
    /// (register app_public_key on Alipay's open platform as the application public key).
    SealKey {
        /// The KMS symmetric key that seals: key id, ARN or alias.
        #[arg(long, value_name = "KEY")]
        kms_key_id: String,
        /// The Alipay application id the key belongs to: it is bound into the sealed key and
        /// the functions only open it for that application.
        #[arg(long, value_name = "APPID")]
        app_id: String,
        /// An existing application private key to seal, instead of a new one.
        #[arg(long, value_name = "FILE")]
        private_key: Option<PathBuf>,
    },
    /// Print the SNs certificate mode sends: app_cert_sn of the application certificate,
    /// alipay_root_cert_sn of Alipay's root bundle, and the SN of Alipay's certificate. Stdout:
    /// JSON.
    CertSn {
        /// The application certificate (appCertPublicKey_<app_id>.crt).
        #[arg(long, value_name = "FILE")]
        app_cert: Option<PathBuf>,
        /// Alipay's root bundle (alipayRootCert.crt).
        #[arg(long, value_name = "FILE")]
        root_cert: Option<PathBuf>,
        /// Alipay's public certificate (alipayCertPublicKey_RSA2.crt).
        #[arg(long, value_name = "FILE")]
        alipay_cert: Option<PathBuf>,
    },
    /// Verify a synchronous response. Stdin: the raw response body. Stdout: the verified
    /// `*_response` object as JSON.
    VerifyResponse {
        /// Alipay's public key (支付宝公钥), not the application's own.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "alipay_cert",
            conflicts_with = "alipay_cert"
        )]
        alipay_public_key: Option<PathBuf>,
        /// Certificate mode: Alipay's public certificate; the answer's alipay_cert_sn must be
        /// one of the file's.
        #[arg(long, value_name = "FILE")]
        alipay_cert: Option<PathBuf>,
        /// The method that was called, such as alipay.trade.refund.
        #[arg(long, value_name = "METHOD")]
        method: String,
    },
    /// Sign an Antom request. Stdin: the body, exactly as it will be sent. Stdout: JSON
    /// {"signing_string", "headers": {"client-id", "request-time", "signature"}}.
    AntomSign {
        /// Our (the merchant's) private key, the one whose public half Antom holds.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "kms_key_id",
            required_unless_present = "kms_key_id"
        )]
        private_key: Option<PathBuf>,
        /// Or the KMS signing key (the Antom channel's key): id, ARN or alias.
        #[arg(long, value_name = "ID")]
        kms_key_id: Option<String>,
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// The API path, such as /ams/api/v1/payments/pay (a SANDBOX_ client id signs the
        /// /ams/sandbox/api path, as it is sent).
        #[arg(long, value_name = "PATH")]
        path: String,
        #[arg(long, default_value = "POST")]
        method: String,
        /// The request-time to sign; default now, in epoch milliseconds.
        #[arg(long, value_name = "TIME")]
        request_time: Option<String>,
        /// The keyVersion Antom holds our public key under.
        #[arg(long, default_value = "1")]
        key_version: String,
    },
    /// Verify a notification Antom POSTed to us. Stdin: the raw body. Stdout: the verified body.
    /// On failure the string that was verified is printed on stderr.
    AntomVerifyNotify {
        #[command(flatten)]
        message: AntomMessage,
    },
    /// Verify an answer from Antom. Stdin: the raw body. Stdout: the verified body. An answer
    /// without a signature is refused (fail closed).
    AntomVerifyResponse {
        #[command(flatten)]
        message: AntomMessage,
        /// The method of the request answered.
        #[arg(long, default_value = "POST")]
        method: String,
    },
    /// Reconcile one China-time day with Alipay's bill, as the reconcile function does, with
    /// the functions' environment (ORDERS_TABLE, KMS_KEY_ID, ALIPAY_*, RECONCILE_BUCKET). A
    /// re-run replaces the day's report. Stdout: the report's summary; stderr: one line per
    /// discrepancy. Exit status 0 matched, 1 discrepancies (or no bill yet), 2 failed. In AWS,
    /// invoke the function instead: `aws lambda invoke ... --payload '{"date":"2026-11-26"}'`.
    Reconcile {
        /// The day, yyyy-MM-dd (China time); default yesterday.
        #[arg(long, value_name = "DATE")]
        date: Option<String>,
        /// The channel whose bill: primary (default), secondary, or antom (its reports over
        /// SFTP: ANTOM_SFTP_*).
        #[arg(long, value_name = "CHANNEL")]
        channel: Option<String>,
    },
    /// The risk decisions' rule set, lists and journal (docs/risk.md), in the table named by
    /// ORDERS_TABLE; every change audited.
    Risk {
        #[command(subcommand)]
        command: risk::RiskCommand,
    },
}

/// What verifying an Antom message needs besides its body.
#[derive(clap::Args)]
struct AntomMessage {
    /// Antom's public key (SPKI PEM or bare Base64).
    #[arg(long, value_name = "FILE")]
    antom_public_key: PathBuf,
    /// Our client id: a message for another client is refused.
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// For a notification, the path of our endpoint (no host); for an answer, the request's path.
    #[arg(long, value_name = "PATH")]
    path: String,
    /// A header as 'name: value' (repeatable): client-id, request-time or response-time,
    /// signature.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// A file of 'name: value' lines (such as curl -D writes); read before --header.
    #[arg(long, value_name = "FILE")]
    headers_file: Option<PathBuf>,
}

/// A failure and the exit status it earns.
enum Failure {
    Usage(String),
    NotGenuine(String),
    /// A reconciliation that found discrepancies: its summary.
    Differs(String),
}

mod risk;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(Failure::NotGenuine(reason)) => {
            eprintln!("alipay-cli: not genuine: {reason}");
            ExitCode::from(1)
        }
        Err(Failure::Differs(summary)) => {
            println!("{summary}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(reason)) => {
            eprintln!("alipay-cli: {reason}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::Sign { private_key } => {
            let key = AppPrivateKey::parse(&read_file(&private_key)?)
                .map_err(|e| Failure::Usage(format!("{}: {e}", private_key.display())))?;
            let params: serde_json::Map<String, Value> = serde_json::from_slice(&read_stdin()?)
                .map_err(|e| {
                    Failure::Usage(format!(
                        "stdin must be a JSON object of string parameters: {e}"
                    ))
                })?;
            let mut pairs = Vec::with_capacity(params.len());
            for (key, value) in &params {
                let Value::String(value) = value else {
                    return Err(Failure::Usage(format!(
                        "parameter \"{key}\" must be a string"
                    )));
                };
                pairs.push((key.as_str(), value.as_str()));
            }
            let content = signing_string(pairs, Omit::Sign);
            let signer = LocalKeySigner::new(&key);
            let raw = signer
                .sign_now(content.as_bytes())
                .map_err(|e| Failure::Usage(e.to_string()))?;
            use base64::Engine as _;
            let sign = base64::engine::general_purpose::STANDARD.encode(raw);
            Ok(json!({ "signing_string": content, "sign": sign }).to_string())
        }
        Command::VerifyNotify {
            alipay_public_key,
            alipay_cert,
        } => {
            let keys = alipay_keys(alipay_public_key.as_deref(), alipay_cert.as_deref())?;
            let body = read_stdin()?;
            let mut first_error = None;
            for (_, key) in &keys {
                match verify_notification(&body, key) {
                    Ok(notification) => {
                        return serde_json::to_string(&notification)
                            .map_err(|e| Failure::Usage(e.to_string()));
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            Err(Failure::NotGenuine(
                first_error.map_or_else(|| "no key".into(), |e| e.to_string()),
            ))
        }
        Command::AntomSign {
            private_key,
            kms_key_id,
            client_id,
            path,
            method,
            request_time,
            key_version,
        } => {
            let body = read_stdin()?;
            let path = antom::paths::for_client(&path, &client_id);
            let time = request_time.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
                    .to_string()
            });
            let signing = antom::signature::signing_bytes(&method, &path, &client_id, &time, &body);
            let signature = async_runtime()?.block_on(async {
                let failed = |e: alipay::SignError| Failure::Usage(e.to_string());
                match (private_key, kms_key_id) {
                    (Some(file), _) => {
                        let key = AppPrivateKey::parse(&read_file(&file)?)
                            .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
                        antom::signature::sign_request(
                            &LocalKeySigner::new(&key),
                            &key_version,
                            &method,
                            &path,
                            &client_id,
                            &time,
                            &body,
                        )
                        .await
                        .map_err(failed)
                    }
                    (None, Some(key_id)) => {
                        let config = gateway::aws::load_config().await;
                        let signer =
                            gateway::aws::KmsSigner::new(aws_sdk_kms::Client::new(&config), key_id);
                        antom::signature::sign_request(
                            &signer,
                            &key_version,
                            &method,
                            &path,
                            &client_id,
                            &time,
                            &body,
                        )
                        .await
                        .map_err(failed)
                    }
                    (None, None) => {
                        Err(Failure::Usage("give --private-key or --kms-key-id".into()))
                    }
                }
            })?;
            Ok(json!({
                "signing_string": String::from_utf8_lossy(&signing),
                "path": path,
                "headers": {"client-id": client_id, "request-time": time, "signature": signature},
            })
            .to_string())
        }
        Command::AntomVerifyNotify { message } => antom_verify(&message, None),
        Command::AntomVerifyResponse { message, method } => antom_verify(&message, Some(&method)),
        Command::Risk { command } => async_runtime()?.block_on(risk::run(command)),
        Command::Reconcile { date, channel } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))?;
            runtime.block_on(reconcile_day(date, channel))
        }
        Command::PublicKey { kms_key_id } => async_runtime()?.block_on(async {
            let config = gateway::aws::load_config().await;
            let signer =
                gateway::aws::KmsSigner::new(aws_sdk_kms::Client::new(&config), kms_key_id);
            let key = signer
                .public_key()
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            Ok(key.to_spki_base64())
        }),
        Command::SealKey {
            kms_key_id,
            app_id,
            private_key,
        } => {
            let der = match private_key {
                Some(path) => zeroize::Zeroizing::new(
                    AppPrivateKey::parse(&read_file(&path)?)
                        .and_then(|key| key.to_pkcs8_der())
                        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
                ),
                None => gateway::aws::sealed_key::generate_pkcs8()
                    .map_err(|e| Failure::Usage(e.to_string()))?,
            };
            let public = gateway::aws::sealed_key::LocalSigner::from_der(&der)
                .map_err(|e| Failure::Usage(e.to_string()))?
                .public_key()
                .to_spki_base64();
            async_runtime()?.block_on(async {
                use base64::Engine as _;
                let config = gateway::aws::load_config().await;
                let sealed = gateway::aws::sealed_key::seal(
                    &aws_sdk_kms::Client::new(&config),
                    &kms_key_id,
                    &der,
                    &app_id,
                )
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
                Ok(json!({
                    "app_private_key_sealed": base64::engine::general_purpose::STANDARD.encode(sealed),
                    "app_public_key": public,
                })
                .to_string())
            })
        }
        Command::Csr {
            kms_key_id,
            private_key,
            subject,
        } => async_runtime()?.block_on(async {
            use alipay::csr::certificate_request;
            let failed = |e: alipay::csr::CsrError| Failure::Usage(e.to_string());
            match (kms_key_id, private_key) {
                (Some(key_id), _) => {
                    let config = gateway::aws::load_config().await;
                    let signer =
                        gateway::aws::KmsSigner::new(aws_sdk_kms::Client::new(&config), key_id);
                    let key = signer
                        .public_key()
                        .await
                        .map_err(|e| Failure::Usage(e.to_string()))?
                        .clone();
                    certificate_request(&subject, &key, &signer)
                        .await
                        .map_err(failed)
                }
                (None, Some(path)) => {
                    let key = AppPrivateKey::parse(&read_file(&path)?)
                        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                    certificate_request(&subject, &key.public_key(), &LocalKeySigner::new(&key))
                        .await
                        .map_err(failed)
                }
                (None, None) => Err(Failure::Usage("give --kms-key-id or --private-key".into())),
            }
            .map(|pem| pem.trim_end().to_owned())
        }),
        Command::CertSn {
            app_cert,
            root_cert,
            alipay_cert,
        } => {
            use alipay::cert::{app_cert_sn, leaves, parse_pem_bundle, root_cert_sn};
            if app_cert.is_none() && root_cert.is_none() && alipay_cert.is_none() {
                return Err(Failure::Usage(
                    "give --app-cert, --root-cert or --alipay-cert".into(),
                ));
            }
            let read = |path: &Path| {
                parse_pem_bundle(&read_file(path)?)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
            };
            let mut out = serde_json::Map::new();
            if let Some(path) = &app_cert {
                let sn = app_cert_sn(&read(path)?)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                out.insert("app_cert_sn".into(), json!(sn));
            }
            if let Some(path) = &root_cert {
                let sn = root_cert_sn(&read(path)?)
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                out.insert("alipay_root_cert_sn".into(), json!(sn));
            }
            if let Some(path) = &alipay_cert {
                let certs = read(path)?;
                let sns: Vec<&str> = leaves(&certs).into_iter().map(|c| c.sn()).collect();
                out.insert("alipay_cert_sn".into(), json!(sns.join(",")));
            }
            Ok(Value::Object(out).to_string())
        }
        Command::VerifyResponse {
            alipay_public_key,
            alipay_cert,
            method,
        } => {
            let keys = alipay_keys(alipay_public_key.as_deref(), alipay_cert.as_deref())?;
            let body = String::from_utf8(read_stdin()?)
                .map_err(|_| Failure::NotGenuine("the response is not UTF-8".into()))?;
            let named = alipay::response::extract(&body, &method)
                .map_err(|e| Failure::NotGenuine(e.to_string()))?
                .alipay_cert_sn;
            let candidates: Vec<&alipay::PublicKey> = keys
                .iter()
                .filter(|(sn, _)| match (&named, sn) {
                    (Some(named), Some(sn)) => named == sn,
                    _ => true,
                })
                .map(|(_, key)| key)
                .collect();
            let Some(first) = candidates.first() else {
                return Err(Failure::NotGenuine(format!(
                    "signed with Alipay certificate {}, which the file does not hold (download it with alipay.open.app.alipaycert.download)",
                    named.unwrap_or_default()
                )));
            };
            let verified = candidates
                .iter()
                .find_map(|key| verify_response(&body, &method, key).ok())
                .map_or_else(|| verify_response(&body, &method, first), Ok)
                .map_err(|e| Failure::NotGenuine(e.to_string()))?;
            if !verified.signed {
                eprintln!(
                    "alipay-cli: note: this error answer is unsigned; it proves nothing about the trade"
                );
            }
            Ok(verified.content)
        }
    }
}

/// Verifies an Antom notification (`method` None: POST to our endpoint) or answer; on failure,
/// says why and prints the string that was verified.
fn antom_verify(message: &AntomMessage, method: Option<&str>) -> Result<String, Failure> {
    use antom::signature::{SignedHeaders, signing_bytes, verify_notification, verify_response};
    let key = read_public_key(&message.antom_public_key)?;
    let mut lines: Vec<String> = match &message.headers_file {
        Some(path) => read_file(path)?.lines().map(str::to_owned).collect(),
        None => Vec::new(),
    };
    lines.extend(message.headers.iter().cloned());
    let pairs: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim(), value.trim()))
        .collect();
    let time_header = if method.is_some() {
        "response-time"
    } else {
        "request-time"
    };
    let headers = SignedHeaders::from_pairs(pairs.iter().copied(), time_header);
    let body = read_stdin()?;
    let verified = match method {
        Some(method) => verify_response(
            &key,
            &message.client_id,
            method,
            &message.path,
            headers,
            &body,
        ),
        None => verify_notification(&key, &message.client_id, &message.path, headers, &body),
    };
    match verified {
        Ok(_) => {
            String::from_utf8(body).map_err(|_| Failure::NotGenuine("the body is not UTF-8".into()))
        }
        Err(error) => {
            let signed = signing_bytes(
                method.unwrap_or("POST"),
                &message.path,
                headers.client_id.unwrap_or("<no client-id>"),
                headers.time.unwrap_or("<no time>"),
                &body,
            );
            eprintln!(
                "alipay-cli: the string verified (between the lines):\n----\n{}\n----",
                String::from_utf8_lossy(&signed)
            );
            Err(Failure::NotGenuine(error.to_string()))
        }
    }
}

/// Alipay's key from a key file, or the keys of the leaf certificates of a certificate file (with
/// their SNs).
fn alipay_keys(
    key: Option<&Path>,
    cert: Option<&Path>,
) -> Result<Vec<(Option<String>, PublicKey)>, Failure> {
    match (key, cert) {
        (Some(path), _) => Ok(vec![(None, read_public_key(path)?)]),
        (None, Some(path)) => {
            let failed =
                |e: alipay::cert::CertError| Failure::Usage(format!("{}: {e}", path.display()));
            let certs = alipay::cert::parse_pem_bundle(&read_file(path)?).map_err(failed)?;
            alipay::cert::leaves(&certs)
                .into_iter()
                .map(|leaf| {
                    Ok((
                        Some(leaf.sn().to_owned()),
                        leaf.public_key().map_err(failed)?,
                    ))
                })
                .collect()
        }
        (None, None) => Err(Failure::Usage(
            "give --alipay-public-key or --alipay-cert".into(),
        )),
    }
}

fn read_public_key(path: &Path) -> Result<PublicKey, Failure> {
    PublicKey::parse(&read_file(path)?)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

/// The runtime for the commands that call AWS.
fn async_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))
}

fn read_file(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
    Ok(input)
}

async fn reconcile_day(date: Option<String>, channel: Option<String>) -> Result<String, Failure> {
    use gateway::startup::{Gateway, Role};
    let payload = json!({ "date": date, "channel": channel });
    let day = gateway::reconcile::day_of_event(&payload, gateway::clock::now_ms())
        .map_err(Failure::Usage)?;
    let channel = gateway::reconcile::channel_of_event(&payload).map_err(Failure::Usage)?;
    let sdk = gateway::aws::load_batch_config().await;
    let config = gateway::config::Config::from_env().map_err(|e| Failure::Usage(e.to_string()))?;
    let gateway = Gateway::with_config(config, &sdk, Role::CallsAlipay)
        .await
        .map_err(Failure::Usage)?;
    let reports = gateway::reconcile::Reports::from_env(&sdk).map_err(Failure::Usage)?;
    let settings = gateway::reconcile::Settings::from_env()
        .map_err(Failure::Usage)?
        .with_ssm(&sdk);
    let deadline = gateway::deadline::Deadline::after(std::time::Duration::from_secs(900));
    let report = gateway::reconcile::run(&gateway, channel, &reports, &settings, day, &deadline)
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
    for d in &report.discrepancies {
        let shown = |amount: String| {
            if amount.is_empty() {
                "-".into()
            } else {
                amount
            }
        };
        eprintln!(
            "{} {} {} provider={} ours={} {}{}: {}",
            d.category.as_str(),
            d.out_trade_no,
            d.out_request_no.as_deref().unwrap_or("-"),
            shown(d.provider_amount()),
            shown(d.our_amount()),
            d.currency,
            if d.repaired { " (repaired)" } else { "" },
            d.detail
        );
    }
    let summary = serde_json::to_string_pretty(&report.summary())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    match report.status {
        gateway::reconcile::Status::Matched => Ok(summary),
        _ => Err(Failure::Differs(summary)),
    }
}
