//! What the gateway trusts Alipay's signatures with: Alipay's public key (key mode; more than one
//! during a rotation), or, in certificate mode, Alipay's certificates by SN, each chained to the
//! configured root bundle, with the SNs every request carries.

use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use super::cert::{
    Cert, CertError, app_cert_sn, leaves, parse_pem_bundle, root_cert_sn, verify_chain,
};
use super::keys::PublicKey;

/// The two SNs a certificate-mode request carries (signed like every common parameter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSns {
    pub app_cert_sn: String,
    pub alipay_root_cert_sn: String,
}

#[derive(Debug)]
enum Mode {
    Keys,
    Certs {
        roots: Vec<Cert>,
        sns: CertSns,
        app_key: PublicKey,
    },
}

/// Which key verifies an answer naming `alipay_cert_sn` (or none).
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// These keys, tried in order.
    Keys(Vec<PublicKey>),
    /// Certificate mode, and the SN is not one we hold: fetch it
    /// (`alipay.open.app.alipaycert.download`), then [`AlipayTrust::learn`] it.
    Unknown(String),
}

/// Alipay's keys for one application. Shared by every request of a process; certificates
/// learned at run time are added under a lock.
#[derive(Debug)]
pub struct AlipayTrust {
    mode: Mode,
    /// (SN, key): the SN is empty in key mode.
    keys: RwLock<Vec<(String, PublicKey)>>,
    /// When certificates kept by other functions were last looked for (Unix ms).
    last_lookup_ms: AtomicI64,
}

impl AlipayTrust {
    /// Key mode: Alipay's public key, or several during a rotation (the first is tried first).
    pub fn keys(keys: Vec<PublicKey>) -> AlipayTrust {
        AlipayTrust {
            mode: Mode::Keys,
            keys: RwLock::new(keys.into_iter().map(|k| (String::new(), k)).collect()),
            last_lookup_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Certificate mode from the three files the open platform gives: the application
    /// certificate, Alipay's public certificate (several concatenated during a rotation) and
    /// Alipay's root bundle. The application certificate must be valid at `now_unix`, and each
    /// Alipay certificate must chain to the bundle. An Alipay certificate that has merely
    /// expired is left out (logged), not refused: Alipay rotates its certificate by itself and
    /// the functions learn the new one from its answers, so the file in S3 ages without harm.
    pub fn certificates(
        app_cert: &str,
        alipay_cert: &str,
        root_bundle: &str,
        now_unix: u64,
    ) -> Result<AlipayTrust, TrustError> {
        let app = parse_pem_bundle(app_cert).map_err(TrustError::AppCert)?;
        let roots = parse_pem_bundle(root_bundle).map_err(TrustError::RootCert)?;
        let alipay = parse_pem_bundle(alipay_cert).map_err(TrustError::AlipayCert)?;
        let app_leaf = leaves(&app)
            .first()
            .map(|c| (*c).clone())
            .ok_or(TrustError::AppCert(CertError::Empty))?;
        app_leaf
            .check_validity(now_unix)
            .map_err(TrustError::AppCert)?;
        let days_left = app_leaf.validity().1.saturating_sub(now_unix) / 86_400;
        if days_left < 30 {
            tracing::warn!(
                days_left,
                "the application certificate expires soon: upload a new CSR (alipay-cli csr) on Alipay's open platform"
            );
        }
        let mut keys = Vec::new();
        for leaf in leaves(&alipay) {
            if !leaf.is_valid_at(now_unix) {
                tracing::warn!(
                    sn = leaf.sn(),
                    "Alipay's configured certificate has expired; the current one is learned from Alipay's answers (replace alipayCertPublicKey_RSA2.crt to silence this)"
                );
                continue;
            }
            verify_chain(leaf, &alipay, &roots, now_unix).map_err(TrustError::AlipayCert)?;
            keys.push((
                leaf.sn().to_owned(),
                leaf.public_key().map_err(TrustError::AlipayCert)?,
            ));
        }
        let sns = CertSns {
            app_cert_sn: app_cert_sn(&app).map_err(TrustError::AppCert)?,
            alipay_root_cert_sn: root_cert_sn(&roots).map_err(TrustError::RootCert)?,
        };
        let app_key = app_leaf.public_key().map_err(TrustError::AppCert)?;
        Ok(AlipayTrust {
            mode: Mode::Certs {
                roots,
                sns,
                app_key,
            },
            keys: RwLock::new(keys),
            last_lookup_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// The SNs requests carry, in certificate mode.
    pub fn cert_sns(&self) -> Option<&CertSns> {
        match &self.mode {
            Mode::Keys => None,
            Mode::Certs { sns, .. } => Some(sns),
        }
    }

    /// Certificate mode: the public key in the application certificate (it must be the KMS
    /// key's).
    pub fn app_cert_key(&self) -> Option<&PublicKey> {
        match &self.mode {
            Mode::Keys => None,
            Mode::Certs { app_key, .. } => Some(app_key),
        }
    }

    /// Certificate mode: the SNs for another application certificate of the same application
    /// (a standby key's), with its public key; the certificate must be valid at `now_unix`.
    pub fn sns_for_app_cert(
        &self,
        app_cert: &str,
        now_unix: u64,
    ) -> Result<Option<(CertSns, PublicKey)>, TrustError> {
        let Mode::Certs { sns, .. } = &self.mode else {
            return Ok(None);
        };
        let app = parse_pem_bundle(app_cert).map_err(TrustError::AppCert)?;
        let leaf = leaves(&app)
            .first()
            .map(|c| (*c).clone())
            .ok_or(TrustError::AppCert(CertError::Empty))?;
        leaf.check_validity(now_unix).map_err(TrustError::AppCert)?;
        Ok(Some((
            CertSns {
                app_cert_sn: leaf.sn().to_owned(),
                alipay_root_cert_sn: sns.alipay_root_cert_sn.clone(),
            },
            leaf.public_key().map_err(TrustError::AppCert)?,
        )))
    }

    pub fn is_certificate_mode(&self) -> bool {
        matches!(self.mode, Mode::Certs { .. })
    }

    /// Every key held (configured and learned), for notifications.
    pub fn all_keys(&self) -> Vec<PublicKey> {
        self.read().iter().map(|(_, key)| key.clone()).collect()
    }

    /// The SNs of the Alipay certificates held (empty in key mode).
    pub fn known_sns(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(sn, _)| !sn.is_empty())
            .map(|(sn, _)| sn.clone())
            .collect()
    }

    /// The key(s) for an answer naming `alipay_cert_sn`. Key mode ignores the SN; certificate
    /// mode without an SN tries every certificate held.
    pub fn lookup(&self, alipay_cert_sn: Option<&str>) -> Lookup {
        let keys = self.read();
        match (&self.mode, alipay_cert_sn) {
            (Mode::Certs { .. }, Some(sn)) => match keys.iter().find(|(held, _)| held == sn) {
                Some((_, key)) => Lookup::Keys(vec![key.clone()]),
                None => Lookup::Unknown(sn.to_owned()),
            },
            _ => Lookup::Keys(keys.iter().map(|(_, key)| key.clone()).collect()),
        }
    }

    /// Adds Alipay's certificate named `sn` from its PEM text (a download, or one stored by
    /// another function), after checking that its leaf has that SN and chains to the roots at
    /// `now_unix`. Key mode learns nothing. The certificate's `notAfter` (Unix seconds).
    pub fn learn(&self, pem: &str, sn: &str, now_unix: u64) -> Result<u64, CertError> {
        let Mode::Certs { roots, .. } = &self.mode else {
            return Err(CertError::Empty);
        };
        let certs = parse_pem_bundle(pem)?;
        let leaf = leaves(&certs)
            .into_iter()
            .find(|leaf| leaf.sn() == sn)
            .ok_or_else(|| CertError::Untrusted {
                sn: sn.to_owned(),
                issuer: "(no certificate with this SN in the download)".into(),
            })?
            .clone();
        verify_chain(&leaf, &certs, roots, now_unix)?;
        let key = leaf.public_key()?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if !keys.iter().any(|(held, _)| held == sn) {
            keys.push((sn.to_owned(), key));
        }
        Ok(leaf.validity().1)
    }

    /// Whether to look for certificates other functions kept, at most once per `interval_ms`
    /// (a forged notification must not cost a read each).
    pub fn lookup_due(&self, now_ms: i64, interval_ms: i64) -> bool {
        let last = self.last_lookup_ms.load(Ordering::Relaxed);
        (last == i64::MIN || now_ms.saturating_sub(last) >= interval_ms)
            && self
                .last_lookup_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, PublicKey)>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A certificate-mode configuration that cannot be used, naming the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the application certificate (appCertPublicKey_<app_id>.crt): {0}")]
    AppCert(CertError),
    #[error("Alipay's public certificate (alipayCertPublicKey_RSA2.crt): {0}")]
    AlipayCert(CertError),
    #[error("Alipay's root certificate (alipayRootCert.crt): {0}")]
    RootCert(CertError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/certs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).expect("fixture")
    }

    /// 2021-08-31: the published application certificate (until 2021-09-02) is still valid,
    /// Alipay's (until 2021-08-29) has expired.
    const AFTER_ALIPAYS_EXPIRY: u64 = 1_630_368_000;
    /// 2020-06-01: both valid.
    const IN_2020: u64 = 1_590_969_600;

    #[test]
    fn the_published_files_make_a_trust_with_their_sns() {
        let trust = AlipayTrust::certificates(
            &fixture("appCertPublicKey.crt"),
            &fixture("alipayCertPublicKey_RSA2.crt"),
            &fixture("alipayRootCert.crt"),
            IN_2020,
        )
        .expect("trust");
        let sns = trust.cert_sns().expect("certificate mode");
        assert_eq!(sns.app_cert_sn, "4498aaa8ab0c8986c15c41b36186db7d");
        assert_eq!(
            sns.alipay_root_cert_sn,
            "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
        );
        assert_eq!(trust.known_sns(), ["04afd423ea5bd6f5c5482854ed73278c"]);
        assert!(matches!(
            trust.lookup(Some("04afd423ea5bd6f5c5482854ed73278c")),
            Lookup::Keys(keys) if keys.len() == 1
        ));
        assert_eq!(
            trust.lookup(Some("ffffffffffffffffffffffffffffffff")),
            Lookup::Unknown("ffffffffffffffffffffffffffffffff".into())
        );
    }

    #[test]
    fn an_expired_alipay_certificate_is_left_out_an_expired_app_certificate_refused() {
        let trust = AlipayTrust::certificates(
            &fixture("appCertPublicKey.crt"),
            &fixture("alipayCertPublicKey_RSA2.crt"),
            &fixture("alipayRootCert.crt"),
            AFTER_ALIPAYS_EXPIRY,
        )
        .expect("starts: Alipay's current certificate is learned at run time");
        assert!(trust.known_sns().is_empty());
        let later = AFTER_ALIPAYS_EXPIRY + 7 * 86_400;
        assert!(matches!(
            AlipayTrust::certificates(
                &fixture("appCertPublicKey.crt"),
                &fixture("alipayCertPublicKey_RSA2.crt"),
                &fixture("alipayRootCert.crt"),
                later,
            ),
            Err(TrustError::AppCert(CertError::NotValidNow { .. }))
        ));
    }
}
