//! Synchronous responses: the raw bytes of the `*_response` value extracted without
//! re-serializing, the signature verified over exactly those bytes, then typed and classified.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::keys::{PublicKey, VerifyError};
use super::trust::{AlipayTrust, Lookup};
use crate::money::Amount;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the response is not a JSON object: {0}")]
    NotJson(String),
    #[error("the response has neither \"{0}\" nor \"error_response\"")]
    MissingResponse(String),
    #[error("the response key \"{0}\" appears more than once")]
    DuplicateResponse(String),
    #[error("a successful response carries no sign")]
    MissingSignature,
    #[error("the response signature is invalid: {0}")]
    BadSignature(VerifyError),
    /// Certificate mode: the answer names an Alipay certificate we do not hold (Alipay rotated
    /// it); fetch it, check it, and verify again.
    #[error("the response is signed with Alipay certificate {0}, which is not held yet")]
    UnknownCert(String),
    #[error("the response content is not what {method} answers: {problem}")]
    Unexpected { method: String, problem: String },
}

/// `alipay.trade.refund` answers under `alipay_trade_refund_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The pieces of a response body, borrowed from it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse<'a> {
    /// The exact text of the response object, from its `{` to its matching `}`.
    pub content: &'a str,
    /// The decoded `sign` value, when there is one.
    pub sign: Option<String>,
    /// True when Alipay answered `error_response` instead of the method's key.
    pub is_error_response: bool,
    /// Certificate mode: the SN of the Alipay certificate that signed.
    pub alipay_cert_sn: Option<String>,
}

/// Finds the method's response object (or `error_response`) and `sign` among the body's
/// top-level members.
pub fn extract<'a>(body: &'a str, method: &str) -> Result<RawResponse<'a>, ResponseError> {
    let wanted = response_key(method);
    let members = top_level_members(body)?;
    let find = |name: &str| -> Result<Option<&'a str>, ResponseError> {
        let mut found = members.iter().filter(|(key, _)| key == name);
        let first = found.next().map(|(_, value)| *value);
        if found.next().is_some() {
            return Err(ResponseError::DuplicateResponse(name.to_owned()));
        }
        Ok(first)
    };
    let (content, is_error_response) = match find(&wanted)? {
        Some(content) => (content, false),
        None => match find("error_response")? {
            Some(content) => (content, true),
            None => return Err(ResponseError::MissingResponse(wanted)),
        },
    };
    if !content.starts_with('{') {
        return Err(ResponseError::NotJson(
            "the response value is not an object".into(),
        ));
    }
    let sign = match find("sign")? {
        Some(raw) => Some(
            serde_json::from_str::<String>(raw)
                .map_err(|_| ResponseError::NotJson("sign is not a string".into()))?,
        ),
        None => None,
    };
    let alipay_cert_sn = match find("alipay_cert_sn")? {
        Some(raw) => Some(
            serde_json::from_str::<String>(raw)
                .map_err(|_| ResponseError::NotJson("alipay_cert_sn is not a string".into()))?,
        ),
        None => None,
    };
    Ok(RawResponse {
        content,
        sign,
        is_error_response,
        alipay_cert_sn,
    })
}

/// The fields every response has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub sub_code: Option<String>,
    #[serde(default)]
    pub sub_msg: Option<String>,
}

/// What the caller should do with an answer (docs/alipay/openapi-v1.md, "Result codes" and refund retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `10000`.
    Success,
    /// `20000` or `ACQ.SYSTEM_ERROR`: the outcome is unknown; retry with identical parameters.
    RetrySame,
    /// The outcome is unknown and a retry could be wrong (`ACQ.DISCORDANT_REPEAT_REQUEST`, an
    /// unsigned or unknown answer): query before deciding anything.
    QueryFirst,
    /// `40004`: the business operation failed and will keep failing.
    BusinessFailure,
    /// `20001`, `40001`, `40002`, `40006`: our request or our credentials are wrong.
    Rejected,
}

impl Status {
    /// The disposition of an answer that was (`signed`) or was not signed: an unsigned answer
    /// proves nothing about money, so a business failure (or success) it claims is asked about.
    pub fn disposition_when(&self, signed: bool) -> Disposition {
        match (signed, self.disposition()) {
            (false, Disposition::BusinessFailure | Disposition::Success) => Disposition::QueryFirst,
            (_, disposition) => disposition,
        }
    }

    pub fn disposition(&self) -> Disposition {
        match (self.code.as_str(), self.sub_code.as_deref()) {
            ("10000", _) => Disposition::Success,
            ("20000", _) | (_, Some("ACQ.SYSTEM_ERROR")) => Disposition::RetrySame,
            (_, Some("ACQ.DISCORDANT_REPEAT_REQUEST")) => Disposition::QueryFirst,
            ("40004", _) => Disposition::BusinessFailure,
            ("20001" | "40001" | "40002" | "40006", _) => Disposition::Rejected,
            _ => Disposition::QueryFirst,
        }
    }
}

/// A response whose origin is established (or which is an unsigned error, see `signed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The response object's JSON as received (after the `\/` fallback when that is what
    /// verified).
    pub content: String,
    pub status: Status,
    /// False only for an error answer that Alipay did not sign (gateway-level errors such as
    /// `isv.invalid-signature`). Such an answer proves nothing about money: treat any
    /// disposition other than `Rejected`/`RetrySame` as [`Disposition::QueryFirst`].
    pub signed: bool,
}

impl VerifiedResponse {
    pub fn disposition(&self) -> Disposition {
        self.status.disposition_when(self.signed)
    }

    /// The method-specific fields of the response.
    pub fn parse<T: DeserializeOwned>(&self, method: &str) -> Result<T, ResponseError> {
        serde_json::from_str(&self.content).map_err(|e| ResponseError::Unexpected {
            method: method.to_owned(),
            problem: e.to_string(),
        })
    }
}

/// Extracts, verifies and reads the status of a response body for `method` (key mode, one key).
pub fn verify_response(
    body: &str,
    method: &str,
    alipay_key: &PublicKey,
) -> Result<VerifiedResponse, ResponseError> {
    verify_extracted(
        extract(body, method)?,
        method,
        std::slice::from_ref(alipay_key),
    )
}

/// As [`verify_response`], with what the application trusts: any of its keys, or in certificate
/// mode the certificate the answer names ([`ResponseError::UnknownCert`] when it is not held).
pub fn verify_response_with(
    body: &str,
    method: &str,
    trust: &AlipayTrust,
) -> Result<VerifiedResponse, ResponseError> {
    let raw = extract(body, method)?;
    match trust.lookup(raw.alipay_cert_sn.as_deref()) {
        Lookup::Keys(keys) => verify_extracted(raw, method, &keys),
        // An unsigned error answer needs no key.
        Lookup::Unknown(_) if raw.sign.is_none() => verify_extracted(raw, method, &[]),
        Lookup::Unknown(sn) => Err(ResponseError::UnknownCert(sn)),
    }
}

fn verify_extracted(
    raw: RawResponse<'_>,
    method: &str,
    keys: &[PublicKey],
) -> Result<VerifiedResponse, ResponseError> {
    let status: Status =
        serde_json::from_str(raw.content).map_err(|e| ResponseError::Unexpected {
            method: method.to_owned(),
            problem: e.to_string(),
        })?;
    let Some(sign) = raw.sign else {
        if status.code == "10000" {
            return Err(ResponseError::MissingSignature);
        }
        return Ok(VerifiedResponse {
            content: raw.content.to_owned(),
            status,
            signed: false,
        });
    };
    let mut first_error = VerifyError::Mismatch;
    for (index, key) in keys.iter().enumerate() {
        match verify_content(raw.content, &sign, key) {
            Ok(content) => {
                return Ok(VerifiedResponse {
                    content,
                    status,
                    signed: true,
                });
            }
            Err(error) if index == 0 => first_error = error,
            Err(_) => {}
        }
    }
    Err(ResponseError::BadSignature(first_error))
}

/// The content that verified with `key`: as received, or with `\/` unescaped.
fn verify_content(content: &str, sign: &str, key: &PublicKey) -> Result<String, VerifyError> {
    match key.verify(content.as_bytes(), sign) {
        Ok(()) => Ok(content.to_owned()),
        // Alipay's Java SDK retries once with `\/` unescaped: some gateways signed that form.
        Err(first) if content.contains("\\/") => {
            let unescaped = content.replace("\\/", "/");
            key.verify(unescaped.as_bytes(), sign).map_err(|_| first)?;
            Ok(unescaped)
        }
        Err(error) => Err(error),
    }
}

/// `alipay.open.app.alipaycert.download`: Alipay's certificate, Base64 of its PEM file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CertDownloadResult {
    pub alipay_cert_content: String,
}

/// `alipay.trade.precreate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PrecreateResult {
    pub out_trade_no: String,
    pub qr_code: String,
}

/// `alipay.trade.query`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueryResult {
    pub trade_no: String,
    pub out_trade_no: String,
    pub trade_status: String,
    pub total_amount: Amount,
    #[serde(default)]
    pub buyer_user_id: Option<String>,
    #[serde(default)]
    pub send_pay_date: Option<String>,
    /// The cross-border fields, when the merchant is contracted for them.
    #[serde(flatten)]
    pub cross_border: crate::cross_border::CrossBorder,
}

/// `alipay.trade.refund`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundResult {
    pub trade_no: String,
    pub out_trade_no: String,
    /// `Y` when this call moved money; otherwise query the refund.
    pub fund_change: String,
    /// The trade's refunded total so far.
    pub refund_fee: Amount,
    /// When the refund was paid (China time), in a success that moved money.
    #[serde(default)]
    pub gmt_refund_pay: Option<String>,
}

/// `alipay.trade.fastpay.refund.query`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundQueryResult {
    #[serde(default)]
    pub out_request_no: Option<String>,
    #[serde(default)]
    pub refund_amount: Option<Amount>,
    /// `REFUND_SUCCESS` when the refund is done; absent when it is not (yet).
    #[serde(default)]
    pub refund_status: Option<String>,
    /// When the refund was paid (China time).
    #[serde(default)]
    pub gmt_refund_pay: Option<String>,
}

/// `alipay.data.dataservice.bill.downloadurl.query`: where the bill is, for 30 seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BillUrlResult {
    pub bill_download_url: String,
}

/// `alipay.trade.close`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CloseResult {
    #[serde(default)]
    pub trade_no: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
}

// ---- top-level JSON scanning --------------------------------------------------------------

/// The top-level members of a JSON object as (decoded key, raw value text). Values are spans
/// of `body`; strings and escapes are respected, so braces inside strings do not count.
fn top_level_members(body: &str) -> Result<Vec<(String, &str)>, ResponseError> {
    let bytes = body.as_bytes();
    let not_json = |why: &str| ResponseError::NotJson(why.to_owned());
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Err(not_json("expected '{'"));
    }
    at = skip_ws(bytes, at + 1);
    let mut members = Vec::new();
    if bytes.get(at) == Some(&b'}') {
        return finish(bytes, at + 1, members);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return Err(not_json("expected a key"));
        }
        let key_end = scan_string(bytes, at)?;
        let key: String =
            serde_json::from_str(&body[at..key_end]).map_err(|_| not_json("bad key"))?;
        at = skip_ws(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return Err(not_json("expected ':'"));
        }
        at = skip_ws(bytes, at + 1);
        let value_end = scan_value(bytes, at)?;
        members.push((key, &body[at..value_end]));
        at = skip_ws(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_ws(bytes, at + 1),
            Some(b'}') => return finish(bytes, at + 1, members),
            _ => return Err(not_json("expected ',' or '}'")),
        }
    }
}

fn finish<'a>(
    bytes: &[u8],
    at: usize,
    members: Vec<(String, &'a str)>,
) -> Result<Vec<(String, &'a str)>, ResponseError> {
    if skip_ws(bytes, at) != bytes.len() {
        return Err(ResponseError::NotJson(
            "trailing data after the object".into(),
        ));
    }
    Ok(members)
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// `at` is on an opening quote; returns the index just past the closing quote.
fn scan_string(bytes: &[u8], at: usize) -> Result<usize, ResponseError> {
    let mut i = at + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(ResponseError::NotJson("unterminated string".into()))
}

/// Returns the index just past the value starting at `at`.
fn scan_value(bytes: &[u8], at: usize) -> Result<usize, ResponseError> {
    match bytes.get(at) {
        Some(b'"') => scan_string(bytes, at),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = scan_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Err(ResponseError::NotJson("unbalanced braces".into()))
        }
        Some(_) => {
            let mut i = at;
            while let Some(&b) = bytes.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                i += 1;
            }
            if i == at {
                return Err(ResponseError::NotJson("expected a value".into()));
            }
            Ok(i)
        }
        None => Err(ResponseError::NotJson("unexpected end".into())),
    }
}
