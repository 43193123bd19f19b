//! The Antom channel's configuration (`ANTOM_*`): present only when `ANTOM_CLIENT_ID` is set.

use std::collections::HashMap;

use alipay::keys::PublicKey;
use domain::states::Currency;

/// Antom's production gateway for Asia (also `open-na-global`, `open-de-global`).
pub const ANTOM_PRODUCTION_GATEWAY: &str = "https://open-sea-global.alipay.com";

/// One Antom account.
#[derive(Clone, Debug)]
pub struct AntomChannelConfig {
    /// `ANTOM_CLIENT_ID` (a `SANDBOX_` id calls the sandbox paths).
    pub client_id: String,
    /// `ANTOM_GATEWAY_URL` (default Antom's Asia gateway).
    pub gateway_url: String,
    /// `ANTOM_PUBLIC_KEY`: Antom's public key (PEM or bare Base64), which verifies its answers
    /// and notifications.
    pub antom_public_key: PublicKey,
    /// `ANTOM_KMS_KEY_ID`: our signing key for Antom, its own KMS key (only the functions that
    /// call Antom have it).
    pub kms_key_id: Option<String>,
    /// `ANTOM_KEY_VERSION` (default 1): the version Antom holds our public key under.
    pub key_version: String,
    /// `ANTOM_CURRENCIES`: the currencies new payments may be priced in through this account
    /// (comma-separated ISO codes of the gateway's table).
    pub currencies: Vec<Currency>,
    /// `ANTOM_SETTLEMENT_CURRENCY`: the currency the merchant is settled in, sent as each
    /// payment's `settlementStrategy` (absent: the contract's default).
    pub settlement_currency: Option<Currency>,
    /// `ANTOM_PAYMENT_METHOD` (default `ALIPAY_CN`): the wallet the cashier offers.
    pub payment_method: String,
    /// `ANTOM_NOTIFY_URL`: where Antom posts notifications (the notify function's
    /// `/notify/antom`); its path is what the notifications are signed over.
    pub notify_url: Option<String>,
    /// `ANTOM_REDIRECT_URL`: where the buyer returns after the cashier when the payment has no
    /// `return_url` (Antom requires one).
    pub redirect_url: Option<String>,
    /// Where Antom's reconciliation reports are fetched from (`ANTOM_SFTP_*`); `None`: the
    /// channel is not reconciled.
    pub reports: Option<AntomReportsConfig>,
}

/// Antom's reports on its SFTP server (docs/antom/reports.md).
#[derive(Clone, Debug)]
pub struct AntomReportsConfig {
    /// `ANTOM_SFTP_HOST` (default `isftp.alipay.com`) and `ANTOM_SFTP_PORT` (default 22).
    pub host: String,
    pub port: u16,
    /// `ANTOM_SFTP_USER`: the account Antom gave (its presence turns reports on).
    pub user: String,
    /// `ANTOM_SFTP_HOST_KEY`: the server's host key, pinned (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// `ANTOM_SFTP_KEY_PARAMETER`: the SSM SecureString holding our OpenSSH private key.
    pub key_parameter: String,
    /// `ANTOM_REPORTS_ROOT`: the merchant's folder, `/v1/settlements/<merchantId>`.
    pub root: String,
    /// `ANTOM_SETTLEMENT_DAYS` (default 2): a payment not in a settlement report within this
    /// many days after its day is a discrepancy (T+1; T+2 with post-quoting).
    pub settlement_days: u32,
}

fn reports_config(
    get: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<AntomReportsConfig> {
    let user = get("ANTOM_SFTP_USER")?;
    let mut need = |name: &str, what: &str| {
        get(name).or_else(|| {
            problems.push(format!("{name} is not set ({what})"));
            None
        })
    };
    let host_key = need(
        "ANTOM_SFTP_HOST_KEY",
        "the SFTP server's host key, pinned: ssh-ed25519 AAAA…",
    );
    let key_parameter = need(
        "ANTOM_SFTP_KEY_PARAMETER",
        "the SSM parameter holding the SFTP private key",
    );
    let root = need(
        "ANTOM_REPORTS_ROOT",
        "the reports' folder, /v1/settlements/<merchantId>",
    );
    if let Some(key) = &host_key
        && let Err(e) = crate::sftp::parse_host_key(key)
    {
        problems.push(format!("ANTOM_SFTP_HOST_KEY: {e}"));
    }
    let port = match get("ANTOM_SFTP_PORT").map(|p| p.parse::<u16>()) {
        None => 22,
        Some(Ok(port)) if port > 0 => port,
        Some(_) => {
            problems.push("ANTOM_SFTP_PORT must be a port number".into());
            22
        }
    };
    let settlement_days = match get("ANTOM_SETTLEMENT_DAYS").map(|d| d.parse::<u32>()) {
        None => 2,
        Some(Ok(days)) if (1..=30).contains(&days) => days,
        Some(_) => {
            problems.push("ANTOM_SETTLEMENT_DAYS must be a number of days from 1 to 30".into());
            2
        }
    };
    Some(AntomReportsConfig {
        host: get("ANTOM_SFTP_HOST").unwrap_or_else(|| "isftp.alipay.com".into()),
        port,
        user,
        host_key: host_key?,
        key_parameter: key_parameter?,
        root: root?,
        settlement_days,
    })
}

impl AntomChannelConfig {
    /// The path of `ANTOM_NOTIFY_URL` (what a notification's signature covers).
    pub fn notify_path(&self) -> Option<String> {
        let url = self.notify_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        Some(match rest.find('/') {
            Some(at) => rest[at..]
                .split(['?', '#'])
                .next()
                .unwrap_or("/")
                .to_owned(),
            None => "/".to_owned(),
        })
    }
}

/// Reads `ANTOM_*`; `None` when `ANTOM_CLIENT_ID` is not set. Problems are added to `problems`.
pub fn antom_channel(
    vars: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> Option<AntomChannelConfig> {
    let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let client_id = get("ANTOM_CLIENT_ID")?.to_owned();
    let gateway_url = get("ANTOM_GATEWAY_URL")
        .unwrap_or(ANTOM_PRODUCTION_GATEWAY)
        .trim_end_matches('/')
        .to_owned();
    if !super::secure_or_loopback(&gateway_url) {
        problems.push(format!(
            "ANTOM_GATEWAY_URL must be https (or http on loopback): {gateway_url}"
        ));
    }
    let antom_public_key = match get("ANTOM_PUBLIC_KEY").map(PublicKey::parse) {
        Some(Ok(key)) => Some(key),
        Some(Err(e)) => {
            problems.push(format!("ANTOM_PUBLIC_KEY: {e}"));
            None
        }
        None => {
            problems.push("ANTOM_PUBLIC_KEY is not set (Antom's public key)".into());
            None
        }
    };
    let mut currencies = Vec::new();
    match get("ANTOM_CURRENCIES") {
        None => problems.push(
            "ANTOM_CURRENCIES is not set (the currencies payments go to Antom in, like USD,EUR,JPY)"
                .into(),
        ),
        Some(text) => {
            for code in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match Currency::parse(code) {
                    Ok(currency) if !currencies.contains(&currency) => currencies.push(currency),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("ANTOM_CURRENCIES {code}: {e}")),
                }
            }
        }
    }
    let settlement_currency = match get("ANTOM_SETTLEMENT_CURRENCY").map(Currency::parse) {
        None => None,
        Some(Ok(currency)) => Some(currency),
        Some(Err(e)) => {
            problems.push(format!("ANTOM_SETTLEMENT_CURRENCY: {e}"));
            None
        }
    };
    let notify_url = get("ANTOM_NOTIFY_URL").map(str::to_owned);
    if let Some(url) = &notify_url
        && !super::secure_or_loopback(url)
    {
        problems.push(format!(
            "ANTOM_NOTIFY_URL must be https (or http on loopback): {url}"
        ));
    }
    let reports = reports_config(&|name| get(name).map(str::to_owned), problems);
    let key_version = get("ANTOM_KEY_VERSION").unwrap_or("1").to_owned();
    if !key_version.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!("ANTOM_KEY_VERSION must be a number: {key_version}"));
    }
    Some(AntomChannelConfig {
        client_id,
        gateway_url,
        antom_public_key: antom_public_key?,
        kms_key_id: get("ANTOM_KMS_KEY_ID").map(str::to_owned),
        key_version,
        currencies,
        settlement_currency,
        payment_method: get("ANTOM_PAYMENT_METHOD")
            .unwrap_or("ALIPAY_CN")
            .to_owned(),
        notify_url,
        reports,
        redirect_url: get("ANTOM_REDIRECT_URL").map(str::to_owned),
    })
}
