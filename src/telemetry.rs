//! Logs and metrics. Logs: JSON lines (CloudWatch-friendly) with the
//! invocation's span fields, or plain text with `FLAKEFLEET_LOG_FORMAT=text`.
//! Metrics: the domain emits tracing events with target [`METRICS_TARGET`];
//! [`EmfLayer`] writes each as a CloudWatch embedded-metric-format line, which
//! CloudWatch Logs turns into a metric without any API call.

use crate::domain::executor::METRICS_TARGET;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The CloudWatch namespace of flakefleet's metrics.
pub const NAMESPACE: &str = "flakefleet";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("FLAKEFLEET_LOG_FORMAT").is_ok_and(|v| v == "text");
    let not_metrics = filter_fn(|meta| meta.target() != METRICS_TARGET);
    let logs = if text {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    } else {
        json_logs(std::io::stdout).boxed()
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(not_metrics).with_filter(filter))
        .with(EmfLayer::new(|line| println!("{line}")))
        .init();
}

/// The Lambda's log lines: one JSON object per event with the current span's
/// fields (request id, trigger, caller, release id), written to `writer`.
pub fn json_logs<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .with_writer(writer)
}

/// Turns metric events into EMF lines handed to `write`.
pub struct EmfLayer<W> {
    write: W,
}

impl<W: Fn(String) + Send + Sync + 'static> EmfLayer<W> {
    pub fn new(write: W) -> Self {
        Self { write }
    }
}

impl<S: Subscriber, W: Fn(String) + Send + Sync + 'static> Layer<S> for EmfLayer<W> {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != METRICS_TARGET {
            return;
        }
        let mut fields = MetricFields::default();
        event.record(&mut fields);
        if let (Some(metric), Some(value)) = (fields.metric, fields.value) {
            let now = crate::domain::model::time::Timestamp::now().millis();
            (self.write)(emf_line(
                &metric,
                fields.unit.as_deref().unwrap_or("Count"),
                value,
                (fields.fleet.as_deref().unwrap_or(""), fields.kind.as_deref()),
                now,
            ));
        }
    }
}

#[derive(Default)]
struct MetricFields {
    metric: Option<String>,
    unit: Option<String>,
    fleet: Option<String>,
    kind: Option<String>,
    value: Option<f64>,
}

impl Visit for MetricFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "metric" => self.metric = Some(value.to_owned()),
            "unit" => self.unit = Some(value.to_owned()),
            "fleet" => self.fleet = Some(value.to_owned()),
            "kind" => self.kind = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "value" {
            self.value = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_f64(field, value as f64);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_f64(field, value as f64);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

/// One metric as a CloudWatch embedded-metric-format JSON line, with the
/// fleet as its dimension, and with a release's kind also under
/// `[Fleet, Kind]`: the same value counted in both, so the halted-fleet alarm
/// (on `[Fleet]`) sees every release, and a dashboard can tell repairs apart.
pub fn emf_line(
    metric: &str,
    unit: &str,
    value: f64,
    (fleet, kind): (&str, Option<&str>),
    timestamp_ms: u64,
) -> String {
    let dimensions = match kind {
        Some(_) => json!([["Fleet"], ["Fleet", "Kind"]]),
        None => json!([["Fleet"]]),
    };
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        },
        "Fleet": fleet,
    });
    if let Some(kind) = kind {
        line["Kind"] = json!(kind);
    }
    line[metric] = json!(value);
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::usecases::tests::{
        deploy_and_fail_canary, deploy_and_fail_without_rollback, staged, METRIC_NAMES,
    };
    use std::sync::{Arc, Mutex};

    #[test]
    fn emf_lines_follow_the_specification() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line("FleetIsHalted", "None", 0.0, ("prod", None), 42)).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 42);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Fleet"]]));
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "FleetIsHalted");
        assert_eq!((line["Fleet"].as_str(), line["FleetIsHalted"].as_f64()), (Some("prod"), Some(0.0)));
        assert!(line.get("Kind").is_none());
        let line: serde_json::Value =
            serde_json::from_str(&emf_line("DeploysStarted", "Count", 1.0, ("prod", Some("repair")), 42)).unwrap();
        // Every dimension named in a set is a member of the line (the EMF specification).
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Fleet"], ["Fleet", "Kind"]]));
        assert_eq!((line["Fleet"].as_str(), line["Kind"].as_str()), (Some("prod"), Some("repair")));
    }

    /// Every metric line a scenario writes, as (name, value), in order.
    fn metrics_of(
        scenario: impl std::future::Future<Output = crate::domain::model::time::Timestamp>,
    ) -> Vec<(String, f64)> {
        lines_of(scenario)
            .iter()
            .map(|v| {
                let name = v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"].as_str().unwrap().to_owned();
                let value = v[&name].as_f64().unwrap();
                (name, value)
            })
            .collect()
    }

    /// Every metric line a scenario writes, parsed.
    fn lines_of(
        scenario: impl std::future::Future<Output = crate::domain::model::time::Timestamp>,
    ) -> Vec<serde_json::Value> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber =
            tracing_subscriber::registry().with(EmfLayer::new(move |line| sink.lock().unwrap().push(line)));
        tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(scenario);
        });
        let lines = lines.lock().unwrap().clone();
        lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Releases' metrics name their kind: the deploys, and the automatic
    /// rollback whose failure halts the fleet, apart.
    #[test]
    fn release_metrics_carry_the_release_kind() {
        let c = staged(3);
        let lines = lines_of(deploy_and_fail_canary(&c));
        let kinds = |name: &str| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.get(name).is_some())
                .map(|l| l["Kind"].as_str().unwrap_or("-").to_owned())
                .collect()
        };
        assert_eq!(kinds("DeploysStarted"), ["deploy", "deploy"]);
        assert_eq!(kinds("DeploysRolledBack"), ["deploy"]);
        assert_eq!(kinds("FleetHalted"), ["rollback"]);
        assert!(kinds("FleetIsHalted").iter().all(|k| k == "-"), "the fleet's gauge has no kind");
    }

    fn total(metrics: &[(String, f64)], name: &str) -> f64 {
        metrics.iter().filter(|(n, _)| n == name).map(|(_, v)| v).sum()
    }

    #[test]
    fn a_rollout_emits_its_metrics() {
        // A good release, a bad one whose canary fails, and its automatic rollback, which fails too.
        let c = staged(3);
        let metrics = metrics_of(deploy_and_fail_canary(&c));
        for expected in METRIC_NAMES {
            assert!(metrics.iter().any(|(n, _)| n == expected), "{expected} missing from {metrics:?}");
        }
        assert_eq!(
            total(&metrics, "DeploysStarted"),
            2.0,
            "the two requested; the automatic rollback is not a request"
        );
        assert_eq!(total(&metrics, "DeploysSucceeded"), 1.0);
        assert_eq!(total(&metrics, "DeploysRolledBack"), 1.0);
        assert_eq!(total(&metrics, "FleetHalted"), 1.0, "the failed rollback halts the fleet");
        assert_eq!(total(&metrics, "DeploysFailed"), 0.0, "a rolled-back release is counted as rolled back");
        // The gauge says 0 until the fleet halts, and 1 from then on.
        let gauge: Vec<f64> = metrics.iter().filter(|(n, _)| n == "FleetIsHalted").map(|(_, v)| *v).collect();
        let first_halted = gauge.iter().position(|v| *v == 1.0).expect("the gauge never says halted");
        assert!(first_halted > 0 && gauge[..first_halted].iter().all(|v| *v == 0.0), "{gauge:?}");
        assert!(gauge[first_halted..].iter().all(|v| *v == 1.0), "{gauge:?}");
        let durations = metrics.iter().filter(|(n, _)| n == "RolloutDuration").count();
        assert_eq!(durations, 3, "one duration per release that ended: {metrics:?}");
    }

    #[test]
    fn a_failed_release_without_rollback_counts_as_failed() {
        let metrics = metrics_of(deploy_and_fail_without_rollback(3));
        assert_eq!(total(&metrics, "DeploysFailed"), 1.0, "{metrics:?}");
        assert_eq!(total(&metrics, "DeploysRolledBack"), 0.0);
        // The first release, and the drift repair that puts it back on the
        // failed canary (a failure forgets the release tag of the hosts it left unknown).
        assert_eq!(total(&metrics, "DeploysSucceeded"), 2.0);
        assert!(metrics.iter().filter(|(n, _)| n == "FleetIsHalted").all(|(_, v)| *v == 0.0), "no halt: {metrics:?}");
    }
}
