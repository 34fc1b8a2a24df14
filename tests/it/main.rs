//! Integration tests against the local AWS (moto and the SSM simulator), in
//! one binary so the SDK is linked once.

mod allowlist;
mod auth;
mod calls;
mod cases;
mod cli;
mod crash;
mod deploy;
mod document;
mod events;
mod nodes;
mod once;
mod repair;
mod requests;
mod rollout;
mod store;
mod strict;
mod support;
mod template;
mod workflow;
