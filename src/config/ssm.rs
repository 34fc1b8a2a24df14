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
        // CloudWatchOutputConfig's CloudWatchLogGroupName: where the hosts
        // send each command's whole output; unset, nowhere.
        output_log_group: vars.optional_name("FLAKEFLEET_HOST_LOG_GROUP", 512, "._-/#", "a log group name")?,
        // The template's VersionName of the document (SSM: up to 128 of [a-zA-Z0-9_\-.]).
        document_version_name: vars.optional_name(
            "FLAKEFLEET_DOCUMENT_VERSION_NAME",
            128,
            "_-.",
            "a document version name",
        )?,
    })
}
