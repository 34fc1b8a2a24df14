//! flakefleet: a deploy orchestrator for NixOS fleets on EC2.
//!
//! `domain` holds the rules and knows no AWS; `aws` adapts DynamoDB, EC2 and
//! SSM to the domain's ports; `entry` is the Lambda's thin shell.

pub mod api;
pub mod auth;
pub mod aws;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod domain;
pub mod entry;
pub mod https;
pub mod telemetry;

use auth::jwks::JwksCache;
use auth::oidc::OidcVerifier;
use auth::Gate;
use aws::{CallCounter, CloudWatchAlarms, DynamoReleaseStore, DynamoTokenLedger, Ec2FleetInventory, SsmCommandRunner};
use config::AuthSettings;
use domain::usecases::FleetController;

/// The controller wired to AWS.
pub type AwsFleetController =
    FleetController<(DynamoReleaseStore, Ec2FleetInventory, SsmCommandRunner, CloudWatchAlarms)>;

/// How far apart JWKS fetches are, at least, however many unknown kids arrive.
pub const JWKS_MIN_REFETCH: std::time::Duration = std::time::Duration::from_secs(30);

/// The Lambda's parts, built once per process.
pub struct Service {
    pub controller: AwsFleetController,
    pub gate: Gate<DynamoTokenLedger>,
    pub connections: aws::Connections,
}

/// Builds the controller and the function URL's gate from loaded SDK
/// configuration: called once per process. Every client counts its calls in `calls`.
pub fn aws_service(
    sdk: &aws_config::SdkConfig,
    config: config::Config,
    calls: &CallCounter,
) -> Result<Service, String> {
    // Chosen, not inherited: the standard mode (exponential backoff with
    // jitter, throttling and transient errors only), 3 attempts, for every
    // operation. DynamoDB's cancelled transactions are retried by the store
    // itself (it reads why they were cancelled); SendCommand is retried like
    // the rest until commands are made exactly-once (docs/design.md).
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(aws::AWS_ATTEMPTS);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk).retry_config(retry.clone()).interceptor(calls.clone()).build(),
    );
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(sdk).retry_config(retry.clone()).interceptor(calls.clone()).build(),
    );
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(sdk).retry_config(retry.clone()).interceptor(calls.clone()).build(),
    );
    let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(sdk).retry_config(retry).interceptor(calls.clone()).build(),
    );
    let gate = match config.auth {
        AuthSettings::Iam(allowlist) => Gate::Iam(allowlist),
        AuthSettings::None => Gate::Open,
        AuthSettings::GithubOidc { policy, jwks_url } => Gate::GithubOidc {
            verifier: Box::new(OidcVerifier::new(policy, JwksCache::new(jwks_url, https::client()?, JWKS_MIN_REFETCH))),
            ledger: DynamoTokenLedger::new(dynamodb.clone(), &config.table),
        },
    };
    let connections = aws::Connections::new(dynamodb.clone(), ec2.clone(), ssm.clone(), &config.table);
    let controller = FleetController::new(
        DynamoReleaseStore::new(dynamodb, config.table),
        Ec2FleetInventory::new(ec2),
        SsmCommandRunner::new(ssm, config.ssm),
        CloudWatchAlarms::new(cloudwatch),
        config.fleet,
    );
    Ok(Service { controller, gate, connections })
}
