//! Exactly once: a SendCommand whose answer is lost after the command started
//! never becomes a second command. The simulator's `took_effect` faults act,
//! then answer 500, as a lost answer looks to the caller.

use crate::support::{gate, post_control, sample_event, Stack, GOOD};
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use serde_json::json;
use std::collections::BTreeMap;

fn lose_answer(instance_id: &str) {
    let fault = json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1,
        "instance_id": instance_id, "took_effect": true});
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_lost_send_answer_never_becomes_a_second_command() {
    let stack = Stack::new(3).await;
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(100);
    let controller = stack.controller_with(settings);

    // The canary's command starts; its answer is lost.
    lose_answer(&stack.instances[0]);
    let body = json!({ "flakeref": GOOD }).to_string();
    let (status, answer) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!((status, answer["error"].as_str()), (503, Some("command_unconfirmed")), "{answer}");
    assert_eq!(stack.commands().await.len(), 1, "the SDK did not send it again");

    // The next wave's batch too; the reconciles adopt what went out.
    lose_answer(&stack.instances[1]);
    let event = sample_event("eventbridge-scheduled.json");
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let answer = flakefleet::entry::handle(&controller, &gate(), event.clone(), "it").await;
        let outcome = answer.map(|a| a["reconcile"]["outcome"].as_str().unwrap_or("?").to_owned());
        let done = matches!(outcome.as_deref(), Ok("finished"));
        outcomes.push(outcome.unwrap_or_else(|e| format!("error: {e}")));
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcomes.last().map(String::as_str), Some("finished"), "{outcomes:?}");

    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    for command in stack.commands().await {
        for id in command.instance_ids() {
            *per_instance.entry(id.clone()).or_default() += 1;
        }
    }
    let once: BTreeMap<String, usize> = stack.instances.iter().map(|i| (i.clone(), 1)).collect();
    assert_eq!(per_instance, once, "one command per instance for the release: {outcomes:?}");
}

/// Throttling is the one SendCommand failure sent again: SSM refused it
/// before creating anything.
#[tokio::test]
async fn a_throttled_send_is_sent_again_and_makes_one_command() {
    let stack = Stack::new(1).await;
    let fault = json!({"operation": "SendCommand", "error": "ThrottlingException", "count": 2,
        "instance_id": stack.instances[0]});
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault).starts_with("HTTP/1.1 200"));
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    let release = stack.deploy(&stack.controller_with(settings), GOOD).await;
    assert_eq!(release["status"], "in_progress", "{release}");
    assert_eq!(stack.commands().await.len(), 1);
}

#[test]
fn a_fault_that_took_effect_must_say_so_plainly() {
    let fault = json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1, "took_effect": "yes"});
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("took_effect"), "{answer}");
}
