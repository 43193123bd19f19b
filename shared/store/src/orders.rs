//! Order items: creation (idempotent by fingerprint) and the trade-state transitions.

use super::*;
use domain::decisions::{Action, Decision};
use domain::states::Hold;

impl Store {
    /// Creates an order unless one with the same `out_trade_no` exists. One transaction; a
    /// second read only when the order already existed and DynamoDB did not return it.
    ///
    /// `time_expire` is the one sent to Alipay (the merchant's, or the configured default);
    /// `due_at_ms` is when the sweeper ends the order if it is still unpaid.
    ///
    /// `counters`: the fraud checks' counters this payment adds to, each under its limits,
    /// counted first (single-item writes, see `risk_items`): a refused limit creates nothing
    /// ([`StoreError::RiskRefused`]). A repeat of a created payment, or a conflicting one, is
    /// taken back out of them; a creation whose outcome is unknown stays counted (stricter).
    #[tracing::instrument(skip_all, fields(out_trade_no = %new.out_trade_no))]
    pub async fn create_order(
        &self,
        new: &NewOrder,
        time_expire: &ChinaDateTime,
        due_at_ms: i64,
        cause: &Cause,
        now_ms: i64,
        counters: &[Counter],
    ) -> Result<Created, StoreError> {
        match self.count_payment(counters, cny_part(new.amount)).await {
            Ok(()) => {}
            // A repeat of a payment created before the limit was reached is answered, not
            // refused (one read, on refusals only).
            Err(refused @ StoreError::RiskRefused { .. }) => {
                return match self.repeat_of(new).await? {
                    Some(created) => Ok(created),
                    None => Err(refused),
                };
            }
            Err(error) => return Err(error),
        }
        self.create_counted_order(new, time_expire, due_at_ms, cause, now_ms, counters, None)
            .await
    }

    /// The order `new` repeats, if one was created with its `out_trade_no` (a different one
    /// with that number: a conflict).
    pub async fn repeat_of(&self, new: &NewOrder) -> Result<Option<Created>, StoreError> {
        match self.get_order(&new.out_trade_no).await? {
            Some(existing) => repeat_or_conflict(existing, &new.fingerprint()).map(Some),
            None => Ok(None),
        }
    }

    /// Creates an order already added to its `counters` (taken back out when this create was
    /// a repeat or did not happen), with the risk decision that let it through: the order
    /// (held when the decision was a review), its audit entries and the decision's journal
    /// lines, one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_counted_order(
        &self,
        new: &NewOrder,
        time_expire: &ChinaDateTime,
        due_at_ms: i64,
        cause: &Cause,
        now_ms: i64,
        counters: &[Counter],
        decision: Option<&Decision>,
    ) -> Result<Created, StoreError> {
        let created = self
            .put_new_order(new, time_expire, due_at_ms, cause, now_ms, decision)
            .await;
        let not_this_one = matches!(
            created,
            Ok(Created::Existing(_)) | Err(StoreError::Conflict(_) | StoreError::Throttled)
        );
        if not_this_one {
            let counted: Vec<&Counter> = counters.iter().collect();
            self.uncount_payment(&counted, cny_part(new.amount)).await;
        }
        created
    }

    /// The order's creation transaction (the order and its audit event; with a decision, its
    /// audit entry and journal lines too).
    async fn put_new_order(
        &self,
        new: &NewOrder,
        time_expire: &ChinaDateTime,
        due_at_ms: i64,
        cause: &Cause,
        now_ms: i64,
        decision: Option<&Decision>,
    ) -> Result<Created, StoreError> {
        let order = Order {
            out_trade_no: new.out_trade_no.clone(),
            amount: new.amount,
            subject: new.subject.clone(),
            channel: new.channel,
            status: OrderStatus::Created,
            return_url: new.return_url.clone(),
            time_expire: Some(time_expire.as_str().to_owned()),
            trade_no: None,
            paid_amount: None,
            paid_at: None,
            refunded: Money::zero(new.amount.currency()),
            refundable: Money::zero(new.amount.currency()),
            buyer_id_masked: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 1,
            fingerprint: new.fingerprint(),
            due_at_ms: Some(due_at_ms),
            sweeps: 0,
            paid_after_close: false,
            customer_ref: new.customer_ref.clone(),
            risk_rules: Vec::new(),
            decision: decision.cloned(),
            hold: decision
                .filter(|d| d.outcome == Action::Review)
                .map(|_| Hold::Held),
            alipay_channel: new.alipay_channel,
            settlement: None,
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(order_item(&order)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.created", cause, now_ms)
            .change("", OrderStatus::Created)
            .amount(order.amount)
            .detail(created_detail(&order));
        let mut items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.audit_put(&order.out_trade_no, &event)?,
        ];
        if let Some(decision) = decision {
            items.extend(self.journal_items(
                &order.out_trade_no,
                new.customer_ref.as_deref(),
                decision,
                now_ms,
            )?);
        }
        let reasons = match self.transact(items).await? {
            Ok(()) => return Ok(Created::New(order)),
            Err(reasons) => reasons,
        };
        let existing = match self
            .old_item(&reasons, 0, &order.out_trade_no, ORDER_SK)
            .await?
        {
            Some(item) => parse_order(&item)?,
            None => {
                return Err(StoreError::Unavailable(
                    "order creation was cancelled".into(),
                ));
            }
        };
        repeat_or_conflict(existing, &order.fingerprint)
    }

    pub async fn get_order(&self, out_trade_no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        self.get_item(out_trade_no, ORDER_SK)
            .await?
            .map(|item| parse_order(&item))
            .transpose()
    }

    /// The order and its refunds in one Query.
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no))]
    pub async fn get_order_with_refunds(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Option<(Order, Vec<Refund>)>, StoreError> {
        let items = self
            .query(
                out_trade_no,
                "pk = :pk AND sk >= :from",
                &[(":from", ORDER_SK)],
            )
            .await?;
        let mut order = None;
        let mut refunds = Vec::new();
        for item in &items {
            match item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some(ORDER_SK) => order = Some(parse_order(item)?),
                Some(sk) if sk.starts_with("REFUND#") => refunds.push(parse_refund(item)?),
                _ => {}
            }
        }
        Ok(order.map(|order| (order, refunds)))
    }

    /// CREATED → PAID (or FINISHED), and PAID → FINISHED, as Alipay reported. A repeat is a
    /// [`Transition::Duplicate`]; anything else is refused. Reads the order first: a caller
    /// that has just read it calls [`Store::mark_paid_from`] and saves the read.
    pub async fn mark_paid(
        &self,
        out_trade_no: &OutTradeNo,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let order = self
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| not_found(out_trade_no))?;
        self.mark_paid_from(&order, payment, cause, now_ms).await
    }

    /// [`Store::mark_paid`] for an order as the caller read it: one transaction, and no read
    /// after it. The write is conditional on the order's `version` as read, so the order it
    /// returns (the read one with this change applied) is exactly what is stored; when
    /// something else changed the order meanwhile, the transaction's refusal carries the
    /// current item and the change is made again on it. A repeat (the order read is already
    /// paid) costs no write at all.
    #[tracing::instrument(skip_all, fields(out_trade_no = %read.out_trade_no, finished = payment.finished))]
    pub async fn mark_paid_from(
        &self,
        read: &Order,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let target = if payment.finished {
            OrderStatus::Finished
        } else {
            OrderStatus::Paid
        };
        let mut current = read.clone();
        for _ in 0..VERSION_ATTEMPTS {
            if current.status != OrderStatus::Created {
                return if current.status == OrderStatus::Paid && target == OrderStatus::Finished {
                    self.finish(&current.out_trade_no, payment, cause, now_ms)
                        .await
                } else {
                    self.repeat_or_refuse(current, target, &payment.trade_no)
                };
            }
            match self.pay(&current, target, payment, cause, now_ms).await? {
                Ok(order) => return Ok(Transition::Applied(order)),
                Err(now) => current = now,
            }
        }
        Err(StoreError::Unavailable(format!(
            "order {} kept changing while being marked paid",
            read.out_trade_no
        )))
    }

    /// One attempt at CREATED → `target` on the order as `read`: `Ok` with the order as
    /// written, `Err` with the order as it stood when the condition refused it.
    async fn pay(
        &self,
        read: &Order,
        target: OrderStatus,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Result<Order, Order>, StoreError> {
        let out_trade_no = &read.out_trade_no;
        let refundable = if payment.finished {
            Money::zero(payment.amount.currency())
        } else {
            payment.amount
        };
        let mut set = vec![
            "#status = :to",
            "trade_no = :trade_no",
            "paid_fen = :paid",
            "refundable_fen = :refundable",
            "updated_at_ms = :now",
            "version = version + :one",
        ];
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .condition_expression("#status = :from AND version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Created.as_str()))
            .expression_attribute_values(":version", n(read.version))
            .expression_attribute_values(":trade_no", s(&payment.trade_no))
            .expression_attribute_values(":paid", n(payment.amount.minor()))
            .expression_attribute_values(":refundable", n(refundable.minor()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1));
        // The order enters the day index on the day Alipay says it was paid (the bill's day).
        set.push("day_key = :day_key");
        set.push("day_sk = :day_sk");
        let keys = day_keys(
            out_trade_no,
            day_of(payment.paid_at.as_deref(), now_ms),
            None,
            payment.alipay_channel,
        );
        for (name, value) in day_values(keys) {
            update = update.expression_attribute_values(name, value);
        }
        if let Some(paid_at) = &payment.paid_at {
            set.push("paid_at = :paid_at");
            update = update.expression_attribute_values(":paid_at", s(paid_at));
        }
        if let Some(buyer) = &payment.buyer_id_masked {
            set.push("buyer_id_masked = :buyer");
            update = update.expression_attribute_values(":buyer", s(buyer));
        }
        let flagged = payment.risk.as_ref().filter(|r| !r.rules.is_empty());
        if let Some(risk) = flagged {
            set.push("risk_rules = :risk");
            update = update.expression_attribute_values(":risk", risk_list(&risk.rules));
        }
        if let Some(facts) = &payment.settlement {
            set.push("settlement = :settlement");
            update = update.expression_attribute_values(":settlement", settlement_value(facts));
        }
        let update = update
            .update_expression(format!(
                "SET {} REMOVE due_shard, due_at_ms",
                set.join(", ")
            ))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new(
            if payment.finished {
                "order.finished"
            } else {
                "order.paid"
            },
            cause,
            now_ms,
        )
        .change(OrderStatus::Created, target)
        .amount(payment.amount)
        .detail(match flagged {
            Some(risk) => format!(
                "trade_no {}; flagged by the fraud checks: {}{}",
                payment.trade_no,
                risk.rules.join(", "),
                settled_text(payment)
            ),
            None => format!("trade_no {}{}", payment.trade_no, settled_text(payment)),
        });
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        if let Some(risk) = &payment.risk {
            items.extend(self.history_updates(risk, cny_part(payment.amount), now_ms)?);
        }
        match self.transact(items).await? {
            Ok(()) => Ok(Ok(paid(read, target, payment, now_ms))),
            Err(reasons) => Ok(Err(self.old_order(&reasons, 0, out_trade_no).await?)),
        }
    }

    /// PAID → FINISHED: the trade is no longer refundable.
    async fn finish(
        &self,
        out_trade_no: &OutTradeNo,
        payment: &Payment,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET #status = :to, refundable_fen = :zero, updated_at_ms = :now, version = version + :one")
            .condition_expression("#status = :from AND trade_no = :trade_no")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(OrderStatus::Finished.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Paid.as_str()))
            .expression_attribute_values(":trade_no", s(&payment.trade_no))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.finished", cause, now_ms)
            .change(OrderStatus::Paid, OrderStatus::Finished);
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) => {
                self.repeat_or_refuse(current, OrderStatus::Finished, &payment.trade_no)
            }
        }
    }

    fn repeat_or_refuse(
        &self,
        current: Order,
        target: OrderStatus,
        trade_no: &str,
    ) -> Result<Transition<Order>, StoreError> {
        if current.status.already(target) {
            if current
                .trade_no
                .as_deref()
                .is_some_and(|known| known != trade_no)
            {
                return Err(StoreError::Conflict(format!(
                    "order {} was paid by trade {}, not {trade_no}",
                    current.out_trade_no,
                    current.trade_no.as_deref().unwrap_or("")
                )));
            }
            return Ok(Transition::Duplicate(current));
        }
        Err(StoreError::IllegalTransition {
            from: current.status.to_string(),
            to: target.to_string(),
        })
    }

    /// CLOSED → PAID (or FINISHED): a genuine payment arrived for an order we had closed (the
    /// buyer paid at the last second, or a locally closed order Alipay never knew). The money
    /// is real, so it is recorded; with `refund`, the whole amount is reserved for refunding in
    /// the same transaction (the sweeper sends it). Conditional on the order's `version` as
    /// read, so nothing that happened since is overwritten.
    #[tracing::instrument(skip_all, fields(out_trade_no = %order.out_trade_no))]
    pub async fn mark_paid_after_close(
        &self,
        order: &Order,
        payment: &Payment,
        refund: Option<(&NewRefund, i64)>,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let target = if payment.finished {
            OrderStatus::Finished
        } else {
            OrderStatus::Paid
        };
        let refund = refund.filter(|_| !payment.finished);
        let reserved = refund.map_or(0, |(r, _)| r.amount.minor());
        let refundable_fen = if payment.finished {
            0
        } else {
            payment.amount.minor().saturating_sub(reserved)
        };
        let day = day_values(day_keys(
            &order.out_trade_no,
            day_of(payment.paid_at.as_deref(), now_ms),
            None,
            order.alipay_channel,
        ));
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&order.out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression(
                "SET #status = :to, trade_no = :trade_no, paid_fen = :paid, refundable_fen = :refundable, \
                 paid_after_close = :yes, paid_at = :paid_at, updated_at_ms = :now, version = version + :one, \
                 day_key = :day_key, day_sk = :day_sk, settlement = :settlement \
                 REMOVE due_shard, due_at_ms",
            )
            .condition_expression("#status = :closed AND version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":closed", s(OrderStatus::Closed.as_str()))
            .expression_attribute_values(":version", n(order.version))
            .expression_attribute_values(":trade_no", s(&payment.trade_no))
            .expression_attribute_values(":paid", n(payment.amount.minor()))
            .expression_attribute_values(":refundable", n(refundable_fen))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(
                ":paid_at",
                s(payment.paid_at.clone().unwrap_or_default()),
            )
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(
                ":settlement",
                payment
                    .settlement
                    .as_ref()
                    .map_or(AttributeValue::Null(true), settlement_value),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in day {
            update = update.expression_attribute_values(name, value);
        }
        let update = update.build().map_err(build_error)?;
        let event = AuditEvent::new("order.paid_after_close", cause, now_ms)
            .change(OrderStatus::Closed, target)
            .amount(payment.amount)
            .detail(format!(
                "trade_no {}{}",
                payment.trade_no,
                settled_text(payment)
            ));
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(&order.out_trade_no, &event)?,
        ];
        if let Some((new, due_at_ms)) = refund {
            let stored = pending_refund(&order.out_trade_no, new, due_at_ms, now_ms);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(refund_item(&stored)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)?;
            let reserved_event = AuditEvent::new("refund.reserved", cause, now_ms)
                .change("", RefundStatus::Pending.as_str())
                .amount(new.amount)
                .detail(format!(
                    "out_request_no {}: automatic refund of a payment after close",
                    new.out_request_no
                ));
            items.push(TransactWriteItem::builder().put(put).build());
            items.push(self.audit_put(&order.out_trade_no, &reserved_event)?);
        }
        match self.change_order(items, &order.out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) if current.paid_after_close => {
                self.repeat_or_refuse(current, target, &payment.trade_no)
            }
            Err(current) if current.version != order.version => Err(StoreError::Conflict(format!(
                "order {} changed while a payment after close was applied",
                order.out_trade_no
            ))),
            Err(current) => Err(StoreError::IllegalTransition {
                from: current.status.to_string(),
                to: target.to_string(),
            }),
        }
    }

    /// A CLOSED order that was re-checked after its `time_expire` needs no more attention.
    pub async fn clear_due(&self, out_trade_no: &OutTradeNo) -> Result<(), StoreError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("REMOVE due_shard, due_at_ms")
            .condition_expression("#status = :closed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":closed", s(OrderStatus::Closed.as_str()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(sdk_error(&error)),
        }
    }

    /// CREATED → CLOSED (unpaid).
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no))]
    ///
    /// `recheck_at_ms`: an order closed here while Alipay never knew the trade can still be paid
    /// through its signed URL until `time_expire`; it stays in the due index until then, so the
    /// sweeper asks once more after it (a payment whose notification was lost is found).
    pub async fn close(
        &self,
        out_trade_no: &OutTradeNo,
        recheck_at_ms: Option<i64>,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Transition<Order>, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK));
        update = match recheck_at_ms {
            Some(at) => update
                .update_expression(
                    "SET #status = :to, updated_at_ms = :now, version = version + :one, due_shard = :shard, due_at_ms = :recheck",
                )
                .expression_attribute_values(":shard", s(due_shard(out_trade_no)))
                .expression_attribute_values(":recheck", n(at)),
            None => update.update_expression(
                "SET #status = :to, updated_at_ms = :now, version = version + :one REMOVE due_shard, due_at_ms",
            ),
        };
        let update = update
            .condition_expression("attribute_exists(pk) AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(OrderStatus::Closed.as_str()))
            .expression_attribute_values(":from", s(OrderStatus::Created.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("order.closed", cause, now_ms)
            .change(OrderStatus::Created, OrderStatus::Closed);
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        match self.change_order(items, out_trade_no).await? {
            Ok(order) => Ok(Transition::Applied(order)),
            Err(current) if current.status == OrderStatus::Closed => {
                Ok(Transition::Duplicate(current))
            }
            Err(current) => Err(StoreError::IllegalTransition {
                from: current.status.to_string(),
                to: OrderStatus::Closed.to_string(),
            }),
        }
    }
}

pub(super) fn order_item(order: &Order) -> Item {
    let mut item = order_item_without_due(order);
    if let Some(due_at_ms) = order.due_at_ms {
        item.insert("due_shard".to_owned(), s(due_shard(&order.out_trade_no)));
        item.insert("due_at_ms".to_owned(), n(due_at_ms));
    }
    item
}

fn order_item_without_due(order: &Order) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(order_pk(&order.out_trade_no))),
        ("sk".to_owned(), s(ORDER_SK)),
        ("kind".to_owned(), s("order")),
        ("out_trade_no".to_owned(), s(order.out_trade_no.as_str())),
        ("amount_fen".to_owned(), n(order.amount.minor())),
        ("currency".to_owned(), s(order.currency().code())),
        ("subject".to_owned(), s(order.subject.as_str())),
        ("channel".to_owned(), s(order.channel.as_str())),
        ("status".to_owned(), s(order.status.as_str())),
        ("refunded_fen".to_owned(), n(order.refunded.minor())),
        ("refundable_fen".to_owned(), n(order.refundable.minor())),
        ("created_at_ms".to_owned(), n(order.created_at_ms)),
        ("updated_at_ms".to_owned(), n(order.updated_at_ms)),
        ("version".to_owned(), n(order.version)),
        ("fingerprint".to_owned(), s(&order.fingerprint)),
        ("sweeps".to_owned(), n(order.sweeps)),
        (
            "alipay_channel".to_owned(),
            s(order.alipay_channel.as_str()),
        ),
    ]);
    if order.paid_after_close {
        item.insert("paid_after_close".to_owned(), AttributeValue::Bool(true));
    }
    put_opt(&mut item, "return_url", order.return_url.as_deref());
    put_opt(&mut item, "time_expire", order.time_expire.as_deref());
    put_opt(&mut item, "trade_no", order.trade_no.as_deref());
    put_opt(&mut item, "paid_at", order.paid_at.as_deref());
    put_opt(
        &mut item,
        "buyer_id_masked",
        order.buyer_id_masked.as_deref(),
    );
    if let Some(paid) = order.paid_amount {
        item.insert("paid_fen".to_owned(), n(paid.minor()));
    }
    put_opt(&mut item, "customer_ref", order.customer_ref.as_deref());
    if !order.risk_rules.is_empty() {
        item.insert("risk_rules".to_owned(), risk_list(&order.risk_rules));
    }
    if let Some(facts) = &order.settlement {
        item.insert("settlement".to_owned(), settlement_value(facts));
    }
    if let Some(decision) = &order.decision
        && let Ok(text) = serde_json::to_string(decision)
    {
        item.insert("risk_decision".to_owned(), s(text));
    }
    if let Some(hold) = order.hold {
        item.insert("hold".to_owned(), s(hold.as_str()));
    }
    item
}

/// The creation's audit detail: the channel, and the risk decision as the journal has it.
fn created_detail(order: &Order) -> String {
    let channel = format!("alipay channel {}", order.alipay_channel);
    match order
        .decision
        .as_ref()
        .and_then(|d| serde_json::to_string(d).ok())
    {
        Some(decision) => format!("{channel}; risk decision {decision}"),
        None => channel,
    }
}

fn risk_list(rules: &[String]) -> AttributeValue {
    AttributeValue::L(rules.iter().map(|r| s(r.as_str())).collect())
}

/// How many times a change conditional on the order's version is made again on the current
/// order before giving up (each refusal means another change landed in between).
const VERSION_ATTEMPTS: usize = 4;

/// The order `read` with [`Store::mark_paid_from`]'s update applied: what the transaction wrote,
/// given that its condition held `read.version`. Mirrors the update expression field by field
/// (a store test compares it with the item read back).
fn paid(read: &Order, target: OrderStatus, payment: &Payment, now_ms: i64) -> Order {
    let flagged = payment.risk.as_ref().filter(|r| !r.rules.is_empty());
    Order {
        status: target,
        trade_no: Some(payment.trade_no.clone()),
        paid_amount: Some(payment.amount),
        refundable: if target == OrderStatus::Finished {
            Money::zero(payment.amount.currency())
        } else {
            payment.amount
        },
        updated_at_ms: now_ms,
        version: read.version + 1,
        paid_at: payment.paid_at.clone().or_else(|| read.paid_at.clone()),
        buyer_id_masked: payment
            .buyer_id_masked
            .clone()
            .or_else(|| read.buyer_id_masked.clone()),
        risk_rules: flagged.map_or_else(|| read.risk_rules.clone(), |r| r.rules.clone()),
        due_at_ms: None,
        settlement: payment
            .settlement
            .clone()
            .or_else(|| read.settlement.clone()),
        ..read.clone()
    }
}

/// The settlement facts as one map attribute.
fn settlement_value(facts: &SettlementFacts) -> AttributeValue {
    let mut map = Item::from([
        ("currency".to_owned(), s(facts.amount.currency().code())),
        ("minor".to_owned(), n(facts.amount.minor())),
    ]);
    put_opt(&mut map, "quote_id", facts.quote_id.as_deref());
    put_opt(&mut map, "quote_pair", facts.quote_pair.as_deref());
    put_opt(&mut map, "quote_price", facts.quote_price.as_deref());
    put_opt(&mut map, "quote_start", facts.quote_start.as_deref());
    put_opt(&mut map, "quote_expiry", facts.quote_expiry.as_deref());
    if let Some(paid) = facts.buyer_paid {
        map.insert("buyer_currency".to_owned(), s(paid.currency().code()));
        map.insert("buyer_minor".to_owned(), n(paid.minor()));
    }
    put_opt(&mut map, "buyer_rate", facts.buyer_rate.as_deref());
    AttributeValue::M(map)
}

pub(crate) fn parse_settlement(item: &Item) -> Result<Option<SettlementFacts>, StoreError> {
    let Some(map) = item.get("settlement").and_then(|v| v.as_m().ok()) else {
        return Ok(None);
    };
    let currency = get_currency(map, "currency")?;
    Ok(Some(SettlementFacts {
        amount: get_money(map, "minor", currency)?,
        quote_id: get_opt_s(map, "quote_id"),
        quote_pair: get_opt_s(map, "quote_pair"),
        quote_price: get_opt_s(map, "quote_price"),
        quote_start: get_opt_s(map, "quote_start"),
        quote_expiry: get_opt_s(map, "quote_expiry"),
        buyer_paid: match map.get("buyer_currency") {
            Some(_) => {
                let currency = get_currency(map, "buyer_currency")?;
                Some(get_money(map, "buyer_minor", currency)?)
            }
            None => None,
        },
        buyer_rate: get_opt_s(map, "buyer_rate"),
    }))
}

/// "; settled 78.29 CNY at 7.123456 (USD/CNY, quote Q1)", for the audit trail.
fn settled_text(payment: &Payment) -> String {
    let Some(facts) = &payment.settlement else {
        return String::new();
    };
    let buyer = facts
        .buyer_paid
        .map(|paid| {
            format!(
                "; the buyer paid {} at {}",
                paid.with_code(),
                facts.buyer_rate.as_deref().unwrap_or("-")
            )
        })
        .unwrap_or_default();
    format!(
        "; settled {} at {} ({}, quote {}){buyer}",
        facts.amount.with_code(),
        facts.quote_price.as_deref().unwrap_or("-"),
        facts.quote_pair.as_deref().unwrap_or("-"),
        facts.quote_id.as_deref().unwrap_or("-")
    )
}

pub(super) fn parse_order(item: &Item) -> Result<Order, StoreError> {
    let status = get_s(item, "status")?;
    let channel = get_s(item, "channel")?;
    let currency = get_currency(item, "currency")?;
    Ok(Order {
        out_trade_no: OutTradeNo::parse(get_s(item, "out_trade_no")?)
            .map_err(corrupt("out_trade_no"))?,
        amount: get_money(item, "amount_fen", currency)?,
        subject: Subject::parse(get_s(item, "subject")?).map_err(corrupt("subject"))?,
        channel: Cashier::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("channel {channel}")))?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        return_url: get_opt_s(item, "return_url"),
        time_expire: get_opt_s(item, "time_expire"),
        trade_no: get_opt_s(item, "trade_no"),
        paid_amount: item
            .get("paid_fen")
            .map(|_| get_money(item, "paid_fen", currency))
            .transpose()?,
        paid_at: get_opt_s(item, "paid_at"),
        refunded: get_money(item, "refunded_fen", currency)?,
        refundable: get_money(item, "refundable_fen", currency)?,
        buyer_id_masked: get_opt_s(item, "buyer_id_masked"),
        created_at_ms: get_n(item, "created_at_ms")?,
        updated_at_ms: get_n(item, "updated_at_ms")?,
        version: get_n(item, "version")?,
        fingerprint: get_s(item, "fingerprint")?,
        due_at_ms: item
            .get("due_at_ms")
            .map(|_| get_n(item, "due_at_ms"))
            .transpose()?,
        sweeps: get_n_or_zero(item, "sweeps")?,
        paid_after_close: item
            .get("paid_after_close")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        customer_ref: get_opt_s(item, "customer_ref"),
        risk_rules: item
            .get("risk_rules")
            .and_then(|v| v.as_l().ok())
            .map(|list| list.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        alipay_channel: parse_channel(item)?,
        settlement: parse_settlement(item)?,
        decision: get_opt_s(item, "risk_decision")
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("risk_decision: {e}")))?,
        hold: get_opt_s(item, "hold")
            .map(|text| {
                Hold::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("hold {text}")))
            })
            .transpose()?,
    })
}

/// An order that already exists with this `out_trade_no`: the same request made before (answered
/// with it), or another one (a conflict).
fn repeat_or_conflict(existing: Order, fingerprint: &str) -> Result<Created, StoreError> {
    if existing.fingerprint == fingerprint {
        Ok(Created::Existing(existing))
    } else {
        Err(StoreError::Conflict(format!(
            "out_trade_no {} was already used for a different payment",
            existing.out_trade_no
        )))
    }
}
