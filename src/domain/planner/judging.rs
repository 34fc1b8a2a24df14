//! The Judging phase (and the judging half of Baking, and of a pause between
//! waves): what the hosts reported is merged into the release, hosts that
//! converged are tagged, and the wave (or the one command) passes, keeps
//! running, or stops the release.

use super::judge::Verdict;
use super::*;

/// Everything sent: judge what came back.
pub(super) fn plan(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let Some(rollout) = &release.rollout else {
        return plan_at_once(release, seen, settings, pass);
    };
    if seen.log.wave_sent && rollout.current().is_some_and(|w| w.claimed_by(&pass.claim)) {
        return Ok(rest(Outcome::WaveStarted));
    }
    plan_wave(release, rollout, seen, settings, pass)
}

/// The release with its sent waves' reports merged in, or the step that
/// asks for them or tags the hosts that converged since the last look.
pub(super) fn refreshed_waves(release: &Release, rollout: &Rollout, seen: &Observed) -> Result<Release, Step> {
    let batches = batches_to_report(rollout, &release.instances);
    let reported: &[InstanceOutcome] = match &seen.wave_reports {
        Some(reports) => reports,
        None if batches.is_empty() => &[],
        None => return Err(Step::Observe(Need::WaveReports(batches))),
    };
    let merged = merge_outcomes(&release.instances, reported);
    let fresh = newly_converged(&release.instances, &merged);
    if !fresh.is_empty() && !seen.log.tagged {
        return Err(Step::Tag(fresh));
    }
    let mut next = release.clone();
    next.instances = merged;
    Ok(next)
}

/// The same for the one command to the fleet's tag, with SSM's verdict on it.
pub(super) fn refreshed_command(release: &Release, seen: &Observed, pass: &Pass) -> Result<(Release, Verdict), Step> {
    let Some(command_id) = &release.command_id else {
        return Err(Step::Corrupt(format!("release {} is in progress without a command id", release.id)));
    };
    let Some(report) = &seen.report else {
        return Err(Step::Observe(Need::Report(command_id.clone())));
    };
    let mut verdict = judge_command(report, &release.instances, release.deadline, pass.now());
    trim_outputs(&mut verdict.instances);
    let fresh = newly_converged(&release.instances, &verdict.instances);
    if !fresh.is_empty() && !seen.log.tagged {
        return Err(Step::Tag(fresh));
    }
    let mut next = release.clone();
    next.instances = verdict.instances.clone();
    Ok((next, verdict))
}

/// The current wave is out: judge it, then stop, wait, bake, start the next or finish.
fn plan_wave(release: &Release, rollout: &Rollout, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let mut next = match refreshed_waves(release, rollout, seen) {
        Ok(next) => next,
        Err(step) => return Ok(step),
    };
    let changed = next.instances != release.instances;
    let total = rollout.fleet_size.unwrap_or(rollout.targeted().count() + release.unreachable.len());
    let alarm = match alarms_firing(&next, seen, settings) {
        Ok(alarm) => alarm,
        Err(need) => return Ok(Step::Observe(need)),
    };
    let verdict = match judge_wave(rollout, &next.instances, &settings.rollout) {
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
        return Ok(match changed {
            true => Step::Record { release: Box::new(next), then: Some(Outcome::Waiting) },
            false => rest(Outcome::Waiting),
        });
    }
    // A verdict dates the wave (for the timeline), whatever it leads to.
    let mut judged = rollout.clone();
    judged.judge_current(pass.now());
    next.rollout = Some(judged.clone());
    match verdict {
        WaveVerdict::Stop(reason) => Err(Stop::new(next, reason)),
        _ => match baking::plan(&next, &judged, seen, settings, pass)? {
            Some(step) => Ok(step),
            None => sending::plan_next_wave(next, &judged, seen, settings, pass),
        },
    }
}

/// The one command to the whole tag: judged when SSM says it ended.
fn plan_at_once(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let (mut next, verdict) = match refreshed_command(release, seen, pass) {
        Ok(found) => found,
        Err(step) => return Ok(step),
    };
    let changed = next.instances != release.instances;
    if let Some(why) = aborted(&next) {
        return Err(Stop::new(next, why));
    }
    match alarms_firing(&next, seen, settings) {
        Err(need) => return Ok(Step::Observe(need)),
        Ok(Some(why)) => return Err(Stop::new(next, why)),
        Ok(None) => {}
    }
    if verdict.status == ReleaseStatus::Succeeded {
        if let Some(why) = reach::over_tolerance(&next, &settings.rollout, next.instances.len()) {
            return Err(Stop::new(next, why));
        }
    }
    Ok(match verdict.status {
        ReleaseStatus::Succeeded | ReleaseStatus::NoInstances => {
            next.status = verdict.status;
            next.status_reason =
                verdict.reason.or_else(|| Some(reach::describe_unreachable(&next)).filter(|s| !s.is_empty()));
            settle(next, Outcome::Finished)
        }
        ReleaseStatus::Failed => return Err(Stop::new(next, verdict.reason.unwrap_or_default())),
        _ if changed => Step::Record { release: Box::new(next), then: Some(Outcome::Waiting) },
        _ => rest(Outcome::Waiting),
    })
}
