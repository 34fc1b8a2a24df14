//! flakefleet: a deploy orchestrator for NixOS fleets on EC2.
//!
//! `domain` holds the rules and knows no AWS; `aws` adapts DynamoDB, EC2 and
//! SSM to the domain's ports; `entry` is the Lambda's thin shell.

pub mod aws;
pub mod cli;
pub mod config;
pub mod domain;
pub mod entry;
pub mod telemetry;

use aws::{DynamoReleaseStore, Ec2FleetInventory, SsmCommandRunner};
use domain::controller::FleetController;

/// The controller wired to AWS.
pub type AwsFleetController = FleetController<DynamoReleaseStore, Ec2FleetInventory, SsmCommandRunner>;

/// Builds the controller from loaded SDK configuration: called once per process.
pub fn aws_controller(sdk: &aws_config::SdkConfig, config: config::Config) -> AwsFleetController {
    FleetController::new(
        DynamoReleaseStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table),
        Ec2FleetInventory::new(aws_sdk_ec2::Client::new(sdk)),
        SsmCommandRunner::new(aws_sdk_ssm::Client::new(sdk), config.ssm),
        config.fleet,
    )
}
