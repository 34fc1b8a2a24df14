//! The bake after a wave.

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
