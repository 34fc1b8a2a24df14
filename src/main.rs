#![recursion_limit = "256"]
//! The Lambda: configuration and SDK clients are built once, then every
//! invocation borrows them.

use flakefleet::config::Config;
use flakefleet::entry::handle;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    flakefleet::telemetry::init();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let calls = flakefleet::aws::CallCounter::default();
    let warm = config.warm_connections;
    let service =
        flakefleet::aws_service(&sdk, config, &calls).inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    if matches!(service.gate, flakefleet::auth::Gate::Open) {
        tracing::warn!("FLAKEFLEET_AUTH=none: every caller may deploy (local emulators only)");
    }
    if warm {
        let started = std::time::Instant::now();
        service.connections.warm().await;
        // Counted apart, so the first invocation's count is its own.
        let (aws_calls, aws_ms) = calls.take_summary();
        let warm_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(%aws_calls, aws_ms, warm_ms, "connections warmed");
    }
    let (controller, gate, calls) = (&service.controller, &service.gate, &calls);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request_id = event.context.request_id;
        let answer = handle(controller, gate, event.payload, &request_id).await;
        // One invocation at a time per process: the count is this invocation's.
        let (aws_calls, aws_ms) = calls.take_summary();
        tracing::info!(%request_id, %aws_calls, aws_ms, "invocation done");
        answer
    }))
    .await
}
