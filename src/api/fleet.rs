//! The fleet as `GET /fleet` shows it, and what a reconcile did.

use super::release::{Paused, Release, ReleaseKind, Unreachable};
use crate::domain::planner::Outcome as DomainOutcome;
use crate::domain::usecases::{FleetStatus, ReconcileReport};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Fleet {
    pub fleet: String,
    /// The EC2 tag that marks the fleet's instances.
    pub target_tag: TargetTag,
    pub desired_release: Option<Release>,
    pub last_good_release_id: Option<String>,
    /// The release holding the fleet, its deadline, and whether that passed.
    pub lease: Option<Lease>,
    pub rollout: Option<RolloutProgress>,
    pub halted: Option<Halt>,
    /// Each pending or running instance with the release it last applied.
    pub instances: Vec<InstanceRelease>,
    pub unreachable: Vec<Unreachable>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct TargetTag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Lease {
    pub release_id: String,
    pub deadline: String,
    pub overdue: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct RolloutProgress {
    pub release_id: String,
    pub kind: ReleaseKind,
    /// 1-based; 1 is the canary. Zero before the first wave is sent.
    pub wave: usize,
    pub targeted: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub unreachable: usize,
    pub pending: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Halt {
    pub release_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct InstanceRelease {
    pub instance_id: String,
    pub release_id: Option<String>,
    pub flakeref: Option<String>,
}

/// What one reconcile pass did (`POST /reconcile`, the schedule's invoke).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Reconcile {
    pub fleet: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    pub launched: Vec<String>,
    pub reapplied: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Idle,
    Halted,
    Dispatched,
    Waiting,
    WaveStarted,
    RolledBack,
    Finished,
    Repaired,
    Paused,
}

impl From<&FleetStatus> for Fleet {
    fn from(f: &FleetStatus) -> Self {
        Self {
            fleet: f.fleet.to_string(),
            target_tag: TargetTag { key: f.target_tag.key.clone(), value: f.target_tag.value.clone() },
            desired_release: f.desired_release.as_ref().map(Into::into),
            last_good_release_id: f.last_good_release_id.as_ref().map(ToString::to_string),
            lease: f.lease.as_ref().map(|l| Lease {
                release_id: l.lease.release_id.to_string(),
                deadline: l.lease.deadline.to_rfc3339(),
                overdue: l.overdue,
            }),
            rollout: f.rollout.as_ref().map(|r| RolloutProgress {
                release_id: r.release_id.to_string(),
                kind: r.kind.into(),
                wave: r.wave,
                targeted: r.targeted,
                succeeded: r.succeeded,
                failed: r.failed,
                unreachable: r.unreachable,
                pending: r.pending,
                stopping: r.stopping.clone(),
                paused: r.paused.as_ref().map(Into::into),
            }),
            halted: f.halted.as_ref().map(|h| Halt { release_id: h.release_id.to_string(), reason: h.reason.clone() }),
            instances: f
                .instances
                .iter()
                .map(|i| InstanceRelease {
                    instance_id: i.instance_id.clone(),
                    release_id: i.release_id.as_ref().map(ToString::to_string),
                    flakeref: i.flakeref.as_ref().map(ToString::to_string),
                })
                .collect(),
            unreachable: f.unreachable.iter().map(Into::into).collect(),
        }
    }
}

impl From<&ReconcileReport> for Reconcile {
    fn from(r: &ReconcileReport) -> Self {
        Self {
            fleet: r.fleet.to_string(),
            outcome: r.outcome.into(),
            release: r.release.as_ref().map(Into::into),
            launched: r.launched.clone(),
            reapplied: r.reapplied.clone(),
            skipped: r.skipped.clone(),
        }
    }
}

impl From<DomainOutcome> for Outcome {
    fn from(o: DomainOutcome) -> Self {
        use DomainOutcome as O;
        match o {
            O::Idle => Self::Idle,
            O::Halted => Self::Halted,
            O::Dispatched => Self::Dispatched,
            O::Waiting => Self::Waiting,
            O::WaveStarted => Self::WaveStarted,
            O::RolledBack => Self::RolledBack,
            O::Finished => Self::Finished,
            O::Repaired => Self::Repaired,
            O::Paused => Self::Paused,
        }
    }
}
