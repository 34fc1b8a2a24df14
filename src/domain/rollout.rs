//! Staged rollouts: a canary, then waves, each judged before the next starts.
//! Pure rules: the controller feeds them what SSM and EC2 report.

use super::release::InstanceOutcome;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// SendCommand takes at most 50 InstanceIds.
pub const BATCH: usize = 50;

/// A count or a percentage of the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Count(usize),
    Percent(usize),
}

impl Rate {
    pub fn parse(raw: &str) -> Option<Self> {
        let (digits, percent) = match raw.strip_suffix('%') {
            Some(d) => (d, true),
            None => (raw, false),
        };
        if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = digits.parse().ok()?;
        match percent {
            true if n <= 100 => Some(Self::Percent(n)),
            true => None,
            false => Some(Self::Count(n)),
        }
    }

    /// How many instances of `total` this rate allows, rounding down.
    pub fn floor_of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => total * p / 100,
        }
    }

    /// How many instances of `total` this rate names, rounding up, at least one.
    pub fn ceil_of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (total * p).div_ceil(100),
        }
        .max(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutMode {
    /// One command to every instance carrying the fleet tag.
    AllAtOnce,
    /// A canary, then waves sent by instance id.
    Staged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutPolicy {
    pub mode: RolloutMode,
    /// Instances in the canary wave (1 to 50).
    pub canary: usize,
    pub wave: Rate,
    /// Failures tolerated across the rollout before it stops; the canary tolerates none.
    pub failure_threshold: Rate,
    /// Whether a failed deploy puts the last good release back by itself.
    pub auto_rollback: bool,
}

/// The waves of one release, as recorded on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub waves: Vec<Wave>,
    /// Running instances when the rollout was planned past its canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<usize>,
    /// No waves beyond those recorded (an automatic rollback reaches only the
    /// instances the bad release reached).
    #[serde(default)]
    pub fixed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub instance_ids: Vec<String>,
    /// One per batch of at most [`BATCH`] instances, in order, once sent.
    pub command_ids: Vec<String>,
    /// When the wave was claimed for sending (ms since the epoch). Another
    /// invocation finishes sending it only after the claimer must have died.
    #[serde(default)]
    pub claimed_ms: u64,
}

impl Wave {
    pub fn new(instance_ids: Vec<String>, claimed_ms: u64) -> Self {
        Self { instance_ids, command_ids: Vec::new(), claimed_ms }
    }

    pub fn batches(&self) -> impl Iterator<Item = &[String]> {
        self.instance_ids.chunks(BATCH)
    }

    pub fn fully_sent(&self) -> bool {
        self.command_ids.len() == self.instance_ids.len().div_ceil(BATCH)
    }
}

impl Rollout {
    pub fn targeted(&self) -> impl Iterator<Item = &String> {
        self.waves.iter().flat_map(|w| w.instance_ids.iter())
    }

    pub fn current(&self) -> Option<&Wave> {
        self.waves.last()
    }
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
    let failed_overall = outcomes.iter().filter(|o| o.is_finished() && !o.converged()).count();
    let failed_in_wave = wave_outcomes.iter().filter(|o| o.is_finished() && !o.converged()).count();
    let finished = wave.fully_sent()
        && wave_outcomes.len() == wave.instance_ids.len()
        && wave_outcomes.iter().all(|o| o.is_finished());

    if rollout.waves.len() == 1 && failed_in_wave > 0 {
        return WaveVerdict::Stop(format!("the first wave failed on {failed_in_wave} of {} instances", in_wave.len()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(threshold: &str) -> RolloutPolicy {
        RolloutPolicy {
            mode: RolloutMode::Staged,
            canary: 1,
            wave: Rate::parse("30%").unwrap(),
            failure_threshold: Rate::parse(threshold).unwrap(),
            auto_rollback: true,
        }
    }

    fn outcome(id: &str, status: &str) -> InstanceOutcome {
        InstanceOutcome {
            instance_id: id.into(),
            status: status.into(),
            detail: status.into(),
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        }
    }

    fn sent(ids: &[&str]) -> Wave {
        Wave {
            instance_ids: ids.iter().map(|s| s.to_string()).collect(),
            command_ids: vec!["c".into(); ids.len().div_ceil(BATCH)],
            claimed_ms: 0,
        }
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("10%").unwrap().floor_of(9), 0);
        assert_eq!(Rate::parse("10%").unwrap().ceil_of(9), 1);
        assert_eq!(Rate::parse("30%").unwrap().ceil_of(10), 3);
        assert_eq!(Rate::parse("2").unwrap().floor_of(100), 2);
        for bad in ["", "%", "101%", "-1", "1.5", "ten"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_canary_failure_stops_at_once() {
        let rollout = Rollout { waves: vec![sent(&["i-1"])], ..Rollout::default() };
        let v = judge_wave(&rollout, &[outcome("i-1", "Failed")], &policy("50%"));
        assert!(matches!(v, WaveVerdict::Stop(r) if r.contains("first wave")));
    }

    #[test]
    fn waves_pass_only_when_every_instance_answered() {
        let rollout =
            Rollout { waves: vec![sent(&["i-0"]), sent(&["i-1", "i-2"])], fleet_size: Some(10), fixed: false };
        let mut outcomes = vec![outcome("i-0", "Success"), outcome("i-1", "Success")];
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Running);
        outcomes.push(outcome("i-2", "InProgress"));
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Running);
        outcomes[2] = outcome("i-2", "Success");
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("0")), WaveVerdict::Passed);
    }

    #[test]
    fn the_threshold_counts_failures_across_waves() {
        let rollout =
            Rollout { waves: vec![sent(&["i-0"]), sent(&["i-1", "i-2", "i-3"])], fleet_size: Some(10), fixed: false };
        let outcomes = [outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "Success")];
        // 10% of 10 tolerates one failure.
        assert_eq!(judge_wave(&rollout, &outcomes, &policy("10%")), WaveVerdict::Running);
        let outcomes = [outcome("i-0", "Success"), outcome("i-1", "Failed"), outcome("i-2", "TimedOut")];
        assert!(matches!(judge_wave(&rollout, &outcomes, &policy("10%")), WaveVerdict::Stop(_)));
    }

    #[test]
    fn next_waves_cover_the_rest_of_the_fleet_once() {
        let running: Vec<String> = (0..10).map(|i| format!("i-{i}")).collect();
        let mut rollout = Rollout { waves: vec![sent(&["i-4"])], fleet_size: Some(10), fixed: false };
        let mut seen = vec!["i-4".to_string()];
        loop {
            let wave = next_wave(&rollout, &running, &policy("0"));
            if wave.is_empty() {
                break;
            }
            assert!(wave.len() <= 3);
            assert!(wave.iter().all(|i| !seen.contains(i)));
            seen.extend(wave.iter().cloned());
            rollout.waves.push(Wave::new(wave, 0));
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
    fn batches_are_at_most_fifty() {
        let wave = Wave::new((0..120).map(|i| format!("i-{i}")).collect(), 0);
        let sizes: Vec<usize> = wave.batches().map(<[String]>::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
        assert!(!wave.fully_sent());
    }
}
