//! Orders, payments and refunds as the store tests (`tests/it/store.rs`, `tests/it/contention.rs`)
//! make them.

use shared::Amount;
use shared::china_time::ChinaDateTime;
use shared::domain::{Cause, Channel, NewOrder, NewRefund, Payment};
use shared::ids::{OutRequestNo, OutTradeNo, Subject};

use crate::simulator::china_text;
use crate::support::{TestEnv, now_ms};

/// Due time for items these tests never want the sweeper to see.
pub const NEVER_DUE: i64 = i64::MAX / 2;

/// A `time_expire` an hour ahead.
pub fn later() -> ChinaDateTime {
    ChinaDateTime::parse(&china_text(now_ms() / 1000 + 3_600)).expect("time")
}

pub fn id(text: &str) -> OutTradeNo {
    OutTradeNo::parse(text).expect("out_trade_no")
}

pub fn new_order(out_trade_no: &str, amount: &str) -> NewOrder {
    NewOrder {
        out_trade_no: id(out_trade_no),
        amount: Amount::parse(amount).expect("amount"),
        subject: Subject::parse("会员 Pro 年费").expect("subject"),
        channel: Channel::Page,
        return_url: Some("https://shop.example.com/done".into()),
        time_expire: None,
        customer_ref: None,
        virtual_goods: true,
        alipay_channel: shared::channels::ChannelId::Primary,
    }
}

pub fn api() -> Cause {
    Cause::Api {
        route: "POST /payments".into(),
    }
}

pub fn notify(n: u32) -> Cause {
    Cause::Notify {
        notify_id: format!("notify-{n}"),
    }
}

pub fn payment(amount: &str, finished: bool) -> Payment {
    Payment {
        trade_no: "2026112622001468450512505578".into(),
        amount: Amount::parse(amount).expect("amount"),
        paid_at: Some("2026-11-26 18:30:04".into()),
        buyer_id_masked: Some("2088********8455".into()),
        finished,
        risk: None,
        alipay_channel: shared::channels::ChannelId::Primary,
    }
}

pub fn refund(no: &str, amount: &str) -> NewRefund {
    NewRefund {
        out_request_no: OutRequestNo::parse(no).expect("out_request_no"),
        amount: Amount::parse(amount).expect("amount"),
        reason: Some("退货".into()),
        alipay_channel: shared::channels::ChannelId::Primary,
    }
}

pub async fn paid_order(env: &TestEnv, out_trade_no: &str, amount: &str) {
    env.store
        .create_order(
            &new_order(out_trade_no, amount),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let paid = env
        .store
        .mark_paid(
            &id(out_trade_no),
            &payment(amount, false),
            &notify(1),
            now_ms(),
        )
        .await;
    assert!(paid.expect("paid").applied());
}
