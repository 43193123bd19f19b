//! The HTTP edge shared by the merchant routes: request parsing, and the one error shape,
//! `{"error": {"code", "message", "field"?}}`, that every failure becomes.

pub mod views;

use lambda_http::http::header::{CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use alipay::response::Status;
use alipay::signer::SignError;
use store::StoreError;

use crate::channel::client::CallError;
use crate::startup::ChannelError;

/// Merchant request bodies are small JSON documents.
pub const MAX_JSON_BODY_BYTES: usize = 16 * 1024;

/// A failure as the merchant sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// For `risk_refused`: the fraud rule that refused.
    pub rule: Option<String>,
    /// Seconds, for 503 and 502 answers that are worth retrying.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
            rule: None,
            retry_after: None,
        }
    }

    /// `400`: a field is missing or malformed.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field} {problem}"),
        );
        error.field = Some(field.to_owned());
        error
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(code: &str, message: impl Into<String>, retry_after: u32) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        error.retry_after = Some(retry_after);
        error
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    pub fn into_response(self) -> Response<Body> {
        self.into_response_with_body(Map::new())
    }

    /// The error, with the resource it is about beside it (`{"error": …, "payment": …}`), so
    /// that a client always learns the state it can follow up on.
    pub fn into_response_with(self, key: &str, value: Value) -> Response<Body> {
        let mut body = Map::new();
        body.insert(key.to_owned(), value);
        self.into_response_with_body(body)
    }

    fn into_response_with_body(self, mut body: Map<String, Value>) -> Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(field), Some(object)) = (&self.field, error.as_object_mut()) {
            object.insert("field".into(), Value::String(field.clone()));
        }
        if let (Some(rule), Some(object)) = (&self.rule, error.as_object_mut()) {
            object.insert("rule".into(), Value::String(rule.clone()));
        }
        body.insert("error".into(), error);
        let mut response = json_response(self.status, &body);
        if let Some(seconds) = self.retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::NotConfigured(_) | ChannelError::NoneConfigured => {
                ApiError::unavailable("misconfigured", error.to_string(), 60)
            }
            ChannelError::AllOpen { retry_after_ms } => ApiError::unavailable(
                "circuit_open",
                error.to_string(),
                crate::deadline::seconds_after(retry_after_ms),
            ),
            ChannelError::NoSuchPayment(_) => ApiError::not_found(error.to_string()),
            ChannelError::UnsupportedCurrency { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported_currency",
                error.to_string(),
            )
            .with_field("currency"),
            ChannelError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::OrderNotFound(_) | StoreError::RefundNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            StoreError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            StoreError::IllegalTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", error.to_string())
            }
            StoreError::NotRefundable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "payment_not_refundable",
                error.to_string(),
            ),
            StoreError::CurrencyMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency_mismatch",
                error.to_string(),
            )
            .with_field("currency"),
            StoreError::ExceedsRefundable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_exceeds_refundable",
                error.to_string(),
            )
            .with_field("amount"),
            StoreError::RiskRefused { rule, message } => {
                let mut refused = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "risk_refused",
                    format!("refused by the fraud checks: {message}"),
                );
                refused.rule = Some(rule.clone());
                refused
            }
            StoreError::Throttled => {
                ApiError::unavailable("storage_throttled", "the order store is busy; retry", 1)
            }
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %error, "order store failure");
                ApiError::unavailable(
                    "storage_unavailable",
                    "the order store is unavailable; retry",
                    2,
                )
            }
        }
    }
}

impl From<SignError> for ApiError {
    fn from(error: SignError) -> Self {
        tracing::error!(error = %error, "signing failed");
        match error {
            SignError::Unavailable(_) => {
                ApiError::unavailable("signing_unavailable", "KMS is unavailable; retry", 2)
            }
            SignError::Refused(_) => ApiError::unavailable(
                "signing_refused",
                "the signing key is not usable; an operator must check KMS",
                60,
            ),
        }
    }
}

impl From<CallError> for ApiError {
    /// Alipay could not be asked, or its answer could not be trusted. Not logged here: the
    /// call (`gateway::Alipay`) logged it once.
    fn from(error: CallError) -> Self {
        match error {
            CallError::Sign(error) => error.into(),
            CallError::Timeout(_) | CallError::Unavailable(_) => {
                ApiError::unavailable("alipay_unavailable", error.to_string(), 5)
            }
            CallError::Open { retry_after_ms, .. } => ApiError::unavailable(
                "circuit_open",
                format!("{error}: retry after the Retry-After seconds"),
                crate::deadline::seconds_after(retry_after_ms),
            ),
            CallError::Untrusted(_) => {
                let mut error = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "alipay_untrusted",
                    error.to_string(),
                );
                error.retry_after = Some(5);
                error
            }
        }
    }
}

impl ApiError {
    /// Alipay answered, and the answer was no: its `sub_code` becomes the error code.
    pub fn alipay_refused(status: &Status) -> ApiError {
        let sub_code = status.sub_code.as_deref().unwrap_or("alipay_error");
        let message = format!(
            "Alipay answered {} {sub_code}: {}",
            status.code,
            status.sub_msg.as_deref().unwrap_or(&status.msg)
        );
        let mut error = ApiError::new(StatusCode::BAD_GATEWAY, sub_code, message);
        if status.code == "20000" {
            error.status = StatusCode::SERVICE_UNAVAILABLE;
            error.retry_after = Some(5);
        }
        error
    }
}

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    if let Ok(value) = "application/json".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::Text(text.to_owned()));
    *response.status_mut() = status;
    if let Ok(value) = "text/plain; charset=utf-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The raw body bytes (lambda_http has already undone API Gateway's Base64).
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// The request path split into segments, without empty ones.
pub fn path_segments(request: &Request) -> Vec<&str> {
    request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `?name=true` is in the query string.
pub fn query_flag(request: &Request, name: &str) -> bool {
    request.uri().query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == name && (v == "true" || v == "1"))
    })
}

pub fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

/// A JSON object body, read with field-by-field errors.
pub struct JsonBody(Map<String, Value>);

/// Whether the request says its body is JSON (`application/json`, or `application/*+json`,
/// with any parameters such as `charset=utf-8`).
fn is_json(request: &Request) -> bool {
    let Some(value) = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

impl JsonBody {
    /// Parses the body: sent as JSON (`415` otherwise), at most [`MAX_JSON_BODY_BYTES`], a JSON
    /// object, no fields but `allowed`.
    pub fn parse(request: &Request, allowed: &[&str]) -> Result<JsonBody, ApiError> {
        if !is_json(request) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent as JSON: content-type: application/json",
            ));
        }
        let bytes = body_bytes(request);
        if bytes.len() > MAX_JSON_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {MAX_JSON_BODY_BYTES} bytes"),
            ));
        }
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object",
            ));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object",
            ));
        }
        // serde_json keeps the last of repeated keys; `{"amount":"1.00","amount":"900.00"}`
        // must not refund 900.00 to a reader that saw 1.00.
        let TopLevel { map, duplicate } = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        if let Some(key) = duplicate {
            return Err(ApiError::invalid(&key, "appears more than once"));
        }
        if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(ApiError::invalid(
                unknown,
                format!("is not a known field; expected {}", allowed.join(", ")),
            ));
        }
        Ok(JsonBody(map))
    }

    /// A string field; `None` when absent or null.
    pub fn string(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(Value::Number(_)) if field.contains("amount") => Err(ApiError::invalid(
                field,
                "must be a string with two decimals, like \"299.00\" (never a number)",
            )),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
        }
    }

    /// A whole-number field (a JSON integer); `None` when absent or null.
    pub fn integer(&self, field: &str) -> Result<Option<u32>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(field, "must be a whole number")),
            Some(_) => Err(ApiError::invalid(field, "must be a whole number")),
        }
    }

    /// `customer_ref`: the merchant's id of its customer, 1 to 64 of `A-Za-z0-9_-.:@`.
    pub fn customer_ref(&self) -> Result<Option<String>, ApiError> {
        self.string("customer_ref")?
            .map(|text| {
                let valid = (1..=64).contains(&text.len())
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
                valid.then(|| text.to_owned()).ok_or_else(|| {
                    ApiError::invalid(
                        "customer_ref",
                        "must be 1 to 64 letters, digits or _ - . : @",
                    )
                })
            })
            .transpose()
    }

    pub fn required(&self, field: &str) -> Result<&str, ApiError> {
        self.string(field)?
            .ok_or_else(|| ApiError::invalid(field, "is required"))
    }
}

/// A JSON object's members, with the first key that appeared twice.
struct TopLevel {
    map: Map<String, Value>,
    duplicate: Option<String>,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<TopLevel, A::Error> {
                let mut map = Map::new();
                let mut duplicate = None;
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&key) {
                        duplicate.get_or_insert(key);
                    } else {
                        map.insert(key, value);
                    }
                }
                Ok(TopLevel { map, duplicate })
            }
        }
        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> Request {
        typed(body, Some("application/json"))
    }

    fn typed(body: &str, content_type: Option<&str>) -> Request {
        let mut request = Request::new(Body::Text(body.to_owned()));
        *request.method_mut() = Method::POST;
        if let Some(value) = content_type.and_then(|v| v.parse().ok()) {
            request.headers_mut().insert(CONTENT_TYPE, value);
        }
        request
    }

    #[test]
    fn only_a_body_sent_as_json_is_read() {
        let body = r#"{"amount":"1.00"}"#;
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(
                JsonBody::parse(&typed(body, Some(accepted)), &["amount"]).is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            None,
        ] {
            let error = JsonBody::parse(&typed(body, refused), &["amount"])
                .err()
                .expect("refused");
            assert_eq!(
                (error.status, error.code.as_str()),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn fields_are_named_in_errors() {
        let allowed = ["amount", "reason"];
        let unknown = JsonBody::parse(&request(r#"{"amount":"1.00","extra":1}"#), &allowed)
            .err()
            .expect("err");
        assert_eq!(unknown.field.as_deref(), Some("extra"));
        let body = JsonBody::parse(&request(r#"{"amount":1.5}"#), &allowed).expect("parses");
        let number = body.required("amount").expect_err("number");
        assert_eq!(
            (number.status, number.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("amount"))
        );
        assert!(number.message.contains("never a number"));
        let missing = body.required("reason").expect_err("missing");
        assert_eq!(missing.message, "reason is required");
        assert_eq!(
            JsonBody::parse(&request("[1]"), &allowed)
                .err()
                .map(|e| e.status),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            JsonBody::parse(&request("{"), &allowed)
                .err()
                .map(|e| e.code),
            Some("invalid_json".to_owned())
        );
        let huge = format!(r#"{{"reason":"{}"}}"#, "x".repeat(MAX_JSON_BODY_BYTES));
        assert_eq!(
            JsonBody::parse(&request(&huge), &allowed)
                .err()
                .map(|e| e.status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_name() {
        let error = JsonBody::parse(
            &request(r#"{"amount":"1.00","amount":"900.00"}"#),
            &["amount"],
        )
        .err()
        .expect("refused");
        assert_eq!(
            (error.status, error.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("amount"))
        );
        assert_eq!(error.message, "amount appears more than once");
        // Nested objects are values, not fields: only the top level is checked.
        assert!(JsonBody::parse(&request(r#"{"amount":"1.00"}"#), &["amount"]).is_ok());
    }

    #[test]
    fn the_error_shape_is_the_same_everywhere() {
        let response = ApiError::unavailable("storage_throttled", "busy", 3).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
        let Body::Text(text) = response.body() else {
            panic!("text body")
        };
        let value: Value = serde_json::from_str(text).expect("json");
        assert_eq!(
            value,
            json!({"error": {"code": "storage_throttled", "message": "busy"}})
        );
    }
}
