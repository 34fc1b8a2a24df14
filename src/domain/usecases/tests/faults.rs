//! The seven faults of the third round (issue #36), each as the scenario
//! that went wrong, against the in-memory ports. Each failed before its fix;
//! docs/testing.md says how.

use super::*;
use crate::domain::model::outcome::PingStatus;
use crate::domain::planner::control::ControlRequest;
use std::sync::atomic::Ordering;

/// A fleet that ran GOOD everywhere; answers the time it came to rest.
async fn good_everywhere(c: &Controller) -> Timestamp {
    c.deploy(deploy(GOOD, None), T0).await.unwrap();
    run_out(c, T0).await
}

fn applies_of(c: &Controller, id: &ReleaseId) -> usize {
    let sent = c.runner.sent.lock().unwrap();
    sent.iter().filter(|(_, command)| !command.check_only && command.comment.contains(id.as_str())).count()
}

/// The flakeref the host's release tag names, if it has one.
fn tagged_flakeref(c: &Controller, host: &str) -> Option<String> {
    let instances = c.inventory.instances.lock().unwrap();
    let tag = instances.iter().find(|i| i.id == host)?.release.clone()?;
    Some(c.store.releases.lock().unwrap()[&tag].flakeref.to_string())
}

fn runs(c: &Controller, host: &str) -> Option<String> {
    c.runner.hosts.lock().unwrap().get(host).cloned()
}

fn secs_after(at: Timestamp, n: u64) -> Timestamp {
    at.plus(Duration::from_secs(n))
}

/// 1. A wave claimed and never sent (its send failed before creating
/// anything) is held by a pause that arrives meanwhile: the takeover sends
/// nothing until the operator resumes. Before: sent 20 s after the pause.
#[tokio::test]
async fn a_pause_holds_a_claimed_wave_that_was_never_sent() {
    let c = staged(10);
    let at = good_everywhere(&c).await;
    let release = c.deploy(deploy(NEXT, None), at).await.unwrap();
    *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
    let err = c.reconcile(secs_after(at, 1)).await.unwrap_err();
    // 6. An unclear send answers command_unconfirmed from a reconcile too.
    assert!(matches!(&err, ControlError::CommandUnconfirmed { release: r, .. } if r.id == release.id), "{err}");
    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
    let wave = stored(&c, &release.id).rollout.unwrap().waves[1].clone();
    assert!(wave.command_ids.is_empty(), "claimed, not sent: {wave:?}");
    c.control(&release.id, ControlRequest::Pause, "ops", secs_after(at, 2)).await.unwrap();
    let before = applies_of(&c, &release.id);
    for n in 3..40 {
        let report = c.reconcile(secs_after(at, n)).await.unwrap();
        assert_eq!(report.outcome, Outcome::Paused, "at +{n}s");
    }
    assert_eq!(applies_of(&c, &release.id), before, "nothing sent while paused");
    c.control(&release.id, ControlRequest::Resume, "ops", secs_after(at, 40)).await.unwrap();
    run_out(&c, secs_after(at, 40)).await;
    assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Succeeded);
}

/// 2. A deploy to two named hosts: one succeeds (and is tagged), one fails,
/// both agents go away before it settles, so nothing can roll them back and
/// it fails. Once they are back the drift repair puts the good release on
/// both. Before: the host that succeeded kept the failed release for ever.
#[tokio::test]
async fn a_failed_targeted_release_never_survives_the_repair() {
    let mut c = staged(3);
    c.settings.deploy_timeout = Duration::from_secs(5);
    c.settings.settle_limit = Duration::from_secs(2);
    let at = good_everywhere(&c).await;
    c.runner.failing.lock().unwrap().push(("i-01".into(), NEXT.into()));
    c.runner.slow.lock().unwrap().insert(("i-01".into(), NEXT.into()), 3);
    let mut request = deploy(NEXT, None);
    request.instance_ids = Some(vec!["i-00".into(), "i-01".into()]);
    let targeted = c.deploy(request, at).await.unwrap();
    c.reconcile(secs_after(at, 1)).await.unwrap();
    assert_eq!(tagged_flakeref(&c, "i-00").as_deref(), Some(NEXT), "i-00 succeeded and is tagged");
    for host in ["i-00", "i-01"] {
        c.runner.set_agent(host, PingStatus::ConnectionLost);
    }
    let at = run_out(&c, secs_after(at, 1)).await;
    let failed = stored(&c, &targeted.id);
    assert_eq!(failed.status, ReleaseStatus::Failed, "{:?}", failed.status_reason);
    assert!(failed.status_reason.unwrap().contains("no instance it reached is reachable"));
    c.runner.agents.lock().unwrap().clear();
    run_out(&c, at).await;
    for host in ["i-00", "i-01"] {
        assert_eq!(runs(&c, host).as_deref(), Some(GOOD), "{host}");
        assert_eq!(tagged_flakeref(&c, host).as_deref(), Some(GOOD), "{host}");
    }
}

/// 3. The canary's agent is lost one tick into a three-tick apply; the apply
/// runs on and switches the host. Whether SSM then says In Progress until the
/// agent is back (as AWS documents) or Undeliverable (as the simulator once
/// did), the host counts as reached: its tag is forgotten, and the good
/// release is back on it once its agent is. Before: Undeliverable made it
/// "not reached", the rollback skipped it and its tag still named GOOD.
#[tokio::test]
async fn a_host_whose_agent_drops_mid_apply_is_reached_and_put_back() {
    for undeliverable in [true, false] {
        let mut c = staged(4);
        c.settings.deploy_timeout = Duration::from_secs(5);
        c.settings.settle_limit = Duration::from_secs(2);
        c.runner.lost_reports_undeliverable.store(undeliverable, Ordering::Relaxed);
        let at = good_everywhere(&c).await;
        c.runner.slow.lock().unwrap().insert(("i-00".into(), NEXT.into()), 3);
        let release = c.deploy(deploy(NEXT, None), at).await.unwrap();
        c.reconcile(secs_after(at, 1)).await.unwrap();
        let seen = stored(&c, &release.id);
        assert_eq!(seen.instances[0].status.as_str(), "InProgress", "seen running once");
        c.runner.set_agent("i-00", PingStatus::ConnectionLost);
        let at = run_out(&c, secs_after(at, 1)).await;
        let ended = stored(&c, &release.id);
        assert!(ended.reached_instances().contains(&"i-00".to_owned()), "undeliverable={undeliverable}: {ended:?}");
        assert_eq!(tagged_flakeref(&c, "i-00"), None, "its tag no longer says GOOD");
        c.runner.agents.lock().unwrap().clear();
        run_out(&c, at).await;
        assert_eq!(runs(&c, "i-00").as_deref(), Some(GOOD), "undeliverable={undeliverable}");
        assert_eq!(tagged_flakeref(&c, "i-00").as_deref(), Some(GOOD));
    }
}

/// 4. Every host of a wave deregisters as its send arrives: the wave is
/// recorded with them as unreachable and judged at once (over the tolerance
/// of one: stopped, rolled back on the canary only). Before: nothing was
/// recorded, the release held the fleet to its deadline, and its rollback
/// went to the hosts of the wave never sent and halted the fleet.
#[tokio::test]
async fn a_wave_whose_hosts_all_drop_at_the_send_is_recorded_and_judged_at_once() {
    let c = staged(10);
    let at = good_everywhere(&c).await;
    let release = c.deploy(deploy(NEXT, None), at).await.unwrap();
    let dropping = ["i-01", "i-02", "i-03"];
    c.runner.agents_on_send.lock().unwrap().extend(dropping.map(|h| (h.to_owned(), PingStatus::NotRegistered)));
    for n in 1..4 {
        c.reconcile(secs_after(at, n)).await.unwrap();
    }
    let ended = stored(&c, &release.id);
    assert_eq!(ended.status, ReleaseStatus::RolledBack, "judged within seconds: {:?}", ended.status_reason);
    let unreachable: Vec<&str> = ended.unreachable.iter().map(|u| u.instance_id.as_str()).collect();
    assert_eq!(unreachable, dropping);
    assert_eq!(ended.reached_instances(), ["i-00"]);
    let rollback = c.store.releases.lock().unwrap().values().find(|r| r.kind == ReleaseKind::Rollback).cloned();
    assert_eq!(rollback.unwrap().rollout.unwrap().waves[0].instance_ids, ["i-00"]);
    assert!(c.store.fleet.lock().unwrap().halted.is_none());
}

/// 5. A deploy to one named host whose agent goes away as the send arrives:
/// SSM accepts and never delivers. It reached nobody, so it failed. Before:
/// `succeeded` (fixed rollouts were exempt from "converged on none", and a
/// tolerance of 1 host rounded up to 1).
#[tokio::test]
async fn a_targeted_release_that_reaches_nobody_fails() {
    let c = staged(3);
    let at = good_everywhere(&c).await;
    c.runner.agents_on_send.lock().unwrap().push(("i-02".into(), PingStatus::ConnectionLost));
    let mut request = deploy(NEXT, None);
    request.instance_ids = Some(vec!["i-02".into()]);
    let targeted = c.deploy(request, at).await.unwrap();
    run_out(&c, at).await;
    let ended = stored(&c, &targeted.id);
    assert_eq!(ended.status, ReleaseStatus::Failed);
    let why = ended.status_reason.unwrap();
    assert!(why.contains("1 of the 1 instances it names unreachable (i-02 Undeliverable)"), "{why}");
}

/// 6. A deploy to named hosts whose send answer is lost answers
/// `command_unconfirmed`, with the release as recorded, as a first command
/// does; the reconcile then finds the command and goes on. Before: an
/// internal error (500), though exactly once held.
#[tokio::test]
async fn an_unclear_send_of_a_targeted_release_is_command_unconfirmed() {
    let c = staged(3);
    let at = good_everywhere(&c).await;
    *c.runner.next.lock().unwrap() = SendBehaviour::SendThenTimeOut;
    let mut request = deploy(NEXT, None);
    request.instance_ids = Some(vec!["i-01".into()]);
    let err = c.deploy(request, at).await.unwrap_err();
    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
    let ControlError::CommandUnconfirmed { release, .. } = err else { panic!("{err}") };
    assert_eq!(release.status, ReleaseStatus::InProgress);
    run_out(&c, at).await;
    assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Succeeded);
    assert_eq!(sends(&c).get(&(release.id.to_string(), NEXT.to_owned(), "i-01".to_owned())), Some(&1));
}

/// 7. The write after the admission (recording the canary's command) meets
/// a busy store: the answer says the release is recorded and names it, and a
/// retry with the same idempotency key answers that release. Before: "nothing
/// was recorded", and the retry a 409 naming that very release.
#[tokio::test]
async fn a_busy_store_after_the_admission_names_the_recorded_release() {
    let c = staged(3);
    let at = good_everywhere(&c).await;
    *c.store.busy_after.lock().unwrap() = 1;
    *c.store.busy_writes.lock().unwrap() = 1;
    let err = c.deploy(deploy(NEXT, Some("k-1")), at).await.unwrap_err();
    let ControlError::RecordedThenBusy { release, sent, .. } = &err else { panic!("{err}") };
    assert!(*sent, "its canary went out");
    let message = err.to_string();
    assert!(message.contains(&format!("release {release} is recorded")) && !message.contains("nothing was recorded"));
    let again = c.deploy(deploy(NEXT, Some("k-1")), secs_after(at, 1)).await.unwrap();
    assert_eq!(&again.id, release);
    run_out(&c, secs_after(at, 1)).await;
    assert_eq!(stored(&c, release).status, ReleaseStatus::Succeeded);
    assert!(sends(&c).values().all(|n| *n == 1), "{:?}", sends(&c));
}
