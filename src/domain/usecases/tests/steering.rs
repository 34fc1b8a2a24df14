//! Pause, resume and abort.

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
