//! The core loop end to end: deploy, read, judge, roll back.

use crate::support::{gate, sample_event, Stack, DOCUMENT, GOOD, NEXT};
use serde_json::json;

#[tokio::test]
async fn deploy_records_a_release_and_sends_one_command_to_the_tagged_fleet() {
    let stack = Stack::new(3).await;
    let controller = stack.controller();

    let release = stack.deploy(&controller, GOOD).await;
    assert_eq!(release["flakeref"], GOOD);
    assert_eq!(release["fleet"], "it");
    assert_eq!(release["kind"], "deploy");
    assert_eq!(release["status"], "in_progress");
    assert!(release["created_at"].as_str().unwrap().ends_with('Z'));
    let id = release["id"].as_str().unwrap();

    let commands = stack.commands().await;
    assert_eq!(commands.len(), 1);
    let command = &commands[0];
    assert_eq!(release["command_id"].as_str(), command.command_id());
    assert_eq!(command.document_name(), Some(DOCUMENT));
    let params = command.parameters().unwrap();
    assert_eq!(params["flakeref"], vec![GOOD.to_owned()]);
    assert_eq!(params["action"], vec!["switch".to_owned()]);
    assert_eq!(command.targets().len(), 1);
    assert_eq!(command.targets()[0].key(), Some("tag:Name"));
    assert_eq!(command.targets()[0].values(), std::slice::from_ref(&stack.tag.value));
    assert_eq!(command.comment(), Some(format!("flakefleet it release {id}").as_str()));
    assert_eq!(command.max_concurrency(), Some("50"));
    assert_eq!(command.max_errors(), Some("0"));
    assert_eq!(command.timeout_seconds(), Some(600));

    // The recorded release reads back the same, and the fleet wants it.
    let (status, body) = stack.http(&controller, "GET", &format!("/releases/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["release"]["id"], id);
    assert_eq!(body["release"]["command_id"], release["command_id"]);
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert_eq!(fleet["fleet"]["desired_release"]["id"], id);
    assert_eq!(fleet["fleet"]["lease"]["release_id"], id);

    // Judged per instance, from ListCommandInvocations.
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["status"], "succeeded", "{settled}");
    let instances = settled["release"]["instances"].as_array().unwrap();
    let ids: Vec<&str> = instances.iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert_eq!(ids, stack.instances.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(instances.iter().all(|i| i["status"] == "Success" && i["exit_code"] == 0));
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert!(fleet["fleet"]["lease"].is_null(), "the lease is freed once the release is judged");
}

#[tokio::test]
async fn list_is_newest_first_with_a_cursor() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    let mut ids = Vec::new();
    for n in 0..3 {
        let flakeref = format!("AcmeCorp/infra/=0.1.{n}#nixosConfigurations.web");
        ids.push(stack.deploy(&controller, &flakeref).await["id"].as_str().unwrap().to_owned());
        stack.settle(&controller).await;
    }
    let (status, page) = stack.http(&controller, "GET", "/releases?limit=2", None).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["releases"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = stack.http(&controller, "GET", &format!("/releases?limit=2&cursor={cursor}"), None).await;
    let listed: Vec<&str> = rest["releases"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[0].as_str()]);
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn rollback_is_a_new_release_with_the_old_flakeref() {
    let stack = Stack::new(2).await;
    let controller = stack.controller();
    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    let next = stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;

    // By id, as a direct invoke.
    let answer =
        flakefleet::entry::handle(&controller, &gate(), json!({"action": "rollback", "release_id": good["id"]}), "it")
            .await
            .unwrap();
    let rollback = &answer["release"];
    assert_eq!(rollback["kind"], "rollback");
    assert_eq!(rollback["rollback_of"], good["id"]);
    assert_eq!(rollback["flakeref"], GOOD);
    assert_ne!(rollback["id"], good["id"]);
    let commands = stack.commands().await;
    assert_eq!(commands.len(), 3);
    let newest = commands.iter().find(|c| c.command_id() == rollback["command_id"].as_str()).unwrap();
    assert_eq!(newest.parameters().unwrap()["flakeref"], vec![GOOD.to_owned()]);
    // Each host's whole output goes to the stack's log group as well.
    let output = newest.cloud_watch_output_config().expect("CloudWatchOutputConfig");
    assert_eq!(
        (output.cloud_watch_log_group_name(), output.cloud_watch_output_enabled()),
        (Some("/flakefleet/it/hosts"), true)
    );
    stack.settle(&controller).await;

    // The old records are untouched.
    let (_, old) = stack.http(&controller, "GET", &format!("/releases/{}", good["id"].as_str().unwrap()), None).await;
    assert_eq!(old["release"]["kind"], "deploy");
    assert_eq!(old["release"]["status"], "succeeded");
    assert_eq!(old["release"]["command_id"], good["command_id"]);
    assert_eq!(
        stack.http(&controller, "GET", &format!("/releases/{}", next["id"].as_str().unwrap()), None).await.1["release"]
            ["status"],
        "succeeded"
    );
}

#[tokio::test]
async fn empty_rollback_picks_the_last_success_before_the_current_release() {
    let stack = Stack::new(2).await;
    let controller = stack.controller();
    let (status, body) = stack.http(&controller, "POST", "/rollback", None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("no_rollback_target")), "{body}");

    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    // The next release fails on one instance.
    stack.script(json!({
        "instance_id": stack.instances[1], "flakeref_contains": "0.1.42", "outcome": "failed", "exit_code": 3,
        "stdout": "activating the configuration...", "stderr": "warning: the following units failed: nginx.service",
    }));
    let bad = stack.deploy(&controller, NEXT).await;
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["status"], "failed");
    assert!(
        settled["release"]["status_reason"].as_str().unwrap().contains("1 of 2 instances did not converge"),
        "{settled}"
    );
    let failed = &settled["release"]["instances"][1];
    assert_eq!((failed["status"].as_str(), failed["exit_code"].as_i64()), (Some("Failed"), Some(3)));
    // stdout and stderr apart for the failure; a success's output stays in SSM.
    assert_eq!(failed["stderr_tail"], "warning: the following units failed: nginx.service");
    assert_eq!(failed["stdout_tail"], "activating the configuration...");
    let converged = &settled["release"]["instances"][0];
    assert_eq!((converged["status"].as_str(), converged["exit_code"].as_i64()), (Some("Success"), Some(0)));
    assert!(converged.get("stdout_tail").is_none(), "{converged}");

    // The sample event: an empty rollback from the direct invoke.
    let answer =
        flakefleet::entry::handle(&controller, &gate(), sample_event("invoke-rollback.json"), "it").await.unwrap();
    assert_eq!(answer["release"]["rollback_of"], good["id"], "{answer}");
    assert_eq!(answer["release"]["flakeref"], GOOD);
    assert_ne!(answer["release"]["rollback_of"], bad["id"]);
}

#[tokio::test]
async fn an_empty_fleet_gives_a_recorded_release_with_a_clear_status() {
    let stack = Stack::new(0).await;
    let controller = stack.controller();
    let release = stack.deploy(&controller, GOOD).await;
    assert_eq!(release["status"], "no_instances");
    assert!(release["status_reason"].as_str().unwrap().contains(&stack.tag.value));
    assert!(stack.commands().await.is_empty());
    // The fleet is free again at once.
    assert_eq!(stack.deploy(&controller, NEXT).await["status"], "no_instances");
}

#[tokio::test]
async fn undeliverable_instances_are_not_converged() {
    let stack = Stack::new(3).await;
    let controller = stack.controller();
    stack.script(json!({"instance_id": stack.instances[0], "outcome": "undeliverable"}));
    stack.script(json!({"instance_id": stack.instances[2], "outcome": "delivery_timed_out"}));
    let release = stack.deploy(&controller, GOOD).await;
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["id"], release["id"]);
    assert_eq!(settled["release"]["status"], "failed", "{settled}");
    // SSM itself calls this command a success.
    let command = &stack.commands().await[0];
    assert_eq!(command.status().map(|s| s.as_str()), Some("Success"));
}

#[tokio::test]
async fn ssm_status_events_and_the_status_action_drive_and_show_progress() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    stack.script(json!({"instance_id": stack.instances[0], "outcome": "success", "delay_seconds": 1}));
    let release = stack.deploy(&controller, GOOD).await;
    let event = sample_event("eventbridge-ssm-status.json");
    let first = flakefleet::entry::handle(&controller, &gate(), event.clone(), "it").await.unwrap();
    assert_eq!(first["reconcile"]["outcome"], "waiting");
    assert_eq!(first["reconcile"]["release"]["instances"][0]["status"], "InProgress");
    // Further events until the apply ends, polled against a deadline rather than a fixed sleep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let second = loop {
        let answer = flakefleet::entry::handle(&controller, &gate(), event.clone(), "it").await.unwrap();
        if answer["reconcile"]["outcome"] != "waiting" || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(second["reconcile"]["outcome"], "finished", "{second}");
    // Delivered twice: nothing changes.
    let third = flakefleet::entry::handle(&controller, &gate(), event, "it").await.unwrap();
    assert_eq!(third["reconcile"]["outcome"], "idle");
    let status =
        flakefleet::entry::handle(&controller, &gate(), sample_event("invoke-status.json"), "it").await.unwrap();
    assert_eq!(status["fleet"]["desired_release"]["id"], release["id"]);
    assert_eq!(status["fleet"]["desired_release"]["status"], "succeeded");
}
