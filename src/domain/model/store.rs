//! What the release store is asked to write and what it answers: the values
//! of `ports::ReleaseStore`, plain data the planner builds and reads.

use super::fleet::Lease;
use super::ids::{IdempotencyKey, ReleaseId};
use super::release::Release;
use super::time::Timestamp;

/// A caller's idempotency key with the request it first came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: IdempotencyKey,
    /// A canonical rendering of the request, compared on replay.
    pub request: String,
    pub expires_at: Timestamp,
}

/// What the store says to a new release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Recorded, the fleet's lease taken (and for a deploy or rollback, the
    /// release made the desired one).
    Yes,
    /// Nothing was written; each condition that stood in the way, as the store
    /// read it. Which one counts is the domain's rule (`planner::lease::admission`).
    Refused(Vec<AdmitConflict>),
}

/// One condition of an admission that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmitConflict {
    /// The idempotency key is recorded, for this release and request.
    KeyUsed { release_id: ReleaseId, request: String },
    /// Another release holds the fleet (until it is final).
    LeaseHeld { holder: ReleaseId },
    /// A release with this id is recorded already.
    IdTaken,
}

/// The answer to a conditional write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Nothing was written, because of this condition.
    Fenced(Fence),
}

/// Which condition fenced a write off, as the store reports it (DynamoDB:
/// the transaction's `CancellationReasons`), never guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Someone wrote the release since the version this writer read.
    StaleVersion,
    /// The release no longer holds the fleet's lease.
    LeaseLost,
    /// The new release to record exists already.
    AlreadyExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasePage {
    pub releases: Vec<Release>,
    /// Pass as `after` to read the next, older page.
    pub next: Option<ReleaseId>,
}

/// A release's status change, announced on the event bus. It is written in
/// the same write as the change, and the store carries every notice written
/// to the bus (on AWS the table's stream and a pipe: docs/notifications.md),
/// at least once; a notice carried twice keeps its id, so consumers drop
/// duplicates by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `<release id>/<version>`: the release and the write that changed its status.
    pub id: String,
    pub release_id: ReleaseId,
    /// When the change was written.
    pub at: Timestamp,
    /// The event's detail: the release's summary, as JSON.
    pub detail: String,
}

/// A release's final write and its consequences for the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// With its final status and new version.
    pub release: Release,
    pub expected_version: u64,
    /// None: the release alone, the fleet left as it is.
    pub fleet: Option<FleetChange>,
    /// Its status changes (and a handed-over release's), written in the same write.
    pub notices: Vec<Notice>,
}

/// What a settled release changes on the fleet, under its lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetChange {
    /// It succeeded: the fleet's last good release from now on.
    pub last_good: bool,
    /// Halt the fleet with this reason.
    pub halt: Option<String>,
    /// The release that takes the lease over and becomes the desired one (an
    /// automatic rollback), recorded in the same write; otherwise the lease is freed.
    pub next: Option<Handover>,
}

/// A new release taking the fleet over in a settlement's write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    pub release: Release,
    pub lease: Lease,
}
