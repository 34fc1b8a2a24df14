//! The Stopping phase: a release a failure, an abort or an alarm stopped.
//! What its hosts reported since is merged in (and the hosts that converged
//! tagged), then it goes on ending as it started (`failure`): whatever came
//! back since never turns it round.

use super::*;

pub(super) fn plan(release: &Release, seen: &Observed, pass: &Pass) -> Planned {
    let refreshed = match &release.rollout {
        Some(rollout) => judging::refreshed_waves(release, rollout, seen),
        None => judging::refreshed_command(release, seen, pass).map(|(release, _)| release),
    };
    let mut next = match refreshed {
        Ok(next) => next,
        Err(step) => return Ok(step),
    };
    // The stop dated its wave's verdict; a record from before verdicts were dated gets one now.
    if let Some(rollout) = next.rollout.as_mut() {
        rollout.judge_current(pass.now());
    }
    // The reason it stopped for is stored on it already.
    Err(Stop::new(next, String::new()))
}
