//! An operator steering a rollout: pause, resume, abort. Each is a rule on
//! the release as recorded: applied (a new release to store), a no-op (it is
//! so already: every action is idempotent), or refused with what to do
//! instead. The automatic pause before each wave is decided here too.

use crate::domain::model::fleet::FleetSettings;
use crate::domain::model::release::{
    Aborted, Control, ControlAction, OperatorAction, Paused, Release, ReleaseKind, ReleaseStatus,
};
use crate::domain::model::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRequest {
    /// Hold the next wave; waves in flight finish.
    Pause,
    /// Let the next wave start (after an automatic pause: the promote).
    Resume,
    /// Stop sending; roll back what the release reached when `rollback` or
    /// automatic rollback is on, else halt the fleet.
    Abort { rollback: bool },
}

impl ControlRequest {
    pub fn action(self) -> ControlAction {
        match self {
            Self::Pause => ControlAction::Pause,
            Self::Resume => ControlAction::Resume,
            Self::Abort { .. } => ControlAction::Abort,
        }
    }
}

/// What a request does to a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Store this (the release with the action recorded).
    Changed(Box<Release>),
    /// It is so already.
    Unchanged,
}

/// Applies `request` by `by` at `now`, or says why the release does not allow it.
pub fn apply(
    release: &Release,
    request: ControlRequest,
    by: &str,
    settings: &FleetSettings,
    now: Timestamp,
) -> Result<Applied, String> {
    let verb = request.action().as_str();
    let id = &release.id;
    match release.status {
        ReleaseStatus::InProgress => {}
        ReleaseStatus::Pending => {
            return Err(format!(
                "release {id} has not started yet (its first command is not confirmed sent); try again in a few seconds"
            ))
        }
        done => return Err(format!("release {id} is {}: there is no rollout to {verb}", done.as_str())),
    }
    if release.kind == ReleaseKind::Repair {
        return Err(format!("release {id} is a repair: it is not steered, and ends by itself"));
    }
    let control = release.control.clone().unwrap_or_default();
    let staged = release.rollout.as_ref().is_some_and(|r| !r.fixed);
    if let Some(aborted) = &control.aborted {
        return match request {
            ControlRequest::Abort { .. } => Ok(Applied::Unchanged),
            _ => Err(format!("release {id} was aborted by {} and is ending; there is nothing to {verb}", aborted.by)),
        };
    }
    if !matches!(request, ControlRequest::Abort { .. }) {
        if !staged {
            return Err(format!(
                "release {id} is not a staged rollout (one command, or a rollback's one wave): it has no next wave to {verb}; abort it instead"
            ));
        }
        if let Some(stopping) = &release.stopping {
            return Err(format!("release {id} is stopping ({}): there is nothing to {verb}", stopping.reason));
        }
    }
    let mut next = release.clone();
    let mut control = control;
    let waves = release.rollout.as_ref().map_or(0, |r| r.waves.len());
    match request {
        ControlRequest::Pause if control.paused.is_some() => return Ok(Applied::Unchanged),
        ControlRequest::Pause => pause(&mut next, &mut control, by, false, settings, now),
        ControlRequest::Resume => match control.paused.take() {
            None => return Ok(Applied::Unchanged),
            Some(paused) => next.deadline = resumed_deadline(&paused, &mut control, settings, now),
        },
        ControlRequest::Abort { rollback } => {
            // The pause ends with the rollout; its time counts as for a resume.
            if let Some(paused) = control.paused.take() {
                next.deadline = resumed_deadline(&paused, &mut control, settings, now);
            }
            control.aborted = Some(Aborted { at_ms: now.millis(), by: by.to_owned(), rollback });
        }
    }
    control.actions.push(OperatorAction { action: request.action(), by: by.to_owned(), at_ms: now.millis(), waves });
    next.control = Some(control);
    Ok(Applied::Changed(Box::new(next)))
}

/// The automatic pause before wave `waves` (counting from 0, the canary):
/// with FLAKEFLEET_PAUSE_BEFORE_WAVES, a rollout holds before each wave after
/// the canary until a resume taken at that point promotes it.
pub fn auto_pause(release: &Release, waves: usize, settings: &FleetSettings, now: Timestamp) -> Option<Release> {
    let control = release.control.clone().unwrap_or_default();
    let promoted = control.actions.iter().any(|a| a.action == ControlAction::Resume && a.waves >= waves);
    if !settings.rollout.pause_before_waves || waves == 0 || promoted || control.paused.is_some() {
        return None;
    }
    let mut next = release.clone();
    let mut control = control;
    pause(&mut next, &mut control, "flakefleet (FLAKEFLEET_PAUSE_BEFORE_WAVES)", true, settings, now);
    let by = control.paused.as_ref().map(|p| p.by.clone()).unwrap_or_default();
    control.actions.push(OperatorAction { action: ControlAction::AutoPause, by, at_ms: now.millis(), waves });
    next.control = Some(control);
    Some(next)
}

/// A paused release past its deadline: paused longer than the longest pause.
/// Whether an operator (or an automatic pause) holds the rollout now.
pub fn is_paused(release: &Release) -> bool {
    release.control.as_ref().is_some_and(|c| c.paused.is_some())
}

pub fn paused_too_long(release: &Release, settings: &FleetSettings, now: Timestamp) -> Option<String> {
    let paused = release.control.as_ref()?.paused.as_ref()?;
    (now >= release.deadline).then(|| {
        format!(
            "paused too long: paused by {} at {}, and the pauses of one release may last {} s in all (FLAKEFLEET_MAX_PAUSE_SECONDS)",
            paused.by,
            Timestamp::from_millis(paused.since_ms),
            settings.rollout.max_pause.as_secs()
        )
    })
}

/// Pauses: the deadline moves out by what is left of the longest pause.
fn pause(
    next: &mut Release,
    control: &mut Control,
    by: &str,
    automatic: bool,
    settings: &FleetSettings,
    now: Timestamp,
) {
    let left = (settings.rollout.max_pause.as_millis() as u64).saturating_sub(control.paused_ms);
    control.paused =
        Some(Paused { since_ms: now.millis(), by: by.to_owned(), deadline_ms: next.deadline.millis(), automatic });
    next.deadline = Timestamp::from_millis(next.deadline.millis().saturating_add(left));
}

/// Ends a pause: the deadline is the one before it plus the time paused, the
/// time counted against the longest pause.
fn resumed_deadline(paused: &Paused, control: &mut Control, settings: &FleetSettings, now: Timestamp) -> Timestamp {
    let left = (settings.rollout.max_pause.as_millis() as u64).saturating_sub(control.paused_ms);
    let elapsed = now.millis().saturating_sub(paused.since_ms).min(left);
    control.paused_ms += elapsed;
    Timestamp::from_millis(paused.deadline_ms.saturating_add(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{policy, settings};
    use crate::domain::model::rollout::{RolloutMode, Wave};
    use crate::domain::planner::new_release;

    const T0: u64 = 1_000_000;

    fn staged(pause_before_waves: bool) -> FleetSettings {
        let mut s = settings(policy(RolloutMode::Staged, true));
        s.rollout.pause_before_waves = pause_before_waves;
        s.rollout.max_pause = std::time::Duration::from_secs(100);
        s
    }

    fn rolling_out(settings: &FleetSettings) -> Release {
        let id = crate::domain::model::ids::ReleaseId::generate(Timestamp::from_millis(T0), 1);
        let flakeref = crate::domain::model::flakeref::Flakeref::parse("AcmeCorp/infra/=1.0.0#x").unwrap();
        let mut r = new_release(settings, id, flakeref, None, ReleaseKind::Deploy, None, Timestamp::from_millis(T0));
        r.status = ReleaseStatus::InProgress;
        r.rollout.as_mut().unwrap().waves = vec![Wave { instance_ids: vec!["i-1".into()], ..Wave::default() }];
        r
    }

    fn changed(applied: Result<Applied, String>) -> Release {
        match applied {
            Ok(Applied::Changed(r)) => *r,
            other => panic!("not changed: {other:?}"),
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(T0 + ms)
    }

    #[test]
    fn a_pause_moves_the_deadline_out_and_a_resume_back_by_the_time_paused() {
        let s = staged(false);
        let r = rolling_out(&s);
        let deadline = r.deadline.millis();
        let paused = changed(apply(&r, ControlRequest::Pause, "ops", &s, at(1_000)));
        assert_eq!(paused.deadline.millis(), deadline + 100_000, "out by the longest pause");
        assert_eq!(apply(&paused, ControlRequest::Pause, "ops", &s, at(2_000)), Ok(Applied::Unchanged));
        let resumed = changed(apply(&paused, ControlRequest::Resume, "lead", &s, at(31_000)));
        assert_eq!(resumed.deadline.millis(), deadline + 30_000, "by the 30 s it was paused");
        assert_eq!(apply(&resumed, ControlRequest::Resume, "lead", &s, at(32_000)), Ok(Applied::Unchanged));
        // A second pause has only what is left of the longest pause.
        let again = changed(apply(&resumed, ControlRequest::Pause, "ops", &s, at(40_000)));
        assert_eq!(again.deadline.millis(), deadline + 30_000 + 70_000);
        let actions: Vec<(&str, &str)> =
            again.control.as_ref().unwrap().actions.iter().map(|a| (a.action.as_str(), a.by.as_str())).collect();
        assert_eq!(actions, [("pause", "ops"), ("resume", "lead"), ("pause", "ops")]);
        let just_before = Timestamp::from_millis(again.deadline.millis() - 1);
        assert!(paused_too_long(&again, &s, just_before).is_none());
        let why = paused_too_long(&again, &s, again.deadline).unwrap();
        assert!(why.starts_with("paused too long: paused by ops"), "{why}");
        assert!(paused_too_long(&resumed, &s, again.deadline).is_none(), "only while paused");
    }

    #[test]
    fn only_a_staged_rollout_in_progress_is_paused_and_an_abort_ends_every_other_action() {
        let s = staged(false);
        let r = rolling_out(&s);
        let mut done = r.clone();
        done.status = ReleaseStatus::Succeeded;
        for request in [ControlRequest::Pause, ControlRequest::Resume, ControlRequest::Abort { rollback: false }] {
            assert!(apply(&done, request, "ops", &s, at(1)).unwrap_err().contains("is succeeded"));
        }
        let mut fixed = r.clone();
        fixed.rollout.as_mut().unwrap().fixed = true;
        assert!(apply(&fixed, ControlRequest::Pause, "ops", &s, at(1)).unwrap_err().contains("abort it instead"));
        assert!(matches!(
            apply(&fixed, ControlRequest::Abort { rollback: true }, "ops", &s, at(1)),
            Ok(Applied::Changed(_))
        ));
        let mut repair = r.clone();
        repair.kind = ReleaseKind::Repair;
        assert!(apply(&repair, ControlRequest::Abort { rollback: false }, "ops", &s, at(1))
            .unwrap_err()
            .contains("repair"));

        let paused = changed(apply(&r, ControlRequest::Pause, "ops", &s, at(1_000)));
        let aborted = changed(apply(&paused, ControlRequest::Abort { rollback: true }, "lead", &s, at(11_000)));
        let control = aborted.control.as_ref().unwrap();
        assert!(control.paused.is_none(), "the pause ends with the rollout");
        assert_eq!(aborted.deadline.millis(), r.deadline.millis() + 10_000);
        assert_eq!(control.aborted.as_ref().map(|a| (a.by.as_str(), a.rollback)), Some(("lead", true)));
        assert_eq!(
            apply(&aborted, ControlRequest::Abort { rollback: false }, "x", &s, at(12_000)),
            Ok(Applied::Unchanged)
        );
        assert!(apply(&aborted, ControlRequest::Resume, "x", &s, at(12_000)).unwrap_err().contains("aborted by lead"));
    }

    #[test]
    fn the_automatic_pause_holds_each_wave_after_the_canary_until_a_resume_there() {
        let s = staged(true);
        let r = rolling_out(&s);
        assert!(auto_pause(&r, 0, &s, at(1)).is_none(), "never before the canary");
        let held = auto_pause(&r, 1, &s, at(1)).expect("held before wave 1");
        assert!(held.control.as_ref().unwrap().paused.as_ref().unwrap().automatic);
        assert!(auto_pause(&held, 1, &s, at(2)).is_none(), "paused already");
        let promoted = changed(apply(&held, ControlRequest::Resume, "lead", &s, at(5_000)));
        assert!(auto_pause(&promoted, 1, &s, at(6_000)).is_none(), "promoted past wave 1");
        let mut next = promoted.clone();
        next.rollout.as_mut().unwrap().waves.push(Wave::default());
        assert!(auto_pause(&next, 2, &s, at(7_000)).is_some(), "held again before wave 2");
        assert!(auto_pause(&r, 1, &staged(false), at(1)).is_none(), "off by default");
    }
}
