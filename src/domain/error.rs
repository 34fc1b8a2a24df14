//! The domain's one error type, mapped once to an HTTP status or a Lambda
//! error in `crate::entry::error`.

use super::model::flakeref::FlakeNotAllowed;
use super::model::ids::ReleaseId;
use super::model::release::Release;
use super::planner::reach::TargetRefusal;
use super::ports::{AlarmError, InventoryError, RunnerError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("release {holder} is still in flight on this fleet; follow it to its outcome with `flakefleet watch {holder}` (or GET /releases/{holder}) and try again")]
    Busy { holder: ReleaseId },
    #[error("idempotency_key {key:?} was first used with a different request; use a new key for a new request")]
    IdempotencyConflict { key: String },
    #[error(transparent)]
    FlakeNotAllowed(#[from] FlakeNotAllowed),
    #[error("no release {0} on this fleet")]
    ReleaseNotFound(ReleaseId),
    #[error("nothing to roll back to: {0}")]
    NoRollbackTarget(String),
    #[error("release {id} is not a rollback target: {why}; a rollback puts back a deploy or rollback that succeeded fleet-wide{}",
        if candidates.is_empty() { String::from(" (none has on this fleet yet)") } else {
            format!(", such as {}", candidates.iter().map(ReleaseId::as_str).collect::<Vec<_>>().join(", ")) })]
    NotARollbackTarget { id: ReleaseId, why: String, candidates: Vec<ReleaseId> },
    #[error("rollback alarm {} is in ALARM; deploy once it is OK, or ask with \"ignore_alarms\": true (recorded on the release)", .0.join(", "))]
    AlarmActive(Vec<String>),
    #[error(transparent)]
    Alarms(#[from] AlarmError),
    #[error("{}", describe_refusal(.0))]
    Targets(TargetRefusal),
    /// A pause, resume or abort the release's state does not allow.
    #[error("{0}")]
    NotSteerable(String),
    #[error("release {} is recorded as failed: SSM refused its apply command: {reason}", release.id)]
    CommandRejected { release: Box<Release>, reason: String },
    #[error("release {} is recorded but its apply command could not be confirmed; the next reconcile retries it", release.id)]
    CommandUnconfirmed { release: Box<Release>, reason: String },
    /// The release was recorded, but a later write of this request met
    /// other writes: it stands, and the reconcile carries it on.
    #[error("release {release} is recorded, but recording its progress met other writes{}; nothing is lost: the next reconcile carries it on. Follow it with `flakefleet watch {release}` (or GET /releases/{release}); a retry with the same idempotency_key answers it", if *sent { " (its first command may have gone out)" } else { "" })]
    RecordedThenBusy { release: ReleaseId, sent: bool, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

fn describe_refusal(refusal: &TargetRefusal) -> String {
    match refusal {
        TargetRefusal::NotInFleet(ids) => format!(
            "{} is not a running instance of this fleet (its tag); name running instances of the fleet",
            ids.join(", ")
        ),
        TargetRefusal::Unreachable(away) => {
            let names: Vec<String> = away.iter().map(ToString::to_string).collect();
            format!(
                "{} is not an Online SSM managed node; a deploy to named instances must reach every one",
                names.join(", ")
            )
        }
    }
}
