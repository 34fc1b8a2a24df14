//! Reachability: only Online managed nodes are targets; the rest are recorded unreachable.

use super::*;

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
    let sent = {
        let mut o = lost;
        o.log.first_send = Some(Ok("cmd-1".into()));
        o
    };
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
        seen.log.tagged = true;
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
    seen.log.tagged = true;
    seen.wave_reports = Some(vec![]);
    seen.running = Some((0..3).map(|i| format!("i-{i}")).collect());
    let Step::Settle { settlement, .. } = plan(&seen, &s, &pass(secs(1))) else { panic!() };
    assert_eq!(settlement.release.status, ReleaseStatus::Succeeded);
    assert!(settlement.release.status_reason.unwrap().contains("i-2 Undeliverable"));
}
