//! The planner: every rule of a rollout, a rollback and a repair, in one pure
//! function. [`plan`] looks at what is known on this pass (the fleet's record,
//! the release holding it, what has been observed so far) and answers one
//! [`Step`]: observe something first, act, or rest. It reads no clock, calls
//! no port and knows no AWS; the executor carries steps out and the use cases
//! loop plan → execute → plan until it rests.
//!
//! Where a rule lives: when to send, wait or take over (`plan_first_command`,
//! `plan_wave`), when a wave passes or stops (`judge`), what a failure leads to
//! (`plan_failure`), what to repair (`plan_repair_step`, `repair`), and what a
//! lost lease or a refused admission means (`lease`).

pub mod control;
pub mod judge;
pub mod lease;
pub mod notice;
pub mod reach;
pub mod repair;

use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::fleet::{FleetInstance, FleetSettings, FleetState, MachineImage};
use crate::domain::model::ids::{Reason, ReleaseId, Revision};
use crate::domain::model::outcome::{describe_failures, trim_outputs, InstanceOutcome, InvocationState, Unreachable};
use crate::domain::model::release::{Launch, Origin, Release, ReleaseKind, ReleaseStatus, Stopping, BY_FLAKEFLEET};
use crate::domain::model::rollout::{Bake, Checks, Claim, Claimed, Rollout, RolloutMode, Wave, BATCH};
use crate::domain::model::time::Timestamp;
use crate::domain::ports::{ApplyCommand, CommandReport, CommandTarget, Settlement};
use judge::{batches_to_report, judge_command, judge_wave, merge_outcomes, newly_converged, next_wave, WaveVerdict};
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

/// What this pass knows; `None` is "not observed yet".
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub fleet: Option<FleetState>,
    /// The release holding the fleet (or being admitted): the one steps act on.
    pub holder: Option<Release>,
    /// This pass recorded the holder: no earlier attempt can have sent its command.
    pub created_here: bool,
    pub sent_before: Option<Option<String>>,
    /// What `Need::SentBatches` found, batch by batch; cleared by every record.
    pub sent_batches: Option<Vec<Option<String>>>,
    pub canary: Option<Vec<String>>,
    /// How many running instances `canary` was asked for.
    pub canary_limit: usize,
    /// Managed-node statuses looked up on this pass (a refused send refreshes them).
    pub nodes: NodeStatuses,
    pub any_running: Option<bool>,
    /// What the first command's send answered: its id, or the service's refusal.
    pub first_send: Option<Result<String, String>>,
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
    /// Done on this pass already.
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
    /// What this pass did, for its report.
    pub started_repair: Option<RepairPlan>,
    pub launched_ids: Vec<String>,
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

fn plan_release(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    // Another writer moved the release on since it was read: this pass's
    // observations may be stale, so the next pass looks again.
    if seen.fenced {
        return rest(Outcome::Waiting);
    }
    match release.status {
        ReleaseStatus::Pending => plan_first_command(release, seen, settings, pass),
        ReleaseStatus::InProgress if release.rollout.is_none() => plan_at_once(release, seen, settings, pass),
        ReleaseStatus::InProgress => plan_staged(release, seen, settings, pass),
        // Final, yet named by the lease (its settlement predates the lease's
        // rules, or the record was changed by hand): settled again, freeing
        // the fleet, which no clock would free.
        _ if seen.fleet.as_ref().and_then(|f| f.lease.as_ref()).is_some_and(|l| l.release_id == release.id) => {
            settle(release.clone(), Outcome::Idle)
        }
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

/// A pending release: its first command is not confirmed sent.
fn plan_first_command(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let now = pass.now();
    // A release recorded before claims were: claimed by nobody at its creation.
    let claim =
        release.claim.clone().unwrap_or(Claimed { claimed_ms: release.created_at.millis(), ..Claimed::default() });
    let resume = match turn(&claim, settings, pass) {
        Turn::Send { resume } => resume,
        Turn::Wait => return rest(Outcome::Waiting),
        Turn::TakeOver(claim) => {
            let mut taken = release.clone();
            taken.claim = Some(claim);
            return Step::Record { release: Box::new(taken), then: None };
        }
    };
    if let Some(answer) = &seen.first_send {
        return match answer {
            Ok(command_id) => record_first(release, command_id, seen, settings, pass),
            Err(reason) => {
                let mut failed = release.clone();
                failed.status = ReleaseStatus::Failed;
                failed.status_reason = Some(format!("SSM refused the apply command: {reason}"));
                settle(failed, Outcome::Dispatched)
            }
        };
    }
    let (target, comment) = match &release.rollout {
        None => (CommandTarget::Tag(settings.target.clone()), release.command_comment()),
        Some(_) => match canary_choice(seen, settings) {
            Ok((canary, _)) => (CommandTarget::Instances(canary), release.batch_comment(0, 0)),
            Err(need) => return Step::Observe(need),
        },
    };
    if resume {
        match &seen.sent_before {
            None => {
                let since = release.created_at.minus(COMMAND_LOOKBACK);
                return Step::Observe(Need::SentBefore { comment, since });
            }
            Some(Some(command_id)) => return record_first(release, command_id, seen, settings, pass),
            Some(None) => {}
        }
    }
    if now >= release.deadline {
        let reason = "the deadline passed before the apply command was sent".to_owned();
        return with_outcome(plan_failure(release.clone(), reason, seen, settings, pass), Outcome::Dispatched);
    }
    let empty = match &target {
        CommandTarget::Instances(ids) => ids.is_empty(),
        CommandTarget::Tag(_) => match seen.any_running {
            Some(any) => !any,
            None => return Step::Observe(Need::AnyRunning),
        },
    };
    if empty {
        let mut none = release.clone();
        none.status = ReleaseStatus::NoInstances;
        let passed = canary_choice(seen, settings).map(|(_, passed)| passed).unwrap_or_default();
        none.status_reason = Some(if passed.is_empty() {
            format!("no running instance carries the fleet tag {}; nothing was sent", settings.target)
        } else {
            none.unreachable = passed;
            format!(
                "no running instance with the fleet tag {} is an Online SSM managed node ({}); nothing was sent",
                settings.target,
                reach::describe_unreachable(&none)
            )
        });
        return settle(none, Outcome::Dispatched);
    }
    Step::SendFirst(ApplyCommand { flakeref: release.flakeref.clone(), target, comment, check_only: false })
}

/// The canary: the first `canary` Online managed nodes among the sorted
/// running instances, and those passed over before them.
fn canary_choice(seen: &Observed, settings: &FleetSettings) -> Result<(Vec<String>, Vec<Unreachable>), Need> {
    let want = settings.rollout.canary;
    let Some(pool) = &seen.canary else {
        return Err(Need::Canary(want.max(CANARY_FIRST_POOL)));
    };
    match reach::choose(pool, want, &seen.nodes) {
        Choice::LookUp(ids) => Err(Need::ManagedNodes(ids)),
        // Too few reachable among a short pool while more may run: look wider, once.
        Choice::Chosen { online, .. }
            if online.len() < want && pool.len() >= seen.canary_limit && seen.canary_limit < CANARY_POOL =>
        {
            Err(Need::Canary(CANARY_POOL))
        }
        Choice::Chosen { online, passed } => Ok((online, passed)),
    }
}

/// The holder's first command is out (sent now, or found): record it.
fn record_first(release: &Release, command_id: &str, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let sent = first_sent(release, command_id, seen, settings, pass);
    Step::Record { release: Box::new(sent), then: Some(Outcome::Dispatched) }
}

fn with_outcome(step: Step, outcome: Outcome) -> Step {
    match step {
        Step::Settle { settlement, .. } => Step::Settle { settlement, outcome },
        other => other,
    }
}

/// The release with its first command recorded: in progress from now on.
fn first_sent(release: &Release, command_id: &str, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Release {
    let mut sent = release.clone();
    match sent.rollout.as_mut() {
        Some(rollout) => {
            let (chosen, passed) = canary_choice(seen, settings).unwrap_or_default();
            sent.unreachable.extend(passed);
            let mut canary = Wave::new(chosen, &pass.claim);
            canary.record_sent(command_id.to_owned(), pass.now());
            rollout.waves = vec![canary];
        }
        None => sent.command_id = Some(command_id.to_owned()),
    }
    sent.status = ReleaseStatus::InProgress;
    sent.claim = None; // the waves carry their own claims from here on
    sent
}

/// The one command to the whole tag: judged when SSM says it ended.
fn plan_at_once(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let Some(command_id) = &release.command_id else {
        return Step::Corrupt(format!("release {} is in progress without a command id", release.id));
    };
    let Some(report) = &seen.report else {
        return Step::Observe(Need::Report(command_id.clone()));
    };
    let mut verdict = judge_command(report, &release.instances, release.deadline, pass.now());
    trim_outputs(&mut verdict.instances);
    let fresh = newly_converged(&release.instances, &verdict.instances);
    if !fresh.is_empty() && !seen.tagged {
        return Step::Tag(fresh);
    }
    let changed = verdict.instances != release.instances;
    let mut next = release.clone();
    next.instances = verdict.instances;
    if next.stopping.is_some() {
        return plan_failure(next, String::new(), seen, settings, pass);
    }
    if let Some(why) = aborted(&next) {
        return plan_failure(next, why, seen, settings, pass);
    }
    match alarms_firing(&next, seen, settings) {
        Err(need) => return Step::Observe(need),
        Ok(Some(why)) => return plan_failure(next, why, seen, settings, pass),
        Ok(None) => {}
    }
    if verdict.status == ReleaseStatus::Succeeded {
        if let Some(why) = reach::over_tolerance(&next, &settings.rollout, next.instances.len()) {
            return plan_failure(next, why, seen, settings, pass);
        }
    }
    match verdict.status {
        ReleaseStatus::Succeeded | ReleaseStatus::NoInstances => {
            next.status = verdict.status;
            next.status_reason =
                verdict.reason.or_else(|| Some(reach::describe_unreachable(&next)).filter(|s| !s.is_empty()));
            settle(next, Outcome::Finished)
        }
        ReleaseStatus::Failed => plan_failure(next, verdict.reason.unwrap_or_default(), seen, settings, pass),
        _ if changed => Step::Record { release: Box::new(next), then: Some(Outcome::Waiting) },
        _ => rest(Outcome::Waiting),
    }
}

/// A staged release (and every repair): launches, then waves.
fn plan_staged(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let now = pass.now();
    let rollout = release.rollout.clone().unwrap_or_default();
    if release.launches.iter().any(|l| l.instance_id.is_none() && l.error.is_none()) {
        // A repair that stopped mid-launch: its claim lapses like a wave's.
        if !seen.created_here && now < release.created_at.plus(settings.takeover_after) {
            return rest(Outcome::Waiting);
        }
        return match (&seen.image, seen.launched) {
            // Launched once on this pass already: the record says otherwise, look again next pass.
            (_, true) => rest(Outcome::Waiting),
            (Some(image), false) => Step::Launch { image: image.clone() },
            (None, false) => Step::Observe(Need::Image),
        };
    }
    if seen.dirty {
        return Step::Record { release: Box::new(release.clone()), then: None };
    }
    let Some(wave) = rollout.current() else {
        // A repair that only launched: its hosts' wave comes once they are Online.
        if rollout.fixed && !release.launches.is_empty() {
            return plan_next_wave(release.clone(), &rollout, seen, settings, pass);
        }
        return Step::Corrupt(format!("release {} is in progress without a wave", release.id));
    };
    if !wave.fully_sent() && release.stopping.is_none() {
        if seen.wave_sent {
            return rest(Outcome::Waiting);
        }
        // A pause holds every batch not sent yet, whoever claimed its wave
        // and whenever: a takeover after a failed send or a dead claimer too.
        let paused = aborted(release).is_none() && control::is_paused(release);
        return match turn(&wave.claim, settings, pass) {
            // An abort stops sending: batches whose answer was lost are looked
            // for and adopted, then what was sent is judged and the release ends.
            Turn::Send { .. } if aborted(release).is_some() => {
                let why = aborted(release).unwrap_or_default();
                plan_unsent(release, &rollout, seen, settings, pass, why)
            }
            Turn::Send { resume } if paused => match control::paused_too_long(release, settings, now) {
                Some(why) => plan_unsent(release, &rollout, seen, settings, pass, why),
                // A taker-over first adopts what the dead claimer may have
                // sent, so those hosts are judged when the rollout resumes.
                None if resume => adopt_unsent(release, &rollout, seen, pass).unwrap_or_else(|| rest(Outcome::Paused)),
                None => rest(Outcome::Paused),
            },
            // A send that keeps failing never holds the release past its deadline.
            Turn::Send { .. } if now >= release.deadline => {
                let why = format!(
                    "the deadline {} passed with wave {} not fully sent",
                    release.deadline,
                    rollout.waves.len()
                );
                plan_unsent(release, &rollout, seen, settings, pass, why)
            }
            Turn::Send { resume } => Step::SendWave { resume },
            Turn::Wait if paused => rest(Outcome::Paused),
            Turn::Wait => rest(Outcome::Waiting),
            Turn::TakeOver(claim) => {
                let mut taken = release.clone();
                if let Some(wave) = taken.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
                    wave.claim = claim;
                }
                Step::Record { release: Box::new(taken), then: None }
            }
        };
    }
    if seen.wave_sent && wave.claimed_by(&pass.claim) {
        return rest(Outcome::WaveStarted);
    }
    plan_wave(release, &rollout, seen, settings, pass)
}

/// The deadline passed (or an operator aborted) with the current wave not
/// fully sent, and this pass holds its claim: nothing more is sent, but a batch whose answer was lost
/// may have gone out, so the unsent batches are looked for by their comments
/// and adopted (their hosts are then awaited like any other) before the
/// release fails.
fn plan_unsent(
    release: &Release,
    rollout: &Rollout,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
    why: String,
) -> Step {
    if let Some(step) = adopt_unsent(release, rollout, seen, pass) {
        return step;
    }
    let mut stopped = release.clone();
    if let Some(rollout) = stopped.rollout.as_mut() {
        rollout.judge_current(pass.now());
    }
    plan_failure(stopped, why, seen, settings, pass)
}

/// The current wave's unsent batches that an earlier claimer may have sent
/// after all (its answer lost, or it died before recording): looked for by
/// their comments, and the ones found recorded. None: none was sent.
fn adopt_unsent(release: &Release, rollout: &Rollout, seen: &Observed, pass: &Pass) -> Option<Step> {
    let wave_number = rollout.waves.len().checked_sub(1)?;
    let wave = rollout.current()?;
    let Some(found) = &seen.sent_batches else {
        let comments =
            (wave.command_ids.len()..wave.batches().count()).map(|b| release.batch_comment(wave_number, b)).collect();
        return Some(Step::Observe(Need::SentBatches { comments, since: release.created_at.minus(COMMAND_LOOKBACK) }));
    };
    // Batches go out in order: the first one never sent ends the search.
    let adopted: Vec<String> = found.iter().map_while(Clone::clone).collect();
    if adopted.is_empty() {
        return None;
    }
    let mut found = release.clone();
    if let Some(wave) = found.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
        // Sent by an invocation that died: when is not known, no later than now.
        adopted.into_iter().for_each(|id| wave.record_sent(id, pass.now()));
    }
    Some(Step::Record { release: Box::new(found), then: None })
}

/// The current wave is out: judge it, then stop, wait, start the next or finish.
fn plan_wave(release: &Release, rollout: &Rollout, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let batches = batches_to_report(rollout, &release.instances);
    let reported: &[InstanceOutcome] = match &seen.wave_reports {
        Some(reports) => reports,
        None if batches.is_empty() => &[],
        None => return Step::Observe(Need::WaveReports(batches)),
    };
    let merged = merge_outcomes(&release.instances, reported);
    let fresh = newly_converged(&release.instances, &merged);
    if !fresh.is_empty() && !seen.tagged {
        return Step::Tag(fresh);
    }
    let changed = merged != release.instances;
    let mut next = release.clone();
    next.instances = merged;
    let total = rollout.fleet_size.unwrap_or(rollout.targeted().count() + release.unreachable.len());
    let alarm = match alarms_firing(&next, seen, settings) {
        Ok(alarm) => alarm,
        Err(need) => return Step::Observe(need),
    };
    let verdict = match judge_wave(rollout, &next.instances, &settings.rollout) {
        // Stopping already: it ends as it started, whatever came back since.
        _ if next.stopping.is_some() => WaveVerdict::Stop(String::new()),
        _ if aborted(&next).is_some() => WaveVerdict::Stop(aborted(&next).unwrap_or_default()),
        // A rollback alarm while it rolls out or bakes: stopped like a failed canary.
        _ if alarm.is_some() => WaveVerdict::Stop(alarm.unwrap_or_default()),
        WaveVerdict::Stop(why) => WaveVerdict::Stop(why),
        other => match reach::over_tolerance(&next, &settings.rollout, total) {
            Some(why) => WaveVerdict::Stop(why),
            None if other == WaveVerdict::Passed => other,
            None if pass.now() >= release.deadline => {
                WaveVerdict::Stop(format!("the deadline {} passed", release.deadline))
            }
            None => other,
        },
    };
    if verdict == WaveVerdict::Running {
        return match changed {
            true => Step::Record { release: Box::new(next), then: Some(Outcome::Waiting) },
            false => rest(Outcome::Waiting),
        };
    }
    // A verdict dates the wave (for the timeline), whatever it leads to.
    let mut judged = rollout.clone();
    judged.judge_current(pass.now());
    next.rollout = Some(judged.clone());
    match verdict {
        WaveVerdict::Stop(reason) => plan_failure(next, reason, seen, settings, pass),
        _ => match plan_bake(&next, &judged, seen, settings, pass) {
            Some(step) => step,
            None => plan_next_wave(next, &judged, seen, settings, pass),
        },
    }
}

/// A passed wave bakes (FLAKEFLEET_BAKE_SECONDS): it stays healthy that long
/// after its last Success, then its hosts run their health checks again (the
/// document's `check` action, which changes nothing), and only when every one
/// passed does the next wave start. None: nothing to bake, or baked. Fixed
/// rollouts (rollbacks, repairs) put a known release back and do not bake.
fn plan_bake(
    release: &Release,
    rollout: &Rollout,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Option<Step> {
    let now = pass.now();
    let wave = rollout.current()?;
    if settings.rollout.bake.is_zero() || rollout.fixed {
        return None;
    }
    let with_bake = |bake: Bake| {
        let mut next = release.clone();
        if let Some(wave) = next.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
            wave.bake = Some(bake);
        }
        next
    };
    let Some(bake) = &wave.bake else {
        let baking = with_bake(Bake { healthy_since_ms: now.millis(), checks: None });
        return Some(Step::Record { release: Box::new(baking), then: Some(Outcome::Waiting) });
    };
    // The deadline passed before, or while, the wave's checks ...
    let late = |when: &str, what: &str| {
        let waves = rollout.waves.len();
        let why = format!("the deadline {} passed {when} wave {waves}'s health checks {what}", release.deadline);
        plan_failure(release.clone(), why, seen, settings, pass)
    };
    let changed = seen.holder.as_ref() != Some(release);
    let wait = || match changed {
        true => Step::Record { release: Box::new(release.clone()), then: Some(Outcome::Waiting) },
        false => rest(Outcome::Waiting),
    };
    let Some(checks) = &bake.checks else {
        if now.millis() < bake.healthy_since_ms.saturating_add(settings.rollout.bake.as_millis() as u64) {
            if now >= release.deadline {
                let why = format!("the deadline {} passed while wave {} baked", release.deadline, rollout.waves.len());
                return Some(plan_failure(release.clone(), why, seen, settings, pass));
            }
            return Some(wait());
        }
        // Baked: claimed first, so one invocation sends the checks.
        let checks = Checks { claim: Claimed::new(&pass.claim, false), ..Checks::default() };
        let claimed = with_bake(Bake { checks: Some(checks), ..bake.clone() });
        return Some(Step::Record { release: Box::new(claimed), then: None });
    };
    if checks.command_ids.len() < wave.batches().count() {
        if seen.checks_sent {
            return Some(rest(Outcome::Waiting));
        }
        if now >= release.deadline {
            return Some(late("before", "were sent"));
        }
        return Some(match turn(&checks.claim, settings, pass) {
            Turn::Send { .. } => Step::SendChecks,
            Turn::Wait => rest(Outcome::Waiting),
            Turn::TakeOver(claim) => {
                let taken = Checks { claim, ..checks.clone() };
                Step::Record { release: Box::new(with_bake(Bake { checks: Some(taken), ..bake.clone() })), then: None }
            }
        });
    }
    let Some(reports) = &seen.check_reports else {
        return Some(Step::Observe(Need::CheckReports(checks.command_ids.clone())));
    };
    let failed: Vec<&InstanceOutcome> = reports.iter().filter(|o| o.failed()).collect();
    if let Some(first) = failed.first() {
        // The reason travels in notices to every consumer of the bus: it
        // names the host and the check; the hosts' output stays in the release.
        let check = failed_check_name(first).map(|name| format!(" (check {name})")).unwrap_or_default();
        let why = format!(
            "the health checks at the end of wave {}'s bake failed on {} of {} hosts, first on {}{check}; \
             their output is in the release (the wave's bake.checks.failed)",
            rollout.waves.len(),
            failed.len(),
            wave.instance_ids.len(),
            first.instance_id
        );
        let mut kept: Vec<InstanceOutcome> = failed.into_iter().cloned().collect();
        trim_outputs(&mut kept);
        let recorded = with_bake(Bake { checks: Some(Checks { failed: kept, ..checks.clone() }), ..bake.clone() });
        return Some(plan_failure(recorded, why, seen, settings, pass));
    }
    let done = reports.len() >= wave.instance_ids.len() && reports.iter().all(InstanceOutcome::is_finished);
    if !done {
        if now >= release.deadline {
            return Some(late("while", "ran"));
        }
        return Some(wait());
    }
    None
}

/// After a passed wave: the next one, or the end of the rollout.
fn plan_next_wave(
    mut release: Release,
    rollout: &Rollout,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Step {
    let running: &[String] = match (&seen.running, rollout.fixed) {
        (_, true) => &[],
        (Some(running), false) => running,
        (None, false) => return Step::Observe(Need::Running),
    };
    let mut rollout = rollout.clone();
    if rollout.fleet_size.is_none() {
        let mut all: Vec<&String> = running.iter().chain(rollout.targeted()).collect();
        all.sort();
        all.dedup();
        rollout.fleet_size = Some(all.len());
    }
    let total = rollout.fleet_size.unwrap_or(running.len());
    let (next, booting) = match rollout.fixed {
        true => match launched_online(&release, &rollout, seen) {
            Ok(found) => found,
            Err(need) => return Step::Observe(need),
        },
        false => match next_online_wave(&mut release, &rollout, running, total, seen, settings) {
            Ok(next) => (next, Vec::new()),
            Err(need) => return Step::Observe(need),
        },
    };
    if let Some(why) = reach::over_tolerance(&release, &settings.rollout, total) {
        release.rollout = Some(rollout);
        return plan_failure(release, why, seen, settings, pass);
    }
    // A paused rollout holds its next wave (an automatic pause first pauses
    // it), until a resume, or until it has been paused too long.
    if !next.is_empty() && !rollout.fixed {
        release.rollout = Some(rollout.clone());
        if let Some(why) = control::paused_too_long(&release, settings, pass.now()) {
            return plan_failure(release, why, seen, settings, pass);
        }
        let waves = rollout.waves.len();
        if let Some(paused) = control::auto_pause(&release, waves, settings, pass.now()) {
            return Step::Record { release: Box::new(paused), then: Some(Outcome::Paused) };
        }
        if control::is_paused(&release) {
            return match seen.holder.as_ref() != Some(&release) {
                true => Step::Record { release: Box::new(release), then: Some(Outcome::Paused) },
                false => rest(Outcome::Paused),
            };
        }
    }
    // No wave goes out after the deadline: a deploy may be waiting to settle
    // this release and take the fleet, and the hosts must be done with it.
    if !next.is_empty() && pass.now() >= release.deadline {
        release.rollout = Some(rollout);
        let why = format!("the deadline {} passed before the next wave was sent", release.deadline);
        return plan_failure(release, why, seen, settings, pass);
    }
    if next.is_empty() && !booting.is_empty() {
        release.rollout = Some(rollout);
        if pass.now() >= release.deadline {
            let why = format!(
                "launched instances never came up as Online SSM managed nodes by the deadline {}: {}",
                release.deadline,
                booting.join(", ")
            );
            return plan_failure(release, why, seen, settings, pass);
        }
        // Still booting: asked again on the next pass.
        return match seen.holder.as_ref() != Some(&release) {
            true => Step::Record { release: Box::new(release), then: Some(Outcome::Waiting) },
            false => rest(Outcome::Waiting),
        };
    }
    if next.is_empty() {
        release.rollout = Some(rollout);
        let failures = describe_failures(&release.instances);
        let launch_errors: Vec<&str> = release.launches.iter().filter_map(|l| l.error.as_deref()).collect();
        if failures.is_empty() && launch_errors.is_empty() {
            release.status = ReleaseStatus::Succeeded;
            release.status_reason = Some(reach::describe_unreachable(&release)).filter(|s| !s.is_empty());
        } else if failures.is_empty() {
            release.status = ReleaseStatus::Failed;
            release.status_reason = Some(format!("launch failed: {}", launch_errors.join("; ")));
        } else {
            // Within the threshold: the rollout went on, but not every instance converged.
            release.status = ReleaseStatus::Failed;
            release.status_reason = Some(format!("{failures} (within the failure threshold)"));
        }
        return settle(release, Outcome::Finished);
    }
    if rollout.fixed {
        rollout.fleet_size = rollout.fleet_size.map(|n| n + next.len());
    }
    rollout.waves.push(Wave::new(next, &pass.claim));
    release.rollout = Some(rollout);
    // Recorded first: the write that wins the claim is the one that sends.
    Step::Record { release: Box::new(release), then: None }
}

/// A repair's next wave: the hosts it launched that are Online managed nodes
/// now and not yet sent to, and those still booting. A launched host counts
/// as repaired only once an apply of the release reports Success on it over
/// SSM, like any other host (its user data applied the release already, so
/// that apply is a cheap no-op), and is tagged with the release only then.
fn launched_online(release: &Release, rollout: &Rollout, seen: &Observed) -> Result<(Vec<String>, Vec<String>), Need> {
    let targeted: Vec<&String> = rollout.targeted().collect();
    let launched: Vec<String> =
        release.launches.iter().filter_map(|l| l.instance_id.clone()).filter(|id| !targeted.contains(&id)).collect();
    match reach::choose(&launched, launched.len(), &seen.nodes) {
        Choice::LookUp(ids) => Err(Need::ManagedNodes(ids)),
        Choice::Chosen { online, passed } => Ok((online, passed.into_iter().map(|u| u.instance_id).collect())),
    }
}

/// The next wave's Online managed nodes; candidates that are not Online are
/// recorded on the release as unreachable and others take their place.
fn next_online_wave(
    release: &mut Release,
    rollout: &Rollout,
    running: &[String],
    total: usize,
    seen: &Observed,
    settings: &FleetSettings,
) -> Result<Vec<String>, Need> {
    if rollout.fixed {
        return Ok(Vec::new());
    }
    loop {
        let passed_over: Vec<&str> = release.unreachable.iter().map(|u| u.instance_id.as_str()).collect();
        let candidates: Vec<String> =
            running.iter().filter(|id| !passed_over.contains(&id.as_str())).cloned().collect();
        let wave = next_wave(rollout, &candidates, &settings.rollout);
        match reach::choose(&wave, wave.len(), &seen.nodes) {
            Choice::LookUp(ids) => return Err(Need::ManagedNodes(ids)),
            Choice::Chosen { online, passed } if passed.is_empty() => return Ok(online),
            Choice::Chosen { passed, .. } => release.unreachable.extend(passed),
        }
        // Over the tolerance already: the caller stops the rollout.
        if reach::over_tolerance(release, &settings.rollout, total).is_some() {
            return Ok(Vec::new());
        }
    }
}

/// Ends a release that went wrong: an automatic rollback when one is safe and
/// allowed, a halted fleet when a rollback itself failed or there is nothing
/// to go back to, a plain failure otherwise. Never loops: a rollback is never
/// rolled back.
fn plan_failure(mut release: Release, reason: String, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let reason = match settle_invocations(&mut release, reason, seen, settings, pass) {
        Ok(reason) => reason,
        Err(step) => return step,
    };
    release.status_reason = Some(reason.clone());
    // Settled now: the hosts it reached that did not report Success run
    // something not known. Their tag may still name the good release, so it
    // goes first, before anything is settled: the drift repair then puts the
    // good release back on them (a no-op where the apply never switched).
    let unknown = unknown_hosts(&release);
    if !unknown.is_empty() && !seen.untagged {
        return Step::Untag(unknown);
    }
    let halt = |mut release: Release, why: String| {
        release.status = ReleaseStatus::Halted;
        Step::Settle { settlement: Box::new(lease::settlement(release, Some(why), None)), outcome: Outcome::Finished }
    };
    let failed = |mut release: Release| {
        release.status = ReleaseStatus::Failed;
        settle(release, Outcome::Finished)
    };
    // An operator's abort rolls back when asked to (or when automatic
    // rollback is on), and otherwise leaves the fleet as it is, halted.
    let abort = release.control.as_ref().and_then(|c| c.aborted.clone());
    match release.kind {
        // The fleet's good release did not take: report it, retry next time.
        ReleaseKind::Repair => return failed(release),
        ReleaseKind::Rollback => {
            let why = format!("rollback {} failed: {reason}", release.id);
            return halt(release, why);
        }
        ReleaseKind::Deploy | ReleaseKind::Targeted
            if abort.as_ref().is_some_and(|a| !a.rollback) && !settings.rollout.auto_rollback =>
        {
            let why = format!("release {} was {reason}; the fleet is left as it is", release.id);
            return halt(release, why);
        }
        ReleaseKind::Deploy | ReleaseKind::Targeted if !settings.rollout.auto_rollback && abort.is_none() => {
            return failed(release)
        }
        // A deploy to named instances rolls back to the fleet's good release too.
        ReleaseKind::Deploy | ReleaseKind::Targeted => {}
    }
    let Some(target) = &seen.rollback_target else {
        // The fleet's last good release, unless that is the failing one (a
        // release read before it settled); else the newest success before it.
        let Some(fleet) = &seen.fleet else {
            return Step::Observe(Need::FleetState);
        };
        let good = fleet.last_good_release.clone().filter(|id| id != &release.id);
        return Step::Observe(Need::RollbackTarget { good, before: release.id.clone() });
    };
    let Some(good) = target else {
        let why = format!("release {} failed and no earlier release succeeded to roll back to: {reason}", release.id);
        return halt(release, why);
    };
    // A flake taken off the allowlist is never put back, not even by a rollback.
    if let Err(refused) = settings.allowed_flakes.check(&good.flakeref) {
        let why = format!("release {} was {reason}; its rollback target {} is refused: {refused}", release.id, good.id);
        return halt(release, why);
    }
    let reached = release.reached_instances();
    if reached.is_empty() {
        return failed(release);
    }
    // It reaches only the instances the bad release reached, and of those
    // only Online managed nodes: the drift repair catches the others up.
    let (online, passed) = match reach::choose(&reached, reached.len(), &seen.nodes) {
        Choice::LookUp(ids) => return Step::Observe(Need::ManagedNodes(ids)),
        Choice::Chosen { online, passed } => (online, passed),
    };
    if online.is_empty() {
        release.status_reason = Some(format!("{reason}; no instance it reached is reachable to roll back"));
        return failed(release);
    }
    let mut rollback = put_back(good, ReleaseKind::Rollback, online, settings, pass);
    pass_over(&mut rollback, passed);
    rollback.status_reason = Some(format!("automatic rollback of {}: {reason}", release.id));
    rollback.replaces = Some(release.id.clone());
    rollback.origin = Origin {
        requested_by: Some(format!("{BY_FLAKEFLEET} (automatic rollback)")),
        run_url: None,
        reason: Some(Reason::own(&format!("release {} failed: {reason}", release.id))),
    };
    release.status = ReleaseStatus::RolledBack;
    Step::Settle {
        settlement: Box::new(lease::settlement(release, None, Some(rollback))),
        outcome: Outcome::RolledBack,
    }
}

/// The hosts a release reached that did not report Success.
fn unknown_hosts(release: &Release) -> Vec<String> {
    let converged: Vec<&str> =
        release.instances.iter().filter(|i| i.converged()).map(|i| i.instance_id.as_str()).collect();
    release.reached_instances().into_iter().filter(|id| !converged.contains(&id.as_str())).collect()
}

/// The check a host's verdict names (`flakefleet: health check NAME failed
/// …`, the document's words), if its name is one the document allows
/// (`[A-Za-z0-9_.-]{1,64}`): host output otherwise, which no reason repeats.
fn failed_check_name(outcome: &InstanceOutcome) -> Option<&str> {
    let line = [&outcome.stderr_tail, &outcome.stdout_tail]
        .into_iter()
        .find_map(|t| t.lines().rev().find(|l| !l.trim().is_empty()))?;
    let name = line.strip_prefix("flakefleet: health check ")?.split(' ').next()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    (name.len() <= 64 && !name.is_empty() && name.chars().all(allowed)).then_some(name)
}

/// Why a deploy rolling out (or baking) stops, if one of the rollback alarms
/// it did not ignore at its admission is in ALARM; the alarms' states are
/// asked for first. Rollbacks and repairs put a known release back and are
/// never stopped by an alarm.
fn alarms_firing(release: &Release, seen: &Observed, settings: &FleetSettings) -> Result<Option<String>, Need> {
    let deploy = matches!(release.kind, ReleaseKind::Deploy | ReleaseKind::Targeted);
    if settings.rollout.alarms.is_empty() || !deploy || release.stopping.is_some() {
        return Ok(None);
    }
    let Some(firing) = &seen.alarms else {
        return Err(Need::Alarms);
    };
    let firing: Vec<&str> = firing.iter().filter(|a| !release.ignored_alarms.contains(a)).map(String::as_str).collect();
    Ok((!firing.is_empty()).then(|| format!("rollback alarm {} is in ALARM", firing.join(", "))))
}

/// Why the release ends, if an operator aborted it.
fn aborted(release: &Release) -> Option<String> {
    let aborted = release.control.as_ref()?.aborted.as_ref()?;
    Some(format!("aborted by {} at {}", aborted.by, Timestamp::from_millis(aborted.at_ms)))
}

/// Before a failed release ends, and before any rollback reaches its hosts,
/// its unfinished invocations are settled: those not started yet (Pending,
/// Delayed) are cancelled, and those running are awaited up to the settle
/// limit, since killing an activation halfway can leave a host half-switched.
/// Answers the reason to end with once they are settled (naming the hosts
/// still running at the limit), or the step that settles them.
fn settle_invocations(
    release: &mut Release,
    reason: String,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Result<String, Step> {
    let now = pass.now();
    let unfinished = release.unfinished();
    if unfinished.is_empty() && release.stopping.is_none() {
        return Ok(reason);
    }
    let mut stopping = release.stopping.clone().unwrap_or_else(|| Stopping {
        reason,
        since_ms: now.millis(),
        cancelled: Vec::new(),
        unsettled: Vec::new(),
    });
    let to_cancel: Vec<String> = unfinished
        .iter()
        .filter(|(_, state)| matches!(state, Some(InvocationState::Pending | InvocationState::Delayed)))
        .map(|(id, _)| id.to_string())
        .filter(|id| !stopping.cancelled.contains(id) && !seen.cancels_asked.contains(id))
        .collect();
    if !to_cancel.is_empty() {
        // CancelCommand takes at most 50 instance ids: one request per command and 50 of its ids.
        let mut requests: Vec<(String, Vec<String>)> = Vec::new();
        for id in &to_cancel {
            let Some(command_id) = release.command_for(id) else { continue };
            match requests.iter_mut().find(|(c, ids)| c == command_id && ids.len() < BATCH) {
                Some((_, ids)) => ids.push(id.clone()),
                None => requests.push((command_id.to_owned(), vec![id.clone()])),
            }
        }
        let mut next = release.clone();
        next.stopping = Some(stopping);
        return Err(Step::Cancel { requests, release: Box::new(next) });
    }
    let limit = stopping.since_ms.saturating_add(settings.settle_limit.as_millis() as u64);
    if !unfinished.is_empty() && now.millis() < limit {
        let mut next = release.clone();
        next.stopping = Some(stopping);
        return Err(match seen.holder.as_ref() != Some(&next) {
            true => Step::Record { release: Box::new(next), then: Some(Outcome::Waiting) },
            false => rest(Outcome::Waiting),
        });
    }
    stopping.unsettled = unfinished.iter().map(|(id, _)| id.to_string()).collect();
    let mut reason = stopping.reason.clone();
    if !stopping.unsettled.is_empty() {
        let names: Vec<&str> = stopping.unsettled.iter().take(5).map(String::as_str).collect();
        reason.push_str(&format!(
            "; {} hosts were still applying it after the settle limit of {} s: {}",
            stopping.unsettled.len(),
            settings.settle_limit.as_secs(),
            names.join(", ")
        ));
    }
    release.stopping = Some(stopping);
    Ok(reason)
}

/// A deploy to exactly `instances`: one fixed wave, claimed by this pass,
/// sent as soon as it is admitted.
pub fn targeted_release(
    settings: &FleetSettings,
    flakeref: Flakeref,
    revision: Option<Revision>,
    instances: Vec<String>,
    pass: &Pass,
) -> Release {
    let mut release =
        new_release(settings, pass.fresh_id.clone(), flakeref, revision, ReleaseKind::Targeted, None, pass.now());
    release.status = ReleaseStatus::InProgress;
    let fleet_size = Some(instances.len());
    release.rollout = Some(Rollout { fleet_size, waves: vec![Wave::new(instances, &pass.claim)], fixed: true });
    release
}

/// A release that puts `good`'s flakeref back on exactly `instances` (a fixed
/// wave, claimed by this pass, none when empty): an automatic rollback, or a
/// repair.
fn put_back(
    good: &Release,
    kind: ReleaseKind,
    instances: Vec<String>,
    settings: &FleetSettings,
    pass: &Pass,
) -> Release {
    let rollback_of = (kind == ReleaseKind::Rollback).then(|| good.id.clone());
    let flakeref = good.flakeref.clone();
    let mut release =
        new_release(settings, pass.fresh_id.clone(), flakeref, good.revision.clone(), kind, rollback_of, pass.now());
    release.status = ReleaseStatus::InProgress;
    let fleet_size = Some(instances.len());
    let waves = if instances.is_empty() { vec![] } else { vec![Wave::new(instances, &pass.claim)] };
    release.rollout = Some(Rollout { fleet_size, waves, fixed: true });
    release
}

/// Records the hosts a put-back release passes over; its tolerance counts
/// them among the hosts it was meant for.
fn pass_over(release: &mut Release, passed: Vec<Unreachable>) {
    if let Some(rollout) = release.rollout.as_mut() {
        rollout.fleet_size = rollout.fleet_size.map(|n| n + passed.len());
    }
    release.unreachable = passed;
}

/// A free fleet: put its good release where it is missing (launch into free
/// slots) or has drifted (apply it again).
fn plan_repair_step(fleet: &FleetState, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let Some(good_id) = &fleet.last_good_release else {
        let why = "no release has succeeded on this fleet yet: nothing to repair towards";
        return rest_because(Outcome::Idle, why.into());
    };
    let Some(good) = &seen.good else {
        return Step::Observe(Need::GoodRelease(good_id.clone()));
    };
    if let Err(refused) = settings.allowed_flakes.check(&good.flakeref) {
        return rest_because(
            Outcome::Idle,
            format!("the last good release {good_id} cannot be repaired towards: {refused}"),
        );
    }
    let Some(instances) = &seen.instances else {
        return Step::Observe(Need::FleetInstances);
    };
    let Some(flakerefs) = &seen.tagged_flakerefs else {
        return Step::Observe(Need::TaggedReleases(tagged_releases(instances)));
    };
    // A deploy to named instances that succeeded, newer than the good
    // release, stays on its hosts until a fleet-wide release supersedes it;
    // one that failed never does.
    let kept = |id: &ReleaseId| seen.tagged_targeted.get(id) == Some(&ReleaseStatus::Succeeded) && id > good_id;
    let mut repair = plan_repair(&settings.spec, instances, |id| flakerefs.get(id) == Some(&good.flakeref) || kept(id));
    // Drifted instances are applied to only while they are Online managed nodes.
    let passed = match reach::choose(&repair.reapply, repair.reapply.len(), &seen.nodes) {
        Choice::LookUp(ids) => return Step::Observe(Need::ManagedNodes(ids)),
        Choice::Chosen { online, passed } => {
            repair.reapply = online;
            passed
        }
    };
    if repair.is_empty() {
        if passed.is_empty() {
            return rest(Outcome::Idle);
        }
        let names: Vec<String> = passed.iter().take(5).map(Unreachable::to_string).collect();
        let why = format!("{} drifted instances are not Online managed nodes: {}", passed.len(), names.join(", "));
        return rest_because(Outcome::Idle, why);
    }
    let image = match (&seen.image, repair.launch.is_empty()) {
        (_, true) => Err(String::new()),
        (Some(image), false) => image.clone(),
        (None, false) => return Step::Observe(Need::Image),
    };
    if let (Err(why), true) = (&image, repair.reapply.is_empty()) {
        // No image, nothing to launch: said, with no release recorded each minute.
        return rest_because(Outcome::Idle, format!("{} instances missing but {why}", repair.launch.len()));
    }
    let mut release = put_back(good, ReleaseKind::Repair, repair.reapply.clone(), settings, pass);
    release.origin.requested_by = Some(format!("{BY_FLAKEFLEET} (drift repair)"));
    release.launches =
        repair.launch.iter().map(|slot| Launch { slot: *slot, instance_id: None, error: None }).collect();
    pass_over(&mut release, passed);
    Step::StartRepair { repair: Box::new(release), plan: repair }
}

#[cfg(test)]
mod tests;
