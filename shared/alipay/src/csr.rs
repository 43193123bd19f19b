//! A PKCS#10 certificate request (CSR) for the application certificate, signed by the
//! [`Signer`]: with KMS, the private key never leaves it. The merchant uploads the request to
//! Alipay's open platform and receives `appCertPublicKey_<app_id>.crt`.
//!
//! The ASN.1 is `x509-cert`'s; only the signature comes from the signer (sha256WithRSA, the
//! RSA2 signature every request already carries).

use std::str::FromStr as _;

use x509_cert::der::asn1::{BitString, Null, SetOfVec};
use x509_cert::der::{Any, Decode as _, Encode as _};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};
use x509_cert::spki::{AlgorithmIdentifier, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use super::cert::pem_encode;
use super::keys::PublicKey;
use super::signer::{SignError, Signer};

/// sha256WithRSAEncryption.
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error(
        "the subject \"{0}\" is not a distinguished name like \"CN=2021000123456789,O=Example Ltd,C=CN\""
    )]
    Subject(String),
    #[error("encoding the request: {0}")]
    Encoding(String),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A PEM `CERTIFICATE REQUEST` for `public_key` with `subject` (RFC 4514, most specific
/// first), signed once by `signer`, which must hold the private half of `public_key`.
pub async fn certificate_request(
    subject: &str,
    public_key: &PublicKey,
    signer: &dyn Signer,
) -> Result<String, CsrError> {
    let encoding = |e: x509_cert::der::Error| CsrError::Encoding(e.to_string());
    let name = Name::from_str(subject.trim())
        .ok()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| CsrError::Subject(subject.to_owned()))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&public_key.to_spki_der()).map_err(encoding)?;
    let info = CertReqInfo {
        version: Version::V1,
        subject: name,
        public_key: spki,
        attributes: SetOfVec::new(),
    };
    let signed_bytes = info.to_der().map_err(encoding)?;
    let signature = signer.sign(&signed_bytes).await?;
    let request = CertReq {
        info,
        algorithm: AlgorithmIdentifier {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::from(Null)),
        },
        signature: BitString::from_bytes(&signature).map_err(encoding)?,
    };
    let der = request.to_der().map_err(encoding)?;
    Ok(pem_encode("CERTIFICATE REQUEST", &der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalKeySigner;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    struct Refusing;
    impl Signer for Refusing {
        fn sign<'a>(
            &'a self,
            _: &'a [u8],
        ) -> crate::signer::BoxFuture<'a, Result<Vec<u8>, SignError>> {
            Box::pin(std::future::ready(Err(SignError::Refused(
                "disabled".into(),
            ))))
        }
    }

    fn key() -> crate::AppPrivateKey {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/keys/app_private_key.pem"
        );
        crate::AppPrivateKey::parse(&std::fs::read_to_string(path).expect("key")).expect("key")
    }

    /// Polls a future that needs no runtime (the local signer's is ready at once): the protocol
    /// crate has no async runtime, not even for its tests.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut context) {
                return out;
            }
        }
    }

    #[test]
    fn a_request_is_signed_over_its_info_and_names_its_subject() {
        let key = key();
        let signer = LocalKeySigner::new(&key);
        let pem = block_on(certificate_request(
            "CN=2021000123456789,O=Example Ltd,C=CN",
            &key.public_key(),
            &signer,
        ))
        .expect("csr");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let request = CertReq::from_der(&BASE64.decode(body).expect("base64")).expect("DER");
        assert_eq!(
            request.info.subject.to_string(),
            "CN=2021000123456789,O=Example Ltd,C=CN"
        );
        let signed = request.info.to_der().expect("der");
        let signature = request.signature.as_bytes().expect("bytes");
        key.public_key()
            .verify_bytes(&signed, signature)
            .expect("signature verifies");
    }

    #[test]
    fn bad_subjects_and_refusals_are_named() {
        let key = key();
        let signer = LocalKeySigner::new(&key);
        for subject in ["", "not a name", "CN"] {
            assert!(
                matches!(
                    block_on(certificate_request(subject, &key.public_key(), &signer)),
                    Err(CsrError::Subject(_))
                ),
                "{subject}"
            );
        }
        assert!(matches!(
            block_on(certificate_request("CN=x", &key.public_key(), &Refusing)),
            Err(CsrError::Sign(SignError::Refused(_)))
        ));
    }
}
