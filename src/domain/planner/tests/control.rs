//! Baking, pausing and rollback alarms.

use super::*;

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
        seen.log.tagged = true;
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
    unread.log.tagged = true;
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
