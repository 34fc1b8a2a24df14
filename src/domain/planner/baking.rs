//! The Baking phase: a passed wave stays healthy for FLAKEFLEET_BAKE_SECONDS,
//! then its hosts run their health checks, before the next wave. The wave is
//! judged first on every pass (`judging`), so a late failure or an alarm
//! stops a baking wave too.

use super::*;

/// A passed wave bakes (FLAKEFLEET_BAKE_SECONDS): it stays healthy that long
/// after its last Success, then its hosts run their health checks again (the
/// document's `check` action, which changes nothing), and only when every one
/// passed does the next wave start. None: nothing to bake, or baked. Fixed
/// rollouts (rollbacks, repairs) put a known release back and do not bake.
pub(super) fn plan(
    release: &Release,
    rollout: &Rollout,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Result<Option<Step>, Stop> {
    let Some(wave) = rollout.current() else { return Ok(None) };
    if settings.rollout.bake.is_zero() || rollout.fixed {
        return Ok(None);
    }
    let Some(bake) = &wave.bake else {
        let baking = with_bake(release, Bake { healthy_since_ms: pass.now().millis(), checks: None });
        return Ok(Some(Step::Record { release: Box::new(baking), then: Some(Outcome::Waiting) }));
    };
    let Some(checks) = &bake.checks else {
        return staying_healthy(release, rollout, bake, seen, settings, pass).map(Some);
    };
    if checks.command_ids.len() < wave.batches().count() {
        return sending_checks(release, rollout, bake, checks, seen, settings, pass).map(Some);
    }
    judging_checks(release, rollout, bake, checks, seen, pass)
}

/// Baking: healthy until the bake is over, then the checks claimed, so one
/// invocation sends them.
fn staying_healthy(
    release: &Release,
    rollout: &Rollout,
    bake: &Bake,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Result<Step, Stop> {
    let now = pass.now();
    if now.millis() < bake.healthy_since_ms.saturating_add(settings.rollout.bake.as_millis() as u64) {
        if now >= release.deadline {
            let why = format!("the deadline {} passed while wave {} baked", release.deadline, rollout.waves.len());
            return Err(Stop::new(release.clone(), why));
        }
        return Ok(wait(release, seen));
    }
    let checks = Checks { claim: Claimed::new(&pass.claim, false), ..Checks::default() };
    let claimed = with_bake(release, Bake { checks: Some(checks), ..bake.clone() });
    Ok(Step::Record { release: Box::new(claimed), then: None })
}

/// Baked: the claimer sends the checks not sent yet (or takes a lapsed claim over).
fn sending_checks(
    release: &Release,
    rollout: &Rollout,
    bake: &Bake,
    checks: &Checks,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Result<Step, Stop> {
    if seen.log.checks_sent {
        return Ok(rest(Outcome::Waiting));
    }
    if pass.now() >= release.deadline {
        return Err(late(release, rollout, "before", "were sent"));
    }
    Ok(match turn(&checks.claim, settings, pass) {
        Turn::Send { .. } => Step::SendChecks,
        Turn::Wait => rest(Outcome::Waiting),
        Turn::TakeOver(claim) => {
            let taken = Checks { claim, ..checks.clone() };
            Step::Record {
                release: Box::new(with_bake(release, Bake { checks: Some(taken), ..bake.clone() })),
                then: None,
            }
        }
    })
}

/// The checks are out: any that failed stops the release; all passed ends the bake.
fn judging_checks(
    release: &Release,
    rollout: &Rollout,
    bake: &Bake,
    checks: &Checks,
    seen: &Observed,
    pass: &Pass,
) -> Result<Option<Step>, Stop> {
    let Some(wave) = rollout.current() else { return Ok(None) };
    let Some(reports) = &seen.check_reports else {
        return Ok(Some(Step::Observe(Need::CheckReports(checks.command_ids.clone()))));
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
        let checks = Checks { failed: kept, ..checks.clone() };
        return Err(Stop::new(with_bake(release, Bake { checks: Some(checks), ..bake.clone() }), why));
    }
    let done = reports.len() >= wave.instance_ids.len() && reports.iter().all(InstanceOutcome::is_finished);
    if !done {
        if pass.now() >= release.deadline {
            return Err(late(release, rollout, "while", "ran"));
        }
        return Ok(Some(wait(release, seen)));
    }
    Ok(None)
}

/// The release with its current wave's bake set to `bake`.
fn with_bake(release: &Release, bake: Bake) -> Release {
    let mut next = release.clone();
    if let Some(wave) = next.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
        wave.bake = Some(bake);
    }
    next
}

/// Waits for the next pass, storing the release first if it changed on this one.
fn wait(release: &Release, seen: &Observed) -> Step {
    match seen.holder.as_ref() != Some(release) {
        true => Step::Record { release: Box::new(release.clone()), then: Some(Outcome::Waiting) },
        false => rest(Outcome::Waiting),
    }
}

/// The deadline passed before, or while, the wave's checks ...
fn late(release: &Release, rollout: &Rollout, when: &str, what: &str) -> Stop {
    let waves = rollout.waves.len();
    let why = format!("the deadline {} passed {when} wave {waves}'s health checks {what}", release.deadline);
    Stop::new(release.clone(), why)
}

/// The check a host's verdict names (`flakefleet: health check NAME failed
/// …`, the document's words), if its name is one the document allows
/// (`[A-Za-z0-9_.-]{1,64}`): host output otherwise, which no reason repeats.
pub(super) fn failed_check_name(outcome: &InstanceOutcome) -> Option<&str> {
    let line = [&outcome.stderr_tail, &outcome.stdout_tail]
        .into_iter()
        .find_map(|t| t.lines().rev().find(|l| !l.trim().is_empty()))?;
    let name = line.strip_prefix("flakefleet: health check ")?.split(' ').next()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    (name.len() <= 64 && !name.is_empty() && name.chars().all(allowed)).then_some(name)
}
