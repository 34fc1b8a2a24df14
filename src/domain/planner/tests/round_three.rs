//! Round three of the faults (issue #36), as the planner's rules.

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
            ("taken over: what the dead claimer sent is looked for", holding(taken), secs(200), "observe SentBatches"),
            ("nothing was sent: held", found_none, secs(200), "rest Paused"),
            ("a batch was sent after all: adopted, then held", found_one, secs(200), "record in_progress then None"),
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
    let seen = {
        let mut o = Observed { wave_reports: Some(vec![]), ..holding(failing) };
        o.log.untagged = false;
        o.log.tagged = true;
        o
    };
    // i-0 converged (its tag is true), i-3 never got the command (nor is its tag touched).
    assert_eq!(brief(&plan(&seen, &s, &pass(secs(1)))), r#"untag ["i-1", "i-2"]"#);
    let after = {
        let mut o = seen;
        o.log.untagged = true;
        o
    };
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
    let seen = Observed { wave_reports: Some(vec![nobody]), rollback_target: Some(Some(good)), ..holding(targeted) };
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
            ("rolled back: repaired", knows(ReleaseStatus::RolledBack), secs(1), r#"repair launch [] reapply ["i-0"]"#),
        ],
        &s,
    );
}
