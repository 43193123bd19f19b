//! Lambda entry point: build everything once, then serve requests with `create_payment::handle`.

use shared::gateway::{Role, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Role::CallsAlipay, create_payment::handle).await
}
