//! The HTTP API's contract: every request and response body as a type of
//! its own. The handler encodes these and the CLI decodes them; the domain
//! keeps its own shapes and is mapped here, in one place (`From`), so a
//! field renamed in the domain cannot change what clients read. The JSON
//! Schema of every response, `docs/api/schema.json`, is generated from these
//! types (`api::tests`), and the integration tests validate real answers,
//! the page's script's input and the action's `summary.jq` input against it.

mod fleet;
mod release;

pub use fleet::{Fleet, Halt, InstanceRelease, Lease, Outcome, Reconcile, RolloutProgress, TargetTag};
pub use release::{
    Aborted, Bake, Checks, Claimed, Control, ControlAction, InstanceOutcome, Launch, OperatorAction, Paused, Phase,
    Release, ReleaseHead, ReleaseKind, ReleaseStatus, ReleaseSummary, Rollout, Shape, Stopping, Unreachable, Wave,
};

use serde::{Deserialize, Serialize};

/// `as_str` for the API's enums: the same spelling as their JSON (a test
/// holds the two together).
macro_rules! spelled {
    ($type:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

spelled!(ReleaseKind { Deploy => "deploy", Rollback => "rollback", Repair => "repair", Targeted => "targeted" });
spelled!(ReleaseStatus {
    Pending => "pending",
    InProgress => "in_progress",
    Succeeded => "succeeded",
    Failed => "failed",
    NoInstances => "no_instances",
    RolledBack => "rolled_back",
    Halted => "halted",
});
spelled!(Phase {
    Pending => "pending",
    Launching => "launching",
    Sending => "sending",
    Paused => "paused",
    Judging => "judging",
    Baking => "baking",
    Stopping => "stopping",
    Final => "final",
});
spelled!(Outcome {
    Idle => "idle",
    Halted => "halted",
    Dispatched => "dispatched",
    Waiting => "waiting",
    WaveStarted => "wave_started",
    RolledBack => "rolled_back",
    Finished => "finished",
    Repaired => "repaired",
    Paused => "paused",
});

/// Every error: `{"error": "<code>", "message": "<what to fix>"}`, and
/// what the error names, where it names something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(flatten)]
    pub details: ErrorDetails,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ErrorDetails {
    /// `deploy_in_flight`: the release holding the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_release_id: Option<String>,
    /// `not_a_rollback_target`: the releases a rollback may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_targets: Option<Vec<String>>,
    /// `alarm_active`: the rollback alarms in ALARM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<Vec<String>>,
    /// `instances_not_in_fleet`: the named instances that are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ids: Option<Vec<String>>,
    /// `instances_unreachable`: the named instances that are not Online managed nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<Vec<Unreachable>>,
    /// `command_rejected`, `command_unconfirmed`: the release as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Box<Release>>,
    /// `busy` after the release was recorded: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// `method_not_allowed`: the methods the route takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct Health {
    pub status: String,
    pub fleet: String,
}

/// `POST /releases`, `POST /rollback`, `GET /releases/{id}`, `POST /releases/{id}/pause|resume|abort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ReleaseBody {
    pub release: Release,
}

/// `GET /releases`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ReleasePage {
    pub releases: Vec<ReleaseSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /fleet`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct FleetBody {
    pub fleet: Fleet,
}

/// `POST /reconcile`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "test-support", derive(schemars::JsonSchema))]
pub struct ReconcileBody {
    pub reconcile: Reconcile,
}

/// A release as the API answers it, with `fields` set over a minimal one:
/// what the CLI's and the page's tests read.
#[cfg(test)]
pub fn release_with(fields: serde_json::Value) -> Release {
    let mut release = serde_json::json!({
        "id": "01A", "fleet": "prod", "flakeref": "AcmeCorp/infra/=0.1.42#nixosConfigurations.web",
        "kind": "deploy", "status": "in_progress", "phase": "judging", "shape": "staged", "command_id": null,
        "created_at": "t", "updated_at": "t", "deadline": "t", "instances": [], "version": 1,
    });
    if let (Some(base), serde_json::Value::Object(extra)) = (release.as_object_mut(), fields) {
        base.extend(extra);
    }
    serde_json::from_value(release).expect("a release the API could answer")
}

#[cfg(test)]
mod tests;
