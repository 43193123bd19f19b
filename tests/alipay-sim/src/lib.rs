//! A local Alipay: `gateway.do` for every API the gateway uses, a cashier page, notifications
//! with Alipay's retry schedule, and faults on demand.
//!
//! What it assumes about Alipay comes from `docs/alipay/` and Alipay's published vectors, never
//! from the gateway's code: this crate depends on none of the gateway's crates (its
//! `Cargo.toml` says so), and has its own keys, signing string, form, answer layout, China-time
//! clock, bill writer and certificate authority.
//!
//! Routes: `GET|POST /gateway.do`; the cashier `GET /cashier/{out_trade_no}` and
//! `POST /cashier/pay`; `GET /qr/{out_trade_no}`; and for tests and scripts `POST /sim/pay`,
//! `POST /sim/app-pay`, `POST /sim/faults`, `POST /sim/release` (notifications the `hold` fault
//! holds go out), `GET /sim/trades/{out_trade_no}`,
//! `GET /sim/notifications`, `POST /sim/ledger` (edit the ledger: discrepancies on purpose),
//! `POST /sim/bills/close-day` (issue a day's bill before the day is over), `POST /sim/rotate-cert`
//! (certificate mode: Alipay rotates its certificate), `POST /sim/outage`
//! (`{"kind": "timeout" | "http500" | "system_error" | "service_unavailable", "seconds": 30}`:
//! every server call fails that way for a period; `"seconds": 0` ends it), `POST /sim/clock`
//! (`{"china_time": "2026-12-04 23:59:50"}` or `{"offset_ms": -3000}`: Alipay's clock, for
//! answers and notifications around a China-time midnight, or Alipay's clock behind ours). The
//! daily bill: `alipay.data.dataservice.bill.downloadurl.query` and `GET /downloadBillFile.resource`.
//!
//! As harsh as Alipay's documentation says Alipay is (docs/alipay/operations.md §6), without being asked:
//! a refund of a payment made by bank card (every second payment, `RefundProcessing`) is
//! accepted with `fund_change=N` and executed seconds later, and until then the refund query
//! shows its data without a `refund_status`; a refund it has no record of is answered with our
//! identifiers echoed back, no amount and no status; `gmt_refund_pay` only when `query_options`
//! asks for it; a refund notification's `gmt_refund` with milliseconds.
//!
//! Certificate mode (docs/alipay/operations.md §3; `SimulatorConfig::certificates`): requests must carry the
//! application's `app_cert_sn` and the bundle's `alipay_root_cert_sn` (refused otherwise, with
//! sub-codes of the simulator's own naming: the notes do not give Alipay's), answers and
//! notifications carry `alipay_cert_sn`, `alipay.open.app.alipaycert.download` serves every
//! certificate issued so far, and `rotate_alipay_cert` switches to a new key and certificate
//! (a forged one on request). Its CA (`ca`) computes SNs itself.
//!
//! | module | its job |
//! |---|---|
//! | `gateway_do` | `gateway.do`: the open platform's checks and the server APIs |
//! | `cashier` | the buyer's side: cashier pages, paying, the app's order string |
//! | `notify` | notifications, with Alipay's retry schedule |
//! | `ledger` | what Alipay knows: trades, refunds, deliveries, and edits of its books |
//! | `faults` | faults on demand and outages |
//! | `protocol` | signing string, signing, form, money, the answer layout |
//! | `clock` | Alipay's clock (China time, moved by the test clock) |
//! | `keys` | Alipay's key and the application's public key |
//! | `bill`, `bill_api` | the daily bill: its files, and their download |
//! | `ca` | the open platform's certificate authority (certificate mode) |
//! | `sim_api` | the simulator's own API for tests and scripts (`/sim/*`) |
//! | `antom` | a local Antom (`/ams/api/v1/payments/…`), a server of its own: docs/antom/protocol.md |

mod agreements;
pub mod antom;
pub mod bill;
mod bill_api;
pub mod ca;
mod cashier;
mod clock;
mod faults;
mod gateway_do;
pub mod keys;
mod ledger;
mod notify;
mod protocol;
mod sim_api;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use agreements::{Agreement, Charge, LEAD_DAYS};
pub use cashier::Payer;
pub use clock::{china_text, china_unix};
pub use faults::{Fault, FaultKind, Outage};
pub use keys::{SigningKey, VerifyKey};
pub use ledger::{Delivery, LedgerEdit, RefundRecord, RefundState, Trade};

#[allow(unused_imports)]
use agreements::*;
#[allow(unused_imports)]
use bill_api::*;
#[allow(unused_imports)]
use cashier::*;
#[allow(unused_imports)]
use clock::*;
#[allow(unused_imports)]
use faults::*;
#[allow(unused_imports)]
use gateway_do::*;
#[allow(unused_imports)]
use ledger::*;
#[allow(unused_imports)]
use notify::*;
#[allow(unused_imports)]
use protocol::*;
#[allow(unused_imports)]
use sim_api::*;

/// The repository's `tests/fixtures` (the simulator's keys and its CA's).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Alipay redelivers an unanswered notification after 4m, 10m, 10m, 1h, 2h, 6h and 15h:
/// eight deliveries in about 25 hours (docs/alipay/openapi-v1.md).
pub const RETRY_SCHEDULE_SECONDS: [u64; 7] = [240, 600, 600, 3_600, 7_200, 21_600, 54_000];

pub struct SimulatorConfig {
    /// The merchant application's public key: what Alipay verifies requests with.
    pub app_public_key: VerifyKey,
    /// The simulator's own Alipay key pair (a test key): signs answers and notifications.
    pub alipay_signer: Arc<SigningKey>,
    /// Certificate mode (公钥证书): requests must carry the SNs, answers carry `alipay_cert_sn`.
    pub certificates: Option<Certificates>,
    pub app_id: String,
    pub seller_id: String,
    /// Multiplies the retry schedule: 0.001 turns 4 minutes into 240 ms.
    pub time_scale: f64,
    /// How refunds are executed: at once, or accepted and executed later.
    pub refunds: RefundProcessing,
    /// The shared test clock's file (milliseconds ahead of the machine), as the gateway's
    /// debug builds read `TEST_CLOCK_FILE`: Alipay's clock moves with everyone's.
    pub test_clock_file: Option<PathBuf>,
}

/// How Alipay executes refunds (docs/alipay/openapi-v1.md, "fund_change"; docs/alipay/operations.md §6): a refund to the
/// buyer's Alipay balance moves money in the call (`fund_change=Y`); a refund to the bank card
/// the buyer paid with is accepted (`fund_change=N`) and executed later, and until then the refund
/// query shows the refund's data without a `refund_status`.
#[derive(Clone, Copy, Debug)]
pub struct RefundProcessing {
    /// Every n-th payment is paid by bank card (its refunds execute later); 0: none.
    pub bank_card_every: u64,
    /// How long after it is accepted a bank-card refund is executed.
    pub delay: Duration,
}

impl RefundProcessing {
    /// Every refund at once (`fund_change=Y`): for tests about something else.
    pub const IMMEDIATE: RefundProcessing = RefundProcessing {
        bank_card_every: 0,
        delay: Duration::ZERO,
    };
}

impl Default for RefundProcessing {
    /// What the tests, `make run` and the chaos run get: every second payment by bank card,
    /// its refunds executed 1.5 s after they are accepted.
    fn default() -> Self {
        RefundProcessing {
            bank_card_every: 2,
            delay: Duration::from_millis(1_500),
        }
    }
}

/// How the buyer paid: the `fundChannel` of the notification's `fund_bill_list`.
pub const BALANCE: &str = "ALIPAYACCOUNT";

pub const BANK_CARD: &str = "BANKCARD";

/// The application's certificate-mode setup on the open platform: the CA that issued the
/// application certificate and Alipay's certificate (whose key is `alipay_signer`'s).
#[derive(Clone)]
pub struct Certificates {
    pub ca: Arc<ca::TestCa>,
    /// The SN of the application certificate issued from the merchant's CSR (the one requests
    /// must carry; it changes when the merchant rotates the application key).
    pub app_cert_sn: String,
    /// The application certificate issued from the merchant's CSR.
    pub app_cert: ca::Issued,
    /// Alipay's current public certificate (leaf and intermediate).
    pub alipay_cert: ca::Issued,
}

/// What the open platform holds for the application now: the application's public key (it
/// changes when the merchant rotates it) and Alipay's signing key and certificate (they change
/// when Alipay rotates its certificate).
pub(crate) struct Keys {
    app_public_key: VerifyKey,
    alipay_signer: Arc<SigningKey>,
    certificates: Option<Certificates>,
    /// Every Alipay certificate issued so far, by SN (what the download API serves).
    issued: HashMap<String, String>,
    next_serial: u64,
}

#[derive(Default)]
pub(crate) struct State_ {
    trades: HashMap<String, Trade>,
    faults: VecDeque<Fault>,
    deliveries: Vec<Delivery>,
    /// Every gateway.do call: (method, answer code or fault).
    calls: Vec<(String, String)>,
    /// Days (`yyyy-MM-dd`) whose bill is issued although the day is not over.
    closed_days: std::collections::HashSet<String>,
    /// Issued bill URLs: token → (zip name, zip, valid until Unix ms); each used once.
    bill_links: HashMap<String, (String, Vec<u8>, i64)>,
    /// An outage: every server call fails this way until then.
    outage: Option<(FaultKind, std::time::Instant)>,
    /// Every signed text either side produced: (the signing string, its signature), for the
    /// requests it verified and the answers and notifications it signed.
    signed: Vec<(String, String)>,
    /// How often it answered as harshly as Alipay may without a fault: a refund accepted and
    /// executed later, a query showing data without a status, `REFUND_FAIL`, an echo.
    harsh: BTreeMap<&'static str, u64>,
    /// Agreements by `external_agreement_no`.
    agreements: HashMap<String, Agreement>,
    /// Every successful charge under an agreement.
    charges: Vec<Charge>,
    /// Pay-and-sign: the trade whose payment signs the agreement (`external_agreement_no`).
    pay_and_sign: HashMap<String, String>,
}

pub(crate) struct Inner {
    config: SimulatorConfig,
    keys: Mutex<Keys>,
    state: Mutex<State_>,
    base_url: String,
    counter: AtomicU64,
    /// Payments made, for [`RefundProcessing::bank_card_every`].
    payments: AtomicU64,
    /// Alipay's clock, ahead of (or behind) the machine's by this much: a test clock, so that
    /// answers and notifications arrive around a China-time midnight, or with Alipay's clock a
    /// few seconds behind ours.
    clock_offset_ms: std::sync::atomic::AtomicI64,
    /// The shared test clock moved in-process ([`Simulator::set_world_offset_ms`]).
    world_offset_ms: std::sync::atomic::AtomicI64,
    /// Every n-th successful charge under an agreement is followed by a `trade_status_sync`
    /// notification (0: none). Whether Alipay sends one is unconfirmed (docs/alipay/operations.md §4).
    charge_notify_every: AtomicU64,
    /// Bumped by [`Simulator::release_held`]: held notifications go out.
    released: tokio::sync::watch::Sender<u64>,
    /// A merchant contracted for cross-border settlement ([`Simulator::settle_in`]).
    cross_border: Mutex<Option<CrossBorderContract>>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

#[derive(Clone, Debug)]
pub(crate) struct CrossBorderContract {
    currency: String,
    rate_millionths: u64,
}

/// The cross-border fields of a paid trade, for a contracted merchant: the settlement amount
/// rounded half up to the settlement currency's cents, the buyer paying in CNY.
pub(crate) fn cross_border_fields(inner: &Inner, trade: &Trade) -> Vec<(&'static str, String)> {
    let Some(contract) = lock(&inner.cross_border).clone() else {
        return Vec::new();
    };
    let settled =
        (u128::from(trade.total_fen) * u128::from(contract.rate_millionths) + 500_000) / 1_000_000;
    let rate = millionths_text(contract.rate_millionths);
    vec![
        ("trans_currency", "CNY".to_owned()),
        ("settle_currency", contract.currency),
        (
            "settle_amount",
            format!("{}.{:02}", settled / 100, settled % 100),
        ),
        ("settle_trans_rate", rate),
        ("pay_currency", "CNY".to_owned()),
        ("pay_amount", trade.total_amount.clone()),
        ("trans_pay_rate", "1.000000".to_owned()),
    ]
}

/// A rate kept in millionths, written with six decimals (`140380` → `0.140380`).
pub(crate) fn millionths_text(rate: u64) -> String {
    format!("{}.{:06}", rate / 1_000_000, rate % 1_000_000)
}

/// A running simulator; stops when dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    _server: Arc<ServerGuard>,
}

pub(crate) struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Simulator {
    /// Starts on `127.0.0.1:port` (0 for any free port).
    pub async fn start(config: SimulatorConfig, port: u16) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let address: SocketAddr = listener.local_addr()?;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let mut issued = HashMap::new();
        if let Some(certs) = &config.certificates {
            issued.insert(certs.alipay_cert.sn.clone(), certs.alipay_cert.pem.clone());
        }
        let keys = Keys {
            app_public_key: config.app_public_key.clone(),
            alipay_signer: Arc::clone(&config.alipay_signer),
            certificates: config.certificates.clone(),
            issued,
            next_serial: 1_000,
        };
        let inner = Arc::new(Inner {
            keys: Mutex::new(keys),
            config,
            state: Mutex::new(State_::default()),
            base_url: format!("http://{address}"),
            counter: AtomicU64::new(1),
            payments: AtomicU64::new(0),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            world_offset_ms: std::sync::atomic::AtomicI64::new(0),
            charge_notify_every: AtomicU64::new(2),
            released: tokio::sync::watch::Sender::new(0),
            cross_border: Mutex::new(None),
            http,
        });
        let app = Router::new()
            .route("/gateway.do", get(gateway).post(gateway))
            .route("/cashier/{out_trade_no}", get(cashier))
            .route("/qr/{out_trade_no}", get(cashier))
            .route("/cashier/pay", post(cashier_pay))
            .route("/sim/pay", post(sim_pay))
            .route("/sim/app-pay", post(sim_app_pay))
            .route("/sim/faults", post(sim_fault))
            .route("/sim/release", post(sim_release))
            .route("/sim/outage", post(sim_outage))
            .route("/sim/rotate-cert", post(sim_rotate_cert))
            .route("/sim/trades/{out_trade_no}", get(sim_trade))
            .route("/sim/notifications", get(sim_notifications))
            .route("/sim/ledger", post(sim_ledger))
            .route("/sim/bills/close-day", post(sim_close_day))
            .route("/sim/clock", post(sim_clock))
            .route("/sim/agreements/sign", post(sim_sign_agreement))
            .route("/sim/agreements/{external}", get(sim_agreement))
            .route("/sim/agreements/{external}/stop", post(sim_stop_agreement))
            .route(
                "/sim/agreements/{external}/script",
                post(sim_script_charges),
            )
            .route("/sim/charges", get(sim_charges))
            .route("/downloadBillFile.resource", get(download_bill))
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("simulator stopped: {error}");
            }
        });
        Ok(Simulator {
            inner,
            _server: Arc::new(ServerGuard(server)),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn gateway_url(&self) -> String {
        format!("{}/gateway.do", self.inner.base_url)
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.state).faults.push_back(fault);
    }

    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        lock(&self.inner.state).trades.get(out_trade_no).cloned()
    }

    /// Every trade Alipay knows: the ledger invariants are checked against.
    pub fn trades(&self) -> Vec<Trade> {
        lock(&self.inner.state).trades.values().cloned().collect()
    }

    /// Every server call fails as `kind` for `period` (zero: the outage ends now).
    pub fn outage(&self, kind: FaultKind, period: Duration) -> Result<(), String> {
        set_outage(&self.inner, kind, period)
    }

    /// Forgets faults not yet taken.
    pub fn clear_faults(&self) {
        lock(&self.inner.state).faults.clear();
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.inner.state).deliveries.clone()
    }

    /// Every (signing string, signature) either side produced so far: the requests it verified,
    /// the answers and notifications it signed.
    pub fn signed_texts(&self) -> Vec<(String, String)> {
        lock(&self.inner.state).signed.clone()
    }

    /// The harsh answers it gave without a fault, by kind (see `State_::harsh`).
    pub fn harsh_answers(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.inner.state).harsh.clone()
    }

    /// The gateway.do calls made so far, as (method, outcome).
    pub fn calls(&self) -> Vec<(String, String)> {
        lock(&self.inner.state).calls.clone()
    }

    /// Edits the ledger (see [`LedgerEdit`]).
    pub fn edit(&self, edit: LedgerEdit) -> Result<(), String> {
        edit_ledger(&self.inner, edit)
    }

    /// Issues the bill of `date` (`yyyy-MM-dd`) although the day is not over.
    pub fn close_day(&self, date: &str) {
        lock(&self.inner.state).closed_days.insert(date.to_owned());
    }

    /// Adds trades as they are (a benchmark's generated day).
    pub fn import_trades(&self, trades: Vec<Trade>) {
        let mut state = lock(&self.inner.state);
        for trade in trades {
            state.trades.insert(trade.out_trade_no.clone(), trade);
        }
    }

    /// Alipay's PID as the bill names it.
    pub fn seller_id(&self) -> &str {
        &self.inner.config.seller_id
    }

    /// The buyer pays (as the cashier's Pay button does); `finished` also sends TRADE_FINISHED.
    /// By bank card or from the balance as [`RefundProcessing::bank_card_every`] decides.
    pub fn pay(&self, out_trade_no: &str, finished: bool) -> Result<Trade, String> {
        self.pay_with(
            out_trade_no,
            &Payer {
                finished,
                ..Payer::default()
            },
        )
    }

    /// The buyer with Alipay user id `buyer_id` (2088…) logs in at the cashier and pays.
    pub fn pay_as(&self, out_trade_no: &str, buyer_id: &str) -> Result<Trade, String> {
        self.pay_with(
            out_trade_no,
            &Payer {
                buyer_id: Some(buyer_id.to_owned()),
                ..Payer::default()
            },
        )
    }

    /// The buyer pays as `payer` says (a bank card: its refunds execute later).
    pub fn pay_with(&self, out_trade_no: &str, payer: &Payer) -> Result<Trade, String> {
        pay(&self.inner, out_trade_no, payer)
    }

    /// Alipay executes an accepted refund now, whenever it was due (a test decides what time
    /// Alipay's clock shows when money moves). Nothing when it is not processing.
    pub fn execute_refund(&self, out_trade_no: &str, out_request_no: &str) {
        complete_refund(&self.inner, out_trade_no, out_request_no, true);
    }

    /// Moves Alipay's clock by `offset_ms` from the machine's (0: the machine's).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.inner
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }

    /// Contracts the merchant for cross-border settlement (`ALIPAY-OPS.md` §5): paid trades'
    /// query answers and notifications carry `trans_currency`, `settle_currency`,
    /// `settle_amount`, `settle_trans_rate`, `pay_currency`, `pay_amount` and `trans_pay_rate`,
    /// settled in `currency` (two decimals) at the simulator's own rate from CNY, in millionths.
    pub fn settle_in(&self, currency: &str, rate_millionths: u64) {
        *lock(&self.inner.cross_border) = Some(CrossBorderContract {
            currency: currency.to_owned(),
            rate_millionths,
        });
    }

    /// Moves the world's clock (the test clock the gateway shares) `offset_ms` ahead of the
    /// machine's, in this process: Alipay's clock moves with it.
    pub fn set_world_offset_ms(&self, offset_ms: i64) {
        self.inner
            .world_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }

    /// Sets Alipay's clock so that it reads `china_time` (`yyyy-MM-dd HH:mm:ss`) now, and runs
    /// on from there; the offset it took.
    pub fn set_china_time(&self, china_time: &str) -> Result<i64, String> {
        let at = china_unix(china_time).ok_or("expected yyyy-MM-dd HH:mm:ss")?;
        let offset = at * 1000 - world_ms(&self.inner);
        self.set_clock_offset_ms(offset);
        Ok(offset)
    }

    /// Alipay's clock now, China time.
    pub fn china_now(&self) -> String {
        china_now(&self.inner).0
    }

    /// Opens an app-pay order string as the Alipay app would: verifies it, creates the trade.
    pub fn open_app_order(&self, order_string: &str) -> Result<Trade, String> {
        open_app_order(&self.inner, order_string)
    }

    /// Alipay rotates its certificate: a new key (`alipay_rotated_private_key.pem`) and a new
    /// certificate from the same CA sign everything from now on. `forged`: the new certificate
    /// does not chain to the root bundle (what a gateway must refuse). The new SN.
    pub fn rotate_alipay_cert(&self, forged: bool) -> Result<String, String> {
        rotate_alipay_cert(&self.inner, forged)
    }

    /// The merchant replaced the application's public key (or certificate) on the open
    /// platform: requests must now be signed with the key `app_public_key`, and in certificate
    /// mode carry `app_cert_sn`.
    pub fn set_app_key(&self, app_public_key: VerifyKey, app_cert_sn: Option<String>) {
        let mut keys = lock(&self.inner.keys);
        keys.app_public_key = app_public_key;
        if let (Some(certs), Some(sn)) = (keys.certificates.as_mut(), app_cert_sn) {
            certs.app_cert_sn = sn;
        }
    }

    /// The buyer signs the agreement the signing page showed; `lose_notice`: Alipay's
    /// `dut_user_sign` notification never arrives.
    pub fn sign_agreement(
        &self,
        external_agreement_no: &str,
        buyer_id: &str,
        lose_notice: bool,
    ) -> Result<Agreement, String> {
        agreements::sign_agreement(&self.inner, external_agreement_no, buyer_id, lose_notice)
    }

    /// The buyer unsigns in the Alipay app (or the agreement lapses: `notice` false).
    pub fn stop_agreement(
        &self,
        external_agreement_no: &str,
        notice: bool,
    ) -> Result<Agreement, String> {
        agreements::stop_agreement(&self.inner, external_agreement_no, notice)
    }

    /// Every `every`-th successful charge is followed by a notification (0: none; 2 by default).
    pub fn set_charge_notifications(&self, every: u64) {
        self.inner
            .charge_notify_every
            .store(every, Ordering::Relaxed);
    }

    /// The buyer's next answers to charges under the agreement, one per charge: a sub-code
    /// (`ACQ.BUYER_BALANCE_NOT_ENOUGH`, …) or `10003`.
    pub fn script_charges(
        &self,
        external_agreement_no: &str,
        answers: &[&str],
    ) -> Result<(), String> {
        let mut state = lock(&self.inner.state);
        let agreement = state
            .agreements
            .get_mut(external_agreement_no)
            .ok_or("no such agreement")?;
        agreement
            .scripted
            .extend(answers.iter().map(|a| (*a).to_owned()));
        Ok(())
    }

    pub fn agreement(&self, external_agreement_no: &str) -> Option<Agreement> {
        lock(&self.inner.state)
            .agreements
            .get(external_agreement_no)
            .cloned()
    }

    /// Every successful charge under an agreement: the ledger the invariants are checked on.
    pub fn charges(&self) -> Vec<Charge> {
        lock(&self.inner.state).charges.clone()
    }

    /// Lets every notification held by [`FaultKind::Hold`] go out.
    pub fn release_held(&self) {
        release_held(&self.inner);
    }

    /// Signs notification fields the way Alipay does (for tests that craft their own).
    pub fn sign_notification(&self, fields: &BTreeMap<String, String>) -> String {
        notification_body(&self.inner, fields, false)
    }
}

pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
