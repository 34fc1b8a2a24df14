//! Rollback alarms.

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
