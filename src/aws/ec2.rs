//! The fleet's instances as EC2 reports them.

use crate::domain::model::command::LaunchRequest;
use crate::domain::model::fleet::{FleetInstance, ImageSelector, InstanceState, MachineImage};
use crate::domain::model::ids::ReleaseId;
use crate::domain::model::ids::TargetTag;
use crate::domain::ports::{FleetInventory, InventoryError};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag, TagSpecification,
    VolumeType,
};
use aws_sdk_ec2::Client;
use base64::Engine;
use tracing::instrument;

/// Which of the fleet's desired instances an instance is.
pub const SLOT_TAG: &str = "flakefleet:slot";
/// The release an instance last applied successfully.
pub const RELEASE_TAG: &str = "flakefleet:release";
/// The fleet an instance was launched for.
pub const FLEET_TAG: &str = "flakefleet:fleet";

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
            .filters(Filter::builder().name(format!("tag:{}", tag.key)).values(&tag.value).build())
            .filters(Filter::builder().name("instance-state-name").values("running").build());
        let ids_of = |out: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput| -> Vec<String> {
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        // EC2 filters after paging: a page may be short, even empty, while
        // more remain. Only a null NextToken ends the listing; with a limit,
        // so does having enough (one page, for a fleet where none is short).
        let page_size = limit.map_or(1000, |n| n.clamp(5, 1000)) as i32;
        let mut pages = request.max_results(page_size).into_paginator().send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            ids.extend(ids_of(&page.map_err(|e| unavailable("DescribeInstances", &e))?));
            if limit.is_some_and(|n| ids.len() >= n) {
                break;
            }
        }
        Ok(ids)
    }

    #[instrument(skip(self))]
    async fn fleet_instances(&self, tag: &TargetTag) -> Result<Vec<FleetInstance>, InventoryError> {
        let mut pages = self
            .client
            .describe_instances()
            .filters(Filter::builder().name(format!("tag:{}", tag.key)).values(&tag.value).build())
            .max_results(1000)
            .into_paginator()
            .send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("DescribeInstances", &e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let tag_value =
                    |key: &str| instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value());
                let state = match instance.state().and_then(|s| s.name()).map(|n| n.as_str()) {
                    Some("pending") => InstanceState::Pending,
                    Some("running") => InstanceState::Running,
                    _ => InstanceState::Gone,
                };
                instances.push(FleetInstance {
                    id: instance.instance_id().unwrap_or_default().to_owned(),
                    state,
                    slot: tag_value(SLOT_TAG).and_then(|v| v.parse().ok()),
                    release: tag_value(RELEASE_TAG).and_then(|v| ReleaseId::parse(v).ok()),
                });
            }
        }
        Ok(instances)
    }

    #[instrument(skip(self))]
    async fn newest_image(&self, image: &ImageSelector) -> Result<Option<MachineImage>, InventoryError> {
        let out = self
            .client
            .describe_images()
            .owners(&image.owner)
            .filters(Filter::builder().name("name").values(&image.name_pattern).build())
            .filters(Filter::builder().name("architecture").values(&image.architecture).build())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| unavailable("DescribeImages", &e))?;
        let newest =
            out.images().iter().max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())));
        Ok(newest.and_then(|i| {
            let root_device = i.root_device_name()?.to_owned();
            let root = i.block_device_mappings().iter().find(|m| m.device_name() == Some(root_device.as_str()));
            Some(MachineImage {
                id: i.image_id()?.to_owned(),
                root_snapshot_gib: root.and_then(|m| m.ebs()).and_then(|e| e.volume_size()),
                root_device,
            })
        }))
    }

    #[instrument(skip_all, fields(slot = request.slot, client_token = %request.client_token))]
    async fn launch(&self, request: &LaunchRequest) -> Result<String, InventoryError> {
        let mut tags = vec![
            Tag::builder().key(&request.tag.key).value(&request.tag.value).build(),
            Tag::builder().key(FLEET_TAG).value(request.fleet.as_str()).build(),
            Tag::builder().key(SLOT_TAG).value(request.slot.to_string()).build(),
        ];
        if request.tag.key != "Name" {
            tags.push(Tag::builder().key("Name").value(format!("{}-{}", request.fleet, request.slot)).build());
        }
        let tagged = |kind| TagSpecification::builder().resource_type(kind).set_tags(Some(tags.clone())).build();
        let spec = &request.spec;
        let result = self
            .client
            .run_instances()
            .image_id(&request.image.id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(&request.client_token)
            .set_subnet_id(request.subnet.clone())
            .set_security_group_ids((!spec.security_groups.is_empty()).then(|| spec.security_groups.clone()))
            .iam_instance_profile(IamInstanceProfileSpecification::builder().name(&spec.instance_profile).build())
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    // The image's own root device: a mapping for any other name
                    // would add an empty volume and leave the root as the image made it.
                    .device_name(&request.image.root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(request.root_volume_gib)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            // The SDK sends user data as given: EC2 wants it base64-encoded.
            .user_data(base64::engine::general_purpose::STANDARD.encode(&request.user_data))
            .tag_specifications(tagged(ResourceType::Instance))
            .tag_specifications(tagged(ResourceType::Volume))
            .send()
            .await;
        match result {
            Ok(out) => out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .map(str::to_owned)
                .ok_or_else(|| InventoryError::Unavailable("RunInstances answered without an instance".into())),
            Err(e) => {
                let text = super::logged_failure("EC2", "RunInstances", &e);
                // Refused or not, the launch is recorded as failed and retried
                // with the same client token by the next reconcile.
                Err(InventoryError::Unavailable(text))
            }
        }
    }

    #[instrument(skip(self, instance_ids), fields(count = instance_ids.len()))]
    async fn tag_release(&self, instance_ids: &[String], release: &ReleaseId) -> Result<(), InventoryError> {
        for chunk in instance_ids.chunks(1000) {
            self.client
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .tags(Tag::builder().key(RELEASE_TAG).value(release.as_str()).build())
                .send()
                .await
                .map_err(|e| unavailable("CreateTags", &e))?;
        }
        Ok(())
    }

    async fn untag_release(&self, instance_ids: &[String]) -> Result<(), InventoryError> {
        for chunk in instance_ids.chunks(1000) {
            // A tag named without a value is deleted whatever its value.
            self.client
                .delete_tags()
                .set_resources(Some(chunk.to_vec()))
                .tags(Tag::builder().key(RELEASE_TAG).build())
                .send()
                .await
                .map_err(|e| unavailable("DeleteTags", &e))?;
        }
        Ok(())
    }
}

fn unavailable<E: std::error::Error>(operation: &str, e: &E) -> InventoryError {
    InventoryError::Unavailable(crate::aws::logged_failure("EC2", operation, e))
}
