//! Lambda entry point: build everything once, then serve requests with `notify::handle`
//! (concurrently where Lambda runs several at once in one process).

fn main() -> Result<(), lambda_http::Error> {
    gateway::lambda::main(gateway::startup::Role::NotifyOnly, notify::handle)
}
