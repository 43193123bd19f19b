//! The merchant API under one base URL for `make run`: each request is forwarded to the
//! function that template.yaml routes it to, running under `cargo lambda watch`, as the event
//! API Gateway (HTTP API, payload 2.0) sends, with the client's address as its source IP.
//!
//! Usage: local-api --port 3000 --functions http://127.0.0.1:9000

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use clap::Parser;
use gateway_tests::local_stack::{read_template, template_path};
use gateway_tests::routes::Routes;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    about = "Serve the merchant API's routes (from template.yaml) in front of cargo lambda watch"
)]
struct Args {
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Where `cargo lambda watch` listens.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    functions: String,
}

struct Proxy {
    routes: Routes,
    functions: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Body,
    >,
}

/// Forwards one request as API Gateway (HTTP API, payload 2.0) would: the function is invoked
/// through the Lambda Invoke API with the event API Gateway builds, the client's address as
/// `requestContext.http.sourceIp` (what the fraud checks count per IP), and its answer is
/// turned back into HTTP.
async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(function) = proxy
        .routes
        .function_for(parts.method.as_str(), parts.uri.path())
    else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            r#"{"message":"Not Found"}"#,
        )
            .into_response();
    };
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let event = api_gateway_event(&parts, &body, peer.ip());
    let target = format!(
        "{}/2015-03-31/functions/{function}/invocations",
        proxy.functions
    );
    let invoke = axum::http::Request::post(target)
        .header("content-type", "application/json")
        .body(Body::from(event.to_string()));
    let Ok(invoke) = invoke else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let answer = match proxy.client.request(invoke).await {
        Ok(response) => response.into_body().collect().await.map(|b| b.to_bytes()),
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("cargo lambda watch is not answering: {e}"),
            )
                .into_response();
        }
    };
    match answer {
        Ok(bytes) => http_answer(&bytes),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The event API Gateway sends for this request (HTTP API, payload format 2.0).
fn api_gateway_event(
    parts: &axum::http::request::Parts,
    body: &[u8],
    source_ip: std::net::IpAddr,
) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // API Gateway joins repeated headers with commas.
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let query = parts.uri.query().unwrap_or("");
    let mut parameters = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        parameters.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let path = parts.uri.path();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": if parameters.is_empty() { Value::Null } else { Value::Object(parameters) },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or(json!("127.0.0.1")),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip.to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or(json!("")),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now,
        },
        "body": if body.is_empty() { Value::Null } else { Value::String(body) },
        "isBase64Encoded": encoded,
    })
}

/// The function's answer (`{statusCode, headers, body, isBase64Encoded}`) as HTTP.
fn http_answer(bytes: &[u8]) -> Response {
    let Ok(answer) = serde_json::from_slice::<Value>(bytes) else {
        return (StatusCode::BAD_GATEWAY, "the function's answer is not JSON").into_response();
    };
    if answer.get("errorMessage").is_some() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response();
    }
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let text = answer["body"].as_str().unwrap_or("");
    let body = if answer["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default()
    } else {
        text.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let routes = Routes::from_template(&read_template(&template_path())?)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let proxy = Arc::new(Proxy {
        routes,
        functions: args.functions.trim_end_matches('/').to_owned(),
        client,
    });
    for route in &proxy.routes.api {
        println!(
            "  {:<5} {:<52} -> {}",
            route.method, route.path, route.function
        );
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("port {}: {e}", args.port))?;
    let app = Router::new().fallback(forward).with_state(proxy);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}
