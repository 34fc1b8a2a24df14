//! The Sending phase: the current wave's batches go out from the pass that
//! claimed it, and once a wave passed, the next one is chosen among Online
//! managed nodes (or the rollout ends).

use super::*;

/// A wave chosen and not fully sent (nothing holds it), or none chosen yet.
pub(super) fn plan(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let now = pass.now();
    let rollout = release.rollout.clone().unwrap_or_default();
    let Some(wave) = rollout.current() else {
        // A repair that only launched: its hosts' wave comes once they are Online.
        if rollout.fixed && !release.launches.is_empty() {
            return plan_next_wave(release.clone(), &rollout, seen, settings, pass);
        }
        return Ok(Step::Corrupt(format!("release {} is in progress without a wave", release.id)));
    };
    if seen.log.wave_sent {
        return Ok(rest(Outcome::Waiting));
    }
    match turn(&wave.claim, settings, pass) {
        // An abort stops sending: batches whose answer was lost are looked
        // for and adopted, then what was sent is judged and the release ends.
        Turn::Send { .. } if aborted(release).is_some() => {
            let why = aborted(release).unwrap_or_default();
            plan_unsent(release, &rollout, seen, pass, why)
        }
        // A send that keeps failing never holds the release past its deadline.
        Turn::Send { .. } if now >= release.deadline => {
            let why =
                format!("the deadline {} passed with wave {} not fully sent", release.deadline, rollout.waves.len());
            plan_unsent(release, &rollout, seen, pass, why)
        }
        Turn::Send { resume } => Ok(Step::SendWave { resume }),
        Turn::Wait => Ok(rest(Outcome::Waiting)),
        Turn::TakeOver(claim) => Ok(take_over(release, claim)),
    }
}

/// The current wave's claim, recorded as this pass's: only the writer that
/// wins that version-fenced write sends.
pub(super) fn take_over(release: &Release, claim: Claimed) -> Step {
    let mut taken = release.clone();
    if let Some(wave) = taken.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
        wave.claim = claim;
    }
    Step::Record { release: Box::new(taken), then: None }
}

/// The deadline passed (or an operator aborted) with the current wave not
/// fully sent, and this pass holds its claim: nothing more is sent, but a batch whose answer was lost
/// may have gone out, so the unsent batches are looked for by their comments
/// and adopted (their hosts are then awaited like any other) before the
/// release fails.
pub(super) fn plan_unsent(release: &Release, rollout: &Rollout, seen: &Observed, pass: &Pass, why: String) -> Planned {
    if let Some(step) = adopt_unsent(release, rollout, seen, pass) {
        return Ok(step);
    }
    let mut stopped = release.clone();
    if let Some(rollout) = stopped.rollout.as_mut() {
        rollout.judge_current(pass.now());
    }
    Err(Stop::new(stopped, why))
}

/// The current wave's unsent batches that an earlier claimer may have sent
/// after all (its answer lost, or it died before recording): looked for by
/// their comments, and the ones found recorded. None: none was sent.
pub(super) fn adopt_unsent(release: &Release, rollout: &Rollout, seen: &Observed, pass: &Pass) -> Option<Step> {
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

/// After a passed wave: the next one, or the end of the rollout.
pub(super) fn plan_next_wave(
    mut release: Release,
    rollout: &Rollout,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Planned {
    let running: &[String] = match (&seen.running, rollout.fixed) {
        (_, true) => &[],
        (Some(running), false) => running,
        (None, false) => return Ok(Step::Observe(Need::Running)),
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
            Err(need) => return Ok(Step::Observe(need)),
        },
        false => match next_online_wave(&mut release, &rollout, running, total, seen, settings) {
            Ok(next) => (next, Vec::new()),
            Err(need) => return Ok(Step::Observe(need)),
        },
    };
    if let Some(why) = reach::over_tolerance(&release, &settings.rollout, total) {
        release.rollout = Some(rollout);
        return Err(Stop::new(release, why));
    }
    if !next.is_empty() && !rollout.fixed {
        release.rollout = Some(rollout.clone());
        if let Some(step) = hold(&release, seen, settings, pass)? {
            return Ok(step);
        }
    }
    // No wave goes out after the deadline: a deploy may be waiting to settle
    // this release and take the fleet, and the hosts must be done with it.
    if !next.is_empty() && pass.now() >= release.deadline {
        release.rollout = Some(rollout);
        let why = format!("the deadline {} passed before the next wave was sent", release.deadline);
        return Err(Stop::new(release, why));
    }
    if next.is_empty() && !booting.is_empty() {
        release.rollout = Some(rollout);
        if pass.now() >= release.deadline {
            let why = format!(
                "launched instances never came up as Online SSM managed nodes by the deadline {}: {}",
                release.deadline,
                booting.join(", ")
            );
            return Err(Stop::new(release, why));
        }
        // Still booting: asked again on the next pass.
        return Ok(match seen.holder.as_ref() != Some(&release) {
            true => Step::Record { release: Box::new(release), then: Some(Outcome::Waiting) },
            false => rest(Outcome::Waiting),
        });
    }
    if next.is_empty() {
        release.rollout = Some(rollout);
        return Ok(end(release));
    }
    if rollout.fixed {
        rollout.fleet_size = rollout.fleet_size.map(|n| n + next.len());
    }
    rollout.waves.push(Wave::new(next, &pass.claim));
    release.rollout = Some(rollout);
    // Recorded first: the write that wins the claim is the one that sends.
    Ok(Step::Record { release: Box::new(release), then: None })
}

/// A paused rollout holds its next wave (an automatic pause first pauses
/// it), until a resume, or until it has been paused too long. None: not held.
fn hold(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Result<Option<Step>, Stop> {
    if let Some(why) = control::paused_too_long(release, settings, pass.now()) {
        return Err(Stop::new(release.clone(), why));
    }
    let waves = release.rollout.as_ref().map_or(0, |r| r.waves.len());
    if let Some(paused) = control::auto_pause(release, waves, settings, pass.now()) {
        return Ok(Some(Step::Record { release: Box::new(paused), then: Some(Outcome::Paused) }));
    }
    if !control::is_paused(release) {
        return Ok(None);
    }
    Ok(Some(match seen.holder.as_ref() != Some(release) {
        true => Step::Record { release: Box::new(release.clone()), then: Some(Outcome::Paused) },
        false => rest(Outcome::Paused),
    }))
}

/// No wave left: the rollout ends, succeeded or failed by what its hosts
/// reported and its launches answered.
fn end(mut release: Release) -> Step {
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
    settle(release, Outcome::Finished)
}

/// A repair's next wave: the hosts it launched that are Online managed nodes
/// now and not yet sent to, and those still booting. A launched host counts
/// as repaired only once an apply of the release reports Success on it over
/// SSM, like any other host (its user data applied the release already, so
/// that apply is a cheap no-op), and is tagged with the release only then.
pub(super) fn launched_online(
    release: &Release,
    rollout: &Rollout,
    seen: &Observed,
) -> Result<(Vec<String>, Vec<String>), Need> {
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
pub(super) fn next_online_wave(
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
