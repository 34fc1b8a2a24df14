//! Where a release stands, as a wait prints it: its wave, how many of the
//! instances it is meant for succeeded, failed or are still to go, and
//! how long it has been waited on. Read from the API's release.

use crate::api::{InstanceOutcome, Release};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub release_id: String,
    pub status: String,
    /// Waves started so far (0 for a release sent to the fleet's tag at once).
    pub wave: usize,
    /// The instances it is meant for; unknown while a staged rollout is at
    /// its canary (the fleet is counted when the rollout is planned past it).
    pub total: Option<usize>,
    pub succeeded: usize,
    pub failed: usize,
    /// Never reached: the command was not delivered, or the host was passed over.
    pub unreachable: usize,
    pub paused: bool,
    pub stopping: bool,
}

impl Progress {
    pub fn of(release: &Release) -> Self {
        let instances = &release.instances;
        let undelivered = |i: &InstanceOutcome| matches!(i.detail.as_str(), "Undeliverable" | "Delivery Timed Out");
        let finished =
            |i: &InstanceOutcome| matches!(i.status.as_str(), "Success" | "Failed" | "TimedOut" | "Cancelled");
        let succeeded = instances.iter().filter(|i| i.status == "Success").count();
        let delivered_failures = instances.iter().filter(|i| finished(i) && i.status != "Success");
        let failed = delivered_failures.clone().filter(|i| !undelivered(i)).count();
        let passed_over = release.head.unreachable.len();
        let unreachable = delivered_failures.filter(|i| undelivered(i)).count() + passed_over;
        let waves = release.rollout.as_ref().map(|r| r.waves.as_slice()).unwrap_or_default();
        let targeted: usize = waves.iter().map(|w| w.instance_ids.len()).sum();
        let total = match release.rollout.as_ref().map(|r| r.fleet_size) {
            Some(Some(planned)) => Some(planned.max(targeted + passed_over)),
            Some(None) if !waves.is_empty() => None,
            _ => Some((instances.len() + passed_over).max(targeted + passed_over)),
        };
        Self {
            release_id: release.head.id.clone(),
            status: release.head.status.as_str().to_owned(),
            wave: waves.len(),
            total,
            succeeded,
            failed,
            unreachable,
            paused: release.head.control.as_ref().is_some_and(|c| c.paused.is_some()),
            stopping: release.head.stopping.is_some() && !release.head.status.is_final(),
        }
    }

    pub fn pending(&self) -> Option<usize> {
        self.total.map(|total| total.saturating_sub(self.succeeded + self.failed + self.unreachable))
    }

    /// `[1m05s] 01J… in_progress, wave 2: 3/10 succeeded, 1 failed, 6 pending`.
    pub fn line(&self, elapsed: Duration) -> String {
        let wave = if self.wave > 0 { format!(", wave {}", self.wave) } else { String::new() };
        let mut state = String::new();
        if self.paused {
            state.push_str(" (paused)");
        }
        if self.stopping {
            state.push_str(" (stopping: awaiting applies still running)");
        }
        let unreachable =
            if self.unreachable > 0 { format!(", {} unreachable", self.unreachable) } else { String::new() };
        let (total, pending) = match (self.total, self.pending()) {
            (Some(total), Some(pending)) => (format!("/{total}"), format!("{pending} pending")),
            _ => (String::new(), "the fleet is counted after the canary".to_owned()),
        };
        format!(
            "[{}] {} {}{wave}{state}: {}{total} succeeded, {} failed{unreachable}, {pending}",
            clock(elapsed),
            self.release_id,
            self.status,
            self.succeeded,
            self.failed,
        )
    }

    /// The same as one JSON object, for `--json --wait`.
    pub fn json(&self, elapsed: Duration) -> Value {
        json!({ "progress": {
            "release_id": self.release_id, "status": self.status, "wave": self.wave, "total": self.total,
            "succeeded": self.succeeded, "failed": self.failed, "unreachable": self.unreachable,
            "pending": self.pending(), "paused": self.paused, "stopping": self.stopping,
            "elapsed_seconds": elapsed.as_secs(),
        }})
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn clock(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::release_with;

    #[test]
    fn a_staged_release_counts_against_the_fleet_it_is_meant_for() {
        let release = release_with(json!({"id": "01A", "status": "in_progress",
            "rollout": {"fleet_size": 10, "fixed": false, "waves": [
                {"instance_ids": ["i-1"], "command_ids": [], "claimed_ms": 1},
                {"instance_ids": ["i-2", "i-3", "i-4"], "command_ids": [], "claimed_ms": 1}]},
            "instances": [
                {"instance_id": "i-1", "status": "Success", "detail": "Success"},
                {"instance_id": "i-2", "status": "Failed", "detail": "Failed"},
                {"instance_id": "i-3", "status": "Failed", "detail": "Undeliverable"},
                {"instance_id": "i-4", "status": "InProgress", "detail": "InProgress"}]}));
        let progress = Progress::of(&release);
        assert_eq!((progress.total, progress.succeeded, progress.failed, progress.unreachable), (Some(10), 1, 1, 1));
        assert_eq!(progress.pending(), Some(7));
        assert_eq!(
            progress.line(Duration::from_secs(65)),
            "[1m05s] 01A in_progress, wave 2: 1/10 succeeded, 1 failed, 1 unreachable, 7 pending"
        );
        assert_eq!(progress.json(Duration::from_secs(65))["progress"]["pending"], 7);
    }

    #[test]
    fn a_release_sent_at_once_counts_what_reported() {
        let host = |id: &str| json!({"instance_id": id, "status": "Success", "detail": "Success"});
        let release = release_with(json!({"id": "01B", "status": "succeeded", "control": {"paused_ms": 0},
            "instances": [host("i-1"), host("i-2")]}));
        let line = Progress::of(&release).line(Duration::from_secs(3));
        assert_eq!(line, "[3s] 01B succeeded: 2/2 succeeded, 0 failed, 0 pending");
        let wave = json!({"instance_ids": ["i-1"], "command_ids": [], "claimed_ms": 1});
        let paused = release_with(json!({"id": "01C", "status": "in_progress",
            "control": {"paused_ms": 0, "paused": {"by": "x", "since_ms": 1, "deadline_ms": 2, "automatic": false}},
            "rollout": {"fleet_size": 3, "fixed": false, "waves": [wave]}}));
        assert!(Progress::of(&paused).line(Duration::ZERO).contains("wave 1 (paused): 0/3 succeeded"));
        let canary = release_with(json!({"id": "01D", "status": "in_progress",
            "rollout": {"fixed": false, "waves": [wave]}, "instances": [host("i-1")]}));
        assert_eq!(
            Progress::of(&canary).line(Duration::ZERO),
            "[0s] 01D in_progress, wave 1: 1 succeeded, 0 failed, the fleet is counted after the canary"
        );
        assert_eq!(Progress::of(&canary).json(Duration::ZERO)["progress"]["pending"], Value::Null);
        assert_eq!(clock(Duration::from_secs(3725)), "1h02m");
    }
}
