//! Lambda entry point: build everything once, then serve requests with `notify::handle`.

use shared::gateway::{Role, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Role::NotifyOnly, notify::handle).await
}
