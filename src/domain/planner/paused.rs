//! The Paused phase: a pause (an operator's, or the automatic one before
//! each wave after the canary) holds every batch not sent yet, whoever
//! claimed its wave and whenever, until a resume, an abort, or the pause
//! limit. What is out is still judged, and a passed wave still bakes.

use super::*;

pub(super) fn plan(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Planned {
    let rollout = release.rollout.clone().unwrap_or_default();
    let Some(wave) = rollout.current().filter(|w| !w.fully_sent()) else {
        // Everything sent: judged (and baked) as ever; the next-wave rules
        // hold the next wave, or end a pause that lasted too long.
        return judging::plan(release, seen, settings, pass);
    };
    if seen.log.wave_sent {
        return Ok(rest(Outcome::Waiting));
    }
    match turn(&wave.claim, settings, pass) {
        Turn::Send { resume } => match control::paused_too_long(release, settings, pass.now()) {
            Some(why) => sending::plan_unsent(release, &rollout, seen, pass, why),
            // A taker-over first adopts what the dead claimer may have
            // sent, so those hosts are judged when the rollout resumes.
            None if resume => {
                Ok(sending::adopt_unsent(release, &rollout, seen, pass).unwrap_or_else(|| rest(Outcome::Paused)))
            }
            None => Ok(rest(Outcome::Paused)),
        },
        Turn::Wait => Ok(rest(Outcome::Paused)),
        Turn::TakeOver(claim) => Ok(sending::take_over(release, claim)),
    }
}
