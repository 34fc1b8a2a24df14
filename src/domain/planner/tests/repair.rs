//! The drift repair: a free fleet read and repaired, a repair's own release, a repair that stopped mid-launch.

use super::*;

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
                {
                    let mut o = Observed { image: Some(Ok(image())), ..holding(repair) };
                    o.log.launched = true;
                    o
                },
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
