//! Release notices on EventBridge (moto's, delivering to an SQS queue
//! through a rule, as a subscriber would): one event per status change, each
//! with an id of its release and write; notices a writer could not post wait
//! in the DynamoDB outbox, and a later reconcile posts them with the same ids.

use crate::support::{Stack, GOOD, NEXT};
use flakefleet::aws::{CloudWatchAlarms, DynamoReleaseStore, Ec2FleetInventory, EventBridgeNotices, SsmCommandRunner};
use flakefleet::domain::model::rollout::RolloutMode;
use flakefleet::domain::usecases::FleetController;
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
async fn every_status_change_is_one_event_and_a_notice_not_posted_is_posted_later_with_its_id() {
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
    assert!(!stack.sort_keys().await.iter().any(|k| k.starts_with("NOTICE#")), "the outbox is empty");
    // A reconcile that changes nothing announces nothing.
    stack.settle(&controller).await;
    assert!(stack.heard(&queue).is_empty());

    // A writer whose notices cannot be posted (its bus does not exist): they
    // wait in the outbox, and the next reconcile posts them, ids unchanged.
    let lost = FleetController::new(
        DynamoReleaseStore::new(stack.ddb.clone(), &stack.table),
        Ec2FleetInventory::new(stack.ec2.clone()),
        SsmCommandRunner::new(stack.ssm.clone(), crate::support::ssm_settings()),
        CloudWatchAlarms::new(stack.cloudwatch.clone()),
        EventBridgeNotices::new(stack.events.clone(), Some("no-such-bus".into())),
        settings,
    );
    let fix = stack.deploy(&lost, "AcmeCorp/infra/=0.1.43+rev-3333333#nixosConfigurations.web").await;
    assert!(stack.heard(&queue).is_empty());
    let waiting: Vec<String> = stack.sort_keys().await.into_iter().filter(|k| k.starts_with("NOTICE#")).collect();
    assert_eq!(waiting.len(), 2, "pending and in_progress wait in the outbox: {waiting:?}");
    let report = flakefleet::entry::handle(
        &controller,
        &crate::support::gate(),
        crate::support::sample_event("eventbridge-scheduled.json"),
        "it",
    )
    .await
    .unwrap();
    assert!(report["reconcile"].is_object(), "{report}");
    let later = changes(&stack.heard(&queue));
    let fix_events: Vec<&(String, String, String)> = later.iter().filter(|(r, _, _)| *r == id(&fix)).collect();
    assert_eq!(
        fix_events.iter().map(|(_, s, _)| s.as_str()).collect::<Vec<_>>()[..2],
        ["pending", "in_progress"],
        "{later:?}"
    );
    for (_, _, event_id) in &fix_events[..2] {
        let (release, version) = event_id.rsplit_once('/').unwrap();
        let key = format!("NOTICE#{release}#{:010}", version.parse::<u64>().unwrap());
        assert!(waiting.contains(&key), "{event_id} is the notice that waited: {waiting:?}");
    }
    assert!(!stack.sort_keys().await.iter().any(|k| k.starts_with("NOTICE#")), "the outbox is empty again");
}
