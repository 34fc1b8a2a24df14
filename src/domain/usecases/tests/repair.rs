//! The drift repair: launches into free slots, reapplies, and when it does not run.

use super::*;

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
