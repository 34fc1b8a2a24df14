//! The narrow interfaces through which the domain reaches the world. Each has
//! one AWS adapter in `crate::aws` and may have in-memory fakes in tests.
//! The values they take and answer are the model's (`model::store`,
//! `model::command`); here are the traits and their errors.

use super::model::command::{ApplyCommand, CommandReport, LaunchRequest};
use super::model::fleet::{FleetInstance, FleetState, ImageSelector, Lease, MachineImage};
use super::model::ids::{FleetName, ReleaseId, TargetTag};
use super::model::outcome::PingStatus;
use super::model::release::Release;
use super::model::store::{Admitted, IdempotencyClaim, Notice, ReleasePage, Settlement, Written};
use super::model::time::Timestamp;
use std::collections::HashMap;
use std::future::Future;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("release store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Other writes kept the store from taking this one (conflicting
    /// transactions, throttling), after bounded retries; nothing was written.
    #[error("release store busy: {0}")]
    Busy(String),
}

pub trait ReleaseStore: Send + Sync {
    /// Records `release`, takes the fleet's `lease` (if no release holds it)
    /// and records the claim (if its key is free at `now`), all or nothing.
    /// A rollback is admitted only while the fleet's desired release is still
    /// the one it `replaces` (else `StoreError::Busy`: read again, and retry). A repair (`desired: false`) takes the lease but
    /// leaves the desired release and any halt as they are.
    /// `notices` are written in the same write.
    fn admit(
        &self,
        release: &Release,
        lease: &Lease,
        claim: Option<&IdempotencyClaim>,
        desired: bool,
        notices: &[Notice],
        now: Timestamp,
    ) -> impl Future<Output = Result<Admitted, StoreError>> + Send;

    fn release(
        &self,
        fleet: &FleetName,
        id: &ReleaseId,
    ) -> impl Future<Output = Result<Option<Release>, StoreError>> + Send;

    /// Newest first, strictly older than `after` when given.
    fn releases(
        &self,
        fleet: &FleetName,
        limit: u32,
        after: Option<&ReleaseId>,
    ) -> impl Future<Output = Result<ReleasePage, StoreError>> + Send;

    /// The newest release older than `before` that is a rollback target
    /// ([`Release::is_rollback_target`]: a deploy or rollback that succeeded).
    fn last_succeeded_before(
        &self,
        fleet: &FleetName,
        before: &ReleaseId,
    ) -> impl Future<Output = Result<Option<Release>, StoreError>> + Send;

    /// The release recorded as replacing `id` (a rollback's `replaces`), if any.
    fn replaced_by(
        &self,
        fleet: &FleetName,
        id: &ReleaseId,
    ) -> impl Future<Output = Result<Option<ReleaseId>, StoreError>> + Send;

    fn fleet_state(&self, fleet: &FleetName) -> impl Future<Output = Result<FleetState, StoreError>> + Send;

    /// Stores a release's progress if nobody wrote it since `expected_version`
    /// and it still holds the fleet's lease (`release.version` is the new one).
    /// `notices` are written in the same write, each an item of its own.
    fn save(
        &self,
        release: &Release,
        expected_version: u64,
        notices: &[Notice],
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// Stores a release's final status if nobody wrote it since
    /// `expected_version`, all or nothing with `fleet`'s changes; those are
    /// made only while the release holds the fleet's lease.
    fn settle(&self, settlement: &Settlement) -> impl Future<Output = Result<Written, StoreError>> + Send;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AlarmError {
    /// CloudWatch does not know these names: the configuration is wrong.
    #[error("CloudWatch has no alarm named {}; fix FLAKEFLEET_ROLLBACK_ALARMS", .0.join(", "))]
    Unknown(Vec<String>),
    #[error("alarm states unavailable: {0}")]
    Unavailable(String),
}

/// The CloudWatch alarms that stop a rollout (FLAKEFLEET_ROLLBACK_ALARMS).
pub trait AlarmWatch: Send + Sync {
    /// Of `names`, those whose state is ALARM now.
    fn firing(&self, names: &[String]) -> impl Future<Output = Result<Vec<String>, AlarmError>> + Send;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    #[error("instance inventory unavailable: {0}")]
    Unavailable(String),
}

pub trait FleetInventory: Send + Sync {
    /// Running instances carrying the fleet's tag: all of them, or at least
    /// `limit` of them (all, if fewer run) when the caller needs only a few.
    fn running_instances(
        &self,
        tag: &TargetTag,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<String>, InventoryError>> + Send;

    /// Every instance carrying the fleet's tag, whatever its state, with its slot and release tags.
    fn fleet_instances(
        &self,
        tag: &TargetTag,
    ) -> impl Future<Output = Result<Vec<FleetInstance>, InventoryError>> + Send;

    /// The newest image matching the selector.
    fn newest_image(
        &self,
        image: &ImageSelector,
    ) -> impl Future<Output = Result<Option<MachineImage>, InventoryError>> + Send;

    /// Launches one instance; answers its id.
    fn launch(&self, request: &LaunchRequest) -> impl Future<Output = Result<String, InventoryError>> + Send;

    /// Records on the instances the release they applied successfully.
    fn tag_release(
        &self,
        instance_ids: &[String],
        release: &ReleaseId,
    ) -> impl Future<Output = Result<(), InventoryError>> + Send;

    /// Forgets the release recorded on the instances: what they run is not
    /// known (a failed apply may have switched them), so the drift repair
    /// puts the good release back on them.
    fn untag_release(&self, instance_ids: &[String]) -> impl Future<Output = Result<(), InventoryError>> + Send;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RunnerError {
    /// The service refused the request: no command exists.
    #[error("command refused: {0}")]
    Rejected(String),
    /// No clear answer: a command may or may not have been started.
    #[error("command service unavailable: {0}")]
    Unavailable(String),
    /// The service refused the request because a named instance is not a
    /// managed node it can send to (SSM's InvalidInstanceId): no command exists.
    #[error("an instance is not a managed node: {0}")]
    NotManaged(String),
}

pub trait CommandRunner: Send + Sync {
    fn send(&self, command: &ApplyCommand) -> impl Future<Output = Result<String, RunnerError>> + Send;

    /// The id of a command with this comment sent after `since`, if any.
    fn find(&self, comment: &str, since: Timestamp)
        -> impl Future<Output = Result<Option<String>, RunnerError>> + Send;

    fn report(&self, command_id: &str) -> impl Future<Output = Result<CommandReport, RunnerError>> + Send;

    /// Asks the service to cancel these instances' invocations of a command.
    /// No guarantee: an invocation already running may finish anyway.
    fn cancel(&self, command_id: &str, instance_ids: &[String])
        -> impl Future<Output = Result<(), RunnerError>> + Send;

    /// Where each of these instances stands as a managed node; an instance
    /// the service does not know is `NotRegistered`.
    fn managed_nodes(
        &self,
        instance_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, PingStatus>, RunnerError>> + Send;
}

/// The four ports one fleet runs against, named once: `FleetController<P>`
/// and `Executor<P>` take a bundle instead of four type parameters. Any
/// tuple `(store, inventory, runner, alarms)` of adapters is one.
pub trait Ports {
    type Store: ReleaseStore;
    type Inventory: FleetInventory;
    type Runner: CommandRunner;
    type Alarms: AlarmWatch;
}

impl<S: ReleaseStore, I: FleetInventory, R: CommandRunner, A: AlarmWatch> Ports for (S, I, R, A) {
    type Store = S;
    type Inventory = I;
    type Runner = R;
    type Alarms = A;
}
