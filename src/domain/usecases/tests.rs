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

mod alarms;
mod baking;
mod machine;
mod repair;
mod rollback;
mod sending;
mod steering;
mod targeted;

pub(crate) type Controller = FleetController<(MemoryStore, MemoryFleet, ScriptedRunner, MemoryAlarms)>;

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
