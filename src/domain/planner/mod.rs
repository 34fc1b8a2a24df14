//! The planner: every rule of a rollout, a rollback and a repair, in one pure
//! function. [`plan`] looks at what is known on this pass (the fleet's record,
//! the release holding it, what has been observed so far) and answers one
//! [`Step`]: observe something first, act, or rest. It reads no clock, calls
//! no port and knows no AWS; the executor carries steps out and the use cases
//! loop plan → execute → plan until it rests.
//!
//! A release's rules are chosen by its [`Phase`] (`phase`), derived from its
//! stored record on every pass; each phase has a module of its own
//! (`pending`, `launching`, `sending`, `paused`, `judging`, `baking`,
//! `stopping`). A rule that finds the release must stop answers a [`Stop`];
//! what a stop leads to (settling, untagging, a rollback, a halt) is decided
//! once, in `failure`. Beside them: when a wave passes (`judge`), what to
//! repair on a free fleet (`drift`, `repair`), pauses and aborts
//! (`control`), who may reach a host (`reach`), what a lost lease or a
//! refused admission means (`lease`), and the notices (`notice`). This file
//! holds the vocabulary (`Need`, `Step`, `Observed`), the entry (`plan`) and
//! the claim rule every sender obeys (`turn`).

mod baking;
pub mod control;
mod drift;
mod failure;
pub mod judge;
mod judging;
mod launching;
pub mod lease;
pub mod notice;
mod paused;
mod pending;
pub mod phase;
pub mod reach;
pub mod repair;
mod sending;
mod stopping;

use crate::domain::model::command::{ApplyCommand, CommandReport, CommandTarget};
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::fleet::{FleetInstance, FleetSettings, FleetState, MachineImage};
use crate::domain::model::ids::{Reason, ReleaseId, Revision};
use crate::domain::model::outcome::{describe_failures, trim_outputs, InstanceOutcome, InvocationState, Unreachable};
use crate::domain::model::release::{Launch, Origin, Release, ReleaseKind, ReleaseStatus, Stopping, BY_FLAKEFLEET};
use crate::domain::model::rollout::{Bake, Checks, Claim, Claimed, Rollout, RolloutMode, Wave, BATCH};
use crate::domain::model::store::Settlement;
use crate::domain::model::time::Timestamp;
use judge::{batches_to_report, judge_command, judge_wave, merge_outcomes, newly_converged, next_wave, WaveVerdict};
pub use phase::{Phase, Shape};
use reach::{Choice, NodeStatuses};
use repair::{plan_repair, tagged_releases, RepairPlan};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Running instances the canary is first chosen from (EC2's smallest page);
/// when too few of them are Online managed nodes, up to [`CANARY_POOL`].
pub const CANARY_FIRST_POOL: usize = 5;
/// The most running instances the canary is chosen from: one EC2 page.
pub const CANARY_POOL: usize = 1000;

/// How far before a release's creation to look for a command it may have sent.
pub const COMMAND_LOOKBACK: Duration = Duration::from_secs(60);

/// What one reconcile pass came to; serialised as the API has always shown it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    /// The rollout is paused: its next wave waits for a resume.
    Paused,
}

/// Something the planner needs to know before it can decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    FleetState,
    /// The release the lease names.
    Holder(ReleaseId),
    /// A command an earlier attempt may have sent, by its comment.
    SentBefore {
        comment: String,
        since: Timestamp,
    },
    /// The same for several batches of a wave, in order.
    SentBatches {
        comments: Vec<String>,
        since: Timestamp,
    },
    /// Up to this many running instances of the fleet, sorted: the canary's candidates.
    Canary(usize),
    /// Where these instances stand as SSM managed nodes.
    ManagedNodes(Vec<String>),
    /// Whether any running instance carries the fleet's tag.
    AnyRunning,
    /// The report of the one command sent to the fleet's tag.
    Report(String),
    /// The reports of these batches of the current wave.
    WaveReports(Vec<String>),
    /// The end-of-bake health checks' reports, by command id.
    CheckReports(Vec<String>),
    /// Which of the rollback alarms are in ALARM.
    Alarms,
    /// Every running instance of the fleet.
    Running,
    /// The release to roll back to: `good` when named, else the newest
    /// success before `before`.
    RollbackTarget {
        good: Option<ReleaseId>,
        before: ReleaseId,
    },
    /// The fleet's last good release, for a repair.
    GoodRelease(ReleaseId),
    FleetInstances,
    /// The flakerefs of the releases instances are tagged with.
    TaggedReleases(Vec<ReleaseId>),
    /// The newest image for launches.
    Image,
}

/// The next thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Observe(Need),
    /// Nothing more on this pass.
    Rest {
        outcome: Outcome,
        skipped: Option<String>,
    },
    /// Send the holder's first command: the canary, or the one command to the tag.
    SendFirst(ApplyCommand),
    /// Send the unsent batches of the holder's current wave. `resume`: an
    /// earlier invocation may have sent some, so look for each before sending.
    SendWave {
        resume: bool,
    },
    /// Send the first wave of the release a settlement of this pass handed
    /// the fleet to (`PassLog::handed_over`), once; a failed send is left
    /// to the reconcile, which takes the wave's claim over when it lapses.
    SendHandover,
    /// Send the current wave's unsent end-of-bake check commands (the
    /// document's `check` action) and record their ids.
    SendChecks,
    /// Launch the holder's slots not yet launched, from this image (or record why not).
    Launch {
        image: Result<MachineImage, String>,
    },
    /// Tag these instances with the holder's id: they applied it.
    Tag(Vec<String>),
    /// Forget the release tag of these instances: a failed release reached
    /// them and what they run is not known.
    Untag(Vec<String>),
    /// Ask SSM to cancel these invocations (command id, at most 50 instance
    /// ids per request, as CancelCommand takes), then store the holder with
    /// those SSM accepted added to its `stopping.cancelled`.
    Cancel {
        requests: Vec<(String, Vec<String>)>,
        release: Box<Release>,
    },
    /// Store the holder's progress; then rest with the outcome, or plan again.
    Record {
        release: Box<Release>,
        then: Option<Outcome>,
    },
    /// The holder's final write.
    Settle {
        settlement: Box<Settlement>,
        outcome: Outcome,
    },
    /// Record a repair release under the fleet's lease, then drive it.
    StartRepair {
        repair: Box<Release>,
        plan: RepairPlan,
    },
    /// The record contradicts itself.
    Corrupt(String),
}

/// What this pass knows of the world (the fleet's record, the release holding
/// it, what AWS answered); `None` is "not observed yet". What the pass did
/// itself is in `log`.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub fleet: Option<FleetState>,
    /// The release holding the fleet (or being admitted): the one steps act on.
    pub holder: Option<Release>,
    pub sent_before: Option<Option<String>>,
    /// What `Need::SentBatches` found, batch by batch; cleared by every record.
    pub sent_batches: Option<Vec<Option<String>>>,
    pub canary: Option<Vec<String>>,
    /// How many running instances `canary` was asked for.
    pub canary_limit: usize,
    /// Managed-node statuses looked up on this pass (a refused send refreshes them).
    pub nodes: NodeStatuses,
    pub any_running: Option<bool>,
    pub report: Option<CommandReport>,
    pub wave_reports: Option<Vec<InstanceOutcome>>,
    pub check_reports: Option<Vec<InstanceOutcome>>,
    /// The rollback alarms in ALARM now.
    pub alarms: Option<Vec<String>>,
    pub running: Option<Vec<String>>,
    pub rollback_target: Option<Option<Release>>,
    pub good: Option<Release>,
    pub instances: Option<Vec<FleetInstance>>,
    pub tagged_flakerefs: Option<HashMap<ReleaseId, Flakeref>>,
    /// Of those, the deploys to named instances, with their status.
    pub tagged_targeted: HashMap<ReleaseId, ReleaseStatus>,
    pub image: Option<Result<MachineImage, String>>,
    /// What this pass did so far: its own log, not a fact of the world.
    pub log: PassLog,
}

/// What this pass has done so far: the planner reads it so that nothing is
/// done twice in one pass.
#[derive(Clone, Debug, Default)]
pub struct PassLog {
    /// This pass recorded the holder: no earlier attempt can have sent its command.
    pub created_here: bool,
    /// What the first command's send answered: its id, or the service's refusal.
    pub first_send: Option<Result<String, String>>,
    pub tagged: bool,
    pub untagged: bool,
    pub launched: bool,
    pub wave_sent: bool,
    /// This pass sent the current wave's end-of-bake checks.
    pub checks_sent: bool,
    /// Instances whose cancel this pass asked for, accepted or not: a
    /// refused one is asked again by a later pass, never in a loop here.
    pub cancels_asked: Vec<String>,
    /// The holder has changes not yet stored.
    pub dirty: bool,
    /// A write of this pass was fenced off: another writer moved the holder on.
    pub fenced: bool,
    /// The release a settlement of this pass handed the fleet to (an
    /// automatic rollback), and what the pass came to.
    pub handed_over: Option<Handover>,
    /// What this pass did, for its report.
    pub started_repair: Option<RepairPlan>,
    pub launched_ids: Vec<String>,
}

/// A settlement of this pass handed the fleet to the next release.
#[derive(Clone, Debug)]
pub struct Handover {
    /// As created, its first wave claimed by this pass.
    pub release: Release,
    /// What the pass came to (`rolled_back`).
    pub outcome: Outcome,
    /// This pass tried to send its first wave.
    pub sent: bool,
}

/// What identifies this pass: when it runs, the claim it makes, and the id
/// any release it creates gets.
#[derive(Clone, Debug)]
pub struct Pass {
    pub claim: Claim,
    pub fresh_id: ReleaseId,
}

impl Pass {
    pub fn now(&self) -> Timestamp {
        self.claim.at
    }
}

/// The next step, from what is known.
pub fn plan(seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    if let Some(handover) = &seen.log.handed_over {
        return failure::plan_handover(handover, pass);
    }
    if let Some(holder) = &seen.holder {
        return plan_release(holder, seen, settings, pass);
    }
    let Some(fleet) = &seen.fleet else {
        return Step::Observe(Need::FleetState);
    };
    if let Some(lease) = &fleet.lease {
        return Step::Observe(Need::Holder(lease.release_id.clone()));
    }
    if let Some(halt) = &fleet.halted {
        return rest_because(Outcome::Halted, format!("the fleet is halted: {}", halt.reason));
    }
    plan_repair_step(fleet, seen, settings, pass)
}

/// A new release of `flakeref` for this fleet: pending, holding the fleet until its deadline.
pub fn new_release(
    settings: &FleetSettings,
    id: ReleaseId,
    flakeref: Flakeref,
    revision: Option<Revision>,
    kind: ReleaseKind,
    rollback_of: Option<ReleaseId>,
    now: Timestamp,
) -> Release {
    Release {
        id,
        fleet: settings.name.clone(),
        flakeref,
        revision,
        kind,
        rollback_of,
        replaces: None,
        origin: Origin::default(),
        status: ReleaseStatus::Pending,
        status_reason: None,
        command_id: None,
        created_at: now,
        updated_at: now,
        deadline: now.plus(settings.deploy_timeout),
        instances: Vec::new(),
        rollout: (settings.rollout.mode == RolloutMode::Staged).then(Rollout::default),
        launches: Vec::new(),
        unreachable: Vec::new(),
        claim: None,
        stopping: None,
        control: None,
        ignored_alarms: Vec::new(),
        noticed: None,
        version: 0,
    }
}

fn rest(outcome: Outcome) -> Step {
    Step::Rest { outcome, skipped: None }
}

fn rest_because(outcome: Outcome, why: String) -> Step {
    Step::Rest { outcome, skipped: Some(why) }
}

fn settle(release: Release, outcome: Outcome) -> Step {
    Step::Settle { settlement: Box::new(lease::settlement(release, None, None)), outcome }
}

/// A rule's finding that the release must stop: why, and the release as the
/// rule left it. The one transition into Stopping: `plan_release` hands every
/// one to `failure`.
#[derive(Debug)]
struct Stop {
    release: Box<Release>,
    why: String,
}

impl Stop {
    fn new(release: Release, why: impl Into<String>) -> Self {
        Self { release: Box::new(release), why: why.into() }
    }
}

/// What a phase's rules answer: the next step, or a stop.
type Planned = Result<Step, Stop>;

fn plan_release(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    // Another writer moved the release on since it was read: this pass's
    // observations may be stale, so the next pass looks again.
    if seen.log.fenced {
        return rest(Outcome::Waiting);
    }
    let phase = Phase::of(release);
    // What this pass launched is stored before anything else is decided.
    if seen.log.dirty && phase != Phase::Launching {
        return Step::Record { release: Box::new(release.clone()), then: None };
    }
    let planned = match phase {
        Phase::Pending => pending::plan(release, seen, settings, pass),
        Phase::Launching => Ok(launching::plan(release, seen, settings, pass)),
        Phase::Sending => sending::plan(release, seen, settings, pass),
        Phase::Paused => paused::plan(release, seen, settings, pass),
        // A baking wave is judged first: a late failure or an alarm stops it too.
        Phase::Judging | Phase::Baking => judging::plan(release, seen, settings, pass),
        Phase::Stopping => stopping::plan(release, seen, pass),
        Phase::Final => Ok(plan_final(release, seen)),
    };
    planned.unwrap_or_else(|stop| match (phase, failure::plan_failure(*stop.release, stop.why, seen, settings, pass)) {
        // A release that ends before its first command went out answers as dispatched.
        (Phase::Pending, Step::Settle { settlement, .. }) => Step::Settle { settlement, outcome: Outcome::Dispatched },
        (_, step) => step,
    })
}

/// Final, yet named by the lease (its settlement predates the lease's rules,
/// or the record was changed by hand): settled again, freeing the fleet,
/// which no clock would free.
fn plan_final(release: &Release, seen: &Observed) -> Step {
    match seen.fleet.as_ref().and_then(|f| f.lease.as_ref()) {
        Some(lease) if lease.release_id == release.id => settle(release.clone(), Outcome::Idle),
        _ => rest(Outcome::Idle),
    }
}

/// What a claim on a release or a wave lets this pass do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Turn {
    /// This pass holds the claim; `resume`: it took it over, so it looks for
    /// what the earlier claimer may have sent before sending anything.
    Send { resume: bool },
    /// Another invocation holds it and may still be sending.
    Wait,
    /// The claimer must be dead: record a claim of this pass's own first. Only
    /// the writer that wins that version-fenced write sends.
    TakeOver(Claimed),
}

fn turn(claim: &Claimed, settings: &FleetSettings, pass: &Pass) -> Turn {
    if claim.held_by(&pass.claim) {
        Turn::Send { resume: claim.takeover }
    } else if claim.lapsed(pass.now(), settings.takeover_after) {
        Turn::TakeOver(Claimed::new(&pass.claim, true))
    } else {
        Turn::Wait
    }
}

use drift::plan_repair_step;
pub use failure::targeted_release;
use failure::{aborted, alarms_firing, pass_over, put_back};

#[cfg(test)]
mod tests;
