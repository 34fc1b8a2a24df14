//! The fleet's controller: admits releases, sends their apply command and
//! judges their outcome, through the ports only.

use super::flakeref::Flakeref;
use super::fleet::{FleetName, FleetState, Lease, TargetTag};
use super::ports::{
    Admission, ApplyCommand, CommandRunner, FleetInventory, IdempotencyClaim, InventoryError, ReleasePage,
    ReleaseStore, RunnerError, StoreError,
};
use super::progress::judge;
use super::release::{IdempotencyKey, Release, ReleaseId, ReleaseKind, ReleaseStatus, Revision};
use super::time::Timestamp;
use serde::Serialize;
use std::time::Duration;
use tracing::{info, warn};

/// How far before a release's creation to look for a command it may have sent.
const COMMAND_LOOKBACK: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct FleetSettings {
    pub name: FleetName,
    pub target: TargetTag,
    /// How long a release may hold the fleet before it is judged failed.
    pub deploy_timeout: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct DeployRequest {
    pub flakeref: Flakeref,
    pub revision: Option<Revision>,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Clone, Debug)]
pub struct RollbackRequest {
    /// None: the last release that succeeded before the fleet's current one.
    pub target: Option<ReleaseId>,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("release {holder} is still in flight on this fleet; wait for its outcome (GET /releases/{holder}) and try again")]
    Busy { holder: ReleaseId },
    #[error("idempotency_key {key:?} was first used with a different request; use a new key for a new request")]
    IdempotencyConflict { key: String },
    #[error("no release {0} on this fleet")]
    ReleaseNotFound(ReleaseId),
    #[error("nothing to roll back to: {0}")]
    NoRollbackTarget(String),
    #[error("release {} is recorded as failed: SSM refused its apply command: {reason}", release.id)]
    CommandRejected { release: Box<Release>, reason: String },
    #[error("release {} is recorded but its apply command could not be confirmed; the next reconcile retries it", release.id)]
    CommandUnconfirmed { release: Box<Release>, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// What one reconcile pass did.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub fleet: FleetName,
    /// `idle`, `dispatched`, `waiting` or `finished`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// The fleet as `GET /fleet` and `{"action": "status"}` show it.
#[derive(Clone, Debug, Serialize)]
pub struct FleetStatus {
    pub fleet: FleetName,
    pub target_tag: TargetTag,
    pub desired_release: Option<Release>,
    /// The release holding the fleet, while its lease is live.
    pub lease: Option<Lease>,
}

pub struct FleetController<S, I, R> {
    store: S,
    inventory: I,
    runner: R,
    settings: FleetSettings,
}

impl<S: ReleaseStore, I: FleetInventory, R: CommandRunner> FleetController<S, I, R> {
    pub fn new(store: S, inventory: I, runner: R, settings: FleetSettings) -> Self {
        Self {
            store,
            inventory,
            runner,
            settings,
        }
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Records a release of `request.flakeref` and sends its apply command.
    pub async fn deploy(&self, request: DeployRequest, now: Timestamp) -> Result<Release, ControlError> {
        let fingerprint = format!(
            "deploy {} {}",
            request.flakeref,
            request.revision.as_ref().map_or("-", Revision::as_str)
        );
        let release = self.new_release(request.flakeref, request.revision, ReleaseKind::Deploy, None, now);
        self.start(release, request.idempotency_key, fingerprint, now).await
    }

    /// Records a new release that applies an earlier release's flakeref again.
    /// The earlier release's record is left as it is.
    pub async fn rollback(&self, request: RollbackRequest, now: Timestamp) -> Result<Release, ControlError> {
        let fleet = &self.settings.name;
        let fingerprint = format!(
            "rollback {}",
            request.target.as_ref().map_or("last-succeeded", ReleaseId::as_str)
        );
        let target = match &request.target {
            Some(id) => self
                .store
                .release(fleet, id)
                .await?
                .ok_or_else(|| ControlError::ReleaseNotFound(id.clone()))?,
            None => {
                let state = self.store.fleet_state(fleet).await?;
                let current = state
                    .desired_release
                    .ok_or_else(|| ControlError::NoRollbackTarget("the fleet has no release yet".into()))?;
                self.store
                    .last_succeeded_before(fleet, &current)
                    .await?
                    .ok_or_else(|| {
                        ControlError::NoRollbackTarget(format!(
                            "no release succeeded before the current one ({current}); name one with release_id"
                        ))
                    })?
            }
        };
        let release = self.new_release(
            target.flakeref.clone(),
            target.revision.clone(),
            ReleaseKind::Rollback,
            Some(target.id.clone()),
            now,
        );
        self.start(release, request.idempotency_key, fingerprint, now).await
    }

    /// Moves the release holding the fleet one step on: sends a command that
    /// was never confirmed, or judges one in flight. Safe to run at any time,
    /// twice, or concurrently: every write is conditional.
    pub async fn reconcile(&self, now: Timestamp) -> Result<ReconcileReport, ControlError> {
        let fleet = self.settings.name.clone();
        let state = self.store.fleet_state(&fleet).await?;
        let Some(lease) = state.lease else {
            return Ok(ReconcileReport {
                fleet,
                outcome: "idle",
                release: None,
            });
        };
        record_release_id(&lease.release_id);
        let Some(release) = self.store.release(&fleet, &lease.release_id).await? else {
            return Err(
                StoreError::Corrupt(format!("lease names release {} which is not stored", lease.release_id)).into(),
            );
        };
        let (outcome, release) = match release.status {
            ReleaseStatus::Pending => ("dispatched", self.dispatch(release, true, now).await?),
            ReleaseStatus::InProgress => {
                let release = self.check(release, now).await?;
                (
                    if release.status.is_final() {
                        "finished"
                    } else {
                        "waiting"
                    },
                    release,
                )
            }
            _ => ("idle", release),
        };
        Ok(ReconcileReport {
            fleet,
            outcome,
            release: Some(release),
        })
    }

    pub async fn release(&self, id: &ReleaseId) -> Result<Release, ControlError> {
        record_release_id(id);
        self.store
            .release(&self.settings.name, id)
            .await?
            .ok_or_else(|| ControlError::ReleaseNotFound(id.clone()))
    }

    pub async fn releases(&self, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, ControlError> {
        Ok(self.store.releases(&self.settings.name, limit, after).await?)
    }

    pub async fn status(&self, now: Timestamp) -> Result<FleetStatus, ControlError> {
        let fleet = &self.settings.name;
        let FleetState { desired_release, lease } = self.store.fleet_state(fleet).await?;
        let desired_release = match desired_release {
            Some(id) => self.store.release(fleet, &id).await?,
            None => None,
        };
        Ok(FleetStatus {
            fleet: fleet.clone(),
            target_tag: self.settings.target.clone(),
            desired_release,
            lease: lease.filter(|l| l.is_live(now)),
        })
    }

    fn new_release(
        &self,
        flakeref: Flakeref,
        revision: Option<Revision>,
        kind: ReleaseKind,
        rollback_of: Option<ReleaseId>,
        now: Timestamp,
    ) -> Release {
        let id = ReleaseId::generate(now, fastrand::u128(..));
        record_release_id(&id);
        Release {
            id,
            fleet: self.settings.name.clone(),
            flakeref,
            revision,
            kind,
            rollback_of,
            status: ReleaseStatus::Pending,
            status_reason: None,
            command_id: None,
            created_at: now,
            updated_at: now,
            deadline: now.plus(self.settings.deploy_timeout),
            instances: Vec::new(),
        }
    }

    async fn start(
        &self,
        release: Release,
        key: Option<IdempotencyKey>,
        fingerprint: String,
        now: Timestamp,
    ) -> Result<Release, ControlError> {
        let claim = key.map(|key| IdempotencyClaim {
            key,
            request: fingerprint,
            expires_at: now.plus(self.settings.idempotency_ttl),
        });
        match self.store.admit(&release, claim.as_ref(), now).await? {
            Admission::Admitted => {
                info!(kind = release.kind.as_str(), flakeref = %release.flakeref, "release recorded");
                self.dispatch(release, false, now).await
            }
            Admission::Busy { holder } => Err(ControlError::Busy { holder }),
            Admission::Replay {
                same_request: false, ..
            } => Err(ControlError::IdempotencyConflict {
                key: claim.map(|c| c.key.as_str().to_owned()).unwrap_or_default(),
            }),
            Admission::Replay {
                release_id,
                same_request: true,
            } => {
                record_release_id(&release_id);
                info!("idempotent replay; answering with the recorded release");
                let existing = self.release(&release_id).await?;
                if existing.status == ReleaseStatus::Pending {
                    // The first attempt stopped before its command was confirmed.
                    return self.dispatch(existing, true, now).await;
                }
                Ok(existing)
            }
        }
    }

    /// Sends the apply command of a pending release that holds the fleet.
    /// `resume`: an earlier attempt may have sent it already, so look first.
    async fn dispatch(&self, mut release: Release, resume: bool, now: Timestamp) -> Result<Release, ControlError> {
        let comment = release.command_comment();
        let found = if resume {
            self.runner
                .find(&comment, release.created_at.minus(COMMAND_LOOKBACK))
                .await?
        } else {
            None
        };
        let command_id = match found {
            Some(id) => {
                info!(command_id = %id, "found the command an earlier attempt sent");
                id
            }
            None if now >= release.deadline => {
                release.status = ReleaseStatus::Failed;
                release.status_reason = Some("the deadline passed before the apply command was sent".into());
                return self.finish(release, now).await;
            }
            None => {
                if !self.inventory.has_running_instances(&self.settings.target).await? {
                    release.status = ReleaseStatus::NoInstances;
                    release.status_reason = Some(format!(
                        "no running instance carries the fleet tag {}; nothing was sent",
                        self.settings.target
                    ));
                    return self.finish(release, now).await;
                }
                let command = ApplyCommand {
                    flakeref: release.flakeref.clone(),
                    target: self.settings.target.clone(),
                    comment,
                };
                match self.runner.send(&command).await {
                    Ok(id) => id,
                    Err(RunnerError::Rejected(reason)) => {
                        release.status = ReleaseStatus::Failed;
                        release.status_reason = Some(format!("SSM refused the apply command: {reason}"));
                        let release = self.finish(release, now).await?;
                        return Err(ControlError::CommandRejected {
                            release: Box::new(release),
                            reason,
                        });
                    }
                    Err(RunnerError::Unavailable(reason)) => {
                        warn!(%reason, "apply command not confirmed; left pending for reconcile");
                        return Err(ControlError::CommandUnconfirmed {
                            release: Box::new(release),
                            reason,
                        });
                    }
                }
            }
        };
        info!(command_id = %command_id, "apply command sent");
        release.command_id = Some(command_id);
        release.status = ReleaseStatus::InProgress;
        release.updated_at = now;
        if self.store.record_command(&release).await? {
            Ok(release)
        } else {
            // A concurrent attempt recorded it first; its record is the truth.
            self.release(&release.id).await
        }
    }

    async fn check(&self, mut release: Release, now: Timestamp) -> Result<Release, ControlError> {
        let Some(command_id) = release.command_id.clone() else {
            return Err(
                StoreError::Corrupt(format!("release {} is in progress without a command id", release.id)).into(),
            );
        };
        let report = self.runner.report(&command_id).await?;
        let verdict = judge(&report, release.deadline, now);
        let changed = verdict.instances != release.instances;
        release.instances = verdict.instances;
        if verdict.status.is_final() {
            release.status = verdict.status;
            release.status_reason = verdict.reason;
            return self.finish(release, now).await;
        }
        if changed {
            release.updated_at = now;
            self.store.record_progress(&release).await?;
        }
        Ok(release)
    }

    async fn finish(&self, mut release: Release, now: Timestamp) -> Result<Release, ControlError> {
        release.updated_at = now;
        if self.store.finish(&release).await? {
            info!(
                status = release.status.as_str(),
                reason = release.status_reason.as_deref().unwrap_or(""),
                "release finished"
            );
            Ok(release)
        } else {
            self.release(&release.id).await
        }
    }
}

fn record_release_id(id: &ReleaseId) {
    tracing::Span::current().record("release_id", id.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fakes::{FixedInventory, MemoryStore, ScriptedRunner, SendBehaviour};
    use crate::domain::ports::CommandReport;
    use crate::domain::release::InstanceOutcome;

    type Controller = FleetController<MemoryStore, FixedInventory, ScriptedRunner>;

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const GOOD: &str = "AcmeCorp/infra/=0.1.41#nixosConfigurations.web";
    const NEXT: &str = "AcmeCorp/infra/=0.1.42#nixosConfigurations.web";

    fn controller(has_instances: bool) -> Controller {
        FleetController::new(
            MemoryStore::default(),
            FixedInventory(has_instances),
            ScriptedRunner::default(),
            FleetSettings {
                name: FleetName::parse("prod").unwrap(),
                target: TargetTag {
                    key: "Name".into(),
                    value: "FlakeHubDemo".into(),
                },
                deploy_timeout: Duration::from_secs(600),
                idempotency_ttl: Duration::from_secs(3600),
            },
        )
    }

    fn deploy(flakeref: &str, key: Option<&str>) -> DeployRequest {
        DeployRequest {
            flakeref: Flakeref::parse(flakeref).unwrap(),
            revision: None,
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        }
    }

    fn later(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    /// Scripts every instance of `command_id` as `status` and reconciles.
    async fn finish_with(c: &Controller, status: &str, at: Timestamp) -> Release {
        let command_id = c.store.fleet.lock().unwrap().lease.clone().map(|l| {
            c.store.releases.lock().unwrap()[&l.release_id]
                .command_id
                .clone()
                .unwrap()
        });
        let outcome = InstanceOutcome {
            instance_id: "i-1".into(),
            status: status.into(),
            detail: status.into(),
            exit_code: Some(0),
            output_tail: String::new(),
        };
        c.runner.reports.lock().unwrap().insert(
            command_id.unwrap(),
            CommandReport {
                finished: true,
                invocations: vec![outcome],
            },
        );
        c.reconcile(at).await.unwrap().release.unwrap()
    }

    #[tokio::test]
    async fn a_busy_fleet_refuses_and_sends_nothing() {
        let c = controller(true);
        let first = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let err = c.deploy(deploy(NEXT, None), later(1)).await.unwrap_err();
        assert!(matches!(err, ControlError::Busy { holder } if holder == first.id));
        assert_eq!(c.runner.sent_count(), 1);
        assert_eq!(c.store.releases.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_command_fails_the_release_and_frees_the_fleet() {
        let c = controller(true);
        *c.runner.next.lock().unwrap() = SendBehaviour::Reject;
        let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
        let ControlError::CommandRejected { release, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(release.status, ReleaseStatus::Failed);
        assert!(c.store.fleet.lock().unwrap().lease.is_none());
        *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
        assert!(c.deploy(deploy(NEXT, None), later(1)).await.is_ok());
    }

    #[tokio::test]
    async fn an_ambiguous_send_is_adopted_not_repeated() {
        let c = controller(true);
        *c.runner.next.lock().unwrap() = SendBehaviour::SendThenTimeOut;
        let err = c.deploy(deploy(GOOD, Some("k1")), T0).await.unwrap_err();
        assert!(matches!(err, ControlError::CommandUnconfirmed { .. }));
        *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
        // The client's retry finds the command the first attempt started.
        let release = c.deploy(deploy(GOOD, Some("k1")), later(1)).await.unwrap();
        assert_eq!(release.status, ReleaseStatus::InProgress);
        assert_eq!(release.command_id.as_deref(), Some("cmd-1"));
        assert_eq!(c.runner.sent_count(), 1);
    }

    #[tokio::test]
    async fn an_unsent_command_is_sent_by_the_reconcile_or_failed_at_the_deadline() {
        let c = controller(true);
        *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
        assert!(c.deploy(deploy(GOOD, None), T0).await.is_err());
        // Still unavailable: the reconcile reports it and the release stays pending.
        let err = c.reconcile(later(1)).await.unwrap_err();
        assert!(
            matches!(err, ControlError::CommandUnconfirmed { release, .. } if release.status == ReleaseStatus::Pending)
        );
        let report = c.reconcile(later(601)).await.unwrap();
        let release = report.release.unwrap();
        assert_eq!(release.status, ReleaseStatus::Failed);
        assert!(release.status_reason.unwrap().contains("deadline"));
        assert_eq!(c.runner.sent_count(), 0);
        assert!(c.store.fleet.lock().unwrap().lease.is_none());
    }

    #[tokio::test]
    async fn a_key_reused_for_another_request_is_a_conflict() {
        let c = controller(true);
        c.deploy(deploy(GOOD, Some("k1")), T0).await.unwrap();
        let err = c.deploy(deploy(NEXT, Some("k1")), later(1)).await.unwrap_err();
        assert!(matches!(err, ControlError::IdempotencyConflict { .. }));
    }

    #[tokio::test]
    async fn rollback_targets_the_last_success_before_the_current_release() {
        let c = controller(true);
        let err = c
            .rollback(
                RollbackRequest {
                    target: None,
                    idempotency_key: None,
                },
                T0,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::NoRollbackTarget(_)));

        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        assert_eq!(
            finish_with(&c, "Success", later(1)).await.status,
            ReleaseStatus::Succeeded
        );
        c.deploy(deploy(NEXT, None), later(2)).await.unwrap();
        assert_eq!(finish_with(&c, "Failed", later(3)).await.status, ReleaseStatus::Failed);

        let rollback = c
            .rollback(
                RollbackRequest {
                    target: None,
                    idempotency_key: None,
                },
                later(4),
            )
            .await
            .unwrap();
        assert_eq!(rollback.kind, ReleaseKind::Rollback);
        assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
        assert_eq!(rollback.flakeref, good.flakeref);
        assert_eq!(
            c.store.releases.lock().unwrap()[&good.id].status,
            ReleaseStatus::Succeeded
        );

        // Once the rollback succeeds, the release before it is again the good one.
        finish_with(&c, "Success", later(5)).await;
        let again = c
            .rollback(
                RollbackRequest {
                    target: None,
                    idempotency_key: None,
                },
                later(6),
            )
            .await
            .unwrap();
        assert_eq!(again.rollback_of.as_ref(), Some(&good.id));
    }

    #[tokio::test]
    async fn no_instances_is_recorded_and_frees_the_fleet() {
        let c = controller(false);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        assert_eq!(release.status, ReleaseStatus::NoInstances);
        assert_eq!(c.runner.sent_count(), 0);
        assert!(c.store.fleet.lock().unwrap().lease.is_none());
    }

    #[tokio::test]
    async fn reconcile_twice_changes_nothing_more() {
        let c = controller(true);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let first = finish_with(&c, "Success", later(1)).await;
        let again = c.reconcile(later(2)).await.unwrap();
        assert_eq!(again.outcome, "idle");
        assert_eq!(c.store.releases.lock().unwrap()[&first.id], first);
    }
}
