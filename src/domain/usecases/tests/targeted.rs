//! Targeted deploys to named instances.

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
    assert_eq!(c.store.fleet.lock().unwrap().lease.as_ref().map(|l| l.release_id.clone()), Some(targeted.id.clone()));
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
