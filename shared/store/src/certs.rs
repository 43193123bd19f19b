//! Alipay certificates learned at run time (certificate mode): when Alipay rotates its
//! certificate, the first function that meets the new SN downloads it, checks it, and keeps it
//! here, so that the notify function (which never calls Alipay) and new processes know it.
//!
//! | item                | pk             | sk     |
//! |---------------------|----------------|--------|
//! | Alipay certificate  | `ALIPAY_CERTS` | `<sn>` |
//! | a probe is wanted   | `ALIPAY_CERTS` | `PROBE` |
//!
//! The probe: a notification no held certificate verifies (Alipay rotated, and no function has
//! met the new certificate yet: a shop with only cashier payments makes no server call) asks
//! the sweeper to make one call, whose answer names Alipay's current certificate; the client
//! then learns it, and Alipay's next delivery of the notification verifies.
//! One Query reads them all (a handful over years); each expires 30 days after its `notAfter`.
//! What is read back is checked again (chain to the configured roots) before it is trusted.

use super::{Store, StoreError, get_opt_s, n, s, sdk_error};

const CERTS_PK: &str = "ALIPAY_CERTS";
const PROBE_SK: &str = "PROBE";
const KEEP_AFTER_EXPIRY_SECONDS: u64 = 30 * 86_400;

/// One stored certificate: its SN and PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCert {
    pub sn: String,
    pub pem: String,
}

impl Store {
    /// Keeps a checked Alipay certificate (a rewrite of the same SN is harmless).
    pub async fn put_alipay_cert(
        &self,
        sn: &str,
        pem: &str,
        not_after_unix: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CERTS_PK))
            .item("sk", s(sn))
            .item("pem", s(pem))
            .item("learned_at_ms", n(now_ms))
            .item(
                "expires_at",
                n(not_after_unix.saturating_add(KEEP_AFTER_EXPIRY_SECONDS)),
            )
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    /// The certificate stored for `sn`.
    pub async fn alipay_cert(&self, sn: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CERTS_PK))
            .key("sk", s(sn))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(output.item().and_then(|item| get_opt_s(item, "pem")))
    }

    /// Asks the sweeper for a probe (see the module's notes); a repeat only moves its time.
    pub async fn want_cert_probe(&self, now_ms: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CERTS_PK))
            .item("sk", s(PROBE_SK))
            .item("wanted_at_ms", n(now_ms))
            .item("expires_at", n(now_ms / 1000 + 86_400))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    /// When a probe was asked for, if one is wanted.
    pub async fn cert_probe_wanted(&self) -> Result<Option<i64>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CERTS_PK))
            .key("sk", s(PROBE_SK))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(output
            .item()
            .and_then(|item| item.get("wanted_at_ms"))
            .and_then(|v| v.as_n().ok())
            .and_then(|text| text.parse().ok()))
    }

    /// The probe asked for at `wanted_at_ms` was made (a newer request stays).
    pub async fn probe_done(&self, wanted_at_ms: i64) -> Result<(), StoreError> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(CERTS_PK))
            .key("sk", s(PROBE_SK))
            .condition_expression("wanted_at_ms = :seen")
            .expression_attribute_values(":seen", n(wanted_at_ms))
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

    /// Every stored certificate (one Query).
    pub async fn alipay_certs(&self) -> Result<Vec<StoredCert>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(CERTS_PK))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(output
            .items()
            .iter()
            .filter(|item| item.contains_key("pem"))
            .filter_map(|item| {
                Some(StoredCert {
                    sn: get_opt_s(item, "sk")?,
                    pem: get_opt_s(item, "pem")?,
                })
            })
            .collect())
    }
}
