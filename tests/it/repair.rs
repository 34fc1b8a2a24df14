//! Keeping the fleet whole against moto: launches into missing slots with
//! pinned user data, re-applies to drifted instances, never launches twice.

use crate::support::{Stack, GOOD, NEXT, PROFILE};
use aws_sdk_ec2::types::{Filter, HttpTokensState, Tag};
use base64::Engine;
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::AwsFleetController;
use serde_json::{json, Value};

/// `instances` instances and an instance profile; a fleet of `capacity`
/// whose good release, GOOD, has settled.
async fn on_good(instances: i32, capacity: usize) -> (Stack, AwsFleetController) {
    let stack = Stack::new(instances).await;
    stack.create_instance_profile().await;
    let controller = stack.controller_with(with_capacity(&stack, capacity));
    stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    (stack, controller)
}

fn with_capacity(stack: &Stack, capacity: usize) -> FleetSettings {
    let mut settings = stack.settings();
    settings.spec.desired_capacity = capacity;
    settings
}

async fn reconcile(stack: &Stack, controller: &AwsFleetController) -> Value {
    let (status, body) = stack.http(controller, "POST", "/reconcile", None).await;
    assert_eq!(status, 200, "{body}");
    body["reconcile"].clone()
}

/// The fleet's instances that are pending or running.
async fn live(stack: &Stack) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = stack
        .ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:Name").values(&stack.tag.value).build())
        .filters(Filter::builder().name("instance-state-name").values("pending").values("running").build())
        .send()
        .await
        .unwrap();
    out.reservations().iter().flat_map(|r| r.instances().to_vec()).collect()
}

fn tag<'a>(instance: &'a aws_sdk_ec2::types::Instance, key: &str) -> Option<&'a str> {
    instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

#[tokio::test]
async fn missing_instances_are_launched_on_the_exact_good_release() {
    let stack = Stack::new(1).await;
    stack.create_instance_profile().await;
    let controller = stack.controller_with(with_capacity(&stack, 3));
    let answer = reconcile(&stack, &controller).await;
    assert!(answer["skipped"].as_str().unwrap().contains("no release has succeeded"), "{answer}");

    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    let answer = reconcile(&stack, &controller).await;
    assert_eq!(answer["outcome"], "repaired", "{answer}");
    let launched: Vec<String> = serde_json::from_value(answer["launched"].clone()).unwrap();
    assert_eq!(launched.len(), 2);
    assert_eq!(answer["release"]["kind"], "repair");
    // Launched is not repaired: the new hosts have run nothing yet.
    assert_eq!(answer["release"]["status"], "in_progress");
    for id in &launched {
        let out = stack.ec2.describe_instances().instance_ids(id).send().await.unwrap();
        assert_eq!(tag(&out.reservations()[0].instances()[0], "flakefleet:release"), None, "no release tag at launch");
    }
    // The new hosts boot: fake hosts of the SSM simulator run their user data
    // as amazon-init does (a second's apply), and their agents come Online
    // meanwhile. The good release's apply over SSM waits for the user data's,
    // then finds the host on it and does nothing.
    crate::support::fake_hosts(&launched, json!({"boot": true, "apply_seconds": 1}));
    crate::support::set_agents(&launched, "Online");
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["status"], "succeeded", "{settled}");
    let path = format!("/releases/{}", settled["release"]["id"].as_str().unwrap());
    let repaired = stack.http(&controller, "GET", &path, None).await.1["release"].clone();
    for id in &launched {
        let host = crate::support::get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{id}"));
        assert_eq!(host["boot"]["exit_code"], 0, "{host}");
        let calls: Vec<&str> = host["calls"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(calls.iter().filter(|c| c.starts_with("fh apply")).count(), 1, "one apply, at boot: {calls:?}");
        let outcome =
            repaired["instances"].as_array().unwrap().iter().find(|i| i["instance_id"] == id.as_str()).unwrap();
        assert_eq!(outcome["status"], "Success", "{outcome}");
    }
    // (All pages of the simulator's commands: the launched hosts are not the stack's own.)
    let mut sent = Vec::new();
    let mut pages = stack.ssm.list_commands().into_paginator().send();
    while let Some(page) = pages.next().await {
        for command in page.unwrap().commands() {
            for id in command.instance_ids().iter().filter(|i| launched.contains(i)) {
                sent.push(id.clone());
                let invocation = stack.ssm.get_command_invocation().command_id(command.command_id().unwrap());
                let output = invocation.instance_id(id).send().await.unwrap();
                let stdout = output.standard_output_content().unwrap_or_default();
                assert!(stdout.contains("already running"), "the user data applied it: {stdout}");
            }
        }
    }
    sent.sort();
    let mut expected = launched.clone();
    expected.sort();
    assert_eq!(sent, expected, "one apply each, over SSM");

    for id in &launched {
        let out = stack.ec2.describe_instances().instance_ids(id).send().await.unwrap();
        let instance = &out.reservations()[0].instances()[0];
        assert_eq!(tag(instance, "Name"), Some(stack.tag.value.as_str()));
        // Tagged with the repair once its apply succeeded; it applies the good release's flakeref.
        assert_eq!(tag(instance, "flakefleet:release"), answer["release"]["id"].as_str());
        assert_eq!(answer["release"]["flakeref"], good["flakeref"]);
        assert_eq!(tag(instance, "flakefleet:fleet"), Some("it"));
        assert!(tag(instance, "flakefleet:slot").is_some());
        assert_eq!(instance.metadata_options().and_then(|m| m.http_tokens()), Some(&HttpTokensState::Required));
        assert!(instance.iam_instance_profile().and_then(|p| p.arn()).unwrap().ends_with(&format!("/{PROFILE}")));
        let user_data = stack
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let encoded = user_data.user_data().and_then(|v| v.value()).unwrap();
        let script = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
        assert!(script.contains(&format!("fh apply nixos '{GOOD}'")), "{script}");
        assert!(script.contains("determinate-nixd login aws"));
        // The root volume: encrypted gp3 of the configured size.
        let volumes = volumes_of(&stack, id).await;
        let root = volumes.first().unwrap_or_else(|| panic!("{id} has no volume"));
        assert_eq!(root.volume_type().map(|t| t.as_str()), Some("gp3"), "{root:?}");
        assert_eq!(root.encrypted(), Some(true), "{root:?}");
        assert_eq!(root.size(), Some(16), "{root:?}");
    }
    assert_eq!(live(&stack).await.len(), 3);

    let again = reconcile(&stack, &controller).await;
    assert_eq!((again["outcome"].as_str(), again["launched"].as_array().unwrap().len()), (Some("idle"), 0));
}

/// A launched host whose first boot fails to apply the release (fh cannot
/// fetch it), and whose apply over SSM fails the same way, is not repaired:
/// the repair fails and names it, and it gets no release tag.
#[tokio::test]
async fn a_launched_host_that_cannot_apply_the_release_fails_the_repair_and_is_named() {
    let (stack, controller) = on_good(1, 2).await;
    let answer = reconcile(&stack, &controller).await;
    let launched: Vec<String> = serde_json::from_value(answer["launched"].clone()).unwrap();
    assert_eq!(launched.len(), 1, "{answer}");
    crate::support::fake_hosts(&launched, json!({"boot": true, "activation": "errors"}));
    crate::support::set_agents(&launched, "Online");
    let settled = stack.settle(&controller).await;
    let release = &settled["release"];
    assert_eq!((release["kind"].as_str(), release["status"].as_str()), (Some("repair"), Some("failed")), "{settled}");
    assert!(release["status_reason"].as_str().unwrap().contains(&launched[0]), "{settled}");
    let host = crate::support::get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{}", launched[0]));
    assert_ne!(host["boot"]["exit_code"], 0, "the first boot failed: {host}");
    let out = stack.ec2.describe_instances().instance_ids(&launched[0]).send().await.unwrap();
    assert_eq!(tag(&out.reservations()[0].instances()[0], "flakefleet:release"), None, "never tagged");
}

#[tokio::test]
async fn an_instance_on_an_older_release_is_reapplied() {
    let stack = Stack::new(2).await;
    let controller = stack.controller_with(with_capacity(&stack, 2));
    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    let next = stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    assert_eq!(reconcile(&stack, &controller).await["outcome"], "idle");

    // One host went back to the older release (say, a hand-run switch).
    let drifted = &stack.instances[1];
    stack
        .ec2
        .create_tags()
        .resources(drifted)
        .tags(Tag::builder().key("flakefleet:release").value(good["id"].as_str().unwrap()).build())
        .send()
        .await
        .unwrap();
    let answer = reconcile(&stack, &controller).await;
    assert_eq!(answer["reapplied"], serde_json::json!([drifted]), "{answer}");
    assert_eq!(answer["release"]["flakeref"], NEXT);
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["kind"], "repair");
    assert_eq!(settled["release"]["status"], "succeeded");
    let repair_command = stack
        .commands()
        .await
        .into_iter()
        .find(|c| c.instance_ids() == [drifted.clone()])
        .expect("sent by instance id");
    assert_eq!(repair_command.parameters().unwrap()["flakeref"], vec![NEXT.to_owned()]);
    // Tagged with the release it applied, so the next reconcile has nothing to do.
    assert_eq!(reconcile(&stack, &controller).await["outcome"], "idle");
    // The fleet's desired release is still the deploy, not the repair.
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert_eq!(fleet["fleet"]["desired_release"]["id"], next["id"]);
}

#[tokio::test]
async fn a_terminated_instance_is_replaced() {
    let (stack, controller) = on_good(2, 2).await;
    stack.ec2.terminate_instances().instance_ids(&stack.instances[0]).send().await.unwrap();
    let answer = reconcile(&stack, &controller).await;
    assert_eq!(answer["launched"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(live(&stack).await.len(), 2);
}

#[tokio::test]
async fn two_reconciles_at_once_launch_once() {
    let (stack, controller) = on_good(1, 4).await;
    let (a, b) = tokio::join!(reconcile(&stack, &controller), reconcile(&stack, &controller));
    let launched = a["launched"].as_array().unwrap().len() + b["launched"].as_array().unwrap().len();
    assert_eq!(launched, 3, "{a}\n{b}");
    assert_eq!(live(&stack).await.len(), 4);
    // They overlapped, and the lease decided: one repaired, the other was refused by the
    // lease or found it held. One after the other, the second would find nothing to do.
    let (winner, other) = if a["outcome"] == "repaired" { (&a, &b) } else { (&b, &a) };
    assert_eq!(winner["outcome"], "repaired", "{a}\n{b}");
    let refused = other["skipped"].as_str().is_some_and(|why| why.contains("holds the fleet"));
    let saw_the_lease = other["release"]["id"] == winner["release"]["id"];
    assert!(refused || saw_the_lease, "the second reconcile did not meet the first's lease: {other}");
}

#[tokio::test]
async fn launch_failures_are_reported_and_retried_not_crashed() {
    let stack = Stack::new(1).await;
    // No image matching this pattern, and an instance profile IAM does not know yet.
    let profile = format!("missing-{}", stack.tag.value);
    let mut settings = with_capacity(&stack, 2);
    settings.spec.image.name_pattern = "determinate/nixos/epoch-9/*".into();
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    let answer = reconcile(&stack, &controller).await;
    assert!(answer["skipped"].as_str().unwrap().contains("no image matches"), "{answer}");
    assert!(answer["release"].is_null(), "nothing recorded while nothing can be done");

    // The image exists but the instance profile does not: EC2 refuses, and that is said.
    let mut settings = with_capacity(&stack, 2);
    settings.spec.instance_profile = profile.clone();
    let controller = stack.controller_with(settings);
    let answer = reconcile(&stack, &controller).await;
    assert_eq!(answer["launched"].as_array().unwrap().len(), 0, "{answer}");
    let reason = answer["release"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("RunInstances"), "{reason}");

    // Fixed: the next reconcile launches.
    stack.create_instance_profile_named(&profile).await;
    assert_eq!(reconcile(&stack, &controller).await["launched"].as_array().unwrap().len(), 1);
}

/// A launch carries the deterministic ClientToken of its fleet, repair and
/// slot, so EC2 answers a retried RunInstances (the SDK's, or the next
/// reconcile's) with the first launch. moto does not deduplicate by token, but
/// it records it on the instance, where DescribeInstances shows it.
#[tokio::test]
async fn a_launch_carries_the_fleets_client_token() {
    use flakefleet::aws::Ec2FleetInventory;
    use flakefleet::domain::model::command::LaunchRequest;
    use flakefleet::domain::model::flakeref::Flakeref;
    use flakefleet::domain::model::ids::ReleaseId;
    use flakefleet::domain::model::time::Timestamp;
    use flakefleet::domain::planner::repair::{client_token, user_data};
    use flakefleet::domain::ports::FleetInventory;

    let stack = Stack::new(0).await;
    stack.create_instance_profile().await;
    let inventory = Ec2FleetInventory::new(stack.ec2.clone());
    let spec = crate::support::default_spec();
    let image = inventory.newest_image(&spec.image).await.unwrap().expect("the NixOS image is in moto");
    let release = ReleaseId::generate(Timestamp::now(), 7);
    let token = client_token(stack.fleet.as_str(), &release, 1);
    let request = LaunchRequest {
        image,
        root_volume_gib: 16,
        spec,
        slot: 1,
        subnet: None,
        client_token: token.clone(),
        user_data: user_data(&Flakeref::parse(GOOD).unwrap()),
        tag: stack.tag.clone(),
        fleet: stack.fleet.clone(),
    };
    let id = inventory.launch(&request).await.expect("launched");
    let described = stack.ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(instance.client_token(), Some(token.as_str()));
    assert_eq!(token, client_token(stack.fleet.as_str(), &release, 1), "the same launch asks with the same token");
    assert_ne!(token, client_token(stack.fleet.as_str(), &release, 2), "another slot is another launch");
}

/// The root volume goes on the image's own root device (EC2 would otherwise
/// add an empty volume and leave the root as the image made it), never
/// smaller than the image's snapshot.
#[tokio::test]
async fn launches_size_the_images_own_root_device() {
    let stack = Stack::new(1).await;
    stack.create_instance_profile().await;
    // dev/amis.json's test image: root /dev/sda1 on a 15 GiB snapshot (moto's size).
    let (owner, name) = ("111122223333", "flakefleet-it/root-on-sda1-x86_64");
    let described = stack.ec2.describe_images().owners(owner).send().await.unwrap();
    let root_device = described.images()[0].root_device_name().unwrap().to_owned();
    assert_eq!(root_device, "/dev/sda1", "an image whose root is not the demo's /dev/xvda");

    let mut settings = with_capacity(&stack, 2);
    settings.spec.image.owner = owner.into();
    settings.spec.image.name_pattern = name.into();
    settings.spec.root_volume_gib = 8;
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    let answer = reconcile(&stack, &controller).await;
    let launched = answer["launched"].as_array().unwrap();
    assert_eq!(launched.len(), 1, "{answer}");
    let id = launched[0].as_str().unwrap();
    let volumes = volumes_of(&stack, id).await;
    let on_root: Vec<_> =
        volumes.iter().filter(|v| v.attachments().iter().any(|a| a.device() == Some(root_device.as_str()))).collect();
    assert_eq!(on_root.len(), 1, "{volumes:?}");
    assert_eq!(on_root[0].size(), Some(15), "8 GiB asked, the snapshot's 15 given: {:?}", on_root[0]);
    assert_eq!(volumes.len(), 1, "no second, empty volume: {volumes:?}");
}

/// The volumes attached to an instance, as EC2 lists them.
async fn volumes_of(stack: &Stack, instance: &str) -> Vec<aws_sdk_ec2::types::Volume> {
    let filter = Filter::builder().name("attachment.instance-id").values(instance).build();
    stack.ec2.describe_volumes().filters(filter).send().await.unwrap().volumes().to_vec()
}
