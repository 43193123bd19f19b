//! CPU time per request of each handler, in process, with DynamoDB and KMS answered from
//! recorded responses: our code's cost alone (the handler, the SDK's serialization, RSA), with no
//! network and no stand-in in the measured loop.
//!
//! Each handler first runs once for real, through a recording proxy in front of the stand-in
//! (`FaultProxy::recorded`: the last answer per operation). Then a second gateway, whose SDK HTTP
//! client answers every request at once from that recording (an `HttpClient` of the SDK's own
//! interface, as its replay test client does), serves the same request `ROUNDS` times on this one
//! thread; the thread's CPU time (`/proc/thread-self/schedstat`) over the loop, divided by the
//! rounds, is the figure. Every answer is checked, so a replay that broke cannot pass for a fast
//! handler. Alipay is not called by the handlers measured here (page payments are signed URLs;
//! notify never calls Alipay); QR creation and refunds add a precreate/refund exchange (an
//! answer to verify, one RSA verification) that this bench does not replay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use gateway::startup::{Gateway, Role};
use gateway_tests::chaos::proxy::FaultProxy;
use gateway_tests::support::{RETURN_PREFIX, TestEnv};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt as _};

const ROUNDS: u32 = 2_000;

/// Answers every AWS request from a recording, by operation (`x-amz-target`).
#[derive(Clone, Debug)]
struct Replay(Arc<BTreeMap<String, (u16, Bytes)>>);

impl HttpConnector for Replay {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or("");
        let key = match target.split_once('.') {
            Some((service, op)) if service.starts_with("DynamoDB") => format!("DynamoDB.{op}"),
            Some((_, op)) => format!("KMS.{op}"),
            None => String::new(),
        };
        HttpConnectorFuture::ready(match self.0.get(&key) {
            Some((status, body)) => Ok(HttpResponse::new(
                StatusCode::try_from(*status)
                    .unwrap_or_else(|_| StatusCode::from(http::StatusCode::OK)),
                SdkBody::from(body.clone()),
            )),
            None => Err(ConnectorError::other(
                format!("nothing recorded for {key:?}").into(),
                None,
            )),
        })
    }
}

impl HttpClient for Replay {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// This thread's CPU time so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn request(method: &str, path: &str, content_type: &str, body: &str) -> lambda_http::Request {
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = method.parse().expect("method");
    http.path = Some(path.to_owned());
    http.source_ip = Some("203.0.113.9".to_owned());
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http = http;
    let body = if body.is_empty() {
        Body::Empty
    } else {
        Body::Text(body.to_owned())
    };
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request")
        .with_request_context(RequestContext::ApiGatewayV2(context))
}

type Handler = for<'a> fn(
    &'a Gateway,
    lambda_http::Request,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = lambda_http::Response<Body>> + Send + 'a>,
>;

fn notify_handler(
    g: &Gateway,
    r: lambda_http::Request,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = lambda_http::Response<Body>> + Send + '_>> {
    Box::pin(notify::handle(g, r))
}

fn create_handler(
    g: &Gateway,
    r: lambda_http::Request,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = lambda_http::Response<Body>> + Send + '_>> {
    Box::pin(create_payment::handle(g, r))
}

struct Case {
    name: &'static str,
    role: Role,
    handler: Handler,
    make: Box<dyn Fn() -> lambda_http::Request>,
    expect_status: u16,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let env = TestEnv::new().await;
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let simulator = gateway_tests::bench::simulator(&env).await;
    let vars: std::collections::HashMap<String, String> =
        gateway_tests::bench::function_env(&env, &simulator)
            .into_iter()
            .collect();
    let config = gateway::config::Config::from_map(&vars).expect("config");
    // The notification the notify case answers, for an order created on the stand-in.
    gateway_tests::bench::create_order(&env, "cpu_notify").await;
    let notification = gateway_tests::bench::paid_notification(&simulator, "cpu_notify");
    let create_body = serde_json::json!({"out_trade_no": "cpu_create", "amount": "88.88", "subject": "会员 Pro 年费", "channel": "page", "return_url": format!("{RETURN_PREFIX}done")}).to_string();

    let cases = vec![
        Case {
            name: "notify (payment: verify, 1 GetItem, 1 TransactWriteItems)",
            role: Role::NotifyOnly,
            handler: notify_handler,
            make: Box::new(move || {
                request(
                    "POST",
                    "/",
                    "application/x-www-form-urlencoded; charset=utf-8",
                    &notification,
                )
            }),
            expect_status: 200,
        },
        Case {
            name: "create-payment page (1 TransactWriteItems, 1 Sign)",
            role: Role::CallsAlipay,
            handler: create_handler,
            make: Box::new(move || request("POST", "/payments", "application/json", &create_body)),
            expect_status: 201,
        },
        Case {
            name: "GET /payments/{id} (1 Query)",
            role: Role::CallsAlipay,
            handler: create_handler,
            make: Box::new(|| request("GET", "/payments/cpu_notify", "application/json", "")),
            expect_status: 200,
        },
    ];

    println!(
        "\nCPU per request, in process, AWS answered from recordings ({ROUNDS} rounds, one thread):"
    );
    println!(
        "{:<58} {:>12} {:>12}",
        "handler", "CPU µs/req", "wall µs/req"
    );
    for case in cases {
        // Once for real through the recording proxy.
        let proxy = FaultProxy::start(&moto, 1).await.expect("proxy");
        let recording_sdk = gateway_tests::support::sdk_via(&env, &proxy.url);
        let gateway = Gateway::with_config(config.clone(), &recording_sdk, case.role)
            .await
            .expect("gateway");
        let answer = (case.handler)(&gateway, (case.make)()).await;
        assert_eq!(
            answer.status().as_u16(),
            case.expect_status,
            "{}: recording run",
            case.name
        );
        let replay = Replay(Arc::new(proxy.recorded()));
        let replay_sdk = recording_sdk
            .to_builder()
            .http_client(SharedHttpClient::new(replay))
            .build();
        let gateway = Gateway::with_config(config.clone(), &replay_sdk, case.role)
            .await
            .expect("replay gateway");
        let requests: Vec<_> = (0..ROUNDS + 50).map(|_| (case.make)()).collect();
        let mut requests = requests.into_iter();
        for request in requests.by_ref().take(50) {
            let answer = (case.handler)(&gateway, request).await;
            assert_eq!(
                answer.status().as_u16(),
                case.expect_status,
                "{}: warm-up",
                case.name
            );
        }
        let (cpu, wall) = (thread_cpu_ns(), Instant::now());
        for request in requests {
            let answer = (case.handler)(&gateway, request).await;
            assert_eq!(
                answer.status().as_u16(),
                case.expect_status,
                "{}",
                case.name
            );
        }
        let cpu_us = (thread_cpu_ns() - cpu) as f64 / 1e3 / f64::from(ROUNDS);
        let wall_us = wall.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        println!("{:<58} {cpu_us:>12.1} {wall_us:>12.1}", case.name);
    }
    env.drop_table().await;
}
