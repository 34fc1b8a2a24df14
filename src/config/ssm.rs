//! How the SSM document is invoked.

use super::vars::Vars;
use super::ConfigError;
use crate::aws::SsmSettings;

pub(super) fn settings(vars: &Vars) -> Result<SsmSettings, ConfigError> {
    Ok(SsmSettings {
        document: vars.required("FLAKEFLEET_DOCUMENT")?,
        action: vars.choice("FLAKEFLEET_APPLY_ACTION", "switch", &["switch", "boot", "test", "dry-activate"])?,
        // SSM's MaxConcurrency and MaxErrors: a count or a percentage, as given.
        max_concurrency: vars.rate("FLAKEFLEET_MAX_CONCURRENCY", "50", 1)?.to_string(),
        max_errors: vars.rate("FLAKEFLEET_MAX_ERRORS", "0", 0)?.to_string(),
        delivery_timeout_secs: vars.number("FLAKEFLEET_DELIVERY_TIMEOUT_SECONDS", 600, 30..=2_592_000)? as i32,
        output_log_group: output_log_group(vars)?,
    })
}

/// The CloudWatch Logs group the hosts send each command's whole output to
/// (SSM's `CloudWatchOutputConfig`); unset or empty: none.
fn output_log_group(vars: &Vars) -> Result<Option<String>, ConfigError> {
    const VAR: &str = "FLAKEFLEET_HOST_LOG_GROUP";
    let Some(name) = vars.get(VAR).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    // CloudWatchOutputConfig's CloudWatchLogGroupName: 1 to 512 of these.
    let valid = name.len() <= 512 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
    if !valid {
        return Err(ConfigError::Invalid {
            var: VAR,
            message: format!("{name:?} is not a log group name (at most 512 of A-Z a-z 0-9 . _ - / #)"),
        });
    }
    Ok(Some(name))
}
