//! Judging: a wave from what its batches report, dated when judged; a command to the tag when SSM says it ended.

use super::*;

#[test]
fn a_sent_wave_is_judged_from_what_its_unfinished_batches_report() {
    let s = settings(RolloutMode::Staged);
    let mut canary_done = staged(&[&["i-0"], &["i-1", "i-2"]], "other");
    canary_done.instances = vec![outcome("i-0", "Success")];
    let reports = |list: &[(&str, &str)]| {
        let mut seen = holding(canary_done.clone());
        seen.wave_reports = Some(list.iter().map(|(i, st)| outcome(i, st)).collect());
        seen.log.tagged = true;
        seen
    };
    let mut untagged = reports(&[("i-1", "Success"), ("i-2", "InProgress")]);
    untagged.log.tagged = false;
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
        seen.log.tagged = true;
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
fn a_command_to_the_whole_tag_is_judged_when_ssm_says_it_ended() {
    let s = settings(RolloutMode::AllAtOnce);
    let mut sent = release(&s, NEXT, ReleaseKind::Deploy);
    sent.status = ReleaseStatus::InProgress;
    let report = |finished, list: &[(&str, &str)]| {
        let mut o = Observed {
            report: Some(CommandReport { finished, invocations: list.iter().map(|(i, st)| outcome(i, st)).collect() }),
            ..holding(Release { command_id: Some("cmd-1".into()), ..sent.clone() })
        };
        o.log.tagged = true;
        o
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
