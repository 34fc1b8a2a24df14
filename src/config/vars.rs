//! Reading environment variables, each checked where it is read, so every
//! error names the variable to fix.

use super::ConfigError;
use crate::domain::model::rollout::Rate;
use std::ops::RangeInclusive;

/// The variables, through a lookup (the environment, or a map in tests).
pub(super) struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Vars<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    pub(super) fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
    }

    pub(super) fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing(var))
    }

    pub(super) fn or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// An optional AWS name (unset or empty: None): at most `max` bytes of
    /// ASCII letters, digits and `punctuation`; `what` says what it names.
    pub(super) fn optional_name(
        &self,
        var: &'static str,
        max: usize,
        punctuation: &str,
        what: &str,
    ) -> Result<Option<String>, ConfigError> {
        let Some(name) = self.get(var).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let valid =
            name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || punctuation.contains(b as char));
        if !valid {
            let allowed = punctuation.chars().map(String::from).collect::<Vec<_>>().join(" ");
            return Err(invalid(var, format!("{name:?} is not {what} (at most {max} of A-Z a-z 0-9 {allowed})")));
        }
        Ok(Some(name))
    }

    /// A whole number (of seconds, instances, GiB) within `range`.
    pub(super) fn number(
        &self,
        var: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let raw = self.or(var, &default.to_string());
        raw.parse::<u64>().ok().filter(|v| range.contains(v)).ok_or_else(|| {
            invalid(var, format!("{raw:?} is not a whole number from {} to {}", range.start(), range.end()))
        })
    }

    /// A count or a percentage, at least `min`.
    pub(super) fn rate(&self, var: &'static str, default: &str, min: usize) -> Result<Rate, ConfigError> {
        let raw = self.or(var, default);
        Rate::parse(&raw).filter(|r| r.value() >= min).ok_or_else(|| {
            invalid(var, format!("{raw:?} is not a count (e.g. 2) or a percentage (e.g. 25%) of at least {min}"))
        })
    }

    pub(super) fn flag(&self, var: &'static str, default: &str) -> Result<bool, ConfigError> {
        match self.or(var, default).as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(invalid(var, format!("{other:?} is not true or false"))),
        }
    }

    /// One of `choices`.
    pub(super) fn choice(&self, var: &'static str, default: &str, choices: &[&str]) -> Result<String, ConfigError> {
        let raw = self.or(var, default);
        if choices.contains(&raw.as_str()) {
            Ok(raw)
        } else {
            Err(invalid(var, format!("{raw:?} is not one of {}", choices.join(", "))))
        }
    }

    /// `a, b,,c` → `["a", "b", "c"]`.
    pub(super) fn list(&self, var: &str) -> Vec<String> {
        comma_separated(&self.get(var).unwrap_or_default())
    }

    /// A list of AWS ids that all start with `prefix`.
    pub(super) fn ids(&self, var: &'static str, prefix: &str) -> Result<Vec<String>, ConfigError> {
        let items = self.list(var);
        match items.iter().find(|v| !v.starts_with(prefix)) {
            Some(bad) => Err(invalid(var, format!("{bad:?} is not an id starting {prefix}"))),
            None => Ok(items),
        }
    }
}

pub(super) fn invalid(var: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { var, message }
}

pub(super) fn comma_separated(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}
