//! The merchant API's resources as JSON: the payment (with its refunds) and the refund, exactly
//! as `GET` shows them and the events carry them.

use serde_json::{Value, json};

use domain::states::{Order, Refund};

/// The status the merchant sees: the trade state, or `REFUNDED` once refunds add up to the
/// amount paid.
pub fn payment_status(order: &Order) -> &'static str {
    if order.fully_refunded() {
        "REFUNDED"
    } else {
        order.status.as_str()
    }
}

/// The payment resource.
pub fn payment_view(order: &Order, refunds: Option<&[Refund]>) -> Value {
    let mut view = json!({
        "object": "payment",
        "out_trade_no": order.out_trade_no,
        "amount": order.amount,
        "currency": order.currency,
        "subject": order.subject,
        "channel": order.channel,
        "alipay_channel": order.alipay_channel.as_str(),
        "status": payment_status(order),
        "trade_no": order.trade_no,
        "paid_amount": order.paid_amount,
        "paid_at": order.paid_at,
        "refunded_amount": order.refunded,
        "refundable_amount": order.refundable,
        "return_url": order.return_url,
        "time_expire": order.time_expire,
        "paid_after_close": order.paid_after_close,
        "customer_ref": order.customer_ref,
        "risk": {
            "flagged": !order.risk_rules.is_empty(),
            "rules": order.risk_rules,
        },
        "created_at_ms": order.created_at_ms,
        "updated_at_ms": order.updated_at_ms,
    });
    if let (Some(refunds), Some(object)) = (refunds, view.as_object_mut()) {
        object.insert(
            "refunds".into(),
            Value::Array(refunds.iter().map(refund_view).collect()),
        );
    }
    view
}

/// The refund resource.
pub fn refund_view(refund: &Refund) -> Value {
    json!({
        "object": "refund",
        "out_trade_no": refund.out_trade_no,
        "out_request_no": refund.out_request_no,
        "amount": refund.amount,
        "reason": refund.reason,
        "status": refund.status,
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
        "created_at_ms": refund.created_at_ms,
        "updated_at_ms": refund.updated_at_ms,
    })
}
