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
    let (controller, gate) =
        flakefleet::aws_service(&sdk, config).inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    if matches!(gate, flakefleet::auth::Gate::Open) {
        tracing::warn!("FLAKEFLEET_AUTH=none: every caller may deploy (local emulators only)");
    }
    let (controller, gate) = (&controller, &gate);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(controller, gate, event.payload, &event.context.request_id).await
    }))
    .await
}
