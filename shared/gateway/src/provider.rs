//! A channel has a protocol: Alipay v1 or Antom. [`Provider`] is what the lifecycles need of
//! either — end an unpaid payment (close it there, ask what became of it), send and ask about a
//! refund — each answer already reduced to the shared decisions (`TradeNext`, `RefundNext`).
//! `payments::end_unpaid_order`, `payments::recheck_closed_order` and `refunds::drive_refund`
//! drive both protocols through it; [`AnyChannel`] is an order's channel, whichever it is.

use std::future::Future;

use domain::channel::ChannelId;
use domain::lifecycle::{RefundNext, SinceSend, TradeNext};
use domain::states::{Order, Refund, RefundOutcome};

use crate::channel::Channel;
use crate::channel::antom::AntomChannel;
use crate::channel::breaker::Breaker;
use crate::deadline::Deadline;
use crate::payments::Queried;
use crate::refunds::Pending;

/// What closing an unpaid payment at the provider said.
pub struct Closing {
    pub next: TradeNext,
    /// The provider has no such payment (it never reached it).
    pub unknown_at_provider: bool,
    /// Why nothing could be decided, when that is so.
    pub reason: Option<String>,
}

/// The provider's names of its calls, for the audit trail.
#[derive(Clone, Copy, Debug)]
pub struct Names {
    pub query: &'static str,
    pub refund: &'static str,
    pub refund_query: &'static str,
}

/// The calls the lifecycles make, in either protocol.
pub trait Provider: Sync {
    fn id(&self) -> ChannelId;
    fn breaker(&self) -> &Breaker;
    fn names(&self) -> Names;
    /// Close an unpaid payment at the provider (v1 `alipay.trade.close`, Antom `cancel`).
    fn close_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Closing> + Send + 'a;
    /// Ask what became of a payment (v1 `alipay.trade.query`, Antom `inquiryPayment`).
    fn query_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Queried> + Send + 'a;
    /// Send a refund with its unchanged parameters; the decision and the provider's time of
    /// the refund when it gave one (China time).
    fn send_refund<'a>(
        &'a self,
        refund: &'a Refund,
        first_send: bool,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<String>)> + Send + 'a;
    /// Ask about a refund.
    fn query_refund<'a>(
        &'a self,
        refund: &'a Refund,
        if_absent: Option<RefundOutcome>,
        since: SinceSend,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<Pending>, Option<String>)> + Send + 'a;
}

impl Provider for Channel {
    fn id(&self) -> ChannelId {
        self.id
    }

    fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    fn names(&self) -> Names {
        Names {
            query: "alipay.trade.query",
            refund: "alipay.trade.refund",
            refund_query: "alipay.trade.fastpay.refund.query",
        }
    }

    fn close_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Closing> + Send + 'a {
        crate::payments::close_at_alipay(self, order, deadline)
    }

    fn query_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Queried> + Send + 'a {
        crate::payments::query_trade(self, order, deadline)
    }

    fn send_refund<'a>(
        &'a self,
        refund: &'a Refund,
        first_send: bool,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<String>)> + Send + 'a {
        crate::refunds::send(self, refund, first_send, deadline)
    }

    fn query_refund<'a>(
        &'a self,
        refund: &'a Refund,
        if_absent: Option<RefundOutcome>,
        since: SinceSend,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<Pending>, Option<String>)> + Send + 'a {
        crate::refunds::query(self, refund, if_absent, since, deadline)
    }
}

impl Provider for AntomChannel {
    fn id(&self) -> ChannelId {
        ChannelId::Antom
    }

    fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    fn names(&self) -> Names {
        Names {
            query: antom::paths::INQUIRY_PAYMENT,
            refund: antom::paths::REFUND,
            refund_query: antom::paths::INQUIRY_REFUND,
        }
    }

    fn close_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Closing> + Send + 'a {
        crate::antom::cancel(self, order, deadline)
    }

    fn query_trade<'a>(
        &'a self,
        order: &'a Order,
        deadline: &'a Deadline,
    ) -> impl Future<Output = Queried> + Send + 'a {
        crate::antom::inquire(self, order, deadline)
    }

    fn send_refund<'a>(
        &'a self,
        refund: &'a Refund,
        first_send: bool,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<String>)> + Send + 'a {
        crate::antom::send_refund(self, refund, first_send, deadline)
    }

    fn query_refund<'a>(
        &'a self,
        refund: &'a Refund,
        if_absent: Option<RefundOutcome>,
        since: SinceSend,
        deadline: &'a Deadline,
    ) -> impl Future<Output = (RefundNext, Option<Pending>, Option<String>)> + Send + 'a {
        crate::antom::inquire_refund(self, refund, if_absent, since, deadline)
    }
}

/// An order's channel, whichever protocol it speaks.
#[derive(Clone, Copy)]
pub enum AnyChannel<'a> {
    V1(&'a Channel),
    Antom(&'a AntomChannel),
}

impl Provider for AnyChannel<'_> {
    fn id(&self) -> ChannelId {
        match self {
            AnyChannel::V1(c) => c.id(),
            AnyChannel::Antom(a) => a.id(),
        }
    }

    fn breaker(&self) -> &Breaker {
        match self {
            AnyChannel::V1(c) => &c.breaker,
            AnyChannel::Antom(a) => &a.breaker,
        }
    }

    fn names(&self) -> Names {
        match self {
            AnyChannel::V1(c) => c.names(),
            AnyChannel::Antom(a) => a.names(),
        }
    }

    async fn close_trade(&self, order: &Order, deadline: &Deadline) -> Closing {
        match self {
            AnyChannel::V1(c) => c.close_trade(order, deadline).await,
            AnyChannel::Antom(a) => a.close_trade(order, deadline).await,
        }
    }

    async fn query_trade(&self, order: &Order, deadline: &Deadline) -> Queried {
        match self {
            AnyChannel::V1(c) => c.query_trade(order, deadline).await,
            AnyChannel::Antom(a) => a.query_trade(order, deadline).await,
        }
    }

    async fn send_refund(
        &self,
        refund: &Refund,
        first_send: bool,
        deadline: &Deadline,
    ) -> (RefundNext, Option<String>) {
        match self {
            AnyChannel::V1(c) => c.send_refund(refund, first_send, deadline).await,
            AnyChannel::Antom(a) => a.send_refund(refund, first_send, deadline).await,
        }
    }

    async fn query_refund(
        &self,
        refund: &Refund,
        if_absent: Option<RefundOutcome>,
        since: SinceSend,
        deadline: &Deadline,
    ) -> (RefundNext, Option<Pending>, Option<String>) {
        match self {
            AnyChannel::V1(c) => c.query_refund(refund, if_absent, since, deadline).await,
            AnyChannel::Antom(a) => a.query_refund(refund, if_absent, since, deadline).await,
        }
    }
}
