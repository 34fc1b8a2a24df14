//! What the use cases read through the executor (the only domain code that
//! calls a port): releases, the fleet's record, its instances and the
//! targets of a deploy to named instances.

use super::*;
use crate::domain::model::fleet::FleetInstance;
use crate::domain::model::outcome::PingStatus;

impl<P: Ports> Executor<'_, P> {
    pub async fn release(&self, id: &ReleaseId) -> Result<Release, ControlError> {
        record_release_id(id);
        self.store.release(self.fleet(), id).await?.ok_or_else(|| ControlError::ReleaseNotFound(id.clone()))
    }

    pub async fn find_release(&self, id: &ReleaseId) -> Result<Option<Release>, ControlError> {
        Ok(self.store.release(self.fleet(), id).await?)
    }

    pub async fn releases(&self, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, ControlError> {
        Ok(self.store.releases(self.fleet(), limit, after).await?)
    }

    pub async fn fleet_state(&self) -> Result<FleetState, ControlError> {
        Ok(self.store.fleet_state(self.fleet()).await?)
    }

    pub async fn last_succeeded_before(&self, id: &ReleaseId) -> Result<Option<Release>, ControlError> {
        Ok(self.store.last_succeeded_before(self.fleet(), id).await?)
    }

    /// The release recorded as replacing `id`, if any.
    pub async fn replaced_by(&self, id: &ReleaseId) -> Result<Option<ReleaseId>, ControlError> {
        Ok(self.store.replaced_by(self.fleet(), id).await?)
    }

    /// The fleet's running instances and, of `ids` when all are among them,
    /// where each stands as a managed node (SSM is asked about the fleet's
    /// own instances only): what a targeted deploy is checked against.
    pub async fn targets(&self, ids: &[String]) -> Result<(Vec<String>, HashMap<String, PingStatus>), ControlError> {
        let running = self.inventory.running_instances(&self.settings.target, None).await?;
        let members = ids.iter().all(|id| running.contains(id));
        let nodes = if members { self.runner.managed_nodes(ids).await? } else { Default::default() };
        Ok((running, nodes))
    }

    pub async fn fleet_instances(&self) -> Result<Vec<FleetInstance>, ControlError> {
        Ok(self.inventory.fleet_instances(&self.settings.target).await?)
    }
}
