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
    async fn running_instances(&self, tag: &TargetTag, limit: Option<usize>) -> Result<Vec<String>, InventoryError> {
        let request = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tag.key))
                    .values(&tag.value)
                    .build(),
            )
            .filters(Filter::builder().name("instance-state-name").values("running").build());
        let failed = |e: &dyn std::error::Error| {
            let text = super::describe("DescribeInstances", &e);
            tracing::error!(error = %text, "EC2 call failed");
            InventoryError::Unavailable(text)
        };
        let ids_of = |out: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput| -> Vec<String> {
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        match limit {
            // One page answers "a few" whatever the fleet's size (MaxResults is 5 to 1,000).
            Some(limit) => {
                let out = request
                    .max_results(limit.clamp(5, 1000) as i32)
                    .send()
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(ids_of(&out))
            }
            None => {
                let mut ids = Vec::new();
                let mut pages = request.max_results(1000).into_paginator().send();
                while let Some(page) = pages.next().await {
                    ids.extend(ids_of(&page.map_err(|e| failed(&e))?));
                }
                Ok(ids)
            }
        }
    }
}
