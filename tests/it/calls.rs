//! How many AWS round trips a request costs, counted by the SDK interceptor
//! the Lambda uses: deterministic, so asserted (timings are not; see `make bench`).

use crate::support::{Stack, GOOD, NEXT};
use flakefleet::aws::CallCounter;
use flakefleet::domain::model::rollout::{Rate, RolloutMode, RolloutPolicy};
use std::collections::BTreeMap;

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// The all-at-once mode (the stack's default settings): one command to the tag.
#[tokio::test]
async fn an_all_at_once_deploy_request_makes_four_calls_whatever_the_fleet_size() {
    for size in [10, 100] {
        let stack = Stack::new(size).await;
        let calls = CallCounter::default();
        let controller = stack.counted_controller(&calls);
        stack.deploy(&controller, GOOD).await;
        // Record and take the lease; one page of instances; send to the tag; record the command.
        // The two status changes (pending, in_progress) are items of those writes: the
        // table's stream carries them to the bus, at no call of the function's.
        let expected =
            counts(&[("DynamoDB.TransactWriteItems", 2), ("EC2.DescribeInstances", 1), ("SSM.SendCommand", 1)]);
        assert_eq!(calls.take(), expected, "a fleet of {size}");

        // A rollback request also reads the fleet's state and finds the last good release.
        stack.settle(&controller).await;
        stack.deploy(&controller, NEXT).await;
        stack.settle(&controller).await;
        calls.take();
        let (status, body) = stack.http(&controller, "POST", "/rollback", None).await;
        assert_eq!(status, 202, "{body}");
        let expected = counts(&[
            ("DynamoDB.GetItem", 1),
            ("DynamoDB.Query", 1),
            ("DynamoDB.TransactWriteItems", 2),
            ("EC2.DescribeInstances", 1),
            ("SSM.SendCommand", 1),
        ]);
        assert_eq!(calls.take(), expected, "a rollback in a fleet of {size}");
    }
}

#[tokio::test]
async fn the_warm_up_makes_one_call_per_service() {
    let stack = Stack::new(1).await;
    let calls = CallCounter::default();
    let ddb = aws_sdk_dynamodb::Client::from_conf(stack.ddb.config().to_builder().interceptor(calls.clone()).build());
    let ec2 = aws_sdk_ec2::Client::from_conf(stack.ec2.config().to_builder().interceptor(calls.clone()).build());
    let ssm = aws_sdk_ssm::Client::from_conf(stack.ssm.config().to_builder().interceptor(calls.clone()).build());
    flakefleet::aws::Connections::new(ddb, ec2, ssm, &stack.table).warm().await;
    let expected = counts(&[("DynamoDB.GetItem", 1), ("EC2.DescribeInstances", 1), ("SSM.ListCommands", 1)]);
    assert_eq!(calls.take(), expected);
    assert_eq!(stack.item_count().await, 0, "the warm-up writes nothing");
}

/// The default staged rollout (a canary of 1, then waves of 50%) of 10
/// instances: the deploy request, then each reconcile until the release is
/// final, every call counted.
#[tokio::test]
async fn a_staged_rollout_costs_these_calls_step_by_step() {
    let stack = Stack::new(10).await;
    let calls = CallCounter::default();
    let mut settings = stack.settings();
    settings.rollout = RolloutPolicy {
        mode: RolloutMode::Staged,
        canary: 1,
        wave: Rate::Percent(50),
        failure_threshold: Rate::Count(0),
        unreachable_tolerance: Rate::Count(1),
        auto_rollback: true,
        pause_before_waves: false,
        max_pause: std::time::Duration::from_secs(86_400),
        bake: std::time::Duration::ZERO,
        alarms: Vec::new(),
    };
    let controller = stack.counted_controller_with(&calls, settings);
    let release = stack.deploy(&controller, GOOD).await;
    assert_eq!(release["rollout"]["waves"][0]["instance_ids"].as_array().unwrap().len(), 1, "the canary: {release}");
    let mut steps = vec![("deploy".to_owned(), calls.take())];
    for _ in 0..20 {
        let (status, body) = stack.http(&controller, "POST", "/reconcile", None).await;
        assert_eq!(status, 200, "{body}");
        let outcome = body["reconcile"]["outcome"].as_str().unwrap().to_owned();
        steps.push((outcome.clone(), calls.take()));
        if outcome == "finished" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let step = |outcome: &str, pairs: &[(&str, u64)]| (outcome.to_owned(), counts(pairs));
    // The simulator answers at once, so each reconcile judges one wave (the command's
    // status and its invocations), tags the converged instances, lists the fleet and
    // sends the next wave; the last one settles the release instead. No
    // notice costs a call: each is an item of the write that changes the status.
    let judge_and_send = [
        ("DynamoDB.GetItem", 2),
        ("DynamoDB.TransactWriteItems", 2),
        ("EC2.CreateTags", 1),
        ("EC2.DescribeInstances", 1),
        ("SSM.DescribeInstanceInformation", 1),
        ("SSM.ListCommandInvocations", 1),
        ("SSM.ListCommands", 1),
        ("SSM.SendCommand", 1),
    ];
    let expected = vec![
        // Five calls: which running instances are Online managed nodes is one more.
        step(
            "deploy",
            &[
                ("DynamoDB.TransactWriteItems", 2),
                ("EC2.DescribeInstances", 1),
                ("SSM.DescribeInstanceInformation", 1),
                ("SSM.SendCommand", 1),
            ],
        ),
        step("wave_started", &judge_and_send),
        step("wave_started", &judge_and_send),
        step(
            "finished",
            &[
                ("DynamoDB.GetItem", 2),
                ("DynamoDB.TransactWriteItems", 1),
                ("EC2.CreateTags", 1),
                ("EC2.DescribeInstances", 1),
                ("SSM.ListCommandInvocations", 1),
                ("SSM.ListCommands", 1),
            ],
        ),
    ];
    assert_eq!(steps, expected, "{steps:#?}");
    // Every call the rollout made is one the function's role grants.
    let statements = crate::template::function_statements(&crate::support::template());
    let granted: Vec<String> = statements.iter().flat_map(|s| crate::template::strings(&s["Action"])).collect();
    for operation in steps.iter().flat_map(|(_, calls)| calls.keys()) {
        let (service, action) = operation.split_once('.').unwrap();
        // IAM authorises a transaction by each item's own action.
        let actions = match action {
            "TransactWriteItems" => vec!["PutItem", "UpdateItem"],
            other => vec![other],
        };
        // The call counter names services as the SDK does; IAM has its own prefixes.
        let prefix = match service {
            "EventBridge" => "events".to_owned(),
            other => other.to_lowercase(),
        };
        for action in actions {
            let action = format!("{prefix}:{action}");
            assert!(granted.contains(&action), "the function role does not grant {action}");
        }
    }
}
