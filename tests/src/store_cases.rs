//! Orders, payments and refunds as the store tests (`tests/it/store.rs`, `tests/it/contention.rs`)
//! make them.

use alipay::Amount;
use alipay::china_time::ChinaDateTime;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
use domain::states::{Cashier, Cause, NewOrder, NewRefund, Payment};

use store::{Reserved, Store, StoreError, Transition};

use crate::support::{TestEnv, now_ms};
use alipay_sim::china_text;

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
        amount: Amount::parse(amount).expect("amount").into(),
        subject: Subject::parse("会员 Pro 年费").expect("subject"),
        channel: Cashier::Page,
        return_url: Some("https://shop.example.com/done".into()),
        time_expire: None,
        customer_ref: None,
        virtual_goods: true,
        alipay_channel: domain::channel::ChannelId::Primary,
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
        amount: Amount::parse(amount).expect("amount").into(),
        paid_at: Some("2026-11-26 18:30:04".into()),
        buyer_id_masked: Some("2088********8455".into()),
        finished,
        risk: None,
        alipay_channel: domain::channel::ChannelId::Primary,
        settlement: None,
    }
}

pub fn refund(no: &str, amount: &str) -> NewRefund {
    NewRefund {
        out_request_no: OutRequestNo::parse(no).expect("out_request_no"),
        amount: Amount::parse(amount).expect("amount").into(),
        reason: Some("退货".into()),
        alipay_channel: domain::channel::ChannelId::Primary,
    }
}

pub async fn created_order(env: &TestEnv, out_trade_no: &str, amount: &str) {
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
}

pub async fn paid_order(env: &TestEnv, out_trade_no: &str, amount: &str) {
    created_order(env, out_trade_no, amount).await;
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

/// Retries `attempt` while the store answers a retryable error (as a redelivered notification or
/// a merchant's retry would), at most 60 times; returns the answer and how many retries it took.
pub async fn until_settled<T, F, Fut>(mut attempt: F) -> (Result<T, StoreError>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(StoreError::Throttled | StoreError::Unavailable(_)) if retries < 60 => {
                retries += 1;
                let pause = 20 + u64::from(retries) * 5;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            other => return (other, retries),
        }
    }
}

/// Fifty concurrent "paid" transitions of one created order through `store` (88.88 each, as
/// fifty deliveries of one notification): (applied, duplicates, retries the callers made).
pub async fn fifty_payments(store: &Store, out_trade_no: &str) -> (u32, u32, u32) {
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let (store, no) = (store.clone(), id(out_trade_no));
            tokio::spawn(async move {
                until_settled(|| {
                    let (store, no) = (store.clone(), no.clone());
                    async move {
                        let paid = payment("88.88", false);
                        store.mark_paid(&no, &paid, &notify(n), now_ms()).await
                    }
                })
                .await
            })
        })
        .collect();
    let (mut applied, mut duplicates, mut retried) = (0, 0, 0);
    for task in tasks {
        let (outcome, retries) = task.await.expect("task");
        retried += retries;
        match outcome {
            Ok(Transition::Applied(_)) => applied += 1,
            Ok(Transition::Duplicate(_)) => duplicates += 1,
            Err(e) => panic!("still failing after 60 retries: {e}"),
        }
    }
    (applied, duplicates, retried)
}

/// Fifty concurrent refunds of 10.00 (`r_0` to `r_49`) of one paid order through `store`:
/// (fen reserved, refusals, retries the callers made). Every refusal is checked to be for want
/// of money; a retry of a reservation that went through is answered with it.
pub async fn fifty_refunds(store: &Store, out_trade_no: &str) -> (u64, u32, u32) {
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let (store, no) = (store.clone(), id(out_trade_no));
            tokio::spawn(async move {
                until_settled(|| {
                    let (store, no) = (store.clone(), no.clone());
                    async move {
                        let new = refund(&format!("r_{n}"), "10.00");
                        store
                            .reserve_refund(&no, &new, NEVER_DUE, &api(), now_ms())
                            .await
                    }
                })
                .await
            })
        })
        .collect();
    let (mut reserved, mut refused, mut retried) = (0u64, 0, 0);
    for task in tasks {
        let (outcome, retries) = task.await.expect("task");
        retried += retries;
        match outcome {
            Ok(Reserved::New(r) | Reserved::Existing(r)) => reserved += r.amount.minor(),
            Err(StoreError::ExceedsRefundable {
                requested,
                refundable,
            }) => {
                assert_eq!(requested.minor(), 1_000);
                assert!(
                    refundable.minor() < 1_000,
                    "refused while {refundable} was left"
                );
                refused += 1;
            }
            Err(e) => panic!("still failing after 60 retries: {e}"),
        }
    }
    (reserved, refused, retried)
}
