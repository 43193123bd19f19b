//! Public-key certificate mode (公钥证书): the certificates Alipay's open platform issues, their
//! SNs (`app_cert_sn`, `alipay_root_cert_sn`, `alipay_cert_sn`) and the chain from an Alipay
//! certificate to Alipay's root bundle (docs/alipay/operations.md §3).
//!
//! X.509 parsing is `x509-cert`'s; what is Alipay's own is written here: the SN is the lowercase
//! hex MD5 of the issuer name in RFC 2253 form (as Java's `X500Principal.getName()` writes it)
//! followed by the serial number in decimal.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use x509_cert::der::asn1::{
    BmpString, Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::{
    Decode as _, Encode as _, Header, Reader as _, SliceReader, Tag, Tagged as _,
};
use x509_cert::name::Name;

use super::keys::{KeyError, PublicKey};

/// `1.2.840.113549.1.1`: the RSA signature algorithms (sha1WithRSA `.5`, sha256WithRSA `.11`,
/// ...). Only these count in `alipay_root_cert_sn`; Alipay's bundle also holds SM2 and ECDSA
/// roots.
const RSA_SIGNATURES: &str = "1.2.840.113549.1.1.";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
/// Chains are short (leaf, intermediate, root); anything longer is refused.
const MAX_CHAIN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no certificate found (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")")]
    Empty,
    #[error("certificate {index} is not valid Base64 PEM")]
    NotPem { index: usize },
    #[error("certificate {index} could not be read: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("the certificate's public key is not a usable RSA2 key: {0}")]
    Key(KeyError),
    #[error(
        "certificate {sn} is not valid at this time (valid {not_before} to {not_after}, Unix seconds)"
    )]
    NotValidNow {
        sn: String,
        not_before: u64,
        not_after: u64,
    },
    #[error(
        "certificate {sn} does not chain to Alipay's root certificates (issuer {issuer} not found)"
    )]
    Untrusted { sn: String, issuer: String },
    #[error("certificate {sn}'s signature does not verify with its issuer's key")]
    BadSignature { sn: String },
    #[error("certificate {sn} is signed with {algorithm}; only sha256WithRSA is accepted")]
    UnsupportedAlgorithm { sn: String, algorithm: String },
    #[error("the chain is longer than {MAX_CHAIN} certificates")]
    TooLong,
    #[error("no RSA certificate in the root bundle")]
    NoRsaRoot,
}

/// One X.509 certificate, with its DER.
#[derive(Clone, Debug)]
pub struct Cert {
    der: Vec<u8>,
    parsed: x509_cert::Certificate,
    sn: String,
}

impl PartialEq for Cert {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Cert {
    pub fn from_der(der: Vec<u8>, index: usize) -> Result<Cert, CertError> {
        let parsed = x509_cert::Certificate::from_der(&der).map_err(|e| CertError::Malformed {
            index,
            reason: e.to_string(),
        })?;
        let tbs = &parsed.tbs_certificate();
        let sn = cert_sn(tbs.issuer(), tbs.serial_number().as_bytes());
        Ok(Cert { der, parsed, sn })
    }

    /// The SN Alipay names this certificate by.
    pub fn sn(&self) -> &str {
        &self.sn
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The issuer in RFC 2253 form, as it enters the SN.
    pub fn issuer(&self) -> String {
        rfc2253(self.parsed.tbs_certificate().issuer())
    }

    pub fn subject(&self) -> String {
        rfc2253(self.parsed.tbs_certificate().subject())
    }

    /// The serial number in decimal.
    pub fn serial(&self) -> String {
        decimal(self.parsed.tbs_certificate().serial_number().as_bytes())
    }

    /// The signature algorithm's OID, dotted.
    pub fn signature_algorithm(&self) -> String {
        self.parsed.signature_algorithm().oid.to_string()
    }

    /// `notBefore` and `notAfter`, Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        let validity = self.parsed.tbs_certificate().validity();
        (
            validity.not_before.to_unix_duration().as_secs(),
            validity.not_after.to_unix_duration().as_secs(),
        )
    }

    pub fn is_valid_at(&self, now_unix: u64) -> bool {
        let (from, until) = self.validity();
        from <= now_unix && now_unix <= until
    }

    /// Refuses a certificate outside its validity at `now_unix`.
    pub fn check_validity(&self, now_unix: u64) -> Result<(), CertError> {
        if self.is_valid_at(now_unix) {
            return Ok(());
        }
        let (not_before, not_after) = self.validity();
        Err(CertError::NotValidNow {
            sn: self.sn.clone(),
            not_before,
            not_after,
        })
    }

    /// The certificate's RSA public key (at least 2048 bits, as every RSA2 key).
    pub fn public_key(&self) -> Result<PublicKey, CertError> {
        let spki = self
            .parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| CertError::Key(KeyError::Malformed(e.to_string())))?;
        PublicKey::from_der(&spki).map_err(CertError::Key)
    }

    fn issuer_der(&self) -> Vec<u8> {
        self.parsed
            .tbs_certificate()
            .issuer()
            .to_der()
            .unwrap_or_default()
    }

    fn subject_der(&self) -> Vec<u8> {
        self.parsed
            .tbs_certificate()
            .subject()
            .to_der()
            .unwrap_or_default()
    }

    /// Whether `issuer` signed this certificate (sha256WithRSA over the TBS bytes as received).
    fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        let algorithm = self.signature_algorithm();
        if algorithm != SHA256_WITH_RSA {
            return Err(CertError::UnsupportedAlgorithm {
                sn: self.sn.clone(),
                algorithm,
            });
        }
        let bad = || CertError::BadSignature {
            sn: self.sn.clone(),
        };
        let tbs = tbs_bytes(&self.der).ok_or_else(bad)?;
        let signature = self.parsed.signature().as_bytes().ok_or_else(bad)?;
        issuer
            .public_key()?
            .verify_bytes(tbs, signature)
            .map_err(|_| bad())
    }
}

/// PEM text of DER under `label` (`CERTIFICATE`, `CERTIFICATE REQUEST`), 64 columns.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The TBS certificate's bytes exactly as they were signed (not re-encoded).
fn tbs_bytes(der: &[u8]) -> Option<&[u8]> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut reader = SliceReader::new(der).ok()?;
    Header::decode(&mut reader).ok()?;
    reader.tlv_bytes().ok()
}

/// Every certificate in a PEM text (one file, or several concatenated), in order.
pub fn parse_pem_bundle(text: &str) -> Result<Vec<Cert>, CertError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let index = certs.len();
        let after = &rest[start + BEGIN.len()..];
        let end = after.find(END).ok_or(CertError::NotPem { index })?;
        let compact: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = BASE64
            .decode(compact)
            .map_err(|_| CertError::NotPem { index })?;
        certs.push(Cert::from_der(der, index)?);
        rest = &after[end + END.len()..];
    }
    if certs.is_empty() {
        return Err(CertError::Empty);
    }
    Ok(certs)
}

/// The leaf certificates of a bundle: those that issued no other certificate in it. An
/// application or Alipay certificate file holds one leaf and its intermediate; a bundle made by
/// concatenating two such files (during a rotation) holds two leaves.
pub fn leaves(certs: &[Cert]) -> Vec<&Cert> {
    certs
        .iter()
        .filter(|candidate| {
            let subject = candidate.subject_der();
            !certs
                .iter()
                .any(|other| other != *candidate && other.issuer_der() == subject)
        })
        .collect()
}

/// `app_cert_sn`: the SN of the application certificate (the file's leaf; its first
/// certificate when it holds only one).
pub fn app_cert_sn(certs: &[Cert]) -> Result<String, CertError> {
    leaves(certs)
        .first()
        .map(|leaf| leaf.sn().to_owned())
        .ok_or(CertError::Empty)
}

/// `alipay_root_cert_sn`: the SNs of the bundle's RSA-signed certificates, in file order,
/// joined with `_` (SM2 and ECDSA roots are skipped).
pub fn root_cert_sn(roots: &[Cert]) -> Result<String, CertError> {
    let sns: Vec<&str> = roots
        .iter()
        .filter(|cert| cert.signature_algorithm().starts_with(RSA_SIGNATURES))
        .map(Cert::sn)
        .collect();
    if sns.is_empty() {
        return Err(CertError::NoRsaRoot);
    }
    Ok(sns.join("_"))
}

/// Checks that `leaf` chains, through the intermediates in `chain`, to a certificate of
/// `roots`: each signature verifies with its issuer's key and every certificate on the path
/// (the root's included) is valid at `now_unix`.
pub fn verify_chain(
    leaf: &Cert,
    chain: &[Cert],
    roots: &[Cert],
    now_unix: u64,
) -> Result<(), CertError> {
    let mut current = leaf;
    for _ in 0..MAX_CHAIN {
        current.check_validity(now_unix)?;
        let issuer_name = current.issuer_der();
        if let Some(root) = roots.iter().find(|r| r.subject_der() == issuer_name) {
            current.verify_signed_by(root)?;
            return root.check_validity(now_unix);
        }
        let Some(next) = chain
            .iter()
            .find(|c| *c != current && c.subject_der() == issuer_name)
        else {
            return Err(CertError::Untrusted {
                sn: leaf.sn().to_owned(),
                issuer: current.issuer(),
            });
        };
        current.verify_signed_by(next)?;
        current = next;
    }
    Err(CertError::TooLong)
}

/// The SN of a certificate with this issuer and serial.
fn cert_sn(issuer: &Name, serial: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(rfc2253(issuer).as_bytes());
    md5.update(decimal(serial).as_bytes());
    let digest = md5.finalize();
    let mut hex = String::with_capacity(32);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A name as Java's `X500Principal.getName()` (RFC 2253) writes it: most specific RDN first,
/// the keywords Java knows, other attributes as `OID=#hex`, values escaped.
fn rfc2253(name: &Name) -> String {
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        let parts: Vec<String> = rdn.iter().map(attribute).collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

fn attribute(atv: &x509_cert::attr::AttributeTypeAndValue) -> String {
    let oid = atv.oid.to_string();
    let keyword = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    let text = match atv.value.tag() {
        Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        Tag::Utf8String => Utf8StringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        Tag::Ia5String => Ia5StringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        Tag::TeletexString => TeletexStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        Tag::BmpString => BmpString::from_ucs2(atv.value.value().to_vec())
            .ok()
            .map(|s| s.to_string()),
        _ => None,
    };
    match (keyword, text) {
        (Some(keyword), Some(text)) => format!("{keyword}={}", escape(&text)),
        _ => {
            let mut out = format!("{oid}=#");
            for byte in atv.value.to_der().unwrap_or_default() {
                let _ = write!(out, "{byte:02x}");
            }
            out
        }
    }
}

/// RFC 2253 §2.4: `,+"\<>;` escaped, and a leading `#` or space and a trailing space.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A DER INTEGER's content bytes (two's complement, big-endian) in decimal, as Java's
/// `BigInteger.toString()`.
fn decimal(bytes: &[u8]) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = if negative {
        // Two's complement: invert and add one.
        let mut inverted: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for byte in inverted.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        inverted
    } else {
        bytes.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in magnitude.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_big_integer() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            decimal(&[0x62, 0xc4, 0xab, 0xe5, 0xb2, 0x80, 0x32, 0x5f]),
            "7117002314182832735"
        );
        assert_eq!(decimal(&[0xff]), "-1");
        assert_eq!(decimal(&[0x80]), "-128");
        assert_eq!(decimal(&[0x00, 0x80]), "128");
    }

    #[test]
    fn rfc2253_escapes_as_java_does() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("支付宝(中国)"), "支付宝(中国)");
        assert_eq!(escape("x\"<>;\\"), "x\\\"\\<\\>\\;\\\\");
    }
}
