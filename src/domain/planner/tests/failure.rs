//! Failure: roll back, halt or fail by kind, policy and history; what a failure cancels and awaits first.

use super::*;

#[test]
fn failures_roll_back_halt_or_fail_by_kind_policy_and_history() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let failing = |kind: ReleaseKind| {
        let mut r = staged(&[&["i-0"]], "other");
        r.kind = kind;
        r.instances = vec![outcome("i-0", "Failed")];
        r
    };
    let with_target =
        |kind, target: Option<Release>| Observed { rollback_target: Some(target), ..holding(failing(kind)) };
    let mut no_auto = s.clone();
    no_auto.rollout.auto_rollback = false;
    check(
        vec![
            (
                "a deploy with a good release before it",
                with_target(ReleaseKind::Deploy, Some(good.clone())),
                secs(1),
                "settle rolled_back as RolledBack handing over to a rollback",
            ),
            (
                "a deploy with nothing before it",
                with_target(ReleaseKind::Deploy, None),
                secs(1),
                "settle halted as Finished halting",
            ),
            (
                "a rollback never rolls back",
                holding(failing(ReleaseKind::Rollback)),
                secs(1),
                "settle halted as Finished halting",
            ),
            (
                "a repair is retried next time",
                holding(failing(ReleaseKind::Repair)),
                secs(1),
                "settle failed as Finished",
            ),
        ],
        &s,
    );
    check(
        vec![("no automatic rollback", holding(failing(ReleaseKind::Deploy)), secs(1), "settle failed as Finished")],
        &no_auto,
    );
    // The good release's flake has left the allowlist: it is never put back.
    let mut outside = s.clone();
    outside.allowed_flakes = FlakeAllowlist::parse("Other/flake").unwrap();
    check(
        vec![(
            "a target off the allowlist",
            with_target(ReleaseKind::Deploy, Some(good.clone())),
            secs(1),
            "settle halted as Finished halting",
        )],
        &outside,
    );
    let Step::Settle { settlement, .. } =
        plan(&with_target(ReleaseKind::Deploy, Some(good.clone())), &outside, &pass(secs(1)))
    else {
        panic!()
    };
    // The fleet's halt says why.
    let halt = format!("{:?}", settlement.fleet);
    assert!(halt.contains("its rollback target") && halt.contains("not on this fleet's allowlist"), "{halt}");

    let Step::Settle { settlement, .. } =
        plan(&with_target(ReleaseKind::Deploy, Some(good.clone())), &s, &pass(secs(1)))
    else {
        panic!()
    };
    let rollback = settlement.fleet.unwrap().next.unwrap().release;
    assert_eq!((rollback.id, rollback.rollback_of, rollback.flakeref), (id(99), Some(good.id), good.flakeref));
    let rollout = rollback.rollout.unwrap();
    assert_eq!((rollout.fixed, rollout.waves[0].instance_ids.as_slice()), (true, ["i-0".to_string()].as_slice()));
    assert!(rollout.waves[0].claimed_by(&Claim::new("me", secs(1))), "this pass sends it");
}

#[test]
fn the_rollback_target_is_the_last_good_release_unless_it_is_the_failing_one() {
    let s = settings(RolloutMode::Staged);
    let mut failing = staged(&[&["i-0"]], "other");
    failing.instances = vec![outcome("i-0", "Failed")];
    let with_good = |good: Option<ReleaseId>| Observed {
        fleet: Some(FleetState { last_good_release: good, ..FleetState::default() }),
        ..holding(failing.clone())
    };
    let ask = |seen: &Observed| plan(seen, &s, &pass(secs(1)));
    let before = failing.id.clone();
    assert_eq!(
        ask(&with_good(Some(id(7)))),
        Step::Observe(Need::RollbackTarget { good: Some(id(7)), before: before.clone() })
    );
    let itself = with_good(Some(failing.id.clone()));
    assert_eq!(ask(&itself), Step::Observe(Need::RollbackTarget { good: None, before: before.clone() }), "not itself");
    assert_eq!(ask(&with_good(None)), Step::Observe(Need::RollbackTarget { good: None, before }));
    let unread = Observed { fleet: None, ..with_good(None) };
    assert_eq!(ask(&unread), Step::Observe(Need::FleetState), "a deploy's own pass reads the fleet first");
}

/// Case 6 of the exactly-once issue: before a rollback goes to a host, the bad
/// release's invocation there is settled. Not started: cancelled. Running:
/// awaited, up to the settle limit; then the release ends anyway, naming the
/// host, and the rollback reaches it too.
#[test]
fn a_failed_release_cancels_what_has_not_started_and_awaits_what_runs_before_rolling_back() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let mut bad = staged(&[&["i-0"], &["i-1", "i-2", "i-3"]], "other");
    bad.instances = vec![outcome("i-0", "Success")];
    let reported = |release: &Release, list: &[(&str, &str)]| {
        let mut seen = holding(release.clone());
        seen.wave_reports = Some(list.iter().map(|(i, st)| outcome(i, st)).collect());
        seen.log.tagged = true;
        seen.rollback_target = Some(Some(good.clone()));
        seen
    };
    let started = reported(&bad, &[("i-1", "Failed"), ("i-2", "InProgress"), ("i-3", "Pending")]);
    let step = plan(&started, &s, &pass(secs(10)));
    assert_eq!(brief(&step), r#"cancel [("cmd-1-0", ["i-3"])]"#);
    let Step::Cancel { release: mut stopping, .. } = step else { panic!() };
    let stop = stopping.stopping.clone().unwrap();
    // Not cancelled until SSM takes the request (the executor records that).
    assert_eq!((stop.since_ms, stop.cancelled.len()), (secs(10).millis(), 0));
    assert!(stop.reason.contains("1 instances failed"), "{}", stop.reason);
    // Refused this pass: not asked again in it, asked again by the next.
    let refused = {
        let mut o = reported(&stopping, &[("i-3", "Pending")]);
        o.log.cancels_asked = vec!["i-3".into()];
        o
    };
    assert!(!brief(&plan(&refused, &s, &pass(secs(11)))).starts_with("cancel"), "no loop within a pass");
    assert_eq!(
        brief(&plan(&reported(&stopping, &[("i-3", "Pending")]), &s, &pass(secs(12)))),
        r#"cancel [("cmd-1-0", ["i-3"])]"#
    );
    // Accepted: recorded as cancelled.
    if let Some(stop) = stopping.stopping.as_mut() {
        stop.cancelled.push("i-3".into());
    }
    let rolled_back = |seen: &Observed, at| {
        let step = plan(seen, &s, &pass(at));
        let Step::Settle { settlement, .. } = step else { panic!("{}", brief(&step)) };
        let rollback = settlement.fleet.unwrap().next.unwrap().release;
        (settlement.release, rollback.rollout.unwrap().waves[0].instance_ids.clone())
    };
    check(
        vec![
            (
                "a host still applying: awaited",
                reported(&stopping, &[("i-2", "InProgress"), ("i-3", "Cancelled")]),
                secs(20),
                "record in_progress then Some(Waiting)",
            ),
            (
                "no news: waits, no write",
                Observed { holder: Some(*stopping.clone()), ..reported(&stopping, &[]) },
                secs(20),
                "rest Waiting",
            ),
            (
                "cancelling is not the end of it",
                reported(&stopping, &[("i-2", "Success"), ("i-3", "Cancelling")]),
                secs(20),
                "record in_progress then Some(Waiting)",
            ),
        ],
        &s,
    );
    let (ended, reach) = rolled_back(&reported(&stopping, &[("i-2", "Failed"), ("i-3", "Cancelled")]), secs(30));
    assert_eq!(reach, ["i-0", "i-1", "i-2", "i-3"], "every host the bad release was sent to");
    assert!(ended.stopping.unwrap().unsettled.is_empty());
    // Still applying at the limit: the release ends anyway, naming the host.
    let (ended, reach) =
        rolled_back(&reported(&stopping, &[("i-2", "InProgress"), ("i-3", "Cancelled")]), secs(10 + 300));
    assert_eq!(reach, ["i-0", "i-1", "i-2", "i-3"]);
    assert_eq!(ended.stopping.unwrap().unsettled, ["i-2"]);
    assert!(ended.status_reason.unwrap().contains("settle limit of 300 s: i-2"));
}

/// CancelCommand takes at most 50 instance ids: a release sent to the whole
/// tag (one command) that stops with 120 invocations not yet started asks
/// to cancel them in requests of 50, 50 and 20.
#[test]
fn cancels_go_out_at_most_fifty_instances_a_request() {
    let s = settings(RolloutMode::AllAtOnce);
    let mut sent = release(&s, NEXT, ReleaseKind::Deploy);
    sent.status = ReleaseStatus::InProgress;
    sent.command_id = Some("cmd-1".into());
    let mut invocations: Vec<InstanceOutcome> = (0..120).map(|n| outcome(&format!("i-{n:03}"), "Pending")).collect();
    invocations.push(outcome("i-x", "Failed"));
    sent.instances = invocations.clone();
    sent.stopping = Some(Stopping {
        reason: "aborted".into(),
        since_ms: secs(5).millis(),
        cancelled: Vec::new(),
        unsettled: Vec::new(),
    });
    let seen = {
        let mut o = Observed {
            report: Some(CommandReport { finished: false, invocations }),
            rollback_target: Some(None),
            ..holding(sent)
        };
        o.log.tagged = true;
        o
    };
    let step = plan(&seen, &s, &pass(secs(10)));
    let Step::Cancel { requests, .. } = step else { panic!("{}", brief(&step)) };
    let sizes: Vec<(&str, usize)> = requests.iter().map(|(c, ids)| (c.as_str(), ids.len())).collect();
    assert_eq!(sizes, [("cmd-1", 50), ("cmd-1", 50), ("cmd-1", 20)]);
}

/// An automatic rollback's first wave is a step of the pass that handed it
/// the fleet: sent once, by that pass only, then the pass rests as rolled back.
#[test]
fn the_pass_that_starts_a_rollback_sends_its_first_wave_once() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let rollback = put_back(&good, ReleaseKind::Rollback, vec!["i-0".into()], &s, &pass(secs(1)));
    let handed = |release: Release, sent: bool| {
        let mut seen = holding(staged(&[&["i-0"]], "other"));
        seen.log.handed_over = Some(Handover { release, outcome: Outcome::RolledBack, sent });
        seen
    };
    let mut sent = rollback.clone();
    sent.rollout.as_mut().unwrap().waves[0].command_ids = vec!["cmd".into()];
    let mut elsewhere = rollback.clone();
    elsewhere.rollout.as_mut().unwrap().waves[0].claim.claimed_by = "other".into();
    check(
        vec![
            ("just handed over", handed(rollback.clone(), false), secs(1), "send the handover's wave"),
            ("its send tried", handed(rollback, true), secs(1), "rest RolledBack"),
            ("its wave out already", handed(sent, false), secs(1), "rest RolledBack"),
            ("claimed by another pass", handed(elsewhere, false), secs(1), "rest RolledBack"),
        ],
        &s,
    );
}
