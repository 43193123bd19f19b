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
        "currency": order.currency(),
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
            "decision": order.decision.as_ref().map(|d| json!({
                "outcome": d.outcome,
                "rule": d.rule,
                "rule_set_version": d.version,
            })),
            "hold": order.hold,
            "step_up": order.decision.as_ref().and_then(|d| d.min_age).map(|min_age| json!({
                "min_age": min_age,
                "need_check_info": true,
            })),
        },
        "settlement": order.settlement.as_ref().map(|facts| json!({
            "amount": facts.amount,
            "currency": facts.amount.currency(),
            "quote": {
                "id": facts.quote_id,
                "pair": facts.quote_pair,
                "rate": facts.quote_price,
                "start": facts.quote_start,
                "expiry": facts.quote_expiry,
            },
            "buyer_paid": facts.buyer_paid.map(|paid| json!({
                "amount": paid,
                "currency": paid.currency(),
            })),
            "buyer_rate": facts.buyer_rate,
        })),
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
        "currency": refund.amount.currency(),
        "reason": refund.reason,
        "status": refund.status,
        "failure_code": refund.failure_code,
        "failure_message": refund.failure_message,
        "created_at_ms": refund.created_at_ms,
        "updated_at_ms": refund.updated_at_ms,
    })
}

/// The subscription resource.
pub fn subscription_view(subscription: &domain::subscriptions::Subscription) -> Value {
    let plan = &subscription.plan;
    let period = &subscription.period;
    json!({
        "object": "subscription",
        "subscription_id": subscription.id,
        "status": subscription.status.as_str(),
        "customer_ref": subscription.customer_ref,
        "subject": subscription.subject,
        "plan": {
            "period_type": plan.period_type.as_str(),
            "period": plan.period,
            "amount": plan.amount,
            "first_charge_date": plan.first_date.to_string(),
            "single_amount": plan.single_amount,
            "total_amount": plan.total_amount,
            "total_payments": plan.total_payments,
        },
        "sign_channel": subscription.sign_channel.as_str(),
        "alipay_channel": subscription.alipay_channel.as_str(),
        "agreement": {
            "agreement_no": subscription.agreement_no,
            "status": subscription.agreement_status.as_str(),
        },
        "current_period": {
            "number": period.n + 1,
            "date": period.date.to_string(),
            "out_trade_no": subscription.period_trade_no(),
            "refusals": period.refusals,
            "in_doubt": period.in_doubt,
            // A stepped-up period: the buyer pays it at Alipay's cashier, identity checked
            // (`POST /subscriptions/{id}/cashier` signs its URL).
            "at_cashier": period.at_cashier,
        },
        "charged_amount": subscription.charged,
        "charges": subscription.charges,
        "last_period_end": subscription.last_period_end,
        "created_at_ms": subscription.created_at_ms,
        "updated_at_ms": subscription.updated_at_ms,
    })
}
