//! The planner's rules as tables: (what is known, now) → the next step. No
//! tokio, no fakes: plain values in, one step out.

use super::*;
use crate::domain::fixtures::{self, GOOD, NEXT, T0};
use crate::domain::model::flakeref::FlakeAllowlist;
use crate::domain::model::fleet::{Halt, InstanceState, Lease, MachineImage};
use crate::domain::model::outcome::tests::outcome;
use crate::domain::model::outcome::PingStatus;
use crate::domain::model::rollout::{Rate, BATCH};

fn secs(n: u64) -> Timestamp {
    T0.plus(Duration::from_secs(n))
}

/// The shared fleet, wanting 3 instances.
fn settings(mode: RolloutMode) -> FleetSettings {
    let mut settings = fixtures::settings(fixtures::policy(mode, true));
    settings.spec.desired_capacity = 3;
    settings
}

fn image() -> MachineImage {
    MachineImage { id: "ami-1".into(), root_device: "/dev/xvda".into(), root_snapshot_gib: Some(8) }
}

fn id(n: u64) -> ReleaseId {
    ReleaseId::generate(Timestamp::from_millis(n), 0)
}

/// This pass, at `at`, claiming as "me".
fn pass(at: Timestamp) -> Pass {
    Pass { claim: Claim::new("me", at), fresh_id: id(99) }
}

fn release(settings: &FleetSettings, flakeref: &str, kind: ReleaseKind) -> Release {
    new_release(settings, id(1), Flakeref::parse(flakeref).unwrap(), None, kind, None, T0)
}

/// `release`, claimed for its first command by `by` at T0 (`takeover`: taken over).
fn claimed(mut release: Release, by: &str, takeover: bool) -> Release {
    release.claim = Some(Claimed::new(&Claim::new(by, T0), takeover));
    release
}

/// A staged release whose waves (of these instances each) are all sent,
/// the last claimed by `by` at T0.
fn staged(waves: &[&[&str]], by: &str) -> Release {
    let mut r = release(&settings(RolloutMode::Staged), NEXT, ReleaseKind::Deploy);
    r.status = ReleaseStatus::InProgress;
    let rollout = r.rollout.as_mut().unwrap();
    for ids in waves {
        let mut wave = Wave::new(ids.iter().map(|s| s.to_string()).collect(), &Claim::new(by, T0));
        wave.command_ids = (0..ids.len().div_ceil(BATCH)).map(|b| format!("cmd-{}-{b}", rollout.waves.len())).collect();
        rollout.waves.push(wave);
    }
    r
}

/// `unsent`'s last wave claimed by this pass ("me"), and the same taken over
/// by this pass at 120 s.
fn mine_and_taken(unsent: &Release) -> (Release, Release) {
    let mut mine = unsent.clone();
    mine.rollout.as_mut().unwrap().waves.last_mut().unwrap().claim.claimed_by = "me".into();
    let mut taken = unsent.clone();
    taken.rollout.as_mut().unwrap().waves.last_mut().unwrap().claim = Claimed::new(&Claim::new("me", secs(120)), true);
    (mine, taken)
}

/// What a reconcile knows once it has read the fleet (no good release yet)
/// and the release holding it. The release tags of hosts a failure leaves
/// unknown count as forgotten already (`a_failed_release_forgets_...` has
/// that step), so the tables read on to what follows.
fn holding(release: Release) -> Observed {
    Observed {
        fleet: Some(FleetState::default()),
        holder: Some(release),
        nodes: all_online(),
        untagged: true,
        ..Observed::default()
    }
}

/// Every instance id the tables use (`i-0`, `i-00`, …), an Online managed node.
fn all_online() -> NodeStatuses {
    (0..100).flat_map(|n| [format!("i-{n}"), format!("i-{n:02}")]).map(|id| (id, PingStatus::Online)).collect()
}

/// A step in a few words, for tables.
fn brief(step: &Step) -> String {
    match step {
        Step::Observe(need) => format!("observe {need:?}"),
        Step::Rest { outcome, skipped: None } => format!("rest {outcome:?}"),
        Step::Rest { outcome, skipped: Some(why) } => format!("rest {outcome:?}: {why}"),
        Step::SendFirst(command) => format!("send {:?} {}", command.target, command.comment),
        Step::SendWave { resume } => format!("send wave{}", if *resume { " resuming" } else { "" }),
        Step::SendChecks => "send checks".into(),
        Step::Launch { image } => format!("launch {image:?}"),
        Step::Tag(ids) => format!("tag {ids:?}"),
        Step::Untag(ids) => format!("untag {ids:?}"),
        Step::Record { release, then } => format!("record {} then {then:?}", release.status.as_str()),
        Step::Cancel { requests, .. } => format!("cancel {requests:?}"),
        Step::Settle { settlement, outcome } => {
            let change = settlement.fleet.clone().unwrap_or_default();
            let mut text = format!("settle {} as {outcome:?}", settlement.release.status.as_str());
            if change.halt.is_some() {
                text.push_str(" halting");
            }
            if let Some(next) = &change.next {
                text.push_str(&format!(" handing over to a {}", next.release.kind.as_str()));
            }
            text
        }
        Step::StartRepair { plan, .. } => format!("repair launch {:?} reapply {:?}", plan.launch, plan.reapply),
        Step::Corrupt(what) => format!("corrupt: {what}"),
    }
}

fn check(table: Vec<(&str, Observed, Timestamp, &str)>, settings: &FleetSettings) {
    for (case, seen, at, expected) in table {
        let step = brief(&plan(&seen, settings, &pass(at)));
        assert!(step.starts_with(expected), "{case}: got {step:?}, expected {expected:?}");
    }
}

#[test]
fn a_free_fleet_is_read_then_repaired_towards_its_good_release() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let fleet = |f: &dyn Fn(&mut FleetState)| {
        let mut state = FleetState { last_good_release: Some(good.id.clone()), ..FleetState::default() };
        f(&mut state);
        Some(state)
    };
    let instance = |n: usize, tagged: Option<ReleaseId>| FleetInstance {
        id: format!("i-{n}"),
        state: InstanceState::Running,
        slot: Some(n),
        release: tagged,
    };
    let knows = |instances: Vec<FleetInstance>, image: Option<Result<MachineImage, String>>| Observed {
        fleet: fleet(&|_| {}),
        good: Some(good.clone()),
        tagged_flakerefs: Some(HashMap::from([(good.id.clone(), good.flakeref.clone())])),
        instances: Some(instances),
        image,
        nodes: all_online(),
        ..Observed::default()
    };
    let whole = vec![
        instance(0, Some(good.id.clone())),
        instance(1, Some(good.id.clone())),
        instance(2, Some(good.id.clone())),
    ];
    let mut drifted = whole.clone();
    drifted[1].release = Some(id(7));
    let lease = Lease { release_id: id(5), deadline: secs(600) };
    check(
        vec![
            ("nothing known", Observed::default(), T0, "observe FleetState"),
            (
                "held",
                Observed { fleet: fleet(&|f| f.lease = Some(lease.clone())), ..Observed::default() },
                T0,
                "observe Holder",
            ),
            (
                "held past its deadline: the clock frees nothing",
                Observed { fleet: fleet(&|f| f.lease = Some(lease.clone())), ..Observed::default() },
                secs(3600),
                "observe Holder",
            ),
            (
                "held by a final release: settled again, freeing the fleet",
                Observed {
                    fleet: fleet(&|f| f.lease = Some(Lease { release_id: id(1), deadline: secs(600) })),
                    holder: Some(Release { status: ReleaseStatus::Succeeded, ..good.clone() }),
                    ..Observed::default()
                },
                T0,
                "settle succeeded as Idle",
            ),
            (
                "a final release the lease does not name: nothing to do",
                Observed {
                    fleet: fleet(&|f| f.lease = Some(lease.clone())),
                    holder: Some(Release { status: ReleaseStatus::Succeeded, ..good.clone() }),
                    ..Observed::default()
                },
                T0,
                "rest Idle",
            ),
            (
                "halted",
                Observed {
                    fleet: fleet(&|f| f.halted = Some(Halt { release_id: id(5), reason: "rollback failed".into() })),
                    ..Observed::default()
                },
                T0,
                "rest Halted: the fleet is halted: rollback failed",
            ),
            (
                "never succeeded",
                Observed { fleet: Some(FleetState::default()), ..Observed::default() },
                T0,
                "rest Idle: no release has succeeded",
            ),
            (
                "good release unread",
                Observed { fleet: fleet(&|_| {}), ..Observed::default() },
                T0,
                "observe GoodRelease",
            ),
            (
                "instances unread",
                Observed { fleet: fleet(&|_| {}), good: Some(good.clone()), ..Observed::default() },
                T0,
                "observe FleetInstances",
            ),
            ("whole", knows(whole.clone(), None), T0, "rest Idle"),
            ("one missing, image unread", knows(whole[..2].to_vec(), None), T0, "observe Image"),
            (
                "one missing, no image",
                knows(whole[..2].to_vec(), Some(Err("no image matches".into()))),
                T0,
                "rest Idle: 1 instances missing but no image matches",
            ),
            ("one missing", knows(whole[..2].to_vec(), Some(Ok(image()))), T0, "repair launch [2] reapply []"),
            ("one drifted", knows(drifted.clone(), None), T0, "repair launch [] reapply [\"i-1\"]"),
            (
                "drifted and one missing without image: reapply, record the launch failure",
                knows(drifted[..2].to_vec(), Some(Err("no image".into()))),
                T0,
                "repair launch [2] reapply [\"i-1\"]",
            ),
        ],
        &s,
    );
    let mut outside = s.clone();
    outside.allowed_flakes = FlakeAllowlist::parse("Other/flake").unwrap();
    check(vec![("not allowed", knows(drifted, None), T0, "rest Idle: the last good release")], &outside);
}

#[test]
fn a_repair_release_is_claimed_by_this_pass_and_reaches_only_drifted_instances() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let seen = Observed {
        fleet: Some(FleetState { last_good_release: Some(good.id.clone()), ..FleetState::default() }),
        good: Some(good.clone()),
        tagged_flakerefs: Some(HashMap::new()),
        image: Some(Ok(image())),
        instances: Some(vec![FleetInstance {
            id: "i-1".into(),
            state: InstanceState::Running,
            slot: Some(0),
            release: None,
        }]),
        nodes: all_online(),
        ..Observed::default()
    };
    let Step::StartRepair { repair, .. } = plan(&seen, &s, &pass(T0)) else { panic!() };
    assert_eq!(
        (repair.kind, repair.status, &repair.flakeref),
        (ReleaseKind::Repair, ReleaseStatus::InProgress, &good.flakeref)
    );
    let rollout = repair.rollout.unwrap();
    assert!(rollout.fixed);
    assert!(rollout.waves[0].claimed_by(&Claim::new("me", T0)));
    assert_eq!(rollout.waves[0].instance_ids, ["i-1"]);
    let slots: Vec<(usize, bool)> = repair.launches.iter().map(|l| (l.slot, l.instance_id.is_none())).collect();
    assert_eq!(slots, [(1, true), (2, true)], "free slots, not yet launched");
}

#[test]
fn a_pending_release_is_sent_once_and_taken_over_only_after_the_window() {
    let s = settings(RolloutMode::AllAtOnce);
    let pending = release(&s, NEXT, ReleaseKind::Deploy);
    let here = |f: fn(&mut Observed)| {
        let mut seen = Observed { holder: Some(claimed(pending.clone(), "me", false)), ..Observed::default() };
        f(&mut seen);
        seen
    };
    let elsewhere = |f: fn(&mut Observed)| {
        let mut seen = holding(claimed(pending.clone(), "other", false));
        f(&mut seen);
        seen
    };
    // Taken over by this pass: it looks for what the other may have sent.
    let taken = |f: fn(&mut Observed)| {
        let mut seen = holding(claimed(pending.clone(), "me", true));
        f(&mut seen);
        seen
    };
    check(
        vec![
            ("recorded here: look for instances", here(|_| {}), T0, "observe AnyRunning"),
            (
                "recorded here",
                here(|o| o.any_running = Some(true)),
                T0,
                "send Tag(TargetTag { key: \"Name\", value: \"FlakeHubDemo\" }) flakefleet prod release",
            ),
            ("no instance", here(|o| o.any_running = Some(false)), T0, "settle no_instances as Dispatched"),
            ("sent", here(|o| o.first_send = Some(Ok("cmd-1".into()))), T0, "record in_progress then Some(Dispatched)"),
            (
                "refused",
                here(|o| o.first_send = Some(Err("InvalidDocument".into()))),
                T0,
                "settle failed as Dispatched",
            ),
            ("elsewhere, inside the window", elsewhere(|_| {}), secs(119), "rest Waiting"),
            (
                "elsewhere, after the window: a claim of its own first, never a send",
                elsewhere(|o| o.sent_before = Some(None)),
                secs(120),
                "record pending then None",
            ),
            (
                "recorded before claims: claimed by nobody at its creation",
                holding(pending.clone()),
                secs(120),
                "record pending then None",
            ),
            ("taken over: look first", taken(|_| {}), secs(120), "observe SentBefore"),
            (
                "taken over, found",
                taken(|o| o.sent_before = Some(Some("cmd-9".into()))),
                secs(120),
                "record in_progress",
            ),
            ("taken over, never sent", taken(|o| o.sent_before = Some(None)), secs(120), "observe AnyRunning"),
            (
                "never sent, past the deadline: a failure, with nothing reached",
                taken(|o| o.sent_before = Some(None)),
                secs(600),
                "observe RollbackTarget",
            ),
        ],
        &s,
    );
    let step = plan(&elsewhere(|_| {}), &s, &pass(secs(120)));
    let Step::Record { release: taken_over, .. } = step else { panic!("{step:?}") };
    assert_eq!(taken_over.claim, Some(Claimed::new(&Claim::new("me", secs(120)), true)), "a new claim, this pass's");
    let mut seen = taken(|o| o.sent_before = Some(None));
    seen.rollback_target = Some(Some(release(&s, GOOD, ReleaseKind::Deploy)));
    let step = plan(&seen, &s, &pass(secs(600)));
    assert_eq!(brief(&step), "settle failed as Dispatched", "nothing reached: nothing to roll back");
    let Step::Settle { settlement, .. } = step else { panic!() };
    assert!(settlement.release.status_reason.unwrap().contains("deadline passed before the apply command was sent"));
}

#[test]
fn a_staged_release_starts_with_its_canary() {
    let s = settings(RolloutMode::Staged);
    let pending = claimed(release(&s, NEXT, ReleaseKind::Deploy), "me", false);
    let seen = Observed { holder: Some(pending.clone()), ..Observed::default() };
    assert_eq!(plan(&seen, &s, &pass(T0)), Step::Observe(Need::Canary(CANARY_FIRST_POOL)));
    let seen = Observed { canary: Some(vec!["i-0".into(), "i-1".into()]), canary_limit: 5, ..seen };
    assert_eq!(plan(&seen, &s, &pass(T0)), Step::Observe(Need::ManagedNodes(vec!["i-0".into(), "i-1".into()])));
    let seen = Observed { nodes: all_online(), ..seen };
    assert!(brief(&plan(&seen, &s, &pass(T0))).starts_with("send Instances([\"i-0\"]) flakefleet prod release"));
    let seen = Observed { first_send: Some(Ok("cmd-1".into())), ..seen };
    let Step::Record { release, .. } = plan(&seen, &s, &pass(T0)) else { panic!() };
    let canary = &release.rollout.unwrap().waves[0];
    assert_eq!(
        (canary.instance_ids.as_slice(), canary.command_ids.as_slice()),
        (["i-0".to_string()].as_slice(), ["cmd-1".to_string()].as_slice())
    );
    assert!(canary.claimed_by(&Claim::new("me", T0)));
    assert_eq!((canary.sent_ms, canary.judged_ms), (Some(T0.millis()), None), "dated when sent, not judged yet");
    let empty = Observed { canary: Some(vec![]), first_send: None, ..seen };
    assert_eq!(brief(&plan(&empty, &s, &pass(T0))), "settle no_instances as Dispatched");
}

#[test]
fn a_wave_is_sent_by_its_claimer_or_taken_over_after_the_window() {
    let s = settings(RolloutMode::Staged);
    let mut unsent = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    unsent.rollout.as_mut().unwrap().waves[1].command_ids.clear();
    let (mine, taken) = mine_and_taken(&unsent);
    let sent_now = Observed { wave_sent: true, ..holding(mine.clone()) };
    check(
        vec![
            ("claimed by this pass", holding(mine.clone()), T0, "send wave"),
            ("claimed by another, inside the window", holding(unsent.clone()), secs(119), "rest Waiting"),
            (
                "claimed by another, after: a claim of its own first",
                holding(unsent.clone()),
                secs(120),
                "record in_progress then None",
            ),
            ("taken over by this pass", holding(taken.clone()), secs(120), "send wave resuming"),
            ("sent but not all of it (fenced off)", sent_now, T0, "rest Waiting"),
            (
                "a write of this pass was fenced off",
                Observed { fenced: true, ..holding(mine.clone()) },
                T0,
                "rest Waiting",
            ),
        ],
        &s,
    );
    let mut sent = mine;
    sent.rollout.as_mut().unwrap().waves[1].command_ids = vec!["c".into()];
    let seen = Observed { wave_sent: true, ..holding(sent) };
    assert_eq!(brief(&plan(&seen, &s, &pass(T0))), "rest WaveStarted");
}

#[test]
fn a_sent_wave_is_judged_from_what_its_unfinished_batches_report() {
    let s = settings(RolloutMode::Staged);
    let mut canary_done = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let reports = |list: &[(&str, &str)]| {
        let mut seen = holding(canary_done.clone());
        seen.wave_reports = Some(list.iter().map(|(i, st)| outcome(i, st)).collect());
        seen.tagged = true;
        seen
    };
    let mut untagged = reports(&[("i-1", "Success"), ("i-2", "InProgress")]);
    untagged.tagged = false;
    let mut passed = reports(&[("i-1", "Success"), ("i-2", "Success")]);
    passed.running = Some((0..5).map(|i| format!("i-{i}")).collect());
    let mut last = reports(&[("i-1", "Success"), ("i-2", "Success")]);
    last.running = Some((0..3).map(|i| format!("i-{i}")).collect());
    check(
        vec![
            (
                "only the second wave's batch is asked",
                holding(canary_done.clone()),
                secs(1),
                "observe WaveReports([\"cmd-1-0\"])",
            ),
            ("fresh successes are tagged first", untagged, secs(1), "tag [\"i-1\"]"),
            (
                "still running, news recorded",
                reports(&[("i-1", "Success"), ("i-2", "InProgress")]),
                secs(1),
                "record in_progress then Some(Waiting)",
            ),
            ("still running, no news", reports(&[]), secs(1), "rest Waiting"),
            (
                "running at the deadline: stopping, awaiting what runs",
                reports(&[]),
                secs(600),
                "record in_progress then Some(Waiting)",
            ),
            (
                "a failure over the threshold, the rest still running: stopping",
                reports(&[("i-1", "Failed")]),
                secs(1),
                "record in_progress then Some(Waiting)",
            ),
            (
                "a failure over the threshold, the rest ended",
                reports(&[("i-1", "Failed"), ("i-2", "Success")]),
                secs(1),
                "observe RollbackTarget",
            ),
            (
                "passed: the fleet is read",
                reports(&[("i-1", "Success"), ("i-2", "Success")]),
                secs(1),
                "observe Running",
            ),
            ("passed: the next wave is recorded before it is sent", passed, secs(1), "record in_progress then None"),
            ("passed, the fleet reached", last, secs(1), "settle succeeded as Finished"),
        ],
        &s,
    );
}

#[test]
fn a_wave_is_dated_when_judged_and_only_then() {
    let s = settings(RolloutMode::Staged);
    let mut canary_done = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let judged_at = |release: &Release, reports: &[(&str, &str)], now: Timestamp| {
        let mut seen = holding(release.clone());
        seen.wave_reports = Some(reports.iter().map(|(i, st)| outcome(i, st)).collect());
        seen.tagged = true;
        seen.running = Some((0..5).map(|i| format!("i-{i}")).collect());
        let recorded = match plan(&seen, &s, &pass(now)) {
            Step::Record { release, .. } => *release,
            Step::Settle { settlement, .. } => settlement.release,
            other => panic!("{}", brief(&other)),
        };
        recorded.rollout.unwrap().waves.iter().map(|w| w.judged_ms).collect::<Vec<_>>()
    };
    // Still running: news recorded, no verdict.
    assert_eq!(judged_at(&canary_done, &[("i-1", "Success"), ("i-2", "InProgress")], secs(3)), [None, None]);
    // Passed: dated now, the next wave recorded undated.
    assert_eq!(
        judged_at(&canary_done, &[("i-1", "Success"), ("i-2", "Success")], secs(3)),
        [None, Some(secs(3).millis()), None]
    );
    // Stopped by a failure while the rest runs: dated when stopped.
    assert_eq!(judged_at(&canary_done, &[("i-1", "Failed")], secs(4)), [None, Some(secs(4).millis())]);
    // A date once set stands.
    canary_done.rollout.as_mut().unwrap().waves[1].judged_ms = Some(1);
    assert_eq!(judged_at(&canary_done, &[("i-1", "Failed")], secs(5)), [None, Some(1)]);
}

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

#[test]
fn a_command_to_the_whole_tag_is_judged_when_ssm_says_it_ended() {
    let s = settings(RolloutMode::AllAtOnce);
    let mut sent = release(&s, NEXT, ReleaseKind::Deploy);
    sent.status = ReleaseStatus::InProgress;
    let report = |finished, list: &[(&str, &str)]| Observed {
        report: Some(CommandReport { finished, invocations: list.iter().map(|(i, st)| outcome(i, st)).collect() }),
        tagged: true,
        ..holding(Release { command_id: Some("cmd-1".into()), ..sent.clone() })
    };
    check(
        vec![
            ("no command id", holding(sent.clone()), T0, "corrupt: release"),
            (
                "unread",
                holding(Release { command_id: Some("cmd-1".into()), ..sent.clone() }),
                T0,
                "observe Report(\"cmd-1\")",
            ),
            (
                "all succeeded",
                report(true, &[("i-1", "Success"), ("i-2", "Success")]),
                T0,
                "settle succeeded as Finished",
            ),
            (
                "one failed: the rollback target is read",
                report(true, &[("i-1", "Failed")]),
                T0,
                "observe RollbackTarget",
            ),
            ("running", report(false, &[("i-1", "InProgress")]), T0, "record in_progress then Some(Waiting)"),
            ("reached none", report(true, &[]), T0, "settle no_instances as Finished"),
        ],
        &s,
    );
}

#[test]
fn a_repair_that_stopped_mid_launch_is_finished_after_the_window() {
    let s = settings(RolloutMode::Staged);
    let mut repair = release(&s, GOOD, ReleaseKind::Repair);
    repair.status = ReleaseStatus::InProgress;
    repair.rollout = Some(Rollout { fixed: true, fleet_size: Some(0), ..Rollout::default() });
    repair.launches = vec![Launch { slot: 2, instance_id: None, error: None }];
    let mut launched = repair.clone();
    launched.launches[0].instance_id = Some("i-9".into());
    let mut failed = repair.clone();
    failed.launches[0].error = Some("InsufficientInstanceCapacity".into());
    let booting = Observed { nodes: nodes(&[("i-9", "NotRegistered")]), ..holding(launched.clone()) };
    check(
        vec![
            ("inside the window", holding(repair.clone()), secs(119), "rest Waiting"),
            ("after it", holding(repair.clone()), secs(120), "observe Image"),
            (
                "image known",
                Observed { image: Some(Ok(image())), ..holding(repair.clone()) },
                secs(120),
                "launch Ok(MachineImage { id: \"ami-1\"",
            ),
            (
                "launched on this pass, yet the record says unlaunched",
                Observed { image: Some(Ok(image())), launched: true, ..holding(repair) },
                secs(120),
                "rest Waiting",
            ),
            (
                "launched: its host gets the release over SSM once Online",
                holding(launched.clone()),
                secs(120),
                "record in_progress then None",
            ),
            ("launched, not registered yet", booting.clone(), secs(120), "rest Waiting"),
            ("launched, never registered by the deadline", booting.clone(), secs(600), "settle failed as Finished"),
            ("failed", holding(failed), secs(120), "settle failed as Finished"),
        ],
        &s,
    );
    let Step::Record { release: sending, .. } = plan(&holding(launched), &s, &pass(secs(120))) else { panic!() };
    let waves = &sending.rollout.as_ref().unwrap().waves;
    assert_eq!((waves.len(), waves[0].instance_ids.as_slice()), (1, ["i-9".to_string()].as_slice()));
    let Step::Settle { settlement, .. } = plan(&booting, &s, &pass(secs(600))) else { panic!() };
    let reason = settlement.release.status_reason.unwrap();
    assert!(reason.contains("never came up as Online SSM managed nodes") && reason.contains("i-9"), "{reason}");
}

#[test]
fn final_releases_rest() {
    let s = settings(RolloutMode::Staged);
    for status in ReleaseStatus::ALL.into_iter().filter(|s| s.is_final()) {
        let r = Release { status, ..release(&s, NEXT, ReleaseKind::Deploy) };
        assert_eq!(plan(&holding(r), &s, &pass(T0)), rest(Outcome::Idle), "{status:?}");
    }
}

#[test]
fn outcomes_keep_the_api_names() {
    let names: Vec<String> = [
        Outcome::Idle,
        Outcome::Halted,
        Outcome::Dispatched,
        Outcome::Waiting,
        Outcome::WaveStarted,
        Outcome::RolledBack,
        Outcome::Finished,
        Outcome::Repaired,
        Outcome::Paused,
    ]
    .iter()
    .map(|o| serde_json::to_value(o).unwrap().as_str().unwrap().to_owned())
    .collect();
    assert_eq!(
        names,
        ["idle", "halted", "dispatched", "waiting", "wave_started", "rolled_back", "finished", "repaired", "paused"]
    );
}

/// Statuses for a few instances, the rest unknown.
fn nodes(pairs: &[(&str, &str)]) -> NodeStatuses {
    pairs.iter().map(|(id, status)| (id.to_string(), PingStatus::parse(status))).collect()
}

#[test]
fn only_online_managed_nodes_are_targets_and_the_rest_are_recorded_unreachable() {
    let s = settings(RolloutMode::Staged);
    let pending = claimed(release(&s, NEXT, ReleaseKind::Deploy), "me", false);
    let first = |pool: &[&str], known: &[(&str, &str)]| Observed {
        holder: Some(pending.clone()),
        canary: Some(pool.iter().map(|s| s.to_string()).collect()),
        canary_limit: 5,
        nodes: nodes(known),
        ..Observed::default()
    };
    let lost = first(&["i-0", "i-1"], &[("i-0", "ConnectionLost"), ("i-1", "Online")]);
    let none = first(&["i-0", "i-1"], &[("i-0", "ConnectionLost"), ("i-1", "NotRegistered")]);
    check(
        vec![
            ("the canary skips a node that lost its agent", lost.clone(), T0, "send Instances([\"i-1\"])"),
            ("no Online node: nothing is sent", none.clone(), T0, "settle no_instances as Dispatched"),
        ],
        &s,
    );
    let Step::Settle { settlement, .. } = plan(&none, &s, &pass(T0)) else { panic!() };
    assert!(settlement.release.status_reason.unwrap().contains("i-0 ConnectionLost, i-1 NotRegistered"));
    // A full first pool without an Online node: the canary is looked for wider, once.
    let mut full = first(&["i-0", "i-1", "i-2", "i-3", "i-4"], &[]);
    full.nodes = ["i-0", "i-1", "i-2", "i-3", "i-4"].iter().map(|i| (i.to_string(), PingStatus::Inactive)).collect();
    assert_eq!(plan(&full, &s, &pass(T0)), Step::Observe(Need::Canary(CANARY_POOL)));
    full.canary_limit = CANARY_POOL;
    assert_eq!(brief(&plan(&full, &s, &pass(T0))), "settle no_instances as Dispatched");
    let sent = Observed { first_send: Some(Ok("cmd-1".into())), ..lost };
    let Step::Record { release: recorded, .. } = plan(&sent, &s, &pass(T0)) else { panic!() };
    assert_eq!(recorded.rollout.unwrap().waves[0].instance_ids, ["i-1"]);
    assert_eq!(
        recorded.unreachable,
        [Unreachable { instance_id: "i-0".into(), ping_status: PingStatus::ConnectionLost }],
        "passed over, on the record"
    );

    // Past the canary: a candidate that is not Online gives its place to the next.
    let mut canary_done = staged(&[&["i-0"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let next = |known: &[(&str, &str)], tolerance: Rate| {
        let mut seen = holding(canary_done.clone());
        seen.wave_reports = Some(vec![]);
        seen.tagged = true;
        seen.running = Some((0..5).map(|i| format!("i-{i}")).collect());
        seen.nodes = nodes(known);
        let mut s = s.clone();
        s.rollout.unreachable_tolerance = tolerance;
        (seen, s)
    };
    let (unknown, s1) = next(&[], Rate::Count(1));
    assert_eq!(
        plan(&unknown, &s1, &pass(secs(1))),
        Step::Observe(Need::ManagedNodes(vec!["i-1".into(), "i-2".into()]))
    );
    let (one_lost, s1) = next(&[("i-1", "Inactive"), ("i-2", "Online"), ("i-3", "Online")], Rate::Count(1));
    let Step::Record { release: recorded, .. } = plan(&one_lost, &s1, &pass(secs(1))) else { panic!() };
    assert_eq!(recorded.rollout.as_ref().unwrap().waves[1].instance_ids, ["i-2", "i-3"]);
    assert_eq!(recorded.unreachable[0].instance_id, "i-1");
    let (two_lost, s0) = next(&[("i-1", "Inactive"), ("i-2", "ConnectionLost"), ("i-3", "Online")], Rate::Count(1));
    check(vec![("over the tolerance: stopped like a failure", two_lost, secs(1), "observe RollbackTarget")], &s0);

    // A repair leaves a drifted node alone until it is back Online.
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let repair = |status: &str| Observed {
        fleet: Some(FleetState { last_good_release: Some(good.id.clone()), ..FleetState::default() }),
        good: Some(good.clone()),
        tagged_flakerefs: Some(HashMap::new()),
        instances: Some(vec![FleetInstance {
            id: "i-1".into(),
            state: InstanceState::Running,
            slot: Some(0),
            release: None,
        }]),
        nodes: nodes(&[("i-1", status)]),
        ..Observed::default()
    };
    let mut one = s.clone();
    one.spec.desired_capacity = 1;
    check(
        vec![
            ("drifted but unreachable", repair("ConnectionLost"), T0, "rest Idle: 1 drifted instances are not Online"),
            ("drifted and back Online", repair("Online"), T0, "repair launch [] reapply [\"i-1\"]"),
        ],
        &one,
    );
}

#[test]
fn a_rollback_reaches_only_online_nodes_and_an_undelivered_host_is_not_a_failure() {
    let s = settings(RolloutMode::Staged);
    let good = release(&s, GOOD, ReleaseKind::Deploy);
    let mut failing = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    failing.instances = vec![outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "Success")];
    let mut seen = holding(failing);
    seen.rollback_target = Some(Some(good));
    seen.nodes = nodes(&[("i-0", "Online"), ("i-1", "Online"), ("i-2", "ConnectionLost")]);
    let Step::Settle { settlement, .. } = plan(&seen, &s, &pass(secs(1))) else { panic!() };
    let rollback = settlement.fleet.unwrap().next.unwrap().release;
    let rollout = rollback.rollout.unwrap();
    assert_eq!(rollout.waves[0].instance_ids, ["i-0", "i-1"]);
    assert_eq!(rollout.fleet_size, Some(3), "the tolerance counts the host passed over among those meant");
    assert_eq!(rollback.unreachable[0].instance_id, "i-2");

    // SSM could not deliver to one host of a wave: within the tolerance the
    // wave passes, and the release says so when it ends.
    let mut waved = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    let mut undelivered = outcome("i-2", "Failed");
    undelivered.detail = "Undeliverable".into();
    waved.instances = vec![outcome("i-0", "Success"), outcome("i-1", "Success"), undelivered];
    let mut seen = holding(waved);
    seen.tagged = true;
    seen.wave_reports = Some(vec![]);
    seen.running = Some((0..3).map(|i| format!("i-{i}")).collect());
    let Step::Settle { settlement, .. } = plan(&seen, &s, &pass(secs(1))) else { panic!() };
    assert_eq!(settlement.release.status, ReleaseStatus::Succeeded);
    assert!(settlement.release.status_reason.unwrap().contains("i-2 Undeliverable"));
}

#[test]
fn no_wave_goes_out_after_the_deadline() {
    let s = settings(RolloutMode::Staged);
    // The canary passed, but only at the deadline: the next wave is not sent.
    let mut canary_done = staged(&[&["i-0"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let mut late = holding(canary_done);
    late.tagged = true;
    late.wave_reports = Some(vec![]);
    late.running = Some((0..5).map(|i| format!("i-{i}")).collect());
    // A wave whose send keeps failing: past the deadline it is failed, not sent again.
    let mut unsent = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    unsent.rollout.as_mut().unwrap().waves[1].command_ids.clear();
    unsent.instances = vec![outcome("i-0", "Success")];
    let mut taken = unsent.clone();
    taken.rollout.as_mut().unwrap().waves[1].claim = Claimed::new(&Claim::new("me", secs(600)), true);
    let looked = |found: Vec<Option<String>>| Observed { sent_batches: Some(found), ..holding(taken.clone()) };
    check(
        vec![
            ("a passed canary before the deadline", late.clone(), secs(1), "record in_progress"),
            ("a passed canary at the deadline", late, secs(600), "observe RollbackTarget"),
            ("an unsent wave before the deadline", holding(unsent.clone()), secs(130), "record in_progress then None"),
            (
                "an unsent wave at the deadline: its claim first",
                holding(unsent),
                secs(600),
                "record in_progress then None",
            ),
            ("then its batches are looked for, never sent", holding(taken.clone()), secs(600), "observe SentBatches"),
            (
                "one went out before its answer was lost: adopted",
                looked(vec![Some("cmd-9".into())]),
                secs(600),
                "record",
            ),
            ("none went out: the release fails", looked(vec![None]), secs(600), "observe RollbackTarget"),
        ],
        &s,
    );
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
        seen.tagged = true;
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
    let refused = Observed { cancels_asked: vec!["i-3".into()], ..reported(&stopping, &[("i-3", "Pending")]) };
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

/// Baking, pausing and rollback alarms, as the planner decides them for a
/// canary that passed (i-0) with the rest of the fleet (i-1, i-2) to go.
#[test]
fn a_passed_wave_bakes_pauses_and_stops_for_an_alarm_as_its_release_says() {
    use crate::domain::model::release::{Control, Paused};
    use crate::domain::model::rollout::{Bake, Checks};
    let mut s = settings(RolloutMode::Staged);
    s.rollout.bake = Duration::from_secs(60);
    s.rollout.alarms = vec!["web-5xx".into()];
    let canary = {
        let mut r = staged(&[&["i-0"]], "other");
        r.instances = vec![outcome("i-0", "Success")];
        r
    };
    let with_bake = |bake: Bake| {
        let mut r = canary.clone();
        // A wave bakes once judged passed, which dated it.
        r.rollout.as_mut().unwrap().waves[0].judged_ms = Some(bake.healthy_since_ms);
        r.rollout.as_mut().unwrap().waves[0].bake = Some(bake);
        r
    };
    let seen = |r: Release, alarms: &[&str]| {
        let mut seen = holding(r);
        seen.wave_reports = Some(vec![]);
        seen.tagged = true;
        seen.alarms = Some(alarms.iter().map(|a| a.to_string()).collect());
        seen.running = Some((0..3).map(|i| format!("i-{i}")).collect());
        seen
    };
    let baking = with_bake(Bake { healthy_since_ms: secs(1).millis(), checks: None });
    let claimed = with_bake(Bake {
        healthy_since_ms: secs(1).millis(),
        checks: Some(Checks { claim: Claimed::new(&Claim::new("me", secs(61)), false), ..Checks::default() }),
    });
    let others = with_bake(Bake {
        healthy_since_ms: secs(1).millis(),
        checks: Some(Checks { claim: Claimed::new(&Claim::new("other", secs(61)), false), ..Checks::default() }),
    });
    let sent = with_bake(Bake {
        healthy_since_ms: secs(1).millis(),
        checks: Some(Checks {
            command_ids: vec!["chk-0".into()],
            claim: Claimed::new(&Claim::new("me", secs(61)), false),
            ..Checks::default()
        }),
    });
    let reported = |status: &str| {
        let mut seen = seen(sent.clone(), &[]);
        seen.check_reports = Some(vec![outcome("i-0", status)]);
        seen
    };
    let mut unread = holding(canary.clone());
    unread.wave_reports = Some(vec![]);
    unread.tagged = true;
    let paused = {
        let mut r = sent.clone();
        let deadline_ms = r.deadline.millis();
        r.control = Some(Control {
            paused: Some(Paused { since_ms: secs(62).millis(), by: "ops".into(), deadline_ms, automatic: false }),
            ..Control::default()
        });
        r.deadline = r.deadline.plus(Duration::from_secs(86_400));
        r
    };
    let mut paused_checked = seen(paused.clone(), &[]);
    paused_checked.check_reports = Some(vec![outcome("i-0", "Success")]);
    check(
        vec![
            ("the alarms are read first", unread, secs(1), "observe Alarms"),
            ("an alarm in ALARM stops it", seen(canary.clone(), &["web-5xx"]), secs(1), "observe RollbackTarget"),
            (
                "passed: the bake starts, recorded",
                seen(canary.clone(), &[]),
                secs(1),
                "record in_progress then Some(Waiting)",
            ),
            ("baking", seen(baking.clone(), &[]), secs(60), "rest Waiting"),
            (
                "baked: the checks are claimed first",
                seen(baking.clone(), &[]),
                secs(61),
                "record in_progress then None",
            ),
            ("claimed by this pass: sent", seen(claimed.clone(), &[]), secs(61), "send checks"),
            ("claimed by another pass, within the window: waits", seen(others.clone(), &[]), secs(62), "rest Waiting"),
            ("sent: their reports are read", seen(sent.clone(), &[]), secs(62), "observe CheckReports([\"chk-0\"])"),
            ("a check failed: stopped", reported("Failed"), secs(62), "observe RollbackTarget"),
            ("checks still running", reported("InProgress"), secs(62), "rest Waiting"),
            ("checks passed: on to the next wave", reported("Success"), secs(62), "record in_progress then None"),
            ("checked but paused: held", paused_checked.clone(), secs(63), "record in_progress then Some(Paused)"),
            ("paused past its deadline: paused too long", paused_checked, paused.deadline, "observe RollbackTarget"),
        ],
        &s,
    );
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
    let seen = Observed {
        report: Some(CommandReport { finished: false, invocations }),
        tagged: true,
        rollback_target: Some(None),
        ..holding(sent)
    };
    let step = plan(&seen, &s, &pass(secs(10)));
    let Step::Cancel { requests, .. } = step else { panic!("{}", brief(&step)) };
    let sizes: Vec<(&str, usize)> = requests.iter().map(|(c, ids)| (c.as_str(), ids.len())).collect();
    assert_eq!(sizes, [("cmd-1", 50), ("cmd-1", 50), ("cmd-1", 20)]);
}

/// Round three of the faults (issue #36), as the planner's rules.
mod round_three {
    use super::*;
    use crate::domain::model::release::{Control, Paused};

    fn paused(mut release: Release) -> Release {
        let since_ms = secs(10).millis();
        let pause = Paused { since_ms, by: "ops".into(), deadline_ms: release.deadline.millis(), automatic: false };
        release.control = Some(Control { paused: Some(pause), ..Control::default() });
        release
    }

    #[test]
    fn a_pause_holds_every_wave_not_sent_claimed_or_not() {
        let s = settings(RolloutMode::Staged);
        let mut unsent = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
        unsent.rollout.as_mut().unwrap().waves[1].command_ids.clear();
        unsent.instances = vec![outcome("i-0", "Success")];
        let unsent = paused(unsent);
        let (mine, taken) = mine_and_taken(&unsent);
        let found_none = Observed { sent_batches: Some(vec![None]), ..holding(taken.clone()) };
        let found_one = Observed { sent_batches: Some(vec![Some("c-1".into())]), ..holding(taken.clone()) };
        check(
            vec![
                ("claimed by this pass, paused", holding(mine), secs(20), "rest Paused"),
                ("claimed by another, inside the window", holding(unsent.clone()), secs(20), "rest Paused"),
                ("claimed by another, lapsed: claimed first", holding(unsent.clone()), secs(200), "record in_progress"),
                (
                    "taken over: what the dead claimer sent is looked for",
                    holding(taken),
                    secs(200),
                    "observe SentBatches",
                ),
                ("nothing was sent: held", found_none, secs(200), "rest Paused"),
                (
                    "a batch was sent after all: adopted, then held",
                    found_one,
                    secs(200),
                    "record in_progress then None",
                ),
            ],
            &s,
        );
        // Paused past the deadline the pause moved: the wave never goes out, the release fails.
        let late = mine_and_taken(&unsent).0;
        let seen = Observed { sent_batches: Some(vec![None]), ..holding(late.clone()) };
        let step = plan(&seen, &s, &pass(late.deadline));
        assert!(brief(&step).starts_with("observe RollbackTarget"), "{step:?}");
    }

    #[test]
    fn an_invocation_seen_running_is_reached_whatever_ssm_says_after() {
        let s = settings(RolloutMode::Staged);
        let mut running = staged(&[&["i-0"]], "me");
        running.instances = vec![outcome("i-0", "InProgress")];
        let mut undelivered = outcome("i-0", "Failed");
        undelivered.detail = "Undeliverable".into();
        let seen = Observed { wave_reports: Some(vec![undelivered]), ..holding(running) };
        // A canary that ran and did not report Success failed: not "converged on none".
        let step = plan(&seen, &s, &pass(secs(1)));
        assert!(brief(&step).starts_with("observe RollbackTarget"), "{step:?}");
        let Step::Observe(_) = step else { unreachable!() };
        let merged = judge::merge_outcomes(&[outcome("i-0", "InProgress")], &seen.wave_reports.clone().unwrap());
        assert!(merged[0].started && merged[0].failed() && merged[0].reached());
    }

    #[test]
    fn a_failure_forgets_the_tags_of_the_hosts_it_left_unknown_before_anything_else() {
        let s = settings(RolloutMode::Staged);
        let mut failing = staged(&[&["i-0"], &["i-1", "i-2", "i-3"]], "other");
        let mut lost = outcome("i-3", "Failed");
        lost.detail = "Undeliverable".into();
        failing.instances = vec![outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "TimedOut"), lost];
        let seen = Observed { untagged: false, tagged: true, wave_reports: Some(vec![]), ..holding(failing) };
        // i-0 converged (its tag is true), i-3 never got the command (nor is its tag touched).
        assert_eq!(brief(&plan(&seen, &s, &pass(secs(1)))), r#"untag ["i-1", "i-2"]"#);
        let after = Observed { untagged: true, ..seen };
        assert!(brief(&plan(&after, &s, &pass(secs(1)))).starts_with("observe RollbackTarget"));
    }

    #[test]
    fn a_rollback_goes_only_to_hosts_of_batches_sent() {
        let s = settings(RolloutMode::Staged);
        let good = release(&s, GOOD, ReleaseKind::Deploy);
        let mut failing = staged(&[&["i-0"], &["i-1", "i-2"]], "me");
        failing.rollout.as_mut().unwrap().waves[1].command_ids.clear();
        failing.instances = vec![outcome("i-0", "Failed")];
        assert_eq!(failing.reached_instances(), ["i-0"]);
        let deadline = failing.deadline;
        let mut seen = holding(failing);
        seen.rollback_target = Some(Some(good));
        // At the deadline, wave 2 claimed and never sent (none of it found).
        seen.sent_batches = Some(vec![None]);
        let step = plan(&seen, &s, &pass(deadline));
        let Step::Settle { settlement, .. } = step else { panic!("{}", brief(&step)) };
        let rollback = settlement.fleet.unwrap().next.unwrap().release;
        assert_eq!(rollback.rollout.unwrap().waves[0].instance_ids, ["i-0"]);
    }

    #[test]
    fn a_targeted_release_tolerates_no_unreachable_host() {
        let s = settings(RolloutMode::Staged);
        let mut targeted = targeted_release(&s, Flakeref::parse(NEXT).unwrap(), None, vec!["i-0".into()], &pass(T0));
        targeted.rollout.as_mut().unwrap().waves[0].command_ids = vec!["c".into()];
        let mut nobody = outcome("i-0", "Failed");
        nobody.detail = "Undeliverable".into();
        let good = release(&s, GOOD, ReleaseKind::Deploy);
        let seen =
            Observed { wave_reports: Some(vec![nobody]), rollback_target: Some(Some(good)), ..holding(targeted) };
        // It reached nobody: nothing to roll back, failed.
        let step = plan(&seen, &s, &pass(secs(1)));
        let Step::Settle { settlement, .. } = step else { panic!("{}", brief(&step)) };
        assert_eq!(settlement.release.status, ReleaseStatus::Failed, "not succeeded");
        let why = settlement.release.status_reason.unwrap();
        assert!(why.contains("a deploy to named instances must reach every one"), "{why}");
    }

    #[test]
    fn a_repair_keeps_only_targeted_releases_that_succeeded() {
        let s = settings(RolloutMode::Staged);
        let good = release(&s, GOOD, ReleaseKind::Deploy);
        let targeted = id(50);
        let instance = |n: usize, tagged: &ReleaseId| FleetInstance {
            id: format!("i-{n}"),
            state: InstanceState::Running,
            slot: Some(n),
            release: Some(tagged.clone()),
        };
        let knows = |status: ReleaseStatus| Observed {
            fleet: Some(FleetState { last_good_release: Some(good.id.clone()), ..FleetState::default() }),
            good: Some(good.clone()),
            tagged_flakerefs: Some(HashMap::from([
                (good.id.clone(), good.flakeref.clone()),
                (targeted.clone(), Flakeref::parse(NEXT).unwrap()),
            ])),
            tagged_targeted: HashMap::from([(targeted.clone(), status)]),
            instances: Some(vec![instance(0, &targeted), instance(1, &good.id), instance(2, &good.id)]),
            nodes: all_online(),
            ..Observed::default()
        };
        check(
            vec![
                ("succeeded: kept", knows(ReleaseStatus::Succeeded), secs(1), "rest Idle"),
                ("failed: repaired", knows(ReleaseStatus::Failed), secs(1), r#"repair launch [] reapply ["i-0"]"#),
                (
                    "rolled back: repaired",
                    knows(ReleaseStatus::RolledBack),
                    secs(1),
                    r#"repair launch [] reapply ["i-0"]"#,
                ),
            ],
            &s,
        );
    }
}
