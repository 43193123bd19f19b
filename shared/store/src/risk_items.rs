//! Fraud-check items: the counters a payment's creation adds to (one item per subject and
//! China-time day, hours as attributes; each a single-item conditional write, never inside a
//! transaction, so a hot counter serializes instead of cancelling), a customer's paid history
//! and the customers a buyer paid for. Keys carry digests, never a customer ref, an IP or a
//! buyer id as it is.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | counter | `RISK#C#<digest>` / `RISK#I#<digest>` | `DAY#<yyyy-MM-dd>` (expires after 2 days) |
//! | customer history | `RISK#C#<digest>` | `HISTORY` (expires 400 days after the last payment) |
//! | buyer's customers | `RISK#B#<digest>` | `CUSTOMERS` (expires 400 days after the last payment) |

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::*;
use domain::risk::{Counter, Counts, History};

const HISTORY_DAYS: i64 = 400;

impl Store {
    /// Adds a payment to its counters (at most two: the customer's and the buyer IP's), each a
    /// conditional single-item `ADD`, both at once. Single-item writes to one item are
    /// serialized by DynamoDB, where transactions touching it would cancel each other
    /// (`TransactionConflict`): a hot counter (one buyer IP behind a NAT, a busy customer) never
    /// turns concurrent creates into failures. A limit a counter would pass refuses the payment
    /// ([`StoreError::RiskRefused`]) and takes it back out of the other counter.
    pub async fn count_payment(
        &self,
        counters: &[Counter],
        amount: Amount,
    ) -> Result<(), StoreError> {
        let (first, second) = match counters {
            [] => return Ok(()),
            [only] => (self.add_to_counter(only, amount).await, None),
            [first, second, ..] => {
                let (a, b) = tokio::join!(
                    self.add_to_counter(first, amount),
                    self.add_to_counter(second, amount)
                );
                (a, Some(b))
            }
        };
        let results = [Some(first), second];
        let refusal = results.iter().flatten().find_map(|r| match r {
            Ok(Err(refusal)) => Some(Ok(refusal.clone())),
            Err(error) => Some(Err(error.clone())),
            Ok(Ok(())) => None,
        });
        match refusal {
            None => Ok(()),
            Some(outcome) => {
                // Take back what was counted; a write whose outcome is unknown stays counted
                // (stricter, never looser).
                let counted: Vec<&Counter> = counters
                    .iter()
                    .zip(results.iter())
                    .filter(|(_, r)| matches!(r, Some(Ok(Ok(())))))
                    .map(|(c, _)| c)
                    .collect();
                self.uncount_payment(&counted, amount).await;
                match outcome {
                    Ok(refusal) => Err(StoreError::RiskRefused {
                        rule: refusal.rule.to_owned(),
                        message: refusal.message,
                    }),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// Takes a payment back out of counters it was added to (its creation did not happen, or
    /// was a repeat). Best effort: a counter left too high only refuses sooner.
    pub async fn uncount_payment(&self, counters: &[&Counter], amount: Amount) {
        for counter in counters {
            let fen = i64::try_from(amount.fen()).unwrap_or(i64::MAX);
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&counter.pk))
                .key("sk", s(&counter.sk))
                .update_expression(
                    "ADD n :minus_one, fen :minus_amount, #hn :minus_one, #hf :minus_amount",
                )
                .expression_attribute_names("#hn", format!("h{}n", counter.hour))
                .expression_attribute_names("#hf", format!("h{}f", counter.hour))
                .expression_attribute_values(":minus_one", n(-1))
                .expression_attribute_values(":minus_amount", n(-fen))
                .send()
                .await;
            if let Err(error) = result {
                tracing::warn!(error = %sdk_error(&error), "a fraud counter could not be taken back (it refuses sooner until its day ends)");
            }
        }
    }

    /// The conditional `ADD` of one payment to a counter: every configured limit is a condition
    /// (DynamoDB conditions have no arithmetic, so an amount limit is compared with what is
    /// left of it after this payment). `Ok(Err(refusal))` when a limit refused it.
    async fn add_to_counter(
        &self,
        counter: &Counter,
        amount: Amount,
    ) -> Result<Result<(), domain::risk::Refusal>, StoreError> {
        let fen = amount.fen();
        let mut conditions = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&counter.pk))
            .key("sk", s(&counter.sk))
            .expression_attribute_names("#hn", format!("h{}n", counter.hour))
            .expression_attribute_names("#hf", format!("h{}f", counter.hour))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":amount", n(fen))
            .expression_attribute_values(":ttl", n(counter.expires_at));
        let limits = &counter.limits;
        for (attribute, count, tag) in [
            ("n", limits.day.count, "d"),
            ("#hn", limits.hour.count, "h"),
        ] {
            if let Some(count) = count {
                conditions.push(format!(
                    "(attribute_not_exists({attribute}) OR {attribute} < :{tag}n)"
                ));
                update = update.expression_attribute_values(format!(":{tag}n"), n(count));
            }
        }
        for (attribute, amount, tag) in [
            ("fen", limits.day.amount, "d"),
            ("#hf", limits.hour.amount, "h"),
        ] {
            if let Some(limit) = amount {
                let left = limit.fen().saturating_sub(fen);
                conditions.push(format!(
                    "(attribute_not_exists({attribute}) OR {attribute} <= :{tag}left)"
                ));
                update = update.expression_attribute_values(format!(":{tag}left"), n(left));
            }
        }
        let mut add = "n :one, fen :amount, #hn :one, #hf :amount".to_owned();
        if let Some((customer, max)) = &counter.distinct {
            conditions.push(
                "(attribute_not_exists(custs) OR contains(custs, :customer) OR size(custs) < :maxc)"
                    .to_owned(),
            );
            add.push_str(", custs :customers");
            update = update
                .expression_attribute_values(":customer", s(customer))
                .expression_attribute_values(
                    ":customers",
                    AttributeValue::Ss(vec![customer.clone()]),
                )
                .expression_attribute_values(":maxc", n(*max));
        }
        update = update.update_expression(format!("ADD {add} SET expires_at = :ttl"));
        if !conditions.is_empty() {
            update = update
                .condition_expression(conditions.join(" AND "))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        match update.send().await {
            Ok(_) => Ok(Ok(())),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let held = failed.item().map(counts_of(counter)).unwrap_or_default();
                    Ok(Err(domain::risk::tripped(counter, &held, amount)))
                }
                _ => Err(sdk_error(&error)),
            },
        }
    }

    /// A customer's paid history and the customers a buyer paid for: one `BatchGetItem`.
    pub async fn risk_history(
        &self,
        customer: &str,
        buyer: Option<&str>,
    ) -> Result<History, StoreError> {
        let mut keys = vec![key(format!("RISK#C#{customer}"), "HISTORY")];
        if let Some(buyer) = buyer {
            keys.push(key(format!("RISK#B#{buyer}"), "CUSTOMERS"));
        }
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(build_error)?;
        let answer = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        let mut history = History::default();
        for item in answer
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default()
        {
            match get_s(&item, "sk")?.as_str() {
                "HISTORY" => {
                    history.customer_paid_count = get_n_or_zero(&item, "paid_n")?;
                    history.customer_paid_fen = get_n_or_zero(&item, "paid_fen")?;
                }
                _ => {
                    history.buyer_customers = item
                        .get("custs")
                        .and_then(|v| v.as_ss().ok())
                        .cloned()
                        .unwrap_or_default();
                }
            }
        }
        Ok(history)
    }

    /// The history a paid payment adds to, written in the paid transition's transaction.
    pub(super) fn history_updates(
        &self,
        risk: &PaidRisk,
        amount: Amount,
        now_ms: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let ttl = now_ms.div_euclid(1000) + HISTORY_DAYS * 86_400;
        let mut items = vec![
            Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("RISK#C#{}", risk.customer)))
                .key("sk", s("HISTORY"))
                .update_expression("ADD paid_n :one, paid_fen :amount SET expires_at = :ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":amount", n(amount.fen()))
                .expression_attribute_values(":ttl", n(ttl))
                .build()
                .map_err(build_error)?,
        ];
        if let Some(buyer) = &risk.buyer {
            items.push(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(format!("RISK#B#{buyer}")))
                    .key("sk", s("CUSTOMERS"))
                    .update_expression("ADD custs :customer SET expires_at = :ttl")
                    .expression_attribute_values(
                        ":customer",
                        AttributeValue::Ss(vec![risk.customer.clone()]),
                    )
                    .expression_attribute_values(":ttl", n(ttl))
                    .build()
                    .map_err(build_error)?,
            );
        }
        Ok(items
            .into_iter()
            .map(|update| TransactWriteItem::builder().update(update).build())
            .collect())
    }
}

fn key(pk: String, sk: &str) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// What a counter item held (from a failed condition's `ALL_OLD`).
fn counts_of(counter: &Counter) -> impl Fn(&Item) -> Counts + '_ {
    move |item| {
        let number = |name: &str| -> u64 {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let customers = item
            .get("custs")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        Counts {
            day_count: number("n"),
            day_fen: number("fen"),
            hour_count: number(&format!("h{}n", counter.hour)),
            hour_fen: number(&format!("h{}f", counter.hour)),
            customers: customers.len() as u64,
            has_customer: counter
                .distinct
                .as_ref()
                .is_some_and(|(customer, _)| customers.contains(customer)),
        }
    }
}
