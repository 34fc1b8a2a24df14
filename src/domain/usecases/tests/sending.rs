//! Sending exactly once: busy fleets, refused and ambiguous sends, takeovers, idempotency keys.

use super::*;

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
