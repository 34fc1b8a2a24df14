//! How a release that went wrong ends: its unfinished invocations settled,
//! the tags of the hosts it left unknown forgotten, then an automatic
//! rollback, a halt or a plain failure.

use super::*;

/// Ends a release that went wrong: an automatic rollback when one is safe and
/// allowed, a halted fleet when a rollback itself failed or there is nothing
/// to go back to, a plain failure otherwise. Never loops: a rollback is never
/// rolled back.
pub(super) fn plan_failure(
    mut release: Release,
    reason: String,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Step {
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
    if !unknown.is_empty() && !seen.log.untagged {
        return Step::Untag(unknown);
    }
    match ending(&release, &reason, settings) {
        Ending::Fail => failed(release),
        Ending::Halt(why) => halt(release, why),
        Ending::RollBack => roll_back(release, reason, seen, settings, pass),
    }
}

/// How a failed release ends, by its kind and the fleet's policy.
enum Ending {
    Fail,
    Halt(String),
    RollBack,
}

fn ending(release: &Release, reason: &str, settings: &FleetSettings) -> Ending {
    // An operator's abort rolls back when asked to (or when automatic
    // rollback is on), and otherwise leaves the fleet as it is, halted.
    let abort = release.control.as_ref().and_then(|c| c.aborted.as_ref());
    let auto = settings.rollout.auto_rollback;
    match release.kind {
        // The fleet's good release did not take: report it, retry next time.
        ReleaseKind::Repair => Ending::Fail,
        ReleaseKind::Rollback => Ending::Halt(format!("rollback {} failed: {reason}", release.id)),
        ReleaseKind::Deploy | ReleaseKind::Targeted if abort.is_some_and(|a| !a.rollback) && !auto => {
            Ending::Halt(format!("release {} was {reason}; the fleet is left as it is", release.id))
        }
        ReleaseKind::Deploy | ReleaseKind::Targeted if !auto && abort.is_none() => Ending::Fail,
        // A deploy to named instances rolls back to the fleet's good release too.
        ReleaseKind::Deploy | ReleaseKind::Targeted => Ending::RollBack,
    }
}

fn halt(mut release: Release, why: String) -> Step {
    release.status = ReleaseStatus::Halted;
    Step::Settle { settlement: Box::new(lease::settlement(release, Some(why), None)), outcome: Outcome::Finished }
}

fn failed(mut release: Release) -> Step {
    release.status = ReleaseStatus::Failed;
    settle(release, Outcome::Finished)
}

/// Settles the failed release handing the fleet to a rollback of the last
/// good release to the hosts it reached (those that are Online managed
/// nodes); halts when there is nothing safe to go back to.
fn roll_back(mut release: Release, reason: String, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
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

/// After a settlement handed the fleet to an automatic rollback: its first
/// wave, claimed by this pass when it was created, goes out from this pass,
/// once; then the pass rests with what it came to.
pub(super) fn plan_handover(handover: &Handover, pass: &Pass) -> Step {
    let wave = handover.release.rollout.as_ref().and_then(Rollout::current);
    match wave.is_some_and(|w| !w.fully_sent() && w.claimed_by(&pass.claim)) && !handover.sent {
        true => Step::SendHandover,
        false => rest(handover.outcome),
    }
}

/// The hosts a release reached that did not report Success.
pub(super) fn unknown_hosts(release: &Release) -> Vec<String> {
    let converged: Vec<&str> =
        release.instances.iter().filter(|i| i.converged()).map(|i| i.instance_id.as_str()).collect();
    release.reached_instances().into_iter().filter(|id| !converged.contains(&id.as_str())).collect()
}

/// Why a deploy rolling out (or baking) stops, if one of the rollback alarms
/// it did not ignore at its admission is in ALARM; the alarms' states are
/// asked for first. Rollbacks and repairs put a known release back and are
/// never stopped by an alarm.
pub(super) fn alarms_firing(
    release: &Release,
    seen: &Observed,
    settings: &FleetSettings,
) -> Result<Option<String>, Need> {
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
pub(super) fn aborted(release: &Release) -> Option<String> {
    let aborted = release.control.as_ref()?.aborted.as_ref()?;
    Some(format!("aborted by {} at {}", aborted.by, Timestamp::from_millis(aborted.at_ms)))
}

/// Before a failed release ends, and before any rollback reaches its hosts,
/// its unfinished invocations are settled: those not started yet (Pending,
/// Delayed) are cancelled, and those running are awaited up to the settle
/// limit, since killing an activation halfway can leave a host half-switched.
/// Answers the reason to end with once they are settled (naming the hosts
/// still running at the limit), or the step that settles them.
pub(super) fn settle_invocations(
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
        .filter(|id| !stopping.cancelled.contains(id) && !seen.log.cancels_asked.contains(id))
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
pub(super) fn put_back(
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
pub(super) fn pass_over(release: &mut Release, passed: Vec<Unreachable>) {
    if let Some(rollout) = release.rollout.as_mut() {
        rollout.fleet_size = rollout.fleet_size.map(|n| n + passed.len());
    }
    release.unreachable = passed;
}
