//! Time as the domain sees it: milliseconds since the Unix epoch, passed in by
//! the caller so that every rule can be tested without a clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(since.as_millis() as u64)
    }

    pub const fn millis(self) -> u64 {
        self.0
    }

    pub const fn secs(self) -> u64 {
        self.0 / 1000
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_millis() as u64))
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_millis() as u64))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T14:35:24.123Z`.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)).to_string()
    }
}

/// For `#[serde(serialize_with = "rfc3339")]`: the API shows times as RFC 3339.
pub fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc_with_millis() {
        let t = Timestamp::from_millis(1_795_704_924_123);
        assert_eq!(t.to_rfc3339(), "2026-11-26T14:55:24.123Z");
        assert_eq!(t.to_string(), t.to_rfc3339());
    }
}
