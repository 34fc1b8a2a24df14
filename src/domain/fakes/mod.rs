//! In-memory ports for the domain's unit tests, a module each: the store,
//! the fleet, the command runner and the alarms. `Yields` is their shared
//! interleaving.

use super::model::command::*;
use super::model::fleet::{FleetInstance, FleetState, Halt, ImageSelector, InstanceState, Lease, MachineImage};
use super::model::ids::{FleetName, ReleaseId, TargetTag};
use super::model::outcome::{InstanceOutcome, InvocationState, PingStatus};
use super::model::release::{Release, ReleaseKind};
use super::model::store::*;
use super::model::time::Timestamp;
use super::ports::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Where concurrent invocations in one test interleave: off by default;
/// seeded, every port call first yields to the other invocations 0 to 2 times,
/// so `join!` of several use cases explores one interleaving per seed.
#[derive(Default)]
pub struct Yields(Mutex<Option<fastrand::Rng>>);

impl Yields {
    /// Interleaves from now on with this seed; `None`: never yields.
    pub fn set(&self, seed: Option<u64>) {
        *self.0.lock().unwrap() = seed.map(fastrand::Rng::with_seed);
    }

    async fn point(&self) {
        let times = self.0.lock().unwrap().as_mut().map_or(0, |rng| rng.usize(0..3));
        for _ in 0..times {
            tokio::task::yield_now().await;
        }
    }
}

mod alarms;
mod fleet;
mod runner;
mod store;

pub use alarms::*;
pub use fleet::*;
pub use runner::*;
pub use store::*;
