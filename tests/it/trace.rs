//! Every release says who asked for it, from which run and why, and links to
//! the rollback that replaced it: recorded in DynamoDB on the local AWS and
//! read back through the API. Bad values are refused with nothing written.

use crate::support::{gate, Stack, GOOD, NEXT};
use serde_json::{json, Value};

/// The sample function URL event's signer (events/function-url-deploy.json).
const SIGNER: &str = "arn:aws:sts::123456789012:assumed-role/flakefleet-deploy/GitHubActions";
const RUN: &str = "https://github.com/acme/infra/actions/runs/42/attempts/1";

async fn get(stack: &Stack, controller: &flakefleet::AwsFleetController, id: &Value) -> Value {
    let (status, body) = stack.http(controller, "GET", &format!("/releases/{}", id.as_str().unwrap()), None).await;
    assert_eq!(status, 200, "{body}");
    body["release"].clone()
}

#[tokio::test]
async fn releases_record_who_asked_from_which_run_and_why() {
    let stack = Stack::new(2).await;
    let controller = stack.controller();

    for (field, value, code) in [
        ("run_url", json!("http://github.com/acme/infra/actions/runs/42"), "invalid_run_url"),
        ("run_url", json!(format!("https://{}", "a".repeat(505))), "invalid_run_url"),
        ("reason", json!("two\nlines"), "invalid_reason"),
        ("reason", json!("\u{1b}[2J"), "invalid_reason"),
        ("reason", json!("é".repeat(201)), "invalid_reason"),
        ("reason", json!(7), "invalid_json"),
    ] {
        let body = json!({ "flakeref": GOOD, field: value }).to_string();
        let (status, answer) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some(code)), "{field}={value}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(field), "{answer}");
    }
    assert_eq!(stack.item_count().await, 0, "nothing written");
    assert!(stack.commands().await.is_empty(), "nothing sent");

    let body = json!({ "flakeref": GOOD, "run_url": RUN, "reason": "web: räumt auf (#12)" }).to_string();
    let (status, answer) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let good = get(&stack, &controller, &answer["release"]["id"]).await;
    assert_eq!(good["requested_by"], SIGNER);
    assert_eq!((good["run_url"].as_str(), good["reason"].as_str()), (Some(RUN), Some("web: räumt auf (#12)")));
    assert_eq!(good["fleet"], stack.fleet.as_str());
    stack.settle(&controller).await;

    // Asked for by a direct invoke: it says so.
    let invoked = flakefleet::entry::handle(&controller, &gate(), json!({"action": "deploy", "flakeref": NEXT}), "it")
        .await
        .unwrap();
    let bad = get(&stack, &controller, &invoked["release"]["id"]).await;
    assert_eq!(bad["requested_by"], "direct invoke");
    assert!(bad.get("run_url").is_none() && bad.get("reason").is_none(), "{bad}");
    stack.settle(&controller).await;

    // An operator rolls it back: the rollback names what it replaced, and
    // the replaced release names the rollback.
    let body = json!({ "reason": "the new web breaks logins", "run_url": RUN }).to_string();
    let (status, answer) = stack.http(&controller, "POST", "/rollback", Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let rollback = &answer["release"];
    assert_eq!((&rollback["rollback_of"], &rollback["replaces"]), (&good["id"], &bad["id"]), "{rollback}");
    assert_eq!(rollback["requested_by"], SIGNER);
    assert_eq!(get(&stack, &controller, &bad["id"]).await["rolled_back_by"], rollback["id"]);
    assert!(get(&stack, &controller, &good["id"]).await.get("rolled_back_by").is_none());
    // Listings carry the record too.
    let (_, page) = stack.http(&controller, "GET", "/releases?limit=1", None).await;
    assert_eq!(page["releases"][0]["reason"], "the new web breaks logins", "{page}");
}

/// The automatic rollback of a failed canary names the bad release, says why
/// in its reason, and is named by it.
#[tokio::test]
async fn an_automatic_rollback_and_the_release_it_replaced_name_each_other() {
    let stack = Stack::new(2).await;
    let mut settings = stack.settings();
    settings.rollout.mode = flakefleet::domain::model::rollout::RolloutMode::Staged;
    settings.rollout.auto_rollback = true;
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    for instance in &stack.instances {
        stack.script(json!({ "instance_id": instance, "flakeref_contains": "0.1.42", "outcome": "failed",
            "exit_code": 1, "stderr": "error: the unit web.service failed" }));
    }
    let bad = stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    let bad = get(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    let rollback = get(&stack, &controller, &bad["rolled_back_by"]).await;
    assert_eq!((rollback["kind"].as_str(), &rollback["replaces"]), (Some("rollback"), &bad["id"]), "{rollback}");
    assert_eq!(rollback["requested_by"], "flakefleet (automatic rollback)");
    let reason = rollback["reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("release {} failed: ", bad["id"].as_str().unwrap())), "{reason}");
}
