//! A fleet: the machines carrying one tag, and what flakefleet knows of them.

use super::release::ReleaseId;
use super::time::Timestamp;
use serde::Serialize;
use std::fmt;

/// A fleet's name, part of every storage key so fleets can share one table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FleetName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet name must be 1 to 32 characters from a-z, 0-9 and -, starting with a letter or digit")]
pub struct FleetNameError;

impl FleetName {
    pub fn parse(raw: &str) -> Result<Self, FleetNameError> {
        let valid = (1..=32).contains(&raw.len())
            && !raw.starts_with('-')
            && raw.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        valid.then(|| Self(raw.to_owned())).ok_or(FleetNameError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FleetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The EC2 tag that marks the fleet's instances (the demo's is `Name=FlakeHubDemo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetTag {
    pub key: String,
    pub value: String,
}

impl fmt::Display for TargetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// The release that holds the fleet while its command is in flight. Only one
/// release holds it at a time; it lapses at `expires_at` so a lost invocation
/// cannot block the fleet for ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub release_id: ReleaseId,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: Timestamp,
}

impl Lease {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// Why the fleet stopped acting on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Halt {
    pub release_id: ReleaseId,
    pub reason: String,
}

/// The fleet's record: what it should run, what last ran well, who holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetState {
    pub desired_release: Option<ReleaseId>,
    pub last_good_release: Option<ReleaseId>,
    pub lease: Option<Lease>,
    /// Set when a rollback failed (or there was nothing to roll back to):
    /// no automatic action until an operator deploys or rolls back.
    pub halted: Option<Halt>,
}

impl FleetState {
    /// The lease, if it still binds at `now`.
    pub fn live_lease(&self, now: Timestamp) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.is_live(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_names() {
        assert!(FleetName::parse("production").is_ok());
        assert!(FleetName::parse("stg-2").is_ok());
        for bad in ["", "-x", "Prod", "a b", "a#b", &"a".repeat(33)] {
            assert!(FleetName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lease_lapses_at_expiry() {
        let id = ReleaseId::generate(Timestamp::from_millis(1), 1);
        let state = FleetState {
            desired_release: Some(id.clone()),
            lease: Some(Lease { release_id: id, expires_at: Timestamp::from_millis(10) }),
            ..FleetState::default()
        };
        assert!(state.live_lease(Timestamp::from_millis(9)).is_some());
        assert!(state.live_lease(Timestamp::from_millis(10)).is_none());
    }
}
