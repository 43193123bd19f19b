//! The day index (`DayIndexV2`) for reconciliation: a paid order carries the China-time day of
//! its payment, a SUCCEEDED refund the day of its refund, so a day's records are read with
//! Queries, never a Scan. Sparse: unpaid orders and unsettled refunds are not in it.
//!
//! | attribute | value |
//! |-----------|-------|
//! | `day_key` | `DAY#<yyyy-MM-dd>#<shard>`: 16 partitions a day, so a busy day's writes never make one hot partition; `DAY#<yyyy-MM-dd>#<shard>#<channel>` for a channel other than the primary (each channel has its own bill) |
//! | `day_sk`  | `<hash>#O` for the order, `<hash>#R#<out_request_no>` for a refund; `<hash>` is 16 hex digits of SHA-256 of `out_trade_no` |
//!
//! The hash leads the sort key so that a reconciliation can read one range of hashes at a time
//! (a pass), keeping memory bounded however large the day.
//!
//! The summary of a day's reconciliation is one item: `pk = RECON#<yyyy-MM-dd>` (the primary
//! channel's; `RECON#<yyyy-MM-dd>#<channel>` another's), `sk = SUMMARY`.

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest as _, Sha256};

use super::{Item, Store, StoreError, get_currency, get_money, get_opt_s, get_s, n, s, sdk_error};
use alipay::china_time::ChinaDate;
use alipay::ids::OutTradeNo;
use domain::channel::ChannelId;
use domain::reconciliation::DayEntry;
use domain::states::{Order, Refund};

/// The index read (`DayIndexV2`: with each record's currency and recorded settlement).
pub const DAY_INDEX: &str = "DayIndexV2";
pub const DAY_SHARDS: u8 = 16;

/// The stable 64-bit hash of an order number that places it (and its refunds) in the index.
pub fn bill_hash(out_trade_no: &str) -> u64 {
    placement(out_trade_no).0
}

/// The hash (the first 8 bytes of SHA-256) and the shard (from its last byte), from one digest.
fn placement(out_trade_no: &str) -> (u64, u8) {
    let digest = Sha256::digest(out_trade_no.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first), digest[31] % DAY_SHARDS)
}

/// `(day_key, day_sk)` of an order (`refund` = `None`) or of one of its refunds.
pub(super) fn day_keys(
    out_trade_no: &OutTradeNo,
    day: ChinaDate,
    refund: Option<&str>,
    channel: ChannelId,
) -> (String, String) {
    let (hash, shard) = placement(out_trade_no.as_str());
    let key = day_partition(day, shard, channel);
    let sort = match refund {
        None => format!("{hash:016x}#O"),
        Some(out_request_no) => format!("{hash:016x}#R#{out_request_no}"),
    };
    (key, sort)
}

/// One shard of a channel's day in the index.
fn day_partition(day: ChinaDate, shard: u8, channel: ChannelId) -> String {
    match channel {
        ChannelId::Primary => format!("DAY#{day}#{shard}"),
        other => format!("DAY#{day}#{shard}#{other}"),
    }
}

/// A channel's reconciliation summary item.
fn summary_pk(day: ChinaDate, channel: ChannelId) -> String {
    match channel {
        ChannelId::Primary => format!("RECON#{day}"),
        other => format!("RECON#{day}#{other}"),
    }
}

/// The day a payment counts on: Alipay's payment time when it gave one, else when we recorded it.
pub(super) fn day_of(alipay_time: Option<&str>, now_ms: i64) -> ChinaDate {
    alipay_time
        .and_then(ChinaDate::of_alipay_time)
        .unwrap_or_else(|| ChinaDate::of_unix(now_ms.div_euclid(1000)))
}

impl Store {
    /// The day's records in one shard whose hash lies in `[low, high]`, all pages.
    pub async fn day_entries(
        &self,
        channel: ChannelId,
        day: ChinaDate,
        shard: u8,
        low: u64,
        high: u64,
    ) -> Result<(Vec<DayEntry>, u32), StoreError> {
        let mut entries = Vec::new();
        let mut pages = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DAY_INDEX)
                .key_condition_expression("day_key = :key AND day_sk BETWEEN :low AND :high")
                .expression_attribute_values(":key", s(day_partition(day, shard, channel)))
                .expression_attribute_values(":low", s(format!("{low:016x}")))
                // `~` sorts after `#`: every suffix of the highest hash is inside.
                .expression_attribute_values(":high", s(format!("{high:016x}~")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(&e))?;
            pages += 1;
            for item in page.items.unwrap_or_default() {
                entries.push(parse_entry(&item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok((entries, pages)),
            }
        }
    }

    /// Writes paid orders and their SUCCEEDED refunds of `day` exactly as the gateway stores
    /// them, day index included, 25 items per BatchWriteItem. For migrations and benchmarks
    /// (a generated day of 100,000 payments); no function calls it.
    pub async fn import_day_records(
        &self,
        day: ChinaDate,
        records: &[(Order, Vec<Refund>)],
    ) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let mut items = Vec::new();
        for (order, refunds) in records {
            let mut item = super::orders::order_item(order);
            let (key, sort) = day_keys(&order.out_trade_no, day, None, order.alipay_channel);
            item.insert("day_key".into(), s(key));
            item.insert("day_sk".into(), s(sort));
            items.push(item);
            for refund in refunds {
                let mut item = super::refunds::refund_item(refund);
                let (key, sort) = day_keys(
                    &refund.out_trade_no,
                    day,
                    Some(refund.out_request_no.as_str()),
                    refund.alipay_channel,
                );
                item.insert("day_key".into(), s(key));
                item.insert("day_sk".into(), s(sort));
                items.push(item);
            }
        }
        for chunk in items.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for item in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map_err(super::build_error)?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            let mut pending = Some(requests);
            while let Some(batch) = pending.take().filter(|b| !b.is_empty()) {
                let answer = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .map_err(|e| sdk_error(&e))?;
                pending = answer
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table));
            }
        }
        Ok(())
    }

    /// Stores the summary of a day's reconciliation, replacing an earlier run's.
    pub async fn put_reconciliation_summary(
        &self,
        channel: ChannelId,
        day: ChinaDate,
        summary: &serde_json::Value,
        status: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(summary_pk(day, channel)))
            .item("channel", s(channel.as_str()))
            .item("sk", s("SUMMARY"))
            .item("kind", s("reconciliation"))
            .item("status", s(status))
            .item("summary", s(summary.to_string()))
            .item("updated_at_ms", n(now_ms))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    /// The stored summary of a day's reconciliation: its status and the summary JSON.
    pub async fn reconciliation_summary(
        &self,
        channel: ChannelId,
        day: ChinaDate,
    ) -> Result<Option<(String, serde_json::Value)>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(summary_pk(day, channel)))
            .key("sk", s("SUMMARY"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        let Some(item) = answer.item else {
            return Ok(None);
        };
        let summary = serde_json::from_str(&get_s(&item, "summary")?)
            .map_err(|e| StoreError::Corrupt(format!("summary: {e}")))?;
        Ok(Some((get_s(&item, "status")?, summary)))
    }
}

fn parse_entry(item: &Item) -> Result<DayEntry, StoreError> {
    let pk = get_s(item, "pk")?;
    let sk = get_s(item, "sk")?;
    let out_trade_no = pk
        .strip_prefix("ORDER#")
        .ok_or_else(|| StoreError::Corrupt(format!("day index item {pk}")))?
        .to_owned();
    if let Some(out_request_no) = sk.strip_prefix("REFUND#") {
        return Ok(DayEntry::Refund {
            out_trade_no,
            out_request_no: out_request_no.to_owned(),
            amount: get_money(item, "amount_fen", get_currency(item, "currency")?)?,
        });
    }
    Ok(DayEntry::Payment {
        out_trade_no,
        trade_no: get_opt_s(item, "trade_no"),
        paid: get_money(item, "paid_fen", get_currency(item, "currency")?)?,
        status: get_s(item, "status")?,
        settled: super::orders::parse_settlement(item)?.map(|facts| facts.amount),
    })
}

/// The attributes that put an item in the index.
pub(super) fn day_values(keys: (String, String)) -> [(&'static str, AttributeValue); 2] {
    [(":day_key", s(keys.0)), (":day_sk", s(keys.1))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_place_an_order_and_its_refunds_together() {
        let no = OutTradeNo::parse("o_1").expect("id");
        let day = ChinaDate::parse("2026-11-26").expect("day");
        let (key, order) = day_keys(&no, day, None, ChannelId::Primary);
        let (refund_key, refund) = day_keys(&no, day, Some("r_1"), ChannelId::Primary);
        assert!(key.starts_with("DAY#2026-11-26#"));
        assert_eq!(key, refund_key);
        // Another channel's day is a partition of its own (its own bill), same sort keys.
        let (secondary, secondary_sk) = day_keys(&no, day, None, ChannelId::Secondary);
        assert_eq!(secondary, format!("{key}#secondary"));
        assert_eq!(secondary_sk, order);
        assert_eq!(
            summary_pk(day, ChannelId::Secondary),
            "RECON#2026-11-26#secondary"
        );
        assert_eq!(summary_pk(day, ChannelId::Primary), "RECON#2026-11-26");
        let hash = format!("{:016x}", bill_hash("o_1"));
        assert_eq!(order, format!("{hash}#O"));
        assert_eq!(refund, format!("{hash}#R#r_1"));
        // The BETWEEN bounds of a pass include every suffix of the highest hash.
        assert!(refund.as_str() < format!("{hash}~").as_str());
        assert!(order.as_str() >= hash.as_str());
    }

    #[test]
    fn the_day_is_alipays_china_time_day() {
        // 23:59:59 in Beijing on the 26th, recorded at 00:00:30 on the 27th.
        let recorded_ms = ChinaDate::parse("2026-11-27").expect("day").start_unix() * 1000 + 30_000;
        assert_eq!(
            day_of(Some("2026-11-26 23:59:59"), recorded_ms).to_string(),
            "2026-11-26"
        );
        assert_eq!(day_of(None, recorded_ms).to_string(), "2026-11-27");
        assert_eq!(
            day_of(Some("garbage"), recorded_ms).to_string(),
            "2026-11-27"
        );
    }
}
