//! Releases: what was asked for, when, and how it ended on each instance.

use super::flakeref::Flakeref;
use super::fleet::FleetName;
use super::repair::Launch;
use super::rollout::Rollout;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A release id: a ULID (48 bits of milliseconds, 80 random bits) in
/// Crockford base32, so ids sort by creation time and never collide.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ReleaseId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "release id must be 26 characters of Crockford base32 (0-9, A-Z without I, L, O, U), as returned by POST /releases"
)]
pub struct ReleaseIdError;

impl ReleaseId {
    pub fn generate(now: Timestamp, random: u128) -> Self {
        let value: u128 = (u128::from(now.millis() & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
        let text = (0..26).rev().map(|i| CROCKFORD[((value >> (i * 5)) & 0x1F) as usize] as char).collect();
        Self(text)
    }

    pub fn parse(raw: &str) -> Result<Self, ReleaseIdError> {
        let valid = raw.len() == 26 && raw.as_bytes()[0] <= b'7' && raw.bytes().all(|b| CROCKFORD.contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ReleaseIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The git commit a release was built from, as CI knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Revision(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revision must be a git commit sha: 7 to 64 lowercase hex characters")]
pub struct RevisionError;

impl Revision {
    pub fn parse(raw: &str) -> Result<Self, RevisionError> {
        let valid = (7..=64).contains(&raw.len()) && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(raw.to_owned())).ok_or(RevisionError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A caller's key that makes a retried request return the first answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency_key must be 1 to 128 characters from A-Z a-z 0-9 and . _ : / + = -")]
pub struct IdempotencyKeyError;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        let valid =
            (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/+=-".contains(&b));
        valid.then(|| Self(raw.to_owned())).ok_or(IdempotencyKeyError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    Deploy,
    Rollback,
    /// The reconcile putting the fleet's good release back where it is missing or drifted.
    Repair,
}

impl ReleaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::Repair => "repair",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "deploy" => Some(Self::Deploy),
            "rollback" => Some(Self::Rollback),
            "repair" => Some(Self::Repair),
            _ => None,
        }
    }
}

/// Where a release stands. `pending` means recorded but the apply command is
/// not yet confirmed sent; every status after `in_progress` is final:
/// `rolled_back` (failed, and an automatic rollback took over the fleet) and
/// `halted` (failed with nothing safe to go back to: the fleet waits for an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    NoInstances,
    RolledBack,
    Halted,
}

impl ReleaseStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::NoInstances,
        Self::RolledBack,
        Self::Halted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NoInstances => "no_instances",
            Self::RolledBack => "rolled_back",
            Self::Halted => "halted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }
}

/// How one instance answered a release's command, as SSM reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceOutcome {
    pub instance_id: String,
    /// SSM's invocation `Status` (Pending, InProgress, Delayed, Success, ...).
    pub status: String,
    /// SSM's `StatusDetails`, which tells Undeliverable and timeouts apart.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of the step's standard output (kept for instances that did not converge).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    /// The end of the step's standard error (fetched for instances that failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
}

impl InstanceOutcome {
    /// Terminal invocation statuses. Anything unknown is treated as still running
    /// until the deadline, and never as a success.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "Success" | "Failed" | "TimedOut" | "Cancelled")
    }

    pub fn converged(&self) -> bool {
        self.status == "Success"
    }
}

/// Failed instances whose output a release keeps; SSM keeps all of it.
pub const OUTPUTS_KEPT: usize = 50;

/// Keeps output only where it explains something: for at most [`OUTPUTS_KEPT`]
/// instances that did not converge. A release of 10,000 instances then stays
/// small enough to store and read on every reconcile.
pub fn trim_outputs(instances: &mut [InstanceOutcome]) {
    let mut kept = 0;
    for outcome in instances {
        let explains = !outcome.converged() && kept < OUTPUTS_KEPT;
        if explains {
            kept += usize::from(!outcome.stdout_tail.is_empty() || !outcome.stderr_tail.is_empty());
        } else {
            outcome.stdout_tail.clear();
            outcome.stderr_tail.clear();
        }
    }
}

/// One request to put a flakeref on the fleet. Its identity (id, fleet,
/// flakeref, kind, creation time) never changes once recorded; only its
/// progress does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    pub id: ReleaseId,
    pub fleet: FleetName,
    pub flakeref: Flakeref,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    pub kind: ReleaseKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<ReleaseId>,
    pub status: ReleaseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub command_id: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: Timestamp,
    /// When the fleet's lease taken for this release runs out.
    #[serde(serialize_with = "rfc3339")]
    pub deadline: Timestamp,
    pub instances: Vec<InstanceOutcome>,
    /// The waves of a staged rollout; None when the command targets the fleet tag at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// For a repair: the instances it asked EC2 to launch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<Launch>,
    /// Raised by every write: the fencing number that lets only one writer move
    /// a release on from what it read.
    pub version: u64,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

impl Release {
    /// The SSM `Comment` that ties a command to its release (at most 100 characters),
    /// so a command sent before a crash can be found again.
    pub fn command_comment(&self) -> String {
        format!("flakefleet {} release {}", self.fleet, self.id)
    }

    /// The comment of one batch of one wave of a staged rollout.
    pub fn batch_comment(&self, wave: usize, batch: usize) -> String {
        format!("flakefleet {} release {} wave {wave} batch {batch}", self.fleet, self.id)
    }

    /// Every instance this release's commands were sent to, as far as recorded.
    pub fn reached_instances(&self) -> Vec<String> {
        let mut ids: Vec<String> = match &self.rollout {
            Some(rollout) => rollout.targeted().cloned().collect(),
            None => self.instances.iter().map(|i| i.instance_id.clone()).collect(),
        };
        ids.sort();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_parse_back() {
        let a = ReleaseId::generate(Timestamp::from_millis(1_000), u128::MAX);
        let b = ReleaseId::generate(Timestamp::from_millis(1_001), 0);
        assert!(a < b);
        assert_eq!(ReleaseId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), 26);
    }

    #[test]
    fn refuses_ids_that_are_not_ulids() {
        for bad in [
            "",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "01ARZ3NDEKTSV4RRFFQ69G5FAI",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01arz3ndektsv4rrffq69g5fav",
        ] {
            assert!(ReleaseId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comment_fits_ssm_limit() {
        let fleet = FleetName::parse(&"f".repeat(32)).unwrap();
        let id = ReleaseId::generate(Timestamp::from_millis(u64::MAX), u128::MAX);
        let comment = format!("flakefleet {fleet} release {id} wave 9999 batch 9999");
        assert!(comment.len() <= 100, "{}", comment.len());
    }

    #[test]
    fn output_is_kept_for_a_bounded_number_of_failures_only() {
        let outcome = |n: usize, status: &str| InstanceOutcome {
            instance_id: format!("i-{n:05}"),
            status: status.into(),
            detail: status.into(),
            exit_code: Some(i32::from(status != "Success")),
            stdout_tail: "out".into(),
            stderr_tail: "err".into(),
        };
        let mut instances: Vec<InstanceOutcome> =
            (0..200).map(|n| outcome(n, if n % 2 == 0 { "Success" } else { "Failed" })).collect();
        trim_outputs(&mut instances);
        assert!(instances.iter().filter(|i| i.converged()).all(|i| i.stdout_tail.is_empty()));
        let with_output = instances.iter().filter(|i| !i.stdout_tail.is_empty()).count();
        assert_eq!(with_output, OUTPUTS_KEPT);
        assert!(instances[..2 * OUTPUTS_KEPT].iter().filter(|i| !i.converged()).all(|i| i.stderr_tail == "err"));
    }

    #[test]
    fn status_names_round_trip() {
        for s in ReleaseStatus::ALL {
            assert_eq!(ReleaseStatus::parse(s.as_str()), Some(s));
        }
    }
}
