//! The read models: the fleet as `GET /fleet` shows it, and release lookups.

use super::FleetController;
use crate::domain::error::ControlError;
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::fleet::{FleetState, Halt, InstanceState, Lease};
use crate::domain::model::ids::{FleetName, ReleaseId, TargetTag};
use crate::domain::model::outcome::Unreachable;
use crate::domain::model::release::{Paused, Release, ReleaseKind};
use crate::domain::model::store::ReleasePage;
use crate::domain::model::time::Timestamp;
use crate::domain::planner::lease;
use crate::domain::ports::Ports;
use serde::Serialize;
use std::collections::HashMap;

/// How the rollout holding the fleet stands.
#[derive(Clone, Debug, Serialize)]
pub struct RolloutProgress {
    pub release_id: ReleaseId,
    pub kind: ReleaseKind,
    /// 1-based; 1 is the canary. Zero before the first wave is sent.
    pub wave: usize,
    pub targeted: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Passed over (not Online managed nodes) or never delivered to.
    pub unreachable: usize,
    pub pending: usize,
    /// Set while the release, having failed, awaits its applies still running
    /// before it ends: why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping: Option<String>,
    /// Set while the rollout is paused: since when, by whom, and whether
    /// flakefleet paused it before a wave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
}

impl RolloutProgress {
    fn of(release: &Release) -> Self {
        let targeted = match &release.rollout {
            Some(r) => r.targeted().count(),
            None => release.instances.len(),
        };
        let succeeded = release.instances.iter().filter(|i| i.converged()).count();
        let failed = release.instances.iter().filter(|i| i.failed()).count();
        let undelivered = release.instances.iter().filter(|i| i.unreachable()).count();
        Self {
            release_id: release.id.clone(),
            kind: release.kind,
            wave: release.rollout.as_ref().map_or(usize::from(release.command_id.is_some()), |r| r.waves.len()),
            targeted,
            succeeded,
            failed,
            unreachable: release.unreachable_count(),
            pending: targeted.saturating_sub(succeeded + failed + undelivered),
            stopping: release.stopping.as_ref().filter(|_| !release.status.is_final()).map(|s| s.reason.clone()),
            paused: release.control.as_ref().and_then(|c| c.paused.clone()).filter(|_| !release.status.is_final()),
        }
    }
}

/// The fleet as `GET /fleet` and `{"action": "status"}` show it.
#[derive(Clone, Debug, Serialize)]
pub struct FleetStatus {
    pub fleet: FleetName,
    pub target_tag: TargetTag,
    pub desired_release: Option<Release>,
    pub last_good_release_id: Option<ReleaseId>,
    /// The lease as stored: the release holding the fleet until it is final,
    /// its deadline, and whether that passed (the next reconcile, or a
    /// deploy, settles it then).
    pub lease: Option<LeaseStatus>,
    pub rollout: Option<RolloutProgress>,
    pub halted: Option<Halt>,
    /// Each pending or running instance with the release it last applied
    /// successfully (its `flakefleet:release` tag).
    pub instances: Vec<InstanceRelease>,
    /// The instances the holding (else the desired) release passed over as
    /// not Online managed nodes; the drift repair catches them up.
    pub unreachable: Vec<Unreachable>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseStatus {
    #[serde(flatten)]
    pub lease: Lease,
    pub overdue: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRelease {
    pub instance_id: String,
    /// None: no recent release reached this instance successfully.
    pub release_id: Option<ReleaseId>,
    pub flakeref: Option<Flakeref>,
}

/// One release as `GET /releases/{id}` shows it, with the rollback that
/// replaced it, read from that rollback's `replaces`.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseView {
    #[serde(flatten)]
    pub release: Release,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<ReleaseId>,
}

impl<P: Ports> FleetController<P> {
    pub async fn release(&self, id: &ReleaseId) -> Result<Release, ControlError> {
        self.executor().release(id).await
    }

    pub async fn release_view(&self, id: &ReleaseId) -> Result<ReleaseView, ControlError> {
        let release = self.release(id).await?;
        // Only a release that was the fleet's desired one can be replaced,
        // and only once it is over (a rollback needs the fleet's lease).
        let replaceable = lease::becomes_desired(&release) && release.status.is_final();
        let rolled_back_by = match replaceable {
            true => self.executor().replaced_by(id).await?,
            false => None,
        };
        Ok(ReleaseView { release, rolled_back_by })
    }

    pub async fn releases(&self, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, ControlError> {
        self.executor().releases(limit, after).await
    }

    pub async fn status(&self, now: Timestamp) -> Result<FleetStatus, ControlError> {
        let executor = self.executor();
        let FleetState { desired_release, last_good_release, lease, halted } = executor.fleet_state().await?;
        let desired_release = match desired_release {
            Some(id) => executor.find_release(&id).await?,
            None => None,
        };
        let active = match (&lease, &desired_release) {
            (Some(l), Some(d)) if l.release_id == d.id => Some(d.clone()),
            (Some(l), _) => executor.find_release(&l.release_id).await?,
            _ => None,
        };
        let mut instances: Vec<InstanceRelease> = Vec::new();
        let mut flakerefs: HashMap<ReleaseId, Option<Flakeref>> = HashMap::new();
        for instance in executor.fleet_instances().await? {
            if instance.state == InstanceState::Gone {
                continue;
            }
            let flakeref = match &instance.release {
                Some(id) if !flakerefs.contains_key(id) => {
                    let flakeref = executor.find_release(id).await?.map(|r| r.flakeref);
                    flakerefs.insert(id.clone(), flakeref.clone());
                    flakeref
                }
                Some(id) => flakerefs[id].clone(),
                None => None,
            };
            instances.push(InstanceRelease { instance_id: instance.id, release_id: instance.release, flakeref });
        }
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let unreachable =
            active.as_ref().or(desired_release.as_ref()).map(|r| r.unreachable.clone()).unwrap_or_default();
        Ok(FleetStatus {
            fleet: self.settings.name.clone(),
            target_tag: self.settings.target.clone(),
            desired_release,
            last_good_release_id: last_good_release,
            rollout: active.as_ref().map(RolloutProgress::of),
            lease: lease.map(|lease| LeaseStatus { overdue: lease.overdue(now), lease }),
            halted,
            instances,
            unreachable,
        })
    }
}
