//! Faults on demand: the next calls of one method, or the next notifications, fail as asked;
//! or every server call fails for a period (an outage).

#[allow(unused_imports)]
use crate::*;

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

pub(crate) fn one() -> u32 {
    1
}

/// An outage for a period (`POST /sim/outage`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Outage {
    /// `timeout`, `http500`, `system_error` or `service_unavailable`.
    pub kind: FaultKind,
    /// How long from now; 0 ends an outage.
    pub seconds: f64,
}

pub(crate) fn take_fault(inner: &Inner, target: &str) -> Option<FaultKind> {
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

pub(crate) fn set_outage(inner: &Inner, kind: FaultKind, period: Duration) -> Result<(), String> {
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
pub(crate) fn outage_fault(inner: &Inner) -> Option<FaultKind> {
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
