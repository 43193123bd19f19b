//! The order store against DynamoDB on the local stand-in: every legal and illegal transition,
//! idempotency, races, and the audit trail.

use std::sync::Arc;

use alipay::Amount;
use alipay::ids::OutRequestNo;
use domain::states::{
    Currency, Money, NewOrder, NewRefund, OrderStatus, Payment, RefundOutcome, RefundStatus,
};
use gateway_tests::store_cases::{
    NEVER_DUE, api, created_order, fifty_payments, fifty_refunds, id, later, new_order, notify,
    paid_order, payment, refund,
};
use gateway_tests::support::{TestEnv, now_ms};
use local_stack::template::{read_template, template_path};
use store::{Created, Reserved, SendClaim, Settlement, StoreError, Transition};

#[tokio::test]
async fn creating_is_idempotent_and_conflicts_are_refused() {
    let env = TestEnv::new().await;
    let order = new_order("order_1", "299.00");
    let first = env
        .store
        .create_order(&order, &later(), NEVER_DUE, &api(), now_ms(), &[])
        .await
        .expect("create");
    let Created::New(created) = first else {
        panic!("expected a new order, got {first:?}")
    };
    assert_eq!(
        (created.status, created.amount.minor(), created.version),
        (OrderStatus::Created, 29_900, 1)
    );

    let again = env
        .store
        .create_order(&order, &later(), NEVER_DUE, &api(), now_ms(), &[])
        .await
        .expect("repeat");
    assert!(
        matches!(again, Created::Existing(ref existing) if existing.out_trade_no == created.out_trade_no)
    );

    let different = NewOrder {
        amount: Amount::parse("1.00").expect("amount").into(),
        ..order
    };
    let conflict = env
        .store
        .create_order(&different, &later(), NEVER_DUE, &api(), now_ms(), &[])
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );

    let trail = env.store.audit_trail(&id("order_1")).await.expect("audit");
    assert_eq!(
        trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["order.created"]
    );
    let stored = env
        .store
        .get_order(&id("order_1"))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, created, "what was stored reads back identically");
}

#[tokio::test]
async fn paid_then_finished_with_duplicates_recognised() {
    let env = TestEnv::new().await;
    env.store
        .create_order(
            &new_order("order_2", "299.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let order = id("order_2");

    let paid = env
        .store
        .mark_paid(&order, &payment("299.00", false), &notify(1), now_ms())
        .await
        .expect("paid");
    let Transition::Applied(paid) = paid else {
        panic!("expected applied, got {paid:?}")
    };
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.refundable.minor(), 29_900);
    assert_eq!(paid.paid_amount.map(Money::minor), Some(29_900));
    assert_eq!(paid.buyer_id_masked.as_deref(), Some("2088********8455"));
    assert_eq!(paid.version, 2);

    let repeat = env
        .store
        .mark_paid(&order, &payment("299.00", false), &notify(1), now_ms())
        .await;
    assert!(
        matches!(repeat, Ok(Transition::Duplicate(ref o)) if o.version == 2),
        "{repeat:?}"
    );

    let finished = env
        .store
        .mark_paid(&order, &payment("299.00", true), &notify(2), now_ms())
        .await;
    let Ok(Transition::Applied(finished)) = finished else {
        panic!("expected applied, got {finished:?}")
    };
    assert_eq!(
        (finished.status, finished.refundable),
        (OrderStatus::Finished, Money::zero(Currency::CNY))
    );

    // A late TRADE_SUCCESS after TRADE_FINISHED (out of order delivery) changes nothing.
    let late = env
        .store
        .mark_paid(&order, &payment("299.00", false), &notify(1), now_ms())
        .await;
    assert!(
        matches!(late, Ok(Transition::Duplicate(ref o)) if o.status == OrderStatus::Finished),
        "{late:?}"
    );
    let again = env
        .store
        .mark_paid(&order, &payment("299.00", true), &notify(2), now_ms())
        .await;
    assert!(matches!(again, Ok(Transition::Duplicate(_))), "{again:?}");

    let other_trade = Payment {
        trade_no: "2026999".into(),
        ..payment("299.00", false)
    };
    let conflict = env
        .store
        .mark_paid(&order, &other_trade, &notify(3), now_ms())
        .await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );

    let closing = env.store.close(&order, None, &api(), now_ms()).await;
    assert!(
        matches!(closing, Err(StoreError::IllegalTransition { ref from, ref to }) if from == "FINISHED" && to == "CLOSED"),
        "{closing:?}"
    );
    let trail = env.store.audit_trail(&order).await.expect("audit");
    assert_eq!(
        trail.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["order.created", "order.paid", "order.finished"]
    );
    assert_eq!(trail[1].cause, notify(1));
}

#[tokio::test]
async fn created_can_finish_directly_or_close_and_closed_cannot_be_paid() {
    let env = TestEnv::new().await;
    env.store
        .create_order(
            &new_order("direct", "5.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let finished = env
        .store
        .mark_paid(&id("direct"), &payment("5.00", true), &notify(1), now_ms())
        .await;
    assert!(
        matches!(finished, Ok(Transition::Applied(ref o)) if o.status == OrderStatus::Finished),
        "{finished:?}"
    );

    env.store
        .create_order(
            &new_order("closing", "5.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let closed = env
        .store
        .close(&id("closing"), None, &api(), now_ms())
        .await
        .expect("close");
    assert!(matches!(closed, Transition::Applied(ref o) if o.status == OrderStatus::Closed));
    let again = env
        .store
        .close(&id("closing"), None, &api(), now_ms())
        .await
        .expect("close again");
    assert!(matches!(again, Transition::Duplicate(_)));
    let paid = env
        .store
        .mark_paid(
            &id("closing"),
            &payment("5.00", false),
            &notify(1),
            now_ms(),
        )
        .await;
    assert!(
        matches!(paid, Err(StoreError::IllegalTransition { ref from, ref to }) if from == "CLOSED" && to == "PAID"),
        "{paid:?}"
    );
    let unknown = env
        .store
        .mark_paid(&id("nobody"), &payment("5.00", false), &notify(1), now_ms())
        .await;
    assert_eq!(unknown, Err(StoreError::OrderNotFound("nobody".into())));
    assert_eq!(
        env.store.close(&id("nobody"), None, &api(), now_ms()).await,
        Err(StoreError::OrderNotFound("nobody".into()))
    );
    let paid_order_close = {
        paid_order(&env, "paid_close", "5.00").await;
        env.store
            .close(&id("paid_close"), None, &api(), now_ms())
            .await
    };
    assert!(matches!(
        paid_order_close,
        Err(StoreError::IllegalTransition { .. })
    ));
}

#[tokio::test]
async fn refunds_reserve_settle_and_release() {
    let env = TestEnv::new().await;
    env.store
        .create_order(
            &new_order("order_3", "299.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let order = id("order_3");
    let early = env
        .store
        .reserve_refund(&order, &refund("r_0", "1.00"), NEVER_DUE, &api(), now_ms())
        .await;
    assert_eq!(
        early,
        Err(StoreError::NotRefundable {
            status: OrderStatus::Created
        })
    );
    env.store
        .mark_paid(&order, &payment("299.00", false), &notify(1), now_ms())
        .await
        .expect("paid");

    let first = env
        .store
        .reserve_refund(
            &order,
            &refund("r_1", "100.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await
        .expect("reserve");
    let Reserved::New(first) = first else {
        panic!("expected new, got {first:?}")
    };
    assert_eq!(first.status, RefundStatus::Pending);
    let retry = env
        .store
        .reserve_refund(
            &order,
            &refund("r_1", "100.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await;
    assert!(
        matches!(retry, Ok(Reserved::Existing(ref r)) if r.out_request_no == first.out_request_no),
        "{retry:?}"
    );
    let reused = env
        .store
        .reserve_refund(&order, &refund("r_1", "5.00"), NEVER_DUE, &api(), now_ms())
        .await;
    assert!(matches!(reused, Err(StoreError::Conflict(_))), "{reused:?}");
    let too_much = env
        .store
        .reserve_refund(
            &order,
            &refund("r_2", "199.01"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await;
    assert_eq!(
        too_much,
        Err(StoreError::ExceedsRefundable {
            requested: Amount::parse("199.01").expect("amount").into(),
            refundable: Amount::parse("199.00").expect("amount").into(),
        })
    );
    // Minor units of another currency never come out of this order's refundable (the
    // condition's own check, whatever the caller did).
    let mut dollars = refund("r_usd", "1.00");
    dollars.amount = Money::parse("1.00", Currency::USD).expect("money");
    let other_currency = env
        .store
        .reserve_refund(&order, &dollars, NEVER_DUE, &api(), now_ms())
        .await;
    assert_eq!(
        other_currency,
        Err(StoreError::CurrencyMismatch {
            payment: Currency::CNY,
            requested: Currency::USD,
        })
    );

    let settled = env
        .store
        .settle_refund(
            &first,
            &RefundOutcome::Succeeded,
            None,
            &notify(2),
            now_ms(),
        )
        .await;
    assert!(
        matches!(settled, Ok(Settlement::Settled(ref r)) if r.status == RefundStatus::Succeeded),
        "{settled:?}"
    );
    let repeat = env
        .store
        .settle_refund(
            &first,
            &RefundOutcome::Succeeded,
            None,
            &notify(2),
            now_ms(),
        )
        .await;
    assert!(matches!(repeat, Ok(Settlement::Already(_))), "{repeat:?}");
    let contradiction = env
        .store
        .settle_refund(
            &first,
            &RefundOutcome::Failed {
                code: "ACQ.SYSTEM_ERROR".into(),
                message: "x".into(),
            },
            None,
            &api(),
            now_ms(),
        )
        .await;
    assert!(
        matches!(contradiction, Err(StoreError::IllegalTransition { .. })),
        "{contradiction:?}"
    );

    let second = env
        .store
        .reserve_refund(
            &order,
            &refund("r_2", "199.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await
        .expect("reserve");
    let Reserved::New(second) = second else {
        panic!("expected new")
    };
    let after_reserve = env
        .store
        .get_order(&order)
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (after_reserve.refundable, after_reserve.refunded.minor()),
        (Money::zero(Currency::CNY), 10_000)
    );
    let failed = RefundOutcome::Failed {
        code: "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
        message: "卖家余额不足".into(),
    };
    let released = env
        .store
        .settle_refund(&second, &failed, None, &api(), now_ms())
        .await
        .expect("release");
    let released = released.into_refund();
    assert_eq!(
        released.failure_code.as_deref(),
        Some("ACQ.SELLER_BALANCE_NOT_ENOUGH")
    );
    let after_release = env
        .store
        .get_order(&order)
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (
            after_release.refundable.minor(),
            after_release.refunded.minor()
        ),
        (19_900, 10_000)
    );

    let third = env
        .store
        .reserve_refund(
            &order,
            &refund("r_3", "199.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await
        .expect("reserve");
    let Reserved::New(third) = third else {
        panic!("expected new")
    };
    env.store
        .settle_refund(&third, &RefundOutcome::Succeeded, None, &api(), now_ms())
        .await
        .expect("settle");
    let (order_now, refunds) = env
        .store
        .get_order_with_refunds(&order)
        .await
        .expect("query")
        .expect("order");
    assert!(order_now.fully_refunded());
    assert_eq!(order_now.refunded, order_now.paid_amount.expect("paid"));
    let statuses: Vec<_> = refunds
        .iter()
        .map(|r| (r.out_request_no.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("r_1", RefundStatus::Succeeded),
            ("r_2", RefundStatus::Failed),
            ("r_3", RefundStatus::Succeeded)
        ]
    );
    let none_left = env
        .store
        .reserve_refund(&order, &refund("r_4", "0.01"), NEVER_DUE, &api(), now_ms())
        .await;
    assert!(
        matches!(none_left, Err(StoreError::ExceedsRefundable { .. })),
        "{none_left:?}"
    );

    env.store
        .create_order(
            &new_order("finished", "3.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    env.store
        .mark_paid(
            &id("finished"),
            &payment("3.00", true),
            &notify(1),
            now_ms(),
        )
        .await
        .expect("finish");
    let not_refundable = env
        .store
        .reserve_refund(
            &id("finished"),
            &refund("r_1", "1.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await;
    assert_eq!(
        not_refundable,
        Err(StoreError::NotRefundable {
            status: OrderStatus::Finished
        })
    );
    let missing = env
        .store
        .reserve_refund(
            &id("nobody"),
            &refund("r_1", "1.00"),
            NEVER_DUE,
            &api(),
            now_ms(),
        )
        .await;
    assert_eq!(missing, Err(StoreError::OrderNotFound("nobody".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_paid_transitions_apply_exactly_once() {
    let env = Arc::new(TestEnv::new().await);
    created_order(&env, "race_paid", "88.88").await;
    let (applied, duplicates, retries) = fifty_payments(&env.store, "race_paid").await;
    assert_eq!((applied, duplicates, retries), (1, 49, 0));
    let trail = env
        .store
        .audit_trail(&id("race_paid"))
        .await
        .expect("audit");
    assert_eq!(trail.iter().filter(|e| e.kind == "order.paid").count(), 1);
    let order = env
        .store
        .get_order(&id("race_paid"))
        .await
        .expect("get")
        .expect("order");
    assert_eq!(order.version, 2, "one write after creation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refunds_never_exceed_the_paid_amount() {
    let env = Arc::new(TestEnv::new().await);
    paid_order(&env, "race_refund", "299.00").await;
    let (reserved, refused, retries) = fifty_refunds(&env.store, "race_refund").await;
    assert_eq!(
        (reserved, refused, retries),
        (29_000, 21, 0),
        "29 × 10.00 fit in 299.00; the 30th does not"
    );
    let (order, refunds) = env
        .store
        .get_order_with_refunds(&id("race_refund"))
        .await
        .expect("query")
        .expect("order");
    assert_eq!(order.refundable.minor(), 900);
    assert_eq!(refunds.len(), 29);
    assert_eq!(
        refunds.iter().map(|r| r.amount.minor()).sum::<u64>(),
        29_000
    );

    // Settle them all at once too: the refunded total lands exactly on what was reserved.
    let tasks: Vec<_> = refunds
        .into_iter()
        .map(|r| {
            let env = Arc::clone(&env);
            tokio::spawn(async move {
                env.store
                    .settle_refund(&r, &RefundOutcome::Succeeded, None, &api(), now_ms())
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.expect("task").expect("settle"),
            Settlement::Settled(_)
        ));
    }
    let order = env
        .store
        .get_order(&id("race_refund"))
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (order.refunded.minor(), order.refundable.minor()),
        (29_000, 900)
    );
    assert!(order.refunded.minor() <= order.paid_amount.expect("paid").minor());
}

#[tokio::test]
async fn audit_events_live_at_least_180_days_and_the_table_expires_them() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = TestEnv::new().await;
    let before_s = now_ms() / 1000;
    paid_order(&env, "audited", "1.00").await;
    let after_s = now_ms() / 1000;
    // The attribute DynamoDB expires items by, as template.yaml names it (what is deployed).
    let template = read_template(&template_path()).expect("template");
    let spec = &template["Resources"]["OrdersTable"]["Properties"]["TimeToLiveSpecification"];
    let ttl_attribute = (spec["Enabled"].as_bool() == Some(true))
        .then(|| spec["AttributeName"].as_str())
        .flatten()
        .expect("the table's TTL attribute in template.yaml")
        .to_owned();
    let ttl = env
        .dynamodb
        .describe_time_to_live()
        .table_name(&env.table)
        .send()
        .await
        .expect("ttl");
    let description = ttl.time_to_live_description().expect("description");
    assert_eq!(description.attribute_name(), Some(ttl_attribute.as_str()));
    // The stored items themselves, read raw: each audit event carries that attribute, a number
    // of Unix seconds (DynamoDB ignores anything else) at least 180 days from when it was written.
    let items = env
        .dynamodb
        .scan()
        .table_name(&env.table)
        .filter_expression("kind = :audit")
        .expression_attribute_values(":audit", AttributeValue::S("audit".into()))
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "created and paid: {items:?}");
    const DAY: i64 = 86_400;
    for item in &items {
        let expires_at: i64 = match item.get(&ttl_attribute) {
            Some(AttributeValue::N(n)) => n.parse().expect("an integer"),
            other => panic!("audit item without a numeric {ttl_attribute}: {other:?}"),
        };
        assert!(
            expires_at >= before_s + 180 * DAY && expires_at <= after_s + 182 * DAY,
            "{item:?} expires {} days from now",
            (expires_at - after_s) / DAY
        );
    }
}

#[tokio::test]
async fn the_table_is_built_from_the_template() {
    let env = TestEnv::new().await;
    let table = env
        .dynamodb
        .describe_table()
        .table_name(&env.table)
        .send()
        .await
        .expect("describe");
    let table = table.table().expect("table");
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("pk".to_owned(), "HASH".to_owned()),
            ("sk".to_owned(), "RANGE".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_missing_table_is_reported_as_unavailable_not_as_a_missing_order() {
    let env = TestEnv::new().await;
    let wrong = store::Store::new(env.dynamodb.clone(), "no-such-table");
    let result = wrong.get_order(&id("order_1")).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(ref m)) if m.contains("ResourceNotFound")),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_close_is_conditional_on_the_version_read() {
    let env = TestEnv::new().await;
    env.store
        .create_order(
            &new_order("late", "8.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    env.store
        .close(&id("late"), None, &api(), now_ms())
        .await
        .expect("close");
    let closed = env
        .store
        .get_order(&id("late"))
        .await
        .expect("read")
        .expect("order");
    let mut stale = closed.clone();
    stale.version -= 1;
    let refund = NewRefund {
        out_request_no: OutRequestNo::parse("pac_1").expect("no"),
        amount: Amount::parse("8.00").expect("amount").into(),
        reason: None,
        alipay_channel: domain::channel::ChannelId::Primary,
    };
    let refused = env
        .store
        .mark_paid_after_close(
            &stale,
            &payment("8.00", false),
            Some((&refund, NEVER_DUE)),
            &notify(1),
            now_ms(),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let applied = env
        .store
        .mark_paid_after_close(
            &closed,
            &payment("8.00", false),
            Some((&refund, NEVER_DUE)),
            &notify(1),
            now_ms(),
        )
        .await
        .expect("applied");
    let order = applied.into_inner();
    assert_eq!(
        (order.status, order.paid_after_close, order.refundable),
        (OrderStatus::Paid, true, Money::zero(Currency::CNY))
    );
    let reserved = env
        .store
        .get_refund(&id("late"), &refund.out_request_no)
        .await
        .expect("read")
        .expect("refund");
    assert_eq!(reserved.status, RefundStatus::Pending);
    // A retry of the same notification changes nothing more.
    let again = env
        .store
        .mark_paid_after_close(
            &closed,
            &payment("8.00", false),
            Some((&refund, NEVER_DUE)),
            &notify(1),
            now_ms(),
        )
        .await
        .expect("duplicate");
    assert!(!again.applied());
}

/// The order `mark_paid_from` returns is built from the order as read, without reading it back:
/// it must be exactly what is stored, also when another change landed between the read and the
/// write (the version condition refuses the stale read and the change is made on the current
/// order), and with every optional field the update sets.
#[tokio::test]
async fn marking_paid_from_a_stale_read_returns_exactly_what_is_stored() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = TestEnv::new().await;
    created_order(&env, "stale_read", "88.00").await;
    let stale = env
        .store
        .get_order(&id("stale_read"))
        .await
        .expect("read")
        .expect("order");
    // Another writer: a new version and a field the payment does not touch.
    env.dynamodb
        .update_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S("ORDER#stale_read".into()))
        .key("sk", AttributeValue::S("ORDER".into()))
        .update_expression("SET version = version + :one, sweeps = :sweeps")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":sweeps", AttributeValue::N("3".into()))
        .send()
        .await
        .expect("concurrent change");
    let mut flagged = payment("88.00", false);
    flagged.risk = Some(domain::states::PaidRisk {
        rules: vec!["buyer_max_customers".into()],
        customer: "c".repeat(16),
        buyer: None,
    });
    let Ok(Transition::Applied(returned)) = env
        .store
        .mark_paid_from(&stale, &flagged, &notify(1), now_ms())
        .await
    else {
        panic!("expected the payment applied on the current order");
    };
    let stored = env
        .store
        .get_order(&id("stale_read"))
        .await
        .expect("read")
        .expect("order");
    assert_eq!(returned, stored);
    assert_eq!((stored.version, stored.sweeps), (stale.version + 2, 3));
    assert_eq!(stored.risk_rules, vec!["buyer_max_customers".to_owned()]);
    assert_eq!(stored.due_at_ms, None);

    // Finished directly, with neither a payment time nor a buyer: the read's own are kept.
    env.store
        .create_order(
            &new_order("bare_finish", "1.00"),
            &later(),
            NEVER_DUE,
            &api(),
            now_ms(),
            &[],
        )
        .await
        .expect("create");
    let read = env
        .store
        .get_order(&id("bare_finish"))
        .await
        .expect("read")
        .expect("order");
    let mut bare = payment("1.00", true);
    bare.paid_at = None;
    bare.buyer_id_masked = None;
    let Ok(Transition::Applied(returned)) = env
        .store
        .mark_paid_from(&read, &bare, &notify(2), now_ms())
        .await
    else {
        panic!("expected finished");
    };
    let stored = env.store.get_order(&id("bare_finish")).await.expect("read");
    assert_eq!(Some(returned), stored);
}

/// A FAILED is written only under the send that was judged: once the refund was sent again, the
/// refusal of an earlier send releases nothing (the later send may execute).
#[tokio::test]
async fn a_refusal_of_an_earlier_send_never_fails_a_refund_sent_again() {
    let env = TestEnv::new().await;
    paid_order(&env, "judged", "100.00").await;
    let order = id("judged");
    let Reserved::New(reserved) = env
        .store
        .reserve_refund(&order, &refund("j_1", "60.00"), NEVER_DUE, &api(), now_ms())
        .await
        .expect("reserve")
    else {
        panic!("expected a new refund")
    };
    let claim = |refund: domain::states::Refund| {
        let store = env.store.clone();
        async move {
            match store
                .begin_refund_send(&refund, 0, NEVER_DUE, now_ms())
                .await
                .expect("claim")
            {
                SendClaim::Granted { refund, .. } => refund,
                other => panic!("expected the send, got {other:?}"),
            }
        }
    };
    // The first driver sends (1); a second one sends the identical request again (2).
    let first = claim(reserved).await;
    let second = claim(first.clone()).await;
    assert_eq!((first.sends, second.sends), (1, 2));
    let refused = RefundOutcome::Failed {
        code: "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
        message: "卖家余额不足".into(),
    };
    // The first send's signed refusal arrives last: not applied, nothing released.
    let late = env
        .store
        .settle_refund(&first, &refused, None, &api(), now_ms())
        .await
        .expect("settle");
    assert!(
        matches!(late, Settlement::Superseded(ref r) if r.status == RefundStatus::Pending && r.sends == 2),
        "{late:?}"
    );
    let after = env
        .store
        .get_order(&order)
        .await
        .expect("get")
        .expect("order");
    assert_eq!(after.refundable.minor(), 4_000, "the reservation is kept");
    // The second send's own refusal is the judged one.
    let judged = env
        .store
        .settle_refund(&second, &refused, None, &api(), now_ms())
        .await
        .expect("settle");
    assert!(matches!(judged, Settlement::Settled(ref r) if r.status == RefundStatus::Failed));
    let kinds: Vec<String> = env
        .store
        .audit_trail(&order)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "refund.failed").count(),
        1,
        "{kinds:?}"
    );
}

/// A signed success for a refund recorded FAILED corrects it: SUCCEEDED, the amount taken back
/// from what is refundable, audited. When that amount was refunded again meanwhile, it stays
/// FAILED and the discrepancy is audited.
#[tokio::test]
async fn a_success_proven_after_failed_is_a_correction_or_a_discrepancy() {
    let env = TestEnv::new().await;
    paid_order(&env, "corrected", "100.00").await;
    let order = id("corrected");
    let refused = RefundOutcome::Failed {
        code: "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
        message: "卖家余额不足".into(),
    };
    let failed_refund = |no: &'static str, amount: &'static str| {
        let store = env.store.clone();
        let order = order.clone();
        let refused = refused.clone();
        async move {
            let Reserved::New(reserved) = store
                .reserve_refund(&order, &refund(no, amount), NEVER_DUE, &api(), now_ms())
                .await
                .expect("reserve")
            else {
                panic!("expected a new refund")
            };
            store
                .settle_refund(&reserved, &refused, None, &api(), now_ms())
                .await
                .expect("fail")
                .into_refund()
        }
    };
    let failed = failed_refund("c_1", "60.00").await;
    assert_eq!(failed.status, RefundStatus::Failed);
    let corrected = env
        .store
        .settle_refund(
            &failed,
            &RefundOutcome::Succeeded,
            Some("2026-11-26 23:59:59.250"),
            &notify(9),
            now_ms(),
        )
        .await
        .expect("correct");
    assert!(
        matches!(corrected, Settlement::Corrected(ref r) if r.status == RefundStatus::Succeeded),
        "{corrected:?}"
    );
    let now = env
        .store
        .get_order(&order)
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (now.refunded.minor(), now.refundable.minor()),
        (6_000, 4_000)
    );
    let stored = env
        .store
        .get_refund(&order, &OutRequestNo::parse("c_1").expect("no"))
        .await
        .expect("get")
        .expect("refund");
    assert_eq!(
        (stored.status, stored.failure_code),
        (RefundStatus::Succeeded, None)
    );
    // A repeat of the proof changes nothing.
    let again = env
        .store
        .settle_refund(
            &failed,
            &RefundOutcome::Succeeded,
            None,
            &notify(9),
            now_ms(),
        )
        .await
        .expect("repeat");
    assert!(matches!(again, Settlement::Already(_)), "{again:?}");

    // 40.00 left; 30.00 fails, then 30.00 more is refunded: the proof of the first comes too late.
    let failed = failed_refund("c_2", "30.00").await;
    env.store
        .reserve_refund(&order, &refund("c_3", "30.00"), NEVER_DUE, &api(), now_ms())
        .await
        .expect("reserve");
    let discrepancy = env
        .store
        .settle_refund(
            &failed,
            &RefundOutcome::Succeeded,
            None,
            &notify(10),
            now_ms(),
        )
        .await
        .expect("discrepancy");
    assert!(
        matches!(discrepancy, Settlement::Discrepancy(ref r) if r.status == RefundStatus::Failed),
        "{discrepancy:?}"
    );
    let now = env
        .store
        .get_order(&order)
        .await
        .expect("get")
        .expect("order");
    assert_eq!(
        (now.refunded.minor(), now.refundable.minor()),
        (6_000, 1_000)
    );
    let kinds: Vec<String> = env
        .store
        .audit_trail(&order)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in ["refund.corrected", "refund.discrepancy"] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }
}
