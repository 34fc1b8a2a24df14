//! Managed nodes. SSM sends only to instances whose agent has registered, and
//! refuses a whole request naming one that has not; the simulator does the
//! same (dev/README.md), and flakefleet targets only Online nodes.

use crate::support::{post_control, set_agents, Stack, GOOD, NEXT};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use flakefleet::AwsFleetController;
use serde_json::{json, Value};

fn ids_filter(ids: &[String]) -> InstanceInformationStringFilter {
    InstanceInformationStringFilter::builder().key("InstanceIds").set_values(Some(ids.to_vec())).build().unwrap()
}

async fn send_to(stack: &Stack, ids: &[String]) -> Result<String, String> {
    let sent = stack
        .ssm
        .send_command()
        .document_name("ApplyNixosDocument")
        .parameters("flakeref", vec![GOOD.to_owned()])
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await;
    match sent {
        Ok(out) => Ok(out.command().unwrap().command_id().unwrap().to_owned()),
        Err(e) => Err(e.code().unwrap_or_default().to_owned()),
    }
}

async fn invocation_detail(stack: &Stack, command_id: &str) -> String {
    let out = stack.ssm.list_command_invocations().command_id(command_id).send().await.unwrap();
    out.command_invocations()[0].status_details().unwrap().to_owned()
}

/// As AWS: SendCommand with InstanceIds fails whole on an instance that is
/// not a registered managed node (creating nothing), accepts a registered
/// node that is stopped (its invocation is never delivered), and refuses a
/// terminated one.
#[tokio::test]
async fn a_send_naming_an_unregistered_instance_is_refused_whole() {
    let stack = Stack::new(1).await;
    let fresh = stack.launch_unregistered(1).await;
    let both = vec![stack.instances[0].clone(), fresh[0].clone()];
    assert_eq!(send_to(&stack, &both).await, Err("InvalidInstanceId".to_owned()));
    let listed = stack.ssm.list_commands().send().await.unwrap();
    assert!(
        listed.commands().iter().all(|c| !c.instance_ids().contains(&stack.instances[0])),
        "a refused send creates no command"
    );
    let nodes = stack.ssm.describe_instance_information().filters(ids_filter(&both)).send().await.unwrap();
    let listed: Vec<(&str, &str)> = nodes
        .instance_information_list()
        .iter()
        .map(|n| (n.instance_id().unwrap(), n.ping_status().unwrap().as_str()))
        .collect();
    assert_eq!(listed, [(stack.instances[0].as_str(), "Online")], "the fresh instance is not a managed node yet");
    set_agents(&fresh, "Online");
    assert!(send_to(&stack, &both).await.is_ok(), "registered now");

    stack.ec2.stop_instances().instance_ids(&fresh[0]).send().await.unwrap();
    let nodes = stack.ssm.describe_instance_information().filters(ids_filter(&fresh)).send().await.unwrap();
    assert!(nodes.instance_information_list().is_empty(), "SSM says nothing of a stopped node");
    let command = send_to(&stack, &fresh).await.expect("a stopped registered node is accepted");
    assert_eq!(invocation_detail(&stack, &command).await, "Undeliverable");
    stack.ec2.terminate_instances().instance_ids(&fresh[0]).send().await.unwrap();
    assert_eq!(send_to(&stack, &fresh).await, Err("InvalidInstanceId".to_owned()));
}

/// A node that loses its agent after the send and before the command
/// started never runs it: Undeliverable.
#[tokio::test]
async fn an_agent_lost_before_it_started_leaves_the_invocation_undeliverable() {
    let stack = Stack::new(1).await;
    let rule = json!({"instance_id": stack.instances[0], "outcome": "success", "start_delay_seconds": 30, "delay_seconds": 60});
    stack.script(rule);
    let command = send_to(&stack, &stack.instances).await.unwrap();
    assert_eq!(invocation_detail(&stack, &command).await, "Pending");
    set_agents(&stack.instances, "ConnectionLost");
    assert_eq!(invocation_detail(&stack, &command).await, "Undeliverable");
}

/// An invocation the agent had started is not Undeliverable when the agent
/// goes away (AWS documents Undeliverable as never delivered): it shows In
/// Progress, past the moment it ends, until the agent is back and reports it.
#[tokio::test]
async fn an_agent_lost_mid_apply_reports_nothing_until_it_is_back() {
    let stack = Stack::new(2).await;
    for id in &stack.instances {
        stack.script(json!({"instance_id": id, "outcome": "success", "delay_seconds": 1}));
    }
    let lost = send_to(&stack, &stack.instances[..1]).await.unwrap();
    let kept = send_to(&stack, &stack.instances[1..]).await.unwrap();
    assert_eq!(invocation_detail(&stack, &lost).await, "In Progress");
    set_agents(&stack.instances[..1], "ConnectionLost");
    // The twin sent after it, with the same second to run, ends: the lost one ran as long.
    for _ in 0..100 {
        if invocation_detail(&stack, &kept).await == "Success" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(invocation_detail(&stack, &kept).await, "Success");
    assert_eq!(invocation_detail(&stack, &lost).await, "In Progress", "started, its agent away: nothing reported");
    set_agents(&stack.instances[..1], "Online");
    assert_eq!(invocation_detail(&stack, &lost).await, "Success", "the agent is back and reports how it ended");
}

/// ListCommandInvocations' token is a place in the listing, not an offset:
/// commands created between two pages neither repeat nor shift a row.
#[tokio::test]
async fn a_listing_while_commands_are_created_repeats_no_row() {
    let stack = Stack::new(1).await;
    let host = stack.instances[0].clone();
    let older = send_to(&stack, &stack.instances).await.unwrap();
    let newer = send_to(&stack, &stack.instances).await.unwrap();
    let list = || stack.ssm.list_command_invocations().instance_id(&host).max_results(1);
    let ids = |page: &aws_sdk_ssm::operation::list_command_invocations::ListCommandInvocationsOutput| -> Vec<String> {
        page.command_invocations().iter().map(|i| i.command_id().unwrap().to_owned()).collect()
    };
    let first = list().send().await.unwrap();
    let token = first.next_token().expect("a second page").to_owned();
    send_to(&stack, &stack.instances).await.unwrap();
    let second = list().next_token(token).send().await.unwrap();
    assert_eq!([ids(&first), ids(&second)].concat(), [newer, older], "newest first, each once");
    assert!(second.next_token().is_none());
    let bad = stack.ssm.list_command_invocations().next_token("not-a-token").send().await.unwrap_err();
    assert_eq!(bad.code(), Some("InvalidNextToken"));
}

/// DescribeInstanceInformation answers at most 50 nodes a page, and refuses more.
#[tokio::test]
async fn managed_nodes_come_in_pages_of_at_most_fifty() {
    let stack = Stack::new(60).await;
    let mut pages = stack
        .ssm
        .describe_instance_information()
        .filters(ids_filter(&stack.instances))
        .max_results(50)
        .into_paginator()
        .send();
    let mut sizes = Vec::new();
    while let Some(page) = pages.next().await {
        sizes.push(page.unwrap().instance_information_list().len());
    }
    assert_eq!(sizes, [50, 10]);
    let too_many = stack.ssm.describe_instance_information().max_results(51).send().await.unwrap_err();
    assert_eq!(too_many.code(), Some("ValidationException"));
    let unknown = stack.ssm.describe_instance_information().filters(ids_filter(&["i-0123456789abcdef0".into()]));
    assert_eq!(
        unknown.send().await.unwrap_err().code(),
        Some("InvalidInstanceId"),
        "an id that is not valid is an error"
    );
}

fn staged(stack: &Stack) -> AwsFleetController {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(50);
    settings.rollout.unreachable_tolerance = Rate::Count(1);
    stack.controller_with(settings)
}

fn targeted(commands: &[aws_sdk_ssm::types::Command]) -> Vec<String> {
    commands.iter().flat_map(|c| c.instance_ids().to_vec()).collect()
}

/// A host whose agent is not Online is never the canary and never sent to;
/// it is recorded as unreachable, shown in GET /fleet, and the drift repair
/// applies the good release to it once it is back.
#[tokio::test]
async fn a_host_without_its_agent_is_passed_over_then_repaired_when_back() {
    let stack = Stack::new(4).await;
    let controller = staged(&stack);
    let lost = stack.instances[0].clone();
    set_agents(std::slice::from_ref(&lost), "ConnectionLost");
    let release = stack.deploy(&controller, GOOD).await;
    assert_eq!(release["rollout"]["waves"][0]["instance_ids"], json!([stack.instances[1]]), "{release}");
    assert_eq!(release["unreachable"], json!([{"instance_id": lost, "ping_status": "ConnectionLost"}]));
    stack.settle(&controller).await;
    let (_, body) =
        stack.http(&controller, "GET", &format!("/releases/{}", release["id"].as_str().unwrap()), None).await;
    assert_eq!(body["release"]["status"], "succeeded", "one unreachable host is within the tolerance: {body}");
    assert!(body["release"]["status_reason"].as_str().unwrap().contains(&format!("{lost} ConnectionLost")));
    assert!(!targeted(&stack.commands().await).contains(&lost), "nothing was sent to it");
    let (_, fleet) = stack.http(&controller, "GET", "/fleet", None).await;
    assert_eq!(fleet["fleet"]["unreachable"][0]["instance_id"], json!(lost), "{fleet}");

    // Still away: the repair leaves it alone and says why.
    let reconcile = stack.settle(&controller).await;
    assert!(reconcile["skipped"].as_str().unwrap_or_default().contains("not Online managed nodes"), "{reconcile}");
    set_agents(std::slice::from_ref(&lost), "Online");
    stack.settle(&controller).await;
    let sent = stack.commands().await;
    let to_lost: Vec<_> = sent.iter().filter(|c| c.instance_ids().contains(&lost)).collect();
    assert_eq!(to_lost.len(), 1, "the repair applied the good release to it once");
    assert_eq!(to_lost[0].parameters().unwrap()["flakeref"], [GOOD]);
}

/// An agent that goes away between flakefleet's check and its send: SSM
/// refuses the send with InvalidInstanceId, flakefleet looks again, drops
/// that host and sends to the others.
#[tokio::test]
async fn an_agent_lost_between_the_check_and_the_send_is_dropped_and_the_rest_sent() {
    let stack = Stack::new(3).await;
    let controller = staged(&stack);
    let body = json!({"instance_id": stack.instances[0], "ping_status": "NotRegistered", "on": "SendCommand"});
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &body).starts_with("HTTP/1.1 200"));
    let release = stack.deploy(&controller, GOOD).await;
    assert_eq!(release["rollout"]["waves"][0]["instance_ids"], json!([stack.instances[1]]), "{release}");
    assert_eq!(release["unreachable"][0], json!({"instance_id": stack.instances[0], "ping_status": "NotRegistered"}));
    assert_eq!(stack.commands().await.len(), 1, "the refused send created nothing; the second went out");

    // The same inside a wave, on a deploy of the next release.
    stack.settle(&controller).await;
    set_agents(&stack.instances[..1], "Online");
    stack.settle(&controller).await; // the repair catches instance 0 up
    let body = json!({"instance_id": stack.instances[2], "ping_status": "Inactive", "on": "SendCommand"});
    assert!(post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &body).starts_with("HTTP/1.1 200"));
    let next = stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    let (_, body) = stack.http(&controller, "GET", &format!("/releases/{}", next["id"].as_str().unwrap()), None).await;
    let waves: Vec<Value> = body["release"]["rollout"]["waves"].as_array().unwrap().clone();
    assert_eq!(waves[1]["instance_ids"], json!([stack.instances[1]]), "{body}");
    assert_eq!(body["release"]["unreachable"][0]["instance_id"], json!(stack.instances[2]));
    assert_eq!(body["release"]["status"], "succeeded");
}

#[tokio::test]
async fn bad_agent_rules_are_refused_with_a_message() {
    for (rule, says) in [
        (json!({"instance_id": "i-1", "ping_status": "Asleep"}), "ping_status"),
        (json!({"ping_status": "Online"}), "instance_id"),
        (json!({"instance_id": "i-1", "ping_status": "Online", "agent_version": "new"}), "agent_version"),
        (json!({"instance_id": "i-1", "ping_status": "Online", "on": "ListCommands"}), "on must be"),
        (json!({"registration_delay_seconds": -1}), "registration_delay_seconds"),
    ] {
        let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &rule);
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(says), "{rule}: {answer}");
    }
}

/// The canary is looked for among a few running instances first, then wider
/// when none of them is an Online managed node.
#[tokio::test]
async fn the_canary_is_found_past_a_first_page_of_unreachable_hosts() {
    let stack = Stack::new(7).await;
    set_agents(&stack.instances[..5], "ConnectionLost");
    let release = stack.deploy(&staged(&stack), GOOD).await;
    assert_eq!(release["rollout"]["waves"][0]["instance_ids"], json!([stack.instances[5]]), "{release}");
    assert_eq!(release["unreachable"].as_array().unwrap().len(), 5);
}
