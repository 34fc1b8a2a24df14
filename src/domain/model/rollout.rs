//! Staged rollouts as recorded: a canary, then waves. The rules that judge
//! them live in the planner.

use super::outcome::InstanceOutcome;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

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

    /// The number as written: a count, or a percentage.
    pub fn value(self) -> usize {
        match self {
            Self::Count(n) | Self::Percent(n) => n,
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

/// As written: `2` or `25%` (the form SSM's MaxConcurrency and MaxErrors take too).
impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
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
    /// Hosts a release may pass over as unreachable (not Online managed
    /// nodes, or never delivered to) before it stops as if it had failed.
    pub unreachable_tolerance: Rate,
    /// Pause before every wave after the canary, for an operator's promote (a resume).
    pub pause_before_waves: bool,
    /// The longest a release may stay paused, all its pauses together; its
    /// deadline is moved out by its pauses up to this much.
    pub max_pause: std::time::Duration,
    /// How long each wave must stay healthy after its last instance reported
    /// Success, before its health checks run again and the next wave starts.
    pub bake: std::time::Duration,
    /// CloudWatch alarms that stop a release while it rolls out or bakes, and
    /// refuse a deploy while one is in ALARM (FLAKEFLEET_ROLLBACK_ALARMS).
    pub alarms: Vec<String>,
}

/// Who claims a piece of work, and when: a token unique to one invocation
/// (so two invocations in the same millisecond never both think they won),
/// and the time its claim starts to lapse from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub by: String,
    pub at: Timestamp,
}

impl Claim {
    pub fn new(by: impl Into<String>, at: Timestamp) -> Self {
        Self { by: by.into(), at }
    }
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

/// A claim as recorded on a release or a wave: the one invocation that may
/// send, and since when. After it lapses, another invocation sends only once
/// it has recorded a claim of its own (a version-fenced write): a takeover,
/// which first looks for what the earlier claimer may have sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    /// When the claim was made (ms since the epoch); it lapses a takeover window later.
    #[serde(default)]
    pub claimed_ms: u64,
    /// The claimer's token, unique to its invocation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claimed_by: String,
    /// Taken over from an earlier claimer that may have sent before it died.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takeover: bool,
}

impl Claimed {
    pub fn new(claim: &Claim, takeover: bool) -> Self {
        Self { claimed_ms: claim.at.millis(), claimed_by: claim.by.clone(), takeover }
    }

    /// Whether this pass holds the claim: by its token, never by its time.
    pub fn held_by(&self, claim: &Claim) -> bool {
        !claim.by.is_empty() && self.claimed_by == claim.by
    }

    /// Whether the claimer must be dead by `now`, so the claim may be taken over.
    pub fn lapsed(&self, now: Timestamp, window: std::time::Duration) -> bool {
        now.millis() >= self.claimed_ms.saturating_add(window.as_millis() as u64)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub instance_ids: Vec<String>,
    /// One per batch of at most [`BATCH`] instances, in order, once sent.
    pub command_ids: Vec<String>,
    /// Who sends the wave's batches.
    #[serde(flatten)]
    pub claim: Claimed,
    /// Set once every instance of the wave reported Success, when the
    /// rollout bakes (FLAKEFLEET_BAKE_SECONDS): the wave must stay healthy
    /// that long, then pass its health checks again, before the next wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
    /// When its first batch was recorded as sent (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// When the planner first judged it: passed (every instance succeeded,
    /// before any bake) or stopped the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_ms: Option<u64>,
}

/// A wave baking: since when it has been healthy, and the health checks run
/// at the end of the bake (the document's `check` action, which changes
/// nothing on a host).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bake {
    /// When the planner first saw every instance of the wave succeed.
    pub healthy_since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
}

/// The end-of-bake check commands of one wave: one per batch, once sent.
/// Unlike applies, a check sent twice is harmless (it changes nothing), so a
/// takeover sends again rather than looking for what was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub command_ids: Vec<String>,
    #[serde(flatten)]
    pub claim: Claimed,
    /// The checks that failed, their output tails included: the release
    /// keeps the hosts' words here, while its reason (and so its notices)
    /// only names the host and the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<InstanceOutcome>,
}

impl Wave {
    pub fn new(instance_ids: Vec<String>, claim: &Claim) -> Self {
        Self { instance_ids, command_ids: Vec::new(), claim: Claimed::new(claim, false), ..Self::default() }
    }

    /// Records one batch's command as sent; the first one dates the wave.
    pub fn record_sent(&mut self, command_id: String, now: Timestamp) {
        self.command_ids.push(command_id);
        self.sent_ms.get_or_insert(now.millis());
    }

    /// Dates the wave's verdict; the first one stands.
    pub fn judged(&mut self, now: Timestamp) {
        self.judged_ms.get_or_insert(now.millis());
    }

    pub fn claimed_by(&self, claim: &Claim) -> bool {
        self.claim.held_by(claim)
    }

    pub fn batches(&self) -> impl Iterator<Item = &[String]> {
        self.instance_ids.chunks(BATCH)
    }

    /// The instances of the batches sent so far.
    pub fn sent_instances(&self) -> impl Iterator<Item = &String> {
        self.batches().take(self.command_ids.len()).flatten()
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

    /// Dates the current wave's verdict (see [`Wave::judged`]).
    pub fn judge_current(&mut self, now: Timestamp) {
        if let Some(wave) = self.waves.last_mut() {
            wave.judged(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("10%").unwrap().floor_of(9), 0);
        assert_eq!(Rate::parse("10%").unwrap().ceil_of(9), 1);
        assert_eq!(Rate::parse("30%").unwrap().ceil_of(10), 3);
        assert_eq!(Rate::parse("2").unwrap().floor_of(100), 2);
        for bad in ["", "%", "101%", "-1", "1.5", "ten"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
        for written in ["0", "50", "25%", "100%"] {
            assert_eq!(Rate::parse(written).unwrap().to_string(), written);
        }
    }

    #[test]
    fn batches_are_at_most_fifty() {
        let wave = Wave::new((0..120).map(|i| format!("i-{i}")).collect(), &Claim::new("a", Timestamp::from_millis(0)));
        let sizes: Vec<usize> = wave.batches().map(<[String]>::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
        assert!(!wave.fully_sent());
    }

    #[test]
    fn a_claim_is_won_by_its_token_not_its_time() {
        let at = Timestamp::from_millis(7);
        let wave = Wave::new(vec!["i-1".into()], &Claim::new("one", at));
        assert!(wave.claimed_by(&Claim::new("one", at)));
        assert!(!wave.claimed_by(&Claim::new("two", at)), "same millisecond, other invocation");
        assert!(!Wave::default().claimed_by(&Claim::new("", at)));
    }
}
