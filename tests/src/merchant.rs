//! What a merchant's backend does against the stack, for the end-to-end tests: create, read,
//! pay (at the simulator), refund, and read the audit trail.

use alipay::ids::OutTradeNo;
use serde_json::{Value, json};

use crate::support::{Answer, RETURN_PREFIX, Stack, eventually};

pub fn payment_body(out_trade_no: &str, amount: &str, channel: &str) -> Value {
    let mut body = json!({"out_trade_no": out_trade_no, "amount": amount, "subject": "会员 Pro 年费 100% + more", "channel": channel});
    if channel == "page" || channel == "wap" {
        body["return_url"] = json!(format!("{RETURN_PREFIX}orders/{out_trade_no}"));
    }
    body
}

pub async fn create(stack: &Stack, out_trade_no: &str, amount: &str, channel: &str) -> Answer {
    stack
        .http
        .post_json(
            &stack.api("/payments"),
            &payment_body(out_trade_no, amount, channel),
        )
        .await
}

pub async fn payment(stack: &Stack, out_trade_no: &str) -> Value {
    let answer = stack
        .http
        .get(&stack.api(&format!("/payments/{out_trade_no}")))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

/// Waits until the payment shows `status`.
pub async fn wait_for_status(stack: &Stack, out_trade_no: &str, status: &str) -> Value {
    let found = eventually(60, || async {
        let payment = payment(stack, out_trade_no).await;
        (payment["status"] == status).then_some(payment)
    })
    .await;
    match found {
        Some(payment) => payment,
        None => panic!(
            "{out_trade_no} never became {status}: {}",
            payment(stack, out_trade_no).await
        ),
    }
}

pub async fn create_and_pay(stack: &Stack, out_trade_no: &str, amount: &str) -> Value {
    let answer = create(stack, out_trade_no, amount, "qr").await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    stack.simulator.pay(out_trade_no, false).expect("pay");
    wait_for_status(stack, out_trade_no, "PAID").await
}

/// As [`create_and_pay`], the buyer paying with `fund_channel` (`simulator::BANK_CARD`: its
/// refunds are accepted and executed later, `simulator::BALANCE`: at once).
pub async fn create_and_pay_with(
    stack: &Stack,
    out_trade_no: &str,
    amount: &str,
    fund_channel: &str,
) -> Value {
    let answer = create(stack, out_trade_no, amount, "qr").await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let payer = alipay_sim::Payer {
        fund_channel: Some(fund_channel.to_owned()),
        ..alipay_sim::Payer::default()
    };
    stack.simulator.pay_with(out_trade_no, &payer).expect("pay");
    wait_for_status(stack, out_trade_no, "PAID").await
}

pub async fn audit_kinds(stack: &Stack, out_trade_no: &str) -> Vec<String> {
    let trail = stack
        .env
        .store
        .audit_trail(&OutTradeNo::parse(out_trade_no).expect("id"))
        .await
        .expect("audit");
    trail.into_iter().map(|e| e.kind).collect()
}

/// `GET /payments/{out_trade_no}/refunds/{out_request_no}` (200 expected).
pub async fn refund_status(stack: &Stack, out_trade_no: &str, out_request_no: &str) -> Value {
    let answer = stack
        .http
        .get(&stack.api(&format!(
            "/payments/{out_trade_no}/refunds/{out_request_no}"
        )))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

pub async fn refund(stack: &Stack, out_trade_no: &str, body: Value) -> Answer {
    stack
        .http
        .post_json(
            &stack.api(&format!("/payments/{out_trade_no}/refunds")),
            &body,
        )
        .await
}

/// `POST /payments/{out_trade_no}/close`.
pub async fn close(stack: &Stack, out_trade_no: &str) -> Answer {
    stack
        .http
        .send(
            "POST",
            &stack.api(&format!("/payments/{out_trade_no}/close")),
            "application/json",
            "",
        )
        .await
}

/// A refund Alipay refuses with a signed terminal answer (`ACQ.SELLER_BALANCE_NOT_ENOUGH`): it
/// ends FAILED. Returns the refund as answered.
pub async fn refused_refund(
    stack: &Stack,
    out_trade_no: &str,
    amount: &str,
    out_request_no: &str,
) -> Value {
    stack.simulator.inject(alipay_sim::Fault {
        target: "alipay.trade.refund".into(),
        kind: alipay_sim::FaultKind::SellerBalanceNotEnough,
        times: 1,
    });
    let failed = refund(
        stack,
        out_trade_no,
        json!({"amount": amount, "out_request_no": out_request_no}),
    )
    .await;
    assert_eq!(
        failed.json()["refund"]["status"],
        "FAILED",
        "{}",
        failed.text
    );
    failed.json()["refund"].clone()
}

/// A page payment closed here while Alipay never knew the trade, then paid by a buyer who
/// still held its URL (before its `time_expire`): a payment after close. Returns the payment
/// once recorded PAID.
pub async fn paid_after_close(stack: &Stack, out_trade_no: &str, amount: &str) -> Value {
    let created = create(stack, out_trade_no, amount, "page").await;
    let url = created.json()["next_step"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let closed = close(stack, out_trade_no).await;
    assert_eq!(closed.json()["status"], "CLOSED", "{}", closed.text);
    assert_eq!(stack.http.get(&url).await.status, 200);
    stack.simulator.pay(out_trade_no, false).expect("pay");
    wait_for_status(stack, out_trade_no, "PAID").await
}
