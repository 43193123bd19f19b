//! The merchant API under one base URL for `make run`: each request is forwarded to the
//! function that template.yaml routes it to, running under `cargo lambda watch`, as the event
//! API Gateway (HTTP API, payload 2.0) sends, with the client's address as its source IP.
//!
//! As API Gateway's IAM authorization does, every request must be SigV4-signed (service
//! `execute-api`) with the stand-in's credentials; a missing or wrong signature is answered
//! `403` before any function runs.
//!
//! With `--shop-port`, it also serves a stand-in for the merchant's shop: the page Alipay sends
//! the buyer back to (`return_url`), which reads the payment from the API and shows it.
//!
//! Usage: local-api --port 3000 --functions http://127.0.0.1:9000 [--shop-port 3001]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use clap::Parser;
use http_body_util::BodyExt as _;
use local_stack::api_auth::{self, Credentials};
use local_stack::routes::Routes;
use local_stack::template::{read_template, template_path};
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
    /// Serve the demo shop's return page on this port.
    #[arg(long)]
    shop_port: Option<u16>,
}

struct Proxy {
    routes: Routes,
    credentials: Credentials,
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
    if let Err(denied) = api_auth::verify(
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        &body,
        &proxy.credentials,
        std::time::SystemTime::now(),
    ) {
        return denied.into_response();
    }
    proxy.invoke(function, &parts, &body, peer.ip()).await
}

impl Proxy {
    /// Invokes `function` with the event API Gateway would send for this request, and turns
    /// its answer back into HTTP.
    async fn invoke(
        &self,
        function: &str,
        parts: &axum::http::request::Parts,
        body: &[u8],
        source_ip: std::net::IpAddr,
    ) -> Response {
        let event = api_gateway_event(parts, body, source_ip);
        let target = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.functions
        );
        let invoke = axum::http::Request::post(target)
            .header("content-type", "application/json")
            .body(Body::from(event.to_string()));
        let Ok(invoke) = invoke else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let answer = match self.client.request(invoke).await {
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
}

/// The demo shop's return page, `GET /orders/{out_trade_no}`: where Alipay sends the buyer
/// back. Like a real shop, it does not trust the query string: it reads the payment from the
/// gateway and shows its status.
async fn shop_return(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(out_trade_no) = path
        .strip_prefix("/orders/")
        .filter(|no| !no.is_empty() && no.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let Ok(read) = axum::http::Request::get(format!("/payments/{out_trade_no}?sync=true"))
        .header("host", "local-shop")
        .body(())
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (parts, ()) = read.into_parts();
    let local = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    // The function template.yaml routes the read to, as the API would.
    let Some(function) = proxy.routes.function_for("GET", parts.uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = proxy.invoke(function, &parts, b"", local).await;
    let Ok(bytes) = answer.into_body().collect().await.map(|b| b.to_bytes()) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let payment: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |key: &str| html_escape(payment[key].as_str().unwrap_or("?"));
    let page = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>Order {no}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>Thank you</h1>\
         <p>Order <b id=\"order\">{no}</b>: <b id=\"status\">{status}</b>, <span id=\"amount\">¥{amount}</span> ({subject})</p>\
         <p>(the demo shop's return page; it asked the gateway, not the query string)</p></body></html>",
        no = html_escape(out_trade_no),
        status = text("status"),
        amount = text("amount"),
        subject = text("subject"),
    );
    (
        StatusCode::OK,
        [("content-type", "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    let mut credentials = Credentials::local();
    if let Ok(region) = std::env::var("AWS_REGION") {
        credentials.region = region;
    }
    let proxy = Arc::new(Proxy {
        routes,
        credentials,
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
    if let Some(port) = args.shop_port {
        let shop = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("port {port}: {e}"))?;
        let app = Router::new()
            .fallback(shop_return)
            .with_state(Arc::clone(&proxy));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(shop, app).await {
                eprintln!("the shop stopped: {error}");
            }
        });
    }
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
