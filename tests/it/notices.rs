//! Release notices on EventBridge (moto's, delivering to an SQS queue
//! through a rule, as a subscriber would), carried from the table's stream
//! by the template's notices pipe (run by dev/event_pipes.py): one event per
//! status change, each with an id of its release and write, whatever
//! becomes of the writer after its write.

use crate::lambdas::{answer, request, Lambdas};
use crate::support::{post_control, Stack, GOOD, NEXT};
use flakefleet::domain::model::rollout::RolloutMode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Each event's (release id, status), and its event id.
fn changes(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            assert_eq!(
                (e["source"].as_str(), e["detail-type"].as_str()),
                (Some("flakefleet"), Some("Release Status Change"))
            );
            let d = &e["detail"];
            (
                d["id"].as_str().unwrap().into(),
                d["status"].as_str().unwrap().into(),
                d["event_id"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn by_release(changes: &[(String, String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (release, status, _) in changes {
        map.entry(release.clone()).or_default().push(status.clone());
    }
    map
}

#[tokio::test]
async fn every_status_change_is_one_event_carried_from_the_tables_stream() {
    let stack = Stack::new(2).await;
    let queue = stack.listen();
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.auto_rollback = true;
    let controller = stack.controller_with(settings.clone());

    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    for instance in &stack.instances {
        stack.script(
            json!({ "instance_id": instance, "flakeref_contains": "0.1.42", "outcome": "failed", "exit_code": 1 }),
        );
    }
    let bad = stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    stack.settle(&controller).await;

    let heard = changes(&stack.heard(&queue));
    let statuses = by_release(&heard);
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();
    assert_eq!(statuses[&id(&good)], ["pending", "in_progress", "succeeded"], "{heard:?}");
    assert_eq!(statuses[&id(&bad)], ["pending", "in_progress", "rolled_back"], "{heard:?}");
    let rollback: Vec<&Vec<String>> =
        statuses.iter().filter(|(r, _)| **r != id(&good) && **r != id(&bad)).map(|(_, s)| s).collect();
    assert_eq!(
        rollback,
        [&vec!["in_progress".to_owned(), "succeeded".to_owned()]],
        "the automatic rollback: {heard:?}"
    );
    let mut ids: Vec<&String> = heard.iter().map(|(_, _, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), heard.len(), "each event its own id");
    // Each event is its notice item's detail, as written: the item stays
    // (until its TTL), one per event.
    let items: Vec<String> = stack.sort_keys().await.into_iter().filter(|k| k.starts_with("NOTICE#")).collect();
    assert_eq!(items.len(), heard.len(), "{items:?}");
    // A reconcile that changes nothing announces nothing.
    stack.settle(&controller).await;
    assert!(stack.heard(&queue).is_empty());
    assert!(stack.dead_letters().is_empty());
}

/// The function never puts a notice: a request whose Lambda is killed right
/// after its write (its SendCommand stalled) still has its notice on the bus.
#[tokio::test]
async fn a_notice_written_by_a_lambda_killed_right_after_its_write_reaches_the_bus() {
    let stack = Stack::new(1).await;
    let queue = stack.listen();
    let stall = json!({"operation": "SendCommand", "stall_seconds": 30, "count": 1, "instance_id": stack.instances[0]});
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &stall).starts_with("HTTP/1.1 200"));
    let mut lambdas = Lambdas::start(&stack, 1, &[]).await;
    {
        let deploy = lambdas.invoke(0, request("POST", "/releases", Some(json!({"flakeref": GOOD}))));
        let written = async {
            while !stack.sort_keys().await.iter().any(|k| k.starts_with("NOTICE#")) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            response = deploy => panic!("answered before it could be killed: {:?}", answer(&response)),
            () = written => {}
        }
    }
    lambdas.kill(0);

    let heard = stack.heard(&queue);
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0]["detail"]["status"], "pending");
    assert_eq!(heard[0]["detail"]["previous_status"], Value::Null);
    let release = heard[0]["detail"]["id"].as_str().unwrap();
    assert_eq!(heard[0]["detail"]["event_id"], format!("{release}/0"), "the admission's write");
}
