//! Lambda entry point: build everything once, then serve Alipay's notifications.

use lambda_http::{Error, service_fn};
use shared::gateway::{Gateway, Role};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let gateway = Gateway::init(Role::NotifyOnly).await?;
    let gateway = &gateway;
    lambda_http::run(service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(notify::handle(gateway, request).await)
    }))
    .await
}
