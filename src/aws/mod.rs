//! AWS adapters for the domain's ports: one per port, each a short translation.

pub mod dynamodb;
pub mod ec2;
pub mod ssm;

pub use dynamodb::DynamoReleaseStore;
pub use ec2::Ec2FleetInventory;
pub use ssm::{SsmCommandRunner, SsmSettings};

use std::error::Error;

/// Renders any SDK error with its service code and message, never a bare
/// "service error".
pub(crate) fn describe<E: Error>(operation: &str, err: &E) -> String {
    format!("{operation}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(err))
}
