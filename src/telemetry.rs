//! Logs: JSON lines (CloudWatch-friendly) with the invocation's span fields,
//! or plain text for a terminal with `FLAKEFLEET_LOG_FORMAT=text`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("FLAKEFLEET_LOG_FORMAT").is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if text {
        builder.init();
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .init();
    }
}
