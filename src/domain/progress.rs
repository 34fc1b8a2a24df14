//! Judging a release from what each instance reported: the one place that
//! decides whether a release succeeded.

use super::ports::CommandReport;
use super::release::{InstanceOutcome, ReleaseStatus};
use super::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    pub instances: Vec<InstanceOutcome>,
}

/// Never trusts the command's overall status (SSM calls a command a success
/// when most of its instances were Undeliverable): a release succeeds only when
/// the command is over and every instance it reached says Success.
pub fn judge(report: &CommandReport, deadline: Timestamp, now: Timestamp) -> Verdict {
    let mut instances = report.invocations.clone();
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let unfinished = instances.iter().filter(|i| !i.is_finished()).count();
    let not_converged: Vec<&InstanceOutcome> = instances.iter().filter(|i| i.is_finished() && !i.converged()).collect();

    let (status, reason) = if report.finished && instances.is_empty() {
        (ReleaseStatus::NoInstances, Some("the command reached no instance carrying the fleet tag".to_owned()))
    } else if report.finished && unfinished == 0 {
        if not_converged.is_empty() {
            (ReleaseStatus::Succeeded, None)
        } else {
            (ReleaseStatus::Failed, Some(describe_failures(&not_converged, instances.len())))
        }
    } else if now >= deadline {
        let reason = format!(
            "deadline {} passed with {unfinished} of {} instances unfinished{}",
            deadline.to_rfc3339(),
            instances.len(),
            if not_converged.is_empty() {
                String::new()
            } else {
                format!("; {}", describe_failures(&not_converged, instances.len()))
            }
        );
        (ReleaseStatus::Failed, Some(reason))
    } else {
        (ReleaseStatus::InProgress, None)
    };
    Verdict { status, reason, instances }
}

fn describe_failures(failed: &[&InstanceOutcome], total: usize) -> String {
    const SHOWN: usize = 5;
    let mut text = format!("{} of {total} instances did not converge: ", failed.len());
    let listed: Vec<String> = failed
        .iter()
        .take(SHOWN)
        .map(|i| match i.exit_code {
            Some(code) if code >= 0 => format!("{} {} (exit {code})", i.instance_id, i.detail),
            _ => format!("{} {}", i.instance_id, i.detail),
        })
        .collect();
    text.push_str(&listed.join(", "));
    if failed.len() > SHOWN {
        text.push_str(&format!(" and {} more", failed.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str, status: &str, detail: &str) -> InstanceOutcome {
        InstanceOutcome {
            instance_id: id.into(),
            status: status.into(),
            detail: detail.into(),
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        }
    }

    const T: Timestamp = Timestamp::from_millis(1_000);
    const DEADLINE: Timestamp = Timestamp::from_millis(5_000);

    #[test]
    fn all_success_after_the_command_ends_is_success() {
        let report = CommandReport {
            finished: true,
            invocations: vec![outcome("i-2", "Success", "Success"), outcome("i-1", "Success", "Success")],
        };
        let v = judge(&report, DEADLINE, T);
        assert_eq!(v.status, ReleaseStatus::Succeeded);
        assert_eq!(v.instances[0].instance_id, "i-1");
    }

    #[test]
    fn undeliverable_is_never_success_even_when_ssm_says_success() {
        let report = CommandReport {
            finished: true,
            invocations: vec![
                outcome("i-1", "Success", "Success"),
                outcome("i-2", "Failed", "Undeliverable"),
                outcome("i-3", "TimedOut", "Delivery Timed Out"),
            ],
        };
        let v = judge(&report, DEADLINE, T);
        assert_eq!(v.status, ReleaseStatus::Failed);
        assert_eq!(
            v.reason.as_deref(),
            Some("2 of 3 instances did not converge: i-2 Undeliverable, i-3 Delivery Timed Out")
        );
    }

    #[test]
    fn running_until_the_command_ends_then_failed_at_the_deadline() {
        let report = CommandReport {
            finished: false,
            invocations: vec![outcome("i-1", "Success", "Success"), outcome("i-2", "InProgress", "In Progress")],
        };
        assert_eq!(judge(&report, DEADLINE, T).status, ReleaseStatus::InProgress);
        let late = judge(&report, DEADLINE, DEADLINE);
        assert_eq!(late.status, ReleaseStatus::Failed);
        assert!(late.reason.unwrap().contains("1 of 2 instances unfinished"));
    }

    #[test]
    fn unknown_status_is_not_success() {
        let report = CommandReport { finished: true, invocations: vec![outcome("i-1", "Sucess", "?")] };
        assert_eq!(judge(&report, DEADLINE, T).status, ReleaseStatus::InProgress);
        assert_eq!(judge(&report, DEADLINE, DEADLINE).status, ReleaseStatus::Failed);
    }

    #[test]
    fn a_finished_command_with_no_invocations_reached_no_instance() {
        let report = CommandReport { finished: true, invocations: vec![] };
        assert_eq!(judge(&report, DEADLINE, T).status, ReleaseStatus::NoInstances);
    }
}
