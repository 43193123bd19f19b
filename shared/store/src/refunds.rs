//! Refund items: reservation against the order's refundable amount, and settlement.

use super::*;

/// What [`Store::settle_refund`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Settled now.
    Settled(Refund),
    /// It already had this outcome: nothing written (a repeat).
    Already(Refund),
    /// FAILED not written: a send of the refund was begun after the one that was judged, and
    /// it may execute. The refund as it is now (PENDING).
    Superseded(Refund),
    /// A proven success over a recorded FAILED: corrected to SUCCEEDED, its amount taken back
    /// from what is refundable (audited `refund.corrected`).
    Corrected(Refund),
    /// A proven success over a recorded FAILED whose amount is no longer refundable (refunded
    /// or reserved again since): left FAILED, audited `refund.discrepancy`; a person must look.
    Discrepancy(Refund),
}

impl Settlement {
    pub fn into_refund(self) -> Refund {
        match self {
            Settlement::Settled(refund)
            | Settlement::Already(refund)
            | Settlement::Superseded(refund)
            | Settlement::Corrected(refund)
            | Settlement::Discrepancy(refund) => refund,
        }
    }
}

/// The answer to [`Store::begin_refund_send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendClaim {
    /// Send now. `first_send`: no earlier send of this `out_request_no` was ever begun.
    Granted { first_send: bool, refund: Refund },
    /// Another sender moved first, or the refund ended: the refund as it is now.
    Taken(Refund),
    /// Another refund of this trade was sent less than the spacing ago.
    Spacing { free_at_ms: i64 },
}

impl Store {
    pub async fn get_refund(
        &self,
        out_trade_no: &OutTradeNo,
        out_request_no: &OutRequestNo,
    ) -> Result<Option<Refund>, StoreError> {
        self.get_item(out_trade_no, &refund_sk(out_request_no))
            .await?
            .map(|item| parse_refund(&item))
            .transpose()
    }

    /// Reserves a refund: in one transaction, lowers the order's refundable amount under a
    /// condition that keeps it from going below zero, writes the PENDING refund, and audits.
    /// A retry with the same `out_request_no` and amount returns the existing refund.
    #[tracing::instrument(skip_all, fields(out_trade_no = %out_trade_no, out_request_no = %refund.out_request_no))]
    /// `due_at_ms`: when the sweeper finishes it if this request does not.
    pub async fn reserve_refund(
        &self,
        out_trade_no: &OutTradeNo,
        refund: &NewRefund,
        due_at_ms: i64,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Reserved, StoreError> {
        let stored = pending_refund(out_trade_no, refund, due_at_ms, now_ms);
        // Conditions have no arithmetic: the order keeps `refundable_fen`, and the condition
        // compares it with the amount.
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET refundable_fen = refundable_fen - :amount, updated_at_ms = :now, version = version + :one")
            // Minor units compare only within one currency: the refund's must be the order's.
            .condition_expression("#status = :paid AND refundable_fen >= :amount AND currency = :currency")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":paid", s(OrderStatus::Paid.as_str()))
            .expression_attribute_values(":amount", n(refund.amount.minor()))
            .expression_attribute_values(":currency", s(refund.amount.currency().code()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(refund_item(&stored)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("refund.reserved", cause, now_ms)
            .change("", RefundStatus::Pending.as_str())
            .amount(refund.amount)
            .detail(format!("out_request_no {}", refund.out_request_no));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
            self.audit_put(out_trade_no, &event)?,
        ];
        let reasons = match self.transact(items).await? {
            Ok(()) => return Ok(Reserved::New(stored)),
            Err(reasons) => reasons,
        };
        // The refund exists: a retry (same amount) or a reuse of the number (a conflict).
        if failed_condition(&reasons, 1) {
            let sk = refund_sk(&refund.out_request_no);
            let existing = self
                .old_item(&reasons, 1, out_trade_no, &sk)
                .await?
                .map(|item| parse_refund(&item))
                .transpose()?
                .ok_or_else(|| StoreError::RefundNotFound(refund.out_request_no.to_string()))?;
            if existing.amount == refund.amount {
                return Ok(Reserved::Existing(existing));
            }
            return Err(StoreError::Conflict(format!(
                "out_request_no {} was already used for a refund of {}",
                refund.out_request_no, existing.amount
            )));
        }
        let order = self.old_order(&reasons, 0, out_trade_no).await?;
        if order.currency() != refund.amount.currency() {
            return Err(StoreError::CurrencyMismatch {
                payment: order.currency(),
                requested: refund.amount.currency(),
            });
        }
        if order.status != OrderStatus::Paid {
            return Err(StoreError::NotRefundable {
                status: order.status,
            });
        }
        Err(StoreError::ExceedsRefundable {
            requested: refund.amount,
            refundable: order.refundable,
        })
    }

    /// Claims the right to send a PENDING refund to Alipay, in one transaction: the refund's
    /// send counter moves from what the caller saw (so two senders never send at once, and the
    /// first send is known to be the first), and the order's last refund send is at least
    /// `spacing_ms` old (Alipay asks for refunds of one trade to be ≥ 3 s apart). The refund
    /// becomes due for a query at `due_at_ms`, in case this sender dies.
    #[tracing::instrument(skip_all, fields(out_trade_no = %refund.out_trade_no, out_request_no = %refund.out_request_no))]
    pub async fn begin_refund_send(
        &self,
        refund: &Refund,
        spacing_ms: i64,
        due_at_ms: i64,
        now_ms: i64,
    ) -> Result<SendClaim, StoreError> {
        let order_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression("SET last_refund_send_ms = :now")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(last_refund_send_ms) OR last_refund_send_ms <= :earliest)",
            )
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":earliest", n(now_ms - spacing_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let refund_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(refund_sk(&refund.out_request_no)))
            .update_expression(
                "SET sends = :next, due_shard = :shard, due_at_ms = :due, updated_at_ms = :now, last_send_ms = :now",
            )
            .condition_expression("#status = :pending AND (sends = :seen OR (attribute_not_exists(sends) AND :seen = :zero))")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(":seen", n(refund.sends))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":next", n(refund.sends + 1))
            .expression_attribute_values(":shard", s(due_shard(&refund.out_trade_no)))
            .expression_attribute_values(":due", n(due_at_ms))
            .expression_attribute_values(":now", n(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let items = vec![
            TransactWriteItem::builder().update(refund_update).build(),
            TransactWriteItem::builder().update(order_update).build(),
        ];
        match self.transact(items).await? {
            Ok(()) => {
                let mut claimed = refund.clone();
                claimed.sends += 1;
                claimed.due_at_ms = Some(due_at_ms);
                claimed.updated_at_ms = now_ms;
                claimed.last_send_ms = now_ms;
                Ok(SendClaim::Granted {
                    first_send: refund.sends == 0,
                    refund: claimed,
                })
            }
            Err(reasons) if failed_condition(&reasons, 0) => {
                let sk = refund_sk(&refund.out_request_no);
                let current = self
                    .old_item(&reasons, 0, &refund.out_trade_no, &sk)
                    .await?
                    .map(|item| parse_refund(&item))
                    .transpose()?
                    .ok_or_else(|| StoreError::RefundNotFound(refund.out_request_no.to_string()))?;
                Ok(SendClaim::Taken(current))
            }
            Err(reasons) => {
                let last = self
                    .old_item(&reasons, 1, &refund.out_trade_no, ORDER_SK)
                    .await?
                    .and_then(|item| get_n::<i64>(&item, "last_refund_send_ms").ok())
                    .unwrap_or(now_ms);
                Ok(SendClaim::Spacing {
                    free_at_ms: last + spacing_ms,
                })
            }
        }
    }

    /// PENDING → SUCCEEDED (adds to the order's refunded total) or PENDING → FAILED (gives the
    /// reservation back), in one transaction with its audit event.
    ///
    /// FAILED is written only while the refund's send count is still `refund.sends`, the send
    /// that was judged: a later send of the same `out_request_no` may execute at Alipay, and
    /// releasing the money then would let the merchant refund it twice. A success proven after
    /// a FAILED was recorded is a correction ([`Settlement::Corrected`]).
    #[tracing::instrument(skip_all, fields(out_trade_no = %refund.out_trade_no, out_request_no = %refund.out_request_no))]
    pub async fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
        refunded_at: Option<&str>,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Settlement, StoreError> {
        let (target, order_expression) = match outcome {
            RefundOutcome::Succeeded => (
                RefundStatus::Succeeded,
                "SET refunded_fen = refunded_fen + :amount",
            ),
            RefundOutcome::Failed { .. } => (
                RefundStatus::Failed,
                "SET refundable_fen = refundable_fen + :amount",
            ),
        };
        let mut refund_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(refund_sk(&refund.out_request_no)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(":amount", n(refund.amount.minor()))
            .expression_attribute_values(":now", n(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        refund_update = match outcome {
            // A refund enters the day index on the day Alipay paid it (the bill's day).
            RefundOutcome::Succeeded => {
                let mut update = refund_update
                    .condition_expression("#status = :pending AND amount_fen = :amount")
                    .update_expression(
                        "SET #status = :to, updated_at_ms = :now, day_key = :day_key, day_sk = :day_sk, refund_day = :day \
                         REMOVE due_shard, due_at_ms",
                    );
                for (name, value) in refund_day_values(refund, refunded_at, now_ms) {
                    update = update.expression_attribute_values(name, value);
                }
                update
            }
            RefundOutcome::Failed { code, message } => refund_update
                .condition_expression(
                    "#status = :pending AND amount_fen = :amount AND (sends = :sends OR (attribute_not_exists(sends) AND :sends = :zero))",
                )
                .update_expression("SET #status = :to, updated_at_ms = :now, failure_code = :code, failure_message = :message REMOVE due_shard, due_at_ms")
                .expression_attribute_values(":sends", n(refund.sends))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":code", s(code))
                .expression_attribute_values(":message", s(message)),
        };
        let order_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression(format!(
                "{order_expression}, updated_at_ms = :now, version = version + :one"
            ))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":amount", n(refund.amount.minor()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        let mut event = AuditEvent::new(
            if target == RefundStatus::Succeeded {
                "refund.succeeded"
            } else {
                "refund.failed"
            },
            cause,
            now_ms,
        )
        .change(RefundStatus::Pending.as_str(), target.as_str())
        .amount(refund.amount);
        event.detail = Some(match outcome {
            RefundOutcome::Succeeded => format!("out_request_no {}", refund.out_request_no),
            RefundOutcome::Failed { code, .. } => {
                format!("out_request_no {}: {code}", refund.out_request_no)
            }
        });
        let items = vec![
            TransactWriteItem::builder()
                .update(refund_update.build().map_err(build_error)?)
                .build(),
            TransactWriteItem::builder().update(order_update).build(),
            self.audit_put(&refund.out_trade_no, &event)?,
        ];
        let reasons = match self.transact(items).await? {
            Ok(()) => {
                let mut settled = refund.clone();
                settled.status = target;
                settled.updated_at_ms = now_ms;
                settled.due_at_ms = None;
                if let RefundOutcome::Failed { code, message } = outcome {
                    settled.failure_code = Some(code.clone());
                    settled.failure_message = Some(message.clone());
                }
                return Ok(Settlement::Settled(settled));
            }
            Err(reasons) => reasons,
        };
        let current = self
            .old_item(
                &reasons,
                0,
                &refund.out_trade_no,
                &refund_sk(&refund.out_request_no),
            )
            .await?
            .map(|item| parse_refund(&item))
            .transpose()?
            .ok_or_else(|| StoreError::RefundNotFound(refund.out_request_no.to_string()))?;
        match (current.status, target) {
            (status, target) if status == target => Ok(Settlement::Already(current)),
            (RefundStatus::Pending, RefundStatus::Failed) => Ok(Settlement::Superseded(current)),
            (RefundStatus::Failed, RefundStatus::Succeeded) => {
                self.correct_failed_refund(&current, refunded_at, cause, now_ms)
                    .await
            }
            (from, to) => Err(StoreError::IllegalTransition {
                from: from.as_str().into(),
                to: to.as_str().into(),
            }),
        }
    }

    /// FAILED → SUCCEEDED, on proof that Alipay executed a refund we recorded as failed: the
    /// amount is taken back from what is refundable (conditionally: it may have been refunded
    /// or reserved again since) and counted as refunded, audited `refund.corrected`. When the
    /// money is no longer there, the refund stays FAILED and `refund.discrepancy` is audited.
    async fn correct_failed_refund(
        &self,
        failed: &Refund,
        refunded_at: Option<&str>,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<Settlement, StoreError> {
        let mut refund_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&failed.out_trade_no)))
            .key("sk", s(refund_sk(&failed.out_request_no)))
            .condition_expression("#status = :failed AND amount_fen = :amount")
            .update_expression(
                "SET #status = :to, updated_at_ms = :now, corrected_at_ms = :now, day_key = :day_key, day_sk = :day_sk, refund_day = :day \
                 REMOVE failure_code, failure_message",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(RefundStatus::Failed.as_str()))
            .expression_attribute_values(":to", s(RefundStatus::Succeeded.as_str()))
            .expression_attribute_values(":amount", n(failed.amount.minor()))
            .expression_attribute_values(":now", n(now_ms));
        for (name, value) in refund_day_values(failed, refunded_at, now_ms) {
            refund_update = refund_update.expression_attribute_values(name, value);
        }
        let order_update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&failed.out_trade_no)))
            .key("sk", s(ORDER_SK))
            .update_expression(
                "SET refundable_fen = refundable_fen - :amount, refunded_fen = refunded_fen + :amount, updated_at_ms = :now, version = version + :one",
            )
            .condition_expression("attribute_exists(pk) AND refundable_fen >= :amount")
            .expression_attribute_values(":amount", n(failed.amount.minor()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(build_error)?;
        let was = failed.failure_code.as_deref().unwrap_or("");
        let event = AuditEvent::new("refund.corrected", cause, now_ms)
            .change(
                RefundStatus::Failed.as_str(),
                RefundStatus::Succeeded.as_str(),
            )
            .amount(failed.amount)
            .detail(format!(
                "out_request_no {}: Alipay executed it after it was recorded FAILED ({was})",
                failed.out_request_no
            ));
        let items = vec![
            TransactWriteItem::builder()
                .update(refund_update.build().map_err(build_error)?)
                .build(),
            TransactWriteItem::builder().update(order_update).build(),
            self.audit_put(&failed.out_trade_no, &event)?,
        ];
        let reasons = match self.transact(items).await? {
            Ok(()) => {
                let mut corrected = failed.clone();
                corrected.status = RefundStatus::Succeeded;
                corrected.updated_at_ms = now_ms;
                corrected.failure_code = None;
                corrected.failure_message = None;
                return Ok(Settlement::Corrected(corrected));
            }
            Err(reasons) => reasons,
        };
        if failed_condition(&reasons, 0) {
            // Corrected meanwhile (or changed): as it is now.
            let current = self
                .get_refund(&failed.out_trade_no, &failed.out_request_no)
                .await?
                .ok_or_else(|| StoreError::RefundNotFound(failed.out_request_no.to_string()))?;
            return match current.status {
                RefundStatus::Succeeded => Ok(Settlement::Already(current)),
                _ => Err(StoreError::IllegalTransition {
                    from: current.status.as_str().into(),
                    to: RefundStatus::Succeeded.as_str().into(),
                }),
            };
        }
        let event = AuditEvent::new("refund.discrepancy", cause, now_ms)
            .amount(failed.amount)
            .detail(format!(
                "out_request_no {}: Alipay executed it after it was recorded FAILED ({was}), and its amount is no longer refundable",
                failed.out_request_no
            ));
        self.record_event(&failed.out_trade_no, &event).await?;
        Ok(Settlement::Discrepancy(failed.clone()))
    }

    /// A PENDING refund that stayed unproven past the bound: marked once (with its
    /// `refund.unproven` audit event, in one transaction), so the discrepancy is recorded once
    /// and alarmed while it lasts. `false` when it was already marked or is no longer PENDING.
    pub async fn mark_refund_unproven(
        &self,
        refund: &Refund,
        cause: &Cause,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(order_pk(&refund.out_trade_no)))
            .key("sk", s(refund_sk(&refund.out_request_no)))
            .update_expression("SET unproven_since_ms = :now")
            .condition_expression("#status = :pending AND attribute_not_exists(unproven_since_ms)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(RefundStatus::Pending.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .build()
            .map_err(build_error)?;
        let event = AuditEvent::new("refund.unproven", cause, now_ms)
            .amount(refund.amount)
            .detail(format!(
                "out_request_no {}: no proof of its outcome from Alipay after {} sends; the money stays reserved",
                refund.out_request_no, refund.sends
            ));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.audit_put(&refund.out_trade_no, &event)?,
        ];
        Ok(self.transact(items).await?.is_ok())
    }
}

/// The day index keys of a SUCCEEDED refund: the China-time day Alipay paid it (its
/// `gmt_refund_pay` or `gmt_refund`), our clock's only when Alipay gave no time.
fn refund_day_values(
    refund: &Refund,
    refunded_at: Option<&str>,
    now_ms: i64,
) -> Vec<(String, AttributeValue)> {
    let day = day_of(refunded_at, now_ms);
    let keys = day_keys(
        &refund.out_trade_no,
        day,
        Some(refund.out_request_no.as_str()),
        refund.alipay_channel,
    );
    let mut values: Vec<(String, AttributeValue)> = day_values(keys)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    values.push((":day".to_owned(), s(day.to_string())));
    values
}

pub(super) fn refund_item(refund: &Refund) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(order_pk(&refund.out_trade_no))),
        ("sk".to_owned(), s(refund_sk(&refund.out_request_no))),
        ("kind".to_owned(), s("refund")),
        ("out_trade_no".to_owned(), s(refund.out_trade_no.as_str())),
        (
            "out_request_no".to_owned(),
            s(refund.out_request_no.as_str()),
        ),
        ("amount_fen".to_owned(), n(refund.amount.minor())),
        ("currency".to_owned(), s(refund.amount.currency().code())),
        ("status".to_owned(), s(refund.status.as_str())),
        ("created_at_ms".to_owned(), n(refund.created_at_ms)),
        ("updated_at_ms".to_owned(), n(refund.updated_at_ms)),
        ("last_send_ms".to_owned(), n(refund.last_send_ms)),
        ("sends".to_owned(), n(refund.sends)),
        ("sweeps".to_owned(), n(refund.sweeps)),
        (
            "alipay_channel".to_owned(),
            s(refund.alipay_channel.as_str()),
        ),
    ]);
    if let Some(due_at_ms) = refund.due_at_ms {
        item.insert("due_shard".to_owned(), s(due_shard(&refund.out_trade_no)));
        item.insert("due_at_ms".to_owned(), n(due_at_ms));
    }
    if let Some(since) = refund.unproven_since_ms {
        item.insert("unproven_since_ms".to_owned(), n(since));
    }
    put_opt(&mut item, "reason", refund.reason.as_deref());
    put_opt(&mut item, "failure_code", refund.failure_code.as_deref());
    put_opt(
        &mut item,
        "failure_message",
        refund.failure_message.as_deref(),
    );
    item
}

pub(super) fn parse_refund(item: &Item) -> Result<Refund, StoreError> {
    let status = get_s(item, "status")?;
    let sends: u32 = get_n_or_zero(item, "sends")?;
    let created_at_ms = get_n(item, "created_at_ms")?;
    let updated_at_ms = get_n(item, "updated_at_ms")?;
    // Items written before `last_send_ms` existed: their last change was their last send.
    let last_send_ms = match item.get("last_send_ms") {
        Some(_) => get_n(item, "last_send_ms")?,
        None if sends == 0 => created_at_ms,
        None => updated_at_ms,
    };
    Ok(Refund {
        out_trade_no: OutTradeNo::parse(get_s(item, "out_trade_no")?)
            .map_err(corrupt("out_trade_no"))?,
        out_request_no: OutRequestNo::parse(get_s(item, "out_request_no")?)
            .map_err(corrupt("out_request_no"))?,
        amount: get_money(item, "amount_fen", get_currency(item, "currency")?)?,
        reason: get_opt_s(item, "reason"),
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("refund status {status}")))?,
        failure_code: get_opt_s(item, "failure_code"),
        failure_message: get_opt_s(item, "failure_message"),
        created_at_ms,
        updated_at_ms,
        last_send_ms,
        sends,
        due_at_ms: item
            .get("due_at_ms")
            .map(|_| get_n(item, "due_at_ms"))
            .transpose()?,
        sweeps: get_n_or_zero(item, "sweeps")?,
        alipay_channel: parse_channel(item)?,
        unproven_since_ms: item
            .get("unproven_since_ms")
            .map(|_| get_n(item, "unproven_since_ms"))
            .transpose()?,
    })
}

/// A new PENDING refund, never sent, due for the sweeper at `due_at_ms`.
pub(super) fn pending_refund(
    out_trade_no: &OutTradeNo,
    refund: &NewRefund,
    due_at_ms: i64,
    now_ms: i64,
) -> Refund {
    Refund {
        out_trade_no: out_trade_no.clone(),
        out_request_no: refund.out_request_no.clone(),
        amount: refund.amount,
        reason: refund.reason.clone(),
        status: RefundStatus::Pending,
        failure_code: None,
        failure_message: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        last_send_ms: now_ms,
        sends: 0,
        due_at_ms: Some(due_at_ms),
        sweeps: 0,
        alipay_channel: refund.alipay_channel,
        unproven_since_ms: None,
    }
}
