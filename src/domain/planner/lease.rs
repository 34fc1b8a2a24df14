//! The one model of who may write what: a release holds the fleet through its
//! lease, a caller's key through its claim, and every write of a release is
//! fenced by its version. The stores only report which condition failed; what
//! that means is decided here, alike for DynamoDB and the in-memory store.

use crate::domain::model::fleet::Lease;
use crate::domain::model::ids::ReleaseId;
use crate::domain::model::release::{Release, ReleaseKind, ReleaseStatus};
use crate::domain::model::store::{AdmitConflict, Admitted, FleetChange, Handover, Settlement};

/// The lease a release holds the fleet with, until its settlement frees it.
pub fn lease_for(release: &Release) -> Lease {
    Lease { release_id: release.id.clone(), deadline: release.deadline }
}

/// What admitting a new release came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The idempotency key was seen before; nothing was written.
    Replay {
        release_id: ReleaseId,
        same_request: bool,
    },
    /// Another release holds the fleet; nothing was written.
    Busy {
        holder: ReleaseId,
    },
    /// A release with the new id exists (ids are random: a retry with a new id succeeds).
    IdTaken,
}

/// Reads the store's answer. A replay wins over a busy fleet, so a retried
/// request gets its first answer even while its release still holds the fleet.
pub fn admission(answer: Admitted, request: Option<&str>) -> Admission {
    let Admitted::Refused(conflicts) = answer else {
        return Admission::Admitted;
    };
    let replay = conflicts.iter().find_map(|c| match c {
        AdmitConflict::KeyUsed { release_id, request: first } => {
            Some(Admission::Replay { release_id: release_id.clone(), same_request: Some(first.as_str()) == request })
        }
        _ => None,
    });
    let busy = conflicts.iter().find_map(|c| match c {
        AdmitConflict::LeaseHeld { holder } => Some(Admission::Busy { holder: holder.clone() }),
        _ => None,
    });
    replay.or(busy).unwrap_or(Admission::IdTaken)
}

/// A release's final write (over the version it was read at), with what it
/// means for the fleet. A repair puts the good release back; it is not a good
/// release of its own.
pub fn settlement(release: Release, halt: Option<String>, next: Option<Release>) -> Settlement {
    let expected_version = release.version;
    // A repair or a deploy to named instances never becomes the fleet's good release.
    let last_good = release.status == ReleaseStatus::Succeeded
        && !matches!(release.kind, ReleaseKind::Repair | ReleaseKind::Targeted);
    let next = next.map(|release| Handover { lease: lease_for(&release), release });
    Settlement { release, expected_version, fleet: Some(FleetChange { last_good, halt, next }), notices: Vec::new() }
}

/// After a settlement found the fleet held by another release (a writer of a
/// release that is final already, or a record changed by hand): the release
/// alone may still be settled, but a fleet it does not hold is never halted
/// or handed to its rollback.
pub fn settle_without_lease(settlement: &Settlement) -> Option<Settlement> {
    let change = settlement.fleet.as_ref()?;
    if change.halt.is_some() || change.next.is_some() {
        return None;
    }
    Some(Settlement { fleet: None, ..settlement.clone() })
}

/// Whether a release admitted now becomes the fleet's desired release (and
/// lifts a halt): a deploy or a rollback does; a repair or a deploy to named
/// instances only takes the lease.
pub fn becomes_desired(release: &Release) -> bool {
    !matches!(release.kind, ReleaseKind::Repair | ReleaseKind::Targeted)
}

/// A deploy asked for while rollback alarms are in ALARM (`firing`): refused
/// with them, unless it ignores them, and then admitted recording them (they
/// never stop it).
pub fn alarms_at_admission(firing: Vec<String>, ignore: bool) -> Result<Vec<String>, Vec<String>> {
    match firing.is_empty() || ignore {
        true => Ok(firing),
        false => Err(firing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures;
    use crate::domain::model::flakeref::Flakeref;
    use crate::domain::model::rollout::RolloutMode;
    use crate::domain::model::time::Timestamp;

    fn id(n: u64) -> ReleaseId {
        ReleaseId::generate(Timestamp::from_millis(n), 0)
    }

    fn release(kind: ReleaseKind, status: ReleaseStatus) -> Release {
        let settings = fixtures::settings(fixtures::policy(RolloutMode::AllAtOnce, true));
        let flakeref = Flakeref::parse(fixtures::GOOD).unwrap();
        let release = crate::domain::planner::new_release(&settings, id(1), flakeref, None, kind, None, fixtures::T0);
        Release { status, version: 3, ..release }
    }

    #[test]
    fn admission_table() {
        let key = |n, request: &str| AdmitConflict::KeyUsed { release_id: id(n), request: request.into() };
        let lease = |n| AdmitConflict::LeaseHeld { holder: id(n) };
        let table = [
            (Admitted::Yes, Admission::Admitted),
            (Admitted::Refused(vec![lease(2)]), Admission::Busy { holder: id(2) }),
            (Admitted::Refused(vec![key(3, "deploy a")]), Admission::Replay { release_id: id(3), same_request: true }),
            (Admitted::Refused(vec![key(3, "deploy b")]), Admission::Replay { release_id: id(3), same_request: false }),
            // Both conditions failed: the replay wins.
            (
                Admitted::Refused(vec![lease(2), key(3, "deploy a")]),
                Admission::Replay { release_id: id(3), same_request: true },
            ),
            (Admitted::Refused(vec![AdmitConflict::IdTaken]), Admission::IdTaken),
            (Admitted::Refused(vec![]), Admission::IdTaken),
        ];
        for (answer, expected) in table {
            assert_eq!(admission(answer.clone(), Some("deploy a")), expected, "{answer:?}");
        }
    }

    #[test]
    fn settlements_expect_the_version_read_and_name_the_good_release() {
        let s = settlement(release(ReleaseKind::Deploy, ReleaseStatus::Succeeded), None, None);
        assert_eq!(s.expected_version, 3);
        assert!(s.fleet.unwrap().last_good);
        for (kind, status) in [
            (ReleaseKind::Repair, ReleaseStatus::Succeeded),
            (ReleaseKind::Targeted, ReleaseStatus::Succeeded),
            (ReleaseKind::Deploy, ReleaseStatus::Failed),
            (ReleaseKind::Rollback, ReleaseStatus::Halted),
        ] {
            assert!(!settlement(release(kind, status), None, None).fleet.unwrap().last_good, "{kind:?} {status:?}");
        }
    }

    #[test]
    fn without_the_lease_a_release_settles_alone_but_never_halts_or_hands_over() {
        let plain = settlement(release(ReleaseKind::Deploy, ReleaseStatus::Succeeded), None, None);
        let alone = settle_without_lease(&plain).unwrap();
        assert_eq!((&alone.fleet, &alone.release), (&None, &plain.release));
        let halting = settlement(release(ReleaseKind::Rollback, ReleaseStatus::Halted), Some("why".into()), None);
        assert_eq!(settle_without_lease(&halting), None);
        let next = release(ReleaseKind::Rollback, ReleaseStatus::InProgress);
        let handing = settlement(release(ReleaseKind::Deploy, ReleaseStatus::RolledBack), None, Some(next));
        assert_eq!(settle_without_lease(&handing), None);
        assert_eq!(settle_without_lease(&alone), None, "already alone: nothing more to drop");
    }

    #[test]
    fn only_a_deploy_or_a_rollback_becomes_desired_and_alarms_refuse_unless_ignored() {
        for (kind, desired) in [
            (ReleaseKind::Deploy, true),
            (ReleaseKind::Rollback, true),
            (ReleaseKind::Repair, false),
            (ReleaseKind::Targeted, false),
        ] {
            assert_eq!(becomes_desired(&release(kind, ReleaseStatus::Pending)), desired, "{kind:?}");
        }
        let firing = vec!["web-5xx".to_owned()];
        assert_eq!(alarms_at_admission(vec![], false), Ok(vec![]));
        assert_eq!(alarms_at_admission(firing.clone(), false), Err(firing.clone()));
        assert_eq!(alarms_at_admission(firing.clone(), true), Ok(firing));
    }
}
