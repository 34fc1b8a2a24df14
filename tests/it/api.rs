//! The API's contract held against real answers: every route, through the
//! handler over the local AWS, answers what docs/api/schema.json says
//! (checked by the schema's own validator, dev/validate_api.py), and the
//! action's summary.jq renders those answers.

use crate::support::{assert_valid, Stack, GOOD, NEXT};
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use serde_json::{json, Value};
use std::process::Command;

#[tokio::test]
async fn every_route_answers_what_the_published_contract_says() {
    // The simulator's outcome rules (no fake hosts), so one host can be made to fail.
    let stack = Stack::new(3).await;
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(50);
    settings.rollout.auto_rollback = true;
    let controller = stack.controller_with(settings);
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let (stack, controller) = (&stack, &controller);
        async move {
            let body = body.map(|b| b.to_string());
            stack.http(controller, method, &path, body.as_deref()).await
        }
    };
    let mut answers: Vec<(&str, Value)> = Vec::new();
    let mut expect = |name: &'static str, (status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{name}: {body}");
        answers.push((name, body));
    };

    expect("Health", call("GET", "/healthz".into(), None).await, 200);
    let first = call("POST", "/releases".into(), Some(json!({"flakeref": GOOD, "reason": "first"}))).await;
    let good = first.1["release"]["id"].as_str().unwrap().to_owned();
    expect("ReleaseBody", first, 202);
    // The fleet is held: refused, naming the holder.
    expect("ErrorBody", call("POST", "/releases".into(), Some(json!({"flakeref": NEXT}))).await, 409);
    expect("ReleaseBody", call("POST", format!("/releases/{good}/pause"), None).await, 200);
    expect("FleetBody", call("GET", "/fleet".into(), None).await, 200);
    expect("ReleaseBody", call("POST", format!("/releases/{good}/resume"), None).await, 200);
    stack.settle(&controller).await;

    // The next release fails on one host: stopped, and rolled back.
    stack.script(json!({"instance_id": stack.instances[0], "flakeref_contains": "0.1.42", "outcome": "failed",
        "exit_code": 3, "stderr": "warning: the following units failed: nginx.service"}));
    let bad = call("POST", "/releases".into(), Some(json!({"flakeref": NEXT}))).await;
    let bad_id = bad.1["release"]["id"].as_str().unwrap().to_owned();
    expect("ReleaseBody", bad, 202);
    for _ in 0..40 {
        let (status, body) = call("POST", "/reconcile".into(), None).await;
        let outcome = body["reconcile"]["outcome"].as_str().unwrap_or_default().to_owned();
        expect("ReconcileBody", (status, body), 200);
        if outcome == "idle" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let failed = call("GET", format!("/releases/{bad_id}"), None).await;
    assert_eq!(failed.1["release"]["status"], "rolled_back", "{}", failed.1);
    assert!(failed.1["release"]["rolled_back_by"].is_string(), "{}", failed.1);
    expect("ReleaseBody", failed, 200);
    expect("ReleasePage", call("GET", "/releases?limit=10".into(), None).await, 200);
    expect("FleetBody", call("GET", "/fleet".into(), None).await, 200);
    expect("ReleaseBody", call("POST", "/rollback".into(), Some(json!({"release_id": good}))).await, 202);
    stack.settle(&controller).await;

    // Refusals: each an ErrorBody, with what it names.
    expect("ErrorBody", call("POST", "/releases".into(), Some(json!({"flakeref": "not a flakeref"}))).await, 400);
    expect("ErrorBody", call("GET", "/releases/01ARZ3NDEKTSV4RRFFQ69G5FAV".into(), None).await, 404);
    expect("ErrorBody", call("DELETE", "/fleet".into(), None).await, 405);
    expect("ErrorBody", call("POST", format!("/releases/{good}/pause"), None).await, 409);
    let targeted = json!({"flakeref": GOOD, "instance_ids": ["i-0123456789abcdef0"]});
    expect("ErrorBody", call("POST", "/releases".into(), Some(targeted)).await, 400);

    for name in ["Health", "ReleaseBody", "ReleasePage", "FleetBody", "ReconcileBody", "ErrorBody"] {
        let bodies: Vec<&Value> = answers.iter().filter(|(n, _)| *n == name).map(|(_, b)| b).collect();
        assert!(!bodies.is_empty(), "no {name} answered");
        assert_valid(name, &bodies);
    }

    // The action's job summary renders real answers: each release as run.sh passes it.
    for (_, body) in answers.iter().filter(|(n, _)| *n == "ReleaseBody") {
        let release = &body["release"];
        let summary = summary_of(release);
        let id = release["id"].as_str().unwrap();
        assert!(summary.contains(id), "{summary}");
        if release["status"] == "rolled_back" {
            assert!(summary.contains("nginx.service"), "the failed host's verdict line: {summary}");
        }
    }
}

/// The same answer with a field the contract does not name is refused by the
/// validator: the check above can fail.
#[test]
#[should_panic(expected = "Additional properties are not allowed")]
fn an_answer_with_a_field_the_contract_does_not_name_is_refused() {
    let health = json!({"status": "ok", "fleet": "prod", "version": "1"});
    assert_valid("Health", &[&health]);
}

/// `summary.jq` over one release, as run.sh runs it.
pub fn summary_of(release: &Value) -> String {
    use std::io::Write;
    let mut child = Command::new("jq")
        .args(["-r", "--arg", "waited", "true", "--arg", "timed_out", "false", "--arg", "elapsed", "9"])
        .args(["--arg", "repo", "r", "-f"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.github/actions/deploy/summary.jq"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(release.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "summary.jq failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
