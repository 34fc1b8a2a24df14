//! The rollout as a state machine meeting events in any order (proptest).

use super::*;
use crate::domain::model::outcome::PingStatus;
use crate::domain::planner::control::ControlRequest;
use proptest::prelude::*;
use std::collections::HashMap;

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
        let repair_failed = report
            .release
            .as_ref()
            .filter(|r| r.kind == ReleaseKind::Repair && r.status == ReleaseStatus::Failed && r.launches.is_empty());
        if let Some(repair) = repair_failed {
            failed_repairs += 1;
            if failed_repairs == 2 {
                return (at, repair.instances.iter().filter(|i| i.failed()).map(|i| i.instance_id.clone()).collect());
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

/// The first wrong step in the releases' stored histories, if any: a first
/// phase not in `Phase::INITIAL`, or a move the phase table does not allow.
fn wrong_transition(c: &Controller) -> Option<String> {
    use crate::domain::planner::Phase;
    let mut last: HashMap<ReleaseId, (Phase, u64)> = HashMap::new();
    for written in c.store.history.lock().unwrap().iter() {
        let to = Phase::of(written);
        match last.insert(written.id.clone(), (to, written.version)) {
            None if !Phase::INITIAL.contains(&to) => return Some(format!("{} first stored as {to}", written.id)),
            Some((from, version)) if !from.may_become(to) => {
                return Some(format!("{} went from {from} (v{version}) to {to} (v{})", written.id, written.version))
            }
            _ => {}
        }
    }
    None
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
                // Every write moved its release along the phase table (docs/design.md).
                prop_assert_eq!(wrong_transition(&c), None);
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
