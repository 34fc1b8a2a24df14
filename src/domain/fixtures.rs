//! Values the domain's unit tests share: one fleet, its settings and two releases' flakerefs.

use super::model::flakeref::FlakeAllowlist;
use super::model::fleet::{FleetSettings, FleetSpec, ImageSelector};
use super::model::ids::{FleetName, TargetTag};
use super::model::rollout::{Rate, RolloutMode, RolloutPolicy};
use super::model::time::Timestamp;
use std::time::Duration;

pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
pub const GOOD: &str = "AcmeCorp/infra/=0.1.41#nixosConfigurations.web";
pub const NEXT: &str = "AcmeCorp/infra/=0.1.42#nixosConfigurations.web";

/// What EC2 launches for the test fleet, `capacity` instances over two subnets.
pub fn spec(capacity: usize) -> FleetSpec {
    FleetSpec {
        desired_capacity: capacity,
        instance_type: "t3a.nano".into(),
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        security_groups: vec![],
        instance_profile: "FlakeHubClientMachine".into(),
        image: ImageSelector {
            owner: "535002876703".into(),
            name_pattern: "determinate/nixos/epoch-1/26.05.*".into(),
            architecture: "x86_64".into(),
        },
        root_volume_gib: 16,
    }
}

/// A canary of one, waves of 30%, no failure tolerated.
pub fn policy(mode: RolloutMode, auto_rollback: bool) -> RolloutPolicy {
    RolloutPolicy {
        mode,
        canary: 1,
        wave: Rate::Percent(30),
        failure_threshold: Rate::Count(0),
        auto_rollback,
        unreachable_tolerance: Rate::Count(1),
        pause_before_waves: false,
        max_pause: std::time::Duration::from_secs(86_400),
        bake: std::time::Duration::ZERO,
        alarms: Vec::new(),
    }
}

/// Fleet `prod` on `Name=FlakeHubDemo`: a 600 s deadline, a 120 s takeover
/// window, capacity left alone, only `AcmeCorp/infra` allowed.
pub fn settings(rollout: RolloutPolicy) -> FleetSettings {
    FleetSettings {
        name: FleetName::parse("prod").unwrap(),
        target: TargetTag { key: "Name".into(), value: "FlakeHubDemo".into() },
        deploy_timeout: Duration::from_secs(600),
        idempotency_ttl: Duration::from_secs(3600),
        rollout,
        spec: spec(0),
        takeover_after: Duration::from_secs(120),
        settle_limit: Duration::from_secs(300),
        allowed_flakes: FlakeAllowlist::parse("AcmeCorp/infra").unwrap(),
    }
}
