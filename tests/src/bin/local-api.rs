//! The merchant API under one base URL for `make run`: each request is forwarded to the
//! function that template.yaml routes it to, running under `cargo lambda watch`.
//!
//! Usage: local-api --port 3000 --functions http://127.0.0.1:9000

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use gateway_tests::local_stack::{read_template, template_path};
use gateway_tests::routes::Routes;
use http_body_util::BodyExt as _;

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

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
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
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!("{}/lambda-url/{function}{path_and_query}", proxy.functions);
    parts.uri = match target.parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    parts.headers.remove("host");
    match proxy
        .client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            match body.collect().await {
                Ok(collected) => Response::from_parts(parts, Body::from(collected.to_bytes())),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("cargo lambda watch is not answering: {e}"),
        )
            .into_response(),
    }
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
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
