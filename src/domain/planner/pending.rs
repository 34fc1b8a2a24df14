//! The Pending phase: a release's first command, the canary of a staged
//! rollout or the one command to the fleet's tag, sent once by its claimer.

use super::*;

/// A pending release: its first command is not confirmed sent.
pub(super) fn plan(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let now = pass.now();
    // A release recorded before claims were: claimed by nobody at its creation.
    let claim =
        release.claim.clone().unwrap_or(Claimed { claimed_ms: release.created_at.millis(), ..Claimed::default() });
    let resume = match turn(&claim, settings, pass) {
        Turn::Send { resume } => resume,
        Turn::Wait => return Ok(rest(Outcome::Waiting)),
        Turn::TakeOver(claim) => {
            let mut taken = release.clone();
            taken.claim = Some(claim);
            return Ok(Step::Record { release: Box::new(taken), then: None });
        }
    };
    if let Some(answer) = &seen.log.first_send {
        return Ok(match answer {
            Ok(command_id) => record_first(release, command_id, seen, settings, pass),
            Err(reason) => {
                let mut failed = release.clone();
                failed.status = ReleaseStatus::Failed;
                failed.status_reason = Some(format!("SSM refused the apply command: {reason}"));
                settle(failed, Outcome::Dispatched)
            }
        });
    }
    let (target, comment) = match &release.rollout {
        None => (CommandTarget::Tag(settings.target.clone()), release.command_comment()),
        Some(_) => match canary_choice(seen, settings) {
            Ok((canary, _)) => (CommandTarget::Instances(canary), release.batch_comment(0, 0)),
            Err(need) => return Ok(Step::Observe(need)),
        },
    };
    if resume {
        match &seen.sent_before {
            None => {
                let since = release.created_at.minus(COMMAND_LOOKBACK);
                return Ok(Step::Observe(Need::SentBefore { comment, since }));
            }
            Some(Some(command_id)) => return Ok(record_first(release, command_id, seen, settings, pass)),
            Some(None) => {}
        }
    }
    if now >= release.deadline {
        return Err(Stop::new(release.clone(), "the deadline passed before the apply command was sent"));
    }
    let empty = match &target {
        CommandTarget::Instances(ids) => ids.is_empty(),
        CommandTarget::Tag(_) => match seen.any_running {
            Some(any) => !any,
            None => return Ok(Step::Observe(Need::AnyRunning)),
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
        return Ok(settle(none, Outcome::Dispatched));
    }
    Ok(Step::SendFirst(ApplyCommand { flakeref: release.flakeref.clone(), target, comment, check_only: false }))
}

/// The canary: the first `canary` Online managed nodes among the sorted
/// running instances, and those passed over before them.
pub(super) fn canary_choice(
    seen: &Observed,
    settings: &FleetSettings,
) -> Result<(Vec<String>, Vec<Unreachable>), Need> {
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
pub(super) fn record_first(
    release: &Release,
    command_id: &str,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Step {
    let sent = first_sent(release, command_id, seen, settings, pass);
    Step::Record { release: Box::new(sent), then: Some(Outcome::Dispatched) }
}

/// The release with its first command recorded: in progress from now on.
pub(super) fn first_sent(
    release: &Release,
    command_id: &str,
    seen: &Observed,
    settings: &FleetSettings,
    pass: &Pass,
) -> Release {
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
