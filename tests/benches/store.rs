//! Latency of each store operation and of a KMS signature against the local stand-in, with the
//! AWS round trips each makes. Run with `make bench` (which starts the stand-in).
//! The figures measure this code plus moto on loopback, not real DynamoDB or KMS.

use std::time::{Duration, Instant};

use alipay::Amount;
use alipay::ids::{OutRequestNo, OutTradeNo, Subject};
use alipay::signer::sign_base64;
use domain::states::{Cashier, Cause, NewOrder, NewRefund, Payment, RefundOutcome};
use gateway_tests::support::{TestEnv, now_ms};
use store::Reserved;

const ROUNDS: usize = 200;

struct Samples(&'static str, &'static str, Vec<Duration>);

impl Samples {
    fn print(mut self) {
        self.2.sort();
        let at = |q: f64| self.2[((self.2.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "{:<28} {:>16} {:>8.2} {:>8.2} {:>8.2}",
            self.0,
            self.1,
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }
}

/// The `RiskRules` default of template.yaml.
fn default_rules() -> String {
    let template = local_stack::template::read_template(&local_stack::template::template_path())
        .expect("template");
    template["Parameters"]["RiskRules"]["Default"]
        .as_str()
        .expect("RiskRules default")
        .to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = TestEnv::new().await;
    let api = Cause::Api {
        route: "bench".into(),
    };
    let (mut create, mut paid, mut reserve, mut settle, mut read, mut sign) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let signer = env.kms_signer();
    let mut create_checked = Vec::new();
    let mut create_decided = Vec::new();
    let rules = domain::risk::Rules::parse(&default_rules()).expect("rules");
    signer.public_key().await.expect("public key");
    for round in 0..ROUNDS {
        let out_trade_no = OutTradeNo::parse(format!("bench_{round}")).expect("id");
        let order = NewOrder {
            out_trade_no: out_trade_no.clone(),
            amount: Amount::parse("299.00").expect("amount").into(),
            subject: Subject::parse("bench").expect("subject"),
            channel: Cashier::Qr,
            return_url: None,
            time_expire: None,
            customer_ref: None,
            virtual_goods: true,
            alipay_channel: domain::channel::ChannelId::Primary,
        };
        let expiry = alipay::china_time::ChinaDateTime::parse(
            &alipay::china_time::china_timestamp(now_ms() / 1000 + 3_600),
        )
        .expect("time");
        let t = Instant::now();
        env.store
            .create_order(&order, &expiry, i64::MAX / 2, &api, now_ms(), &[])
            .await
            .expect("create");
        create.push(t.elapsed());

        // The same create with the default fraud rules (template.yaml's RiskRules): the
        // customer's and the buyer IP's counters, two UpdateItems at once, then the creation
        // transaction.
        let checked = NewOrder {
            out_trade_no: OutTradeNo::parse(format!("bench_risk_{round}")).expect("id"),
            customer_ref: Some(format!("cust_{round}")),
            ..order.clone()
        };
        let screening = domain::risk::Screening {
            customer_ref: checked.customer_ref.as_deref(),
            ip: format!("198.51.100.{}", round % 250).parse().ok(),
            amount: domain::risk::cny_part(checked.amount),
            virtual_goods: false,
        };
        let t = Instant::now();
        domain::risk::screen(&rules, &screening).expect("within the rules");
        let counters = domain::risk::counters(&rules, &screening, now_ms());
        env.store
            .create_order(&checked, &expiry, i64::MAX / 2, &api, now_ms(), &counters)
            .await
            .expect("create with fraud checks");
        create_checked.push(t.elapsed());

        // The same create as the create-payment function makes it with the template's full
        // rule set: the limits, then the counters and the risk reads (list entries, signals:
        // one BatchGetItem) at once, the decision, and the creation transaction with the
        // decision's journal lines.
        let decided = NewOrder {
            out_trade_no: OutTradeNo::parse(format!("bench_decided_{round}")).expect("id"),
            customer_ref: Some(format!("cust_d_{round}")),
            ..order.clone()
        };
        let ip: Option<std::net::IpAddr> = format!("198.51.101.{}", round % 250).parse().ok();
        let screening = domain::risk::Screening {
            customer_ref: decided.customer_ref.as_deref(),
            ip,
            amount: domain::risk::cny_part(decided.amount),
            virtual_goods: false,
        };
        let t = Instant::now();
        domain::risk::screen(&rules, &screening).expect("within the rules");
        let counters = domain::risk::counters(&rules, &screening, now_ms());
        let subjects = store::Subjects {
            customer: decided.customer_ref.as_deref(),
            ip,
            device: None,
            buyer: None,
        };
        let (counted, reads) = tokio::join!(
            env.store.count_payment(&counters, screening.amount),
            env.store.risk_reads(&subjects, false, now_ms()),
        );
        counted.expect("counted");
        let inputs = domain::decisions::Inputs {
            amount: decided.amount,
            cny: screening.amount,
            virtual_goods: false,
            cashier: Cashier::Qr,
            customer: decided.customer_ref.as_deref(),
            buyer_ip: ip,
            device: None,
            buyer: None,
            can_step_up: false,
        };
        let decision =
            domain::decisions::decide(&rules.policy, 0, &inputs, reads.ok().as_ref(), None);
        env.store
            .create_counted_order(
                &decided,
                &expiry,
                i64::MAX / 2,
                &api,
                now_ms(),
                &counters,
                Some(&decision),
            )
            .await
            .expect("create with a decision");
        create_decided.push(t.elapsed());

        let payment = Payment {
            trade_no: format!("2026{round}"),
            amount: order.amount,
            paid_at: None,
            buyer_id_masked: None,
            finished: false,
            risk: None,
            alipay_channel: domain::channel::ChannelId::Primary,
            settlement: None,
        };
        let t = Instant::now();
        env.store
            .mark_paid(&out_trade_no, &payment, &api, now_ms())
            .await
            .expect("paid");
        paid.push(t.elapsed());

        let refund = NewRefund {
            out_request_no: OutRequestNo::parse("r_1").expect("id"),
            amount: Amount::parse("1.00").expect("amount").into(),
            reason: None,
            alipay_channel: domain::channel::ChannelId::Primary,
        };
        let t = Instant::now();
        // An SDK retry after a lost answer finds the refund already reserved: same refund.
        let (Reserved::New(refund) | Reserved::Existing(refund)) = env
            .store
            .reserve_refund(&out_trade_no, &refund, i64::MAX / 2, &api, now_ms())
            .await
            .expect("reserve");
        reserve.push(t.elapsed());

        let t = Instant::now();
        env.store
            .settle_refund(&refund, &RefundOutcome::Succeeded, None, &api, now_ms())
            .await
            .expect("settle");
        settle.push(t.elapsed());

        let t = Instant::now();
        env.store
            .get_order_with_refunds(&out_trade_no)
            .await
            .expect("read");
        read.push(t.elapsed());

        let t = Instant::now();
        sign_base64(
            &signer,
            "app_id=2021000123456789&biz_content={}&method=alipay.trade.refund",
        )
        .await
        .expect("sign");
        sign.push(t.elapsed());
    }
    println!(
        "{ROUNDS} rounds against the local stand-in (moto, serialized) on loopback; milliseconds"
    );
    println!(
        "{:<28} {:>16} {:>8} {:>8} {:>8}",
        "operation", "AWS calls", "p50", "p90", "p99"
    );
    Samples("create order", "1 TransactWrite", create).print();
    Samples(
        "create, fraud checks",
        "2 Update+1 Transact",
        create_checked,
    )
    .print();
    Samples(
        "create order, decided",
        "2 Upd+1 BatchGet+1 Tx",
        create_decided,
    )
    .print();
    Samples("mark paid", "1 Get+1 Transact", paid).print();
    Samples("reserve refund", "1 TransactWrite", reserve).print();
    Samples("settle refund", "1 TransactWrite", settle).print();
    Samples("order with refunds", "1 Query", read).print();
    Samples("KMS sign (RAW)", "1 kms:Sign", sign).print();
}
