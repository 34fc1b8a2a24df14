//! Releases: what was asked for, when, and how it went on each instance.

use super::flakeref::Flakeref;
use super::ids::{FleetName, Reason, ReleaseId, Revision, RunUrl};
use super::outcome::{InstanceOutcome, InvocationState, Unreachable};
use super::rollout::{Claimed, Rollout};
use super::time::{rfc3339, Timestamp};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    Deploy,
    Rollback,
    /// The reconcile putting the fleet's good release back where it is missing or drifted.
    Repair,
    /// A deploy to named instances only: never the fleet's desired or last
    /// good release, and left alone by the drift repair while it is the
    /// newest release on its hosts; the next fleet-wide deploy supersedes it.
    Targeted,
}

impl ReleaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::Repair => "repair",
            Self::Targeted => "targeted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "deploy" => Some(Self::Deploy),
            "rollback" => Some(Self::Rollback),
            "repair" => Some(Self::Repair),
            "targeted" => Some(Self::Targeted),
            _ => None,
        }
    }
}

/// Where a release stands. `pending` means recorded but the apply command is
/// not yet confirmed sent; every status after `in_progress` is final:
/// `rolled_back` (failed, and an automatic rollback took over the fleet) and
/// `halted` (failed with nothing safe to go back to: the fleet waits for an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    NoInstances,
    RolledBack,
    Halted,
}

impl ReleaseStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::NoInstances,
        Self::RolledBack,
        Self::Halted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NoInstances => "no_instances",
            Self::RolledBack => "rolled_back",
            Self::Halted => "halted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }
}

/// One launch a repair asked EC2 for, as recorded on the repair release.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    pub slot: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failed release settling its invocations before it ends, so that no
/// rollback (and no next release) reaches a host while the bad apply may still
/// run there. Invocations not yet started are cancelled; running ones are
/// awaited, up to the fleet's settle limit, since killing an activation
/// halfway can leave a host half-switched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stopping {
    /// Why the release failed, as judged when it started stopping.
    pub reason: String,
    /// When it started stopping (ms since the epoch).
    pub since_ms: u64,
    /// Instances whose pending or delayed invocation was asked to cancel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<String>,
    /// Instances whose invocation was still unfinished at the settle limit:
    /// the release ended (and any rollback went to them) without knowing how
    /// their apply ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsettled: Vec<String>,
}

/// An operator's hold on a rollout: whether it is paused, whether it was
/// aborted, and every action taken on it (who, when).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Control {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Time spent paused before the current pause (ms): with it, the pauses
    /// of one release never add up to more than the longest pause allowed.
    #[serde(default)]
    pub paused_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<OperatorAction>,
}

/// A paused rollout: no next wave until it is resumed. Its deadline is moved
/// out by what is left of the longest pause while it is paused, and set to
/// `deadline_ms` plus the time it was paused once it is resumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Paused {
    pub since_ms: u64,
    pub by: String,
    /// The deadline before this pause.
    pub deadline_ms: u64,
    /// Paused by flakefleet itself before a wave (FLAKEFLEET_PAUSE_BEFORE_WAVES):
    /// resuming it is the promote.
    #[serde(default)]
    pub automatic: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Aborted {
    pub at_ms: u64,
    pub by: String,
    /// Roll back what the release reached, whatever FLAKEFLEET_AUTO_ROLLBACK says.
    pub rollback: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Pause,
    Resume,
    Abort,
    /// flakefleet paused the rollout before its next wave.
    AutoPause,
}

impl ControlAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::AutoPause => "auto_pause",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OperatorAction {
    pub action: ControlAction,
    pub by: String,
    pub at_ms: u64,
    /// Waves started when it was taken: a resume at `waves` promotes the
    /// rollout past the automatic pause before wave `waves`.
    pub waves: usize,
}

/// Who asked for a release, from where and why: recorded at admission, never changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The authenticated caller: an IAM principal's ARN, a GitHub OIDC
    /// token's subject and repository, "direct invoke", or flakefleet itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_url: Option<RunUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// Who flakefleet's own releases are requested by.
pub const BY_FLAKEFLEET: &str = "flakefleet";

/// One request to put a flakeref on the fleet. Its identity (id, fleet,
/// flakeref, kind, creation time) never changes once recorded; only its
/// progress does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub id: ReleaseId,
    pub fleet: FleetName,
    pub flakeref: Flakeref,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    pub kind: ReleaseKind,
    /// For a rollback: the release it puts back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<ReleaseId>,
    /// For a rollback: the fleet's desired release it replaced (the bad
    /// release, for an automatic rollback). That release's `rolled_back_by`
    /// is read from this link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<ReleaseId>,
    #[serde(flatten)]
    pub origin: Origin,
    pub status: ReleaseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub command_id: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: Timestamp,
    /// When the fleet's lease taken for this release runs out.
    #[serde(serialize_with = "rfc3339")]
    pub deadline: Timestamp,
    pub instances: Vec<InstanceOutcome>,
    /// The waves of a staged rollout; None when the command targets the fleet tag at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// For a repair: the instances it asked EC2 to launch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<Launch>,
    /// Instances this release passed over: not Online managed nodes when
    /// their turn came (invocations SSM could not deliver are in `instances`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<Unreachable>,
    /// While pending: who may send the first command (the admitting
    /// invocation, or one that took over after it must have died).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claimed>,
    /// Set once the release failed while some of its invocations were unfinished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping: Option<Stopping>,
    /// Pause, resume and abort: set once an operator (or the automatic pause) acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// Rollback alarms that were in ALARM when the deploy was asked for with
    /// `ignore_alarms`: recorded, and never a reason to stop this release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_alarms: Vec<String>,
    /// The status its last notice announced (`planner::notice`): a write
    /// that changes the status from it carries a notice.
    #[serde(skip)]
    pub noticed: Option<ReleaseStatus>,
    /// Raised by every write: the fencing number that lets only one writer move
    /// a release on from what it read.
    pub version: u64,
}

impl Release {
    /// What a rollback may put back: a release that succeeded fleet-wide, a
    /// deploy or a rollback. A targeted release never held the whole fleet,
    /// and a repair only put back an earlier one; one that was later replaced
    /// or rolled back keeps its status, and so stays a target.
    pub fn is_rollback_target(&self) -> bool {
        self.status == ReleaseStatus::Succeeded && matches!(self.kind, ReleaseKind::Deploy | ReleaseKind::Rollback)
    }

    /// The SSM `Comment` that ties a command to its release (at most 100 characters),
    /// so a command sent before a crash can be found again.
    pub fn command_comment(&self) -> String {
        format!("flakefleet {} release {}", self.fleet, self.id)
    }

    /// The comment of one batch of one wave of a staged rollout.
    pub fn batch_comment(&self, wave: usize, batch: usize) -> String {
        format!("flakefleet {} release {} wave {wave} batch {batch}", self.fleet, self.id)
    }

    /// The comment of one batch of a wave's end-of-bake health checks.
    pub fn check_comment(&self, wave: usize, batch: usize) -> String {
        format!("flakefleet {} release {} wave {wave} check {batch}", self.fleet, self.id)
    }

    /// The command (batch) that reached this instance, as recorded.
    pub fn command_for(&self, instance_id: &str) -> Option<&str> {
        let Some(rollout) = &self.rollout else {
            return self.command_id.as_deref();
        };
        rollout.waves.iter().find_map(|wave| {
            let batch = wave.batches().position(|b| b.iter().any(|id| id == instance_id))?;
            wave.command_ids.get(batch).map(String::as_str)
        })
    }

    /// The instances whose invocation of this release has not ended, with
    /// its state when one was reported: every instance of a sent batch
    /// without a finished outcome (one not listed yet may well be running).
    pub fn unfinished(&self) -> Vec<(&str, Option<&InvocationState>)> {
        let state = |id: &str| self.instances.iter().find(|i| i.instance_id == id);
        match &self.rollout {
            Some(rollout) => rollout
                .waves
                .iter()
                .flat_map(|w| w.batches().zip(&w.command_ids).flat_map(|(batch, _)| batch.iter()))
                .filter_map(|id| match state(id) {
                    Some(o) if o.is_finished() => None,
                    o => Some((id.as_str(), o.map(|o| &o.status))),
                })
                .collect(),
            None => self
                .instances
                .iter()
                .filter(|i| !i.is_finished())
                .map(|i| (i.instance_id.as_str(), Some(&i.status)))
                .collect(),
        }
    }

    /// Every instance this release's commands were sent to, as far as
    /// recorded: the hosts of batches sent (never those of a batch not sent),
    /// less those SSM says it never delivered to.
    pub fn reached_instances(&self) -> Vec<String> {
        let undelivered: Vec<&str> =
            self.instances.iter().filter(|i| i.unreachable()).map(|i| i.instance_id.as_str()).collect();
        let mut ids: Vec<String> = match &self.rollout {
            Some(rollout) => rollout.waves.iter().flat_map(|w| w.sent_instances()).cloned().collect(),
            None => self.instances.iter().map(|i| i.instance_id.clone()).collect(),
        };
        // SSM never delivered the command to these: they still run what they ran.
        ids.retain(|id| !undelivered.contains(&id.as_str()));
        ids.sort();
        ids.dedup();
        ids
    }

    /// Hosts this release could not reach: passed over before a send, or
    /// whose invocation SSM could not deliver.
    pub fn unreachable_count(&self) -> usize {
        self.unreachable.len() + self.instances.iter().filter(|i| i.unreachable()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_fits_ssm_limit() {
        let fleet = FleetName::parse(&"f".repeat(32)).unwrap();
        let id = ReleaseId::generate(Timestamp::from_millis(u64::MAX), u128::MAX);
        let comment = format!("flakefleet {fleet} release {id} wave 9999 batch 9999");
        assert!(comment.len() <= 100, "{}", comment.len());
    }

    #[test]
    fn status_names_round_trip() {
        for s in ReleaseStatus::ALL {
            assert_eq!(ReleaseStatus::parse(s.as_str()), Some(s));
        }
    }
}
