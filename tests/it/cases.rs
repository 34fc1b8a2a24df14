//! The exactly-once issue's cases as scenarios against the local AWS: each
//! test is named after what it proves, and failed before its fix.

use crate::support::{gate, sample_event, Stack, GOOD, NEXT};
use aws_sdk_ssm::types::Command;
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use flakefleet::AwsFleetController;
use serde_json::{json, Value};
use std::time::Duration;

/// A canary of one, then the rest in one wave; rolled back on any failure.
fn staged(stack: &Stack) -> FleetSettings {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(100);
    settings.rollout.failure_threshold = Rate::Count(0);
    settings.rollout.auto_rollback = true;
    settings
}

/// Reconciles every 200 ms until the fleet rests; answers the outcomes seen.
async fn run_out(controller: &AwsFleetController) -> Vec<String> {
    let event = sample_event("eventbridge-scheduled.json");
    let mut outcomes = Vec::new();
    for _ in 0..300 {
        let answer = flakefleet::entry::handle(controller, &gate(), event.clone(), "it").await;
        let outcome = match answer {
            Ok(answer) => answer["reconcile"]["outcome"].as_str().unwrap_or("?").to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let rest = matches!(outcome.as_str(), "idle" | "halted");
        outcomes.push(outcome);
        if rest {
            return outcomes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the fleet never came to rest: {outcomes:?}");
}

async fn release(stack: &Stack, controller: &AwsFleetController, id: &Value) -> Value {
    stack.http(controller, "GET", &format!("/releases/{}", id.as_str().unwrap()), None).await.1["release"].clone()
}

fn flakeref(command: &Command) -> String {
    command.parameters().and_then(|p| p.get("flakeref")).and_then(|v| v.first()).cloned().unwrap_or_default()
}

fn requested_secs(command: &Command) -> f64 {
    command.requested_date_time().map(|t| t.as_secs_f64()).unwrap_or_default()
}

/// Case 6: in the bad release's last wave one host fails fast, one is still
/// applying, one has not started. The rollback is sent only once the running
/// apply ended, the one not started is cancelled, and the rollback reaches
/// every host the bad release was sent to.
#[tokio::test]
async fn a_rollback_waits_for_bad_applies_still_running_and_cancels_those_not_started() {
    let stack = Stack::new(4).await;
    let controller = stack.controller_with(staged(&stack));
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;

    let mut ids = stack.instances.clone();
    ids.sort();
    let (fails, applying, waiting) = (&ids[1], &ids[2], &ids[3]);
    stack.script(json!({"instance_id": fails, "flakeref_contains": "0.1.42", "outcome": "failed", "delay_seconds": 1}));
    stack.script(json!({"instance_id": applying, "flakeref_contains": "0.1.42", "delay_seconds": 5}));
    stack.script(json!({"instance_id": waiting, "flakeref_contains": "0.1.42",
        "start_delay_seconds": 60, "delay_seconds": 70}));
    let bad = stack.deploy(&controller, NEXT).await;
    let outcomes = run_out(&controller).await;

    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{outcomes:?} {bad}");
    assert_eq!(bad["stopping"]["cancelled"], json!([waiting]), "{bad}");
    assert!(bad["stopping"].get("unsettled").is_none(), "{bad}");

    let commands = stack.commands().await;
    let wave = commands.iter().find(|c| flakeref(c) == NEXT && c.instance_ids().contains(applying)).unwrap();
    let rollback = commands
        .iter()
        .filter(|c| flakeref(c) == GOOD)
        .max_by(|a, b| requested_secs(a).total_cmp(&requested_secs(b)))
        .unwrap();
    assert!(
        requested_secs(rollback) >= requested_secs(wave) + 5.0,
        "the rollback went out {:.1} s after the wave, before the running apply ended",
        requested_secs(rollback) - requested_secs(wave)
    );
    let mut reached: Vec<String> = rollback.instance_ids().to_vec();
    reached.sort();
    assert_eq!(reached, ids, "every host the bad release was sent to");

    let cancelled = stack
        .ssm
        .get_command_invocation()
        .command_id(wave.command_id().unwrap())
        .instance_id(waiting)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status().map(|s| s.as_str()), Some("Cancelled"));
}

/// Case 1: a host of the bad release's wave is terminated while its apply
/// runs. Nothing is stranded: the release waits for that apply only up to
/// the settle limit, the rollback passes the dead host over and reaches the
/// others, no reconcile answers an error, and the fleet is free again.
#[tokio::test]
async fn a_host_terminated_mid_wave_never_strands_the_fleet() {
    let stack = Stack::new(3).await;
    let mut settings = staged(&stack);
    settings.settle_limit = Duration::from_secs(3);
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;

    let mut ids = stack.instances.clone();
    ids.sort();
    let (fails, dies) = (&ids[1], &ids[2]);
    stack.script(json!({"instance_id": fails, "flakeref_contains": "0.1.42", "outcome": "failed", "delay_seconds": 1}));
    stack.script(json!({"instance_id": dies, "flakeref_contains": "0.1.42", "delay_seconds": 600}));
    let bad = stack.deploy(&controller, NEXT).await;
    let event = sample_event("eventbridge-scheduled.json");
    flakefleet::entry::handle(&controller, &gate(), event, "it").await.unwrap(); // the wave goes out
    stack.ec2.terminate_instances().instance_ids(dies).send().await.unwrap();
    let outcomes = run_out(&controller).await;
    assert!(outcomes.iter().all(|o| !o.starts_with("error")), "{outcomes:?}");

    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    assert_eq!(bad["stopping"]["unsettled"], json!([dies]), "{bad}");
    let fleet = stack.http(&controller, "GET", "/fleet", None).await.1["fleet"].clone();
    assert!(fleet["lease"].is_null(), "{fleet}");
    let rollback = release(&stack, &controller, &fleet["desired_release"]["id"]).await;
    assert_eq!(rollback["status"], "succeeded", "{rollback}");
    assert_eq!(rollback["rollout"]["waves"][0]["instance_ids"], json!([ids[0], fails]), "{rollback}");
    assert_eq!(rollback["unreachable"][0]["instance_id"], json!(dies), "{rollback}");
}
