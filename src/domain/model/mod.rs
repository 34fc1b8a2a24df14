//! The leaf of the domain: the things flakefleet talks about, as plain values.
//! Nothing here imports anything above it, and nothing here decides what
//! happens next (that is the planner's job).
//!
//! Order of dependence, each on those before it only: `time`, `ids`,
//! `flakeref`, `outcome`, `rollout`, `release`, `fleet`, then `store` and
//! `command` (the values the ports take and answer).

pub mod command;
pub mod flakeref;
pub mod fleet;
pub mod ids;
pub mod outcome;
pub mod release;
pub mod rollout;
pub mod store;
pub mod time;
