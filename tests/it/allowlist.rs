//! Only allowed flakes reach the fleet: a flake off `FLAKEFLEET_ALLOWED_FLAKES`
//! is refused with 403 `flake_not_allowed` on every way in (deploy, rollback,
//! their direct invokes) and never repaired towards; nothing is written and
//! nothing is sent.

use crate::support::{gate, Stack, GOOD};
use flakefleet::domain::model::flakeref::FlakeAllowlist;
use flakefleet::AwsFleetController;
use serde_json::{json, Value};

const OTHER: &str = "AcmeCorp/edge/=2.0.0+rev-3333333#nixosConfigurations.web";
const ATTACKER: &str = "attacker/evil/=1.0.0#nixosConfigurations.x";

/// A controller of the same fleet and table that allows only `allowed`.
fn allowing(stack: &Stack, allowed: &str, capacity: usize) -> AwsFleetController {
    let mut settings = stack.settings();
    settings.allowed_flakes = FlakeAllowlist::parse(allowed).unwrap();
    settings.spec.desired_capacity = capacity;
    stack.controller_with(settings)
}

async fn invoke(controller: &AwsFleetController, event: Value) -> Value {
    flakefleet::entry::handle(controller, &gate(), event, "it").await.expect("client errors answer normally")
}

/// Items in the table, commands sent, instances running: what a refusal must leave alone.
async fn footprint(stack: &Stack) -> (Vec<String>, usize, usize) {
    let mut keys = stack.sort_keys().await;
    keys.sort();
    let tagged =
        aws_sdk_ec2::types::Filter::builder().name(format!("tag:{}", stack.tag.key)).values(&stack.tag.value).build();
    let out = stack.ec2.describe_instances().filters(tagged).send().await.unwrap();
    let instances = out.reservations().iter().flat_map(|r| r.instances()).count();
    (keys, stack.commands().await.len(), instances)
}

#[tokio::test]
async fn a_flake_off_the_allowlist_is_refused_on_every_way_in() {
    let stack = Stack::new(2).await;
    // The fleet once allowed AcmeCorp/edge too, and ran a release of it.
    let wide = allowing(&stack, "AcmeCorp/infra, AcmeCorp/edge", 0);
    stack.deploy(&wide, GOOD).await;
    stack.settle(&wide).await;
    let edge = stack.deploy(&wide, OTHER).await;
    stack.settle(&wide).await;

    let narrow = allowing(&stack, "AcmeCorp/infra", 0);
    let before = footprint(&stack).await;
    let refused = |status: u16, body: &Value, flake: &str| {
        assert_eq!((status, body["error"].as_str()), (403, Some("flake_not_allowed")), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(flake) && message.contains("FLAKEFLEET_ALLOWED_FLAKES"), "{message}");
    };

    let (status, body) =
        stack.http(&narrow, "POST", "/releases", Some(&json!({ "flakeref": ATTACKER }).to_string())).await;
    refused(status, &body, "attacker/evil");
    // The rollback's target is checked too: an old release of a flake no longer allowed.
    let (status, body) =
        stack.http(&narrow, "POST", "/rollback", Some(&json!({ "release_id": edge["id"] }).to_string())).await;
    refused(status, &body, "AcmeCorp/edge");

    let answer = invoke(&narrow, json!({"action": "deploy", "flakeref": ATTACKER})).await;
    assert_eq!(
        (answer["status"].as_u64(), answer["error"].as_str()),
        (Some(403), Some("flake_not_allowed")),
        "{answer}"
    );
    let answer = invoke(&narrow, json!({"action": "rollback", "release_id": edge["id"]})).await;
    assert_eq!(
        (answer["status"].as_u64(), answer["error"].as_str()),
        (Some(403), Some("flake_not_allowed")),
        "{answer}"
    );

    assert_eq!(footprint(&stack).await, before, "a refusal writes nothing, sends nothing, launches nothing");

    // An allowed flake still deploys through the same controller.
    let (status, body) = stack.http(&narrow, "POST", "/rollback", Some("{}")).await;
    assert_eq!(status, 202, "the last good release before the current one is AcmeCorp/infra: {body}");
}

#[tokio::test]
async fn the_fleet_is_never_repaired_towards_a_flake_no_longer_allowed() {
    let stack = Stack::new(1).await;
    stack.create_instance_profile().await;
    let wide = allowing(&stack, "AcmeCorp/edge", 0);
    stack.deploy(&wide, OTHER).await;
    stack.settle(&wide).await;

    // One instance short of capacity, but its last good release is off the allowlist now.
    let narrow = allowing(&stack, "AcmeCorp/infra", 2);
    let before = footprint(&stack).await;
    let (status, body) = stack.http(&narrow, "POST", "/reconcile", None).await;
    assert_eq!(status, 200, "{body}");
    let report = &body["reconcile"];
    assert_eq!(report["outcome"], "idle", "{report}");
    let skipped = report["skipped"].as_str().unwrap();
    assert!(skipped.contains("AcmeCorp/edge") && skipped.contains("FLAKEFLEET_ALLOWED_FLAKES"), "{skipped}");
    assert_eq!(footprint(&stack).await, before, "no repair recorded, no launch, no command");

    // The same fleet, with the flake allowed, is repaired.
    let repaired = allowing(&stack, "AcmeCorp/edge", 2);
    let (_, body) = stack.http(&repaired, "POST", "/reconcile", None).await;
    assert_eq!(body["reconcile"]["outcome"], "repaired", "{body}");
}
