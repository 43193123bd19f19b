//! Hosts the three functions' handlers in this process behind real HTTP, routed exactly as
//! `template.yaml` routes them: the merchant API on one listener, the notify function on its
//! own (as its Function URL is in AWS). The end-to-end tests drive the gateway through it.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body as AxumBody, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{Request as HttpRequest, StatusCode};
use axum::response::{IntoResponse, Response};
use gateway::startup::Gateway;
use lambda_http::RequestExt;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::request::RequestContext;

use local_stack::routes::Routes;

/// The functions, each with its own dependencies as separate Lambdas have. The sweeper has no
/// HTTP route: it runs on a schedule ([`Functions::sweep`]).
pub struct Functions {
    pub create_payment: Gateway,
    pub refund: Gateway,
    pub subscriptions: Gateway,
    pub notify: Gateway,
    pub sweeper: Gateway,
    pub reconcile: Gateway,
}

impl Functions {
    /// Calls a function\'s handler in process, as the Lambda runtime would.
    pub async fn invoke(
        &self,
        function: &str,
        request: lambda_http::Request,
    ) -> Option<lambda_http::Response<lambda_http::Body>> {
        Some(match function {
            "create-payment" => create_payment::handle(&self.create_payment, request).await,
            "refund" => refund::handle(&self.refund, request).await,
            "subscriptions" => subscriptions::handle(&self.subscriptions, request).await,
            "notify" => notify::handle(&self.notify, request).await,
            _ => return None,
        })
    }
}

impl Functions {
    /// One sweeper run, as its schedule would start it, with `budget` as its deadline: the
    /// sweep, then the subscriptions' due periods.
    pub async fn sweep(&self, budget: std::time::Duration) -> gateway::sweep::SweepReport {
        let deadline = gateway::deadline::Deadline::after(budget);
        let report = match gateway::sweep::run(&self.sweeper, &deadline).await {
            Ok(report) => report,
            Err(error) => panic!("the sweeper cannot run: {error}"),
        };
        // Then the subscriptions' due periods, as the Lambda's run does.
        if let Err(error) = gateway::subscriptions::run_due(&self.sweeper, &deadline).await {
            panic!("the sweeper cannot charge: {error}");
        }
        report
    }
}

struct Host {
    functions: Arc<Functions>,
    routes: Routes,
    /// `None`: route the merchant API; `Some(f)`: every request goes to `f` (a Function URL).
    only: Option<String>,
}

pub struct LocalGateway {
    pub api_base_url: String,
    pub notify_url: String,
    pub functions: Arc<Functions>,
    _tasks: Vec<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LocalGateway {
    /// Binds two loopback listeners first (the notify URL must be known to configure the
    /// functions), then serves `functions` once `build` has made them.
    pub async fn bind() -> std::io::Result<(tokio::net::TcpListener, tokio::net::TcpListener)> {
        let api = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let notify = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Ok((api, notify))
    }

    pub fn serve(
        listeners: (tokio::net::TcpListener, tokio::net::TcpListener),
        functions: Arc<Functions>,
        routes: Routes,
    ) -> std::io::Result<LocalGateway> {
        let (api, notify) = listeners;
        let api_base_url = format!("http://{}", api.local_addr()?);
        let notify_url = format!("http://{}/", notify.local_addr()?);
        let notify_function = routes
            .function_url
            .clone()
            .unwrap_or_else(|| "notify".into());
        let serve = |listener: tokio::net::TcpListener, host: Host| {
            let app = Router::new().fallback(dispatch).with_state(Arc::new(host));
            AbortOnDrop(tokio::spawn(async move {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                if let Err(error) = axum::serve(listener, app).await {
                    eprintln!("local gateway stopped: {error}");
                }
            }))
        };
        let tasks = vec![
            serve(
                api,
                Host {
                    functions: Arc::clone(&functions),
                    routes: routes.clone(),
                    only: None,
                },
            ),
            serve(
                notify,
                Host {
                    functions: Arc::clone(&functions),
                    routes,
                    only: Some(notify_function),
                },
            ),
        ];
        Ok(LocalGateway {
            api_base_url,
            notify_url,
            functions,
            _tasks: tasks,
        })
    }
}

async fn dispatch(
    State(host): State<Arc<Host>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: HttpRequest<AxumBody>,
) -> Response {
    let (parts, body) = request.into_parts();
    let function = match &host.only {
        Some(function) => function.clone(),
        None => match host
            .routes
            .function_for(parts.method.as_str(), parts.uri.path())
        {
            Some(function) => function.to_owned(),
            None => {
                let body = r#"{"message":"Not Found"}"#;
                return (
                    StatusCode::NOT_FOUND,
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response();
            }
        },
    };
    // API Gateway and Function URLs cap payloads (6 MB for Lambda); 1 MiB is plenty here.
    let bytes: Bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    // API Gateway's IAM authorization: a SigV4 signature, or 403 before any function runs.
    if host.only.is_none()
        && let Err(denied) = local_stack::api_auth::verify(
            parts.method.as_str(),
            &parts.uri,
            &parts.headers,
            &bytes,
            &local_stack::api_auth::Credentials::local(),
            std::time::SystemTime::now(),
        )
    {
        return denied.into_response();
    }
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => lambda_http::Body::Empty,
        Ok(text) => lambda_http::Body::Text(text),
        Err(_) => lambda_http::Body::Binary(bytes.to_vec()),
    };
    // API Gateway's request context: the caller's address as `requestContext.http.sourceIp`.
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method.clone();
    http.path = Some(parts.uri.path().to_owned());
    http.source_ip = Some(peer.ip().to_string());
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http = http;
    let request = lambda_http::Request::from_parts(parts, body)
        .with_request_context(RequestContext::ApiGatewayV2(context));
    let Some(response) = host.functions.invoke(&function, request).await else {
        return (StatusCode::BAD_GATEWAY, format!("no function {function}")).into_response();
    };
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    Response::from_parts(parts, AxumBody::from(bytes))
}
