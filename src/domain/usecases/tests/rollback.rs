//! Staged rollouts, failures and rollbacks.

use super::*;

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
