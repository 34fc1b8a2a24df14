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

/// Where a release was asked for: the CI run (or ticket) a person can open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RunUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run_url must be an https:// URL of at most 512 characters, without spaces or control characters")]
pub struct RunUrlError;

impl RunUrl {
    pub const MAX: usize = 512;

    pub fn parse(raw: &str) -> Result<Self, RunUrlError> {
        let valid = raw.len() <= Self::MAX
            && raw.strip_prefix("https://").is_some_and(|rest| !rest.is_empty())
            && raw.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(raw.to_owned())).ok_or(RunUrlError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a release was asked for, in one line (a commit message's first line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Reason(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reason must be one line of 1 to 200 characters, without control characters")]
pub struct ReasonError;

impl Reason {
    pub const MAX: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ReasonError> {
        let valid = !raw.trim().is_empty() && raw.chars().count() <= Self::MAX && raw.chars().all(Self::shown);
        valid.then(|| Self(raw.to_owned())).ok_or(ReasonError)
    }

    /// A reason flakefleet gives itself, cut to fit.
    pub fn own(text: &str) -> Self {
        let line: String = text.lines().next().unwrap_or_default().chars().filter(|&c| Self::shown(c)).collect();
        let mut cut: String = line.chars().take(Self::MAX).collect();
        if cut.trim().is_empty() {
            cut = "-".into();
        }
        Self(cut)
    }

    /// Shown in terminals and pages: no escape sequences, no bidi overrides.
    fn shown(c: char) -> bool {
        !c.is_control() && !matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
    fn run_urls_and_reasons_have_limits() {
        assert!(RunUrl::parse("https://github.com/acme/infra/actions/runs/42/attempts/1").is_ok());
        for bad in ["http://github.com/x", "https://", "https://a b", "javascript:alert(1)", "https://x\n"] {
            assert_eq!(RunUrl::parse(bad), Err(RunUrlError), "{bad:?}");
        }
        assert!(RunUrl::parse(&format!("https://{}", "a".repeat(504))).is_ok());
        assert!(RunUrl::parse(&format!("https://{}", "a".repeat(505))).is_err());
        assert!(Reason::parse("fix(web): räumt auf 🚀").is_ok());
        assert!(Reason::parse(&"é".repeat(200)).is_ok());
        for bad in ["", "  ", "two\nlines", "bell\u{7}", "\u{1b}[2J", "rtl\u{202E}txt"] {
            assert_eq!(Reason::parse(bad), Err(ReasonError), "{bad:?}");
        }
        assert!(Reason::parse(&"é".repeat(201)).is_err());
        assert_eq!(Reason::own("first\nsecond").as_str(), "first");
        assert_eq!(Reason::own(&"x".repeat(300)).as_str().len(), 200);
    }

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
