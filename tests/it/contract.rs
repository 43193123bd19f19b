//! `openapi.yaml` kept true: it describes exactly the routes `template.yaml` deploys, docs/api.md's
//! route table lists exactly its operations, it names every error code the code can answer, it
//! is valid OpenAPI 3.1, and the merchant API refuses what API Gateway's IAM authorization
//! refuses. (Every answer the end-to-end tests receive is also checked against it, by the test
//! HTTP client.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway_tests::merchant::payment_body;
use gateway_tests::support::Stack;
use local_stack::contract::{operations, spec, spec_path};
use local_stack::routes::Routes;
use local_stack::template::{read_template, template_path};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn method_paths(routes: &[local_stack::routes::Route]) -> Vec<(String, String)> {
    routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

#[test]
fn the_spec_describes_exactly_the_routes_the_template_deploys() {
    let template =
        Routes::from_template(&read_template(&template_path()).expect("template")).expect("routes");
    let described = operations(spec());
    assert_eq!(method_paths(&described), method_paths(&template.api));
    assert!(
        described.iter().all(|r| !r.function.is_empty()),
        "an operation lacks its operationId"
    );
}

/// The route table of docs/api.md: one row per operation, with the function the
/// template routes it to (the Function URL and schedule rows aside).
#[test]
fn the_documented_route_table_lists_exactly_the_spec_operations() {
    let doc = std::fs::read_to_string(root().join("docs/api.md")).expect("docs/api.md");
    let section = doc
        .split("# The merchant API")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/api.md has a 'The merchant API' section");
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let route = cells[1].trim_matches('`');
        if let Some((method, path)) = route.split_once(' ') {
            rows.push((method.to_owned(), path.to_owned(), cells[2].to_owned()));
        }
    }
    let template =
        Routes::from_template(&read_template(&template_path()).expect("template")).expect("routes");
    let mut expected: Vec<(String, String, String)> = operations(spec())
        .into_iter()
        .map(|op| {
            let function = template
                .function_for(&op.method, &op.path)
                .unwrap_or("?")
                .to_owned();
            (op.method, op.path, function)
        })
        .collect();
    expected.sort();
    rows.sort();
    assert_eq!(
        rows, expected,
        "the route table of docs/api.md and openapi.yaml differ"
    );
}

/// Every error code a handler can answer with, read from the source: the string given to
/// `ApiError::new` / `ApiError::unavailable`, `invalid_request` for `ApiError::invalid`,
/// `not_found`, and the fallbacks for Alipay refusals without a code.
fn codes_in_source() -> BTreeSet<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("shared"), root().join("functions")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut codes = BTreeSet::from(["invalid_request".to_owned(), "not_found".to_owned()]);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        // Unit tests build errors of their own; only the code that runs counts.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for call in ["ApiError::new(", "ApiError::unavailable(", ".unwrap_or(\""] {
            for (at, _) in text.match_indices(call) {
                let after = &text[at + call.len() - usize::from(call.ends_with('"'))..];
                let window: String = after.chars().take(160).collect();
                let Some(literal) = window.split('"').nth(1) else {
                    continue;
                };
                let is_code = !literal.is_empty()
                    && literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                // A fallback is a code only when it looks like one (`refund_failed`).
                let fallback = call == ".unwrap_or(\"";
                if is_code && (!fallback || (window.starts_with('"') && literal.contains('_'))) {
                    codes.insert(literal.to_owned());
                }
            }
        }
        for (at, _) in text.match_indices("pub const CIRCUIT_OPEN: &str = \"") {
            if let Some(code) = text[at..].split('"').nth(1) {
                codes.insert(code.to_owned());
            }
        }
    }
    codes
}

#[test]
fn the_spec_names_every_error_code_the_gateway_answers() {
    let listed: BTreeSet<String> = spec()["x-error-codes"]
        .as_object()
        .expect("x-error-codes")
        .keys()
        .cloned()
        .collect();
    let used = codes_in_source();
    for known in [
        "circuit_open",
        "payment_paid",
        "unsupported_media_type",
        "alipay_error",
        "refund_failed",
    ] {
        assert!(
            used.contains(known),
            "the source scan misses {known}: {used:?}"
        );
    }
    let undocumented: Vec<&String> = used.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "answered but not in openapi.yaml x-error-codes: {undocumented:?}"
    );
    let unused: Vec<&String> = listed.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "in openapi.yaml but never answered: {unused:?}"
    );
    for (code, entry) in spec()["x-error-codes"].as_object().expect("codes") {
        let status = entry["status"].as_u64().expect("status");
        assert!((400..600).contains(&status), "{code}: {status}");
    }
}

/// openapi-spec-validator (PyPI, in the stand-in's virtualenv) checks it is OpenAPI 3.1.
#[test]
fn the_spec_is_valid_openapi_3_1() {
    let validator = root().join(".venv/bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing: run the tests through scripts/with-moto.sh (make test)",
        validator.display()
    );
    let output = std::process::Command::new(&validator)
        .arg(spec_path())
        .output()
        .expect("run openapi-spec-validator");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(spec()["openapi"], "3.1.0");
}

/// API Gateway's IAM authorization, locally: no signature, a wrong one, another key or a
/// stale one: 403 with API Gateway's body, and nothing is created. A request signed by an
/// independent signer (curl's `--aws-sigv4`) is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_wrongly_signed_requests_are_refused_like_api_gateway() {
    let stack = Stack::start().await;
    let url = stack.api("/payments");
    let body = payment_body("auth_1", "5.00", "qr").to_string();

    let unsigned = stack
        .http
        .send_unsigned("POST", &url, "application/json", body.clone())
        .await;
    assert_eq!(unsigned.status, 403, "{}", unsigned.text);
    assert_eq!(unsigned.json()["message"], "Forbidden");

    // Signed with the right key id but another secret, or with another key.
    let forged_answer = curl(&stack, "POST", "/payments", &body, "test:not-the-secret").await;
    assert_eq!(forged_answer.0, 403, "{}", forged_answer.1);
    assert!(
        forged_answer
            .1
            .contains("signature we calculated does not match"),
        "{}",
        forged_answer.1
    );
    let other_key = curl(&stack, "POST", "/payments", &body, "AKIDEXAMPLE:test").await;
    assert_eq!(other_key.0, 403, "{}", other_key.1);

    // Nothing was created by the refused requests.
    let read = stack.http.get(&stack.api("/payments/auth_1")).await;
    assert_eq!(read.status, 404, "{}", read.text);

    // curl signs on its own (SigV4 for execute-api): accepted.
    let created = curl(&stack, "POST", "/payments", &body, "test:test").await;
    assert_eq!(created.0, 201, "{}", created.1);
    let read = stack.http.get(&stack.api("/payments/auth_1")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let fetched = curl(&stack, "GET", "/payments/auth_1?sync=true", "", "test:test").await;
    assert_eq!(fetched.0, 200, "{}", fetched.1);
}

/// `curl --aws-sigv4 aws:amz:us-east-1:execute-api --user KEY:SECRET`: status and body.
async fn curl(stack: &Stack, method: &str, path: &str, body: &str, user: &str) -> (u16, String) {
    let mut command = std::process::Command::new("curl");
    command
        .args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:execute-api",
            "--user",
            user,
        ])
        .arg(stack.api(path));
    if !body.is_empty() {
        command.args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}
