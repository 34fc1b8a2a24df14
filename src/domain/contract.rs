//! What every release store must do, as one scenario run against each: the
//! in-memory store in unit tests, DynamoDB (on the local AWS) in `tests/it`.
//! Both then follow one lease and claim model, and the planner's reading of
//! their answers (`planner::lease`) holds for either.

use super::model::ids::{IdempotencyKey, ReleaseId};
use super::model::release::{Release, ReleaseKind, ReleaseStatus};
use super::model::store::{AdmitConflict, Admitted, Fence, IdempotencyClaim, Notice, Settlement, Written};
use super::model::time::Timestamp;
use super::planner::lease::{self, lease_for, Admission};
use super::ports::{ReleaseStore, StoreError};
use std::time::Duration;

/// Runs the scenario on `store`, which must hold nothing of `template.fleet`.
/// `template`: a pending release of that fleet; copies get fresh ids. Panics
/// with the step that broke the contract.
pub async fn check<S: ReleaseStore>(store: &S, template: &Release, now: Timestamp) {
    let done = admit_save_and_settle(store, template, now).await;
    let holder = lose_the_lease(store, template, &done, now).await;
    replace_with_a_rollback(store, template, holder).await;
}

/// A notice of `release` as it is now.
fn notice(release: &Release) -> Notice {
    Notice {
        id: format!("{}/{}", release.id, release.version),
        release_id: release.id.clone(),
        at: release.updated_at,
        detail: format!(r#"{{"status": "{}"}}"#, release.status.as_str()),
    }
}

/// A copy of `template` created at `at`, with a fresh id.
fn copy(template: &Release, n: u128, at: Timestamp) -> Release {
    Release {
        id: ReleaseId::generate(at, n),
        created_at: at,
        updated_at: at,
        deadline: at.plus(Duration::from_secs(600)),
        ..template.clone()
    }
}

/// Admission (busy, replays), fenced progress and settling; answers the
/// settled release.
async fn admit_save_and_settle<S: ReleaseStore>(store: &S, template: &Release, now: Timestamp) -> Release {
    let fleet = &template.fleet;
    let copy = |n: u128, at: Timestamp| copy(template, n, at);
    let claim = |key: &str, request: &str| IdempotencyClaim {
        key: IdempotencyKey::parse(key).unwrap(),
        request: request.into(),
        expires_at: now.plus(Duration::from_secs(3600)),
    };

    // Admission: the first takes the lease; the next is busy; a used key replays.
    let a = copy(1, now);
    assert_eq!(
        store.admit(&a, &lease_for(&a), Some(&claim("k1", "deploy a")), true, &[notice(&a)], now).await.unwrap(),
        Admitted::Yes,
        "admit a"
    );
    let b = copy(2, now);
    let busy = store.admit(&b, &lease_for(&b), Some(&claim("k2", "deploy b")), true, &[notice(&b)], now).await.unwrap();
    assert_eq!(busy, Admitted::Refused(vec![AdmitConflict::LeaseHeld { holder: a.id.clone() }]), "b while a holds");
    for (request, same) in [("deploy a", true), ("deploy b", false)] {
        let answer = store.admit(&b, &lease_for(&b), Some(&claim("k1", request)), true, &[], now).await.unwrap();
        let replay = Admission::Replay { release_id: a.id.clone(), same_request: same };
        assert_eq!(lease::admission(answer, Some(request)), replay, "k1 again with {request:?}");
    }
    assert_eq!(store.release(fleet, &b.id).await.unwrap(), None, "a refused release is not recorded");
    assert_eq!(store.fleet_state(fleet).await.unwrap().desired_release.as_ref(), Some(&a.id));

    // Progress: fenced by version.
    let mut a1 = a.clone();
    a1.status = ReleaseStatus::InProgress;
    a1.version = 1;
    let stale = store.save(&a1, 7, &[notice(&a1)]).await.unwrap();
    assert_eq!(stale, Written::Fenced(Fence::StaleVersion), "save over a wrong version");
    assert_eq!(store.save(&a1, 0, &[notice(&a1)]).await.unwrap(), Written::Yes, "save a");
    assert_eq!(store.release(fleet, &a.id).await.unwrap().as_ref(), Some(&a1));

    // Settling frees the lease and names the good release.
    let mut done = a1.clone();
    done.status = ReleaseStatus::Succeeded;
    done.version = 2;
    let notices = vec![notice(&done)];
    let stale =
        Settlement { expected_version: 0, notices: notices.clone(), ..lease::settlement(done.clone(), None, None) };
    assert_eq!(store.settle(&stale).await.unwrap(), Written::Fenced(Fence::StaleVersion), "settle a stale a");
    let settled = Settlement { expected_version: 1, notices, ..lease::settlement(done.clone(), None, None) };
    assert_eq!(store.settle(&settled).await.unwrap(), Written::Yes, "settle a");
    let state = store.fleet_state(fleet).await.unwrap();
    assert_eq!((state.lease, state.last_good_release.as_ref()), (None, Some(&a.id)), "a settled");

    done
}

/// A hand-over to an existing id is refused whole; a release holds the fleet
/// until it settles, past its deadline too; a late writer of a release that
/// settled changes nothing on the fleet.
async fn lose_the_lease<S: ReleaseStore>(store: &S, template: &Release, done: &Release, now: Timestamp) -> Release {
    let fleet = &template.fleet;
    let copy = |n: u128, at: Timestamp| copy(template, n, at);
    // A hand-over to a release that exists is refused whole.
    let c = copy(3, now);
    assert_eq!(store.admit(&c, &lease_for(&c), None, true, &[], now).await.unwrap(), Admitted::Yes, "admit c");
    let mut c_failed = c.clone();
    c_failed.status = ReleaseStatus::RolledBack;
    c_failed.version = 1;
    let handover = Settlement { expected_version: 0, ..lease::settlement(c_failed, None, Some(done.clone())) };
    assert_eq!(store.settle(&handover).await.unwrap(), Written::Fenced(Fence::AlreadyExists), "hand c to a");
    assert_eq!(store.release(fleet, &c.id).await.unwrap().unwrap().status, ReleaseStatus::Pending, "c untouched");

    // Long past its deadline, c still holds the fleet: no clock frees it.
    let later = c.deadline.plus(Duration::from_secs(3600));
    let d = copy(4, later);
    assert_eq!(
        store.admit(&d, &lease_for(&d), None, true, &[], later).await.unwrap(),
        Admitted::Refused(vec![AdmitConflict::LeaseHeld { holder: c.id.clone() }]),
        "d while c is overdue"
    );
    // c settles, which frees the fleet; d takes it.
    let mut c_done = c.clone();
    c_done.status = ReleaseStatus::Succeeded;
    c_done.version = 1;
    let settled = Settlement { expected_version: 0, ..lease::settlement(c_done.clone(), None, None) };
    assert_eq!(store.settle(&settled).await.unwrap(), Written::Yes, "settle c");
    assert_eq!(store.admit(&d, &lease_for(&d), None, true, &[], later).await.unwrap(), Admitted::Yes, "admit d");

    // A late writer of c, over the version it read, can no longer change the fleet.
    let mut c_late = c_done.clone();
    c_late.status = ReleaseStatus::Failed;
    c_late.version = 2;
    assert_eq!(
        store.save(&c_late, 1, &[]).await.unwrap(),
        Written::Fenced(Fence::LeaseLost),
        "save c without the lease"
    );
    let late = Settlement { expected_version: 1, ..lease::settlement(c_late.clone(), None, None) };
    assert_eq!(store.settle(&late).await.unwrap(), Written::Fenced(Fence::LeaseLost), "settle c without the lease");
    let alone = lease::settle_without_lease(&late).expect("a plain settlement may go alone");
    assert_eq!(store.settle(&alone).await.unwrap(), Written::Yes, "settle c alone");
    let state = store.fleet_state(fleet).await.unwrap();
    assert_eq!(state.lease.map(|l| l.release_id), Some(d.id.clone()), "d still holds the fleet");
    assert_eq!(state.last_good_release, Some(c.id.clone()), "named by c's own settlement, not the late one");
    assert_eq!(state.desired_release.as_ref(), Some(&d.id), "d is still the desired release");
    d
}

/// A rollback is admitted only in place of the desired release it names
/// (`replaces`), which then reads as replaced by it.
async fn replace_with_a_rollback<S: ReleaseStore>(store: &S, template: &Release, d: Release) {
    let fleet = &template.fleet;
    let mut d_done = d.clone();
    d_done.status = ReleaseStatus::Succeeded;
    d_done.version = 1;
    let settled = Settlement { expected_version: 0, ..lease::settlement(d_done, None, None) };
    assert_eq!(store.settle(&settled).await.unwrap(), Written::Yes, "settle d");
    let at = d.created_at.plus(Duration::from_secs(1));
    let rollback = |n: u128, replaces: Option<&Release>| Release {
        kind: ReleaseKind::Rollback,
        rollback_of: Some(template.id.clone()),
        replaces: replaces.map(|r| r.id.clone()),
        ..copy(template, n, at)
    };
    for stale in [rollback(5, Some(template)), rollback(6, None)] {
        let answer = store.admit(&stale, &lease_for(&stale), None, true, &[], at).await;
        assert!(matches!(answer, Err(StoreError::Busy(_))), "a rollback of a release no longer desired: {answer:?}");
        assert_eq!(store.release(fleet, &stale.id).await.unwrap(), None, "a refused rollback is not recorded");
    }
    let r = rollback(7, Some(&d));
    assert_eq!(store.admit(&r, &lease_for(&r), None, true, &[], at).await.unwrap(), Admitted::Yes, "admit r");
    assert_eq!(store.replaced_by(fleet, &d.id).await.unwrap(), Some(r.id.clone()), "d replaced by r");
    assert_eq!(store.replaced_by(fleet, &template.id).await.unwrap(), None, "nothing replaced the template");
    assert_eq!(store.fleet_state(fleet).await.unwrap().desired_release, Some(r.id), "r is the desired release");
}
