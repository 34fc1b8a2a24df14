//! Which instances a command may go to. SSM refuses a whole SendCommand when
//! one of its instance ids is not a registered managed node, and never
//! delivers to one that is not Online: so every target (canary, wave,
//! rollback, repair) is an Online managed node, and the rest are passed over
//! as unreachable and counted against the rollout's tolerance. Pure rules.

use crate::domain::model::outcome::{PingStatus, Unreachable};
use crate::domain::model::release::{Release, ReleaseKind};
use crate::domain::model::rollout::{Rate, RolloutPolicy, BATCH};
use std::collections::HashMap;

/// What is known of instances as managed nodes on this pass.
pub type NodeStatuses = HashMap<String, PingStatus>;

/// Targets chosen from candidates, or the instances to look up first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Look these up (their status is not known yet).
    LookUp(Vec<String>),
    Chosen {
        /// Online managed nodes, in the candidates' order, at most as many as wanted.
        online: Vec<String>,
        /// Candidates met before enough were chosen that are not Online.
        passed: Vec<Unreachable>,
    },
}

/// Walks `candidates` in order, taking Online nodes until `want` are chosen
/// and passing over the others. Asks for every unknown candidate at once
/// rather than one round trip per instance.
pub fn choose(candidates: &[String], want: usize, statuses: &NodeStatuses) -> Choice {
    let unknown: Vec<String> = candidates.iter().filter(|id| !statuses.contains_key(*id)).cloned().collect();
    let mut online = Vec::new();
    let mut passed = Vec::new();
    for id in candidates {
        if online.len() == want {
            break;
        }
        match statuses.get(id) {
            None => return Choice::LookUp(unknown),
            Some(PingStatus::Online) => online.push(id.clone()),
            Some(other) => passed.push(Unreachable { instance_id: id.clone(), ping_status: other.clone() }),
        }
    }
    Choice::Chosen { online, passed }
}

/// After SSM refused a send naming an instance that is not a managed node:
/// drops every unsent target of the release's current wave that the fresh
/// `statuses` show not Online, recording it as unreachable. Answers whether
/// any was dropped (if none was, the refusal is SSM's own and stands).
pub fn drop_unreachable(release: &mut Release, statuses: &NodeStatuses) -> bool {
    let Some(wave) = release.rollout.as_mut().and_then(|r| r.waves.last_mut()) else {
        return false;
    };
    let sent = (wave.command_ids.len() * BATCH).min(wave.instance_ids.len());
    let mut dropped = Vec::new();
    let mut kept = wave.instance_ids[..sent].to_vec();
    for id in wave.instance_ids.drain(sent..) {
        match statuses.get(&id) {
            Some(PingStatus::Online) | None => kept.push(id),
            Some(other) => dropped.push(Unreachable { instance_id: id, ping_status: other.clone() }),
        }
    }
    wave.instance_ids = kept;
    let any = !dropped.is_empty();
    release.unreachable.extend(dropped);
    any
}

/// After SSM refused a send with InvalidInstanceId: whether the refusal is
/// SSM's own and stands, because a fresh look finds every named node Online
/// (otherwise the ones that are not are dropped and the rest is sent).
pub fn refusal_stands(fresh: &NodeStatuses) -> bool {
    fresh.values().all(|s| *s == PingStatus::Online)
}

/// How many unreachable hosts a rollout over `total` instances tolerates:
/// a count as written, a percentage rounded up (so any non-zero percentage
/// tolerates at least one host).
pub fn tolerated(policy: &RolloutPolicy, total: usize) -> usize {
    match policy.unreachable_tolerance {
        Rate::Count(n) => n,
        Rate::Percent(0) => 0,
        rate @ Rate::Percent(_) => rate.ceil_of(total),
    }
}

/// Why the release must stop for unreachable hosts, if it must. A deploy to
/// named instances tolerates none: it succeeds only when every instance it
/// names reports Success.
pub fn over_tolerance(release: &Release, policy: &RolloutPolicy, total: usize) -> Option<String> {
    let count = release.unreachable_count();
    if release.kind == ReleaseKind::Targeted && count > 0 {
        return Some(format!(
            "{count} of the {total} instances it names unreachable ({}); a deploy to named instances must reach every one",
            first_named(release)
        ));
    }
    let allowed = tolerated(policy, total);
    (count > allowed).then(|| {
        format!(
            "{count} instances unreachable ({}), over the tolerance of {allowed} for a fleet of {total}",
            first_named(release)
        )
    })
}

/// `2 instances unreachable, left to the drift repair: i-1 ConnectionLost, …`
/// for a release that ended within its tolerance; empty when none was.
pub fn describe_unreachable(release: &Release) -> String {
    let count = release.unreachable_count();
    if count == 0 {
        return String::new();
    }
    format!("{count} instances unreachable, left to the drift repair: {}", first_named(release))
}

/// The first few unreachable hosts with why: `i-1 ConnectionLost, i-2 Undeliverable`.
fn first_named(release: &Release) -> String {
    let passed = release.unreachable.iter().map(Unreachable::to_string);
    let undelivered =
        release.instances.iter().filter(|i| i.unreachable()).map(|i| format!("{} {}", i.instance_id, i.detail));
    passed.chain(undelivered).take(5).collect::<Vec<_>>().join(", ")
}

/// Why a deploy to named instances is refused: the names that are not
/// running instances of the fleet, or not Online managed nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRefusal {
    NotInFleet(Vec<String>),
    Unreachable(Vec<Unreachable>),
}

/// A deploy to named instances reaches every one of them or is refused: each
/// must be a running instance carrying the fleet tag and an Online managed node.
pub fn check_targets(requested: &[String], running: &[String], nodes: &NodeStatuses) -> Result<(), TargetRefusal> {
    let outside: Vec<String> = requested.iter().filter(|id| !running.contains(id)).cloned().collect();
    if !outside.is_empty() {
        return Err(TargetRefusal::NotInFleet(outside));
    }
    let away: Vec<Unreachable> = requested
        .iter()
        .filter_map(|id| {
            let status = nodes.get(id).cloned().unwrap_or(PingStatus::NotRegistered);
            (status != PingStatus::Online).then(|| Unreachable { instance_id: id.clone(), ping_status: status })
        })
        .collect();
    match away.is_empty() {
        true => Ok(()),
        false => Err(TargetRefusal::Unreachable(away)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{policy, settings, GOOD};
    use crate::domain::model::flakeref::Flakeref;
    use crate::domain::model::ids::ReleaseId;
    use crate::domain::model::release::ReleaseKind;
    use crate::domain::model::rollout::{Claim, Rollout, RolloutMode, Wave};
    use crate::domain::model::time::Timestamp;
    use crate::domain::planner::new_release;

    fn statuses(pairs: &[(&str, &str)]) -> NodeStatuses {
        pairs.iter().map(|(id, s)| (id.to_string(), PingStatus::parse(s))).collect()
    }

    fn release(id: &str) -> Release {
        let s = settings(policy(RolloutMode::Staged, true));
        let id = ReleaseId::generate(crate::domain::fixtures::T0, id.len() as u128);
        new_release(
            &s,
            id,
            Flakeref::parse(GOOD).unwrap(),
            None,
            ReleaseKind::Deploy,
            None,
            crate::domain::fixtures::T0,
        )
    }

    fn ids(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_online_nodes_are_chosen_and_those_before_them_passed_over() {
        let known =
            statuses(&[("i-1", "ConnectionLost"), ("i-2", "Online"), ("i-3", "NotRegistered"), ("i-4", "Online")]);
        let Choice::Chosen { online, passed } = choose(&ids(&["i-1", "i-2", "i-3", "i-4"]), 1, &known) else {
            panic!("all known")
        };
        assert_eq!(online, ["i-2"]);
        assert_eq!(passed, [Unreachable { instance_id: "i-1".into(), ping_status: PingStatus::ConnectionLost }]);
    }

    #[test]
    fn unknown_candidates_are_looked_up_together() {
        let known = statuses(&[("i-1", "Online")]);
        assert_eq!(choose(&ids(&["i-1", "i-2", "i-3"]), 3, &known), Choice::LookUp(ids(&["i-2", "i-3"])));
        // Enough chosen before the unknown ones: no look-up.
        assert!(matches!(choose(&ids(&["i-1", "i-2"]), 1, &known), Choice::Chosen { .. }));
    }

    #[test]
    fn a_refused_send_drops_only_unsent_targets_that_are_not_online() {
        let mut r = release("20260101T000000Z-0001");
        let mut wave =
            Wave::new((0..60).map(|n| format!("i-{n:02}")).collect(), &Claim::new("a", Timestamp::from_millis(0)));
        wave.command_ids.push("c-0".into()); // the first 50 are out
        r.rollout = Some(Rollout { waves: vec![wave], fleet_size: None, fixed: false });
        let fresh = statuses(&[("i-03", "ConnectionLost"), ("i-55", "Inactive"), ("i-56", "Online")]);
        assert!(drop_unreachable(&mut r, &fresh));
        let wave = r.rollout.as_ref().unwrap().current().unwrap();
        assert_eq!(wave.instance_ids.len(), 59);
        assert!(wave.instance_ids.contains(&"i-03".to_owned()), "already sent: kept");
        assert_eq!(r.unreachable, [Unreachable { instance_id: "i-55".into(), ping_status: PingStatus::Inactive }]);
        assert!(!drop_unreachable(&mut r, &fresh), "nothing more to drop: SSM's refusal stands");
        assert!(!refusal_stands(&fresh));
        assert!(refusal_stands(&statuses(&[("i-56", "Online")])));
    }

    #[test]
    fn tolerance_rounds_a_percentage_up_and_takes_a_count_as_written() {
        let mut p = policy(RolloutMode::Staged, true);
        p.unreachable_tolerance = Rate::Percent(10);
        assert_eq!(tolerated(&p, 3), 1);
        assert_eq!(tolerated(&p, 100), 10);
        assert_eq!(tolerated(&p, 101), 11);
        p.unreachable_tolerance = Rate::Percent(0);
        assert_eq!(tolerated(&p, 100), 0);
        p.unreachable_tolerance = Rate::Count(0);
        assert_eq!(tolerated(&p, 100), 0);
        let mut r = release("20260101T000000Z-0001");
        r.unreachable = vec![Unreachable { instance_id: "i-1".into(), ping_status: PingStatus::Inactive }];
        assert!(over_tolerance(&r, &p, 10).unwrap().contains("i-1 Inactive"));
        p.unreachable_tolerance = Rate::Count(1);
        assert_eq!(over_tolerance(&r, &p, 10), None);
    }
}
