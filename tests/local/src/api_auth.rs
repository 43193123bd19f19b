//! The merchant API's IAM authorization, locally as API Gateway does it: every request must be
//! signed with AWS Signature Version 4 for the service `execute-api`, and a missing or wrong
//! signature is answered `403` before any function runs. The local stack's credentials are the
//! stand-in's test credentials.
//!
//! Checking recomputes the signature with AWS's own signer (`aws-sigv4`) over exactly the headers
//! the caller says it signed, at the time it says it signed; the tests sign with the same crate,
//! and `make test` also signs with curl (`--aws-sigv4`) and botocore, so the check agrees with
//! independent signers, not only with itself.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// SigV4's service name for API Gateway.
pub const SERVICE: &str = "execute-api";
/// How far a request's `x-amz-date` may be from now (SigV4 allows 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// IAM credentials and the region they sign for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl Credentials {
    /// The local stand-in's test credentials (the ones `make run` and the tests use).
    pub fn local() -> Credentials {
        Credentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            region: "us-east-1".into(),
        }
    }

    /// The credentials `make run` wrote to `.local/endpoints.json` (`aws_access_key_id`,
    /// `aws_secret_access_key`, `region`).
    pub fn from_endpoints(endpoints: &serde_json::Value) -> Result<Credentials, String> {
        let text = |key: &str| {
            endpoints[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!(".local/endpoints.json has no {key}; restart make run"))
        };
        Ok(Credentials {
            access_key_id: text("aws_access_key_id")?,
            secret_access_key: text("aws_secret_access_key")?,
            region: text("region")?,
        })
    }
}

/// Why API Gateway refuses a request: the `403` body it answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header (or not a SigV4 one).
    Missing,
    /// Malformed `Authorization` or `x-amz-date`.
    Malformed(&'static str),
    /// Signed with another access key.
    UnknownKey,
    /// Signed for another region or service.
    WrongScope,
    /// Signed too long ago (or in the future).
    Expired,
    /// The signature does not match the request.
    BadSignature,
}

impl Denied {
    /// API Gateway's message for it.
    pub fn message(&self) -> String {
        match self {
            Denied::Missing => "Forbidden".into(),
            Denied::Malformed(what) => format!("Authorization header requires {what}."),
            Denied::UnknownKey => "The security token included in the request is invalid.".into(),
            Denied::WrongScope => {
                "Credential should be scoped to a valid region and service 'execute-api'.".into()
            }
            Denied::Expired => "Signature expired: the request's x-amz-date is more than 15 minutes from now.".into(),
            Denied::BadSignature => "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        }
    }

    /// The answer API Gateway gives: `403 {"message": …}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message() }).to_string()
    }

    /// That answer as HTTP.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        (
            axum::http::StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            self.body(),
        )
            .into_response()
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Denied> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(Denied::Missing)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or(Denied::Malformed("a 'Credential' parameter"))?;
    let signed_headers = signed_headers.ok_or(Denied::Malformed("a 'SignedHeaders' parameter"))?;
    let signature = signature.ok_or(Denied::Malformed("a 'Signature' parameter"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(Denied::Malformed(
            "a Credential of the form key/date/region/service/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// `20261128T101500Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(text, format).ok()?;
    let seconds = u64::try_from(parsed.assume_utc().unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Signs with AWS's signer: the instructions (headers to add) and the hex signature.
#[allow(clippy::too_many_arguments)]
fn aws_sign(
    credentials: &Credentials,
    service: &str,
    settings: SigningSettings,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: &[u8],
    time: SystemTime,
) -> Result<(aws_sigv4::http_request::SigningInstructions, String), String> {
    let identity = AwsCredentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        None,
        None,
        "local",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&credentials.region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    Ok(sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts())
}

/// The signature of a request over exactly `headers` (lower-case names) at `time`: the hex
/// signature and the signed header names.
fn signature(
    credentials: &Credentials,
    service: &str,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: &[u8],
    time: SystemTime,
) -> Result<(String, String), String> {
    let mut settings = SigningSettings::default();
    // Sign exactly the headers given (the checker passes only those the caller signed).
    settings.excluded_headers = Some(Vec::new());
    let (instructions, signature) = aws_sign(
        credentials,
        service,
        settings,
        method,
        uri,
        headers,
        body,
        time,
    )?;
    let signed = instructions
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.split("SignedHeaders=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("")
        .to_owned();
    Ok((signature, signed))
}

/// Signs a request for the merchant API: adds `x-amz-date` and `authorization` (and signs
/// `host` and `content-type` when present), as the AWS SDKs' SigV4 signer does.
pub fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    credentials: &Credentials,
    time: SystemTime,
) -> Result<(), String> {
    let uri = request.uri().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let (instructions, _) = aws_sign(
        credentials,
        SERVICE,
        SigningSettings::default(),
        request.method().as_str(),
        &uri,
        &headers,
        body,
        time,
    )?;
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Checks a request's SigV4 signature as API Gateway's IAM authorization does. `uri` is the
/// request target as received (path and query; the `host` header gives the authority).
pub fn verify(
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
    credentials: &Credentials,
    now: SystemTime,
) -> Result<(), Denied> {
    verify_for(SERVICE, method, uri, headers, body, credentials, now)
}

fn verify_for(
    service: &str,
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
    credentials: &Credentials,
    now: SystemTime,
) -> Result<(), Denied> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::Missing)?;
    let auth = parse_authorization(authorization)?;
    if auth.access_key_id != credentials.access_key_id {
        return Err(Denied::UnknownKey);
    }
    if auth.region != credentials.region || auth.service != service {
        return Err(Denied::WrongScope);
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::Malformed("an 'X-Amz-Date' header"))?;
    let time = parse_amz_date(amz_date).ok_or(Denied::Malformed("a valid 'X-Amz-Date'"))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(Denied::WrongScope);
    }
    // Either way: signed too long ago, or too far ahead.
    let skew = now
        .duration_since(time)
        .unwrap_or_else(|ahead| ahead.duration());
    if skew > MAX_SKEW {
        return Err(Denied::Expired);
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(Denied::BadSignature);
    }
    // Only the headers the caller signed, as received (x-amz-date is the signer's own).
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        if *name == "x-amz-date" {
            continue;
        }
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(Denied::BadSignature);
        }
        signed.push(((*name).to_owned(), values.join(",")));
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::BadSignature)?;
    let target = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let full = format!("http://{host}{target}");
    let (expected, expected_headers) =
        signature(credentials, service, method, &full, &signed, body, time)
            .map_err(|_| Denied::BadSignature)?;
    if expected_headers != auth.signed_headers.join(";") {
        return Err(Denied::BadSignature);
    }
    // Equal length hex strings; compared without an early exit.
    let same = expected.len() == auth.signature.len()
        && expected
            .bytes()
            .zip(auth.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Denied::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(method: &str, url: &str, body: &str, at: SystemTime) -> http::Request<String> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("host", "127.0.0.1:3000")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .expect("request");
        sign_request(&mut request, body.as_bytes(), &Credentials::local(), at).expect("sign");
        request
    }

    fn check(request: &http::Request<String>, now: SystemTime) -> Result<(), Denied> {
        verify(
            request.method().as_str(),
            request.uri(),
            request.headers(),
            request.body().as_bytes(),
            &Credentials::local(),
            now,
        )
    }

    #[test]
    fn a_signed_request_passes_and_any_change_is_refused() {
        let now = SystemTime::now();
        let url = "http://127.0.0.1:3000/payments/o_1?sync=true";
        let request = signed("GET", url, "", now);
        assert_eq!(check(&request, now), Ok(()));

        let body = r#"{"amount":"1.00"}"#;
        let post = signed("POST", "http://127.0.0.1:3000/payments", body, now);
        assert_eq!(check(&post, now), Ok(()));
        // Another body, path, query, method or signed header value: refused.
        let mut changed = post.clone();
        *changed.body_mut() = r#"{"amount":"9.00"}"#.into();
        assert_eq!(check(&changed, now), Err(Denied::BadSignature));
        let mut changed = request.clone();
        *changed.uri_mut() = "http://127.0.0.1:3000/payments/o_2?sync=true"
            .parse()
            .expect("uri");
        assert_eq!(check(&changed, now), Err(Denied::BadSignature));
        let mut changed = request.clone();
        *changed.uri_mut() = "http://127.0.0.1:3000/payments/o_1".parse().expect("uri");
        assert_eq!(check(&changed, now), Err(Denied::BadSignature));
        let mut changed = request.clone();
        *changed.method_mut() = http::Method::DELETE;
        assert_eq!(check(&changed, now), Err(Denied::BadSignature));
        let mut changed = post.clone();
        changed
            .headers_mut()
            .insert("content-type", "text/plain".parse().expect("value"));
        assert_eq!(check(&changed, now), Err(Denied::BadSignature));
    }

    #[test]
    fn missing_foreign_stale_and_wrongly_scoped_signatures_are_refused() {
        let now = SystemTime::now();
        let url = "http://127.0.0.1:3000/payments/o_1";
        let mut unsigned = signed("GET", url, "", now);
        unsigned.headers_mut().remove("authorization");
        assert_eq!(check(&unsigned, now), Err(Denied::Missing));

        let mut other_key = http::Request::builder()
            .uri(url)
            .header("host", "127.0.0.1:3000")
            .body(String::new())
            .expect("request");
        let mut foreign = Credentials::local();
        foreign.access_key_id = "AKIDEXAMPLE".into();
        sign_request(&mut other_key, b"", &foreign, now).expect("sign");
        assert_eq!(check(&other_key, now), Err(Denied::UnknownKey));

        let mut wrong_secret = other_key.clone();
        let mut secret = Credentials::local();
        secret.secret_access_key = "not-the-secret".into();
        sign_request(&mut wrong_secret, b"", &secret, now).expect("sign");
        assert_eq!(check(&wrong_secret, now), Err(Denied::BadSignature));

        let mut region = Credentials::local();
        region.region = "eu-west-1".into();
        let mut elsewhere = other_key.clone();
        sign_request(&mut elsewhere, b"", &region, now).expect("sign");
        assert_eq!(check(&elsewhere, now), Err(Denied::WrongScope));

        let old = signed("GET", url, "", now - Duration::from_secs(16 * 60));
        assert_eq!(check(&old, now), Err(Denied::Expired));
        let recent = signed("GET", url, "", now - Duration::from_secs(14 * 60));
        assert_eq!(check(&recent, now), Ok(()));
    }

    /// The published SigV4 example (AWS General Reference, "Signature Version 4 test suite",
    /// `get-vanilla`): an independent signer's answer, checked byte for byte.
    #[test]
    fn the_published_get_vanilla_signature_verifies() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().expect("value"));
        headers.insert("x-amz-date", "20150830T123600Z".parse().expect("value"));
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .expect("value"),
        );
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let at = parse_amz_date("20150830T123600Z").expect("date");
        let uri: http::Uri = "/".parse().expect("uri");
        assert_eq!(
            verify_for("service", "GET", &uri, &headers, b"", &credentials, at),
            Ok(())
        );
        // The API checks for execute-api only; one changed digit is refused.
        assert_eq!(
            verify("GET", &uri, &headers, b"", &credentials, at),
            Err(Denied::WrongScope)
        );
        let mut tampered = headers.clone();
        tampered.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf32"
                .parse()
                .expect("value"),
        );
        assert_eq!(
            verify_for("service", "GET", &uri, &tampered, b"", &credentials, at),
            Err(Denied::BadSignature)
        );
    }
}
