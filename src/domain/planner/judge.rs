//! Judging what instances reported: whether a command or a wave succeeded,
//! and which instances the next wave takes. Pure rules.

use crate::domain::model::command::CommandReport;
use crate::domain::model::outcome::{describe_failures, trim_outputs, InstanceOutcome};
use crate::domain::model::release::ReleaseStatus;
use crate::domain::model::rollout::{Rollout, RolloutPolicy};
use crate::domain::model::time::Timestamp;
use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    pub instances: Vec<InstanceOutcome>,
}

/// Never trusts the command's overall status (SSM calls a command a success
/// when most of its instances were Undeliverable): a release succeeds only when
/// the command is over and every instance it reached says Success.
pub fn judge_command(
    report: &CommandReport,
    recorded: &[InstanceOutcome],
    deadline: Timestamp,
    now: Timestamp,
) -> Verdict {
    let mut instances = report.invocations.clone();
    carry_started(recorded, &mut instances);
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let unfinished = instances.iter().filter(|i| !i.is_finished()).count();
    let not_converged: Vec<&InstanceOutcome> = instances.iter().filter(|i| i.failed()).collect();

    let (status, reason) = if report.finished && instances.is_empty() {
        (ReleaseStatus::NoInstances, Some("the command reached no instance carrying the fleet tag".to_owned()))
    } else if report.finished && unfinished == 0 && instances.iter().all(|i| i.unreachable()) {
        let why = format!("SSM delivered the command to none of the {} instances it targeted", instances.len());
        (ReleaseStatus::NoInstances, Some(why))
    } else if report.finished && unfinished == 0 {
        if not_converged.is_empty() {
            (ReleaseStatus::Succeeded, None)
        } else {
            (ReleaseStatus::Failed, Some(describe_failures(&instances)))
        }
    } else if now >= deadline {
        let reason = format!(
            "deadline {} passed with {unfinished} of {} instances unfinished{}",
            deadline.to_rfc3339(),
            instances.len(),
            if not_converged.is_empty() { String::new() } else { format!("; {}", describe_failures(&instances)) }
        );
        (ReleaseStatus::Failed, Some(reason))
    } else {
        (ReleaseStatus::InProgress, None)
    };
    Verdict { status, reason, instances }
}

/// How the wave in flight stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaveVerdict {
    Running,
    Passed,
    /// Stop the rollout; the reason says why.
    Stop(String),
}

/// Judges the current wave from every targeted instance's outcome.
/// The canary (wave 0) tolerates no failure; later waves stop once failures
/// across the rollout pass the threshold of the planned fleet.
pub fn judge_wave(rollout: &Rollout, outcomes: &[InstanceOutcome], policy: &RolloutPolicy) -> WaveVerdict {
    let Some(wave) = rollout.current() else {
        return WaveVerdict::Running;
    };
    let in_wave: HashSet<&str> = wave.instance_ids.iter().map(String::as_str).collect();
    let wave_outcomes: Vec<&InstanceOutcome> =
        outcomes.iter().filter(|o| in_wave.contains(o.instance_id.as_str())).collect();
    let failed_overall = outcomes.iter().filter(|o| o.failed()).count();
    let failed_in_wave = wave_outcomes.iter().filter(|o| o.failed()).count();
    let finished = wave.fully_sent()
        && wave_outcomes.len() == wave.instance_ids.len()
        && wave_outcomes.iter().all(|o| o.is_finished());

    if rollout.waves.len() == 1 && failed_in_wave > 0 {
        // Named, so an operator (or a repair's launched hosts) can be looked at.
        let wave: Vec<InstanceOutcome> = wave_outcomes.iter().map(|o| (*o).clone()).collect();
        return WaveVerdict::Stop(format!("the first wave failed: {}", describe_failures(&wave)));
    }
    // A canary that converged nowhere (SSM could not deliver to it) proved nothing.
    if rollout.waves.len() == 1 && !rollout.fixed && finished && !wave_outcomes.iter().any(|o| o.converged()) {
        return WaveVerdict::Stop(format!("the first wave converged on none of its {} instances", in_wave.len()));
    }
    let total = rollout.fleet_size.unwrap_or(in_wave.len());
    let allowed = policy.failure_threshold.floor_of(total);
    if failed_overall > allowed {
        return WaveVerdict::Stop(format!(
            "{failed_overall} instances failed, over the failure threshold of {allowed} for a fleet of {total}"
        ));
    }
    if finished {
        WaveVerdict::Passed
    } else {
        WaveVerdict::Running
    }
}

/// The next wave: the running instances not yet targeted, sorted, as many as
/// the wave size allows. Empty when the rollout has reached every instance.
pub fn next_wave(rollout: &Rollout, running: &[String], policy: &RolloutPolicy) -> Vec<String> {
    let targeted: HashSet<&String> = rollout.targeted().collect();
    let mut remaining: Vec<String> = running.iter().filter(|i| !targeted.contains(i)).cloned().collect();
    remaining.sort();
    let fleet = rollout.fleet_size.unwrap_or(running.len());
    remaining.truncate(policy.wave.ceil_of(fleet));
    remaining
}

/// The recorded outcomes with the newest report for each instance laid over
/// them, sorted by instance id, output trimmed.
pub fn merge_outcomes(recorded: &[InstanceOutcome], reported: &[InstanceOutcome]) -> Vec<InstanceOutcome> {
    let mut reported = reported.to_vec();
    carry_started(recorded, &mut reported);
    let mut merged: BTreeMap<&str, &InstanceOutcome> = recorded.iter().map(|o| (o.instance_id.as_str(), o)).collect();
    for outcome in &reported {
        merged.insert(outcome.instance_id.as_str(), outcome);
    }
    let mut merged: Vec<InstanceOutcome> = merged.into_values().cloned().collect();
    trim_outputs(&mut merged);
    merged
}

/// An invocation seen running stays reached: a later report that SSM never
/// delivered it (which AWS documents only for invocations that never
/// started) leaves it `started`, so it counts as a failure on a host that
/// got the command, and a rollback goes to that host.
fn carry_started(recorded: &[InstanceOutcome], reported: &mut [InstanceOutcome]) {
    let before: HashSet<&str> = recorded.iter().filter(|o| o.reached()).map(|o| o.instance_id.as_str()).collect();
    for outcome in reported {
        if before.contains(outcome.instance_id.as_str()) && !outcome.reached() {
            outcome.started = true;
        }
    }
}

/// Instances that converged in `now` but not in `before`: the ones to tag.
pub fn newly_converged(before: &[InstanceOutcome], now: &[InstanceOutcome]) -> Vec<String> {
    let converged: HashSet<&str> = before.iter().filter(|o| o.converged()).map(|o| o.instance_id.as_str()).collect();
    now.iter()
        .filter(|o| o.converged() && !converged.contains(o.instance_id.as_str()))
        .map(|o| o.instance_id.clone())
        .collect()
}

/// The batches of the current wave that still have something to say: those
/// with an instance without a final outcome. Answers their command ids.
pub fn batches_to_report(rollout: &Rollout, recorded: &[InstanceOutcome]) -> Vec<String> {
    let Some(wave) = rollout.current() else {
        return Vec::new();
    };
    let finished: HashSet<&str> = recorded.iter().filter(|o| o.is_finished()).map(|o| o.instance_id.as_str()).collect();
    wave.command_ids
        .iter()
        .zip(wave.batches())
        .filter(|(_, batch)| !batch.iter().all(|id| finished.contains(id.as_str())))
        .map(|(command, _)| command.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::outcome::tests::outcome;
    use crate::domain::model::rollout::{Claim, Rate, RolloutMode, Wave, BATCH};

    fn with_detail(id: &str, status: &str, detail: &str) -> InstanceOutcome {
        InstanceOutcome {
            instance_id: id.into(),
            status: status.into(),
            detail: detail.into(),
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            output_note: None,
            started: false,
        }
    }

    const T: Timestamp = Timestamp::from_millis(1_000);
    const DEADLINE: Timestamp = Timestamp::from_millis(5_000);

    #[test]
    fn all_success_after_the_command_ends_is_success() {
        let report = CommandReport {
            finished: true,
            invocations: vec![with_detail("i-2", "Success", "Success"), with_detail("i-1", "Success", "Success")],
        };
        let v = judge_command(&report, &[], DEADLINE, T);
        assert_eq!(v.status, ReleaseStatus::Succeeded);
        assert_eq!(v.instances[0].instance_id, "i-1");
    }

    #[test]
    fn undelivered_hosts_are_not_failures_and_never_a_success_alone() {
        let report = CommandReport {
            finished: true,
            invocations: vec![
                with_detail("i-1", "Success", "Success"),
                with_detail("i-2", "Failed", "Undeliverable"),
                with_detail("i-3", "TimedOut", "Delivery Timed Out"),
            ],
        };
        // The tolerance for unreachable hosts is the planner's call.
        assert_eq!(judge_command(&report, &[], DEADLINE, T).status, ReleaseStatus::Succeeded);
        let nowhere = CommandReport { finished: true, invocations: report.invocations[1..].to_vec() };
        let v = judge_command(&nowhere, &[], DEADLINE, T);
        assert_eq!(v.status, ReleaseStatus::NoInstances);
        assert_eq!(v.reason.as_deref(), Some("SSM delivered the command to none of the 2 instances it targeted"));
    }

    #[test]
    fn running_until_the_command_ends_then_failed_at_the_deadline() {
        let report = CommandReport {
            finished: false,
            invocations: vec![
                with_detail("i-1", "Success", "Success"),
                with_detail("i-2", "InProgress", "In Progress"),
            ],
        };
        assert_eq!(judge_command(&report, &[], DEADLINE, T).status, ReleaseStatus::InProgress);
        let late = judge_command(&report, &[], DEADLINE, DEADLINE);
        assert_eq!(late.status, ReleaseStatus::Failed);
        assert!(late.reason.unwrap().contains("1 of 2 instances unfinished"));
    }

    #[test]
    fn unknown_status_is_not_success() {
        let report = CommandReport { finished: true, invocations: vec![with_detail("i-1", "Sucess", "?")] };
        assert_eq!(judge_command(&report, &[], DEADLINE, T).status, ReleaseStatus::InProgress);
        assert_eq!(judge_command(&report, &[], DEADLINE, DEADLINE).status, ReleaseStatus::Failed);
    }

    #[test]
    fn a_finished_command_with_no_invocations_reached_no_instance() {
        let report = CommandReport { finished: true, invocations: vec![] };
        assert_eq!(judge_command(&report, &[], DEADLINE, T).status, ReleaseStatus::NoInstances);
    }

    fn policy(threshold: &str) -> RolloutPolicy {
        RolloutPolicy {
            mode: RolloutMode::Staged,
            canary: 1,
            wave: Rate::parse("30%").unwrap(),
            failure_threshold: Rate::parse(threshold).unwrap(),
            unreachable_tolerance: Rate::Count(1),
            auto_rollback: true,
            pause_before_waves: false,
            max_pause: std::time::Duration::from_secs(86_400),
            bake: std::time::Duration::ZERO,
            alarms: Vec::new(),
        }
    }

    fn sent(ids: &[&str]) -> Wave {
        Wave {
            instance_ids: ids.iter().map(|s| s.to_string()).collect(),
            command_ids: vec!["c".into(); ids.len().div_ceil(BATCH)],
            ..Wave::default()
        }
    }

    #[test]
    fn a_canary_failure_stops_at_once() {
        let rollout = Rollout { waves: vec![sent(&["i-1"])], ..Rollout::default() };
        let v = judge_wave(&rollout, &[outcome("i-1", "Failed")], &policy("50%"));
        assert!(matches!(&v, WaveVerdict::Stop(r) if r.contains("first wave") && r.contains("i-1 Failed")), "{v:?}");
    }

    #[test]
    fn waves_pass_only_when_every_instance_answered() {
        let rollout =
            Rollout { waves: vec![sent(&["i-0"]), sent(&["i-1", "i-2"])], fleet_size: Some(10), ..Rollout::default() };
        let mut outcomes = vec![outcome("i-0", "Success"), outcome("i-1", "Success")];
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Running);
        outcomes.push(outcome("i-2", "InProgress"));
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Running);
        outcomes[2] = outcome("i-2", "Success");
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Passed);
    }

    #[test]
    fn the_threshold_counts_failures_across_waves() {
        let rollout = Rollout {
            waves: vec![sent(&["i-0"]), sent(&["i-1", "i-2", "i-3"])],
            fleet_size: Some(10),
            ..Rollout::default()
        };
        let outcomes = [outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "Success")];
        // 10% of 10 tolerates one failure.
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("10%")), WaveVerdict::Running);
        let outcomes = [outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "TimedOut")];
        assert!(matches!(judge_wave(&rollout, &outcomes, &policy("10%")), WaveVerdict::Stop(_)));
    }

    #[test]
    fn next_waves_cover_the_rest_of_the_fleet_once() {
        let running: Vec<String> = (0..10).map(|i| format!("i-{i}")).collect();
        let mut rollout = Rollout { waves: vec![sent(&["i-4"])], fleet_size: Some(10), ..Rollout::default() };
        let mut seen = vec!["i-4".to_string()];
        loop {
            let wave = next_wave(&rollout, &running, &policy("0"));
            if wave.is_empty() {
                break;
            }
            assert!(wave.len() <= 3);
            assert!(wave.iter().all(|i| !seen.contains(i)));
            seen.extend(wave.iter().cloned());
            rollout.waves.push(Wave::new(wave, &Claim::new("t", Timestamp::from_millis(0))));
        }
        seen.sort();
        assert_eq!(seen, {
            let mut r = running.clone();
            r.sort();
            r
        });
        assert_eq!(rollout.waves.len(), 4);
    }

    #[test]
    fn only_batches_with_unfinished_instances_are_asked_again() {
        let mut wave =
            Wave::new((0..120).map(|i| format!("i-{i:03}")).collect(), &Claim::new("t", Timestamp::from_millis(0)));
        wave.command_ids = vec!["c0".into(), "c1".into(), "c2".into()];
        let rollout = Rollout { waves: vec![wave], ..Rollout::default() };
        let done: Vec<InstanceOutcome> = (0..50).map(|i| outcome(&format!("i-{i:03}"), "Success")).collect();
        assert_eq!(batches_to_report(&rollout, &done), ["c1", "c2"]);
        let mut running = done.clone();
        running[3] = outcome("i-003", "InProgress");
        assert_eq!(batches_to_report(&rollout, &running), ["c0", "c1", "c2"]);
    }

    #[test]
    fn merged_outcomes_take_the_newest_report_and_tag_only_fresh_successes() {
        let recorded = [outcome("i-1", "Success"), outcome("i-2", "InProgress")];
        let reported = [outcome("i-2", "Success"), outcome("i-0", "Failed")];
        let merged = merge_outcomes(&recorded, &reported);
        let ids: Vec<(&str, &str)> = merged.iter().map(|o| (o.instance_id.as_str(), o.status.as_str())).collect();
        assert_eq!(ids, [("i-0", "Failed"), ("i-1", "Success"), ("i-2", "Success")]);
        assert_eq!(newly_converged(&recorded, &merged), ["i-2"]);
    }
}
