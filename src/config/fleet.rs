//! The fleet: its name and tag, how releases roll out, and what the
//! reconcile keeps it at.

use super::vars::{invalid, Vars};
use super::ConfigError;
use crate::domain::model::flakeref::FlakeAllowlist;
use crate::domain::model::fleet::{FleetSettings, FleetSpec, ImageSelector};
use crate::domain::model::ids::{FleetName, TargetTag};
use crate::domain::model::rollout::{RolloutMode, RolloutPolicy};
use std::time::Duration;

pub(super) fn settings(vars: &Vars) -> Result<FleetSettings, ConfigError> {
    let name = FleetName::parse(&vars.or("FLAKEFLEET_FLEET", "default"))
        .map_err(|e| invalid("FLAKEFLEET_FLEET", e.to_string()))?;
    let target = TargetTag::new(
        vars.or("FLAKEFLEET_TARGET_TAG_KEY", "Name"),
        vars.or("FLAKEFLEET_TARGET_TAG_VALUE", "FlakeHubDemo"),
    )
    .map_err(|e| invalid("FLAKEFLEET_TARGET_TAG_KEY", e.to_string()))?;
    let allowed_flakes = FlakeAllowlist::parse(&vars.required("FLAKEFLEET_ALLOWED_FLAKES")?)
        .map_err(|e| invalid("FLAKEFLEET_ALLOWED_FLAKES", e.to_string()))?;
    let seconds = |var, default, range| vars.number(var, default, range).map(Duration::from_secs);
    Ok(FleetSettings {
        name,
        target,
        deploy_timeout: seconds("FLAKEFLEET_DEPLOY_TIMEOUT_SECONDS", 3600, 5..=86_400)?,
        idempotency_ttl: seconds("FLAKEFLEET_IDEMPOTENCY_TTL_SECONDS", 86_400, 60..=2_592_000)?,
        rollout: rollout(vars)?,
        spec: spec(vars)?,
        // Seconds, not minutes, are allowed for tests; the template sets 120.
        takeover_after: seconds("FLAKEFLEET_TAKEOVER_SECONDS", 120, 1..=3600)?,
        allowed_flakes,
        settle_limit: seconds("FLAKEFLEET_SETTLE_SECONDS", 900, 0..=3600)?,
    })
}

fn rollout(vars: &Vars) -> Result<RolloutPolicy, ConfigError> {
    let mode = match vars.choice("FLAKEFLEET_ROLLOUT", "staged", &["staged", "all-at-once"])?.as_str() {
        "staged" => RolloutMode::Staged,
        _ => RolloutMode::AllAtOnce,
    };
    Ok(RolloutPolicy {
        mode,
        canary: vars.number("FLAKEFLEET_CANARY_SIZE", 1, 1..=50)? as usize,
        wave: vars.rate("FLAKEFLEET_WAVE_SIZE", "50%", 1)?,
        failure_threshold: vars.rate("FLAKEFLEET_FAILURE_THRESHOLD", "0", 0)?,
        auto_rollback: vars.flag("FLAKEFLEET_AUTO_ROLLBACK", "true")?,
        // 10% of the fleet, rounded up: at least one host on any fleet (see README).
        unreachable_tolerance: vars.rate("FLAKEFLEET_UNREACHABLE_TOLERANCE", "10%", 0)?,
        pause_before_waves: vars.flag("FLAKEFLEET_PAUSE_BEFORE_WAVES", "false")?,
        max_pause: Duration::from_secs(vars.number("FLAKEFLEET_MAX_PAUSE_SECONDS", 86_400, 60..=604_800)?),
        bake: Duration::from_secs(vars.number("FLAKEFLEET_BAKE_SECONDS", 0, 0..=86_400)?),
        alarms: alarm_names(vars)?,
    })
}

fn spec(vars: &Vars) -> Result<FleetSpec, ConfigError> {
    Ok(FleetSpec {
        desired_capacity: vars.number("FLAKEFLEET_DESIRED_CAPACITY", 0, 0..=10_000)? as usize,
        instance_type: vars.or("FLAKEFLEET_INSTANCE_TYPE", "t3a.nano"),
        subnets: vars.ids("FLAKEFLEET_SUBNET_IDS", "subnet-")?,
        security_groups: vars.ids("FLAKEFLEET_SECURITY_GROUP_IDS", "sg-")?,
        instance_profile: vars.or("FLAKEFLEET_INSTANCE_PROFILE", "FlakeHubClientMachine"),
        image: ImageSelector {
            owner: vars.or("FLAKEFLEET_AMI_OWNER", "535002876703"),
            name_pattern: vars.or("FLAKEFLEET_AMI_NAME_PATTERN", "determinate/nixos/epoch-1/26.05.*"),
            architecture: vars.choice("FLAKEFLEET_AMI_ARCHITECTURE", "x86_64", &["x86_64", "arm64"])?,
        },
        root_volume_gib: vars.number("FLAKEFLEET_ROOT_VOLUME_GIB", 16, 4..=16_384)? as i32,
    })
}

/// EventBridge's limit on a rule's `EventPattern`, in characters.
pub const EVENT_PATTERN_MAX: usize = 4096;

/// The template's `RollbackAlarmRule` pattern for these alarms, as
/// CloudFormation hands it to EventBridge (a test holds the two together):
/// every name is in it, so the names together must fit its limit.
pub fn alarm_rule_pattern(names: &[String]) -> String {
    serde_json::json!({
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": names, "state": {"value": ["ALARM"]}},
    })
    .to_string()
}

/// CloudWatch alarm names: 1 to 255 characters without control characters
/// (CloudWatch's rule), at most 100, no duplicates, and together within the
/// alarm rule's pattern limit.
fn alarm_names(vars: &Vars) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "FLAKEFLEET_ROLLBACK_ALARMS";
    let names = vars.list(VAR);
    if let Some(bad) = names.iter().find(|n| n.chars().count() > 255 || n.chars().any(char::is_control)) {
        return Err(invalid(
            VAR,
            format!("{bad:?} is not a CloudWatch alarm name (1 to 255 characters, no control characters)"),
        ));
    }
    if names.len() > 100 {
        return Err(invalid(VAR, format!("{} alarms named; at most 100", names.len())));
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != names.len() {
        return Err(invalid(VAR, "an alarm is named twice".into()));
    }
    let pattern = alarm_rule_pattern(&names).len();
    if pattern > EVENT_PATTERN_MAX {
        return Err(invalid(
            VAR,
            format!(
                "the alarms' names make the template's RollbackAlarmRule pattern {pattern} characters; \
                 EventBridge takes at most {EVENT_PATTERN_MAX}: name fewer alarms, or combine them in a composite alarm"
            ),
        ));
    }
    Ok(names)
}
