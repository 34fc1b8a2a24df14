//! A release as the API shows it: its identity, its progress and its
//! rollout, with ids, flakerefs and times as strings. Mapped from the
//! domain's `Release` in one place (`From<&domain::Release>`).

use crate::domain::model::outcome as domain_outcome;
use crate::domain::model::release as domain;
use crate::domain::model::rollout as domain_rollout;
use crate::domain::planner;
use serde::{Deserialize, Serialize};

/// One release: `POST /releases`, `POST /rollback`, `GET /releases/{id}`
/// and the control routes answer it whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Release {
    #[serde(flatten)]
    pub head: ReleaseHead,
    /// What each host reported, sorted by instance id.
    pub instances: Vec<InstanceOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// `GET /releases/{id}` only: the automatic rollback that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<String>,
}

/// What every view of a release has, whole or listed: what it is, where
/// it came from, where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ReleaseHead {
    /// A ULID: sorts by creation time.
    pub id: String,
    pub fleet: String,
    pub flakeref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub kind: ReleaseKind,
    /// For a rollback: the release it puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// For an automatic rollback: the failed release it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: ReleaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Where the rollout stands (derived from the record on every read).
    pub phase: Phase,
    /// How its commands reach the hosts.
    pub shape: Shape,
    /// The one command to the fleet's tag (all at once); null for staged rollouts.
    pub command_id: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub updated_at: String,
    pub deadline: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<Launch>,
    /// Hosts passed over as not Online SSM managed nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<Unreachable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claimed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<Stopping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_alarms: Vec<String>,
    /// Raised by every write.
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    Deploy,
    Rollback,
    Repair,
    Targeted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
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
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }
}

/// Where the rollout stands (docs/design.md, "The rollout's phases").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Launching,
    Sending,
    Paused,
    Judging,
    Baking,
    Stopping,
    Final,
}

/// How a release's commands reach its hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    AllAtOnce,
    Staged,
    Targeted,
    Rollback,
    Repair,
}

/// What one host reported for the release's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct InstanceOutcome {
    pub instance_id: String,
    /// SSM's invocation status (`Success`, `Failed`, `InProgress`, ...).
    pub status: String,
    /// SSM's status detail (`Success`, `Undeliverable`, ...).
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_note: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Unreachable {
    pub instance_id: String,
    /// SSM's `PingStatus` (`ConnectionLost`, `Inactive`, `NotRegistered`, ...).
    pub ping_status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Launch {
    pub slot: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Rollout {
    pub waves: Vec<Wave>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<usize>,
    /// No waves beyond those recorded (targeted deploys, rollbacks, repairs).
    pub fixed: bool,
}

/// Who may send a wave's batches (or a release's first command), and since when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Claimed {
    pub claimed_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claimed_by: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takeover: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Wave {
    pub instance_ids: Vec<String>,
    /// One per batch of at most 50 instances, once sent.
    pub command_ids: Vec<String>,
    #[serde(flatten)]
    pub claim: Claimed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
    /// When its first batch went out (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// When it passed or stopped the release (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Bake {
    pub healthy_since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Checks {
    pub command_ids: Vec<String>,
    #[serde(flatten)]
    pub claim: Claimed,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<InstanceOutcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Stopping {
    pub reason: String,
    pub since_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsettled: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Control {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    pub paused_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<OperatorAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Paused {
    pub since_ms: u64,
    pub by: String,
    pub deadline_ms: u64,
    pub automatic: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Aborted {
    pub at_ms: u64,
    pub by: String,
    pub rollback: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Pause,
    Resume,
    Abort,
    AutoPause,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct OperatorAction {
    pub action: ControlAction,
    pub by: String,
    pub at_ms: u64,
    pub waves: usize,
}

/// A release as listings show it (`GET /releases`): outcomes counted by
/// SSM's status detail and waves counted, so a page stays small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ReleaseSummary {
    #[serde(flatten)]
    pub head: ReleaseHead,
    /// Hosts by SSM status detail.
    pub instance_counts: std::collections::BTreeMap<String, usize>,
    /// Waves started, for a staged rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<usize>,
}

impl From<&domain::Release> for Release {
    fn from(r: &domain::Release) -> Self {
        Self {
            head: r.into(),
            instances: r.instances.iter().map(Into::into).collect(),
            rollout: r.rollout.as_ref().map(Into::into),
            rolled_back_by: None,
        }
    }
}

impl From<&domain::Release> for ReleaseSummary {
    fn from(r: &domain::Release) -> Self {
        let mut instance_counts = std::collections::BTreeMap::new();
        for outcome in &r.instances {
            *instance_counts.entry(outcome.detail.clone()).or_default() += 1;
        }
        Self { head: r.into(), instance_counts, waves: r.rollout.as_ref().map(|o| o.waves.len()) }
    }
}

impl From<&domain::Release> for ReleaseHead {
    fn from(r: &domain::Release) -> Self {
        Self {
            id: r.id.to_string(),
            fleet: r.fleet.to_string(),
            flakeref: r.flakeref.to_string(),
            revision: r.revision.as_ref().map(|v| v.as_str().to_owned()),
            kind: r.kind.into(),
            rollback_of: r.rollback_of.as_ref().map(ToString::to_string),
            replaces: r.replaces.as_ref().map(ToString::to_string),
            requested_by: r.origin.requested_by.clone(),
            run_url: r.origin.run_url.as_ref().map(|u| u.as_str().to_owned()),
            reason: r.origin.reason.as_ref().map(|why| why.as_str().to_owned()),
            status: r.status.into(),
            status_reason: r.status_reason.clone(),
            phase: planner::Phase::of(r).into(),
            shape: planner::Shape::of(r).into(),
            command_id: r.command_id.clone(),
            created_at: r.created_at.to_rfc3339(),
            updated_at: r.updated_at.to_rfc3339(),
            deadline: r.deadline.to_rfc3339(),
            launches: r.launches.iter().map(Into::into).collect(),
            unreachable: r.unreachable.iter().map(Into::into).collect(),
            claim: r.claim.as_ref().map(Into::into),
            stopping: r.stopping.as_ref().map(Into::into),
            control: r.control.as_ref().map(Into::into),
            ignored_alarms: r.ignored_alarms.clone(),
            version: r.version,
        }
    }
}

impl From<planner::Phase> for Phase {
    fn from(phase: planner::Phase) -> Self {
        use planner::Phase as P;
        match phase {
            P::Pending => Self::Pending,
            P::Launching => Self::Launching,
            P::Sending => Self::Sending,
            P::Paused => Self::Paused,
            P::Judging => Self::Judging,
            P::Baking => Self::Baking,
            P::Stopping => Self::Stopping,
            P::Final => Self::Final,
        }
    }
}

impl From<planner::Shape> for Shape {
    fn from(shape: planner::Shape) -> Self {
        use planner::Shape as S;
        match shape {
            S::AllAtOnce => Self::AllAtOnce,
            S::Staged => Self::Staged,
            S::Targeted => Self::Targeted,
            S::Rollback => Self::Rollback,
            S::Repair => Self::Repair,
        }
    }
}

impl From<domain::ReleaseKind> for ReleaseKind {
    fn from(kind: domain::ReleaseKind) -> Self {
        match kind {
            domain::ReleaseKind::Deploy => Self::Deploy,
            domain::ReleaseKind::Rollback => Self::Rollback,
            domain::ReleaseKind::Repair => Self::Repair,
            domain::ReleaseKind::Targeted => Self::Targeted,
        }
    }
}

impl From<domain::ReleaseStatus> for ReleaseStatus {
    fn from(status: domain::ReleaseStatus) -> Self {
        use domain::ReleaseStatus as S;
        match status {
            S::Pending => Self::Pending,
            S::InProgress => Self::InProgress,
            S::Succeeded => Self::Succeeded,
            S::Failed => Self::Failed,
            S::NoInstances => Self::NoInstances,
            S::RolledBack => Self::RolledBack,
            S::Halted => Self::Halted,
        }
    }
}

impl From<&domain_outcome::InstanceOutcome> for InstanceOutcome {
    fn from(o: &domain_outcome::InstanceOutcome) -> Self {
        Self {
            instance_id: o.instance_id.clone(),
            status: o.status.as_str().to_owned(),
            detail: o.detail.clone(),
            exit_code: o.exit_code,
            stdout_tail: o.stdout_tail.clone(),
            stderr_tail: o.stderr_tail.clone(),
            output_note: o.output_note.clone(),
            started: o.started,
        }
    }
}

impl From<&domain_outcome::Unreachable> for Unreachable {
    fn from(u: &domain_outcome::Unreachable) -> Self {
        Self { instance_id: u.instance_id.clone(), ping_status: u.ping_status.as_str().to_owned() }
    }
}

impl From<&domain::Launch> for Launch {
    fn from(l: &domain::Launch) -> Self {
        Self { slot: l.slot, instance_id: l.instance_id.clone(), error: l.error.clone() }
    }
}

impl From<&domain_rollout::Rollout> for Rollout {
    fn from(r: &domain_rollout::Rollout) -> Self {
        Self { waves: r.waves.iter().map(Into::into).collect(), fleet_size: r.fleet_size, fixed: r.fixed }
    }
}

impl From<&domain_rollout::Claimed> for Claimed {
    fn from(c: &domain_rollout::Claimed) -> Self {
        Self { claimed_ms: c.claimed_ms, claimed_by: c.claimed_by.clone(), takeover: c.takeover }
    }
}

impl From<&domain_rollout::Wave> for Wave {
    fn from(w: &domain_rollout::Wave) -> Self {
        Self {
            instance_ids: w.instance_ids.clone(),
            command_ids: w.command_ids.clone(),
            claim: (&w.claim).into(),
            bake: w.bake.as_ref().map(|b| Bake {
                healthy_since_ms: b.healthy_since_ms,
                checks: b.checks.as_ref().map(|c| Checks {
                    command_ids: c.command_ids.clone(),
                    claim: (&c.claim).into(),
                    failed: c.failed.iter().map(Into::into).collect(),
                }),
            }),
            sent_ms: w.sent_ms,
            judged_ms: w.judged_ms,
        }
    }
}

impl From<&domain::Stopping> for Stopping {
    fn from(s: &domain::Stopping) -> Self {
        Self {
            reason: s.reason.clone(),
            since_ms: s.since_ms,
            cancelled: s.cancelled.clone(),
            unsettled: s.unsettled.clone(),
        }
    }
}

impl From<&domain::Paused> for Paused {
    fn from(p: &domain::Paused) -> Self {
        Self { since_ms: p.since_ms, by: p.by.clone(), deadline_ms: p.deadline_ms, automatic: p.automatic }
    }
}

impl From<&domain::Control> for Control {
    fn from(c: &domain::Control) -> Self {
        Self {
            paused: c.paused.as_ref().map(Into::into),
            paused_ms: c.paused_ms,
            aborted: c.aborted.as_ref().map(|a| Aborted { at_ms: a.at_ms, by: a.by.clone(), rollback: a.rollback }),
            actions: c
                .actions
                .iter()
                .map(|a| OperatorAction {
                    action: match a.action {
                        domain::ControlAction::Pause => ControlAction::Pause,
                        domain::ControlAction::Resume => ControlAction::Resume,
                        domain::ControlAction::Abort => ControlAction::Abort,
                        domain::ControlAction::AutoPause => ControlAction::AutoPause,
                    },
                    by: a.by.clone(),
                    at_ms: a.at_ms,
                    waves: a.waves,
                })
                .collect(),
        }
    }
}
