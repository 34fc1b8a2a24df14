//! What a caller can ask for, whichever trigger carried it, and the JSON each
//! answer is encoded to.

use super::error::ApiError;
use crate::api;
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::ids::{IdempotencyKey, Reason, ReleaseId, Revision, RunUrl};
use crate::domain::model::release::{Origin, Release};
use crate::domain::model::rollout::BATCH;
use crate::domain::model::time::Timestamp;
use crate::domain::planner::control::ControlRequest;
use crate::domain::ports::Ports;
use crate::domain::usecases::{DeployRequest, FleetController, RollbackRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[derive(Debug)]
pub enum Operation {
    Health,
    Deploy(DeployRequest),
    Rollback(RollbackRequest),
    ListReleases {
        limit: u32,
        after: Option<ReleaseId>,
    },
    GetRelease(ReleaseId),
    FleetStatus,
    Reconcile,
    /// Pause, resume or abort a release's rollout; `by`: who asked (the
    /// authenticated principal, or "direct invoke").
    Control {
        id: ReleaseId,
        request: ControlRequest,
        by: String,
    },
}

impl Operation {
    /// Records who asks: on a control action, and on the release a deploy or
    /// rollback records.
    pub fn asked_by(&mut self, who: &str) {
        match self {
            Self::Control { by, .. } => who.clone_into(by),
            Self::Deploy(DeployRequest { origin, .. }) | Self::Rollback(RollbackRequest { origin, .. }) => {
                origin.requested_by = Some(who.to_owned());
            }
            _ => {}
        }
    }

    /// Where the release id is known before the domain runs, for the log span.
    pub fn release_id(&self) -> Option<&ReleaseId> {
        match self {
            Self::GetRelease(id) | Self::Control { id, .. } => Some(id),
            Self::Rollback(RollbackRequest { target: Some(id), .. }) => Some(id),
            _ => None,
        }
    }
}

/// `POST /releases` and `{"action": "deploy", ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    pub flakeref: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Deploy even while a rollback alarm is in ALARM.
    #[serde(default)]
    pub ignore_alarms: bool,
    /// Deploy to these instances of the fleet only.
    #[serde(default)]
    pub instance_ids: Option<Vec<String>>,
    /// The CI run that asked (https, at most 512 characters).
    #[serde(default)]
    pub run_url: Option<String>,
    /// Why, in one line of at most 200 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /rollback` and `{"action": "rollback", ...}`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    #[serde(default)]
    pub release_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub run_url: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /releases/{id}/abort` (the body optional) and `{"action": "abort", "release_id": ...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortBody {
    /// Roll back what the release reached even with automatic rollback off.
    #[serde(default)]
    pub rollback: bool,
}

/// `POST /releases/{id}/pause|resume|abort`: the request, from the route's
/// last segment and the body (only an abort takes a field).
pub fn control_request(verb: &str, body: Option<Value>) -> Result<ControlRequest, ApiError> {
    match (verb, body) {
        ("abort", None) => Ok(ControlRequest::Abort { rollback: false }),
        ("abort", Some(body)) => {
            Ok(ControlRequest::Abort { rollback: decode::<AbortBody>(body, ABORT_SHAPE)?.rollback })
        }
        (_, Some(Value::Object(fields))) if !fields.is_empty() => {
            let keys: Vec<&String> = fields.keys().collect();
            Err(ApiError::bad_request("invalid_json", format!("{verb} takes no fields, got {keys:?}")))
        }
        ("pause", _) => Ok(ControlRequest::Pause),
        ("resume", _) => Ok(ControlRequest::Resume),
        _ => unreachable!("the routes name pause, resume and abort only"),
    }
}

impl DeployBody {
    pub fn into_operation(self) -> Result<Operation, ApiError> {
        let flakeref =
            Flakeref::parse(&self.flakeref).map_err(|e| ApiError::bad_request("invalid_flakeref", e.to_string()))?;
        let revision = self
            .revision
            .map(|r| Revision::parse(&r).map_err(|e| ApiError::bad_request("invalid_revision", e.to_string())))
            .transpose()?;
        Ok(Operation::Deploy(DeployRequest {
            flakeref,
            revision,
            idempotency_key: idempotency_key(self.idempotency_key)?,
            ignore_alarms: self.ignore_alarms,
            instance_ids: self.instance_ids.map(instance_ids).transpose()?,
            origin: origin(self.run_url, self.reason)?,
        }))
    }
}

impl RollbackBody {
    pub fn into_operation(self) -> Result<Operation, ApiError> {
        let target = self.release_id.map(|id| release_id(&id)).transpose()?;
        Ok(Operation::Rollback(RollbackRequest {
            target,
            idempotency_key: idempotency_key(self.idempotency_key)?,
            origin: origin(self.run_url, self.reason)?,
        }))
    }
}

/// Where a request came from, as its body says; who sent it is added once
/// the caller is known.
fn origin(run_url: Option<String>, reason: Option<String>) -> Result<Origin, ApiError> {
    Ok(Origin {
        requested_by: None,
        run_url: run_url
            .map(|u| RunUrl::parse(&u).map_err(|e| ApiError::bad_request("invalid_run_url", e.to_string())))
            .transpose()?,
        reason: reason
            .map(|r| Reason::parse(&r).map_err(|e| ApiError::bad_request("invalid_reason", e.to_string())))
            .transpose()?,
    })
}

/// The instances a deploy to named instances goes to: 1 to 50 EC2 instance
/// ids (SendCommand's limit), each once.
fn instance_ids(ids: Vec<String>) -> Result<Vec<String>, ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid_instance_ids", why);
    if ids.is_empty() || ids.len() > BATCH {
        return Err(bad(format!("instance_ids names 1 to {BATCH} instances, got {}", ids.len())));
    }
    let valid = |id: &String| {
        id.strip_prefix("i-").is_some_and(|hex| {
            (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    if let Some(id) = ids.iter().find(|id| !valid(id)) {
        return Err(bad(format!("{id:?} is not an EC2 instance id (i- and 8 or 17 lowercase hex digits)")));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(bad("an instance is named twice in instance_ids".into()));
    }
    Ok(ids)
}

fn idempotency_key(raw: Option<String>) -> Result<Option<IdempotencyKey>, ApiError> {
    raw.map(|k| IdempotencyKey::parse(&k).map_err(|e| ApiError::bad_request("invalid_idempotency_key", e.to_string())))
        .transpose()
}

pub fn release_id(raw: &str) -> Result<ReleaseId, ApiError> {
    ReleaseId::parse(raw).map_err(|e| ApiError::bad_request("invalid_release_id", e.to_string()))
}

pub fn page_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => raw.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("limit must be a whole number from 1 to {MAX_PAGE}, got {raw:?}"),
            )
        }),
    }
}

/// Parses JSON into `T`, with a message that names what is wrong.
pub fn decode<T: for<'de> Deserialize<'de>>(json: Value, expected: &str) -> Result<T, ApiError> {
    serde_json::from_value(json).map_err(|e| ApiError::bad_request("invalid_json", format!("{e}; expected {expected}")))
}

pub const DEPLOY_SHAPE: &str = r#"{"flakeref": "<org>/<flake>/=<version>#<attribute path>", "revision": "<git sha>" (optional), "idempotency_key": "<string>" (optional), "ignore_alarms": true | false (optional), "instance_ids": ["i-…", …] (optional, at most 50), "run_url": "https://…" (optional), "reason": "<one line>" (optional)}"#;
pub const ABORT_SHAPE: &str = r#"{"rollback": true | false (optional)}"#;
pub const ROLLBACK_SHAPE: &str = r#"{"release_id": "<release id>" (optional), "idempotency_key": "<string>" (optional), "run_url": "https://…" (optional), "reason": "<one line>" (optional)}"#;

/// Runs one operation; answers with an HTTP status and a JSON body, one of
/// the API's types (`crate::api`).
pub async fn perform<P: Ports>(
    controller: &FleetController<P>,
    operation: Operation,
    now: Timestamp,
) -> Result<(u16, Value), ApiError> {
    let release = |release: &Release| api::ReleaseBody { release: release.into() };
    Ok(match operation {
        Operation::Health => {
            (200, encode(api::Health { status: "ok".into(), fleet: controller.settings().name.to_string() }))
        }
        Operation::Deploy(request) => (202, encode(release(&controller.deploy(request, now).await?))),
        Operation::Rollback(request) => (202, encode(release(&controller.rollback(request, now).await?))),
        Operation::ListReleases { limit, after } => {
            let page = controller.releases(limit, after.as_ref()).await?;
            // Listings count outcomes and waves, so a page of releases of a
            // 10,000-instance fleet stays far below a function URL's 6 MB
            // answer; `GET /releases/{id}` has the rest.
            let releases = page.releases.iter().map(Into::into).collect();
            (200, encode(api::ReleasePage { releases, next_cursor: page.next.map(|id| id.to_string()) }))
        }
        Operation::GetRelease(id) => {
            let view = controller.release_view(&id).await?;
            let mut body = release(&view.release);
            body.release.rolled_back_by = view.rolled_back_by.map(|id| id.to_string());
            (200, encode(body))
        }
        Operation::FleetStatus => (200, encode(api::FleetBody { fleet: (&controller.status(now).await?).into() })),
        Operation::Reconcile => {
            (200, encode(api::ReconcileBody { reconcile: (&controller.reconcile(now).await?).into() }))
        }
        Operation::Control { id, request, by } => {
            (200, encode(release(&controller.control(&id, request, &by, now).await?)))
        }
    })
}

fn encode<T: Serialize>(body: T) -> Value {
    serde_json::to_value(body).unwrap_or_default()
}
