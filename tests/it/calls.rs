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
