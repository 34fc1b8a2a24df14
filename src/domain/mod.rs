//! Releases, fleets and their rules, in plain Rust: no AWS types here.

pub mod controller;
#[cfg(test)]
mod fakes;
pub mod flakeref;
pub mod fleet;
pub mod ports;
pub mod progress;
pub mod release;
pub mod repair;
pub mod rollout;
pub mod time;
