//! The use cases against the in-memory ports: the rollout, rollback and
//! repair rules end to end, as a caller sees them.

use super::*;
use crate::domain::error::ControlError;
use crate::domain::fakes::{MemoryAlarms, MemoryFleet, MemoryStore, ScriptedRunner, SendBehaviour};
use crate::domain::fixtures::{self, policy, GOOD, NEXT, T0};
use crate::domain::model::command::{CommandReport, CommandTarget};
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::ids::IdempotencyKey;
use crate::domain::model::outcome::InstanceOutcome;
use crate::domain::model::release::{Launch, Origin, Release, ReleaseKind, ReleaseStatus};
use crate::domain::model::rollout::{Rate, Rollout, RolloutMode, RolloutPolicy};
use crate::domain::model::store::Admitted;
use crate::domain::planner::repair::client_token;
use crate::domain::planner::{new_release, Outcome};
use crate::domain::ports::ReleaseStore;
use std::time::Duration;

mod faults;

pub(crate) type Controller = FleetController<MemoryStore, MemoryFleet, ScriptedRunner, MemoryAlarms>;

fn with_policy(instances: usize, rollout: RolloutPolicy) -> Controller {
    let mut settings = fixtures::settings(rollout);
    settings.takeover_after = Duration::ZERO;
    let (store, fleet, runner) = (MemoryStore::default(), MemoryFleet::of(instances), ScriptedRunner::default());
    FleetController::new(store, fleet, runner, MemoryAlarms::default(), settings)
}

/// All at once by tag, no automatic rollback: the plain core loop.
fn controller(has_instances: bool) -> Controller {
    with_policy(usize::from(has_instances) * 3, policy(RolloutMode::AllAtOnce, false))
}

fn deploy(flakeref: &str, key: Option<&str>) -> DeployRequest {
    DeployRequest {
        flakeref: Flakeref::parse(flakeref).unwrap(),
        revision: None,
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        ignore_alarms: false,
        instance_ids: None,
        origin: Origin::default(),
    }
}

fn later(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

/// Scripts every instance of `command_id` as `status` and reconciles.
async fn finish_with(c: &Controller, status: &str, at: Timestamp) -> Release {
    let command_id = c
        .store
        .fleet
        .lock()
        .unwrap()
        .lease
        .clone()
        .map(|l| c.store.releases.lock().unwrap()[&l.release_id].command_id.clone().unwrap());
    let invocations = c
        .inventory
        .instances
        .lock()
        .unwrap()
        .iter()
        .map(|i| InstanceOutcome {
            instance_id: i.id.clone(),
            status: status.into(),
            detail: status.into(),
            exit_code: Some(0),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            output_note: None,
            started: false,
        })
        .collect();
    c.runner.reports.lock().unwrap().insert(command_id.unwrap(), CommandReport { finished: true, invocations });
    c.reconcile(at).await.unwrap().release.unwrap()
}

#[tokio::test]
async fn a_busy_fleet_refuses_and_sends_nothing() {
    let c = controller(true);
    let first = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let err = c.deploy(deploy(NEXT, None), later(1)).await.unwrap_err();
    assert!(matches!(err, ControlError::Busy { holder } if holder == first.id));
    assert_eq!(c.runner.sent_count(), 1);
    assert_eq!(c.store.releases.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_command_fails_the_release_and_frees_the_fleet() {
    let c = controller(true);
    *c.runner.next.lock().unwrap() = SendBehaviour::Reject;
    let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
    let ControlError::CommandRejected { release, .. } = err else { panic!("{err:?}") };
    assert_eq!(release.status, ReleaseStatus::Failed);
    assert!(c.store.fleet.lock().unwrap().lease.is_none());
    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
    assert!(c.deploy(deploy(NEXT, None), later(1)).await.is_ok());
}

#[tokio::test]
async fn an_ambiguous_send_is_adopted_not_repeated() {
    let c = controller(true);
    *c.runner.next.lock().unwrap() = SendBehaviour::SendThenTimeOut;
    let err = c.deploy(deploy(GOOD, Some("k1")), T0).await.unwrap_err();
    assert!(matches!(err, ControlError::CommandUnconfirmed { .. }));
    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
    // The client's retry finds the command the first attempt started.
    let release = c.deploy(deploy(GOOD, Some("k1")), later(1)).await.unwrap();
    assert_eq!(release.status, ReleaseStatus::InProgress);
    assert_eq!(release.command_id.as_deref(), Some("cmd-1"));
    assert_eq!(c.runner.sent_count(), 1);
}

#[tokio::test]
async fn an_unsent_command_is_sent_by_the_reconcile_or_failed_at_the_deadline() {
    let c = controller(true);
    *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
    let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
    assert!(
        matches!(&err, ControlError::CommandUnconfirmed { release, .. } if release.status == ReleaseStatus::Pending),
        "{err}"
    );
    // Still unavailable: the reconcile reports it and the release stays pending.
    let err = c.reconcile(later(1)).await.unwrap_err();
    assert!(
        matches!(err, ControlError::CommandUnconfirmed { release, .. } if release.status == ReleaseStatus::Pending)
    );
    let report = c.reconcile(later(601)).await.unwrap();
    let release = report.release.unwrap();
    assert_eq!(release.status, ReleaseStatus::Failed);
    assert!(release.status_reason.unwrap().contains("deadline"));
    assert_eq!(c.runner.sent_count(), 0);
    assert!(c.store.fleet.lock().unwrap().lease.is_none());
}

/// The takeover window: a release recorded by an invocation that may still be
/// sending is left to it; only after the window does a reconcile send in its
/// place, and then once.
#[tokio::test]
async fn a_live_sender_is_never_doubled_inside_the_takeover_window() {
    let mut c = controller(true);
    c.settings.takeover_after = Duration::from_secs(120);
    *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
    let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
    let ControlError::CommandUnconfirmed { release, .. } = err else { panic!("{err}") };
    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
    for at in [later(1), later(60), later(119)] {
        let report = c.reconcile(at).await.unwrap();
        assert_eq!((report.outcome, c.runner.sent_count()), (Outcome::Waiting, 0), "at {at:?}");
    }
    let report = c.reconcile(later(121)).await.unwrap();
    assert_eq!(report.outcome, Outcome::Dispatched);
    assert_eq!(report.release.unwrap().id, release.id);
    assert_eq!(c.runner.sent_count(), 1);
    assert_eq!(c.reconcile(later(122)).await.unwrap().outcome, Outcome::Waiting, "in progress now, not sent again");
    assert_eq!(c.runner.sent_count(), 1);
}

/// Case 3 of the exactly-once issue: a reconcile, an SSM event and the
/// client's retry take over a stalled first command together. Only the one
/// whose claim is written sends; the others see the new claim and wait.
#[tokio::test]
async fn takeovers_at_once_send_the_first_command_once() {
    for seed in 0..40 {
        let mut c = controller(true);
        c.settings.takeover_after = Duration::from_secs(120);
        *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
        c.deploy(deploy(GOOD, Some("k1")), T0).await.unwrap_err();
        *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
        interleave(&c, Some(seed));
        let at = later(121);
        let _ = tokio::join!(c.reconcile(at), c.reconcile(at), c.deploy(deploy(GOOD, Some("k1")), at));
        assert_eq!(c.runner.sent_count(), 1, "seed {seed}");
    }
}

/// The same for a wave whose sender died before sending it.
#[tokio::test]
async fn takeovers_at_once_send_a_stalled_wave_once() {
    for seed in 0..40 {
        let mut c = staged(10);
        c.settings.takeover_after = Duration::from_secs(120);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        // The canary passed; the invocation that claimed wave 2 could not send it.
        *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
        assert!(c.reconcile(later(1)).await.is_err());
        *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
        interleave(&c, Some(seed));
        let at = later(122);
        let _ = tokio::join!(c.reconcile(at), c.reconcile(at), c.reconcile(at));
        interleave(&c, None);
        assert!(sends(&c).values().all(|n| *n == 1), "seed {seed}: {:?}", sends(&c));
        assert!(sends(&c).len() >= 4, "seed {seed}: the canary and wave 2 (and maybe wave 3): {:?}", sends(&c));
    }
}

/// Keys are remembered for the idempotency window (24 hours by default), then forgotten.
#[tokio::test]
async fn an_idempotency_key_expires_after_its_window() {
    let c = controller(true);
    let ttl = c.settings.idempotency_ttl.as_secs();
    let first = c.deploy(deploy(GOOD, Some("run-1")), T0).await.unwrap();
    let at = finish_with(&c, "Success", later(1)).await.updated_at;
    let replay = c.deploy(deploy(GOOD, Some("run-1")), T0.plus(Duration::from_secs(ttl - 1))).await.unwrap();
    assert_eq!(replay.id, first.id, "inside the window: the same release");
    assert_eq!(c.runner.sent_count(), 1);
    let after = T0.plus(Duration::from_secs(ttl + 1)).max(at);
    let again = c.deploy(deploy(GOOD, Some("run-1")), after).await.unwrap();
    assert_ne!(again.id, first.id, "past the window the key is free: a new release");
    assert_eq!(c.runner.sent_count(), 2);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_a_conflict() {
    let c = controller(true);
    c.deploy(deploy(GOOD, Some("k1")), T0).await.unwrap();
    let err = c.deploy(deploy(NEXT, Some("k1")), later(1)).await.unwrap_err();
    assert!(matches!(err, ControlError::IdempotencyConflict { .. }));
}

#[tokio::test]
async fn rollback_targets_the_last_success_before_the_current_release() {
    let c = controller(true);
    let err = c
        .rollback(RollbackRequest { target: None, idempotency_key: None, origin: Origin::default() }, T0)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NoRollbackTarget(_)));

    let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    assert_eq!(finish_with(&c, "Success", later(1)).await.status, ReleaseStatus::Succeeded);
    c.deploy(deploy(NEXT, None), later(2)).await.unwrap();
    assert_eq!(finish_with(&c, "Failed", later(3)).await.status, ReleaseStatus::Failed);

    let bad = c.store.fleet.lock().unwrap().desired_release.clone().unwrap();
    assert_eq!(c.release_view(&bad).await.unwrap().rolled_back_by, None);
    let origin = Origin { requested_by: Some("arn:aws:iam::111122223333:user/alice".into()), ..Origin::default() };
    let rollback = c
        .rollback(RollbackRequest { target: None, idempotency_key: None, origin: origin.clone() }, later(4))
        .await
        .unwrap();
    assert_eq!(rollback.kind, ReleaseKind::Rollback);
    assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
    assert_eq!(rollback.flakeref, good.flakeref);
    assert_eq!((rollback.replaces.as_ref(), &rollback.origin), (Some(&bad), &origin));
    assert_eq!(c.store.releases.lock().unwrap()[&good.id].status, ReleaseStatus::Succeeded);
    // The release it replaced links forward to it; the one it put back does not.
    assert_eq!(c.release_view(&bad).await.unwrap().rolled_back_by, Some(rollback.id.clone()));
    assert_eq!(c.release_view(&good.id).await.unwrap().rolled_back_by, None);

    // Once the rollback succeeds, the release before it is again the good one.
    finish_with(&c, "Success", later(5)).await;
    let again = c
        .rollback(RollbackRequest { target: None, idempotency_key: None, origin: Origin::default() }, later(6))
        .await
        .unwrap();
    assert_eq!(again.rollback_of.as_ref(), Some(&good.id));
}

/// Only a deploy or rollback that succeeded fleet-wide is put back by a
/// named rollback; anything else is refused naming those that qualify, with
/// nothing written or sent.
#[tokio::test]
async fn a_rollback_puts_back_only_a_release_that_succeeded_fleet_wide() {
    let c = controller(true);
    let named =
        |id: &ReleaseId| RollbackRequest { target: Some(id.clone()), idempotency_key: None, origin: Origin::default() };
    let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    finish_with(&c, "Success", later(1)).await;
    let bad = c.deploy(deploy(NEXT, None), later(2)).await.unwrap();
    finish_with(&c, "Failed", later(3)).await;
    // A targeted release and a repair that succeeded, as recorded.
    let recorded = |kind, at| {
        let release = Release { id: ReleaseId::generate(at, 7), kind, ..stored(&c, &good.id) };
        c.store.releases.lock().unwrap().insert(release.id.clone(), release.clone());
        release
    };
    let only_one = recorded(ReleaseKind::Targeted, later(4));
    let repair = recorded(ReleaseKind::Repair, later(5));

    let (written, sent) = (c.store.releases.lock().unwrap().len(), c.runner.sent_count());
    for (refused, why) in
        [(&bad.id, "it ended failed"), (&only_one.id, "named instances only"), (&repair.id, "a drift repair")]
    {
        let err = c.rollback(named(refused), later(6)).await.unwrap_err();
        match &err {
            ControlError::NotARollbackTarget { id, why: said, candidates } => {
                assert_eq!((id, candidates.as_slice()), (refused, [good.id.clone()].as_slice()), "{err}");
                assert!(said.contains(why), "{err}");
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(good.id.as_str()), "names the qualifying ones: {err}");
    }
    assert_eq!(
        (c.store.releases.lock().unwrap().len(), c.runner.sent_count()),
        (written, sent),
        "nothing written or sent"
    );

    // The usual rollback: a release that succeeded and was replaced since.
    let back = c.rollback(named(&good.id), later(7)).await.unwrap();
    assert_eq!(back.rollback_of.as_ref(), Some(&good.id));
    finish_with(&c, "Success", later(8)).await;
    // A rollback that succeeded is a target too.
    assert!(stored(&c, &back.id).is_rollback_target());
}

/// A write cancelled by other transactions (after the adapter's retries) is an
/// error the caller sees, never a silent loss: the deploy is not recorded, and
/// a reconcile whose progress could not be saved is redone by the next one
/// without a second command.
#[tokio::test]
async fn conflicting_writes_are_errors_and_lose_nothing() {
    let c = staged(4);
    *c.store.busy_writes.lock().unwrap() = 1;
    let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
    assert!(matches!(err, ControlError::Store(crate::domain::ports::StoreError::Busy(_))), "{err}");
    assert!(c.store.releases.lock().unwrap().is_empty() && c.runner.sent_count() == 0, "nothing recorded or sent");

    let release = c.deploy(deploy(GOOD, None), later(1)).await.unwrap();
    *c.store.busy_writes.lock().unwrap() = 1;
    assert!(c.reconcile(later(2)).await.is_err(), "the canary's verdict could not be saved");
    *c.store.busy_writes.lock().unwrap() = 0;
    run_out(&c, later(2)).await;
    assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Succeeded);
    assert!(sends(&c).values().all(|n| *n == 1), "{:?}", sends(&c));
}

#[tokio::test]
async fn no_instances_is_recorded_and_frees_the_fleet() {
    let c = controller(false);
    let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    assert_eq!(release.status, ReleaseStatus::NoInstances);
    assert_eq!(c.runner.sent_count(), 0);
    assert!(c.store.fleet.lock().unwrap().lease.is_none());
}

#[tokio::test]
async fn reconcile_twice_changes_nothing_more() {
    let c = controller(true);
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let first = finish_with(&c, "Success", later(1)).await;
    let again = c.reconcile(later(2)).await.unwrap();
    assert_eq!(again.outcome, Outcome::Idle);
    assert_eq!(c.store.releases.lock().unwrap()[&first.id], first);
}

pub(crate) const METRIC_NAMES: [&str; 6] =
    ["DeploysStarted", "DeploysSucceeded", "DeploysRolledBack", "FleetHalted", "RolloutDuration", "FleetIsHalted"];

/// A good release, then one whose canary and rollback both fail (so every
/// metric fires). Answers the time the fleet came to rest, halted.
pub(crate) async fn deploy_and_fail_canary(c: &Controller) -> Timestamp {
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(c, T0).await;
    c.runner.failing.lock().unwrap().extend([("i-00".into(), NEXT.into()), ("i-00".into(), GOOD.into())]);
    c.deploy(deploy(NEXT, None), at).await.unwrap();
    run_out(c, at).await
}

pub(crate) fn staged(instances: usize) -> Controller {
    with_policy(instances, policy(RolloutMode::Staged, true))
}

/// A good release, then one whose canary fails on a fleet without
/// automatic rollback: the bad release ends `failed`. Answers the time
/// the fleet came to rest.
pub(crate) async fn deploy_and_fail_without_rollback(instances: usize) -> Timestamp {
    let c = with_policy(instances, policy(RolloutMode::Staged, false));
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    c.runner.failing.lock().unwrap().push(("i-00".into(), NEXT.into()));
    c.deploy(deploy(NEXT, None), at).await.unwrap();
    let at = run_out(&c, at).await;
    assert_eq!(c.store.releases.lock().unwrap().values().filter(|r| r.status == ReleaseStatus::Failed).count(), 1);
    at
}

/// Makes the fakes yield at every port call (as `seed` says), so use cases
/// joined together interleave; `None` runs each call straight through.
fn interleave(c: &Controller, seed: Option<u64>) {
    c.store.yields.set(seed);
    c.inventory.yields.set(seed.map(|s| s ^ 1));
    c.runner.yields.set(seed.map(|s| s ^ 2));
}

/// Reconciles, a second apart, until the fleet is free; answers the time.
async fn run_out(c: &Controller, mut at: Timestamp) -> Timestamp {
    for _ in 0..100 {
        at = at.plus(Duration::from_secs(1));
        let report = c.reconcile(at).await.unwrap();
        if matches!(report.outcome, Outcome::Idle | Outcome::Halted) {
            return at;
        }
    }
    panic!("the fleet never came to rest");
}

/// Each notice written, as (release id, status, its id).
fn posted(c: &Controller) -> Vec<(String, String, String)> {
    c.store
        .notices
        .lock()
        .unwrap()
        .iter()
        .map(|n| {
            let detail: serde_json::Value = serde_json::from_str(&n.detail).unwrap();
            (n.release_id.as_str().to_owned(), detail["status"].as_str().unwrap().to_owned(), n.id.clone())
        })
        .collect()
}

fn stored(c: &Controller, id: &ReleaseId) -> Release {
    c.store.releases.lock().unwrap()[id].clone()
}

/// How often each (release id, flakeref, instance) was sent a command.
fn sends(c: &Controller) -> std::collections::BTreeMap<(String, String, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, command) in c.runner.sent.lock().unwrap().iter().filter(|(_, c)| !c.check_only) {
        if let CommandTarget::Instances(ids) = &command.target {
            assert!(ids.len() <= crate::domain::model::rollout::BATCH);
            for id in ids {
                let release = command.comment.split_whitespace().nth(3).unwrap_or_default().to_owned();
                *counts.entry((release, command.flakeref.to_string(), id.clone())).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[tokio::test]
async fn a_staged_rollout_reaches_every_instance_once_in_waves() {
    let c = staged(10);
    let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    assert_eq!(release.rollout.as_ref().unwrap().waves[0].instance_ids, ["i-00"], "the canary goes first, alone");
    run_out(&c, T0).await;
    let done = stored(&c, &release.id);
    assert_eq!(done.status, ReleaseStatus::Succeeded);
    let sizes: Vec<usize> = done.rollout.unwrap().waves.iter().map(|w| w.instance_ids.len()).collect();
    assert_eq!(sizes, [1, 3, 3, 3]);
    let counts = sends(&c);
    assert_eq!(counts.len(), 10);
    assert!(counts.values().all(|n| *n == 1));
    assert_eq!(c.store.fleet.lock().unwrap().last_good_release.as_ref(), Some(&release.id));
}

#[tokio::test]
async fn a_failed_canary_rolls_back_the_instances_it_reached() {
    let c = staged(10);
    let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    c.runner.failing.lock().unwrap().push(("i-00".into(), NEXT.into()));
    let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
    let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(stored(&c, &bad.id).status, ReleaseStatus::RolledBack);
    run_out(&c, at.plus(Duration::from_secs(1))).await;

    let releases = c.store.releases.lock().unwrap().clone();
    let rollback = releases.values().find(|r| r.kind == ReleaseKind::Rollback).unwrap();
    assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
    assert_eq!(rollback.flakeref, good.flakeref);
    assert_eq!(rollback.status, ReleaseStatus::Succeeded);
    // Linked both ways: the rollback names the bad release, which names it back.
    assert_eq!(rollback.replaces.as_ref(), Some(&bad.id));
    assert_eq!(rollback.origin.requested_by.as_deref(), Some("flakefleet (automatic rollback)"));
    let why = rollback.origin.reason.as_ref().unwrap().as_str();
    assert!(why.starts_with(&format!("release {} failed: ", bad.id)), "{why}");
    assert_eq!(c.release_view(&bad.id).await.unwrap().rolled_back_by.as_ref(), Some(&rollback.id));
    assert_eq!(rollback.reached_instances(), ["i-00"]);
    let counts = sends(&c);
    assert_eq!(counts.keys().filter(|(_, f, _)| f == NEXT).count(), 1, "only the canary got the bad release");
    let fleet = c.store.fleet.lock().unwrap().clone();
    assert_eq!(fleet.desired_release.as_ref(), Some(&rollback.id));
    assert!(fleet.lease.is_none() && fleet.halted.is_none());

    // What each instance runs now: the canary the rollback, the rest the good release.
    let status = c.status(at.plus(Duration::from_secs(100))).await.unwrap();
    assert_eq!(status.instances.len(), 10);
    assert_eq!(status.instances[0].release_id.as_ref(), Some(&rollback.id));
    assert!(status.instances[1..].iter().all(|i| i.release_id.as_ref() == Some(&good.id)));
    assert!(status.instances.iter().all(|i| i.flakeref.as_ref() == Some(&good.flakeref)));
}

#[tokio::test]
async fn a_failing_rollback_halts_the_fleet_and_never_loops() {
    let c = staged(4);
    let at = deploy_and_fail_canary(&c).await;
    let fleet = c.store.fleet.lock().unwrap().clone();
    let halt = fleet.halted.expect("halted");
    assert!(halt.reason.contains("rollback"), "{}", halt.reason);
    assert_eq!(stored(&c, &halt.release_id).status, ReleaseStatus::Halted);
    let sent = c.runner.sent_count();
    for n in 1..5 {
        assert_eq!(c.reconcile(at.plus(Duration::from_secs(n))).await.unwrap().outcome, Outcome::Halted);
    }
    assert_eq!(c.runner.sent_count(), sent, "a halted fleet is left alone");
    // An operator's deploy lifts the halt.
    c.runner.failing.lock().unwrap().clear();
    c.deploy(deploy(GOOD, None), at.plus(Duration::from_secs(10))).await.unwrap();
    assert!(c.store.fleet.lock().unwrap().halted.is_none());
}

#[tokio::test]
async fn a_rollout_past_its_deadline_is_rolled_back() {
    let c = staged(4);
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
    // The canary never answers.
    let canary_command = bad.rollout.as_ref().unwrap().waves[0].command_ids[0].clone();
    c.runner.reports.lock().unwrap().insert(canary_command, CommandReport { finished: false, invocations: vec![] });
    assert_eq!(c.reconcile(at.plus(Duration::from_secs(599))).await.unwrap().outcome, Outcome::Waiting);
    // At the deadline it stops, and waits for the canary's apply up to the
    // settle limit before the rollback goes to the host.
    let settle = c.settings.settle_limit.as_secs();
    for n in [600, 601, 600 + settle - 1] {
        assert_eq!(c.reconcile(at.plus(Duration::from_secs(n))).await.unwrap().outcome, Outcome::Waiting, "{n}");
        assert!(stored(&c, &bad.id).stopping.is_some());
    }
    let sent = c.runner.sent_count();
    assert_eq!(c.reconcile(at.plus(Duration::from_secs(600 + settle))).await.unwrap().outcome, Outcome::RolledBack);
    assert_eq!(c.runner.sent_count(), sent + 1, "the rollback, sent at the settle limit");
    let bad = stored(&c, &bad.id);
    assert_eq!(bad.status, ReleaseStatus::RolledBack);
    let reason = bad.status_reason.unwrap();
    assert!(reason.contains("deadline") && reason.contains("still applying it after the settle limit"), "{reason}");
    assert_eq!(bad.stopping.unwrap().unsettled, ["i-00"], "the host is named");
}

#[tokio::test]
async fn with_no_earlier_good_release_a_failure_halts() {
    let c = staged(3);
    c.runner.failing.lock().unwrap().push(("i-00".into(), GOOD.into()));
    let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    run_out(&c, T0).await;
    assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Halted);
    assert!(c.store.fleet.lock().unwrap().halted.is_some());
    assert_eq!(c.store.releases.lock().unwrap().len(), 1, "no rollback without a target");
}

#[tokio::test]
async fn crossing_the_failure_threshold_stops_and_rolls_back() {
    let mut rollout = policy(RolloutMode::Staged, true);
    rollout.failure_threshold = Rate::Percent(10);
    let c = with_policy(10, rollout);
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    // 30% of the fleet fails, all in the second wave.
    c.runner.failing.lock().unwrap().extend(["i-01", "i-02", "i-03"].map(|i| (i.to_string(), NEXT.to_string())));
    let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
    run_out(&c, at).await;
    let bad = stored(&c, &bad.id);
    assert_eq!(bad.status, ReleaseStatus::RolledBack);
    assert!(bad.status_reason.unwrap().contains("threshold"));
    assert_eq!(bad.rollout.unwrap().waves.len(), 2, "no third wave");
    let rolled: Vec<String> = sends(&c).keys().filter(|(_, f, _)| f == NEXT).map(|(_, _, i)| i.clone()).collect();
    assert_eq!(rolled, ["i-00", "i-01", "i-02", "i-03"]);
}

#[tokio::test]
async fn repair_launches_into_free_slots_with_stable_tokens_and_reapplies_drift() {
    let mut c = staged(2);
    c.settings.spec.desired_capacity = 4;
    let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    let launches = c.inventory.launches.lock().unwrap().clone();
    assert_eq!(launches.iter().map(|l| l.slot).collect::<Vec<_>>(), [2, 3]);
    assert!(launches.iter().all(|l| l.user_data.contains(&format!("'{GOOD}'"))));
    // Launched hosts are sent the good release over SSM once Online, and
    // tagged with the repair only when that apply succeeded.
    let repair = c.store.releases.lock().unwrap().values().find(|r| r.kind == ReleaseKind::Repair).cloned().unwrap();
    assert_eq!((repair.status, repair.flakeref.clone()), (ReleaseStatus::Succeeded, good.flakeref.clone()));
    let sent_to: Vec<String> =
        sends(&c).into_keys().filter(|(id, _, _)| id == repair.id.as_str()).map(|(_, _, i)| i).collect();
    assert_eq!(sent_to, ["i-new02", "i-new03"]);
    assert!(c
        .inventory
        .instances
        .lock()
        .unwrap()
        .iter()
        .filter(|i| i.id.starts_with("i-new"))
        .all(|i| i.release.as_ref() == Some(&repair.id)));
    assert_ne!(launches[0].client_token, launches[1].client_token);
    assert_eq!(c.reconcile(at).await.unwrap().outcome, Outcome::Idle, "whole: nothing to do");

    // A host drifts back to no known release: it gets the good release again.
    c.inventory.instances.lock().unwrap()[0].release = None;
    let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!((report.outcome, report.reapplied.as_slice()), (Outcome::Repaired, ["i-00".to_string()].as_slice()));
    run_out(&c, at.plus(Duration::from_secs(1))).await;
    let repair = c
        .store
        .releases
        .lock()
        .unwrap()
        .values()
        .find(|r| r.kind == ReleaseKind::Repair && !r.instances.is_empty())
        .cloned()
        .unwrap();
    assert_eq!((repair.status, repair.flakeref.as_str()), (ReleaseStatus::Succeeded, GOOD));
    assert_eq!(c.store.fleet.lock().unwrap().desired_release.as_ref(), Some(&good.id), "a repair is not a deploy");
}

#[tokio::test]
async fn a_repair_that_stopped_mid_launch_is_finished_with_the_same_tokens() {
    let mut c = staged(1);
    c.settings.spec.desired_capacity = 2;
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    // A repair recorded its launch, then its invocation died before EC2 answered.
    let id = crate::domain::model::ids::ReleaseId::generate(at, 1);
    let mut repair = new_release(&c.settings, id, Flakeref::parse(GOOD).unwrap(), None, ReleaseKind::Repair, None, at);
    repair.status = ReleaseStatus::InProgress;
    repair.rollout = Some(Rollout { fixed: true, ..Rollout::default() });
    repair.launches = vec![Launch { slot: 5, instance_id: None, error: None }];
    assert_eq!(
        c.store.admit(&repair, &crate::domain::planner::lease::lease_for(&repair), None, false, &[], at).await.unwrap(),
        Admitted::Yes
    );
    let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!(report.outcome, Outcome::WaveStarted, "launched, then sent the release over SSM");
    let launches = c.inventory.launches.lock().unwrap().clone();
    let last = launches.last().unwrap();
    assert_eq!((last.slot, last.client_token.clone()), (5, client_token("prod", &repair.id, 5)));
    run_out(&c, at.plus(Duration::from_secs(1))).await;
    assert_eq!(stored(&c, &repair.id).status, ReleaseStatus::Succeeded);
}

#[tokio::test]
async fn a_halted_fleet_or_one_without_a_good_release_is_not_repaired() {
    let mut c = staged(1);
    c.settings.spec.desired_capacity = 3;
    let report = c.reconcile(T0).await.unwrap();
    assert!(report.skipped.unwrap().contains("no release has succeeded"));
    assert!(c.inventory.launches.lock().unwrap().is_empty());

    let at = deploy_and_fail_canary(&c).await;
    let report = c.reconcile(at).await.unwrap();
    assert_eq!(report.outcome, Outcome::Halted);
    assert!(report.skipped.unwrap().contains("halted"));
    assert!(c.inventory.launches.lock().unwrap().len() <= 2, "launched only before the halt");
}

mod machine {
    use super::*;
    use crate::domain::model::outcome::PingStatus;
    use crate::domain::planner::control::ControlRequest;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Event {
        Tick,
        /// The next SendCommand times out, after or before it really started.
        FlakySend {
            started: bool,
        },
        Duplicate,
        /// The next store write is cancelled by a conflicting transaction.
        Conflict,
        /// Three invocations at once (two reconciles and the client retrying
        /// its deploy), interleaved at every port call as the seed says.
        Concurrent(u64),
        /// Another deploy asked for mid-rollout: refused while the fleet is held.
        Interrupt,
        /// Nothing runs until the holder's deadline has passed.
        Late,
        /// An operator pauses, resumes or aborts the release holding the fleet.
        Steer(crate::domain::planner::control::ControlRequest),
        /// A rollback alarm goes into ALARM, or back to OK.
        Alarm(bool),
        /// A deploy to two named instances (refused while the fleet is held).
        Targeted(usize),
        /// A host's agent goes away (an apply it started runs on and ends on
        /// the host, unreported), or comes back.
        Agent(usize, bool),
        /// Every host of a coming batch deregisters just as the send arrives.
        DropAtSend(usize),
        /// The claimer of a wave dies before its send creates anything, and
        /// an operator pauses the rollout meanwhile.
        ClaimerDiesThenPause,
    }

    /// Reconciles until the fleet is free, nobody resuming a pause: a second
    /// apart, a minute while paused, so a pause ends by its limit.
    /// Also answers the hosts a drift repair keeps failing on: a host the
    /// good release fails on (it passed the rollout unreachable, within the
    /// tolerance) is repaired again on every pass, by design, so a second
    /// failed repair counts as rest.
    async fn run_out_unattended(c: &Controller, mut at: Timestamp) -> (Timestamp, Vec<String>) {
        let mut failed_repairs = 0;
        for _ in 0..200 {
            let report = c.reconcile(at).await.unwrap();
            let repair_failed = report.release.as_ref().filter(|r| {
                r.kind == ReleaseKind::Repair && r.status == ReleaseStatus::Failed && r.launches.is_empty()
            });
            if let Some(repair) = repair_failed {
                failed_repairs += 1;
                if failed_repairs == 2 {
                    return (
                        at,
                        repair.instances.iter().filter(|i| i.failed()).map(|i| i.instance_id.clone()).collect(),
                    );
                }
            }
            match report.outcome {
                Outcome::Idle | Outcome::Halted => return (at, Vec::new()),
                Outcome::Paused => at = at.plus(Duration::from_secs(60)),
                _ => at = at.plus(Duration::from_secs(1)),
            }
        }
        panic!("the fleet never came to rest");
    }

    /// The release holding the fleet, if an operator or the automatic pause paused it.
    fn paused_holder(c: &Controller) -> Option<ReleaseId> {
        let id = c.store.fleet.lock().unwrap().lease.clone()?.release_id;
        let release = c.store.releases.lock().unwrap().get(&id).cloned()?;
        crate::domain::planner::control::is_paused(&release).then_some(id)
    }

    /// How many apply commands went out for this release.
    fn applies_of(c: &Controller, id: &ReleaseId) -> usize {
        let sent = c.runner.sent.lock().unwrap();
        sent.iter().filter(|(_, command)| !command.check_only && command.comment.contains(id.as_str())).count()
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec(
            prop_oneof![
                6 => Just(Event::Tick),
                1 => any::<bool>().prop_map(|started| Event::FlakySend { started }),
                1 => Just(Event::Duplicate),
                1 => Just(Event::Conflict),
                2 => any::<u64>().prop_map(Event::Concurrent),
                1 => Just(Event::Interrupt),
                1 => Just(Event::Late),
                2 => prop_oneof![
                    Just(ControlRequest::Pause),
                    Just(ControlRequest::Resume),
                    any::<bool>().prop_map(|rollback| ControlRequest::Abort { rollback }),
                ]
                .prop_map(Event::Steer),
                1 => any::<bool>().prop_map(Event::Alarm),
                1 => (0usize..14).prop_map(Event::Targeted),
                1 => (0usize..14, any::<bool>()).prop_map(|(host, back)| Event::Agent(host, back)),
                1 => (0usize..14).prop_map(Event::DropAtSend),
                1 => Just(Event::ClaimerDiesThenPause),
            ],
            0..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever the order of ticks, duplicates, lost sends, conflicting
        /// writes, concurrent invocations, late runs and an operator's
        /// pauses, resumes and aborts (with the automatic pause before each
        /// wave, or without; with waves that bake and hosts whose checks
        /// fail at the end of it, or without), rollback alarms and deploys to
        /// named instances at random points, a rollout ends in a final state, sends no
        /// instance the same release twice, and loses no release.
        #[test]
        fn rollouts_always_end_and_never_send_twice(
            // As AWS documents it. The forgiving report (Undeliverable once seen
            // running) is in the scenarios: here a concurrent pass whose write was
            // fenced may be the only one that saw it running, and no orchestrator
            // can know of a start nobody recorded.
            lost_reports_undeliverable in Just(false),
            size in 1usize..14,
            pause_before_waves in any::<bool>(),
            bake in prop_oneof![Just(0u64), Just(2u64)],
            unhealthy in prop::collection::vec(0usize..14, 0..3),
            failing in prop::collection::vec(0usize..14, 0..4),
            slow in prop::collection::vec((0usize..14, 1usize..6), 0..4),
            first in events(),
            second in events(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut c = staged(size);
                // How a lost agent's started apply reports: as AWS documents, or as a forgiving emulator did.
                c.runner.lost_reports_undeliverable.store(lost_reports_undeliverable, std::sync::atomic::Ordering::Relaxed);
                // Longer than any one invocation lives (all of a pass runs at
                // one instant here), as the configuration requires of it.
                c.settings.takeover_after = Duration::from_secs(2);
                // A pause nobody resumes ends the rollout within the run-out.
                c.settings.rollout.pause_before_waves = pause_before_waves;
                c.settings.rollout.max_pause = Duration::from_secs(30);
                // Waves that bake, with hosts whose checks fail at the end of it.
                c.settings.rollout.bake = Duration::from_secs(bake);
                // A rollback alarm that goes off and on at random points.
                c.settings.rollout.alarms = vec!["web-5xx".into()];
                // Applies of the second release that take a while: a failure
                // elsewhere in their wave is judged while they still run.
                c.runner.slow.lock().unwrap().extend(slow.iter().map(|(i, ticks)| ((format!("i-{i:02}"), NEXT.to_string()), *ticks)));
                let mut at = T0;
                let mut created = 0;
                for (flakeref, key, events) in [(GOOD, "first", &first), (NEXT, "second", &second)] {
                    if flakeref == NEXT {
                        c.runner.failing.lock().unwrap().extend(failing.iter().map(|i| (format!("i-{i:02}"), NEXT.to_string())));
                        c.runner.unhealthy.lock().unwrap().extend(unhealthy.iter().map(|i| (format!("i-{i:02}"), NEXT.to_string())));
                    }
                    at = at.plus(Duration::from_secs(1));
                    if c.deploy(deploy(flakeref, Some(key)), at).await.is_ok() || c.store.releases.lock().unwrap().len() > created {
                        created = c.store.releases.lock().unwrap().len();
                    }
                    for event in events.iter() {
                        at = at.plus(Duration::from_secs(1));
                        // A paused rollout sends nothing more until resumed (or aborted).
                        let paused = paused_holder(&c);
                        let sent_before = paused.as_ref().map(|id| applies_of(&c, id));
                        match event {
                            Event::Tick => { let _ = c.reconcile(at).await; }
                            Event::Duplicate => { let _ = c.reconcile(at).await; let _ = c.reconcile(at).await; }
                            Event::Conflict => {
                                *c.store.busy_writes.lock().unwrap() = 1;
                                let _ = c.reconcile(at).await;
                                *c.store.busy_writes.lock().unwrap() = 0;
                            }
                            Event::Interrupt => {
                                let _ = c.deploy(deploy(GOOD, Some(&format!("interrupt-{}", at.millis()))), at).await;
                            }
                            Event::Late => {
                                at = at.plus(c.settings.deploy_timeout);
                            }
                            Event::Targeted(first) => {
                                let ids: Vec<String> = (*first..first + 2).map(|i| format!("i-{:02}", i % size)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                                let mut request = deploy(flakeref, Some(&format!("targeted-{}", at.millis())));
                                request.instance_ids = Some(ids);
                                let _ = c.deploy(request, at).await;
                            }
                            Event::Alarm(firing) => {
                                let mut alarms = c.alarms.firing.lock().unwrap();
                                alarms.clear();
                                if *firing {
                                    alarms.push("web-5xx".into());
                                }
                            }
                            Event::Steer(request) => {
                                let holder = c.store.fleet.lock().unwrap().lease.clone().map(|l| l.release_id);
                                if let Some(id) = holder {
                                    let _ = c.control(&id, *request, "ops", at).await;
                                }
                            }
                            Event::Concurrent(seed) => {
                                interleave(&c, Some(*seed));
                                let _ = tokio::join!(c.reconcile(at), c.reconcile(at), c.deploy(deploy(flakeref, Some(key)), at));
                                interleave(&c, None);
                            }
                            Event::FlakySend { started } => {
                                *c.runner.next.lock().unwrap() = if *started { SendBehaviour::SendThenTimeOut } else { SendBehaviour::Unavailable };
                                let _ = c.reconcile(at).await;
                                *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
                            }
                            Event::Agent(host, back) => {
                                let status = if *back { PingStatus::Online } else { PingStatus::ConnectionLost };
                                c.runner.set_agent(&format!("i-{:02}", host % size), status);
                            }
                            Event::DropAtSend(first) => {
                                let batch = (*first..first + 3).map(|i| (format!("i-{:02}", i % size), PingStatus::NotRegistered));
                                c.runner.agents_on_send.lock().unwrap().extend(batch);
                            }
                            Event::ClaimerDiesThenPause => {
                                *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
                                let _ = c.reconcile(at).await;
                                *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
                                let holder = c.store.fleet.lock().unwrap().lease.clone().map(|l| l.release_id);
                                if let Some(id) = holder {
                                    let _ = c.control(&id, ControlRequest::Pause, "ops", at).await;
                                }
                            }
                        }
                        if let (Some(id), Some(before)) = (&paused, sent_before) {
                            if !matches!(event, Event::Steer(ControlRequest::Resume | ControlRequest::Abort { .. })) {
                                prop_assert_eq!(applies_of(&c, id), before, "release {} sent while paused, at {:?}", id, event);
                            }
                        }
                        let in_flight = c.store.releases.lock().unwrap().values().filter(|r| !r.status.is_final()).count();
                        prop_assert!(in_flight <= 1, "{in_flight} releases in flight at once after {event:?}");
                    }
                    // Every agent back, none dropping at a send: the fleet can come to rest whole.
                    c.runner.agents.lock().unwrap().clear();
                    c.runner.agents_on_send.lock().unwrap().clear();
                    let stuck;
                    (at, stuck) = run_out_unattended(&c, at).await;
                    let releases = c.store.releases.lock().unwrap().clone();
                    prop_assert!(releases.len() >= created, "a release was lost");
                    created = releases.len();
                    prop_assert!(releases.values().all(|r| r.status.is_final()), "{releases:?}");
                    // The timeline the status page draws: a wave is dated when its
                    // first batch went out and when it was judged, in order, and
                    // every wave that went out was judged by the end.
                    for r in releases.values() {
                        let mut before = r.created_at.millis();
                        for (n, wave) in r.rollout.iter().flat_map(|o| o.waves.iter()).enumerate() {
                            prop_assert_eq!(wave.sent_ms.is_some(), !wave.command_ids.is_empty(), "{} wave {}", r.id, n);
                            if let Some(sent) = wave.sent_ms {
                                let judged = wave.judged_ms;
                                prop_assert!(sent >= before && judged.is_some_and(|j| j >= sent), "{} wave {}: {:?}", r.id, n, wave);
                                before = judged.unwrap_or(sent);
                            }
                        }
                    }
                    prop_assert!(c.store.fleet.lock().unwrap().lease.is_none());
                    // Every host runs what flakefleet records it runs (its release tag),
                    // but a host a release ended without (still applying at its settle
                    // limit, named in `stopping.unsettled`) when no rollback followed to
                    // it: its outcome is unknown by design, and said so to the operator.
                    let hosts = c.runner.hosts.lock().unwrap().clone();
                    let reached_by = |id: &str, r: &Release| r.reached_instances().iter().any(|i| i == id);
                    let unknown = |id: &str| {
                        releases.values().any(|r| {
                            r.stopping.as_ref().is_some_and(|s| s.unsettled.iter().any(|u| u == id))
                                && !releases.values().any(|later| later.id > r.id && reached_by(id, later))
                        })
                    };
                    let fleet = c.store.fleet.lock().unwrap().clone();
                    let instances = c.inventory.instances.lock().unwrap().clone();
                    for instance in instances.iter().filter(|i| !unknown(&i.id) && !stuck.contains(&i.id)) {
                        let recorded = instance.release.as_ref().map(|id| releases[id].flakeref.to_string());
                        // A host whose tag a failure forgot runs something not known: only a
                        // halt, or having no good release to repair towards, leaves it so.
                        if recorded.is_some() || (fleet.halted.is_none() && fleet.last_good_release.is_some()) {
                            prop_assert_eq!(recorded.as_ref(), hosts.get(&instance.id), "{}", instance.id);
                        }
                    }
                    // At rest and not halted, no host is on a release that failed: each
                    // runs the good release, or a deploy to named instances that succeeded since.
                    if let (None, Some(good)) = (&fleet.halted, &fleet.last_good_release) {
                        for instance in instances.iter().filter(|i| !stuck.contains(&i.id)) {
                            let tagged = instance.release.as_ref().map(|id| &releases[id]);
                            let fine = tagged.is_some_and(|r| {
                                r.flakeref == releases[good].flakeref
                                    || (r.kind == ReleaseKind::Targeted && r.status == ReleaseStatus::Succeeded && r.id > *good)
                            });
                            prop_assert!(fine, "{} is on {:?} at rest; the good release is {}", instance.id, tagged.map(|r| (&r.id, r.status)), good);
                        }
                    }
                    // A deploy to named instances succeeds only when every one reported Success.
                    for r in releases.values().filter(|r| r.kind == ReleaseKind::Targeted && r.status == ReleaseStatus::Succeeded) {
                        let named: Vec<&String> = r.rollout.iter().flat_map(|o| o.targeted()).collect();
                        let converged = |id: &String| r.instances.iter().any(|o| &o.instance_id == id && o.converged());
                        prop_assert!(!named.is_empty() && named.iter().all(|id| converged(id)) && r.unreachable.is_empty(), "{:?}", r);
                    }
                }
                prop_assert!(sends(&c).values().all(|n| *n == 1), "{:?}", sends(&c));
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn an_agent_that_drops_between_the_check_and_the_send_is_dropped_and_the_rest_sent() {
    use crate::domain::model::outcome::PingStatus;
    let c = staged(10);
    // The canary's first choice deregisters as the send arrives: chosen again.
    c.runner.agents_on_send.lock().unwrap().push(("i-00".into(), PingStatus::NotRegistered));
    let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    assert_eq!(release.rollout.as_ref().unwrap().waves[0].instance_ids, ["i-01"]);
    assert_eq!(release.unreachable[0].instance_id, "i-00");
    // A wave target goes the same way after its wave was chosen.
    let reconciled = c.reconcile(later(1)).await.unwrap();
    assert_eq!(reconciled.outcome, Outcome::WaveStarted);
    let wave = stored(&c, &release.id).rollout.unwrap().waves[1].instance_ids.clone();
    assert_eq!(wave, ["i-02", "i-03", "i-04"]);
    c.runner.agents_on_send.lock().unwrap().push(("i-05".into(), PingStatus::Inactive));
    let _ = c.reconcile(later(2)).await.unwrap();
    let after = stored(&c, &release.id);
    let wave = after.rollout.as_ref().unwrap().waves[2].instance_ids.clone();
    assert_eq!(wave, ["i-06", "i-07"], "i-05 dropped from its wave after the re-check, the rest sent");
    assert!(after.unreachable.iter().any(|u| u.instance_id == "i-05" && u.ping_status == PingStatus::Inactive));
    assert!(sends(&c).keys().all(|(_, _, id)| id != "i-00" && id != "i-05"), "nothing sent to a dropped host");
    // Two unreachable hosts, a tolerance of one: stopped like a failure (the
    // first release of the fleet: nothing to roll back to, so halted).
    run_out(&c, later(3)).await;
    let done = stored(&c, &release.id);
    assert_eq!(done.status, ReleaseStatus::Halted, "{:?}", done.status_reason);
    assert!(done.status_reason.unwrap().contains("over the tolerance of 1"));
}

#[tokio::test]
async fn the_fleet_shows_its_lease_as_stored_even_once_overdue() {
    let c = staged(3);
    let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let held = c.status(later(1)).await.unwrap();
    assert!(held.lease.as_ref().is_some_and(|l| !l.overdue && l.lease.release_id == release.id));
    // Past the deadline, nothing reconciled: the lease still holds the fleet
    // and says it is overdue; the release holding it is shown, with its rollout.
    let late = c.status(later(3600)).await.unwrap();
    let lease = late.lease.expect("the stored lease is shown");
    assert!(lease.overdue);
    assert_eq!(late.rollout.map(|r| r.release_id), Some(release.id));
}

/// Case 2 of the exactly-once issue: a release past its deadline keeps the
/// fleet until it is settled. A deploy that finds it there settles it first
/// (no wave of it goes out after the deadline), and is admitted only once the
/// fleet is free: here, after the automatic rollback that settling started.
#[tokio::test]
async fn a_deploy_after_a_deadline_settles_the_late_release_first_and_never_overlaps_it() {
    let c = staged(10);
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    let late = c.deploy(deploy(NEXT, None), at).await.unwrap();
    // Nothing reconciled until after its deadline; the canary passed meanwhile.
    let after = late.deadline.plus(Duration::from_secs(1));
    let err = c.deploy(deploy(NEXT, Some("next-try")), after).await.unwrap_err();
    let ControlError::Busy { holder } = err else { panic!("{err:?}") };
    let settled = stored(&c, &late.id);
    assert_eq!(settled.status, ReleaseStatus::RolledBack, "{:?}", settled.status_reason);
    assert!(settled.status_reason.as_deref().unwrap_or_default().contains("deadline"), "{settled:?}");
    assert_eq!(stored(&c, &holder).kind, ReleaseKind::Rollback, "the rollback holds the fleet now");
    let late_sends: Vec<String> =
        sends(&c).into_keys().filter(|(id, _, _)| id == late.id.as_str()).map(|(_, _, i)| i).collect();
    assert_eq!(late_sends, ["i-00"], "the canary only: no wave after the deadline");
    // Once the rollback is final, the deploy is admitted.
    let free = run_out(&c, after).await;
    let next = c.deploy(deploy(NEXT, Some("next-try")), free).await.unwrap();
    assert_eq!(next.status, ReleaseStatus::InProgress);
}

mod steering {
    //! Pause, resume and abort, as an operator sees them.

    use super::*;
    use crate::domain::planner::control::ControlRequest;

    fn waves(c: &Controller, id: &ReleaseId) -> usize {
        stored(c, id).rollout.map_or(0, |r| r.waves.len())
    }

    fn lease_deadline(c: &Controller) -> Option<Timestamp> {
        c.store.fleet.lock().unwrap().lease.as_ref().map(|l| l.deadline)
    }

    #[tokio::test]
    async fn a_paused_rollout_holds_its_next_wave_until_resumed() {
        let c = staged(10);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let paused = c.control(&release.id, ControlRequest::Pause, "ops", later(1)).await.unwrap();
        assert!(paused.deadline > release.deadline, "moved out while paused");
        assert_eq!(lease_deadline(&c), Some(paused.deadline), "the lease follows");
        for s in 2..30 {
            assert_eq!(c.reconcile(later(s)).await.unwrap().outcome, Outcome::Paused);
        }
        assert_eq!(waves(&c, &release.id), 1, "the canary finished; no next wave");
        let resumed = c.control(&release.id, ControlRequest::Resume, "lead", later(31)).await.unwrap();
        assert_eq!(resumed.rollout.as_ref().unwrap().waves.len(), 2, "the resume's reconcile sent the next wave");
        assert_eq!(resumed.deadline, release.deadline.plus(Duration::from_secs(30)), "out by the 30 s paused");
        run_out(&c, later(31)).await;
        let done = stored(&c, &release.id);
        assert_eq!(done.status, ReleaseStatus::Succeeded);
        assert!(sends(&c).values().all(|n| *n == 1), "every instance once");
        let actions: Vec<(&str, &str)> =
            done.control.as_ref().unwrap().actions.iter().map(|a| (a.action.as_str(), a.by.as_str())).collect();
        assert_eq!(actions, [("pause", "ops"), ("resume", "lead")]);
    }

    #[tokio::test]
    async fn pausing_before_every_wave_waits_for_a_promote_each_time() {
        let mut rollout = policy(RolloutMode::Staged, true);
        rollout.pause_before_waves = true;
        let c = with_policy(10, rollout);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let mut at = T0;
        for promote in 1..=3 {
            at = at.plus(Duration::from_secs(1));
            assert_eq!(c.reconcile(at).await.unwrap().outcome, Outcome::Paused);
            assert_eq!(c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap().outcome, Outcome::Paused);
            assert_eq!(waves(&c, &release.id), promote, "held before wave {promote}");
            c.control(&release.id, ControlRequest::Resume, "lead", at.plus(Duration::from_secs(2))).await.unwrap();
            assert_eq!(waves(&c, &release.id), promote + 1);
            at = at.plus(Duration::from_secs(2));
        }
        run_out(&c, at).await;
        let done = stored(&c, &release.id);
        assert_eq!(done.status, ReleaseStatus::Succeeded);
        let automatic = done.control.unwrap().actions.iter().filter(|a| a.action.as_str() == "auto_pause").count();
        assert_eq!(automatic, 3);
    }

    #[tokio::test]
    async fn a_rollout_paused_past_the_longest_pause_fails_and_is_rolled_back() {
        let mut rollout = policy(RolloutMode::Staged, true);
        rollout.max_pause = Duration::from_secs(100);
        let c = with_policy(10, rollout);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        let paused = c.control(&bad.id, ControlRequest::Pause, "ops", at).await.unwrap();
        let report = c.reconcile(Timestamp::from_millis(paused.deadline.millis() - 1)).await.unwrap();
        assert_eq!(report.outcome, Outcome::Paused);
        let report = c.reconcile(paused.deadline).await.unwrap();
        assert_eq!(report.outcome, Outcome::RolledBack);
        let bad = stored(&c, &bad.id);
        assert_eq!(bad.status, ReleaseStatus::RolledBack);
        assert!(bad.status_reason.as_ref().unwrap().starts_with("paused too long: paused by ops"), "{bad:?}");
    }

    #[tokio::test]
    async fn an_abort_stops_sending_and_halts_or_rolls_back_as_asked() {
        for (auto_rollback, rollback, ends) in [
            (false, false, ReleaseStatus::Halted),
            (false, true, ReleaseStatus::RolledBack),
            (true, false, ReleaseStatus::RolledBack),
        ] {
            let c = with_policy(10, policy(RolloutMode::Staged, auto_rollback));
            c.deploy(deploy(GOOD, None), T0).await.unwrap();
            let at = run_out(&c, T0).await;
            let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
            let aborted = c.control(&bad.id, ControlRequest::Abort { rollback }, "ops", at).await.unwrap();
            assert_eq!(aborted.status, ends, "auto {auto_rollback}, rollback {rollback}: {aborted:?}");
            assert!(aborted.status_reason.as_ref().unwrap().contains("aborted by ops"), "{aborted:?}");
            assert_eq!(waves(&c, &bad.id), 1, "nothing sent after the canary");
            let fleet = c.store.fleet.lock().unwrap().clone();
            match ends {
                ReleaseStatus::Halted => {
                    assert!(fleet.halted.as_ref().unwrap().reason.contains("aborted"), "{fleet:?}");
                    assert!(fleet.lease.is_none(), "the fleet is free for an operator");
                }
                _ => assert_eq!(
                    c.store.releases.lock().unwrap().values().filter(|r| r.kind == ReleaseKind::Rollback).count(),
                    1
                ),
            }
            // Idempotent, and the rest refused with a reason: the release is over.
            let again = c.control(&bad.id, ControlRequest::Abort { rollback }, "ops", at).await;
            assert!(matches!(again, Err(ControlError::NotSteerable(why)) if why.contains(ends.as_str())));
        }
    }

    #[tokio::test]
    async fn steering_what_is_not_rolling_out_is_refused_and_changes_nothing() {
        let c = staged(4);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let before = stored(&c, &release.id);
        for request in [ControlRequest::Pause, ControlRequest::Resume, ControlRequest::Abort { rollback: true }] {
            let err = c.control(&release.id, request, "ops", at).await.unwrap_err();
            assert!(matches!(&err, ControlError::NotSteerable(why) if why.contains("is succeeded")), "{err}");
        }
        assert_eq!(stored(&c, &release.id), before);
        let unknown = crate::domain::model::ids::ReleaseId::generate(at, 9);
        let err = c.control(&unknown, ControlRequest::Pause, "ops", at).await.unwrap_err();
        assert!(matches!(err, ControlError::ReleaseNotFound(_)), "{err}");
        // All at once: one command, no next wave to hold; an abort is allowed.
        let c = with_policy(3, policy(RolloutMode::AllAtOnce, false));
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let err = c.control(&release.id, ControlRequest::Pause, "ops", later(1)).await.unwrap_err();
        assert!(matches!(&err, ControlError::NotSteerable(why) if why.contains("abort it instead")), "{err}");
    }
}

mod baking {
    //! FLAKEFLEET_BAKE_SECONDS: each wave stays healthy, then checks again.

    use super::*;

    fn baking(instances: usize, secs: u64) -> Controller {
        let mut rollout = policy(RolloutMode::Staged, true);
        rollout.bake = Duration::from_secs(secs);
        with_policy(instances, rollout)
    }

    fn checks_sent(c: &Controller) -> Vec<String> {
        c.runner.sent.lock().unwrap().iter().filter(|(_, c)| c.check_only).map(|(_, c)| c.comment.clone()).collect()
    }

    fn waves(c: &Controller, id: &ReleaseId) -> usize {
        stored(c, id).rollout.map_or(0, |r| r.waves.len())
    }

    #[tokio::test]
    async fn a_wave_bakes_then_checks_its_hosts_again_before_the_next_wave() {
        let c = baking(10, 5);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        // The canary succeeds; its bake starts.
        assert_eq!(c.reconcile(later(1)).await.unwrap().outcome, Outcome::Waiting);
        let bake = stored(&c, &release.id).rollout.unwrap().waves[0].bake.clone().expect("baking");
        assert_eq!(bake.healthy_since_ms, later(1).millis());
        for s in 2..6 {
            c.reconcile(later(s)).await.unwrap();
            assert!(checks_sent(&c).is_empty(), "not before the bake is over");
            assert_eq!(waves(&c, &release.id), 1);
        }
        // Baked: the checks go out, pass, and the next wave starts.
        c.reconcile(later(6)).await.unwrap();
        assert_eq!(checks_sent(&c), [release.check_comment(0, 0)]);
        assert_eq!(waves(&c, &release.id), 2, "checked and on to the next wave");
        run_out(&c, later(6)).await;
        let done = stored(&c, &release.id);
        assert_eq!(done.status, ReleaseStatus::Succeeded);
        assert_eq!(checks_sent(&c).len(), 4, "one check per wave, the last one too");
        assert!(sends(&c).values().all(|n| *n == 1), "checks are not applies: one apply each");
        assert!(done.rollout.unwrap().waves.iter().all(|w| w.bake.as_ref().is_some_and(|b| b.checks.is_some())));
    }

    #[tokio::test]
    async fn a_health_check_failing_at_the_end_of_the_bake_stops_and_rolls_back() {
        let c = baking(10, 5);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        c.runner.unhealthy.lock().unwrap().push(("i-00".into(), NEXT.into()));
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        let at = run_out(&c, at).await;
        let bad = stored(&c, &bad.id);
        assert_eq!(bad.status, ReleaseStatus::RolledBack);
        let reason = bad.status_reason.unwrap();
        assert_eq!(
            reason,
            "the health checks at the end of wave 1's bake failed on 1 of 1 hosts, first on i-00 (check web); \
             their output is in the release (the wave's bake.checks.failed)"
        );
        let waves = bad.rollout.unwrap().waves;
        assert_eq!(waves.len(), 1, "no wave after the canary's failed checks");
        // The host's words stay in the release, never in its reason (nor its notices).
        let failed = waves[0].bake.as_ref().and_then(|b| b.checks.as_ref()).map(|c| c.failed.clone()).unwrap();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].stderr_tail.contains("flakefleet: health check web failed"), "{failed:?}");
        let posted = c.store.notices.lock().unwrap();
        assert!(posted.iter().any(|n| n.release_id == bad.id && n.detail.contains("rolled_back")), "announced");
        assert!(posted.iter().all(|n| !n.detail.contains("HTTP 500")), "no host output in a notice");
        let rollback = c.store.releases.lock().unwrap().values().find(|r| r.kind == ReleaseKind::Rollback).cloned();
        let rollback = rollback.expect("rolled back");
        assert_eq!(rollback.status, ReleaseStatus::Succeeded);
        assert!(rollback.rollout.unwrap().waves[0].bake.is_none(), "a rollback does not bake");
        let _ = at;
    }
}

mod alarms {
    //! FLAKEFLEET_ROLLBACK_ALARMS: an alarm in ALARM stops a rollout and
    //! refuses a deploy, unless the deploy ignores it (recorded).

    use super::*;

    fn watching(instances: usize) -> Controller {
        let mut rollout = policy(RolloutMode::Staged, true);
        rollout.alarms = vec!["web-5xx".into(), "db-latency".into()];
        with_policy(instances, rollout)
    }

    fn fire(c: &Controller, alarm: &str) {
        c.alarms.firing.lock().unwrap().push(alarm.into());
    }

    #[tokio::test]
    async fn an_alarm_during_a_rollout_stops_it_and_rolls_it_back() {
        let c = watching(10);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        fire(&c, "db-latency");
        let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
        assert_eq!(report.outcome, Outcome::RolledBack);
        let bad = stored(&c, &bad.id);
        assert_eq!(bad.status, ReleaseStatus::RolledBack);
        assert_eq!(bad.status_reason.as_deref(), Some("rollback alarm db-latency is in ALARM"));
        assert_eq!(bad.rollout.unwrap().waves.len(), 1, "stopped after the canary");
        // The rollback itself is never stopped by the alarm.
        run_out(&c, at.plus(Duration::from_secs(1))).await;
        let rollback = c.store.releases.lock().unwrap().values().find(|r| r.kind == ReleaseKind::Rollback).cloned();
        assert_eq!(rollback.unwrap().status, ReleaseStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_deploy_during_an_alarm_is_refused_unless_it_ignores_it_which_is_recorded() {
        let c = watching(4);
        fire(&c, "web-5xx");
        let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
        assert!(matches!(&err, ControlError::AlarmActive(names) if names == &["web-5xx"]), "{err}");
        assert!(c.store.releases.lock().unwrap().is_empty() && c.runner.sent_count() == 0, "nothing written or sent");
        let mut request = deploy(GOOD, None);
        request.ignore_alarms = true;
        let release = c.deploy(request, T0).await.unwrap();
        assert_eq!(release.ignored_alarms, ["web-5xx"]);
        // The ignored alarm never stops it; another one would.
        run_out(&c, T0).await;
        assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Succeeded);
        // A rollback is never refused for an alarm, nor stopped by one: it
        // is what an alarm asks for.
        let rollback = c
            .rollback(
                RollbackRequest { target: Some(release.id.clone()), idempotency_key: None, origin: Origin::default() },
                later(200),
            )
            .await
            .unwrap();
        run_out(&c, later(200)).await;
        assert_eq!(stored(&c, &rollback.id).status, ReleaseStatus::Succeeded, "run to its end under the alarm");
    }

    #[tokio::test]
    async fn an_alarm_that_does_not_exist_is_an_error_that_names_it() {
        let c = watching(2);
        c.alarms.unknown.lock().unwrap().push("db-latency".into());
        let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
        assert!(err.to_string().contains("no alarm named db-latency"), "{err}");
        assert!(c.store.releases.lock().unwrap().is_empty());
    }
}

mod targeted {
    //! A deploy to named instances: a release of their own, never the
    //! fleet's desired or good one, left alone by the drift repair.

    use super::*;
    use crate::domain::model::outcome::PingStatus;

    fn on(ids: &[&str], flakeref: &str) -> DeployRequest {
        let mut request = deploy(flakeref, None);
        request.instance_ids = Some(ids.iter().map(|s| s.to_string()).collect());
        request
    }

    #[tokio::test]
    async fn a_deploy_to_named_instances_reaches_only_them_and_the_repair_leaves_them_be() {
        let c = staged(5);
        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let targeted = c.deploy(on(&["i-01", "i-03"], NEXT), at).await.unwrap();
        assert_eq!(targeted.kind, ReleaseKind::Targeted);
        assert_eq!(
            c.store.fleet.lock().unwrap().lease.as_ref().map(|l| l.release_id.clone()),
            Some(targeted.id.clone())
        );
        let at = run_out(&c, at).await;
        assert_eq!(stored(&c, &targeted.id).status, ReleaseStatus::Succeeded);
        let fleet = c.store.fleet.lock().unwrap().clone();
        assert_eq!(fleet.desired_release.as_ref(), Some(&good.id), "never the desired release");
        assert_eq!(fleet.last_good_release.as_ref(), Some(&good.id), "never the good release");
        let next: Vec<String> = sends(&c).keys().filter(|(_, f, _)| f == NEXT).map(|(_, _, i)| i.clone()).collect();
        assert_eq!(next, ["i-01", "i-03"]);
        // The drift repair leaves them on it; the next fleet-wide deploy supersedes it.
        let report = c.reconcile(at.plus(Duration::from_secs(5))).await.unwrap();
        assert_eq!((report.outcome, report.reapplied.len()), (Outcome::Idle, 0), "{report:?}");
        let repairs = c.store.releases.lock().unwrap().values().filter(|r| r.kind == ReleaseKind::Repair).count();
        assert_eq!(repairs, 0, "no repair put them back");
        let hosts = c.runner.hosts.lock().unwrap().clone();
        assert_eq!((hosts["i-01"].as_str(), hosts["i-03"].as_str(), hosts["i-02"].as_str()), (NEXT, NEXT, GOOD));
        let fleetwide = c.deploy(deploy(NEXT, Some("all")), at.plus(Duration::from_secs(6))).await.unwrap();
        run_out(&c, at.plus(Duration::from_secs(6))).await;
        assert_eq!(stored(&c, &fleetwide.id).status, ReleaseStatus::Succeeded);
        assert_eq!(c.store.fleet.lock().unwrap().last_good_release.as_ref(), Some(&fleetwide.id));
    }

    #[tokio::test]
    async fn a_failing_deploy_to_named_instances_puts_them_back_on_the_good_release() {
        let c = staged(5);
        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        c.runner.failing.lock().unwrap().push(("i-02".into(), NEXT.into()));
        let targeted = c.deploy(on(&["i-02", "i-04"], NEXT), at).await.unwrap();
        run_out(&c, at).await;
        assert_eq!(stored(&c, &targeted.id).status, ReleaseStatus::RolledBack);
        let releases = c.store.releases.lock().unwrap().clone();
        let rollback = releases.values().find(|r| r.kind == ReleaseKind::Rollback).unwrap();
        assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
        assert_eq!(rollback.reached_instances(), ["i-02", "i-04"]);
        assert_eq!(rollback.status, ReleaseStatus::Succeeded);
    }

    #[tokio::test]
    async fn instances_outside_the_fleet_or_not_online_are_refused_and_nothing_is_recorded() {
        let c = staged(3);
        let err = c.deploy(on(&["i-01", "i-99"], GOOD), T0).await.unwrap_err();
        assert!(
            matches!(&err, ControlError::Targets(crate::domain::planner::reach::TargetRefusal::NotInFleet(ids)) if ids == &["i-99"]),
            "{err}"
        );
        c.runner.agents.lock().unwrap().insert("i-02".into(), PingStatus::ConnectionLost);
        let err = c.deploy(on(&["i-01", "i-02"], GOOD), T0).await.unwrap_err();
        assert!(err.to_string().contains("i-02 ConnectionLost is not an Online SSM managed node"), "{err}");
        assert!(c.store.releases.lock().unwrap().is_empty() && c.runner.sent_count() == 0);
    }
}

/// Every status change of every release is written as a notice, once, with
/// the write that makes it (the stream carries what is written); a pass that
/// changes nothing writes none.
#[tokio::test]
async fn every_status_change_is_announced_once() {
    let c = staged(3);
    let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
    let at = run_out(&c, T0).await;
    let statuses: Vec<(String, String)> = posted(&c).into_iter().map(|(r, s, _)| (r, s)).collect();
    let of = |status: &str| (good.id.as_str().to_owned(), status.to_owned());
    assert_eq!(statuses, [of("pending"), of("in_progress"), of("succeeded")]);
    c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!(posted(&c).len(), 3, "nothing changed, nothing announced");

    c.runner.failing.lock().unwrap().push(("i-00".into(), NEXT.into()));
    let bad = c.deploy(deploy(NEXT, None), at.plus(Duration::from_secs(2))).await.unwrap();
    run_out(&c, at.plus(Duration::from_secs(2))).await;
    let all = posted(&c);
    let ids: Vec<&String> = all.iter().map(|(_, _, id)| id).collect();
    let bad_statuses: Vec<&str> =
        all.iter().filter(|(r, _, _)| r == bad.id.as_str()).map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(bad_statuses, ["pending", "in_progress", "rolled_back"]);
    let rollback: Vec<&str> = all
        .iter()
        .filter(|(r, _, _)| r != bad.id.as_str() && r != good.id.as_str())
        .map(|(_, s, _)| s.as_str())
        .collect();
    assert_eq!(rollback, ["in_progress", "succeeded"], "the automatic rollback's own changes");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no id twice");
}
