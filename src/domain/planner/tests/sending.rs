//! Sending: the first command once, the canary first, waves by their claimer or a takeover, none after the deadline.

use super::*;

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
            (
                "sent",
                here(|o| o.log.first_send = Some(Ok("cmd-1".into()))),
                T0,
                "record in_progress then Some(Dispatched)",
            ),
            (
                "refused",
                here(|o| o.log.first_send = Some(Err("InvalidDocument".into()))),
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
    let seen = {
        let mut o = seen;
        o.log.first_send = Some(Ok("cmd-1".into()));
        o
    };
    let Step::Record { release, .. } = plan(&seen, &s, &pass(T0)) else { panic!() };
    let canary = &release.rollout.unwrap().waves[0];
    assert_eq!(
        (canary.instance_ids.as_slice(), canary.command_ids.as_slice()),
        (["i-0".to_string()].as_slice(), ["cmd-1".to_string()].as_slice())
    );
    assert!(canary.claimed_by(&Claim::new("me", T0)));
    assert_eq!((canary.sent_ms, canary.judged_ms), (Some(T0.millis()), None), "dated when sent, not judged yet");
    let empty = {
        let mut o = Observed { canary: Some(vec![]), ..seen };
        o.log.first_send = None;
        o
    };
    assert_eq!(brief(&plan(&empty, &s, &pass(T0))), "settle no_instances as Dispatched");
}

#[test]
fn a_wave_is_sent_by_its_claimer_or_taken_over_after_the_window() {
    let s = settings(RolloutMode::Staged);
    let mut unsent = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    unsent.rollout.as_mut().unwrap().waves[1].command_ids.clear();
    let (mine, taken) = mine_and_taken(&unsent);
    let sent_now = {
        let mut o = holding(mine.clone());
        o.log.wave_sent = true;
        o
    };
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
                {
                    let mut o = holding(mine.clone());
                    o.log.fenced = true;
                    o
                },
                T0,
                "rest Waiting",
            ),
        ],
        &s,
    );
    let mut sent = mine;
    sent.rollout.as_mut().unwrap().waves[1].command_ids = vec!["c".into()];
    let seen = {
        let mut o = holding(sent);
        o.log.wave_sent = true;
        o
    };
    assert_eq!(brief(&plan(&seen, &s, &pass(T0))), "rest WaveStarted");
}

#[test]
fn no_wave_goes_out_after_the_deadline() {
    let s = settings(RolloutMode::Staged);
    // The canary passed, but only at the deadline: the next wave is not sent.
    let mut canary_done = staged(&[&["i-0"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let mut late = holding(canary_done);
    late.log.tagged = true;
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
