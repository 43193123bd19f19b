//! `openapi.yaml`, the merchant's contract, as the tests use it: the operations it describes,
//! and a check that an answer (status, headers, JSON body) is one the contract allows. The test
//! HTTP client checks every answer of the merchant API with it, so every end-to-end test also
//! proves the contract true.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::routes::Route;

/// Where the contract lives: `openapi.yaml` at the project root.
pub fn spec_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml")
}

/// The contract as JSON, read once.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = std::fs::read_to_string(spec_path())
            .unwrap_or_else(|e| panic!("{}: {e}", spec_path().display()));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("openapi.yaml: {e}"))
    })
}

/// Every operation the contract describes, as routes (method, path; `function` is the
/// operationId).
pub fn operations(spec: &Value) -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if let Some(operation) = item.get(method) {
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    function: operation["operationId"].as_str().unwrap_or("").to_owned(),
                });
            }
        }
    }
    routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    routes
}

/// Follows a local `$ref` (`#/components/...`) in the contract.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| spec.pointer(pointer))
            .map_or(value, |target| resolve(spec, target)),
        None => value,
    }
}

const SPEC_URI: &str = "urn:gateway:openapi";

/// A validator for the schema at `pointer` in the contract (cached).
fn validate_at(pointer: &str, instance: &Value) -> Result<(), String> {
    static REGISTRY: OnceLock<Result<jsonschema::Registry<'static>, String>> = OnceLock::new();
    static VALIDATORS: OnceLock<Mutex<HashMap<String, jsonschema::Validator>>> = OnceLock::new();
    let registry = REGISTRY
        .get_or_init(|| {
            jsonschema::Registry::new()
                .add(SPEC_URI, spec().clone())
                .and_then(|builder| builder.prepare())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let cache = VALIDATORS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().map_err(|e| e.to_string())?;
    if !cache.contains_key(pointer) {
        let schema = serde_json::json!({ "$ref": format!("{SPEC_URI}#{pointer}") });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .with_registry(registry)
            .build(&schema)
            .map_err(|e| format!("schema {pointer}: {e}"))?;
        cache.insert(pointer.to_owned(), validator);
    }
    let validator = &cache[pointer];
    let problems: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether an answer of the merchant API is one the contract allows for this request: a
/// described status, the described headers, a JSON body that validates against its schema.
pub fn check_answer(
    method: &str,
    path: &str,
    status: u16,
    headers: &http::HeaderMap,
    body: &str,
) -> Result<(), String> {
    let spec = spec();
    static OPERATIONS: OnceLock<Vec<Route>> = OnceLock::new();
    let Some(route) = OPERATIONS
        .get_or_init(|| operations(spec))
        .iter()
        .find(|r| r.matches(method, path))
    else {
        // An unknown route is API Gateway's own 404.
        return if status == 404 {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} is not in openapi.yaml but answered {status}"
            ))
        };
    };
    let operation = &spec["paths"][&route.path][method.to_ascii_lowercase()];
    let Some(response) = operation["responses"].get(status.to_string()) else {
        return Err(format!(
            "{method} {} answered {status}, which openapi.yaml does not describe: {body}",
            route.path
        ));
    };
    let response = resolve(spec, response);
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header = resolve(spec, header);
        let value = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        match value {
            None if header["required"] == true => {
                return Err(format!(
                    "{method} {} {status}: the {name} header is missing",
                    route.path
                ));
            }
            Some(text) if header["schema"]["type"] == "integer" && text.parse::<u64>().is_err() => {
                return Err(format!("{name}: {text} is not an integer"));
            }
            _ => {}
        }
    }
    let Some(content) = response["content"].as_object() else {
        return Ok(());
    };
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some((media_name, _)) = content.iter().find(|(name, _)| name.as_str() == media) else {
        return Err(format!(
            "{method} {} {status}: content-type {content_type:?} is not described",
            route.path
        ));
    };
    let instance: Value = serde_json::from_str(body)
        .map_err(|e| format!("{method} {} {status}: not JSON ({e}): {body}", route.path))?;
    // The schema's place in the contract, for the validator to reach through its registry.
    let pointer = match response.pointer(&format!(
        "/content/{}/schema/$ref",
        media_name.replace('/', "~1")
    )) {
        Some(Value::String(reference)) => reference.trim_start_matches('#').to_owned(),
        _ => {
            return Err(format!(
                "{method} {} {status}: the schema is not a $ref",
                route.path
            ));
        }
    };
    validate_at(&pointer, &instance)
        .map_err(|problems| format!("{method} {} {status}: {problems}: {body}", route.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("value"));
        headers
    }

    #[test]
    fn answers_outside_the_contract_are_caught() {
        let headers = json_headers();
        let error = r#"{"error":{"code":"not_found","message":"no payment"}}"#;
        assert_eq!(
            check_answer("GET", "/payments/o_1", 404, &headers, error),
            Ok(())
        );
        // A status it does not describe, a body of the wrong shape, a missing field.
        assert!(check_answer("GET", "/payments/o_1", 418, &headers, error).is_err());
        assert!(check_answer("GET", "/payments/o_1", 404, &headers, r#"{"code":"x"}"#).is_err());
        assert!(
            check_answer(
                "GET",
                "/payments/o_1",
                404,
                &headers,
                r#"{"error":{"code":"not_found"}}"#
            )
            .is_err()
        );
        // Not JSON, or another content type.
        assert!(check_answer("GET", "/payments/o_1", 404, &headers, "nope").is_err());
        let mut text = http::HeaderMap::new();
        text.insert("content-type", "text/plain".parse().expect("value"));
        assert!(check_answer("GET", "/payments/o_1", 404, &text, error).is_err());
        // 503 must say when to retry.
        assert!(check_answer("POST", "/payments", 503, &headers, error).is_err());
        let mut retry = json_headers();
        retry.insert("retry-after", "5".parse().expect("value"));
        assert_eq!(
            check_answer("POST", "/payments", 503, &retry, error),
            Ok(())
        );
    }

    #[test]
    fn a_payment_must_carry_every_field_with_its_type() {
        let payment = serde_json::json!({"object": "payment", "out_trade_no": "o_1", "amount": "1.00", "currency": "CNY", "subject": "s", "channel": "qr", "alipay_channel": "primary", "status": "PAID", "trade_no": "2026", "paid_amount": "1.00", "paid_at": "2026-11-28 10:00:00", "refunded_amount": "0.00", "refundable_amount": "1.00", "return_url": null, "time_expire": "2026-11-28 10:30:00", "paid_after_close": false, "customer_ref": null, "risk": {"flagged": false, "rules": []}, "created_at_ms": 1, "updated_at_ms": 2, "refunds": []});
        let headers = json_headers();
        let check =
            |value: &Value| check_answer("GET", "/payments/o_1", 200, &headers, &value.to_string());
        assert_eq!(check(&payment), Ok(()));
        for (field, bad) in [
            ("amount", serde_json::json!(1.0)),
            ("amount", serde_json::json!("1.001")),
            ("status", serde_json::json!("SETTLED")),
            ("paid_at", serde_json::json!("2026-11-28T10:00:00Z")),
            ("currency", serde_json::json!("XAU")),
        ] {
            let mut changed = payment.clone();
            changed[field] = bad.clone();
            assert!(check(&changed).is_err(), "{field} = {bad}");
        }
        let mut missing = payment.clone();
        missing
            .as_object_mut()
            .expect("object")
            .remove("refundable_amount");
        assert!(check(&missing).is_err());
    }
}
