//! The fleet's instances as EC2 reports them.

use crate::domain::fleet::TargetTag;
use crate::domain::ports::{FleetInventory, InventoryError};
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use tracing::instrument;

#[derive(Clone, Debug)]
pub struct Ec2FleetInventory {
    client: Client,
}

impl Ec2FleetInventory {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl FleetInventory for Ec2FleetInventory {
    #[instrument(skip(self))]
    async fn has_running_instances(&self, tag: &TargetTag) -> Result<bool, InventoryError> {
        // One small page answers the question whatever the fleet's size.
        let out = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tag.key))
                    .values(&tag.value)
                    .build(),
            )
            .filters(Filter::builder().name("instance-state-name").values("running").build())
            .max_results(5)
            .send()
            .await
            .map_err(|e| {
                let text = super::describe("DescribeInstances", &e);
                tracing::error!(error = %text, "EC2 call failed");
                InventoryError::Unavailable(text)
            })?;
        Ok(out.reservations().iter().any(|r| !r.instances().is_empty()))
    }
}
