//! The protocol as Alipay speaks it (docs/alipay/openapi-v1.md), written here apart from the
//! gateway's code: the signing string, signing, the form, money as Alipay writes it, and the
//! answer layout (`*_response` with its `sign`, slashes escaped as Alipay's gateway does).

#[allow(unused_imports)]
use crate::*;

/// Sorted `k=v&...` of the non-empty values, without `sign` (and without `sign_type` for trade
/// notifications).
pub(crate) fn content_to_sign(params: &BTreeMap<String, String>, drop_sign_type: bool) -> String {
    params
        .iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign" && !(drop_sign_type && *k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn sign(inner: &Inner, content: &str) -> String {
    let signer = Arc::clone(&lock(&inner.keys).alipay_signer);
    let sign = signer.sign_base64(content);
    lock(&inner.state)
        .signed
        .push((content.to_owned(), sign.clone()));
    sign
}

pub(crate) fn decode_form(raw: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(raw) {
        if params
            .insert(key.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(format!("duplicate parameter {key}"));
        }
    }
    Ok(params)
}

pub(crate) fn fen(text: &str) -> Option<u64> {
    let (yuan, cents) = text.split_once('.')?;
    if cents.len() != 2
        || yuan.is_empty()
        || !yuan
            .bytes()
            .chain(cents.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(yuan.parse::<u64>().ok()? * 100 + cents.parse::<u64>().ok()?)
}

pub(crate) fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A JSON answer laid out as Alipay lays it out, slashes escaped as Alipay's gateway does.
pub(crate) fn answer(
    inner: &Inner,
    method: &str,
    content: &Value,
    corrupt: bool,
    signed: bool,
) -> Response {
    let text = content.to_string().replace('/', "\\/");
    let key = format!("{}_response", method.replace('.', "_"));
    let body = if signed {
        let mut sign = sign(inner, &text);
        if corrupt {
            // Change the first character: still Base64, no longer the signature.
            let first = if sign.starts_with('A') { 'B' } else { 'A' };
            sign = format!("{first}{}", &sign[1..]);
        }
        match lock(&inner.keys)
            .certificates
            .as_ref()
            .map(|c| c.alipay_cert.sn.clone())
        {
            Some(sn) => {
                format!("{{\"{key}\":{text},\"alipay_cert_sn\":\"{sn}\",\"sign\":\"{sign}\"}}")
            }
            None => format!("{{\"{key}\":{text},\"sign\":\"{sign}\"}}"),
        }
    } else {
        format!("{{\"{key}\":{text}}}")
    };
    ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], body).into_response()
}

pub(crate) fn business_error(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

pub(crate) fn success(mut content: Value) -> Value {
    if let Some(object) = content.as_object_mut() {
        object.insert("code".into(), json!("10000"));
        object.insert("msg".into(), json!("Success"));
    }
    content
}
