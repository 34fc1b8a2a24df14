//! The use cases, thin: admission (`deploy`, `rollback`), an operator's
//! `control` of a rollout (pause, resume, abort), the `reconcile` loop, and
//! the read models. Each builds what the planner needs, loops
//! plan → execute until the planner rests, and answers.

mod admission;
mod control;
mod read;
mod reconcile;

pub use admission::{DeployRequest, RollbackRequest};
pub use read::{FleetStatus, InstanceRelease, RolloutProgress};
pub use reconcile::ReconcileReport;

use super::executor::{invocation_claim, Executor};
use super::model::fleet::FleetSettings;
use super::model::ids::ReleaseId;
use super::model::time::Timestamp;
use super::planner::Pass;
use super::ports::{AlarmWatch, CommandRunner, FleetInventory, Ports, ReleaseStore};

/// One fleet's ports and settings: what every use case runs against.
pub struct FleetController<P: Ports> {
    pub(crate) store: P::Store,
    pub(crate) inventory: P::Inventory,
    pub(crate) runner: P::Runner,
    pub(crate) alarms: P::Alarms,
    pub(crate) settings: FleetSettings,
}

impl<S: ReleaseStore, I: FleetInventory, R: CommandRunner, A: AlarmWatch> FleetController<(S, I, R, A)> {
    pub fn new(store: S, inventory: I, runner: R, alarms: A, settings: FleetSettings) -> Self {
        Self { store, inventory, runner, alarms, settings }
    }
}

impl<P: Ports> FleetController<P> {
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    fn executor(&self) -> Executor<'_, P> {
        Executor {
            store: &self.store,
            inventory: &self.inventory,
            runner: &self.runner,
            alarms: &self.alarms,
            settings: &self.settings,
        }
    }
}

/// One invocation's pass: its claim token and the id of any release it creates.
fn new_pass(now: Timestamp) -> Pass {
    Pass { claim: invocation_claim(now), fresh_id: ReleaseId::generate(now, fastrand::u128(..)) }
}

#[cfg(test)]
pub(crate) mod tests;
