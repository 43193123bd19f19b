//! A local Alipay: `gateway.do` for every API the gateway uses, a cashier page, notifications
//! with Alipay's retry schedule, and faults on demand.
//!
//! What it assumes about Alipay comes from the project's ALIPAY.md (the shared protocol notes)
//! and Alipay's published vectors, never from the gateway's code: it has its own signing-string,
//! form and response-layout code. Only RSA primitives and key loading come from `shared`.
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
//! As harsh as Alipay's documentation says Alipay is (ALIPAY-OPS.md §6), without being asked:
//! a refund of a payment made by bank card (every second payment, `RefundProcessing`) is
//! accepted with `fund_change=N` and executed seconds later, and until then the refund query
//! shows its data without a `refund_status`; a refund it has no record of is answered with our
//! identifiers echoed back, no amount and no status; `gmt_refund_pay` only when `query_options`
//! asks for it; a refund notification's `gmt_refund` with milliseconds.
//!
//! Certificate mode (ALIPAY-OPS.md §3; `SimulatorConfig::certificates`): requests must carry the
//! application's `app_cert_sn` and the bundle's `alipay_root_cert_sn` (refused otherwise, with
//! sub-codes of the simulator's own naming: the notes do not give Alipay's), answers and
//! notifications carry `alipay_cert_sn`, `alipay.open.app.alipaycert.download` serves every
//! certificate issued so far, and `rotate_alipay_cert` switches to a new key and certificate
//! (a forged one on request). Its CA (`ca`) computes SNs itself.

pub mod bill;
pub mod ca;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
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
use shared::{LocalKeySigner, PublicKey};

/// Alipay redelivers an unanswered notification after 4m, 10m, 10m, 1h, 2h, 6h and 15h:
/// eight deliveries in about 25 hours (ALIPAY.md).
pub const RETRY_SCHEDULE_SECONDS: [u64; 7] = [240, 600, 600, 3_600, 7_200, 21_600, 54_000];

pub struct SimulatorConfig {
    /// The merchant application's public key: what Alipay verifies requests with.
    pub app_public_key: PublicKey,
    /// The simulator's own Alipay key pair (a test key): signs answers and notifications.
    pub alipay_signer: Arc<LocalKeySigner>,
    /// Certificate mode (公钥证书): requests must carry the SNs, answers carry `alipay_cert_sn`.
    pub certificates: Option<Certificates>,
    pub app_id: String,
    pub seller_id: String,
    /// Multiplies the retry schedule: 0.001 turns 4 minutes into 240 ms.
    pub time_scale: f64,
    /// How refunds are executed: at once, or accepted and executed later.
    pub refunds: RefundProcessing,
}

/// How Alipay executes refunds (ALIPAY.md, "fund_change"; ALIPAY-OPS.md §6): a refund to the
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
struct Keys {
    app_public_key: PublicKey,
    alipay_signer: Arc<LocalKeySigner>,
    certificates: Option<Certificates>,
    /// Every Alipay certificate issued so far, by SN (what the download API serves).
    issued: HashMap<String, String>,
    next_serial: u64,
}

/// A fault to inject into the next calls of one method, or the next notifications.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Hang without executing (the caller times out).
    Timeout,
    /// Execute, then hang (the caller times out although the call took effect).
    TimeoutAfterExecute,
    /// HTTP 500 without executing.
    Http500,
    /// `40004 ACQ.SYSTEM_ERROR` (signed), without executing.
    SystemError,
    /// `20000 Service Currently Unavailable`, without executing.
    ServiceUnavailable,
    /// A correct answer with a broken signature (after executing).
    BadSignature,
    /// `40004 ACQ.SELLER_BALANCE_NOT_ENOUGH` (signed), without executing: a terminal failure.
    SellerBalanceNotEnough,
    /// An error answer without a signature (gateway-level errors look like this), without
    /// executing: `40002 isv.invalid-signature`, say. It proves nothing.
    UnsignedError { code: String, sub_code: String },
    /// Notifications: never deliver.
    Drop,
    /// Notifications: deliver the first attempt twice at once.
    Duplicate,
    /// Notifications: hold the first attempt back this long, so later ones overtake it.
    Delay { ms: u64 },
    /// Notifications: hold the first attempt back until [`Simulator::release_held`] (or
    /// `POST /sim/release`), so a test decides what happens first, whatever the machine's speed.
    Hold,
    /// Server calls: answer correctly, this long after the call arrives (a slow Alipay).
    Slow { ms: u64 },
    /// Notifications: a broken signature on every attempt.
    BadNotifySignature,
    /// Refunds: a signed terminal refusal (`ACQ.SELLER_BALANCE_NOT_ENOUGH`) this long after the
    /// call arrives, without executing: a slow Alipay that says no.
    SlowRefusal { ms: u64 },
    /// Refunds: the next new refund is accepted (`fund_change=N`) and executed later, whatever
    /// the buyer paid with.
    AsyncRefund,
    /// Refunds: the next new refund is accepted (`fund_change=N`) and fails later
    /// (`refund_status=REFUND_FAIL`; the balance ran short). Sending it again is refused with
    /// `ACQ.SELLER_BALANCE_NOT_ENOUGH`.
    RefundFailsLater,
    /// `alipay.trade.close`: the buyer pays just before the close arrives (so it is refused
    /// with `ACQ.TRADE_STATUS_ERROR`).
    BuyerPaysFirst,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Fault {
    /// The method (`alipay.trade.refund`), or `notify` for notifications.
    pub target: String,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Where a refund Alipay accepted stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundState {
    /// Accepted, not executed yet: the query shows its data without a status.
    Processing,
    /// Executed: money moved (`REFUND_SUCCESS`).
    Success,
    /// Will never execute (`REFUND_FAIL`).
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct RefundRecord {
    pub out_request_no: String,
    pub refund_amount: String,
    /// How many times money moved for this `out_request_no` (must never exceed one).
    pub executions: u32,
    /// Requests received for it, repeats included.
    pub requests: u32,
    /// When the money moved (China time, to the second): the bill's `完成时间` of the refund
    /// row; empty until it is executed.
    pub gmt_refund: String,
    pub state: RefundState,
}

impl RefundRecord {
    /// Money moved for it.
    pub fn executed(&self) -> bool {
        self.state == RefundState::Success
    }
}

/// An edit of the simulator's ledger, to make Alipay's books differ from the gateway's on
/// purpose (reconciliation tests).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "edit")]
pub enum LedgerEdit {
    /// Alipay's record of the trade says another total.
    SetTotal {
        out_trade_no: String,
        total_amount: String,
    },
    /// A refund Alipay executed that the gateway never asked for.
    AddRefund {
        out_trade_no: String,
        out_request_no: String,
        refund_amount: String,
    },
    /// Alipay has no record of this refund.
    RemoveRefund {
        out_trade_no: String,
        out_request_no: String,
    },
    /// Alipay's record of the refund says another amount.
    SetRefundAmount {
        out_trade_no: String,
        out_request_no: String,
        refund_amount: String,
    },
    /// Alipay has no record of the trade at all.
    Forget { out_trade_no: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Trade {
    pub out_trade_no: String,
    pub trade_no: String,
    pub total_amount: String,
    pub total_fen: u64,
    pub subject: String,
    pub status: String,
    pub method: String,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub buyer_id: String,
    pub refunded_fen: u64,
    pub refunds: Vec<RefundRecord>,
    pub gmt_create: String,
    pub gmt_payment: Option<String>,
    /// `time_expire` (Unix seconds): after it the trade cannot be paid and Alipay closes it.
    pub expires_at: Option<i64>,
    /// When each `alipay.trade.refund` for this trade arrived (Unix ms), repeats included.
    pub refund_requests_ms: Vec<i64>,
    /// How the buyer paid ([`BALANCE`] or [`BANK_CARD`]): bank-card refunds execute later.
    pub fund_channel: String,
}

impl Trade {
    /// The refunds Alipay executed.
    pub fn executed_refunds(&self) -> impl Iterator<Item = &RefundRecord> {
        self.refunds.iter().filter(|r| r.executed())
    }

    /// Alipay closes an unpaid trade at its `time_expire` (ALIPAY-OPS.md §1).
    fn expire_if_due(&mut self, now: i64) {
        if self.status == "WAIT_BUYER_PAY" && self.expires_at.is_some_and(|at| now >= at) {
            self.status = "TRADE_CLOSED".into();
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub notify_id: String,
    pub out_trade_no: String,
    pub trade_status: String,
    /// What the gateway answered to each attempt (`HTTP 200 success`, `error: ...`).
    pub attempts: Vec<String>,
    pub acknowledged: bool,
}

#[derive(Default)]
struct State_ {
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
}

/// Alipay rotates its certificate (see [`Simulator::rotate_alipay_cert`]).
fn rotate_alipay_cert(inner: &Inner, forged: bool) -> Result<String, String> {
    let key = shared::AppPrivateKey::parse(
        &std::fs::read_to_string(
            crate::support::fixtures().join("keys/alipay_rotated_private_key.pem"),
        )
        .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let signer = LocalKeySigner::new(&key);
    let spki = signer.public_key().to_spki_der();
    let mut keys = lock(&inner.keys);
    keys.next_serial += 1;
    let serial = keys.next_serial;
    let certs = keys
        .certificates
        .as_mut()
        .ok_or("the simulator is in key mode")?;
    let subject =
        "CN=支付宝(中国)网络技术有限公司-2088000000000000,OU=Alipay,O=Local Alipay Simulator,C=CN";
    let issued = if forged {
        certs.ca.issue_forged(subject, serial, &spki)
    } else {
        certs.ca.issue_leaf(subject, serial, &spki, 365)
    };
    certs.alipay_cert = issued.clone();
    keys.issued.insert(issued.sn.clone(), issued.pem);
    keys.alipay_signer = Arc::new(signer);
    Ok(issued.sn)
}

/// `POST /sim/rotate-cert` (`{"forged": false}`): Alipay rotates its certificate (certificate
/// mode); answers the new SN.
async fn sim_rotate_cert(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let forged = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("forged").and_then(Value::as_bool))
        .unwrap_or(false);
    match rotate_alipay_cert(&inner, forged) {
        Ok(sn) => axum::Json(json!({"alipay_cert_sn": sn})).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
    }
}

/// An outage for a period (`POST /sim/outage`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Outage {
    /// `timeout`, `http500`, `system_error` or `service_unavailable`.
    pub kind: FaultKind,
    /// How long from now; 0 ends an outage.
    pub seconds: f64,
}

struct Inner {
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
    /// Bumped by [`Simulator::release_held`]: held notifications go out.
    released: tokio::sync::watch::Sender<u64>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

/// A running simulator; stops when dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    _server: Arc<ServerGuard>,
}

struct ServerGuard(tokio::task::JoinHandle<()>);

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
            released: tokio::sync::watch::Sender::new(0),
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

    /// Sets Alipay's clock so that it reads `china_time` (`yyyy-MM-dd HH:mm:ss`) now, and runs
    /// on from there; the offset it took.
    pub fn set_china_time(&self, china_time: &str) -> Result<i64, String> {
        let at = china_unix(china_time).ok_or("expected yyyy-MM-dd HH:mm:ss")?;
        let offset = at * 1000 - machine_ms();
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
    pub fn set_app_key(&self, app_public_key: PublicKey, app_cert_sn: Option<String>) {
        let mut keys = lock(&self.inner.keys);
        keys.app_public_key = app_public_key;
        if let (Some(certs), Some(sn)) = (keys.certificates.as_mut(), app_cert_sn) {
            certs.app_cert_sn = sn;
        }
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

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- the protocol, as ALIPAY.md describes it ------------------------------------------------

/// Sorted `k=v&...` of the non-empty values, without `sign` (and without `sign_type` for trade
/// notifications).
fn content_to_sign(params: &BTreeMap<String, String>, drop_sign_type: bool) -> String {
    params
        .iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign" && !(drop_sign_type && *k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn sign(inner: &Inner, content: &str) -> String {
    let signer = Arc::clone(&lock(&inner.keys).alipay_signer);
    let raw = signer.sign_now(content.as_bytes()).unwrap_or_default();
    let sign = base64::engine::general_purpose::STANDARD.encode(raw);
    lock(&inner.state)
        .signed
        .push((content.to_owned(), sign.clone()));
    sign
}

fn decode_form(raw: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(raw) {
        if params
            .insert(key.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(format!("duplicate parameter {key}"));
        }
    }
    Ok(params)
}

/// The machine's clock, Unix ms.
fn machine_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Alipay's clock, Unix ms: the machine's, moved by the test clock's offset.
fn alipay_ms(inner: &Inner) -> i64 {
    machine_ms() + inner.clock_offset_ms.load(Ordering::Relaxed)
}

/// Alipay's clock: `yyyy-MM-dd HH:mm:ss` in China time (UTC+8; ALIPAY.md), with the Unix
/// seconds. The simulator's own code, deliberately not the gateway's formatter.
fn china_now(inner: &Inner) -> (String, i64) {
    let unix = alipay_ms(inner).div_euclid(1000);
    (china_text(unix), unix)
}

/// Alipay's clock with milliseconds, `yyyy-MM-dd HH:mm:ss.SSS`: how a refund notification
/// writes `gmt_refund` (ALIPAY-OPS.md §6).
fn china_now_millis(inner: &Inner) -> String {
    let ms = alipay_ms(inner);
    format!(
        "{}.{:03}",
        china_text(ms.div_euclid(1000)),
        ms.rem_euclid(1000)
    )
}

const CHINA_OFFSET: time::UtcOffset = match time::UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => time::UtcOffset::UTC,
};

/// `yyyy-MM-dd HH:mm:ss` in China time: the simulator's (and the tests') own formatter, apart
/// from the gateway's `shared::china_time`.
pub fn china_text(unix: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(CHINA_OFFSET);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Unix seconds of a China-time `yyyy-MM-dd HH:mm:ss` (the simulator's own parser).
pub fn china_unix(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = time::PrimitiveDateTime::parse(text, format).ok()?;
    Some(at.assume_offset(CHINA_OFFSET).unix_timestamp())
}

fn fen(text: &str) -> Option<u64> {
    let (yuan, cents) = text.split_once('.')?;
    if cents.len() != 2
        || yuan.is_empty()
        || !yuan
            .bytes()
            .chain(cents.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(yuan.parse::<u64>().ok()? * 100 + cents.parse::<u64>().ok()?)
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A JSON answer laid out as Alipay lays it out, slashes escaped as Alipay's gateway does.
fn answer(inner: &Inner, method: &str, content: &Value, corrupt: bool, signed: bool) -> Response {
    let text = content.to_string().replace('/', "\\/");
    let key = format!("{}_response", method.replace('.', "_"));
    let body = if signed {
        let mut sign = sign(inner, &text);
        if corrupt {
            // Change the first character: still Base64, no longer the signature.
            let first = if sign.starts_with('A') { 'B' } else { 'A' };
            sign = format!("{first}{}", &sign[1..]);
        }
        match lock(&inner.keys)
            .certificates
            .as_ref()
            .map(|c| c.alipay_cert.sn.clone())
        {
            Some(sn) => {
                format!("{{\"{key}\":{text},\"alipay_cert_sn\":\"{sn}\",\"sign\":\"{sign}\"}}")
            }
            None => format!("{{\"{key}\":{text},\"sign\":\"{sign}\"}}"),
        }
    } else {
        format!("{{\"{key}\":{text}}}")
    };
    ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], body).into_response()
}

fn business_error(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

fn take_fault(inner: &Inner, target: &str) -> Option<FaultKind> {
    let mut state = lock(&inner.state);
    let index = state.faults.iter().position(|f| f.target == target)?;
    let fault = state.faults.get_mut(index)?;
    let kind = fault.kind.clone();
    fault.times = fault.times.saturating_sub(1);
    if fault.times == 0 {
        state.faults.remove(index);
    }
    Some(kind)
}

async fn gateway(
    State(inner): State<Arc<Inner>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = match decode_form(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if method == Method::POST {
        match decode_form(&body) {
            Ok(form) => params.extend(form),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }
    let api = params.get("method").cloned().unwrap_or_default();
    let reply = |code: &str, sub_code: &str, sub_msg: &str| {
        lock(&inner.state)
            .calls
            .push((api.clone(), sub_code.to_owned()));
        answer(
            &inner,
            &api,
            &json!({"code": code, "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg}),
            false,
            false,
        )
    };
    // Common parameters and the signature, checked as the open platform checks them.
    for required in [
        "app_id",
        "method",
        "charset",
        "sign_type",
        "timestamp",
        "version",
        "biz_content",
    ] {
        if params.get(required).is_none_or(String::is_empty) {
            return reply(
                "40001",
                &format!("isv.missing-{}", required.replace('_', "-")),
                &format!("缺少{required}参数"),
            );
        }
    }
    if params.get("sign").is_none_or(String::is_empty) {
        return reply("40001", "isv.missing-signature", "缺少签名参数");
    }
    if params.get("sign_type").map(String::as_str) != Some("RSA2") {
        return reply("40002", "isv.invalid-signature-type", "无效的签名类型");
    }
    if params.get("app_id") != Some(&inner.config.app_id) {
        return reply("40002", "isv.invalid-app-id", "无效的AppID参数");
    }
    if params
        .get("charset")
        .map(|c| c.to_ascii_lowercase())
        .as_deref()
        != Some("utf-8")
    {
        return reply("40002", "isv.invalid-charset", "字符集错误");
    }
    let content = content_to_sign(&params, false);
    let sign = params.get("sign").cloned().unwrap_or_default();
    let (app_public_key, certificates) = {
        let keys = lock(&inner.keys);
        (keys.app_public_key.clone(), keys.certificates.clone())
    };
    lock(&inner.state)
        .signed
        .push((content.clone(), sign.clone()));
    if app_public_key.verify(content.as_bytes(), &sign).is_err() {
        return reply(
            "40002",
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        );
    }
    // Certificate mode (ALIPAY-OPS.md §3): both SNs are common parameters. The sub-codes are
    // the simulator's own naming (the notes do not give Alipay's).
    if let Some(certs) = &certificates {
        if params.get("app_cert_sn") != Some(&certs.app_cert_sn) {
            return reply(
                "40002",
                "isv.invalid-app-cert-sn",
                "应用公钥证书序列号不正确",
            );
        }
        if params.get("alipay_root_cert_sn") != Some(&certs.ca.root_cert_sn()) {
            return reply(
                "40002",
                "isv.invalid-alipay-root-cert-sn",
                "支付宝根证书序列号不正确",
            );
        }
    } else if params.contains_key("app_cert_sn") {
        return reply("40002", "isv.invalid-app-cert-sn", "应用未开启公钥证书模式");
    }
    // Inference from ALIPAY.md: the timestamp is China time; a UTC one is 8 hours off. Checked
    // against the machine's clock: the test clock moves Alipay's business times (answers,
    // notifications, the bill's day), not the caller's, which keeps the machine's.
    let now = machine_ms().div_euclid(1000);
    let sent = params.get("timestamp").and_then(|t| china_unix(t));
    if sent.is_none_or(|t| (t - now).abs() > 600) {
        return reply("40002", "isv.invalid-timestamp", "非法的时间戳参数");
    }
    let Ok(biz) =
        serde_json::from_str::<Value>(params.get("biz_content").map_or("", String::as_str))
    else {
        return reply(
            "40002",
            "isv.invalid-biz-content",
            "biz_content不是合法的JSON",
        );
    };
    let field = |name: &str| {
        biz.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };

    match api.as_str() {
        "alipay.trade.page.pay" | "alipay.trade.wap.pay" if method == Method::GET => {
            match open_trade(&inner, &api, &params, &biz) {
                Ok(trade) => cashier_page(&inner, &trade),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    Html(format!("<h1>支付宝</h1><p>{e}</p>")),
                )
                    .into_response(),
            }
        }
        "alipay.trade.precreate"
        | "alipay.data.dataservice.bill.downloadurl.query"
        | "alipay.trade.query"
        | "alipay.trade.close"
        | "alipay.trade.refund"
        | "alipay.trade.fastpay.refund.query" => {
            let fault = take_fault(&inner, &api).or_else(|| outage_fault(&inner));
            match fault {
                Some(FaultKind::Timeout) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "fault:timeout".into()));
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                }
                Some(FaultKind::Http500) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "fault:http500".into()));
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                Some(FaultKind::SystemError) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SYSTEM_ERROR".into()));
                    return answer(
                        &inner,
                        &api,
                        &business_error("ACQ.SYSTEM_ERROR", "系统错误"),
                        false,
                        true,
                    );
                }
                Some(FaultKind::SellerBalanceNotEnough) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SELLER_BALANCE_NOT_ENOUGH".into()));
                    let content = business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
                    return answer(&inner, &api, &content, false, true);
                }
                Some(FaultKind::UnsignedError { code, sub_code }) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), format!("unsigned:{sub_code}")));
                    let content = json!({"code": code, "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": "injected"});
                    return answer(&inner, &api, &content, false, false);
                }
                Some(FaultKind::ServiceUnavailable) => {
                    lock(&inner.state).calls.push((api.clone(), "20000".into()));
                    let content = json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"});
                    return answer(&inner, &api, &content, false, false);
                }
                Some(FaultKind::SlowRefusal { ms }) => {
                    lock(&inner.state)
                        .calls
                        .push((api.clone(), "ACQ.SELLER_BALANCE_NOT_ENOUGH".into()));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let content = business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
                    return answer(&inner, &api, &content, false, true);
                }
                Some(FaultKind::Slow { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Some(FaultKind::BuyerPaysFirst) => {
                    // The buyer's payment reaches Alipay just before this call does.
                    let _ = pay(&inner, &field("out_trade_no"), &Payer::default());
                }
                _ => {}
            }
            let content = execute(&inner, &api, &params, &biz, &field, fault.as_ref());
            let code = content
                .get("sub_code")
                .or(content.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            lock(&inner.state).calls.push((api.clone(), code));
            if fault == Some(FaultKind::TimeoutAfterExecute) {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return StatusCode::GATEWAY_TIMEOUT.into_response();
            }
            answer(
                &inner,
                &api,
                &content,
                fault == Some(FaultKind::BadSignature),
                true,
            )
        }
        "alipay.open.app.alipaycert.download" if certificates.is_some() => {
            let pem = lock(&inner.keys)
                .issued
                .get(&field("alipay_cert_sn"))
                .cloned();
            lock(&inner.state).calls.push((
                api.clone(),
                if pem.is_some() { "10000" } else { "40004" }.into(),
            ));
            let content = match pem {
                Some(pem) => json!({
                    "code": "10000",
                    "msg": "Success",
                    "alipay_cert_content": base64::engine::general_purpose::STANDARD.encode(pem),
                }),
                None => business_error("CERT_NOT_EXIST", "证书不存在"),
            };
            answer(&inner, &api, &content, false, true)
        }
        _ => reply("40002", "isv.invalid-method", "不存在的方法名"),
    }
}

/// Page, wap and precreate open a trade waiting for the buyer; a repeat must match.
fn open_trade(
    inner: &Inner,
    api: &str,
    params: &BTreeMap<String, String>,
    biz: &Value,
) -> Result<Trade, String> {
    let field = |name: &str| {
        biz.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let out_trade_no = field("out_trade_no");
    let total_amount = field("total_amount");
    let subject = field("subject");
    if out_trade_no.is_empty() || subject.is_empty() {
        return Err("缺少必选参数 out_trade_no / subject".into());
    }
    let total_fen = fen(&total_amount)
        .filter(|f| *f >= 1 && *f <= 10_000_000_000)
        .ok_or("total_amount 格式错误")?;
    let expected_product = match api {
        "alipay.trade.page.pay" => Some("FAST_INSTANT_TRADE_PAY"),
        "alipay.trade.wap.pay" => Some("QUICK_WAP_WAY"),
        "alipay.trade.app.pay" => Some("QUICK_MSECURITY_PAY"),
        _ => None,
    };
    if let Some(product) = expected_product
        && field("product_code") != product
    {
        return Err(format!("product_code 应为 {product}"));
    }
    let (now, unix_now) = china_now(inner);
    let time_expire = field("time_expire");
    let expires_at = if time_expire.is_empty() {
        None
    } else {
        let at = china_unix(&time_expire).ok_or("time_expire 格式错误")?;
        if at <= unix_now {
            return Err("交易已过期 (time_expire)".into());
        }
        Some(at)
    };
    let mut state = lock(&inner.state);
    if let Some(existing) = state.trades.get_mut(&out_trade_no) {
        existing.expire_if_due(unix_now);
        if existing.total_fen != total_fen || existing.subject != subject {
            return Err("交易信息被篡改 (ACQ.TRADE_INFO_MISMATCH)".into());
        }
        return Ok(existing.clone());
    }
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let trade = Trade {
        out_trade_no: out_trade_no.clone(),
        trade_no: format!("2026{:024}", n),
        total_amount: yuan(total_fen),
        total_fen,
        subject,
        status: "WAIT_BUYER_PAY".into(),
        method: api.to_owned(),
        notify_url: params.get("notify_url").cloned(),
        return_url: params.get("return_url").cloned(),
        buyer_id: format!("2088{:012}", 102_534_000_000 + n),
        refunded_fen: 0,
        refunds: Vec::new(),
        gmt_create: now,
        gmt_payment: None,
        expires_at,
        refund_requests_ms: Vec::new(),
        fund_channel: BALANCE.to_owned(),
    };
    state.trades.insert(out_trade_no, trade.clone());
    Ok(trade)
}

fn trade_fields(trade: &Trade) -> Value {
    json!({"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no})
}

fn success(mut content: Value) -> Value {
    if let Some(object) = content.as_object_mut() {
        object.insert("code".into(), json!("10000"));
        object.insert("msg".into(), json!("Success"));
    }
    content
}

/// The server APIs. `fault`: the fault this call took, for those that act inside it.
fn execute(
    inner: &Arc<Inner>,
    api: &str,
    params: &BTreeMap<String, String>,
    biz: &Value,
    field: &dyn Fn(&str) -> String,
    fault: Option<&FaultKind>,
) -> Value {
    if api == "alipay.data.dataservice.bill.downloadurl.query" {
        return bill_url(inner, &field("bill_type"), &field("bill_date"));
    }
    if api == "alipay.trade.precreate" {
        return match open_trade(inner, api, params, biz) {
            Ok(trade) => success(
                json!({"out_trade_no": trade.out_trade_no, "qr_code": format!("{}/qr/{}", inner.base_url, trade.out_trade_no)}),
            ),
            Err(e) => business_error("ACQ.INVALID_PARAMETER", &e),
        };
    }
    if api == "alipay.trade.refund" {
        return refund(inner, field, fault);
    }
    let out_trade_no = field("out_trade_no");
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    trade.expire_if_due(china_now(inner).1);
    match api {
        "alipay.trade.query" => {
            let mut content = trade_fields(trade);
            if let Some(object) = content.as_object_mut() {
                object.insert("trade_status".into(), json!(trade.status));
                object.insert("total_amount".into(), json!(trade.total_amount));
                object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
                if trade.status != "WAIT_BUYER_PAY" {
                    object.insert("buyer_user_id".into(), json!(trade.buyer_id));
                }
                if let Some(at) = &trade.gmt_payment {
                    object.insert("send_pay_date".into(), json!(at));
                }
            }
            success(content)
        }
        "alipay.trade.close" => {
            if trade.status != "WAIT_BUYER_PAY" {
                return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
            }
            trade.status = "TRADE_CLOSED".into();
            success(trade_fields(trade))
        }
        "alipay.trade.fastpay.refund.query" => {
            let out_request_no = field("out_request_no");
            // Our identifiers are echoed back whether or not Alipay has the refund.
            let mut content = trade_fields(trade);
            let asked_pay_time = biz
                .get("query_options")
                .and_then(Value::as_array)
                .is_some_and(|options| options.iter().any(|o| o == "gmt_refund_pay"));
            let record = trade
                .refunds
                .iter()
                .find(|r| r.out_request_no == out_request_no);
            let harsh = match record.map(|r| r.state) {
                None => Some("refund query: an echo (no such refund)"),
                Some(RefundState::Processing) => Some("refund query: data without a status"),
                Some(RefundState::Fail) => Some("refund query: REFUND_FAIL"),
                Some(RefundState::Success) => None,
            };
            if let Some(object) = content.as_object_mut() {
                object.insert("out_request_no".into(), json!(out_request_no));
                if let Some(record) = record {
                    object.insert("refund_amount".into(), json!(record.refund_amount));
                    object.insert("total_amount".into(), json!(trade.total_amount));
                    match record.state {
                        // Accepted, not executed: the data, no status.
                        RefundState::Processing => {}
                        RefundState::Success => {
                            object.insert("refund_status".into(), json!("REFUND_SUCCESS"));
                            // Only when asked for (ALIPAY-OPS.md §6).
                            if asked_pay_time {
                                object.insert("gmt_refund_pay".into(), json!(record.gmt_refund));
                            }
                        }
                        RefundState::Fail => {
                            object.insert("refund_status".into(), json!("REFUND_FAIL"));
                        }
                    }
                }
            }
            if let Some(kind) = harsh {
                *state.harsh.entry(kind).or_default() += 1;
            }
            success(content)
        }
        _ => business_error("ACQ.INVALID_PARAMETER", "unsupported"),
    }
}

/// `alipay.trade.refund`: executed at once (a refund to the buyer's balance, `fund_change=Y`),
/// or accepted and executed later (to a bank card, or as a fault says: `fund_change=N`). One
/// `out_request_no` moves money at most once; a repeat is answered without moving any.
fn refund(inner: &Arc<Inner>, field: &dyn Fn(&str) -> String, fault: Option<&FaultKind>) -> Value {
    let out_trade_no = field("out_trade_no");
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    trade.expire_if_due(china_now(inner).1);
    trade.refund_requests_ms.push(alipay_ms(inner));
    let out_request_no = field("out_request_no");
    let refund_amount = field("refund_amount");
    let Some(amount) = fen(&refund_amount).filter(|f| *f > 0) else {
        return business_error("ACQ.INVALID_PARAMETER", "refund_amount 格式错误");
    };
    if out_request_no.is_empty() {
        return business_error("ACQ.INVALID_PARAMETER", "缺少 out_request_no");
    }
    if let Some(record) = trade
        .refunds
        .iter_mut()
        .find(|r| r.out_request_no == out_request_no)
    {
        record.requests += 1;
        if record.refund_amount != refund_amount {
            return business_error("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致");
        }
        if record.state == RefundState::Fail {
            // The reason it failed still holds.
            return business_error("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
        }
        // A repeat (executed or still processing): answered, but no money moves.
        let mut content = trade_fields(trade);
        if let Some(object) = content.as_object_mut() {
            object.insert("fund_change".into(), json!("N"));
            object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
        }
        return success(content);
    }
    match trade.status.as_str() {
        "TRADE_SUCCESS" => {}
        "TRADE_FINISHED" => return business_error("ACQ.TRADE_HAS_FINISHED", "交易已完结"),
        _ => return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    }
    let processing: u64 = trade
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Processing)
        .filter_map(|r| fen(&r.refund_amount))
        .sum();
    if trade.refunded_fen + processing + amount > trade.total_fen {
        return business_error("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限");
    }
    let fails = fault == Some(&FaultKind::RefundFailsLater);
    let later = fails || fault == Some(&FaultKind::AsyncRefund) || trade.fund_channel == BANK_CARD;
    trade.refunds.push(RefundRecord {
        out_request_no: out_request_no.clone(),
        refund_amount,
        executions: 0,
        requests: 1,
        gmt_refund: String::new(),
        state: RefundState::Processing,
    });
    if later {
        let mut content = trade_fields(trade);
        if let Some(object) = content.as_object_mut() {
            object.insert("fund_change".into(), json!("N"));
            object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
            object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
        }
        *state
            .harsh
            .entry("refund accepted (fund_change=N), executed later")
            .or_default() += 1;
        drop(state);
        let (inner, delay) = (Arc::clone(inner), inner.config.refunds.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            complete_refund(&inner, &out_trade_no, &out_request_no, !fails);
        });
        return success(content);
    }
    drop(state);
    complete_refund(inner, &out_trade_no, &out_request_no, true);
    let state = lock(&inner.state);
    let Some(trade) = state.trades.get(&out_trade_no) else {
        return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let paid_at = trade
        .refunds
        .iter()
        .find(|r| r.out_request_no == out_request_no)
        .map(|r| r.gmt_refund.clone())
        .unwrap_or_default();
    let mut content = trade_fields(trade);
    if let Some(object) = content.as_object_mut() {
        object.insert("fund_change".into(), json!("Y"));
        object.insert("refund_fee".into(), json!(yuan(trade.refunded_fen)));
        object.insert("gmt_refund_pay".into(), json!(paid_at));
        object.insert("buyer_logon_id".into(), json!("buy***@example.com"));
    }
    success(content)
}

/// Executes (or fails) an accepted refund: money moves, the trade closes when fully refunded,
/// and the refund notification goes out (`gmt_refund` with milliseconds, as Alipay writes it).
fn complete_refund(inner: &Arc<Inner>, out_trade_no: &str, out_request_no: &str, executes: bool) {
    let mut state = lock(&inner.state);
    let Some(trade) = state.trades.get_mut(out_trade_no) else {
        return;
    };
    let Some(record) = trade
        .refunds
        .iter_mut()
        .find(|r| r.out_request_no == out_request_no && r.state == RefundState::Processing)
    else {
        return;
    };
    if !executes {
        record.state = RefundState::Fail;
        return;
    }
    let (now, _) = china_now(inner);
    let now_millis = china_now_millis(inner);
    record.state = RefundState::Success;
    record.executions += 1;
    record.gmt_refund = now;
    let amount = fen(&record.refund_amount).unwrap_or(0);
    trade.refunded_fen += amount;
    let full = trade.refunded_fen == trade.total_fen;
    if full {
        trade.status = "TRADE_CLOSED".into();
    }
    let refund_fields = [
        ("refund_fee", yuan(trade.refunded_fen)),
        ("gmt_refund", now_millis),
        ("out_biz_no", out_request_no.to_owned()),
    ];
    let status = if full {
        "TRADE_CLOSED"
    } else {
        "TRADE_SUCCESS"
    };
    let snapshot = trade.clone();
    drop(state);
    notify(inner, &snapshot, status, &refund_fields);
}

// ---- paying -----------------------------------------------------------------------------

/// How a payment is made: by whom, with what.
#[derive(Clone, Debug, Default)]
pub struct Payer {
    /// Also send TRADE_FINISHED (a trade that can no longer be refunded).
    pub finished: bool,
    /// The buyer's Alipay user id (2088…); the trade's own otherwise.
    pub buyer_id: Option<String>,
    /// [`BALANCE`] or [`BANK_CARD`]; by [`RefundProcessing::bank_card_every`] otherwise.
    pub fund_channel: Option<String>,
}

fn pay(inner: &Arc<Inner>, out_trade_no: &str, payer: &Payer) -> Result<Trade, String> {
    let mut state = lock(&inner.state);
    let trade = state
        .trades
        .get_mut(out_trade_no)
        .ok_or("no such trade (open the cashier first)")?;
    let (now, unix_now) = china_now(inner);
    trade.expire_if_due(unix_now);
    if trade.status != "WAIT_BUYER_PAY" {
        return Err(format!("the trade is {}", trade.status));
    }
    trade.status = if payer.finished {
        "TRADE_FINISHED"
    } else {
        "TRADE_SUCCESS"
    }
    .into();
    trade.gmt_payment = Some(now);
    if let Some(buyer_id) = &payer.buyer_id {
        trade.buyer_id = buyer_id.clone();
    }
    let n = inner.payments.fetch_add(1, Ordering::Relaxed) + 1;
    let every = inner.config.refunds.bank_card_every;
    trade.fund_channel = match &payer.fund_channel {
        Some(channel) => channel.clone(),
        None if every > 0 && n.is_multiple_of(every) => BANK_CARD.to_owned(),
        None => BALANCE.to_owned(),
    };
    let snapshot = trade.clone();
    drop(state);
    notify(inner, &snapshot, "TRADE_SUCCESS", &[]);
    if payer.finished {
        notify(inner, &snapshot, "TRADE_FINISHED", &[]);
    }
    Ok(snapshot)
}

fn open_app_order(inner: &Inner, order_string: &str) -> Result<Trade, String> {
    let params = decode_form(order_string.trim().as_bytes())?;
    let content = content_to_sign(&params, false);
    let sign = params.get("sign").ok_or("the order string is unsigned")?;
    if params.get("sign_type").map(String::as_str) != Some("RSA2") {
        return Err("sign_type must be RSA2".into());
    }
    lock(&inner.state)
        .signed
        .push((content.clone(), sign.clone()));
    let app_public_key = lock(&inner.keys).app_public_key.clone();
    app_public_key
        .verify(content.as_bytes(), sign)
        .map_err(|e| format!("isv.invalid-signature: {e}"))?;
    if params.get("method").map(String::as_str) != Some("alipay.trade.app.pay") {
        return Err("not an alipay.trade.app.pay order string".into());
    }
    let biz: Value = serde_json::from_str(params.get("biz_content").map_or("", String::as_str))
        .map_err(|e| e.to_string())?;
    open_trade(inner, "alipay.trade.app.pay", &params, &biz)
}

// ---- notifications ----------------------------------------------------------------------

fn notification_body(inner: &Inner, fields: &BTreeMap<String, String>, corrupt: bool) -> String {
    let mut sign = sign(inner, &content_to_sign(fields, true));
    if corrupt {
        sign = sign.chars().rev().collect();
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        form.append_pair(key, value);
    }
    form.append_pair("sign", &sign);
    form.finish()
}

/// Sends a trade notification to the trade's notify_url, retrying on Alipay's schedule until
/// the answer is `success`.
fn notify(inner: &Arc<Inner>, trade: &Trade, trade_status: &str, extra: &[(&str, String)]) {
    let Some(notify_url) = trade.notify_url.clone() else {
        return;
    };
    let fault = take_fault(inner, "notify");
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let (now, _) = china_now(inner);
    let mut fields: BTreeMap<String, String> = [
        ("notify_id", format!("2026{n:028}")),
        ("notify_type", "trade_status_sync".to_owned()),
        ("notify_time", now.clone()),
        ("charset", "utf-8".to_owned()),
        ("version", "1.0".to_owned()),
        ("sign_type", "RSA2".to_owned()),
        ("app_id", inner.config.app_id.clone()),
        ("auth_app_id", inner.config.app_id.clone()),
        ("seller_id", inner.config.seller_id.clone()),
        ("seller_email", "merchant@example.com".to_owned()),
        ("buyer_id", trade.buyer_id.clone()),
        ("buyer_logon_id", "buy***@example.com".to_owned()),
        ("trade_no", trade.trade_no.clone()),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("trade_status", trade_status.to_owned()),
        ("total_amount", trade.total_amount.clone()),
        ("receipt_amount", trade.total_amount.clone()),
        ("invoice_amount", trade.total_amount.clone()),
        ("buyer_pay_amount", trade.total_amount.clone()),
        ("point_amount", "0.00".to_owned()),
        ("subject", trade.subject.clone()),
        ("gmt_create", trade.gmt_create.clone()),
        ("gmt_payment", trade.gmt_payment.clone().unwrap_or_default()),
        (
            "fund_bill_list",
            format!(
                "[{{\"amount\":\"{}\",\"fundChannel\":\"{}\"}}]",
                trade.total_amount, trade.fund_channel
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        fields.insert((*key).to_owned(), value.clone());
    }
    // Certificate mode: the simulator names its certificate in notifications too, signed like
    // every field (one of the two answers ALIPAY-OPS.md leaves open; the gateway takes both).
    if let Some(certs) = &lock(&inner.keys).certificates {
        fields.insert("alipay_cert_sn".into(), certs.alipay_cert.sn.clone());
    }
    let index = {
        let mut state = lock(&inner.state);
        state.deliveries.push(Delivery {
            notify_id: fields["notify_id"].clone(),
            out_trade_no: trade.out_trade_no.clone(),
            trade_status: trade_status.to_owned(),
            attempts: Vec::new(),
            acknowledged: false,
        });
        state.deliveries.len() - 1
    };
    if fault == Some(FaultKind::Drop) {
        return;
    }
    let body = notification_body(inner, &fields, fault == Some(FaultKind::BadNotifySignature));
    // Subscribed now, so a release that comes after this notification was made lets it go.
    let mut release = inner.released.subscribe();
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        match fault {
            Some(FaultKind::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Some(FaultKind::Hold) => {
                let _ = release.changed().await;
            }
            _ => {}
        }
        let schedule = std::iter::once(0).chain(RETRY_SCHEDULE_SECONDS);
        for (attempt, delay) in schedule.enumerate() {
            tokio::time::sleep(Duration::from_secs_f64(
                delay as f64 * inner.config.time_scale,
            ))
            .await;
            let copies = if attempt == 0 && fault == Some(FaultKind::Duplicate) {
                2
            } else {
                1
            };
            // Copies start together, so a duplicate really arrives concurrently.
            let mut sends = tokio::task::JoinSet::new();
            for _ in 0..copies {
                let (inner, url, body) = (Arc::clone(&inner), notify_url.clone(), body.clone());
                sends.spawn(async move { deliver(&inner, &url, &body).await });
            }
            let mut results = Vec::new();
            while let Some(Ok(result)) = sends.join_next().await {
                results.push(result);
            }
            let acknowledged = results.iter().any(|r| r == "HTTP 200 success");
            {
                let mut state = lock(&inner.state);
                if let Some(delivery) = state.deliveries.get_mut(index) {
                    delivery.attempts.extend(results);
                    delivery.acknowledged |= acknowledged;
                }
            }
            if acknowledged {
                return;
            }
        }
    });
}

async fn deliver(inner: &Inner, notify_url: &str, body: &str) -> String {
    let request = match hyper::Request::post(notify_url)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
    {
        Ok(request) => request,
        Err(e) => return format!("error: {e}"),
    };
    match tokio::time::timeout(Duration::from_secs(15), inner.http.request(request)).await {
        Err(_) => "error: timeout".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            use http_body_util::BodyExt as _;
            let text = match response.into_body().collect().await {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(e) => format!("error: {e}"),
            };
            format!("HTTP {status} {text}")
        }
    }
}

// ---- the cashier and the test API --------------------------------------------------------

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cashier_page(inner: &Inner, trade: &Trade) -> Response {
    let paid = trade.status != "WAIT_BUYER_PAY";
    let action = if paid {
        format!("<p class=\"done\">{}</p>", escape(&trade.status))
    } else {
        format!(
            "<form method=\"post\" action=\"{}/cashier/pay\"><input type=\"hidden\" name=\"out_trade_no\" value=\"{}\"><button type=\"submit\">确认付款 Pay ¥{}</button></form>",
            inner.base_url,
            escape(&trade.out_trade_no),
            escape(&trade.total_amount)
        )
    };
    Html(format!(
        "<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>支付宝 Alipay (local simulator)</title>\
         <style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;color:#333}}h1{{color:#1677ff}}\
         .amount{{font-size:2.5rem;margin:.5rem 0}}button{{background:#1677ff;color:#fff;border:0;border-radius:6px;\
         font-size:1.2rem;padding:.8rem 2rem;cursor:pointer}}small{{color:#888}}</style></head><body>\
         <h1>支付宝 · 收银台</h1><small>Local Alipay simulator: no real money moves.</small>\
         <p>{}</p><p class=\"amount\">¥{}</p><p><small>订单号 {} · 交易号 {}</small></p>{}</body></html>",
        escape(&trade.subject),
        escape(&trade.total_amount),
        escape(&trade.out_trade_no),
        escape(&trade.trade_no),
        action
    ))
    .into_response()
}

async fn cashier(State(inner): State<Arc<Inner>>, Path(out_trade_no): Path<String>) -> Response {
    match lock(&inner.state).trades.get(&out_trade_no).cloned() {
        Some(trade) => cashier_page(&inner, &trade),
        None => (
            StatusCode::NOT_FOUND,
            Html("<h1>交易不存在</h1>".to_owned()),
        )
            .into_response(),
    }
}

async fn cashier_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let form = decode_form(&body).unwrap_or_default();
    let out_trade_no = form.get("out_trade_no").cloned().unwrap_or_default();
    match pay(&inner, &out_trade_no, &Payer::default()) {
        Ok(trade) => match &trade.return_url {
            Some(url) => {
                // The synchronous return carries signed parameters; merchants must not trust it
                // for payment state (the notification and query are authoritative).
                let (now, _) = china_now(&inner);
                let mut fields: BTreeMap<String, String> = [
                    ("app_id", inner.config.app_id.clone()),
                    ("method", format!("{}.return", trade.method)),
                    ("charset", "utf-8".into()),
                    ("sign_type", "RSA2".into()),
                    ("timestamp", now),
                    ("version", "1.0".into()),
                    ("out_trade_no", trade.out_trade_no.clone()),
                    ("trade_no", trade.trade_no.clone()),
                    ("total_amount", trade.total_amount.clone()),
                    ("seller_id", inner.config.seller_id.clone()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                let sign = sign(&inner, &content_to_sign(&fields, true));
                fields.insert("sign".into(), sign);
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&fields)
                    .finish();
                let separator = if url.contains('?') { '&' } else { '?' };
                Redirect::to(&format!("{url}{separator}{query}")).into_response()
            }
            None => cashier_page(&inner, &trade),
        },
        Err(e) => (
            StatusCode::CONFLICT,
            Html(format!("<h1>无法付款</h1><p>{}</p>", escape(&e))),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct PayRequest {
    out_trade_no: String,
    #[serde(default)]
    finished: bool,
    /// `ALIPAYACCOUNT` or `BANKCARD` (refunds executed later).
    #[serde(default)]
    fund_channel: Option<String>,
}

async fn sim_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<PayRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"out_trade_no\": \"...\"}",
        )
            .into_response();
    };
    let payer = Payer {
        finished: request.finished,
        buyer_id: None,
        fund_channel: request.fund_channel,
    };
    match pay(&inner, &request.out_trade_no, &payer) {
        Ok(trade) => axum::Json(trade).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
    }
}

async fn sim_app_pay(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match open_app_order(&inner, &String::from_utf8_lossy(&body)) {
        Ok(trade) => axum::Json(trade).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response(),
    }
}

async fn sim_fault(State(inner): State<Arc<Inner>>, _headers: HeaderMap, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            lock(&inner.state).faults.push_back(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn sim_release(State(inner): State<Arc<Inner>>) -> Response {
    release_held(&inner);
    StatusCode::NO_CONTENT.into_response()
}

fn release_held(inner: &Inner) {
    inner.released.send_modify(|n| *n += 1);
}

async fn sim_outage(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let outage = match serde_json::from_slice::<Outage>(&body) {
        Ok(outage) if outage.seconds.is_finite() && outage.seconds >= 0.0 => outage,
        Ok(_) => return (StatusCode::BAD_REQUEST, "seconds must be 0 or more").into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match set_outage(&inner, outage.kind, Duration::from_secs_f64(outage.seconds)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

fn set_outage(inner: &Inner, kind: FaultKind, period: Duration) -> Result<(), String> {
    if !matches!(
        kind,
        FaultKind::Timeout
            | FaultKind::Http500
            | FaultKind::SystemError
            | FaultKind::ServiceUnavailable
    ) {
        return Err("an outage is timeout, http500, system_error or service_unavailable".into());
    }
    lock(&inner.state).outage =
        (!period.is_zero()).then(|| (kind, std::time::Instant::now() + period));
    Ok(())
}

/// The outage's failure, while one lasts.
fn outage_fault(inner: &Inner) -> Option<FaultKind> {
    let mut state = lock(&inner.state);
    match &state.outage {
        Some((kind, until)) if std::time::Instant::now() < *until => Some(kind.clone()),
        Some(_) => {
            state.outage = None;
            None
        }
        None => None,
    }
}

async fn sim_trade(State(inner): State<Arc<Inner>>, Path(out_trade_no): Path<String>) -> Response {
    match lock(&inner.state).trades.get(&out_trade_no).cloned() {
        Some(trade) => axum::Json(trade).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sim_notifications(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(lock(&inner.state).deliveries.clone()).into_response()
}

// ---- the daily bill ----------------------------------------------------------------------

/// `alipay.data.dataservice.bill.downloadurl.query`: the URL of a day's `trade` bill, valid for
/// 30 s and one download; `isp.bill_not_exist` before the day is over in China time (unless
/// closed early) or when the day has no rows (ALIPAY-OPS.md §2).
fn bill_url(inner: &Arc<Inner>, bill_type: &str, bill_date: &str) -> Value {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if bill_type != "trade" || time::Date::parse(bill_date, format).is_err() {
        return business_error("invalid_arguments", "参数不合法");
    }
    let (now, unix) = china_now(inner);
    let mut state = lock(&inner.state);
    let over = bill_date < &now[..10] || state.closed_days.contains(bill_date);
    if !over {
        return business_error("isp.bill_not_exist", "账单不存在");
    }
    let trades: Vec<Trade> = state.trades.values().cloned().collect();
    let lines = bill::lines_of_day(&trades, bill_date);
    if lines.is_empty() {
        return business_error("isp.bill_not_exist", "账单不存在");
    }
    let pid = &inner.config.seller_id;
    let exported = china_text(unix)
        .replacen('-', "年", 1)
        .replacen('-', "月", 1)
        .replacen(' ', "日 ", 1);
    let zip = bill::bill_zip(pid, bill_date, &lines, &exported);
    let name = bill::zip_name(pid, bill_date);
    let token = uuid::Uuid::new_v4().simple().to_string();
    state
        .bill_links
        .insert(token.clone(), (name.clone(), zip, unix * 1000 + 30_000));
    let url = format!(
        "{}/downloadBillFile.resource?bizType=trade&userId={pid}0156&fileType=csv.zip&bizDates={}&downloadFileName={name}&token={token}",
        inner.base_url,
        bill_date.replace('-', "")
    );
    json!({"code": "10000", "msg": "Success", "bill_download_url": url})
}

async fn download_bill(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let params = decode_form(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let token = params.get("token").cloned().unwrap_or_default();
    let link = lock(&inner.state).bill_links.remove(&token);
    let now_ms = alipay_ms(&inner);
    match link {
        Some((name, zip, valid_until)) if now_ms <= valid_until => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename={name}"),
                ),
            ],
            zip,
        )
            .into_response(),
        // Used, expired or never issued: Alipay's file server refuses it.
        _ => (StatusCode::FORBIDDEN, "the link has expired").into_response(),
    }
}

fn edit_ledger(inner: &Inner, edit: LedgerEdit) -> Result<(), String> {
    let mut state = lock(&inner.state);
    let trades = &mut state.trades;
    fn trade_of<'t>(
        trades: &'t mut HashMap<String, Trade>,
        no: &str,
    ) -> Result<&'t mut Trade, String> {
        trades.get_mut(no).ok_or_else(|| format!("no trade {no}"))
    }
    match edit {
        LedgerEdit::SetTotal {
            out_trade_no,
            total_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.total_fen = fen(&total_amount).ok_or("total_amount")?;
            trade.total_amount = total_amount;
        }
        LedgerEdit::AddRefund {
            out_trade_no,
            out_request_no,
            refund_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.refunded_fen += fen(&refund_amount).ok_or("refund_amount")?;
            trade.refunds.push(RefundRecord {
                out_request_no,
                refund_amount,
                executions: 1,
                requests: 0,
                gmt_refund: china_now(inner).0,
                state: RefundState::Success,
            });
        }
        LedgerEdit::RemoveRefund {
            out_trade_no,
            out_request_no,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            trade.refunds.retain(|r| r.out_request_no != out_request_no);
        }
        LedgerEdit::SetRefundAmount {
            out_trade_no,
            out_request_no,
            refund_amount,
        } => {
            let trade = trade_of(trades, &out_trade_no)?;
            let record = trade
                .refunds
                .iter_mut()
                .find(|r| r.out_request_no == out_request_no)
                .ok_or("no such refund")?;
            fen(&refund_amount).ok_or("refund_amount")?;
            record.refund_amount = refund_amount;
        }
        LedgerEdit::Forget { out_trade_no } => {
            trades.remove(&out_trade_no).ok_or("no such trade")?;
        }
    }
    Ok(())
}

async fn sim_ledger(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<LedgerEdit>(&body) {
        Ok(edit) => match edit_ledger(&inner, edit) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
        },
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// `POST /sim/clock`: `{"china_time": "yyyy-MM-dd HH:mm:ss"}` (Alipay's clock reads that now)
/// or `{"offset_ms": n}` (Alipay's clock this far from the machine's; 0 puts it back).
#[derive(Deserialize)]
struct ClockRequest {
    #[serde(default)]
    china_time: Option<String>,
    #[serde(default)]
    offset_ms: Option<i64>,
}

async fn sim_clock(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let request = match serde_json::from_slice::<ClockRequest>(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let offset = match (request.china_time, request.offset_ms) {
        (Some(text), None) => match china_unix(&text) {
            Some(at) => at * 1000 - machine_ms(),
            None => {
                return (StatusCode::BAD_REQUEST, "china_time: yyyy-MM-dd HH:mm:ss")
                    .into_response();
            }
        },
        (None, Some(offset)) => offset,
        _ => {
            return (StatusCode::BAD_REQUEST, "give china_time or offset_ms").into_response();
        }
    };
    inner.clock_offset_ms.store(offset, Ordering::Relaxed);
    axum::Json(json!({"offset_ms": offset, "china_time": china_now(&inner).0})).into_response()
}

#[derive(Deserialize)]
struct CloseDay {
    date: String,
}

async fn sim_close_day(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<CloseDay>(&body) {
        Ok(CloseDay { date }) => {
            lock(&inner.state).closed_days.insert(date);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
