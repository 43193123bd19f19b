//! The simulator's certificate authority for certificate mode: a root and a "Class 2"
//! intermediate (as Alipay's own chain), issuing the application certificate from the
//! merchant's CSR and Alipay's public certificates (rotated on demand).
//!
//! SNs are computed here from docs/alipay/operations.md §3, not with the gateway's code: the issuer names
//! below are written by hand in RFC 2253 form (they are ours), the serials are small integers.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use sha2::Sha256;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned as SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};

/// RFC 2253, most specific first: exactly the text whose MD5 (with the serial) is the SN.
pub const ROOT_NAME: &str =
    "CN=Simulated Alipay Root CA R1,OU=Certification Authority,O=Local Alipay Simulator,C=CN";
pub const INTERMEDIATE_NAME: &str =
    "CN=Simulated Alipay Class 2 CA R1,OU=Certification Authority,O=Local Alipay Simulator,C=CN";
/// A second RSA root in the bundle (Alipay's bundle holds several): it issues nothing here.
pub const OTHER_ROOT_NAME: &str = "CN=Simulated Other Root CA,O=Local Alipay Simulator,C=CN";
const ROOT_SERIAL: u64 = 1;
const INTERMEDIATE_SERIAL: u64 = 2;
const OTHER_ROOT_SERIAL: u64 = 3;

/// One issued certificate: PEM (leaf first, then the intermediate) and its SN.
#[derive(Clone, Debug)]
pub struct Issued {
    pub pem: String,
    pub sn: String,
}

pub struct TestCa {
    root_key: SigningKey<Sha256>,
    intermediate_key: SigningKey<Sha256>,
    root_pem: String,
    other_root_pem: String,
    intermediate_pem: String,
}

/// `md5(issuer + decimal serial)`, lowercase hex (docs/alipay/operations.md §3).
pub fn sn(issuer_rfc2253: &str, serial: u64) -> String {
    let digest = Md5::digest(format!("{issuer_rfc2253}{serial}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

struct Profile {
    subject: Name,
    issuer: Name,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _: SubjectPublicKeyInfoRef<'_>,
        _: SubjectPublicKeyInfoRef<'_>,
        _: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(Vec::new())
    }
}

fn key(name: &str) -> SigningKey<Sha256> {
    let path = crate::fixtures().join("keys").join(name);
    let text = std::fs::read_to_string(&path).expect("CA key");
    SigningKey::new(rsa::PrivateKey::from_pkcs1_pem(&text).expect("CA key parses"))
}

fn spki_of(key: &SigningKey<Sha256>) -> SubjectPublicKeyInfo {
    use rsa::pkcs8::EncodePublicKey as _;
    use rsa::signature::Keypair as _;
    let der = key
        .verifying_key()
        .to_public_key_der()
        .expect("public key DER");
    SubjectPublicKeyInfo::from_der(der.as_bytes()).expect("SPKI")
}

fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Valid from a day ago for `days`.
fn validity(days: u64) -> Validity {
    let now = SystemTime::now();
    Validity::new(
        Time::try_from(now - Duration::from_secs(86_400)).expect("time"),
        Time::try_from(now + Duration::from_secs(days * 86_400)).expect("time"),
    )
}

fn issue(
    subject: &str,
    issuer: &str,
    serial: u64,
    spki: SubjectPublicKeyInfo,
    signer: &SigningKey<Sha256>,
    valid: Validity,
) -> String {
    let profile = Profile {
        subject: Name::from_str(subject).expect("subject"),
        issuer: Name::from_str(issuer).expect("issuer"),
    };
    let serial = SerialNumber::new(&serial.to_be_bytes()).expect("serial");
    let builder = CertificateBuilder::new(profile, serial, valid, spki).expect("builder");
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(signer)
        .expect("certificate");
    pem(&cert.to_der().expect("DER"))
}

impl TestCa {
    pub fn new() -> TestCa {
        let root_key = key("sim_ca_root_private_key.pem");
        let intermediate_key = key("sim_ca_intermediate_private_key.pem");
        let root_pem = issue(
            ROOT_NAME,
            ROOT_NAME,
            ROOT_SERIAL,
            spki_of(&root_key),
            &root_key,
            validity(3650),
        );
        let other_root_pem = issue(
            OTHER_ROOT_NAME,
            OTHER_ROOT_NAME,
            OTHER_ROOT_SERIAL,
            spki_of(&intermediate_key),
            &intermediate_key,
            validity(3650),
        );
        let intermediate_pem = issue(
            INTERMEDIATE_NAME,
            ROOT_NAME,
            INTERMEDIATE_SERIAL,
            spki_of(&intermediate_key),
            &root_key,
            validity(1825),
        );
        TestCa {
            root_key,
            intermediate_key,
            root_pem,
            other_root_pem,
            intermediate_pem,
        }
    }

    /// `alipayRootCert.crt`: our root, then another RSA root.
    pub fn root_bundle(&self) -> String {
        format!("{}{}", self.root_pem, self.other_root_pem)
    }

    /// The `alipay_root_cert_sn` the bundle has (both roots are RSA; self-issued).
    pub fn root_cert_sn(&self) -> String {
        format!(
            "{}_{}",
            sn(ROOT_NAME, ROOT_SERIAL),
            sn(OTHER_ROOT_NAME, OTHER_ROOT_SERIAL)
        )
    }

    /// A leaf for `spki` issued by the intermediate, with the intermediate after it.
    pub fn issue_leaf(&self, subject: &str, serial: u64, spki_der: &[u8], days: u64) -> Issued {
        let spki = SubjectPublicKeyInfo::from_der(spki_der).expect("SPKI");
        let leaf = issue(
            subject,
            INTERMEDIATE_NAME,
            serial,
            spki,
            &self.intermediate_key,
            validity(days),
        );
        Issued {
            pem: format!("{leaf}{}", self.intermediate_pem),
            sn: sn(INTERMEDIATE_NAME, serial),
        }
    }

    /// A leaf issued by a CA outside the bundle (a forgery: it does not chain).
    pub fn issue_forged(&self, subject: &str, serial: u64, spki_der: &[u8]) -> Issued {
        let spki = SubjectPublicKeyInfo::from_der(spki_der).expect("SPKI");
        // Signed by the root's key but naming the intermediate as issuer: the signature does
        // not verify with the intermediate's key.
        let leaf = issue(
            subject,
            INTERMEDIATE_NAME,
            serial,
            spki,
            &self.root_key,
            validity(365),
        );
        Issued {
            pem: format!("{leaf}{}", self.intermediate_pem),
            sn: sn(INTERMEDIATE_NAME, serial),
        }
    }

    /// The application certificate for a CSR, as the open platform issues it: the request's
    /// signature must verify with the key it carries.
    pub fn issue_from_csr(
        &self,
        csr_pem: &str,
        app_id: &str,
        serial: u64,
    ) -> Result<Issued, String> {
        let body: String = csr_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| format!("CSR is not Base64: {e}"))?;
        let request = CertReq::from_der(&der).map_err(|e| format!("CSR: {e}"))?;
        let spki_der = request
            .info
            .public_key
            .to_der()
            .map_err(|e| e.to_string())?;
        let signed = request.info.to_der().map_err(|e| e.to_string())?;
        let signature = request
            .signature
            .as_bytes()
            .ok_or("CSR signature is not whole bytes")?;
        let key = crate::keys::VerifyKey::from_spki_der(&spki_der)?;
        if !key.verify_bytes(&signed, signature) {
            return Err("the CSR's signature does not verify with its own key".to_owned());
        }
        Ok(self.issue_leaf(
            &format!("CN=2088000000000001-{app_id},OU=Alipay,O=Local Merchant,C=CN"),
            serial,
            &spki_der,
            365,
        ))
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
