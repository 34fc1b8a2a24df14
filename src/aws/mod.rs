//! AWS adapters for the domain's ports: one per port, each a short translation.

pub mod calls;
pub mod cloudwatch;
pub mod dynamodb;
pub mod ec2;
pub mod ssm;
pub mod warm;

/// Attempts per AWS call (the SDK's standard retry mode, which `crate::aws_service`
/// configures; SendCommand's own throttling retry counts the same).
pub const AWS_ATTEMPTS: u32 = 3;

pub use calls::CallCounter;
pub use cloudwatch::CloudWatchAlarms;
pub use dynamodb::{DynamoReleaseStore, DynamoTokenLedger};
pub use ec2::Ec2FleetInventory;
pub use ssm::{SsmCommandRunner, SsmSettings};
pub use warm::Connections;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::error::Error;

/// Renders any SDK error with its service code and message, never a bare
/// "service error".
pub(crate) fn describe<E: Error>(operation: &str, err: &E) -> String {
    format!("{operation}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(err))
}

/// Describes a failed call (service code and message) and logs it once, as
/// an error of `service`; answers the description for the adapter's error.
pub(crate) fn logged_failure<E: Error>(service: &'static str, operation: &str, err: &E) -> String {
    let text = describe(operation, err);
    tracing::error!(service, error = %text, "AWS call failed");
    text
}

/// Whether the service refused a request outright (a 4xx other than
/// throttling), so nothing was done. Server errors after the SDK's retries,
/// timeouts and transport failures leave open whether something happened.
pub(crate) fn refused<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let throttled = e.code().is_some_and(|c| c.contains("Throttl") || c == "RequestLimitExceeded");
    matches!(e, SdkError::ServiceError(service) if service.raw().status().is_client_error()) && !throttled
}
