//! A fleet: what it should run, who holds it, and the machines carrying its tag.

use super::flakeref::FlakeAllowlist;
use super::ids::{FleetName, ReleaseId, TargetTag};
use super::rollout::RolloutPolicy;
use super::time::{rfc3339, Timestamp};
use serde::Serialize;
use std::time::Duration;

/// One fleet's configuration: what it is, how releases roll out on it, and
/// what the reconcile keeps it at.
#[derive(Clone, Debug)]
pub struct FleetSettings {
    pub name: FleetName,
    pub target: TargetTag,
    /// How long a release may hold the fleet before it is judged failed.
    pub deploy_timeout: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    pub rollout: RolloutPolicy,
    /// What the reconcile keeps the fleet at.
    pub spec: FleetSpec,
    /// How long an invocation that recorded a release (or claimed a wave) is
    /// given to send its commands before another one takes over: longer than
    /// the function's timeout, so a live sender is never doubled.
    pub takeover_after: Duration,
    /// The only flakes deploys, rollbacks and repairs may put on the fleet.
    pub allowed_flakes: FlakeAllowlist,
    /// How long a failed release waits for its applies still running before
    /// it ends anyway (naming those hosts) and its rollback goes out.
    pub settle_limit: Duration,
}

/// The release that holds the fleet: only one at a time, from its admission
/// until it is final. It never lapses by the clock: a release past its
/// deadline still has commands that may be running on hosts, so it is
/// settled first (by the next reconcile, or by a deploy that finds it there)
/// and only its settlement frees the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub release_id: ReleaseId,
    /// The holding release's deadline.
    #[serde(serialize_with = "rfc3339")]
    pub deadline: Timestamp,
}

impl Lease {
    /// Past its release's deadline: whoever comes next settles the release.
    pub fn overdue(&self, now: Timestamp) -> bool {
        now >= self.deadline
    }
}

/// Why the fleet stopped acting on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Halt {
    pub release_id: ReleaseId,
    pub reason: String,
}

/// The fleet's record: what it should run, what last ran well, who holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetState {
    pub desired_release: Option<ReleaseId>,
    pub last_good_release: Option<ReleaseId>,
    pub lease: Option<Lease>,
    /// Set when a rollback failed (or there was nothing to roll back to):
    /// no automatic action until an operator deploys or rolls back.
    pub halted: Option<Halt>,
}

/// What EC2 should launch for the fleet; from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSpec {
    /// Instances the fleet should have; 0 leaves capacity alone (drift is still repaired).
    pub desired_capacity: usize,
    pub instance_type: String,
    /// Launches are spread across these, slot by slot.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub instance_profile: String,
    pub image: ImageSelector,
    pub root_volume_gib: i32,
}

/// The image launches use, as DescribeImages tells it: its root device (from
/// the image, never assumed: `/dev/xvda` on some images, `/dev/sda1` on others)
/// and the size of the snapshot behind it, below which EC2 refuses a root volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineImage {
    pub id: String,
    pub root_device: String,
    pub root_snapshot_gib: Option<i32>,
}

/// The newest image matching all three wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSelector {
    pub owner: String,
    pub name_pattern: String,
    pub architecture: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    /// Stopping, stopped, shutting down, terminated: not part of the fleet's count.
    Gone,
}

/// One instance carrying the fleet tag, as EC2 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetInstance {
    pub id: String,
    pub state: InstanceState,
    /// Its `flakefleet:slot` tag: which of the desired instances it is.
    pub slot: Option<usize>,
    /// Its `flakefleet:release` tag: the release it last applied successfully.
    pub release: Option<ReleaseId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_overdue_from_its_deadline_on() {
        let id = ReleaseId::generate(Timestamp::from_millis(1), 1);
        let lease = Lease { release_id: id, deadline: Timestamp::from_millis(10) };
        assert!(!lease.overdue(Timestamp::from_millis(9)));
        assert!(lease.overdue(Timestamp::from_millis(10)));
    }
}
