//! Staged rollouts against the local AWS: waves by instance id, judged one by
//! one, rolled back or halted when they go wrong. Every instance is a fake
//! host of the SSM simulator that runs the apply document's own script (one
//! on an old agent that only pastes the parameter text), so each status
//! flakefleet judges is the script's own exit.

use crate::support::{agent_version, fake_hosts, gate, sample_event, Stack, GOOD, NEXT};
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use flakefleet::AwsFleetController;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn staged(stack: &Stack, threshold: Rate) -> FleetSettings {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(30);
    settings.rollout.failure_threshold = threshold;
    settings.rollout.auto_rollback = true;
    settings
}

/// `instances` instances, each a fake host whose activation works: the first
/// on an agent older than 3.3.2746.0 (the simulator's default), the others
/// on one that sets `SSM_<name>` too.
async fn hosted(instances: i32) -> Stack {
    let stack = Stack::new(instances).await;
    fake_hosts(&stack.instances, json!({"activation": "works"}));
    agent_version(&stack.instances[1..], "3.3.2746.0");
    stack
}

/// Runs the scheduled reconcile until the fleet is at rest; each apply runs
/// the real script, so it waits a little between reconciles.
async fn run_out(stack: &Stack, controller: &AwsFleetController) -> Value {
    let event = sample_event("eventbridge-scheduled.json");
    for _ in 0..600 {
        let answer = flakefleet::entry::handle(controller, &gate(), event.clone(), "it").await.expect("reconcile");
        if matches!(answer["reconcile"]["outcome"].as_str(), Some("idle" | "halted")) {
            return stack.http(controller, "GET", "/fleet", None).await.1["fleet"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the fleet never came to rest");
}

/// GOOD deployed to the whole fleet, then NEXT, which fails on every instance,
/// both run out: the good release, the bad one as the request answered, the fleet.
async fn good_then_failing(stack: &Stack, controller: &AwsFleetController) -> (Value, Value, Value) {
    let good = stack.deploy(controller, GOOD).await;
    run_out(stack, controller).await;
    // fh fails to apply NEXT (0.1.42) everywhere, exiting 1.
    fake_hosts(&stack.instances, json!({"activation_for": {"0.1.42": "errors"}}));
    let bad = stack.deploy(controller, NEXT).await;
    (good, bad, run_out(stack, controller).await)
}

async fn release(stack: &Stack, controller: &AwsFleetController, id: &Value) -> Value {
    stack.http(controller, "GET", &format!("/releases/{}", id.as_str().unwrap()), None).await.1["release"].clone()
}

fn wave_sizes(release: &Value) -> Vec<usize> {
    release["rollout"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["instance_ids"].as_array().unwrap().len())
        .collect()
}

/// Instance ids each command of the fleet went to, by flakeref.
async fn sent(stack: &Stack, flakeref: &str) -> Vec<String> {
    let mut ids: Vec<String> = stack
        .commands()
        .await
        .iter()
        .filter(|c| c.parameters().is_some_and(|p| p["flakeref"] == [flakeref.to_owned()]))
        .flat_map(|c| c.instance_ids().to_vec())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_clean_staged_rollout_over_ten_instances() {
    let stack = hosted(10).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let started = stack.deploy(&controller, GOOD).await;
    assert_eq!(wave_sizes(&started), [1], "the request sends only the canary");
    let commands = stack.commands().await;
    assert_eq!(commands.len(), 1);
    assert!(commands[0].targets().is_empty() && commands[0].instance_ids().len() == 1, "sent by instance id");

    let fleet = run_out(&stack, &controller).await;
    let done = release(&stack, &controller, &started["id"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(wave_sizes(&done), [1, 3, 3, 3]);
    let reached = sent(&stack, GOOD).await;
    assert_eq!(reached, stack.instances, "every instance once");
    assert_eq!(done["instances"].as_array().unwrap().len(), 10);
    assert_eq!(fleet["last_good_release_id"], started["id"]);
    assert!(fleet["rollout"].is_null() && fleet["halted"].is_null());
}

/// Bodies over the inline limit go to part items written with the release
/// item; every read joins them back. A tiny limit makes ten instances spill.
#[tokio::test]
async fn releases_too_large_for_one_item_are_split_and_joined() {
    let stack = hosted(10).await;
    let big = stack.controller_with(staged(&stack, Rate::Count(0)));
    let split = stack.controller_storing_inline(staged(&stack, Rate::Count(0)), 300);
    let (good, bad, fleet) = good_then_failing(&stack, &split).await;

    let parts: Vec<String> = stack.sort_keys().await.into_iter().filter(|k| k.starts_with("PART#")).collect();
    let good_id = good["id"].as_str().unwrap();
    assert!(parts.iter().filter(|k| k.contains(good_id)).count() > 2, "{parts:?}");
    // The same records read through a store that would have kept them inline.
    let good = release(&stack, &split, &good["id"]).await;
    assert_eq!(good, release(&stack, &big, &good["id"]).await);
    assert_eq!(good["status"], "succeeded", "{good}");
    assert_eq!(wave_sizes(&good), [1, 3, 3, 3]);
    assert_eq!(good["instances"].as_array().unwrap().len(), 10);
    assert!(good["instances"].as_array().unwrap().iter().all(|i| i["status"] == "Success"));
    let bad = release(&stack, &split, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    assert_eq!(bad["instances"][0]["exit_code"], 1);
    assert_eq!(fleet["desired_release"]["kind"], "rollback");
    assert_eq!(fleet["desired_release"]["status"], "succeeded");
    let listed = stack.http(&split, "GET", "/releases", None).await.1;
    // Listings count outcomes instead of listing them.
    let summary = &listed["releases"][2];
    assert_eq!(summary["id"], good["id"]);
    assert_eq!(summary["instance_counts"], json!({"Success": 10}), "{summary}");
    assert_eq!(summary["waves"], 4);
    assert!(summary.get("instances").is_none() && summary.get("rollout").is_none());
}

/// Parts carry the version of the write that made them: a reader never joins
/// a part of another write to a release item (it reads again, then gives up).
#[tokio::test]
async fn a_part_of_another_write_is_never_joined() {
    let stack = hosted(4).await;
    let split = stack.controller_storing_inline(staged(&stack, Rate::Count(0)), 200);
    let deployed = stack.deploy(&split, GOOD).await;
    run_out(&stack, &split).await;
    let id = deployed["id"].as_str().unwrap();
    let path = format!("/releases/{id}");
    let (status, whole) = stack.http(&split, "GET", &path, None).await;
    assert_eq!(status, 200);

    let pk = aws_sdk_dynamodb::types::AttributeValue::S(format!("FLEET#{}", stack.fleet));
    let sk = aws_sdk_dynamodb::types::AttributeValue::S(format!("PART#{id}#001"));
    let part = stack.ddb.get_item().table_name(&stack.table).key("pk", pk.clone()).key("sk", sk.clone());
    let part = part.send().await.unwrap().item.expect("a second part");
    let version: u64 = part["version"].as_n().unwrap().parse().unwrap();
    let stale = |v: u64| {
        let mut item = part.clone();
        item.insert("version".into(), aws_sdk_dynamodb::types::AttributeValue::N(v.to_string()));
        stack.ddb.put_item().table_name(&stack.table).set_item(Some(item)).send()
    };
    stale(version - 1).await.unwrap();
    let (status, body) = stack.http(&split, "GET", &path, None).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("internal_error")), "{body}");
    stale(version).await.unwrap();
    assert_eq!(stack.http(&split, "GET", &path, None).await, (200, whole));
}

#[tokio::test]
async fn a_failed_canary_is_rolled_back_automatically() {
    let stack = hosted(10).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let (good, bad, fleet) = good_then_failing(&stack, &controller).await;

    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    assert_eq!(wave_sizes(&bad), [1], "no wave after a failed canary");
    let canary = bad["rollout"]["waves"][0]["instance_ids"][0].as_str().unwrap();
    assert_eq!(sent(&stack, NEXT).await, [canary]);

    let rollback = &fleet["desired_release"];
    assert_eq!(rollback["kind"], "rollback");
    assert_eq!(rollback["rollback_of"], good["id"]);
    assert_eq!(rollback["flakeref"], GOOD);
    assert_eq!(rollback["status"], "succeeded");
    assert_eq!(rollback["rollout"]["waves"][0]["instance_ids"], json!([canary]), "only where the bad release went");
    assert!(fleet["halted"].is_null());
    // What each instance last applied: the canary the rollback, the others the good release.
    let instances = fleet["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 10);
    for instance in instances {
        let expected = if instance["instance_id"] == canary { &rollback["id"] } else { &good["id"] };
        assert_eq!(&instance["release_id"], expected, "{instance}");
        assert_eq!(instance["flakeref"], GOOD);
    }
}

#[tokio::test]
async fn thirty_percent_failing_over_a_ten_percent_threshold_stops_and_rolls_back() {
    let stack = hosted(10).await;
    let controller = stack.controller_with(staged(&stack, Rate::Percent(10)));
    stack.deploy(&controller, GOOD).await;
    run_out(&stack, &controller).await;
    // The canary is chosen from the first page EC2 returns; the next wave is
    // the three lowest ids after it.
    let canary = {
        let page = stack
            .ec2
            .describe_instances()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(&stack.tag.value).build())
            .filters(aws_sdk_ec2::types::Filter::builder().name("instance-state-name").values("running").build())
            .max_results(5)
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = page
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        ids.sort();
        ids[0].clone()
    };
    let second_wave: Vec<String> = stack.instances.iter().filter(|i| **i != canary).take(3).cloned().collect();
    fake_hosts(&second_wave, json!({"activation_for": {"0.1.42": "errors"}}));
    let bad = stack.deploy(&controller, NEXT).await;
    let fleet = run_out(&stack, &controller).await;
    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    assert!(bad["status_reason"].as_str().unwrap().contains("threshold"), "{bad}");
    assert_eq!(wave_sizes(&bad), [1, 3]);
    let reached: BTreeSet<String> = sent(&stack, NEXT).await.into_iter().collect();
    assert_eq!(reached.len(), 4);
    let rollback = &fleet["desired_release"];
    assert_eq!(rollback["status"], "succeeded");
    let rolled: BTreeSet<String> =
        serde_json::from_value(rollback["rollout"]["waves"][0]["instance_ids"].clone()).unwrap();
    assert_eq!(rolled, reached, "the rollback goes exactly where the bad release went");
}

/// GOOD, then NEXT whose canary fails and whose automatic rollback fails too:
/// the fleet halts. Answers GOOD as deployed and the fleet.
async fn halt(stack: &Stack, controller: &AwsFleetController) -> (Value, Value) {
    let good = stack.deploy(controller, GOOD).await;
    run_out(stack, controller).await;
    // NEXT activates but breaks web.service; going back, fh cannot fetch GOOD
    // (0.1.41). A host whose failed apply left it on GOOD would roll back as a
    // no-op: the script finds it already there.
    let broken = json!({"failed_units_after": ["web.service"], "activation_for": {"0.1.41": "errors"}});
    fake_hosts(&stack.instances, broken);
    stack.deploy(controller, NEXT).await;
    (good, run_out(stack, controller).await)
}

#[tokio::test]
async fn an_operators_rollback_lifts_a_halt() {
    let stack = hosted(2).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let (good, fleet) = halt(&stack, &controller).await;
    assert!(!fleet["halted"].is_null(), "{fleet}");
    let sent = stack.commands().await.len();
    let (status, body) =
        stack.http(&controller, "POST", "/rollback", Some(&json!({"release_id": good["id"]}).to_string())).await;
    assert_eq!(status, 202, "{body}");
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert!(fleet["fleet"]["halted"].is_null(), "the rollback lifted the halt: {fleet}");
    assert_eq!(fleet["fleet"]["desired_release"]["id"], body["release"]["id"]);
    assert_eq!(stack.commands().await.len(), sent + 1, "and its first wave went out");
}

#[tokio::test]
async fn a_failing_rollback_halts_the_fleet_without_looping() {
    let stack = hosted(3).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let (_, fleet) = halt(&stack, &controller).await;
    assert!(fleet["halted"]["reason"].as_str().unwrap().contains("rollback"), "{fleet}");
    let halted = release(&stack, &controller, &fleet["halted"]["release_id"]).await;
    assert_eq!((halted["kind"].as_str(), halted["status"].as_str()), (Some("rollback"), Some("halted")));

    let commands = stack.commands().await.len();
    for _ in 0..3 {
        let answer = flakefleet::entry::handle(&controller, &gate(), sample_event("eventbridge-scheduled.json"), "it")
            .await
            .unwrap();
        assert_eq!(answer["reconcile"]["outcome"], "halted");
    }
    assert_eq!(stack.commands().await.len(), commands, "a halted fleet gets no automatic command");

    // An operator's deploy lifts the halt.
    stack.deploy(&controller, "AcmeCorp/infra/=0.1.43#nixosConfigurations.web").await;
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert!(fleet["fleet"]["halted"].is_null(), "{fleet}");
}

#[tokio::test]
async fn a_deploy_during_a_rollout_gets_409_with_the_active_release() {
    let stack = hosted(4).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    fake_hosts(&stack.instances, json!({"apply_seconds": 30}));
    let active = stack.deploy(&controller, GOOD).await;
    let (status, body) =
        stack.http(&controller, "POST", "/releases", Some(&json!({"flakeref": NEXT}).to_string())).await;
    assert_eq!((status, &body["active_release_id"]), (409, &active["id"]));
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert_eq!(fleet["fleet"]["rollout"]["release_id"], active["id"]);
    assert_eq!(fleet["fleet"]["rollout"]["wave"], 1);
}

#[tokio::test]
async fn duplicated_and_reordered_status_events_reach_the_same_end() {
    let stack = hosted(6).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let started = stack.deploy(&controller, GOOD).await;
    let ssm = sample_event("eventbridge-ssm-status.json");
    let schedule = sample_event("eventbridge-scheduled.json");
    let order = [&ssm, &ssm, &schedule, &ssm, &schedule, &schedule, &ssm];
    let mut done = Value::Null;
    for _ in 0..300 {
        for event in order {
            flakefleet::entry::handle(&controller, &gate(), (*event).clone(), "it").await.unwrap();
        }
        done = release(&stack, &controller, &started["id"]).await;
        if !matches!(done["status"].as_str(), Some("pending" | "in_progress")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "succeeded");
    assert_eq!(wave_sizes(&done), [1, 2, 2, 1]);
    assert_eq!(sent(&stack, GOOD).await, stack.instances, "no instance twice");
}

/// An operator steers a rollout over the function URL, against DynamoDB and
/// the SSM simulator's fake hosts: a pause holds the next wave (the fleet's
/// lease deadline moves out with the release's), a resume sends it, and an
/// abort stops the next release and rolls it back; each action is recorded
/// with who asked, and a release that is over refuses them with a 409.
#[tokio::test]
async fn an_operator_pauses_resumes_and_aborts_a_rollout() {
    let stack = hosted(6).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let started = stack.deploy(&controller, GOOD).await;
    let id = started["id"].as_str().unwrap().to_owned();
    let steer = |verb: &'static str, body: Option<&'static str>| {
        let path = format!("/releases/{id}/{verb}");
        let (stack, controller) = (&stack, &controller);
        async move { stack.http(controller, "POST", &path, body).await }
    };
    let (status, paused) = steer("pause", None).await;
    assert_eq!(status, 200, "{paused}");
    let paused = &paused["release"];
    assert_eq!(
        paused["control"]["paused"]["by"], "arn:aws:sts::123456789012:assumed-role/flakefleet-deploy/GitHubActions",
        "{paused}"
    );
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert_eq!(fleet["fleet"]["lease"]["deadline"], paused["deadline"], "the lease's deadline moved with it");
    assert_ne!(paused["deadline"], started["deadline"]);
    assert!(fleet["fleet"]["rollout"]["paused"]["by"].is_string(), "{fleet}");
    // The canary ends; the pause holds the next wave, reconcile after reconcile.
    for _ in 0..20 {
        let event = sample_event("eventbridge-scheduled.json");
        let answer = flakefleet::entry::handle(&controller, &gate(), event, "it").await.unwrap();
        assert_ne!(answer["reconcile"]["outcome"], "wave_started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(wave_sizes(&release(&stack, &controller, &started["id"]).await), [1]);
    assert_eq!(steer("pause", None).await.0, 200, "idempotent");
    let (status, resumed) = steer("resume", Some("{}")).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(wave_sizes(&resumed["release"]), [1, 2], "the resume sent the next wave");
    run_out(&stack, &controller).await;
    let done = release(&stack, &controller, &started["id"]).await;
    assert_eq!(done["status"], "succeeded");
    let actions: Vec<&str> =
        done["control"]["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["pause", "resume"]);
    let (status, refused) = steer("pause", None).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("not_steerable")), "{refused}");
    let (status, refused) = steer("resume", Some(r#"{"rollback": true}"#)).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_json")), "{refused}");

    // An abort of the next release: nothing more is sent, and what it reached is rolled back.
    let next = stack.deploy(&controller, NEXT).await;
    let path = format!("/releases/{}/abort", next["id"].as_str().unwrap());
    let (status, aborted) = stack.http(&controller, "POST", &path, Some(r#"{"rollback": true}"#)).await;
    assert_eq!(status, 200, "{aborted}");
    assert!(aborted["release"]["control"]["aborted"]["rollback"] == true, "{aborted}");
    // The canary's apply still runs: it is awaited (never killed halfway), then rolled back.
    let fleet = run_out(&stack, &controller).await;
    let aborted = release(&stack, &controller, &next["id"]).await;
    assert_eq!(aborted["status"], "rolled_back", "{aborted}");
    let reason = aborted["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("aborted by arn:aws:sts::123456789012:assumed-role/flakefleet-deploy/GitHubActions"),
        "{reason}"
    );
    assert_eq!(wave_sizes(&aborted), [1]);
    assert_eq!(fleet["desired_release"]["kind"], "rollback");
    assert_eq!(sent(&stack, NEXT).await.len(), 1, "only the canary got the aborted release");
}

/// A deploy to named instances over the function URL, against DynamoDB, EC2
/// and fake hosts: only they get it, the fleet's desired and good releases
/// stay, the drift repair leaves them be, and bad names are a 400 that
/// records and sends nothing.
#[tokio::test]
async fn a_deploy_to_named_instances_reaches_only_them() {
    let stack = hosted(4).await;
    let controller = stack.controller_with(staged(&stack, Rate::Count(0)));
    let good = stack.deploy(&controller, GOOD).await;
    run_out(&stack, &controller).await;
    let on = vec![stack.instances[1].clone(), stack.instances[2].clone()];
    let body = json!({"flakeref": NEXT, "instance_ids": on}).to_string();
    let (status, answer) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["release"]["kind"], "targeted");
    let fleet = run_out(&stack, &controller).await;
    let done = release(&stack, &controller, &answer["release"]["id"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(sent(&stack, NEXT).await, on, "only the named instances");
    assert_eq!(fleet["desired_release"]["id"], good["id"]);
    assert_eq!(fleet["last_good_release_id"], good["id"]);
    let running: Vec<(String, String)> = fleet["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instance_id"].as_str().unwrap().to_owned(), i["flakeref"].as_str().unwrap().to_owned()))
        .collect();
    for (id, flakeref) in &running {
        assert_eq!(flakeref, if on.contains(id) { NEXT } else { GOOD }, "{id}");
    }
    // The drift repair leaves them on it.
    let (_, reconciled) = stack.http(&controller, "POST", "/reconcile", None).await;
    assert_eq!(reconciled["reconcile"]["outcome"], "idle", "{reconciled}");

    // Names that are not instances of the fleet, or not ids at all: 400, nothing recorded or sent.
    let before = (stack.item_count().await, stack.commands().await.len());
    for (ids, code) in [
        (json!(["i-0123456789abcdef0"]), "instances_not_in_fleet"),
        (json!(["web-1"]), "invalid_instance_ids"),
        (json!([]), "invalid_instance_ids"),
        (json!([on[0], on[0]]), "invalid_instance_ids"),
    ] {
        let body = json!({"flakeref": NEXT, "instance_ids": ids}).to_string();
        let (status, refused) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
        assert_eq!((status, refused["error"].as_str()), (400, Some(code)), "{ids}: {refused}");
    }
    assert_eq!((stack.item_count().await, stack.commands().await.len()), before);
}
