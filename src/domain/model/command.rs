//! What is asked of the fleet: apply commands and what the command service
//! reports of them, and instance launches (the values of
//! `ports::CommandRunner` and `ports::FleetInventory`).

use super::flakeref::Flakeref;
use super::fleet::{FleetSpec, MachineImage};
use super::ids::{FleetName, TargetTag};
use super::outcome::InstanceOutcome;

/// Everything RunInstances needs for one instance of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchRequest {
    pub image: MachineImage,
    /// The root volume's size: the configured one, or the image's snapshot if larger.
    pub root_volume_gib: i32,
    pub spec: FleetSpec,
    pub slot: usize,
    pub subnet: Option<String>,
    pub client_token: String,
    /// Plain text; the adapter encodes it.
    pub user_data: String,
    pub tag: TargetTag,
    pub fleet: FleetName,
}

/// Where an apply command goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandTarget {
    /// Every instance carrying the tag, resolved by SSM.
    Tag(TargetTag),
    /// These instances, at most 50.
    Instances(Vec<String>),
}

/// The apply command for one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyCommand {
    pub flakeref: Flakeref,
    pub target: CommandTarget,
    /// Ties the command to its release; see [`Release::command_comment`].
    pub comment: String,
    /// Only run the health checks of the release the hosts run (the
    /// document's `check` action): nothing changes on them.
    pub check_only: bool,
}

/// What the command service reports for one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReport {
    /// Whether the command as a whole reached a terminal status, so the list
    /// of invocations is complete.
    pub finished: bool,
    pub invocations: Vec<InstanceOutcome>,
}
