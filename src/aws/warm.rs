//! Opening each service's connection during init, so the first invocation
//! of a process does not pay TCP and TLS set-up on its request path.

use super::dynamodb::{PARTITION_KEY, SORT_KEY};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::Filter;
use std::time::Duration;

/// Init waits at most this long; a slower service is warmed by its first real call.
const WARM_TIMEOUT: Duration = Duration::from_secs(2);

/// The three SDK clients the adapters use (clones share their connection pools).
#[derive(Clone, Debug)]
pub struct Connections {
    dynamodb: aws_sdk_dynamodb::Client,
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    table: String,
}

impl Connections {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        ec2: aws_sdk_ec2::Client,
        ssm: aws_sdk_ssm::Client,
        table: &str,
    ) -> Self {
        Self { dynamodb, ec2, ssm, table: table.to_owned() }
    }

    /// One cheap call per service, all at once, each one the function's role
    /// may already make and none of them reading anything that matters: the
    /// answer, even an error, leaves a pooled connection behind. Best effort.
    pub async fn warm(&self) {
        let dynamodb = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S("WARMUP".into()))
            .key(SORT_KEY, AttributeValue::S("WARMUP".into()))
            .send();
        let ec2 = self
            .ec2
            .describe_instances()
            .filters(Filter::builder().name("instance-id").values("i-00000000000000000").build())
            .max_results(5)
            .send();
        let ssm = self.ssm.list_commands().max_results(1).send();
        let warmed = tokio::time::timeout(WARM_TIMEOUT, async { tokio::join!(dynamodb, ec2, ssm) }).await;
        match warmed {
            Ok((d, e, s)) => {
                let failed = [
                    d.err().map(|e| super::describe("GetItem", &e)),
                    e.err().map(|e| super::describe("DescribeInstances", &e)),
                    s.err().map(|e| super::describe("ListCommands", &e)),
                ];
                for text in failed.into_iter().flatten() {
                    tracing::debug!(error = %text, "warm-up call failed; its connection may still be open");
                }
            }
            Err(_) => tracing::debug!("warm-up took over {WARM_TIMEOUT:?}; left to the first invocation"),
        }
    }
}
