//! AWS as strict as AWS: where the real services answer less kindly than
//! moto, the moto wrapper does so too (scripted per test, see dev/README.md),
//! and flakefleet copes.

use crate::support::{post_control, script_moto, Stack, GOOD};
use flakefleet::aws::Ec2FleetInventory;
use flakefleet::domain::model::rollout::RolloutMode;
use flakefleet::domain::ports::FleetInventory;
use serde_json::json;

fn short_pages(stack: &Stack, sizes: &[usize]) {
    let rule = json!({"operation": "DescribeInstances", "tag_value": stack.tag.value, "page_sizes": sizes});
    script_moto("/_strict/pages", rule);
}

/// EC2 filters after paging: a page may be short or empty while NextToken is
/// set. Every listing reads on until it has what it needs or NextToken is null.
#[tokio::test]
async fn listings_read_past_short_and_empty_pages() {
    let stack = Stack::new(3).await;
    short_pages(&stack, &[0, 1]);
    let inventory = Ec2FleetInventory::new(stack.ec2.clone());
    let mut all = inventory.running_instances(&stack.tag, None).await.unwrap();
    all.sort();
    let mut expected = stack.instances.clone();
    expected.sort();
    assert_eq!(all, expected, "every page, the empty ones too");
    let few = inventory.running_instances(&stack.tag, Some(2)).await.unwrap();
    assert!(few.len() >= 2, "read on past the empty first page: {few:?}");
    assert_eq!(inventory.fleet_instances(&stack.tag).await.unwrap().len(), 3);
}

/// The deploy request's "is anyone there" check and the canary both read past
/// an empty first page instead of recording `no_instances`.
#[tokio::test]
async fn a_deploy_behind_an_empty_first_page_is_still_sent() {
    for mode in [RolloutMode::AllAtOnce, RolloutMode::Staged] {
        let stack = Stack::new(2).await;
        short_pages(&stack, &[0, 1]);
        let mut settings = stack.settings();
        settings.rollout.mode = mode;
        let controller = stack.controller_with(settings);
        let release = stack.deploy(&controller, GOOD).await;
        assert_eq!(release["status"], "in_progress", "{mode:?}: {release}");
        assert_eq!(stack.commands().await.len(), 1, "{mode:?}");
    }
}

#[tokio::test]
async fn bad_strictness_rules_are_refused_with_a_message() {
    for (path, rule, says) in [
        (
            "/_strict/faults",
            json!({"operation": "PutItem", "table": "t", "reason": "TransactionConflict", "count": 1}),
            "operation",
        ),
        (
            "/_strict/faults",
            json!({"operation": "TransactWriteItems", "table": "t", "reason": "Nope", "count": 1}),
            "reason",
        ),
        (
            "/_strict/faults",
            json!({"operation": "TransactWriteItems", "table": "t", "reason": "ThrottlingError"}),
            "exactly one",
        ),
        (
            "/_strict/faults",
            json!({"operation": "TransactWriteItems", "table": "t", "reason": "ThrottlingError", "fraction": 2}),
            "fraction",
        ),
        ("/_strict/pages", json!({"operation": "DescribeInstances", "tag_value": "x", "page_sizes": [0]}), "above 0"),
        ("/_strict/nowhere", json!({}), "no such control endpoint"),
    ] {
        let answer = post_control("FLAKEFLEET_TEST_MOTO_URL", path, &rule);
        assert!(answer.starts_with("HTTP/1.1 400"), "{rule}: {answer}");
        assert!(answer.contains(says), "{rule}: {answer}");
    }
}

fn conflicts(stack: &Stack, reason: &str, amount: serde_json::Value) {
    let mut rule = json!({"operation": "TransactWriteItems", "table": stack.table, "reason": reason});
    rule.as_object_mut().unwrap().extend(amount.as_object().unwrap().clone());
    script_moto("/_strict/faults", rule);
}

/// DynamoDB cancels a transaction whose items another transaction holds
/// (`TransactionConflict`) or under load (`ThrottlingError`): nobody wrote
/// first, so it is tried again, with backoff.
#[tokio::test]
async fn cancelled_transactions_are_tried_again() {
    for reason in ["TransactionConflict", "ThrottlingError"] {
        let stack = Stack::new(1).await;
        conflicts(&stack, reason, json!({"count": 3}));
        let controller = stack.controller();
        let release = stack.deploy(&controller, GOOD).await;
        assert_eq!(release["status"], "in_progress", "{reason}: {release}");
        assert_eq!(stack.settle(&controller).await["release"]["status"], "succeeded", "{reason}");
    }
}

/// A store that stays busy answers 503 `busy`, with nothing recorded or sent.
#[tokio::test]
async fn a_store_that_stays_busy_answers_503_busy_and_changes_nothing() {
    let stack = Stack::new(1).await;
    conflicts(&stack, "TransactionConflict", json!({"fraction": 1.0}));
    let controller = stack.controller();
    let (status, body) =
        stack.http(&controller, "POST", "/releases", Some(&json!({"flakeref": GOOD}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("busy")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("retry"), "{body}");
    assert!(!stack.sort_keys().await.iter().any(|k| k.starts_with("RELEASE#")), "nothing recorded");
    assert!(stack.commands().await.is_empty(), "nothing sent");
}

/// Twenty deploys at once while 30% of the table's transactions are cancelled
/// by conflicts: still exactly one accepted, the others refused (409) or told
/// to retry (503 `busy`), and no release lost or recorded twice.
#[tokio::test]
async fn of_twenty_concurrent_deploys_among_conflicts_exactly_one_is_accepted() {
    let stack = Stack::new(2).await;
    conflicts(&stack, "TransactionConflict", json!({"fraction": 0.3}));
    let controller = stack.controller();
    let answers = stack.twenty_concurrent_deploys(&controller).await;
    // Accepted: a 202, or a 503 `busy` that names the release it recorded
    // (a write after the admission met the conflicts).
    let accepted: Vec<&str> = answers
        .iter()
        .filter_map(|(s, b)| match s {
            202 => b["release"]["id"].as_str(),
            503 => b["release_id"].as_str(),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, b)| *s == 202
            || (*s == 409 && b["error"] == "deploy_in_flight")
            || (*s == 503 && b["error"] == "busy")),
        "{answers:?}"
    );
    let releases: Vec<String> = stack.sort_keys().await.into_iter().filter(|k| k.starts_with("RELEASE#")).collect();
    assert_eq!(releases, [format!("RELEASE#{}", accepted[0])]);
    assert_eq!(stack.commands().await.len(), 1);
}

/// SSM throttles GetCommandInvocation under load. The per-instance output is
/// best effort: a fetch that keeps failing leaves a note, and the release is
/// judged all the same.
#[tokio::test]
async fn an_output_that_cannot_be_fetched_never_holds_up_the_verdict() {
    let stack = Stack::new(1).await;
    let instance = &stack.instances[0];
    stack.script(
        json!({"instance_id": instance, "outcome": "failed", "exit_code": 1, "stdout": "applying", "stderr": "boom"}),
    );
    let fault = json!({"operation": "GetCommandInvocation", "error": "ThrottlingException", "count": 20, "instance_id": instance});
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let controller = stack.controller();
    stack.deploy(&controller, GOOD).await;
    let settled = stack.settle(&controller).await;
    let release = &settled["release"];
    assert_eq!(release["status"], "failed", "{settled}");
    let outcome = &release["instances"][0];
    assert!(outcome["output_note"].as_str().unwrap().contains("ThrottlingException"), "{outcome}");
    assert!(outcome.get("stderr_tail").is_none(), "{outcome}");

    let bad = post_control(
        "FLAKEFLEET_TEST_SSM_URL",
        "/_sim/faults",
        &json!({"operation": "GetCommandInvocation", "error": "Nope", "count": 1}),
    );
    assert!(bad.starts_with("HTTP/1.1 400") && bad.contains("error must be one of"), "{bad}");
}

/// SendCommand refuses a CloudWatchOutputConfig whose log group name breaks
/// the API's pattern, as SSM does: nothing is sent.
#[tokio::test]
async fn a_bad_output_log_group_is_refused_by_send_command() {
    use aws_sdk_ssm::types::CloudWatchOutputConfig;
    let stack = Stack::new(1).await;
    for group in ["/flake fleet", "group:1"] {
        let err = stack
            .ssm
            .send_command()
            .document_name(crate::support::DOCUMENT)
            .instance_ids(&stack.instances[0])
            .parameters("flakeref", vec![GOOD.to_owned()])
            .cloud_watch_output_config(
                CloudWatchOutputConfig::builder()
                    .cloud_watch_output_enabled(true)
                    .cloud_watch_log_group_name(group)
                    .build(),
            )
            .send()
            .await
            .expect_err(group);
        let message = format!("{}", aws_sdk_ssm::error::DisplayErrorContext(&err));
        assert!(message.contains("ValidationException") && message.contains("cloudWatchLogGroupName"), "{message}");
    }
    assert!(stack.commands().await.is_empty());
}

/// PutEvents refuses more than 256 KB of entries (EventBridge's size
/// formula), which moto alone would accept. The notices pipe meets that
/// refusal with a notice item too big for the bus: past its retries the
/// record goes to the dead-letter queue (its place in the stream, not the
/// item), and the notices written after it still arrive.
#[tokio::test]
async fn a_notice_the_bus_refuses_is_dead_lettered_and_the_stream_moves_on() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let stack = Stack::new(1).await;
    let queue = stack.listen();
    let huge = format!(r#"{{"pad": "{}"}}"#, "x".repeat(300 * 1024));
    stack
        .ddb
        .put_item()
        .table_name(&stack.table)
        .item("pk", S(format!("FLEET#{}", stack.fleet)))
        .item("sk", S("NOTICE#00000000000000000000000000#0000000001".into()))
        .item("detail", S(huge))
        .send()
        .await
        .expect("PutItem");
    let release = stack.deploy(&stack.controller(), GOOD).await;

    let dead = stack.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let info = &dead[0]["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert!(info["streamArn"].as_str().unwrap().contains(&stack.table), "{info}");
    assert!(dead[0]["context"]["reason"].as_str().unwrap().contains("over the limit"), "{dead:?}");
    let heard = stack.heard(&queue);
    let statuses: Vec<&str> = heard.iter().map(|e| e["detail"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pending", "in_progress"], "{heard:?}");
    assert!(heard.iter().all(|e| e["detail"]["id"] == release["id"]));
}
