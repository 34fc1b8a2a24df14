//! Integration tests against the local AWS (moto and the SSM simulator), in
//! one binary so the SDK is linked once.

mod action;
mod alarms;
mod allowlist;
mod api;
mod auth;
mod browser;
mod calls;
mod cases;
mod cli;
mod crash;
mod deploy;
mod document;
mod events;
mod faults;
mod hosts;
mod lambdas;
mod limits;
mod nodes;
mod notices;
mod once;
mod repair;
mod requests;
mod rollout;
#[path = "../runtime_api/mod.rs"]
mod runtime_api;
mod store;
mod strict;
mod supply;
mod support;
mod template;
mod trace;
mod ui;
mod workflow;
