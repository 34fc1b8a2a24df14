//! Where a release stands in its rollout: one [`Phase`], derived from the
//! stored release on every pass (nothing new is stored), and the shape of
//! its rollout alongside. [`plan`](super::plan) is a match on it; each
//! phase's rules live in a module named after it. The transitions a stored
//! release may make in one write are [`Phase::next`]; `docs/design.md` draws
//! the same table and a test holds the two together.

use crate::domain::model::release::{Release, ReleaseKind, ReleaseStatus};

/// Where a release stands, as its stored record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Admitted; its first command (the canary, or the one command to the
    /// fleet's tag) is not confirmed sent.
    Pending,
    /// A repair with instances asked of EC2 and not yet launched.
    Launching,
    /// A wave is chosen and not fully sent, or the next wave is being chosen.
    Sending,
    /// An operator's (or the automatic) pause holds the rollout: nothing
    /// more is sent until a resume, an abort or the pause limit; what is out
    /// is still judged (and baked).
    Paused,
    /// Everything is sent: waiting for the wave's (or the one command's) reports.
    Judging,
    /// A passed wave stays healthy for the bake, then runs its health checks.
    Baking,
    /// A failure, an abort or an alarm stopped it: its unfinished invocations
    /// are settled, then it fails, halts or hands the fleet to a rollback.
    Stopping,
    /// Settled: succeeded, failed, rolled back, halted or no instances.
    Final,
}

/// How a release's commands reach its hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One command to every instance carrying the fleet tag.
    AllAtOnce,
    /// A canary, then waves chosen among the running instances.
    Staged,
    /// One fixed wave to the instances a deploy named.
    Targeted,
    /// One fixed wave putting the good release back on the hosts a failed one reached.
    Rollback,
    /// Launches, then fixed waves to the launched and drifted hosts.
    Repair,
}

impl Shape {
    pub fn of(release: &Release) -> Self {
        match (&release.rollout, release.kind) {
            (None, _) => Self::AllAtOnce,
            (Some(_), ReleaseKind::Targeted) => Self::Targeted,
            (Some(_), ReleaseKind::Rollback) => Self::Rollback,
            (Some(_), ReleaseKind::Repair) => Self::Repair,
            (Some(_), ReleaseKind::Deploy) => Self::Staged,
        }
    }
}

impl Phase {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Launching,
        Self::Sending,
        Self::Paused,
        Self::Judging,
        Self::Baking,
        Self::Stopping,
        Self::Final,
    ];

    /// The phases a release is first stored in: a deploy waits for its
    /// first command; a targeted deploy, a rollback or a repair is created
    /// with its wave chosen (or, for a repair, its launches asked for).
    pub const INITIAL: [Self; 3] = [Self::Pending, Self::Launching, Self::Sending];

    /// The phase of a stored release. Rules are checked in this order, so a
    /// stopping release is stopping whatever its waves look like.
    pub fn of(release: &Release) -> Self {
        match release.status {
            ReleaseStatus::Pending => return Self::Pending,
            status if status.is_final() => return Self::Final,
            _ => {}
        }
        // No launch is asked for once a release stops, so a repair still
        // launching has not stopped.
        if release.launches.iter().any(|l| l.instance_id.is_none() && l.error.is_none()) {
            return Self::Launching;
        }
        if release.stopping.is_some() {
            return Self::Stopping;
        }
        let Some(rollout) = &release.rollout else {
            return Self::Judging;
        };
        match rollout.current() {
            None => Self::Sending,
            Some(_) if held(release) => Self::Paused,
            Some(wave) if !wave.fully_sent() => Self::Sending,
            Some(wave) if wave.bake.is_some() => Self::Baking,
            Some(_) => Self::Judging,
        }
    }

    /// The phases a stored release may be in after one more write, this one
    /// included (a write that changes no phase: progress recorded, a claim
    /// taken over).
    pub fn next(self) -> &'static [Self] {
        use Phase::*;
        match self {
            // The first command recorded (a staged rollout's canary is its
            // whole first wave), or the release ends before anything ran.
            Pending => &[Pending, Judging, Final],
            // Launches recorded; the launched hosts' wave comes once they are Online.
            Launching => &[Launching, Sending, Final],
            Sending => &[Sending, Paused, Judging, Stopping, Final],
            // A resume (back to where it was held), an abort, or paused too long.
            Paused => &[Paused, Sending, Judging, Baking, Stopping, Final],
            // A wave passed: it bakes, the next one is chosen (or held), or
            // the rollout ends. Or it stopped.
            Judging => &[Judging, Baking, Sending, Paused, Stopping, Final],
            Baking => &[Baking, Sending, Paused, Stopping, Final],
            Stopping => &[Stopping, Final],
            Final => &[Final],
        }
    }

    /// Whether a stored release may go from `self` to `to` in one write.
    pub fn may_become(self, to: Self) -> bool {
        self.next().contains(&to)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Launching => "launching",
            Self::Sending => "sending",
            Self::Paused => "paused",
            Self::Judging => "judging",
            Self::Baking => "baking",
            Self::Stopping => "stopping",
            Self::Final => "final",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A pause holds the rollout; an abort does not wait for a resume.
fn held(release: &Release) -> bool {
    let Some(control) = &release.control else { return false };
    control.paused.is_some() && control.aborted.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The transition table in docs/design.md, as (from, [to]) rows.
    fn drawn() -> BTreeMap<String, BTreeSet<String>> {
        let doc = include_str!("../../../docs/design.md");
        let start = doc.find("<!-- phase-table -->").expect("docs/design.md has the phase table");
        doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| from"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                let to = cells[1].split(',').map(|s| s.trim().trim_matches('`').to_owned()).collect();
                (cells[0].trim_matches('`').to_owned(), to)
            })
            .collect()
    }

    #[test]
    fn the_drawn_table_is_the_code() {
        let code: BTreeMap<String, BTreeSet<String>> = Phase::ALL
            .iter()
            .map(|p| (p.name().to_owned(), p.next().iter().map(|n| n.name().to_owned()).collect()))
            .collect();
        assert_eq!(drawn(), code, "docs/design.md's phase table and Phase::next disagree");
    }

    #[test]
    fn every_phase_may_stay_and_every_phase_can_end() {
        for phase in Phase::ALL {
            assert!(phase.may_become(phase), "{phase}");
            assert!(phase.may_become(Phase::Final), "{phase}");
        }
    }
}
