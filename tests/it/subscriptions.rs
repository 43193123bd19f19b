//! A year of monthly subscriptions on the test clock, against the Alipay simulator's own
//! agreement rules (docs/alipay/operations.md §4): signing through the signed page and the
//! `dut_user_sign` notice, then twelve periods each charged inside Alipay's window, with soft
//! refusals, a risk refusal, a `10003`, an `ACQ.SYSTEM_ERROR`, a charge that executed but timed
//! out, a period that stays unpaid, a hard agreement refusal, a buyer who unsigns in the
//! Alipay app without a notice, and a merchant who pauses for two periods and resumes. Every period is checked against the simulator's ledger.
//!
//! It moves the process clock (`gateway::clock::set_test_offset_ms`) and so runs in its own
//! test binary, its tests one at a time (`CLOCK`).

use std::collections::BTreeMap;

use alipay::Amount;
use alipay::agreement::{PeriodType, SignChannel};
use alipay::china_time::ChinaDate;
use alipay::ids::{ExternalAgreementNo, OutTradeNo, Subject};
use alipay_sim::{Fault, FaultKind, china_unix};
use domain::subscriptions::{Plan, SubscriptionStatus};
use gateway::deadline::Deadline;
use gateway::subscriptions::{NewSubscription, create, get, pause_or_resume, run_due};
use gateway_tests::chaos::proxy::FaultProxy;
use gateway_tests::round_trips::Meter;
use gateway_tests::support::{Stack, StackOptions, eventually};

/// Held by each test: the clock is the process's.
static CLOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everyone's clock (the gateway's, the simulator's) reads `china_time` now.
fn set_clock(stack: &Stack, china_time: &str) {
    let at = china_unix(china_time).expect("china time") * 1000;
    let machine = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    gateway::clock::set_test_offset_ms(at - machine);
    stack.simulator.set_world_offset_ms(at - machine);
}

async fn scheduler_run(stack: &Stack) -> gateway::subscriptions::ChargeRun {
    let deadline = Deadline::after(std::time::Duration::from_secs(60));
    run_due(&stack.gateway.functions.sweeper, &deadline)
        .await
        .expect("scheduler run")
}

fn monthly(first: &str, today: &str) -> Plan {
    Plan::new(
        Plan {
            period_type: PeriodType::Month,
            period: 1,
            amount: Amount::parse("25.00").expect("amount"),
            first_date: ChinaDate::parse(first).expect("date"),
            single_amount: Amount::parse("30.00").expect("amount"),
            total_amount: None,
            total_payments: Some(12),
        },
        ChinaDate::parse(today).expect("date"),
    )
    .expect("plan")
}

/// Creates a subscription, opens its signing page as the buyer's browser does (the simulator
/// checks our signature), and signs it; the notice reaches the notify function.
async fn signed(stack: &Stack, id: &str, buyer: &str) -> ExternalAgreementNo {
    let id = ExternalAgreementNo::parse(id).expect("id");
    let new = NewSubscription {
        id: id.clone(),
        customer_ref: Some(format!("customer_{id}")),
        subject: Subject::parse("Streaming Pro monthly").expect("subject"),
        plan: monthly("2027-01-10", "2027-01-01"),
        sign_channel: SignChannel::Qrcode,
        return_url: None,
        pay_and_sign: None,
    };
    let gateway = &stack.gateway.functions.sweeper;
    let cause = domain::states::Cause::Api {
        route: "POST /subscriptions".into(),
    };
    let (subscription, signing, created) = create(gateway, &new, &cause).await.expect("create");
    assert!(created);
    assert_eq!(subscription.status, SubscriptionStatus::Incomplete);
    // A retry of the same request finds it; the same id for another plan is a conflict.
    let (_, _, again) = create(gateway, &new, &cause).await.expect("repeat");
    assert!(!again);
    let other = NewSubscription {
        plan: monthly("2027-01-11", "2027-01-01"),
        ..new.clone()
    };
    assert!(create(gateway, &other, &cause).await.is_err());

    let page = stack.http.get(signing.url.as_deref().unwrap_or("")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("30.00"), "{}", page.text);
    stack
        .simulator
        .sign_agreement(id.as_str(), buyer, false)
        .expect("signed");
    let active = eventually(20, || async {
        get(gateway, &id)
            .await
            .ok()
            .filter(|s| s.status == SubscriptionStatus::Active)
    })
    .await
    .expect("the sign notice makes it active");
    assert!(active.agreement_no.is_some());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_monthly_charges_ends_every_period_as_the_ledger_says() {
    let _clock = CLOCK.lock().await;
    let started = std::time::Instant::now();
    // Every DynamoDB and KMS request through a counting proxy: the first charge run is measured
    // against docs/performance.md.
    let moto =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (run under with-moto.sh)");
    let mut proxy = FaultProxy::start(&moto, 1).await.expect("counting proxy");
    let mut stack = Stack::start_custom(StackOptions {
        aws_endpoint: Some(proxy.url.clone()),
        alipay_timeout_ms: 3_000,
        // The breaker's shared state is read at most once a minute (of the test clock); the
        // risk rule set once in ten minutes (of the machine's), read before the measured run.
        env: vec![
            ("BREAKER_SYNC_MS".into(), "60000".into()),
            ("RISK_RULES_CACHE_MS".into(), "600000".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    let sweeper = &stack.gateway.functions.sweeper;
    sweeper
        .risk
        .in_force(&sweeper.store, std::time::Duration::from_secs(5))
        .await;
    set_clock(&stack, "2027-01-01 10:00:00");
    let a = signed(&stack, "subyearA", "2088102177846881").await;
    let b = signed(&stack, "subyearB", "2088102177846882").await;
    let c = signed(&stack, "subyearC", "2088102177846883").await;
    let d = signed(&stack, "subyearD", "2088102177846884").await;

    // What the buyers' accounts answer, period by period (A's), or what happens to B and C.
    let plan = monthly("2027-01-10", "2027-01-01");
    for n in 0..13u32 {
        let Some(date) = plan.date_of(n) else { break };
        match n {
            // One balance refusal, then the retry next morning pays.
            1 => stack
                .simulator
                .script_charges(a.as_str(), &["ACQ.BUYER_BALANCE_NOT_ENOUGH"])
                .expect("script"),
            // Three refusals: every try of the window; the period stays unpaid.
            3 => stack
                .simulator
                .script_charges(
                    a.as_str(),
                    &[
                        "ACQ.BUYER_BALANCE_NOT_ENOUGH",
                        "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
                        "ACQ.BUYER_BALANCE_NOT_ENOUGH",
                    ],
                )
                .expect("script"),
            // Processing: 10003, settled by a query.
            5 => stack
                .simulator
                .script_charges(a.as_str(), &["10003"])
                .expect("script"),
            // A risk refusal once, then paid.
            7 => stack
                .simulator
                .script_charges(a.as_str(), &["ACQ.PAYMENT_REQUEST_HAS_RISK"])
                .expect("script"),
            _ => {}
        }
        if n == 2 {
            // B's agreement is refused for good.
            stack
                .simulator
                .script_charges(b.as_str(), &["ACQ.AGREEMENT_STATUS_NOT_NORMAL"])
                .expect("script");
        }
        let merchant = domain::states::Cause::Api {
            route: "POST /subscriptions/{id}/pause".into(),
        };
        if n == 2 {
            // D is paused before the third period and resumed after the fourth's window closed:
            // two periods skipped, Alipay's next date moved forward before the fifth.
            set_clock(&stack, &format!("{} 08:00:00", date.add_days(-3)));
            let paused = pause_or_resume(&stack.gateway.functions.sweeper, &d, false, &merchant)
                .await
                .expect("paused");
            assert_eq!(paused.status, SubscriptionStatus::Paused);
        }
        if n == 4 {
            set_clock(&stack, &format!("{} 08:00:00", date.add_days(-3)));
            let resumed = pause_or_resume(&stack.gateway.functions.sweeper, &d, true, &merchant)
                .await
                .expect("resumed");
            assert_eq!(resumed.status, SubscriptionStatus::Active);
            assert_eq!(resumed.period.n, 4);
        }
        if n == 4 {
            // C unsigns in the Alipay app; no notice ever comes.
            stack
                .simulator
                .stop_agreement(c.as_str(), false)
                .expect("unsign");
        }
        for offset in -2..=1i64 {
            let day = date.add_days(offset);
            if n == 6 && offset == -2 {
                // The first try of the period is answered ACQ.SYSTEM_ERROR (not executed).
                stack.simulator.inject(Fault {
                    target: "alipay.trade.pay".into(),
                    kind: FaultKind::SystemError,
                    times: 1,
                });
            }
            if n == 9 && offset == -2 {
                // The first try executes at Alipay, but its answer never comes.
                stack.simulator.inject(Fault {
                    target: "alipay.trade.pay".into(),
                    kind: FaultKind::TimeoutAfterExecute,
                    times: 1,
                });
            }
            set_clock(&stack, &format!("{day} 09:00:30"));
            if n == 0 && offset == -2 {
                // The first run: each of the four subscriptions charged at its first try,
                // counted against docs/performance.md (no notification racing the count).
                stack.simulator.set_charge_notifications(0);
                let mut meter = Meter {
                    stack,
                    proxy,
                    alipay_seen: 0,
                };
                meter.reset();
                let run = scheduler_run(&meter.stack).await;
                assert_eq!(run.periods_paid, 4, "{run:?}");
                let per = "subscription period charged at its first try";
                meter.check(&["subscription charge run", per, per, per, per]);
                Meter { stack, proxy, .. } = meter;
                stack.simulator.set_charge_notifications(2);
            } else {
                scheduler_run(&stack).await;
            }
            // A charge in doubt is asked about a minute later.
            set_clock(&stack, &format!("{day} 09:02:30"));
            scheduler_run(&stack).await;
        }
    }

    // The ledger: Alipay's charges per agreement and period.
    let charges = stack.simulator.charges();
    let agreement_of = |id: &ExternalAgreementNo| {
        stack
            .simulator
            .agreement(id.as_str())
            .and_then(|a| a.agreement_no)
            .expect("agreement")
    };
    let mut by_period: BTreeMap<(String, String), u32> = BTreeMap::new();
    for charge in &charges {
        *by_period
            .entry((charge.agreement_no.clone(), charge.period_date.clone()))
            .or_default() += 1;
        // Inside the window (3 days before the date through it), never above the cap, never
        // under a stopped agreement.
        let date = ChinaDate::parse(&charge.period_date).expect("date");
        let on = ChinaDate::parse(&charge.charged_on).expect("date");
        assert!(
            on >= date.add_days(-3) && on <= date,
            "charged on {on} for {date}"
        );
        assert!(charge.fen <= 3000);
        assert_eq!(charge.agreement_status, "NORMAL");
    }
    assert!(
        by_period.values().all(|&count| count == 1),
        "one charge per period at most: {by_period:?}"
    );
    let dates_charged = |id: &ExternalAgreementNo| -> Vec<String> {
        let number = agreement_of(id);
        charges
            .iter()
            .filter(|c| c.agreement_no == number)
            .map(|c| c.period_date.clone())
            .collect()
    };
    let all_dates: Vec<String> = (0..12)
        .map(|n| plan.date_of(n).expect("date").to_string())
        .collect();
    // A: every period paid but the fourth (index 3), which stayed unpaid.
    let expected_a: Vec<String> = all_dates
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 3)
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(dates_charged(&a), expected_a);
    // B: two periods, then the agreement refusal: canceled, nothing after.
    assert_eq!(dates_charged(&b), all_dates[..2].to_vec());
    // C: four periods, then the unsign the agreement query found.
    assert_eq!(dates_charged(&c), all_dates[..4].to_vec());
    // D: the third and fourth periods skipped while paused; the plan moved; the rest charged.
    let expected_d: Vec<String> = all_dates
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 2 && *n != 3)
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(dates_charged(&d), expected_d);
    assert!(
        stack
            .simulator
            .agreement(d.as_str())
            .is_some_and(|a| a.modifications == 1),
        "Alipay's next date moved once, after the pause"
    );

    // Our books agree: each period's order, as GET /payments shows it.
    let gateway = &stack.gateway.functions.sweeper;
    for (n, date) in all_dates.iter().enumerate() {
        let out_trade_no = OutTradeNo::parse(format!("{a}_{n:04}")).expect("id");
        let order = gateway
            .store
            .get_order(&out_trade_no)
            .await
            .expect("read")
            .expect("the period's order");
        let expected = if n == 3 { "CLOSED" } else { "PAID" };
        assert_eq!(order.status.as_str(), expected, "period {n} ({date})");
        if n != 3 {
            let trade = stack.simulator.trade(out_trade_no.as_str()).expect("trade");
            assert_eq!(order.trade_no.as_deref(), Some(trade.trade_no.as_str()));
        }
    }
    let a_now = get(gateway, &a).await.expect("A");
    assert_eq!(a_now.status, SubscriptionStatus::Canceled, "{a_now:?}");
    assert_eq!(a_now.charges, 11);
    assert_eq!(a_now.charged, Amount::parse("275.00").expect("amount"));
    let b_now = get(gateway, &b).await.expect("B");
    assert_eq!(b_now.status, SubscriptionStatus::Canceled);
    assert_eq!(
        b_now.last_period_end.as_deref(),
        Some("ACQ.AGREEMENT_STATUS_NOT_NORMAL")
    );
    let c_now = get(gateway, &c).await.expect("C");
    assert_eq!(c_now.status, SubscriptionStatus::Canceled);
    assert_eq!(c_now.last_period_end.as_deref(), Some("AGREEMENT_STOPPED"));
    pay_and_sign(&stack).await;
    gateway::clock::set_test_offset_ms(0);
    println!(
        "a year of monthly charges for 4 subscriptions: {} charges, {:.1} s",
        charges.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Pay-and-sign: the buyer pays the first period at the cashier and signs in the same step
/// (`agreement_sign_params`); the sign notice and the payment's notification arrive, the
/// scheduler asks Alipay about the first period and records it paid, and the second period is
/// charged under the agreement on its date (the agreement's first `execute_time`).
async fn pay_and_sign(stack: &Stack) {
    set_clock(stack, "2028-03-03 10:00:00");
    let gateway = &stack.gateway.functions.sweeper;
    let id = ExternalAgreementNo::parse("subpayE").expect("id");
    let plan = Plan::new(
        Plan {
            first_date: ChinaDate::parse("2028-03-03").expect("date"),
            ..monthly("2028-03-03", "2028-03-03")
        },
        ChinaDate::parse("2028-03-03").expect("date"),
    )
    .expect("plan");
    let new = NewSubscription {
        id: id.clone(),
        customer_ref: None,
        subject: Subject::parse("Streaming Pro monthly").expect("subject"),
        plan,
        sign_channel: SignChannel::Qrcode,
        return_url: Some("https://shop.example.com/subscribed".into()),
        pay_and_sign: Some(domain::states::Cashier::Page),
    };
    let cause = domain::states::Cause::Api {
        route: "POST /subscriptions".into(),
    };
    let (_, signing, _) = create(gateway, &new, &cause).await.expect("create");
    assert_eq!(signing.kind, "redirect");
    let url = signing.url.expect("the cashier's URL");
    assert!(url.contains("agreement_sign_params"), "{url}");
    let cashier = stack.http.get(&url).await;
    assert_eq!(cashier.status, 200, "{}", cashier.text);
    stack.simulator.pay("subpayE_0000", false).expect("paid");
    let first = OutTradeNo::parse("subpayE_0000").expect("id");
    eventually(20, || async {
        let subscription = get(gateway, &id).await.ok()?;
        let order = gateway.store.get_order(&first).await.ok()??;
        (subscription.status == SubscriptionStatus::Active && order.status.is_paid()).then_some(())
    })
    .await
    .expect("the sign notice and the payment's notification are applied");
    // A minute later the scheduler asks about the first period and records it.
    set_clock(stack, "2028-03-03 10:02:00");
    scheduler_run(stack).await;
    let after_first = get(gateway, &id).await.expect("E");
    assert_eq!(after_first.charges, 1, "{after_first:?}");
    assert_eq!(after_first.period.n, 1);
    assert!(!after_first.period.alipay_date_behind);
    // The second period, under the agreement, inside its window.
    set_clock(stack, "2028-04-01 09:00:30");
    scheduler_run(stack).await;
    let after_second = get(gateway, &id).await.expect("E");
    assert_eq!(after_second.charges, 2, "{after_second:?}");
    let agreement = stack.simulator.agreement("subpayE").expect("agreement");
    let charges: Vec<_> = stack
        .simulator
        .charges()
        .into_iter()
        .filter(|c| Some(&c.agreement_no) == agreement.agreement_no.as_ref())
        .collect();
    assert_eq!(
        charges.len(),
        1,
        "one charge under the agreement: {charges:?}"
    );
    assert_eq!(charges[0].period_date, "2028-04-03");
    assert_eq!(charges[0].out_trade_no, "subpayE_0001");
    // The agreement counts the periods the cashier did not take.
    assert_eq!(agreement.total_payments, Some(11));
}

/// A period whose charge the risk decision steps up is never charged under the agreement: its
/// order is signed into a cashier URL with Alipay's identity check (the subscription shows it,
/// `subscription.action_required`), the simulated Alipay lets only a payer of `min_age` pay it,
/// and the period ends paid once the payment is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepped_up_period_is_paid_at_the_cashier_never_under_the_agreement() {
    let _clock = CLOCK.lock().await;
    let stack = Stack::start_custom(StackOptions {
        alipay_timeout_ms: 3_000,
        risk_rules: Some(
            r#"{"rules": [{"id": "charges_step_up", "action": "step_up",
                "when": {"cashiers": ["agreement"], "amount_at_least": "20.00"}}],
                "step_up": {"min_age": 21}}"#
                .into(),
        ),
        ..StackOptions::default()
    })
    .await;
    set_clock(&stack, "2027-01-01 10:00:00");
    let buyer = "2088102177846891";
    let id = signed(&stack, "substepA", buyer).await;
    let gateway = &stack.gateway.functions.sweeper;

    set_clock(&stack, "2027-01-08 09:00:30");
    let run = scheduler_run(&stack).await;
    assert_eq!(run.periods_paid, 0, "{run:?}");
    let waiting = get(gateway, &id).await.expect("subscription");
    assert!(waiting.period.at_cashier, "the period went to the cashier");
    let out_trade_no = waiting.period_trade_no().expect("the period's order");
    assert!(
        stack
            .simulator
            .calls()
            .iter()
            .all(|(method, _)| method != "alipay.trade.pay"),
        "never charged under the agreement: {:?}",
        stack.simulator.calls()
    );
    let order = gateway
        .store
        .get_order(&out_trade_no)
        .await
        .expect("read")
        .expect("order");
    let decision = order.decision.expect("decided");
    assert_eq!(
        (decision.outcome, decision.rule.as_deref(), decision.min_age),
        (
            domain::decisions::Action::StepUp,
            Some("charges_step_up"),
            Some(21)
        )
    );
    // A later run within the window sends nothing.
    set_clock(&stack, "2027-01-08 09:20:00");
    scheduler_run(&stack).await;
    assert!(
        get(gateway, &id)
            .await
            .expect("subscription")
            .period
            .at_cashier
    );
    assert!(
        stack
            .simulator
            .calls()
            .iter()
            .all(|(method, _)| method != "alipay.trade.pay")
    );

    // The merchant asks for the URL (signed now) and its customer opens it; Alipay stops a
    // payer under 21, the holder (21) pays.
    let url = gateway::subscriptions::cashier_url(gateway, &id)
        .await
        .expect("the cashier URL");
    assert!(
        url.contains("alipay.trade.page.pay") && url.contains("ext_user_info"),
        "{url}"
    );
    let page = stack.http.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("收银台"),
        "the cashier opens: {}",
        page.text
    );
    let young = alipay_sim::Payer {
        age: Some(20),
        buyer_id: Some(buyer.into()),
        ..alipay_sim::Payer::default()
    };
    assert!(
        stack
            .simulator
            .pay_with(out_trade_no.as_str(), &young)
            .is_err()
    );
    let holder = alipay_sim::Payer {
        age: Some(21),
        buyer_id: Some(buyer.into()),
        ..alipay_sim::Payer::default()
    };
    stack
        .simulator
        .pay_with(out_trade_no.as_str(), &holder)
        .expect("the holder pays");
    eventually(20, || async {
        gateway
            .store
            .get_order(&out_trade_no)
            .await
            .ok()
            .flatten()
            .filter(|o| o.status.is_paid())
    })
    .await
    .expect("the payment is recorded");

    // The next look ends the period paid; the next period starts under the agreement again.
    set_clock(&stack, "2027-01-08 09:40:00");
    let run = scheduler_run(&stack).await;
    assert_eq!(run.periods_paid, 1, "{run:?}");
    let paid = get(gateway, &id).await.expect("subscription");
    assert_eq!((paid.charges, paid.period.n), (1, 1));
    assert!(!paid.period.at_cashier);
    assert!(
        gateway::subscriptions::cashier_url(gateway, &id)
            .await
            .is_err(),
        "the next period is charged under the agreement: no cashier"
    );
    assert!(
        stack.simulator.charges().is_empty(),
        "no agreement charge at all"
    );
}
