//! The names of things: value types validated in `parse`, so an invalid
//! value cannot exist past the boundary. Leaf of the domain: imports only time.

use super::time::Timestamp;
use serde::Serialize;
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag keys are 1 to 128 characters, values up to 256")]
pub struct TargetTagError;

impl TargetTag {
    pub fn new(key: String, value: String) -> Result<Self, TargetTagError> {
        let valid = (1..=128).contains(&key.len()) && value.len() <= 256;
        valid.then_some(Self { key, value }).ok_or(TargetTagError)
    }
}

impl fmt::Display for TargetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
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
    fn fleet_names() {
        assert!(FleetName::parse("production").is_ok());
        assert!(FleetName::parse("stg-2").is_ok());
        for bad in ["", "-x", "Prod", "a b", "a#b", &"a".repeat(33)] {
            assert!(FleetName::parse(bad).is_err(), "{bad}");
        }
    }
}
