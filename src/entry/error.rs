//! Errors at the edge: every failure becomes one HTTP status and one
//! `{"error": "<code>", "message": "<what to fix>"}` body, mapped here once.

use crate::api::{ErrorBody, ErrorDetails};
use crate::auth::AuthError;
use crate::domain::error::ControlError;
use crate::domain::planner::reach::TargetRefusal;
use crate::domain::ports::StoreError;
use serde_json::Value;

/// Largest request body accepted, in bytes (after base64 decoding, too).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// What the error names, e.g. the release holding the fleet.
    pub details: Box<ErrorDetails>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Box::default() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn internal() -> Self {
        Self::new(500, "internal_error", "flakefleet could not complete the request; the cause is in its log")
    }

    pub fn body(&self) -> Value {
        let body =
            ErrorBody { error: self.code.to_owned(), message: self.message.clone(), details: (*self.details).clone() };
        serde_json::to_value(body).unwrap_or_default()
    }

    fn with(self, details: ErrorDetails) -> Self {
        Self { details: Box::new(details), ..self }
    }

    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => Self::new(401, "unauthenticated", m),
            AuthError::Forbidden(m) => Self::new(403, "forbidden", m),
            AuthError::Unavailable(m) => Self::new(503, "auth_unavailable", m),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::Busy { holder } => Self::new(409, "deploy_in_flight", message)
                .with(ErrorDetails { active_release_id: Some(holder.to_string()), ..Default::default() }),
            ControlError::IdempotencyConflict { .. } => Self::new(409, "idempotency_conflict", message),
            ControlError::FlakeNotAllowed(_) => Self::new(403, "flake_not_allowed", message),
            ControlError::ReleaseNotFound(_) => Self::new(404, "release_not_found", message),
            ControlError::NoRollbackTarget(_) => Self::new(409, "no_rollback_target", message),
            ControlError::NotARollbackTarget { candidates, .. } => {
                let targets = candidates.iter().map(ToString::to_string).collect();
                Self::new(409, "not_a_rollback_target", message)
                    .with(ErrorDetails { rollback_targets: Some(targets), ..Default::default() })
            }
            ControlError::NotSteerable(_) => Self::new(409, "not_steerable", message),
            ControlError::AlarmActive(names) => {
                Self::new(409, "alarm_active", message).with(ErrorDetails { alarms: Some(names), ..Default::default() })
            }
            ControlError::Targets(TargetRefusal::NotInFleet(ids)) => {
                Self::bad_request("instances_not_in_fleet", message)
                    .with(ErrorDetails { instance_ids: Some(ids), ..Default::default() })
            }
            ControlError::Targets(TargetRefusal::Unreachable(away)) => {
                let away = away.iter().map(Into::into).collect();
                Self::bad_request("instances_unreachable", message)
                    .with(ErrorDetails { unreachable: Some(away), ..Default::default() })
            }
            ControlError::Alarms(_) => {
                tracing::error!(error = %message, "rollback alarms unavailable");
                Self::new(503, "alarms_unavailable", message)
            }
            ControlError::CommandRejected { release, .. } => Self::new(502, "command_rejected", message)
                .with(ErrorDetails { release: Some(Box::new((&*release).into())), ..Default::default() }),
            ControlError::CommandUnconfirmed { release, reason } => {
                tracing::error!(%reason, "apply command unconfirmed");
                Self::new(503, "command_unconfirmed", message)
                    .with(ErrorDetails { release: Some(Box::new((&*release).into())), ..Default::default() })
            }
            ControlError::RecordedThenBusy { release, reason, .. } => {
                tracing::warn!(%reason, "release store busy after the release was recorded");
                Self::new(503, "busy", message)
                    .with(ErrorDetails { release_id: Some(release.to_string()), ..Default::default() })
            }
            ControlError::Store(StoreError::Busy(reason)) => {
                tracing::warn!(%reason, "release store busy");
                let message = "the release store is busy with other writes and this request's write was not \
                     recorded; retry in a few seconds (what was recorded before it stands)";
                Self::new(503, "busy", String::from(message))
            }
            ControlError::Store(_) | ControlError::Inventory(_) | ControlError::Runner(_) => {
                tracing::error!(error = %message, "request failed");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::ids::ReleaseId;
    use crate::domain::model::time::Timestamp;

    /// A busy store answers 503 `busy` either way; once this request recorded
    /// a release, the answer names it and never says nothing was recorded.
    #[test]
    fn a_busy_store_says_what_was_recorded() {
        let plain = ApiError::from(ControlError::Store(StoreError::Busy("TransactionConflict".into())));
        assert_eq!((plain.status, plain.code), (503, "busy"));
        assert_eq!(*plain.details, ErrorDetails::default());
        let id = ReleaseId::generate(Timestamp::from_millis(1_800_000_000_000), 1);
        let recorded = ControlError::RecordedThenBusy { release: id.clone(), sent: true, reason: "conflict".into() };
        let answer = ApiError::from(recorded);
        assert_eq!((answer.status, answer.code), (503, "busy"));
        let body = answer.body();
        assert_eq!(body["release_id"], id.as_str());
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("release {id} is recorded")), "{message}");
        assert!(message.contains("may have gone out") && message.contains("same idempotency_key"), "{message}");
        assert!(!message.contains("nothing was recorded") && !message.contains("conflict"), "{message}");
    }
}
