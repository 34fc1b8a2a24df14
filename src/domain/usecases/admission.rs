//! Admission: a deploy or a rollback is recorded under the fleet's lease and
//! its first command sent, or refused with nothing written.

use super::{new_pass, FleetController};
use crate::domain::error::ControlError;
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::ids::{IdempotencyKey, ReleaseId, Revision};
use crate::domain::model::release::{Origin, Release, ReleaseKind, ReleaseStatus};
use crate::domain::model::rollout::Claimed;
use crate::domain::model::store::IdempotencyClaim;
use crate::domain::model::time::Timestamp;
use crate::domain::planner::lease::{alarms_at_admission, becomes_desired, Admission};
use crate::domain::planner::reach::check_targets;
use crate::domain::planner::{new_release, targeted_release, Observed, Pass, PassLog};
use crate::domain::ports::{Ports, StoreError};
use tracing::{info, warn};

/// How many rollback targets a refused rollback names.
const ROLLBACK_CANDIDATES: usize = 3;

#[derive(Clone, Debug)]
pub struct DeployRequest {
    pub flakeref: Flakeref,
    pub revision: Option<Revision>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Deploy even while rollback alarms are in ALARM (a fix for what fires
    /// them); those alarms are recorded on the release and never stop it.
    pub ignore_alarms: bool,
    /// Deploy to these instances only (at most 50): a `targeted` release.
    pub instance_ids: Option<Vec<String>>,
    pub origin: Origin,
}

#[derive(Clone, Debug)]
pub struct RollbackRequest {
    /// None: the last release that succeeded before the fleet's current one.
    pub target: Option<ReleaseId>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub origin: Origin,
}

impl<P: Ports> FleetController<P> {
    /// Records a release of `request.flakeref` and sends its first command.
    pub async fn deploy(&self, request: DeployRequest, now: Timestamp) -> Result<Release, ControlError> {
        self.settings.allowed_flakes.check(&request.flakeref)?;
        let fingerprint = format!(
            "deploy {} {}{}",
            request.flakeref,
            request.revision.as_ref().map_or("-", Revision::as_str),
            request.instance_ids.as_ref().map(|ids| format!(" on {}", ids.join(","))).unwrap_or_default()
        );
        if let Some(ids) = &request.instance_ids {
            let (running, nodes) = self.executor().targets(ids).await?;
            check_targets(ids, &running, &nodes).map_err(ControlError::Targets)?;
        }
        let firing = self.executor().firing_alarms().await?;
        let ignored = alarms_at_admission(firing, request.ignore_alarms).map_err(ControlError::AlarmActive)?;
        let pass = new_pass(now);
        let mut release = match request.instance_ids {
            Some(ids) => targeted_release(&self.settings, request.flakeref, request.revision, ids, &pass),
            None => new_release(
                &self.settings,
                pass.fresh_id.clone(),
                request.flakeref,
                request.revision,
                ReleaseKind::Deploy,
                None,
                now,
            ),
        };
        release.ignored_alarms = ignored;
        release.origin = request.origin;
        self.start(release, request.idempotency_key, fingerprint, &pass).await
    }

    /// Records a new release that applies an earlier release's flakeref again,
    /// in place of the fleet's desired release (which it names in `replaces`).
    /// The earlier releases' records are left as they are.
    pub async fn rollback(&self, request: RollbackRequest, now: Timestamp) -> Result<Release, ControlError> {
        let fingerprint = format!("rollback {}", request.target.as_ref().map_or("last-succeeded", ReleaseId::as_str));
        let current = self.executor().fleet_state().await?.desired_release;
        let target = self.rollback_target(request.target.as_ref(), current.as_ref()).await?;
        self.settings.allowed_flakes.check(&target.flakeref)?;
        let pass = new_pass(now);
        let mut release = new_release(
            &self.settings,
            pass.fresh_id.clone(),
            target.flakeref,
            target.revision,
            ReleaseKind::Rollback,
            Some(target.id),
            now,
        );
        release.replaces = current;
        release.origin = request.origin;
        self.start(release, request.idempotency_key, fingerprint, &pass).await
    }

    /// The named release, or the last success before the fleet's current one.
    async fn rollback_target(
        &self,
        named: Option<&ReleaseId>,
        current: Option<&ReleaseId>,
    ) -> Result<Release, ControlError> {
        let executor = self.executor();
        if let Some(id) = named {
            let release = executor.release(id).await?;
            if release.is_rollback_target() {
                return Ok(release);
            }
            // Still in flight: the fleet is busy with it, which is what to say.
            if matches!(release.status, ReleaseStatus::Pending | ReleaseStatus::InProgress) {
                return Err(ControlError::Busy { holder: release.id });
            }
            let why = match release.kind {
                ReleaseKind::Targeted => "it was deployed to named instances only".to_owned(),
                ReleaseKind::Repair => "it is a drift repair, which put an earlier release back".to_owned(),
                _ => format!("it ended {}", release.status.as_str()),
            };
            let candidates = self.rollback_targets(ROLLBACK_CANDIDATES).await?;
            return Err(ControlError::NotARollbackTarget { id: id.clone(), why, candidates });
        }
        let current = current.ok_or_else(|| ControlError::NoRollbackTarget("the fleet has no release yet".into()))?;
        executor.last_succeeded_before(current).await?.ok_or_else(|| {
            ControlError::NoRollbackTarget(format!(
                "no release succeeded before the current one ({current}); name one with release_id"
            ))
        })
    }

    /// The newest rollback targets, at most `count`, from at most a few pages of history.
    async fn rollback_targets(&self, count: usize) -> Result<Vec<ReleaseId>, ControlError> {
        let executor = self.executor();
        let (mut found, mut after) = (Vec::new(), None);
        for _ in 0..4 {
            let page = executor.releases(25, after.as_ref()).await?;
            found.extend(page.releases.iter().filter(|r| r.is_rollback_target()).map(|r| r.id.clone()));
            match page.next {
                Some(next) if found.len() < count => after = Some(next),
                _ => break,
            }
        }
        found.truncate(count);
        Ok(found)
    }

    async fn start(
        &self,
        mut release: Release,
        key: Option<IdempotencyKey>,
        fingerprint: String,
        pass: &Pass,
    ) -> Result<Release, ControlError> {
        let now = pass.now();
        // This invocation sends the first command; another takes over only
        // after it must have died, and only by recording a claim of its own.
        release.claim = Some(Claimed::new(&pass.claim, false));
        let claim = key.map(|key| IdempotencyClaim {
            key,
            request: fingerprint,
            expires_at: now.plus(self.settings.idempotency_ttl),
        });
        let executor = self.executor();
        let desired = becomes_desired(&release);
        let mut admission = executor.admit(&mut release, claim.as_ref(), desired, now).await?;
        if let Admission::Busy { holder } = &admission {
            // The holder is past its deadline: settle it as the next reconcile
            // would, then ask once more. If that hands the fleet to an
            // automatic rollback, or the holder's invocations are still being
            // settled, the fleet stays busy.
            if self.settle_overdue(holder, now).await {
                admission = executor.admit(&mut release, claim.as_ref(), desired, now).await?;
            }
        }
        match admission {
            Admission::Admitted => {
                let log = PassLog { created_here: true, ..PassLog::default() };
                let seen = Observed { holder: Some(release), log, ..Observed::default() };
                Ok(self.drive(seen, pass).await?.holder.unwrap_or_else(|| unreachable!("a driven release stays held")))
            }
            Admission::Busy { holder } => Err(ControlError::Busy { holder }),
            Admission::Replay { same_request: false, .. } => Err(ControlError::IdempotencyConflict {
                key: claim.map(|c| c.key.as_str().to_owned()).unwrap_or_default(),
            }),
            Admission::Replay { release_id, same_request: true } => {
                info!("idempotent replay; answering with the recorded release");
                let existing = executor.release(&release_id).await?;
                if existing.status != ReleaseStatus::Pending {
                    return Ok(existing);
                }
                // The first attempt stopped before its command was confirmed:
                // the planner takes over once that attempt cannot be alive.
                let seen = Observed { holder: Some(existing), ..Observed::default() };
                Ok(self.drive(seen, pass).await?.holder.unwrap_or_else(|| unreachable!("a driven release stays held")))
            }
            Admission::IdTaken => {
                Err(StoreError::Unavailable(format!("release id {} is recorded already; try again", release.id)).into())
            }
        }
    }

    /// Runs one reconcile pass if `holder` is past its deadline; answers
    /// whether it did, and the pass ended without an error.
    async fn settle_overdue(&self, holder: &ReleaseId, now: Timestamp) -> bool {
        let Ok(Some(release)) = self.executor().find_release(holder).await else {
            return false;
        };
        if now < release.deadline {
            return false;
        }
        info!(holder = %holder, "the release holding the fleet is past its deadline; settling it first");
        // Boxed: a reconcile runs here only for an overdue holder, so every
        // admission's future need not carry one inline.
        match Box::pin(self.reconcile(now)).await {
            Ok(_) => true,
            Err(e) => {
                warn!(holder = %holder, error = %e, "could not settle the overdue release; the fleet stays busy");
                false
            }
        }
    }
}
