//! A rollout moved on by SSM's status-change events alone: the simulator
//! emits them as AWS does (one per instance per change, one per command per
//! change), matches them against the template's EventBridge rule, and
//! delivers the matches to the Lambda under `cargo lambda watch` (started by
//! `make test` with dev/test-events-lambda.env, 100 instances). Nothing else
//! reconciles: there is no schedule locally, and the test only reads.

use crate::support::{get_control, post_control, GOOD};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `make test`, which starts the Lambda under cargo lambda watch")
    })
}

fn cli(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_flakefleet"))
        .arg("--json")
        .args(args)
        .env("FLAKEFLEET_URL", env("FLAKEFLEET_TEST_EVENTS_FUNCTION_URL"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the flakefleet binary runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

/// What the simulator emitted, matched and delivered so far.
fn event_report() -> Value {
    get_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/events")
}

#[test]
fn a_rollout_of_100_moves_on_by_events_with_at_most_one_reconcile_per_command() {
    let subscribe = json!({
        "invoke_url": env("FLAKEFLEET_TEST_EVENTS_INVOKE_URL"),
        "comment_prefix": "flakefleet events ",
    });
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/events", &subscribe);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let emitted_before = event_report()["emitted"].clone();

    let release = cli(&["deploy", GOOD]);
    let id = release["release"]["id"].as_str().expect("a release id").to_owned();
    let started = Instant::now();
    let done = loop {
        let shown = cli(&["show", &id]);
        if shown["release"]["status"] != "in_progress" && shown["release"]["status"] != "pending" {
            break shown;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the events never finished the rollout: {shown}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(done["release"]["status"], "succeeded", "{done}");
    let waves = done["release"]["rollout"]["waves"].as_array().unwrap();
    let commands: Vec<&str> =
        waves.iter().flat_map(|w| w["command_ids"].as_array().unwrap()).map(|c| c.as_str().unwrap()).collect();
    assert_eq!(waves.len(), 3, "a canary, then two waves of 50%");
    assert_eq!(done["release"]["instances"].as_array().unwrap().len(), 100);

    // Count once every command's own (terminal) event was delivered and no
    // delivery is queued or in flight: a late extra event is then counted too.
    let settled = Instant::now();
    let report = loop {
        let report = event_report();
        let delivered = report["delivered"].as_array().unwrap();
        let all_ours = commands.iter().all(|c| delivered.iter().any(|d| d["command_id"] == *c));
        if all_ours && report["queued"].as_u64() == Some(delivered.len() as u64) {
            break report;
        }
        assert!(settled.elapsed() < Duration::from_secs(60), "deliveries never settled: {report}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ours: Vec<&Value> = report["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| commands.contains(&d["command_id"].as_str().unwrap()))
        .collect();
    assert!(ours.len() <= commands.len(), "{} reconciles for {} commands: {ours:?}", ours.len(), commands.len());
    for delivery in &ours {
        assert_eq!(delivery["detail_type"], "EC2 Command Status-change Notification", "{delivery}");
        assert_eq!(delivery["status"], "Success");
        assert_eq!(delivery["answer"], 200, "the Lambda took it: {delivery}");
    }
    // AWS also sent one event per instance per change; the rule left them out.
    let per_instance = report["emitted"]["EC2 Command Invocation Status-change Notification"].as_u64().unwrap()
        - emitted_before["EC2 Command Invocation Status-change Notification"].as_u64().unwrap();
    assert!(per_instance >= 100, "{report}");
}

#[test]
fn bad_event_subscriptions_are_refused_with_a_message() {
    for (body, says) in [
        (json!({"invoke_url": "https://lambda.us-east-1.amazonaws.com/"}), "invoke_url"),
        (json!({"invoke_url": "http://127.0.0.1:1/x", "comment_prefix": 3}), "comment_prefix"),
    ] {
        let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/events", &body);
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(says), "{body}: {answer}");
    }
}
