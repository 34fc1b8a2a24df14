//! Releases, fleets and their rules, in plain Rust: no AWS types here.
//!
//! Layers, each using only those below it:
//! - `model`: the values (ids, flakeref, time, release, rollout, outcome, fleet);
//! - `ports`: the traits through which the domain reaches the world;
//! - `planner`: every decision, pure;
//! - `executor`: carries the planner's steps out through the ports;
//! - `usecases`: deploy, rollback, reconcile and the read models.

/// The release store's contract, run against every store by the tests.
#[cfg(any(test, feature = "test-support"))]
pub mod contract;
pub mod error;
pub mod executor;
#[cfg(test)]
mod fakes;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod model;
pub mod planner;
pub mod ports;
pub mod usecases;
