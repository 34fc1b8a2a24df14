//! The Launching phase: a repair's instances asked of EC2, launched from
//! the newest image once per pass; the launched hosts' wave comes once they
//! are Online managed nodes (`sending`).

use super::*;

pub(super) fn plan(release: &Release, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    // A repair that stopped mid-launch: its claim lapses like a wave's.
    if !seen.log.created_here && pass.now() < release.created_at.plus(settings.takeover_after) {
        return rest(Outcome::Waiting);
    }
    match (&seen.image, seen.log.launched) {
        // Launched once on this pass already: the record says otherwise, look again next pass.
        (_, true) => rest(Outcome::Waiting),
        (Some(image), false) => Step::Launch { image: image.clone() },
        (None, false) => Step::Observe(Need::Image),
    }
}
