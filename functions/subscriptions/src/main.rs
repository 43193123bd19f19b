//! Lambda entry point: build everything once, then serve requests with `subscriptions::handle`
//! (concurrently where Lambda runs several at once in one process).

fn main() -> Result<(), lambda_http::Error> {
    gateway::lambda::main(gateway::startup::Role::CallsAlipay, subscriptions::handle)
}
