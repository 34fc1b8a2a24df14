//! The planner's rules as tables: (what is known, now) → the next step. No
//! tokio, no fakes: plain values in, one step out.

use super::*;
use crate::domain::fixtures::{self, GOOD, NEXT, T0};
use crate::domain::model::flakeref::FlakeAllowlist;
use crate::domain::model::fleet::{Halt, InstanceState, Lease, MachineImage};
use crate::domain::model::outcome::tests::outcome;
use crate::domain::model::outcome::PingStatus;
use crate::domain::model::rollout::{Rate, BATCH};

mod control;
mod failure;
mod judging;
mod reach;
mod repair;
mod round_three;
mod sending;

fn secs(n: u64) -> Timestamp {
    T0.plus(Duration::from_secs(n))
}

/// The shared fleet, wanting 3 instances.
fn settings(mode: RolloutMode) -> FleetSettings {
    let mut settings = fixtures::settings(fixtures::policy(mode, true));
    settings.spec.desired_capacity = 3;
    settings
}

fn image() -> MachineImage {
    MachineImage { id: "ami-1".into(), root_device: "/dev/xvda".into(), root_snapshot_gib: Some(8) }
}

fn id(n: u64) -> ReleaseId {
    ReleaseId::generate(Timestamp::from_millis(n), 0)
}

/// This pass, at `at`, claiming as "me".
fn pass(at: Timestamp) -> Pass {
    Pass { claim: Claim::new("me", at), fresh_id: id(99) }
}

fn release(settings: &FleetSettings, flakeref: &str, kind: ReleaseKind) -> Release {
    new_release(settings, id(1), Flakeref::parse(flakeref).unwrap(), None, kind, None, T0)
}

/// `release`, claimed for its first command by `by` at T0 (`takeover`: taken over).
fn claimed(mut release: Release, by: &str, takeover: bool) -> Release {
    release.claim = Some(Claimed::new(&Claim::new(by, T0), takeover));
    release
}

/// A staged release whose waves (of these instances each) are all sent,
/// the last claimed by `by` at T0.
fn staged(waves: &[&[&str]], by: &str) -> Release {
    let mut r = release(&settings(RolloutMode::Staged), NEXT, ReleaseKind::Deploy);
    r.status = ReleaseStatus::InProgress;
    let rollout = r.rollout.as_mut().unwrap();
    for ids in waves {
        let mut wave = Wave::new(ids.iter().map(|s| s.to_string()).collect(), &Claim::new(by, T0));
        wave.command_ids = (0..ids.len().div_ceil(BATCH)).map(|b| format!("cmd-{}-{b}", rollout.waves.len())).collect();
        rollout.waves.push(wave);
    }
    r
}

/// `unsent`'s last wave claimed by this pass ("me"), and the same taken over
/// by this pass at 120 s.
fn mine_and_taken(unsent: &Release) -> (Release, Release) {
    let mut mine = unsent.clone();
    mine.rollout.as_mut().unwrap().waves.last_mut().unwrap().claim.claimed_by = "me".into();
    let mut taken = unsent.clone();
    taken.rollout.as_mut().unwrap().waves.last_mut().unwrap().claim = Claimed::new(&Claim::new("me", secs(120)), true);
    (mine, taken)
}

/// What a reconcile knows once it has read the fleet (no good release yet)
/// and the release holding it. The release tags of hosts a failure leaves
/// unknown count as forgotten already (`a_failed_release_forgets_...` has
/// that step), so the tables read on to what follows.
fn holding(release: Release) -> Observed {
    Observed {
        fleet: Some(FleetState::default()),
        holder: Some(release),
        nodes: all_online(),
        log: PassLog { untagged: true, ..PassLog::default() },
        ..Observed::default()
    }
}

/// Every instance id the tables use (`i-0`, `i-00`, …), an Online managed node.
fn all_online() -> NodeStatuses {
    (0..100).flat_map(|n| [format!("i-{n}"), format!("i-{n:02}")]).map(|id| (id, PingStatus::Online)).collect()
}

/// A step in a few words, for tables.
fn brief(step: &Step) -> String {
    match step {
        Step::Observe(need) => format!("observe {need:?}"),
        Step::Rest { outcome, skipped: None } => format!("rest {outcome:?}"),
        Step::Rest { outcome, skipped: Some(why) } => format!("rest {outcome:?}: {why}"),
        Step::SendFirst(command) => format!("send {:?} {}", command.target, command.comment),
        Step::SendWave { resume } => format!("send wave{}", if *resume { " resuming" } else { "" }),
        Step::SendChecks => "send checks".into(),
        Step::SendHandover => "send the handover's wave".into(),
        Step::Launch { image } => format!("launch {image:?}"),
        Step::Tag(ids) => format!("tag {ids:?}"),
        Step::Untag(ids) => format!("untag {ids:?}"),
        Step::Record { release, then } => format!("record {} then {then:?}", release.status.as_str()),
        Step::Cancel { requests, .. } => format!("cancel {requests:?}"),
        Step::Settle { settlement, outcome } => {
            let change = settlement.fleet.clone().unwrap_or_default();
            let mut text = format!("settle {} as {outcome:?}", settlement.release.status.as_str());
            if change.halt.is_some() {
                text.push_str(" halting");
            }
            if let Some(next) = &change.next {
                text.push_str(&format!(" handing over to a {}", next.release.kind.as_str()));
            }
            text
        }
        Step::StartRepair { plan, .. } => format!("repair launch {:?} reapply {:?}", plan.launch, plan.reapply),
        Step::Corrupt(what) => format!("corrupt: {what}"),
    }
}

fn check(table: Vec<(&str, Observed, Timestamp, &str)>, settings: &FleetSettings) {
    for (case, seen, at, expected) in table {
        let step = brief(&plan(&seen, settings, &pass(at)));
        assert!(step.starts_with(expected), "{case}: got {step:?}, expected {expected:?}");
    }
}

/// Statuses for a few instances, the rest unknown.
fn nodes(pairs: &[(&str, &str)]) -> NodeStatuses {
    pairs.iter().map(|(id, status)| (id.to_string(), PingStatus::parse(status))).collect()
}
