//! The fleet's controller: admits releases, rolls them out, judges them and
//! rolls back bad ones, through the ports only.

use super::flakeref::{FlakeAllowlist, Flakeref};
use super::fleet::{FleetName, FleetState, Halt, Lease, TargetTag};
use super::ports::{
    Admission, ApplyCommand, CommandReport, CommandRunner, CommandTarget, FleetInventory, IdempotencyClaim,
    InventoryError, LaunchRequest, ReleasePage, ReleaseStore, RunnerError, Settlement, StoreError,
};
use super::progress::judge;
use super::release::{
    trim_outputs, IdempotencyKey, InstanceOutcome, Release, ReleaseId, ReleaseKind, ReleaseStatus, Revision,
};
use super::repair::{
    client_token, plan_repair, subnet_for, tagged_releases, user_data, FleetSpec, InstanceState, Launch,
};
use super::rollout::{judge_wave, next_wave, Rollout, RolloutMode, RolloutPolicy, Wave, WaveVerdict};
use super::time::Timestamp;
use serde::Serialize;
use std::time::Duration;
use tracing::{info, warn};

/// The tracing target of metric events (see `crate::telemetry`).
pub const METRICS_TARGET: &str = "flakefleet::metrics";

/// How far before a release's creation to look for a command it may have sent.
const COMMAND_LOOKBACK: Duration = Duration::from_secs(60);
/// Batches of a wave sent between two writes of their command ids.
const BATCHES_PER_SAVE: usize = 10;

#[derive(Clone, Debug)]
pub struct FleetSettings {
    pub name: FleetName,
    pub target: TargetTag,
    /// How long a release may hold the fleet before it is judged failed.
    pub deploy_timeout: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    pub rollout: RolloutPolicy,
    /// What the reconcile keeps the fleet at.
    pub spec: FleetSpec,
    /// How long an invocation that recorded a release (or claimed a wave) is
    /// given to send its commands before another one takes over: longer than
    /// the function's timeout, so a live sender is never doubled.
    pub takeover_after: Duration,
    /// The only flakes deploys, rollbacks and repairs may put on the fleet.
    pub allowed_flakes: FlakeAllowlist,
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
    #[error("flake {flake} is not on this fleet's allowlist ({allowed}); add it to FLAKEFLEET_ALLOWED_FLAKES (the AllowedFlakes parameter) to deploy it")]
    FlakeNotAllowed { flake: String, allowed: String },
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
    /// `idle`, `halted`, `dispatched`, `waiting`, `wave_started`, `rolled_back`,
    /// `finished` or `repaired`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// Instances a repair launched.
    pub launched: Vec<String>,
    /// Instances a repair sent the fleet's release to again.
    pub reapplied: Vec<String>,
    /// Why the reconcile did not repair the fleet, when it had a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl ReconcileReport {
    fn of(fleet: FleetName, outcome: &'static str, release: Option<Release>) -> Self {
        Self { fleet, outcome, release, launched: Vec::new(), reapplied: Vec::new(), skipped: None }
    }
}

/// How the rollout holding the fleet stands.
#[derive(Clone, Debug, Serialize)]
pub struct RolloutProgress {
    pub release_id: ReleaseId,
    pub kind: ReleaseKind,
    /// 1-based; 1 is the canary. Zero before the first wave is sent.
    pub wave: usize,
    pub targeted: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub pending: usize,
}

/// The fleet as `GET /fleet` and `{"action": "status"}` show it.
#[derive(Clone, Debug, Serialize)]
pub struct FleetStatus {
    pub fleet: FleetName,
    pub target_tag: TargetTag,
    pub desired_release: Option<Release>,
    pub last_good_release_id: Option<ReleaseId>,
    /// The release holding the fleet, while its lease is live.
    pub lease: Option<Lease>,
    pub rollout: Option<RolloutProgress>,
    pub halted: Option<Halt>,
    /// Each pending or running instance with the release it last applied
    /// successfully (its `flakefleet:release` tag).
    pub instances: Vec<InstanceRelease>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRelease {
    pub instance_id: String,
    /// None: no recent release reached this instance successfully.
    pub release_id: Option<ReleaseId>,
    pub flakeref: Option<Flakeref>,
}

pub struct FleetController<S, I, R> {
    store: S,
    inventory: I,
    runner: R,
    settings: FleetSettings,
}

impl<S: ReleaseStore, I: FleetInventory, R: CommandRunner> FleetController<S, I, R> {
    pub fn new(store: S, inventory: I, runner: R, settings: FleetSettings) -> Self {
        Self { store, inventory, runner, settings }
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Records a release of `request.flakeref` and sends its first command.
    pub async fn deploy(&self, request: DeployRequest, now: Timestamp) -> Result<Release, ControlError> {
        self.check_allowed(&request.flakeref)?;
        let fingerprint =
            format!("deploy {} {}", request.flakeref, request.revision.as_ref().map_or("-", Revision::as_str));
        let release = self.new_release(request.flakeref, request.revision, ReleaseKind::Deploy, None, now);
        self.start(release, request.idempotency_key, fingerprint, now).await
    }

    /// Records a new release that applies an earlier release's flakeref again.
    /// The earlier release's record is left as it is.
    pub async fn rollback(&self, request: RollbackRequest, now: Timestamp) -> Result<Release, ControlError> {
        let fleet = &self.settings.name;
        let fingerprint = format!("rollback {}", request.target.as_ref().map_or("last-succeeded", ReleaseId::as_str));
        let target = match &request.target {
            Some(id) => {
                self.store.release(fleet, id).await?.ok_or_else(|| ControlError::ReleaseNotFound(id.clone()))?
            }
            None => {
                let state = self.store.fleet_state(fleet).await?;
                let current = state
                    .desired_release
                    .ok_or_else(|| ControlError::NoRollbackTarget("the fleet has no release yet".into()))?;
                self.store.last_succeeded_before(fleet, &current).await?.ok_or_else(|| {
                    ControlError::NoRollbackTarget(format!(
                        "no release succeeded before the current one ({current}); name one with release_id"
                    ))
                })?
            }
        };
        self.check_allowed(&target.flakeref)?;
        let release = self.new_release(
            target.flakeref.clone(),
            target.revision.clone(),
            ReleaseKind::Rollback,
            Some(target.id.clone()),
            now,
        );
        self.start(release, request.idempotency_key, fingerprint, now).await
    }

    /// Moves the release holding the fleet one safe step on: sends what was
    /// never confirmed sent, judges the wave in flight, starts the next wave,
    /// finishes, or rolls back. Safe to run at any time, twice, late or
    /// concurrently: every write is fenced by the release's version.
    pub async fn reconcile(&self, now: Timestamp) -> Result<ReconcileReport, ControlError> {
        let fleet = self.settings.name.clone();
        let state = self.store.fleet_state(&fleet).await?;
        // A gauge for the halted-fleet alarm, written on every pass.
        self.metric("FleetIsHalted", "None", if state.halted.is_some() { 1.0 } else { 0.0 });
        let Some(lease) = state.lease.clone() else {
            if let Some(halt) = &state.halted {
                let mut report = ReconcileReport::of(fleet, "halted", None);
                report.skipped = Some(format!("the fleet is halted: {}", halt.reason));
                return Ok(report);
            }
            return self.repair(&state, now).await;
        };
        record_release_id(&lease.release_id);
        let Some(release) = self.store.release(&fleet, &lease.release_id).await? else {
            return Err(
                StoreError::Corrupt(format!("lease names release {} which is not stored", lease.release_id)).into()
            );
        };
        let (outcome, release) = match release.status {
            ReleaseStatus::Pending if now < release.created_at.plus(self.settings.takeover_after) => {
                ("waiting", release)
            }
            ReleaseStatus::Pending => ("dispatched", self.dispatch(release, true, now).await?),
            ReleaseStatus::InProgress => self.advance(release, now).await?,
            _ => ("idle", release),
        };
        Ok(ReconcileReport::of(fleet, outcome, Some(release)))
    }

    /// Puts the fleet's good release where it is missing (launch into free
    /// slots) or has drifted (apply it again), under the fleet's lease so two
    /// reconciles never repair at once.
    async fn repair(&self, state: &FleetState, now: Timestamp) -> Result<ReconcileReport, ControlError> {
        let fleet = self.settings.name.clone();
        let skipped = |why: String| {
            let mut report = ReconcileReport::of(fleet.clone(), "idle", None);
            report.skipped = Some(why);
            report
        };
        let Some(good_id) = &state.last_good_release else {
            return Ok(skipped("no release has succeeded on this fleet yet: nothing to repair towards".into()));
        };
        let good = self.release(good_id).await?;
        if let Err(refused) = self.check_allowed(&good.flakeref) {
            return Ok(skipped(format!("the last good release {good_id} cannot be repaired towards: {refused}")));
        }
        let instances = self.inventory.fleet_instances(&self.settings.target).await?;
        let mut runs_good = std::collections::HashMap::new();
        for id in tagged_releases(&instances) {
            let flakeref = self.store.release(&fleet, &id).await?.map(|r| r.flakeref);
            runs_good.insert(id, flakeref.as_ref() == Some(&good.flakeref));
        }
        let plan = plan_repair(&self.settings.spec, &instances, |id| runs_good.get(id).copied().unwrap_or(false));
        if plan.is_empty() {
            return Ok(ReconcileReport::of(fleet, "idle", None));
        }

        // No image, nothing to launch: said, with no release recorded each minute.
        let image = if plan.launch.is_empty() { Err(String::new()) } else { self.image().await };
        if let (Err(why), true) = (&image, plan.reapply.is_empty()) {
            return Ok(skipped(format!("{} instances missing but {why}", plan.launch.len())));
        }

        let mut repair = self.new_release(good.flakeref.clone(), good.revision.clone(), ReleaseKind::Repair, None, now);
        repair.status = ReleaseStatus::InProgress;
        repair.rollout = Some(Rollout {
            fleet_size: Some(plan.reapply.len()),
            waves: if plan.reapply.is_empty() { vec![] } else { vec![Wave::new(plan.reapply.clone(), now.millis())] },
            fixed: true,
        });
        repair.launches =
            plan.launch.iter().map(|slot| Launch { slot: *slot, instance_id: None, error: None }).collect();
        match self.store.admit(&repair, None, false, now).await? {
            Admission::Admitted => {}
            Admission::Busy { holder } => return Ok(skipped(format!("release {holder} holds the fleet"))),
            Admission::Replay { .. } => unreachable!("a repair has no idempotency key"),
        }
        info!(launch = plan.launch.len(), reapply = plan.reapply.len(), "repairing the fleet");

        let launched = self.launch_missing(&mut repair, image).await;
        let launch_errors: Vec<String> = repair.launches.iter().filter_map(|l| l.error.clone()).collect();
        let repair = if plan.reapply.is_empty() {
            self.settle_launches(repair, now).await?
        } else {
            let saved = self.save(repair, now).await?;
            self.send_wave(saved, false, now).await?
        };
        let mut report = ReconcileReport::of(fleet, "repaired", Some(repair));
        report.launched = launched;
        report.reapplied = plan.reapply;
        if !launch_errors.is_empty() {
            report.skipped =
                Some(format!("some launches failed and are retried next time: {}", launch_errors.join("; ")));
        }
        Ok(report)
    }

    /// The newest image for launches, or why there is none.
    async fn image(&self) -> Result<String, String> {
        match self.inventory.newest_image(&self.settings.spec.image).await {
            Ok(Some(image)) => Ok(image),
            Ok(None) => Err(format!("no image matches {:?}", self.settings.spec.image)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Launches every recorded slot of a repair not yet launched or failed.
    /// Tokens come from the repair's id and the slot, so doing this again
    /// after a crash asks EC2 for the same instances. Answers the new ids.
    async fn launch_missing(&self, repair: &mut Release, image: Result<String, String>) -> Vec<String> {
        let mut launched = Vec::new();
        let fleet = self.settings.name.clone();
        for launch in repair.launches.iter_mut().filter(|l| l.instance_id.is_none() && l.error.is_none()) {
            let result = match &image {
                Ok(image_id) => {
                    let request = LaunchRequest {
                        image_id: image_id.clone(),
                        spec: self.settings.spec.clone(),
                        slot: launch.slot,
                        subnet: subnet_for(&self.settings.spec, launch.slot).map(str::to_owned),
                        client_token: client_token(fleet.as_str(), &repair.id, launch.slot),
                        release: repair.id.clone(),
                        user_data: user_data(&repair.flakeref),
                        tag: self.settings.target.clone(),
                        fleet: fleet.clone(),
                    };
                    self.inventory.launch(&request).await.map_err(|e| e.to_string())
                }
                Err(why) => Err(why.clone()),
            };
            match result {
                Ok(id) => {
                    info!(instance_id = %id, slot = launch.slot, "launched");
                    launched.push(id.clone());
                    launch.instance_id = Some(id);
                }
                Err(why) => {
                    warn!(slot = launch.slot, error = %why, "launch failed; the next reconcile tries again");
                    launch.error = Some(why);
                }
            }
        }
        launched
    }

    /// Ends a repair that had only launches to do.
    async fn settle_launches(&self, mut repair: Release, now: Timestamp) -> Result<Release, ControlError> {
        let errors: Vec<String> = repair.launches.iter().filter_map(|l| l.error.clone()).collect();
        if errors.is_empty() {
            repair.status = ReleaseStatus::Succeeded;
        } else {
            repair.status = ReleaseStatus::Failed;
            repair.status_reason = Some(format!("launch failed: {}", errors.join("; ")));
        }
        self.settle(repair, None, None, now).await
    }

    /// Admission: only flakes on the allowlist reach the fleet.
    fn check_allowed(&self, flakeref: &Flakeref) -> Result<(), ControlError> {
        if self.settings.allowed_flakes.permits(flakeref) {
            return Ok(());
        }
        Err(ControlError::FlakeNotAllowed {
            flake: flakeref.flake().to_owned(),
            allowed: self.settings.allowed_flakes.to_string(),
        })
    }

    pub async fn release(&self, id: &ReleaseId) -> Result<Release, ControlError> {
        record_release_id(id);
        self.store.release(&self.settings.name, id).await?.ok_or_else(|| ControlError::ReleaseNotFound(id.clone()))
    }

    pub async fn releases(&self, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, ControlError> {
        Ok(self.store.releases(&self.settings.name, limit, after).await?)
    }

    pub async fn status(&self, now: Timestamp) -> Result<FleetStatus, ControlError> {
        let fleet = &self.settings.name;
        let FleetState { desired_release, last_good_release, lease, halted } = self.store.fleet_state(fleet).await?;
        let lease = lease.filter(|l| l.is_live(now));
        let desired_release = match desired_release {
            Some(id) => self.store.release(fleet, &id).await?,
            None => None,
        };
        let active = match (&lease, &desired_release) {
            (Some(l), Some(d)) if l.release_id == d.id => Some(d.clone()),
            (Some(l), _) => self.store.release(fleet, &l.release_id).await?,
            _ => None,
        };
        let mut instances: Vec<InstanceRelease> = Vec::new();
        let mut flakerefs = std::collections::HashMap::new();
        for instance in self.inventory.fleet_instances(&self.settings.target).await? {
            if instance.state == InstanceState::Gone {
                continue;
            }
            let flakeref = match &instance.release {
                Some(id) if !flakerefs.contains_key(id) => {
                    let flakeref = self.store.release(fleet, id).await?.map(|r| r.flakeref);
                    flakerefs.insert(id.clone(), flakeref.clone());
                    flakeref
                }
                Some(id) => flakerefs[id].clone(),
                None => None,
            };
            instances.push(InstanceRelease { instance_id: instance.id, release_id: instance.release, flakeref });
        }
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(FleetStatus {
            fleet: fleet.clone(),
            target_tag: self.settings.target.clone(),
            desired_release,
            last_good_release_id: last_good_release,
            rollout: active.as_ref().map(progress_of),
            lease,
            halted,
            instances,
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
        let staged = self.settings.rollout.mode == RolloutMode::Staged;
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
            rollout: staged.then(Rollout::default),
            launches: Vec::new(),
            version: 0,
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
        match self.store.admit(&release, claim.as_ref(), true, now).await? {
            Admission::Admitted => {
                info!(kind = release.kind.as_str(), flakeref = %release.flakeref, "release recorded");
                self.metric("DeploysStarted", "Count", 1.0);
                self.dispatch(release, false, now).await
            }
            Admission::Busy { holder } => Err(ControlError::Busy { holder }),
            Admission::Replay { same_request: false, .. } => Err(ControlError::IdempotencyConflict {
                key: claim.map(|c| c.key.as_str().to_owned()).unwrap_or_default(),
            }),
            Admission::Replay { release_id, same_request: true } => {
                record_release_id(&release_id);
                info!("idempotent replay; answering with the recorded release");
                let existing = self.release(&release_id).await?;
                // The first attempt stopped before its command was confirmed, and
                // has had time to finish if it were alive: take over.
                if existing.status == ReleaseStatus::Pending
                    && now >= existing.created_at.plus(self.settings.takeover_after)
                {
                    return self.dispatch(existing, true, now).await;
                }
                Ok(existing)
            }
        }
    }

    /// Sends the first command of a pending release that holds the fleet:
    /// the canary, or the one command to the whole tag. `resume`: an earlier
    /// attempt may have sent it already, so look first.
    async fn dispatch(&self, mut release: Release, resume: bool, now: Timestamp) -> Result<Release, ControlError> {
        let (target, comment, canary) = match &release.rollout {
            None => (CommandTarget::Tag(self.settings.target.clone()), release.command_comment(), None),
            Some(_) => {
                let wanted = self.settings.rollout.canary;
                let mut running = self.inventory.running_instances(&self.settings.target, Some(wanted)).await?;
                running.sort();
                running.truncate(wanted);
                (CommandTarget::Instances(running.clone()), release.batch_comment(0, 0), Some(running))
            }
        };
        let found =
            if resume { self.runner.find(&comment, release.created_at.minus(COMMAND_LOOKBACK)).await? } else { None };
        let command_id = match found {
            Some(id) => {
                info!(command_id = %id, "found the command an earlier attempt sent");
                id
            }
            None if now >= release.deadline => {
                return self.fail(release, "the deadline passed before the apply command was sent".into(), now).await;
            }
            None => {
                let empty = match &target {
                    CommandTarget::Instances(ids) => ids.is_empty(),
                    CommandTarget::Tag(tag) => self.inventory.running_instances(tag, Some(1)).await?.is_empty(),
                };
                if empty {
                    release.status = ReleaseStatus::NoInstances;
                    release.status_reason = Some(format!(
                        "no running instance carries the fleet tag {}; nothing was sent",
                        self.settings.target
                    ));
                    return self.settle(release, None, None, now).await;
                }
                let command = ApplyCommand { flakeref: release.flakeref.clone(), target, comment };
                match self.runner.send(&command).await {
                    Ok(id) => id,
                    Err(RunnerError::Rejected(reason)) => {
                        release.status = ReleaseStatus::Failed;
                        release.status_reason = Some(format!("SSM refused the apply command: {reason}"));
                        let release = self.settle(release, None, None, now).await?;
                        return Err(ControlError::CommandRejected { release: Box::new(release), reason });
                    }
                    Err(RunnerError::Unavailable(reason)) => {
                        warn!(%reason, "apply command not confirmed; left pending for reconcile");
                        return Err(ControlError::CommandUnconfirmed { release: Box::new(release), reason });
                    }
                }
            }
        };
        info!(command_id = %command_id, "apply command sent");
        match (canary, release.rollout.as_mut()) {
            (Some(ids), Some(rollout)) => {
                rollout.waves =
                    vec![Wave { instance_ids: ids, command_ids: vec![command_id], claimed_ms: now.millis() }];
            }
            _ => release.command_id = Some(command_id),
        }
        release.status = ReleaseStatus::InProgress;
        self.save(release, now).await
    }

    /// One step for an in-progress release.
    async fn advance(&self, release: Release, now: Timestamp) -> Result<(&'static str, Release), ControlError> {
        if release.rollout.is_none() {
            return self.advance_at_once(release, now).await;
        }
        let mut release = release;
        if release.launches.iter().any(|l| l.instance_id.is_none() && l.error.is_none()) {
            // A repair that stopped mid-launch: its claim lapses like a wave's.
            if now < release.created_at.plus(self.settings.takeover_after) {
                return Ok(("waiting", release));
            }
            let image = self.image().await;
            self.launch_missing(&mut release, image).await;
            if release.rollout.as_ref().is_none_or(|r| r.waves.is_empty()) {
                return Ok(("finished", self.settle_launches(release, now).await?));
            }
            release = self.save(release, now).await?;
        }
        let rollout = release.rollout.clone().unwrap_or_default();
        let Some(wave) = rollout.current() else {
            return Err(StoreError::Corrupt(format!("release {} is in progress without a wave", release.id)).into());
        };
        if !wave.fully_sent() {
            if now.millis() < wave.claimed_ms + self.settings.takeover_after.as_millis() as u64 {
                return Ok(("waiting", release));
            }
            release = self.send_wave(release, true, now).await?;
            if !release.rollout.as_ref().is_some_and(|r| r.current().is_some_and(Wave::fully_sent)) {
                return Ok(("waiting", release));
            }
        }

        let rollout = release.rollout.clone().unwrap_or_default();
        let wave = rollout.current().cloned().unwrap_or_default();
        let mut invocations = Vec::new();
        let finished: std::collections::HashSet<&str> =
            release.instances.iter().filter(|o| o.is_finished()).map(|o| o.instance_id.as_str()).collect();
        for (command_id, batch) in wave.command_ids.iter().zip(wave.batches()) {
            // A batch whose every instance has a final outcome has nothing more to say.
            if batch.iter().all(|id| finished.contains(id.as_str())) {
                continue;
            }
            invocations.extend(self.runner.report(command_id).await?.invocations);
        }
        let instances = merge_outcomes(&release.instances, invocations);
        let changed = instances != release.instances;
        self.tag_converged(&release, &instances).await;
        release.instances = instances;

        let verdict = match judge_wave(&rollout, &release.instances, &self.settings.rollout) {
            WaveVerdict::Passed => WaveVerdict::Passed,
            _ if now >= release.deadline => WaveVerdict::Stop(format!("the deadline {} passed", release.deadline)),
            other => other,
        };
        match verdict {
            WaveVerdict::Running if changed => Ok(("waiting", self.save(release, now).await?)),
            WaveVerdict::Running => Ok(("waiting", release)),
            WaveVerdict::Stop(reason) => {
                let failed = self.fail(release, reason, now).await?;
                Ok((if failed.status == ReleaseStatus::RolledBack { "rolled_back" } else { "finished" }, failed))
            }
            WaveVerdict::Passed => {
                let running = if rollout.fixed {
                    Vec::new()
                } else {
                    self.inventory.running_instances(&self.settings.target, None).await?
                };
                let mut rollout = rollout;
                if rollout.fleet_size.is_none() {
                    let mut all: Vec<&String> = running.iter().chain(rollout.targeted()).collect();
                    all.sort();
                    all.dedup();
                    rollout.fleet_size = Some(all.len());
                }
                let next =
                    if rollout.fixed { Vec::new() } else { next_wave(&rollout, &running, &self.settings.rollout) };
                if next.is_empty() {
                    release.rollout = Some(rollout);
                    let failures = describe_failures(&release.instances);
                    if failures.is_empty() {
                        release.status = ReleaseStatus::Succeeded;
                        release.status_reason = None;
                    } else {
                        // Within the threshold: the rollout went on, but not every instance converged.
                        release.status = ReleaseStatus::Failed;
                        release.status_reason = Some(format!("{failures} (within the failure threshold)"));
                    }
                    return Ok(("finished", self.settle(release, None, None, now).await?));
                }
                info!(wave = rollout.waves.len() + 1, instances = next.len(), "starting the next wave");
                rollout.waves.push(Wave::new(next, now.millis()));
                release.rollout = Some(rollout);
                let claimed = self.save(release, now).await?;
                if claimed.rollout.as_ref().and_then(Rollout::current).is_some_and(|w| w.claimed_ms == now.millis()) {
                    Ok(("wave_started", self.send_wave(claimed, false, now).await?))
                } else {
                    Ok(("waiting", claimed))
                }
            }
        }
    }

    /// The one command to the whole tag: judged when SSM says it ended.
    async fn advance_at_once(
        &self,
        mut release: Release,
        now: Timestamp,
    ) -> Result<(&'static str, Release), ControlError> {
        let Some(command_id) = release.command_id.clone() else {
            return Err(
                StoreError::Corrupt(format!("release {} is in progress without a command id", release.id)).into()
            );
        };
        let report: CommandReport = self.runner.report(&command_id).await?;
        let mut verdict = judge(&report, release.deadline, now);
        trim_outputs(&mut verdict.instances);
        let changed = verdict.instances != release.instances;
        self.tag_converged(&release, &verdict.instances).await;
        release.instances = verdict.instances;
        match verdict.status {
            ReleaseStatus::Succeeded | ReleaseStatus::NoInstances => {
                release.status = verdict.status;
                release.status_reason = verdict.reason;
                Ok(("finished", self.settle(release, None, None, now).await?))
            }
            ReleaseStatus::Failed => {
                let failed = self.fail(release, verdict.reason.unwrap_or_default(), now).await?;
                Ok((if failed.status == ReleaseStatus::RolledBack { "rolled_back" } else { "finished" }, failed))
            }
            _ if changed => Ok(("waiting", self.save(release, now).await?)),
            _ => Ok(("waiting", release)),
        }
    }

    /// Sends the unsent batches of the current wave, recording their command ids.
    async fn send_wave(&self, mut release: Release, resume: bool, now: Timestamp) -> Result<Release, ControlError> {
        let mut unsaved = 0;
        loop {
            let Some(rollout) = release.rollout.as_ref() else {
                return Ok(release);
            };
            let wave_number = rollout.waves.len() - 1;
            let Some(wave) = rollout.current() else {
                return Ok(release);
            };
            let batch_number = wave.command_ids.len();
            let Some(batch) = wave.batches().nth(batch_number).map(<[String]>::to_vec) else {
                return Ok(release);
            };
            let comment = release.batch_comment(wave_number, batch_number);
            let found = if resume {
                self.runner.find(&comment, release.created_at.minus(COMMAND_LOOKBACK)).await?
            } else {
                None
            };
            let command_id = match found {
                Some(id) => id,
                None => {
                    let command = ApplyCommand {
                        flakeref: release.flakeref.clone(),
                        target: CommandTarget::Instances(batch),
                        comment,
                    };
                    match self.runner.send(&command).await {
                        Ok(id) => id,
                        Err(e) => {
                            // Left claimed: the reconcile takes over after the claim
                            // lapses. Record what went out so it need not search for it.
                            if unsaved > 0 {
                                self.save(release, now).await?;
                            }
                            return Err(e.into());
                        }
                    }
                }
            };
            info!(command_id = %command_id, wave = wave_number + 1, batch = batch_number + 1, "wave batch sent");
            let mut last = false;
            if let Some(wave) = release.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
                wave.command_ids.push(command_id);
                last = wave.fully_sent();
            }
            unsaved += 1;
            // Command ids are written every few batches rather than after each:
            // a release of 10,000 instances is rewritten whole on every save, and
            // a batch sent but not recorded is found by its comment after a crash.
            if last || unsaved == BATCHES_PER_SAVE {
                let version = release.version;
                release = self.save(release, now).await?;
                unsaved = 0;
                if release.version != version + 1 {
                    return Ok(release); // fenced off: another writer moved it on
                }
            }
        }
    }

    /// Ends a release that went wrong: an automatic rollback when one is safe
    /// and allowed, a halted fleet when a rollback itself failed or there is
    /// nothing to go back to, a plain failure otherwise. Never loops: a
    /// rollback is never rolled back.
    async fn fail(&self, mut release: Release, reason: String, now: Timestamp) -> Result<Release, ControlError> {
        warn!(%reason, "release failed");
        release.status_reason = Some(reason.clone());
        if release.kind == ReleaseKind::Repair {
            // The fleet's good release did not take: report it, retry next time.
            release.status = ReleaseStatus::Failed;
            return self.settle(release, None, None, now).await;
        }
        if release.kind == ReleaseKind::Rollback {
            release.status = ReleaseStatus::Halted;
            let halt = format!("rollback {} failed: {reason}", release.id);
            return self.settle(release, Some(halt), None, now).await;
        }
        if !self.settings.rollout.auto_rollback {
            release.status = ReleaseStatus::Failed;
            return self.settle(release, None, None, now).await;
        }
        let state = self.store.fleet_state(&self.settings.name).await?;
        let good = match state.last_good_release {
            Some(id) if id != release.id => self.store.release(&self.settings.name, &id).await?,
            _ => self.store.last_succeeded_before(&self.settings.name, &release.id).await?,
        };
        let reached = release.reached_instances();
        let Some(good) = good else {
            release.status = ReleaseStatus::Halted;
            let halt =
                format!("release {} failed and no earlier release succeeded to roll back to: {reason}", release.id);
            return self.settle(release, Some(halt), None, now).await;
        };
        if reached.is_empty() {
            release.status = ReleaseStatus::Failed;
            return self.settle(release, None, None, now).await;
        }
        let mut rollback = self.new_release(
            good.flakeref.clone(),
            good.revision.clone(),
            ReleaseKind::Rollback,
            Some(good.id.clone()),
            now,
        );
        record_release_id(&release.id);
        rollback.status = ReleaseStatus::InProgress;
        rollback.status_reason = Some(format!("automatic rollback of {}: {reason}", release.id));
        rollback.rollout = Some(Rollout {
            fleet_size: Some(reached.len()),
            waves: vec![Wave::new(reached, now.millis())],
            fixed: true,
        });
        release.status = ReleaseStatus::RolledBack;
        let (settled, written) = self.settle_checked(release, None, Some(&rollback), now).await?;
        if written {
            info!(rollback = %rollback.id, to = %good.id, "automatic rollback started");
            // Sent by this invocation; if it dies, the reconcile takes the claim over.
            if let Err(e) = self.send_wave(rollback.clone(), false, now).await {
                warn!(error = %e, rollback = %rollback.id, "rollback wave not sent yet; the reconcile retries");
            }
        }
        Ok(settled)
    }

    /// Records on each instance that newly applied `release` successfully that
    /// it runs it now, for the drift repair. Best effort: an untagged instance
    /// only costs a needless (and harmless) re-apply later.
    async fn tag_converged(&self, release: &Release, outcomes: &[InstanceOutcome]) {
        let before: std::collections::HashSet<&str> =
            release.instances.iter().filter(|o| o.converged()).map(|o| o.instance_id.as_str()).collect();
        let fresh: Vec<String> = outcomes
            .iter()
            .filter(|o| o.converged() && !before.contains(o.instance_id.as_str()))
            .map(|o| o.instance_id.clone())
            .collect();
        if fresh.is_empty() {
            return;
        }
        if let Err(e) = self.inventory.tag_release(&fresh, &release.id).await {
            warn!(error = %e, "could not tag instances with their release");
        }
    }

    /// One CloudWatch metric, dimensioned by fleet (written by `telemetry::EmfLayer`).
    fn metric(&self, metric: &'static str, unit: &'static str, value: f64) {
        info!(target: METRICS_TARGET, metric, unit, value, fleet = self.settings.name.as_str());
    }

    async fn save(&self, mut release: Release, now: Timestamp) -> Result<Release, ControlError> {
        let expected = release.version;
        release.version += 1;
        release.updated_at = now;
        if self.store.save(&release, expected).await? {
            Ok(release)
        } else {
            // Fenced off: another writer moved it on; its record is the truth.
            self.release(&release.id).await
        }
    }

    async fn settle(
        &self,
        release: Release,
        halt: Option<String>,
        next: Option<&Release>,
        now: Timestamp,
    ) -> Result<Release, ControlError> {
        Ok(self.settle_checked(release, halt, next, now).await?.0)
    }

    /// Settles a release; says whether this write won (false: fenced off, and
    /// the answer is the record another writer left).
    async fn settle_checked(
        &self,
        mut release: Release,
        halt: Option<String>,
        next: Option<&Release>,
        now: Timestamp,
    ) -> Result<(Release, bool), ControlError> {
        let expected = release.version;
        release.version += 1;
        release.updated_at = now;
        let settlement = Settlement {
            release: &release,
            expected_version: expected,
            // A repair puts the good release back; it is not a release of its own.
            last_good: release.status == ReleaseStatus::Succeeded && release.kind != ReleaseKind::Repair,
            halt: halt.clone(),
            next,
        };
        if self.store.settle(&settlement).await? {
            info!(
                status = release.status.as_str(),
                reason = release.status_reason.as_deref().unwrap_or(""),
                "release finished"
            );
            let outcome = match release.status {
                ReleaseStatus::Succeeded => Some("DeploysSucceeded"),
                ReleaseStatus::Failed => Some("DeploysFailed"),
                ReleaseStatus::RolledBack => Some("DeploysRolledBack"),
                ReleaseStatus::Halted => Some("FleetHalted"),
                _ => None,
            };
            if let Some(name) = outcome {
                self.metric(name, "Count", 1.0);
                let duration = now.millis().saturating_sub(release.created_at.millis());
                self.metric("RolloutDuration", "Milliseconds", duration as f64);
            }
            if let Some(halt) = halt {
                warn!(reason = %halt, "fleet halted: no automatic action until an operator deploys or rolls back");
            }
            Ok((release, true))
        } else {
            Ok((self.release(&release.id).await?, false))
        }
    }
}

/// The recorded outcomes with the newest report for each instance laid over
/// them, sorted by instance id, output trimmed.
fn merge_outcomes(recorded: &[InstanceOutcome], reported: Vec<InstanceOutcome>) -> Vec<InstanceOutcome> {
    let mut merged: std::collections::BTreeMap<String, InstanceOutcome> =
        recorded.iter().map(|o| (o.instance_id.clone(), o.clone())).collect();
    for outcome in reported {
        merged.insert(outcome.instance_id.clone(), outcome);
    }
    let mut merged: Vec<InstanceOutcome> = merged.into_values().collect();
    trim_outputs(&mut merged);
    merged
}

fn describe_failures(instances: &[InstanceOutcome]) -> String {
    let failed: Vec<&InstanceOutcome> = instances.iter().filter(|i| i.is_finished() && !i.converged()).collect();
    if failed.is_empty() {
        return String::new();
    }
    let names: Vec<String> = failed.iter().take(5).map(|i| format!("{} {}", i.instance_id, i.detail)).collect();
    format!("{} of {} instances did not converge: {}", failed.len(), instances.len(), names.join(", "))
}

fn progress_of(release: &Release) -> RolloutProgress {
    let targeted = match &release.rollout {
        Some(r) => r.targeted().count(),
        None => release.instances.len(),
    };
    let succeeded = release.instances.iter().filter(|i| i.converged()).count();
    let failed = release.instances.iter().filter(|i| i.is_finished() && !i.converged()).count();
    RolloutProgress {
        release_id: release.id.clone(),
        kind: release.kind,
        wave: release.rollout.as_ref().map_or(usize::from(release.command_id.is_some()), |r| r.waves.len()),
        targeted,
        succeeded,
        failed,
        pending: targeted.saturating_sub(succeeded + failed),
    }
}

fn record_release_id(id: &ReleaseId) {
    tracing::Span::current().record("release_id", id.as_str());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::fakes::{MemoryFleet, MemoryStore, ScriptedRunner, SendBehaviour};
    use crate::domain::ports::CommandReport;
    use crate::domain::release::InstanceOutcome;
    use crate::domain::rollout::Rate;

    pub(crate) type Controller = FleetController<MemoryStore, MemoryFleet, ScriptedRunner>;

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const GOOD: &str = "AcmeCorp/infra/=0.1.41#nixosConfigurations.web";
    const NEXT: &str = "AcmeCorp/infra/=0.1.42#nixosConfigurations.web";

    fn policy(mode: RolloutMode, auto_rollback: bool) -> RolloutPolicy {
        RolloutPolicy { mode, canary: 1, wave: Rate::Percent(30), failure_threshold: Rate::Count(0), auto_rollback }
    }

    fn with_policy(instances: usize, rollout: RolloutPolicy) -> Controller {
        FleetController::new(
            MemoryStore::default(),
            MemoryFleet::of(instances),
            ScriptedRunner::default(),
            FleetSettings {
                name: FleetName::parse("prod").unwrap(),
                target: TargetTag { key: "Name".into(), value: "FlakeHubDemo".into() },
                deploy_timeout: Duration::from_secs(600),
                idempotency_ttl: Duration::from_secs(3600),
                rollout,
                spec: crate::domain::repair::FleetSpec {
                    desired_capacity: 0,
                    instance_type: "t3a.nano".into(),
                    subnets: vec![],
                    security_groups: vec![],
                    instance_profile: "FlakeHubClientMachine".into(),
                    image: crate::domain::repair::ImageSelector {
                        owner: "535002876703".into(),
                        name_pattern: "determinate/nixos/epoch-1/24.05.*".into(),
                        architecture: "x86_64".into(),
                    },
                    root_volume_gib: 16,
                },
                takeover_after: Duration::ZERO,
                allowed_flakes: FlakeAllowlist::parse("AcmeCorp/infra").unwrap(),
            },
        )
    }

    /// All at once by tag, no automatic rollback: the plain core loop.
    fn controller(has_instances: bool) -> Controller {
        with_policy(usize::from(has_instances) * 3, policy(RolloutMode::AllAtOnce, false))
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
        let command_id = c
            .store
            .fleet
            .lock()
            .unwrap()
            .lease
            .clone()
            .map(|l| c.store.releases.lock().unwrap()[&l.release_id].command_id.clone().unwrap());
        let invocations = c
            .inventory
            .instances
            .lock()
            .unwrap()
            .iter()
            .map(|i| InstanceOutcome {
                instance_id: i.id.clone(),
                status: status.into(),
                detail: status.into(),
                exit_code: Some(0),
                stdout_tail: String::new(),
                stderr_tail: String::new(),
            })
            .collect();
        c.runner.reports.lock().unwrap().insert(command_id.unwrap(), CommandReport { finished: true, invocations });
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
        let ControlError::CommandRejected { release, .. } = err else { panic!("{err:?}") };
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
        let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
        assert!(
            matches!(&err, ControlError::CommandUnconfirmed { release, .. } if release.status == ReleaseStatus::Pending),
            "{err}"
        );
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

    /// The takeover window: a release recorded by an invocation that may still be
    /// sending is left to it; only after the window does a reconcile send in its
    /// place, and then once.
    #[tokio::test]
    async fn a_live_sender_is_never_doubled_inside_the_takeover_window() {
        let mut c = controller(true);
        c.settings.takeover_after = Duration::from_secs(120);
        *c.runner.next.lock().unwrap() = SendBehaviour::Unavailable;
        let err = c.deploy(deploy(GOOD, None), T0).await.unwrap_err();
        let ControlError::CommandUnconfirmed { release, .. } = err else { panic!("{err}") };
        *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
        for at in [later(1), later(60), later(119)] {
            let report = c.reconcile(at).await.unwrap();
            assert_eq!((report.outcome, c.runner.sent_count()), ("waiting", 0), "at {at:?}");
        }
        let report = c.reconcile(later(121)).await.unwrap();
        assert_eq!(report.outcome, "dispatched");
        assert_eq!(report.release.unwrap().id, release.id);
        assert_eq!(c.runner.sent_count(), 1);
        assert_eq!(c.reconcile(later(122)).await.unwrap().outcome, "waiting", "in progress now, not sent again");
        assert_eq!(c.runner.sent_count(), 1);
    }

    /// Keys are remembered for the idempotency window (24 hours by default), then forgotten.
    #[tokio::test]
    async fn an_idempotency_key_expires_after_its_window() {
        let c = controller(true);
        let ttl = c.settings.idempotency_ttl.as_secs();
        let first = c.deploy(deploy(GOOD, Some("run-1")), T0).await.unwrap();
        let at = finish_with(&c, "Success", later(1)).await.updated_at;
        let replay = c.deploy(deploy(GOOD, Some("run-1")), T0.plus(Duration::from_secs(ttl - 1))).await.unwrap();
        assert_eq!(replay.id, first.id, "inside the window: the same release");
        assert_eq!(c.runner.sent_count(), 1);
        let after = T0.plus(Duration::from_secs(ttl + 1)).max(at);
        let again = c.deploy(deploy(GOOD, Some("run-1")), after).await.unwrap();
        assert_ne!(again.id, first.id, "past the window the key is free: a new release");
        assert_eq!(c.runner.sent_count(), 2);
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
        let err = c.rollback(RollbackRequest { target: None, idempotency_key: None }, T0).await.unwrap_err();
        assert!(matches!(err, ControlError::NoRollbackTarget(_)));

        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        assert_eq!(finish_with(&c, "Success", later(1)).await.status, ReleaseStatus::Succeeded);
        c.deploy(deploy(NEXT, None), later(2)).await.unwrap();
        assert_eq!(finish_with(&c, "Failed", later(3)).await.status, ReleaseStatus::Failed);

        let rollback = c.rollback(RollbackRequest { target: None, idempotency_key: None }, later(4)).await.unwrap();
        assert_eq!(rollback.kind, ReleaseKind::Rollback);
        assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
        assert_eq!(rollback.flakeref, good.flakeref);
        assert_eq!(c.store.releases.lock().unwrap()[&good.id].status, ReleaseStatus::Succeeded);

        // Once the rollback succeeds, the release before it is again the good one.
        finish_with(&c, "Success", later(5)).await;
        let again = c.rollback(RollbackRequest { target: None, idempotency_key: None }, later(6)).await.unwrap();
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

    pub(crate) const METRIC_NAMES: [&str; 6] =
        ["DeploysStarted", "DeploysSucceeded", "DeploysRolledBack", "FleetHalted", "RolloutDuration", "FleetIsHalted"];

    /// A good release, then one whose canary and rollback both fail (so every
    /// metric fires). Answers the time the fleet came to rest, halted.
    pub(crate) async fn deploy_and_fail_canary(c: &Controller) -> Timestamp {
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(c, T0).await;
        c.runner.failing.lock().unwrap().extend([("i-00".into(), NEXT.into()), ("i-00".into(), GOOD.into())]);
        c.deploy(deploy(NEXT, None), at).await.unwrap();
        run_out(c, at).await
    }

    pub(crate) fn staged(instances: usize) -> Controller {
        with_policy(instances, policy(RolloutMode::Staged, true))
    }

    /// A good release, then one whose canary fails on a fleet without
    /// automatic rollback: the bad release ends `failed`. Answers the time
    /// the fleet came to rest.
    pub(crate) async fn deploy_and_fail_without_rollback(instances: usize) -> Timestamp {
        let c = with_policy(instances, policy(RolloutMode::Staged, false));
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        c.runner.failing.lock().unwrap().push(("i-00".into(), NEXT.into()));
        c.deploy(deploy(NEXT, None), at).await.unwrap();
        let at = run_out(&c, at).await;
        assert_eq!(c.store.releases.lock().unwrap().values().filter(|r| r.status == ReleaseStatus::Failed).count(), 1);
        at
    }

    /// Reconciles, a second apart, until the fleet is free; answers the time.
    async fn run_out(c: &Controller, mut at: Timestamp) -> Timestamp {
        for _ in 0..100 {
            at = at.plus(Duration::from_secs(1));
            let report = c.reconcile(at).await.unwrap();
            if matches!(report.outcome, "idle" | "halted") {
                return at;
            }
        }
        panic!("the fleet never came to rest");
    }

    fn stored(c: &Controller, id: &ReleaseId) -> Release {
        c.store.releases.lock().unwrap()[id].clone()
    }

    /// How often each (release id, flakeref, instance) was sent a command.
    fn sends(c: &Controller) -> std::collections::BTreeMap<(String, String, String), usize> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, command) in c.runner.sent.lock().unwrap().iter() {
            if let CommandTarget::Instances(ids) = &command.target {
                assert!(ids.len() <= crate::domain::rollout::BATCH);
                for id in ids {
                    let release = command.comment.split_whitespace().nth(3).unwrap_or_default().to_owned();
                    *counts.entry((release, command.flakeref.to_string(), id.clone())).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    #[tokio::test]
    async fn a_staged_rollout_reaches_every_instance_once_in_waves() {
        let c = staged(10);
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        assert_eq!(release.rollout.as_ref().unwrap().waves[0].instance_ids, ["i-00"], "the canary goes first, alone");
        run_out(&c, T0).await;
        let done = stored(&c, &release.id);
        assert_eq!(done.status, ReleaseStatus::Succeeded);
        let sizes: Vec<usize> = done.rollout.unwrap().waves.iter().map(|w| w.instance_ids.len()).collect();
        assert_eq!(sizes, [1, 3, 3, 3]);
        let counts = sends(&c);
        assert_eq!(counts.len(), 10);
        assert!(counts.values().all(|n| *n == 1));
        assert_eq!(c.store.fleet.lock().unwrap().last_good_release.as_ref(), Some(&release.id));
    }

    #[tokio::test]
    async fn a_failed_canary_rolls_back_the_instances_it_reached() {
        let c = staged(10);
        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        c.runner.failing.lock().unwrap().push(("i-00".into(), NEXT.into()));
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
        assert_eq!(report.outcome, "rolled_back");
        assert_eq!(stored(&c, &bad.id).status, ReleaseStatus::RolledBack);
        run_out(&c, at.plus(Duration::from_secs(1))).await;

        let releases = c.store.releases.lock().unwrap().clone();
        let rollback = releases.values().find(|r| r.kind == ReleaseKind::Rollback).unwrap();
        assert_eq!(rollback.rollback_of.as_ref(), Some(&good.id));
        assert_eq!(rollback.flakeref, good.flakeref);
        assert_eq!(rollback.status, ReleaseStatus::Succeeded);
        assert_eq!(rollback.reached_instances(), ["i-00"]);
        let counts = sends(&c);
        assert_eq!(counts.keys().filter(|(_, f, _)| f == NEXT).count(), 1, "only the canary got the bad release");
        let fleet = c.store.fleet.lock().unwrap().clone();
        assert_eq!(fleet.desired_release.as_ref(), Some(&rollback.id));
        assert!(fleet.lease.is_none() && fleet.halted.is_none());

        // What each instance runs now: the canary the rollback, the rest the good release.
        let status = c.status(at.plus(Duration::from_secs(100))).await.unwrap();
        assert_eq!(status.instances.len(), 10);
        assert_eq!(status.instances[0].release_id.as_ref(), Some(&rollback.id));
        assert!(status.instances[1..].iter().all(|i| i.release_id.as_ref() == Some(&good.id)));
        assert!(status.instances.iter().all(|i| i.flakeref.as_ref() == Some(&good.flakeref)));
    }

    #[tokio::test]
    async fn a_failing_rollback_halts_the_fleet_and_never_loops() {
        let c = staged(4);
        let at = deploy_and_fail_canary(&c).await;
        let fleet = c.store.fleet.lock().unwrap().clone();
        let halt = fleet.halted.expect("halted");
        assert!(halt.reason.contains("rollback"), "{}", halt.reason);
        assert_eq!(stored(&c, &halt.release_id).status, ReleaseStatus::Halted);
        let sent = c.runner.sent_count();
        for n in 1..5 {
            assert_eq!(c.reconcile(at.plus(Duration::from_secs(n))).await.unwrap().outcome, "halted");
        }
        assert_eq!(c.runner.sent_count(), sent, "a halted fleet is left alone");
        // An operator's deploy lifts the halt.
        c.runner.failing.lock().unwrap().clear();
        c.deploy(deploy(GOOD, None), at.plus(Duration::from_secs(10))).await.unwrap();
        assert!(c.store.fleet.lock().unwrap().halted.is_none());
    }

    #[tokio::test]
    async fn a_rollout_past_its_deadline_is_rolled_back() {
        let c = staged(4);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        // The canary never answers.
        let canary_command = bad.rollout.as_ref().unwrap().waves[0].command_ids[0].clone();
        c.runner.reports.lock().unwrap().insert(canary_command, CommandReport { finished: false, invocations: vec![] });
        assert_eq!(c.reconcile(at.plus(Duration::from_secs(599))).await.unwrap().outcome, "waiting");
        assert_eq!(c.reconcile(at.plus(Duration::from_secs(600))).await.unwrap().outcome, "rolled_back");
        let bad = stored(&c, &bad.id);
        assert_eq!(bad.status, ReleaseStatus::RolledBack);
        assert!(bad.status_reason.unwrap().contains("deadline"));
    }

    #[tokio::test]
    async fn with_no_earlier_good_release_a_failure_halts() {
        let c = staged(3);
        c.runner.failing.lock().unwrap().push(("i-00".into(), GOOD.into()));
        let release = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        run_out(&c, T0).await;
        assert_eq!(stored(&c, &release.id).status, ReleaseStatus::Halted);
        assert!(c.store.fleet.lock().unwrap().halted.is_some());
        assert_eq!(c.store.releases.lock().unwrap().len(), 1, "no rollback without a target");
    }

    #[tokio::test]
    async fn crossing_the_failure_threshold_stops_and_rolls_back() {
        let mut rollout = policy(RolloutMode::Staged, true);
        rollout.failure_threshold = Rate::Percent(10);
        let c = with_policy(10, rollout);
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        // 30% of the fleet fails, all in the second wave.
        c.runner.failing.lock().unwrap().extend(["i-01", "i-02", "i-03"].map(|i| (i.to_string(), NEXT.to_string())));
        let bad = c.deploy(deploy(NEXT, None), at).await.unwrap();
        run_out(&c, at).await;
        let bad = stored(&c, &bad.id);
        assert_eq!(bad.status, ReleaseStatus::RolledBack);
        assert!(bad.status_reason.unwrap().contains("threshold"));
        assert_eq!(bad.rollout.unwrap().waves.len(), 2, "no third wave");
        let rolled: Vec<String> = sends(&c).keys().filter(|(_, f, _)| f == NEXT).map(|(_, _, i)| i.clone()).collect();
        assert_eq!(rolled, ["i-00", "i-01", "i-02", "i-03"]);
    }

    #[tokio::test]
    async fn repair_launches_into_free_slots_with_stable_tokens_and_reapplies_drift() {
        let mut c = staged(2);
        c.settings.spec.desired_capacity = 4;
        let good = c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        let launches = c.inventory.launches.lock().unwrap().clone();
        assert_eq!(launches.iter().map(|l| l.slot).collect::<Vec<_>>(), [2, 3]);
        assert!(launches.iter().all(|l| stored(&c, &l.release).kind == ReleaseKind::Repair
            && stored(&c, &l.release).flakeref == good.flakeref
            && l.user_data.contains(&format!("'{GOOD}'"))));
        assert_ne!(launches[0].client_token, launches[1].client_token);
        assert_eq!(c.reconcile(at).await.unwrap().outcome, "idle", "whole: nothing to do");

        // A host drifts back to no known release: it gets the good release again.
        c.inventory.instances.lock().unwrap()[0].release = None;
        let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
        assert_eq!((report.outcome, report.reapplied.as_slice()), ("repaired", ["i-00".to_string()].as_slice()));
        run_out(&c, at.plus(Duration::from_secs(1))).await;
        let repair = c
            .store
            .releases
            .lock()
            .unwrap()
            .values()
            .find(|r| r.kind == ReleaseKind::Repair && !r.instances.is_empty())
            .cloned()
            .unwrap();
        assert_eq!((repair.status, repair.flakeref.as_str()), (ReleaseStatus::Succeeded, GOOD));
        assert_eq!(c.store.fleet.lock().unwrap().desired_release.as_ref(), Some(&good.id), "a repair is not a deploy");
    }

    #[tokio::test]
    async fn a_repair_that_stopped_mid_launch_is_finished_with_the_same_tokens() {
        let mut c = staged(1);
        c.settings.spec.desired_capacity = 2;
        c.deploy(deploy(GOOD, None), T0).await.unwrap();
        let at = run_out(&c, T0).await;
        // A repair recorded its launch, then its invocation died before EC2 answered.
        let mut repair = c.new_release(Flakeref::parse(GOOD).unwrap(), None, ReleaseKind::Repair, None, at);
        repair.status = ReleaseStatus::InProgress;
        repair.rollout = Some(Rollout { fixed: true, ..Rollout::default() });
        repair.launches = vec![Launch { slot: 5, instance_id: None, error: None }];
        assert_eq!(c.store.admit(&repair, None, false, at).await.unwrap(), Admission::Admitted);
        let report = c.reconcile(at.plus(Duration::from_secs(1))).await.unwrap();
        assert_eq!(report.outcome, "finished");
        let launches = c.inventory.launches.lock().unwrap().clone();
        let last = launches.last().unwrap();
        assert_eq!((last.slot, last.client_token.clone()), (5, client_token("prod", &repair.id, 5)));
        assert_eq!(stored(&c, &repair.id).status, ReleaseStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_halted_fleet_or_one_without_a_good_release_is_not_repaired() {
        let mut c = staged(1);
        c.settings.spec.desired_capacity = 3;
        let report = c.reconcile(T0).await.unwrap();
        assert!(report.skipped.unwrap().contains("no release has succeeded"));
        assert!(c.inventory.launches.lock().unwrap().is_empty());

        let at = deploy_and_fail_canary(&c).await;
        let report = c.reconcile(at).await.unwrap();
        assert_eq!(report.outcome, "halted");
        assert!(report.skipped.unwrap().contains("halted"));
        assert!(c.inventory.launches.lock().unwrap().len() <= 2, "launched only before the halt");
    }

    mod machine {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Event {
            Tick,
            /// The next SendCommand times out, after or before it really started.
            FlakySend {
                started: bool,
            },
            Duplicate,
        }

        fn events() -> impl Strategy<Value = Vec<Event>> {
            prop::collection::vec(
                prop_oneof![
                    6 => Just(Event::Tick),
                    1 => any::<bool>().prop_map(|started| Event::FlakySend { started }),
                    1 => Just(Event::Duplicate),
                ],
                0..40,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// Whatever the order of ticks, duplicates and lost sends, a rollout
            /// ends in a final state, sends no instance the same release twice,
            /// and loses no release.
            #[test]
            fn rollouts_always_end_and_never_send_twice(
                size in 1usize..14,
                failing in prop::collection::vec(0usize..14, 0..4),
                first in events(),
                second in events(),
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let c = staged(size);
                    let mut at = T0;
                    let mut created = 0;
                    for (flakeref, key, events) in [(GOOD, "first", &first), (NEXT, "second", &second)] {
                        if flakeref == NEXT {
                            c.runner.failing.lock().unwrap().extend(failing.iter().map(|i| (format!("i-{i:02}"), NEXT.to_string())));
                        }
                        at = at.plus(Duration::from_secs(1));
                        if c.deploy(deploy(flakeref, Some(key)), at).await.is_ok() || c.store.releases.lock().unwrap().len() > created {
                            created = c.store.releases.lock().unwrap().len();
                        }
                        for event in events.iter() {
                            at = at.plus(Duration::from_secs(1));
                            match event {
                                Event::Tick => { let _ = c.reconcile(at).await; }
                                Event::Duplicate => { let _ = c.reconcile(at).await; let _ = c.reconcile(at).await; }
                                Event::FlakySend { started } => {
                                    *c.runner.next.lock().unwrap() = if *started { SendBehaviour::SendThenTimeOut } else { SendBehaviour::Unavailable };
                                    let _ = c.reconcile(at).await;
                                    *c.runner.next.lock().unwrap() = SendBehaviour::Accept;
                                }
                            }
                        }
                        at = run_out(&c, at).await;
                        let releases = c.store.releases.lock().unwrap().clone();
                        prop_assert!(releases.len() >= created, "a release was lost");
                        created = releases.len();
                        prop_assert!(releases.values().all(|r| r.status.is_final()), "{releases:?}");
                        prop_assert!(c.store.fleet.lock().unwrap().lease.is_none());
                    }
                    prop_assert!(sends(&c).values().all(|n| *n == 1), "{:?}", sends(&c));
                    Ok(())
                })?;
            }
        }
    }
}
