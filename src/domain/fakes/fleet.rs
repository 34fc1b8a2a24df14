//! The fleet's instances in memory: launches add to it, tags are kept.

use super::*;

/// A fleet of instances in memory: launches add to it, tags are kept.
#[derive(Default)]
pub struct MemoryFleet {
    pub instances: Mutex<Vec<FleetInstance>>,
    pub launches: Mutex<Vec<LaunchRequest>>,
    pub image: Option<MachineImage>,
    pub yields: Yields,
}

impl MemoryFleet {
    pub fn of(count: usize) -> Self {
        let instances = (0..count)
            .map(|i| FleetInstance {
                id: format!("i-{i:02}"),
                state: InstanceState::Running,
                slot: Some(i),
                release: None,
            })
            .collect();
        let image =
            MachineImage { id: "ami-nixos".into(), root_device: "/dev/xvda".into(), root_snapshot_gib: Some(8) };
        Self {
            instances: Mutex::new(instances),
            launches: Mutex::default(),
            image: Some(image),
            yields: Yields::default(),
        }
    }
}

impl FleetInventory for MemoryFleet {
    async fn running_instances(&self, _: &TargetTag, limit: Option<usize>) -> Result<Vec<String>, InventoryError> {
        self.yields.point().await;
        let instances = self.instances.lock().unwrap();
        let running = instances.iter().filter(|i| i.state == InstanceState::Running).map(|i| i.id.clone());
        Ok(running.take(limit.unwrap_or(usize::MAX)).collect())
    }

    async fn fleet_instances(&self, _: &TargetTag) -> Result<Vec<FleetInstance>, InventoryError> {
        self.yields.point().await;
        Ok(self.instances.lock().unwrap().clone())
    }

    async fn newest_image(&self, _: &ImageSelector) -> Result<Option<MachineImage>, InventoryError> {
        self.yields.point().await;
        Ok(self.image.clone())
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<String, InventoryError> {
        self.yields.point().await;
        let mut instances = self.instances.lock().unwrap();
        let id = format!("i-new{:02}", instances.len());
        instances.push(FleetInstance {
            id: id.clone(),
            state: InstanceState::Running,
            slot: Some(request.slot),
            release: None,
        });
        self.launches.lock().unwrap().push(request.clone());
        Ok(id)
    }

    async fn tag_release(&self, instance_ids: &[String], release: &ReleaseId) -> Result<(), InventoryError> {
        self.yields.point().await;
        for instance in self.instances.lock().unwrap().iter_mut().filter(|i| instance_ids.contains(&i.id)) {
            instance.release = Some(release.clone());
        }
        Ok(())
    }

    async fn untag_release(&self, instance_ids: &[String]) -> Result<(), InventoryError> {
        self.yields.point().await;
        for instance in self.instances.lock().unwrap().iter_mut().filter(|i| instance_ids.contains(&i.id)) {
            instance.release = None;
        }
        Ok(())
    }
}
