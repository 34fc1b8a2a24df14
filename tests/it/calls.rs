//! How many AWS round trips a request costs, counted by the SDK interceptor
//! the Lambda uses: deterministic, so asserted (timings are not; see `make bench`).

use crate::support::{Stack, GOOD, NEXT};
use flakefleet::aws::CallCounter;
use std::collections::BTreeMap;

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

#[tokio::test]
async fn a_deploy_request_makes_four_calls_whatever_the_fleet_size() {
    for size in [10, 100] {
        let stack = Stack::new(size).await;
        let calls = CallCounter::default();
        let controller = stack.counted_controller(&calls);
        stack.deploy(&controller, GOOD).await;
        // Record and take the lease; one page of instances for the canary; send; record the command.
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
