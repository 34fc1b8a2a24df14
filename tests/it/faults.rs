//! The third round of faults (issue #36) against the local AWS: each the
//! scenario that went wrong, each failing before its fix (docs/testing.md
//! says how). The planner's rules are also tables in
//! `src/domain/planner/tests.rs` (`round_three`), and the in-memory
//! scenarios are in `src/domain/usecases/tests/faults.rs`.

use crate::cases::{release, run_out};
use crate::lambdas::{answer, request, scheduled, Lambdas};
use crate::support::{gate, post_control, set_agents, Stack, GOOD, NEXT};
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use flakefleet::entry::HandlerError;
use flakefleet::AwsFleetController;
use serde_json::{json, Value};
use std::time::Duration;

/// A canary of one, then the rest in one wave; rolled back on any failure.
fn staged(stack: &Stack) -> FleetSettings {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(100);
    settings.rollout.failure_threshold = Rate::Count(0);
    settings.rollout.unreachable_tolerance = Rate::Count(1);
    settings.rollout.auto_rollback = true;
    settings
}

/// Each running instance of the fleet with the flakeref its release tag names (GET /fleet).
async fn fleet_flakerefs(stack: &Stack, controller: &AwsFleetController) -> Vec<(String, Value)> {
    let (_, fleet) = stack.http(controller, "GET", "/fleet", None).await;
    let instances = fleet["fleet"]["instances"].as_array().cloned().unwrap_or_default();
    instances.iter().map(|i| (i["instance_id"].as_str().unwrap().to_owned(), i["flakeref"].clone())).collect()
}

/// The value of the instance's `flakefleet:release` tag, if it has one.
async fn release_tag(stack: &Stack, instance: &str) -> Option<String> {
    let out = stack.ec2.describe_instances().instance_ids(instance).send().await.unwrap();
    let found = out.reservations()[0].instances()[0].tags().iter().find(|t| t.key() == Some("flakefleet:release"));
    found.and_then(|t| t.value()).map(str::to_owned)
}

fn sorted(stack: &Stack) -> Vec<String> {
    let mut ids = stack.instances.clone();
    ids.sort();
    ids
}

/// A controller with `settings` over `stack`, whose hosts all run GOOD (the
/// fleet's good release, at rest), and the hosts sorted (the canary first).
async fn good_everywhere(stack: &Stack, settings: FleetSettings) -> (AwsFleetController, Vec<String>) {
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;
    (controller, sorted(stack))
}

/// `staged`, with a deadline of 4 s and a settle limit of 1 s.
fn short(stack: &Stack) -> FleetSettings {
    let mut settings = staged(stack);
    settings.deploy_timeout = Duration::from_secs(4);
    settings.settle_limit = Duration::from_secs(1);
    settings
}

fn agent_on_send(instance: &str, ping_status: &str) {
    let body = json!({"instance_id": instance, "ping_status": ping_status, "on": "SendCommand"});
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &body).starts_with("HTTP/1.1 200"));
}

fn ssm_fault(rule: Value) {
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &rule).starts_with("HTTP/1.1 200"));
}

async fn commands_to(stack: &Stack, instance: &str, flakeref: &str) -> usize {
    let commands = stack.commands().await;
    let to = |c: &&aws_sdk_ssm::types::Command| {
        c.parameters().and_then(|p| p.get("flakeref")).is_some_and(|v| v.iter().any(|f| f == flakeref))
            && c.instance_ids().iter().any(|i| i == instance)
    };
    commands.iter().filter(to).count()
}

/// 1 and 6. The wave's send fails before it creates anything: the scheduled
/// invocation errs with `command_unconfirmed` (it was `internal_error`). An
/// operator pauses. Past the takeover window, three Lambdas reconcile at
/// once: each answers `paused`, and the wave's hosts get nothing until the
/// resume. Before: a takeover sent the wave with the pause still set.
#[tokio::test]
async fn a_pause_holds_a_wave_whose_claimer_failed_to_send_it() {
    let stack = Stack::new(3).await;
    let lambdas = Lambdas::start(&stack, 3, &[("FLAKEFLEET_TAKEOVER_SECONDS", "1")]).await;
    let ids = sorted(&stack);
    let (status, body) =
        answer(&lambdas.invoke(0, request("POST", "/releases", Some(json!({"flakeref": GOOD})))).await);
    assert_eq!(status, 202, "{body}");
    let id = body["release"]["id"].clone();
    ssm_fault(json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1, "instance_id": ids[1]}));
    let mut unconfirmed = None;
    for _ in 0..20 {
        let response = lambdas.invoke(0, scheduled()).await;
        if response.get("lambda_error").is_some() {
            unconfirmed = Some(response["lambda_error"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = unconfirmed.expect("the wave's send failed");
    assert_eq!(error["errorType"], "command_unconfirmed", "{error}; log: {}", lambdas.log.display());
    let path = format!("/releases/{}", id.as_str().unwrap());
    let (status, paused) = answer(&lambdas.invoke(1, request("POST", &format!("{path}/pause"), None)).await);
    assert_eq!(status, 200, "{paused}");
    // Past the takeover window after the wave's claim, as recorded.
    let (_, now) = answer(&lambdas.invoke(0, request("GET", &path, None)).await);
    let claimed = now["release"]["rollout"]["waves"][1]["claimed_ms"].as_u64().expect("a claimed wave");
    let wait = (claimed + 1200).saturating_sub(flakefleet::domain::model::time::Timestamp::now().millis());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    // One takes the claim over and holds the wave; one that lost that write to
    // it says it waits; none sends.
    let outcomes: Vec<Value> =
        lambdas.at_once(vec![scheduled(); 3]).await.iter().map(|a| a["reconcile"]["outcome"].clone()).collect();
    assert!(outcomes.iter().all(|o| o == "paused" || o == "waiting"), "{outcomes:?}; log: {}", lambdas.log.display());
    assert!(outcomes.iter().any(|o| o == "paused"), "{outcomes:?}");
    for host in &ids[1..] {
        assert_eq!(commands_to(&stack, host, GOOD).await, 0, "{host}: nothing sent while paused");
    }
    let (status, _) = answer(&lambdas.invoke(2, request("POST", &format!("{path}/resume"), None)).await);
    assert_eq!(status, 200);
    for _ in 0..20 {
        lambdas.invoke(0, scheduled()).await;
        let (_, now) = answer(&lambdas.invoke(0, request("GET", &path, None)).await);
        if now["release"]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for host in &ids {
        assert_eq!(commands_to(&stack, host, GOOD).await, 1, "{host}; log: {}", lambdas.log.display());
    }
}

/// 2. A deploy to two named hosts: one succeeds and is tagged, the other's
/// apply fails; both agents go away before it settles, so nothing rolls them
/// back. Once they are back, the drift repair puts the good release on both.
/// Before: the host that succeeded kept the failed release for ever.
#[tokio::test]
async fn a_failed_targeted_release_never_survives_the_repair() {
    let stack = Stack::new(3).await;
    let (controller, ids) = good_everywhere(&stack, short(&stack)).await;
    stack
        .script(json!({"instance_id": ids[1], "flakeref_contains": "0.1.42", "outcome": "failed", "delay_seconds": 2}));
    let body = json!({"flakeref": NEXT, "instance_ids": [ids[0], ids[1]]}).to_string();
    let (status, targeted) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{targeted}");
    let id = targeted["release"]["id"].clone();
    for _ in 0..20 {
        flakefleet::entry::handle(&controller, &gate(), scheduled(), "it").await.unwrap();
        if release_tag(&stack, &ids[0]).await.as_ref() == id.as_str().map(str::to_owned).as_ref() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(release_tag(&stack, &ids[0]).await.as_deref(), id.as_str(), "the host that succeeded is tagged");
    set_agents(&ids[..2], "ConnectionLost");
    run_out(&controller).await;
    let failed = release(&stack, &controller, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["status_reason"].as_str().unwrap().contains("no instance it reached is reachable"), "{failed}");
    set_agents(&ids[..2], "Online");
    run_out(&controller).await;
    for (host, flakeref) in fleet_flakerefs(&stack, &controller).await {
        assert_eq!(flakeref, GOOD, "{host} is back on the good release");
    }
    assert_eq!(commands_to(&stack, &ids[0], GOOD).await, 2, "the first deploy, then the repair");
}

/// 3. The canary's agent is lost one second into a three-second apply: SSM
/// shows it In Progress (as AWS documents a started invocation), the release
/// fails at its deadline with the host still applying, and nothing can roll
/// it back. Its release tag, which named the good release, is forgotten; once
/// the agent is back the repair applies the good release there. Before: the
/// simulator said Undeliverable, the host counted as never reached, and its
/// tag still named the good release, so no repair ever came.
#[tokio::test]
async fn a_host_whose_agent_drops_mid_apply_is_reached_and_repaired() {
    let stack = Stack::new(2).await;
    let (controller, ids) = good_everywhere(&stack, short(&stack)).await;
    let good_tag = release_tag(&stack, &ids[0]).await.expect("tagged with the good release");
    stack.script(
        json!({"instance_id": ids[0], "flakeref_contains": "0.1.42", "outcome": "success", "delay_seconds": 3}),
    );
    let next = stack.deploy(&controller, NEXT).await;
    let seen = release(&stack, &controller, &next["id"]).await;
    assert_eq!(seen["status"], "in_progress", "{seen}");
    flakefleet::entry::handle(&controller, &gate(), scheduled(), "it").await.unwrap();
    let seen = release(&stack, &controller, &next["id"]).await;
    assert_eq!(seen["instances"][0]["status"], "InProgress", "seen running: {seen}");
    set_agents(&ids[..1], "ConnectionLost");
    run_out(&controller).await;
    let ended = release(&stack, &controller, &next["id"]).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    let why = ended["status_reason"].as_str().unwrap();
    assert!(why.contains(&format!("still applying it after the settle limit of 1 s: {}", ids[0])), "{why}");
    assert_eq!(release_tag(&stack, &ids[0]).await, None, "its tag no longer says {good_tag}");
    set_agents(&ids[..1], "Online");
    run_out(&controller).await;
    assert_eq!(commands_to(&stack, &ids[0], GOOD).await, 2, "the first deploy, then the repair");
    let repaired = release_tag(&stack, &ids[0]).await.expect("tagged again");
    assert_ne!(repaired, good_tag, "by the repair");
}

/// 4. Every host of the wave deregisters as its send arrives: the wave is
/// recorded with them unreachable and judged on the next pass (three over a
/// tolerance of one: rolled back, on the canary only). Before: nothing was
/// recorded, the release held the fleet to its deadline (an hour), and its
/// rollback went to the hosts never sent to and halted the fleet.
#[tokio::test]
async fn a_wave_whose_hosts_all_drop_at_the_send_is_recorded_and_judged_at_once() {
    let stack = Stack::new(4).await;
    let (controller, ids) = good_everywhere(&stack, staged(&stack)).await;
    for host in &ids[1..] {
        agent_on_send(host, "NotRegistered");
    }
    let next = stack.deploy(&controller, NEXT).await;
    let outcomes = run_out(&controller).await;
    assert!(outcomes.len() <= 6, "judged at once, not at the deadline: {outcomes:?}");
    let ended = release(&stack, &controller, &next["id"]).await;
    assert_eq!(ended["status"], "rolled_back", "{ended}");
    let unreachable: Vec<&str> =
        ended["unreachable"].as_array().unwrap().iter().map(|u| u["instance_id"].as_str().unwrap()).collect();
    assert_eq!(unreachable, ids[1..].iter().map(String::as_str).collect::<Vec<_>>());
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert!(fleet["fleet"]["halted"].is_null(), "{fleet}");
    assert_eq!(commands_to(&stack, &ids[0], GOOD).await, 2, "the first deploy, then the rollback");
    for host in &ids[1..] {
        assert_eq!(commands_to(&stack, host, GOOD).await, 1, "{host}: no rollback to a host never sent to");
    }
}

/// 5. A deploy to one named host whose agent goes away as the send arrives:
/// SSM accepts it and never delivers. It reached nobody: failed. Before:
/// `succeeded`.
#[tokio::test]
async fn a_targeted_release_that_reaches_nobody_fails() {
    let stack = Stack::new(2).await;
    let (controller, ids) = good_everywhere(&stack, staged(&stack)).await;
    agent_on_send(&ids[1], "ConnectionLost");
    let body = json!({"flakeref": NEXT, "instance_ids": [ids[1]]}).to_string();
    let (status, targeted) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{targeted}");
    run_out(&controller).await;
    let ended = release(&stack, &controller, &targeted["release"]["id"]).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    let why = ended["status_reason"].as_str().unwrap();
    assert!(why.contains(&format!("1 of the 1 instances it names unreachable ({} Undeliverable)", ids[1])), "{why}");
}

/// 6. The send of a deploy to named hosts starts but its answer is lost: the
/// deploy answers 503 `command_unconfirmed` with the release (it was a 500),
/// and the reconcile finds the command rather than sending it again.
#[tokio::test]
async fn an_unclear_targeted_send_answers_command_unconfirmed() {
    let stack = Stack::new(2).await;
    let (controller, ids) = good_everywhere(&stack, staged(&stack)).await;
    ssm_fault(json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1,
        "instance_id": ids[1], "took_effect": true}));
    let body = json!({"flakeref": NEXT, "instance_ids": [ids[1]]}).to_string();
    let (status, answered) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!((status, answered["error"].as_str()), (503, Some("command_unconfirmed")), "{answered}");
    assert_eq!(answered["release"]["status"], "in_progress", "{answered}");
    run_out(&controller).await;
    let ended = release(&stack, &controller, &answered["release"]["id"]).await;
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert_eq!(commands_to(&stack, &ids[1], NEXT).await, 1, "found, not sent again");
}

/// The scheduled invocation's error for an unclear send is the Lambda error
/// `command_unconfirmed`, the same code the HTTP answer carries.
#[tokio::test]
async fn an_unclear_wave_send_fails_the_scheduled_invocation_as_command_unconfirmed() {
    let stack = Stack::new(2).await;
    let controller = stack.controller_with(staged(&stack));
    let ids = sorted(&stack);
    stack.deploy(&controller, GOOD).await;
    ssm_fault(json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1, "instance_id": ids[1]}));
    let mut error = None;
    for _ in 0..20 {
        if let Err(e) = flakefleet::entry::handle(&controller, &gate(), scheduled(), "it").await {
            error = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(HandlerError::Failed(api)) = error else { panic!("{error:?}") };
    assert_eq!((api.status, api.code), (503, "command_unconfirmed"), "{api}");
    // The next pass (past the failed claimer's claim) sends it, once.
    run_out(&controller).await;
    assert_eq!(commands_to(&stack, &ids[1], GOOD).await, 1);
}
