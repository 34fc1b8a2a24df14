//! The executor: the only code in the domain that touches the ports. It
//! carries out the planner's steps, one method per kind, and decides nothing
//! the planner has not: versions are raised, metrics emitted and the span's
//! release id recorded here, once.

mod reads;

use super::error::ControlError;
use super::model::command::{ApplyCommand, CommandTarget};
use super::model::fleet::{FleetSettings, FleetState, MachineImage};
use super::model::ids::{FleetName, ReleaseId};
use super::model::release::{Release, ReleaseKind, ReleaseStatus};
use super::model::rollout::Claim;
use super::model::store::{IdempotencyClaim, Notice, ReleasePage, Settlement, Written};
use super::model::time::Timestamp;
use super::planner::lease::{self, Admission};
use super::planner::notice;
use super::planner::reach::{drop_unreachable, refusal_stands};
use super::planner::repair::launch_request;
use super::planner::{Handover, Need, Observed, Outcome, Pass, Step};
use super::ports::{AlarmWatch, CommandRunner, FleetInventory, Ports, ReleaseStore, RunnerError, StoreError};
use std::collections::HashMap;
use tracing::{info, warn};

/// The tracing target of metric events (see `crate::telemetry`).
pub const METRICS_TARGET: &str = "flakefleet::metrics";

/// Batches of a wave sent between two writes of their command ids.
const BATCHES_PER_SAVE: usize = 10;

/// What to do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Rest { outcome: Outcome, skipped: Option<String> },
}

/// The ports of one fleet, borrowed for one invocation.
pub struct Executor<'a, P: Ports> {
    pub store: &'a P::Store,
    pub inventory: &'a P::Inventory,
    pub runner: &'a P::Runner,
    pub alarms: &'a P::Alarms,
    pub settings: &'a FleetSettings,
}

impl<P: Ports> Executor<'_, P> {
    fn fleet(&self) -> &FleetName {
        &self.settings.name
    }

    /// Carries out one step; `seen` learns what it did.
    pub async fn execute(&self, step: Step, seen: &mut Observed, pass: &Pass) -> Result<Flow, ControlError> {
        match step {
            Step::Observe(need) => self.observe(need, seen).await?,
            Step::Rest { outcome, skipped } => return Ok(Flow::Rest { outcome, skipped }),
            Step::SendFirst(command) => self.send_first(&command, seen).await?,
            Step::Cancel { requests, release } => self.cancel(&requests, *release, seen, pass).await?,
            Step::Record { release, then } => {
                let (stored, written) = self.record(*release, pass.now()).await?;
                seen.holder = Some(stored);
                seen.sent_batches = None;
                seen.log.fenced |= !written;
                seen.log.dirty = false;
                if let Some(outcome) = then {
                    return Ok(Flow::Rest { outcome, skipped: None });
                }
            }
            Step::Settle { settlement, outcome } => {
                let (stored, next) = self.settle(*settlement, pass).await?;
                seen.holder = Some(stored);
                match next {
                    Some(release) => seen.log.handed_over = Some(Handover { release, outcome, sent: false }),
                    None => return Ok(Flow::Rest { outcome, skipped: None }),
                }
            }
            Step::SendHandover => {
                let handover = seen.log.handed_over.as_mut().ok_or_else(no_holder)?;
                handover.sent = true;
                let rollback = handover.release.clone();
                // Left claimed when it fails: the reconcile takes it over once the claim lapses.
                if let Err(e) = self.send_wave(rollback.clone(), false, pass.now()).await {
                    warn!(error = %e, rollback = %rollback.id, "rollback wave not sent yet; the reconcile retries");
                }
            }
            Step::SendWave { resume } => {
                let holder = seen.holder.take().ok_or_else(no_holder)?;
                let (sent, written) = self.send_wave(holder, resume, pass.now()).await?;
                seen.log.wave_sent = true;
                seen.log.fenced |= !written;
                seen.holder = Some(sent);
            }
            Step::SendChecks => {
                let holder = seen.holder.take().ok_or_else(no_holder)?;
                let (sent, written) = self.send_checks(holder, pass.now()).await?;
                seen.log.checks_sent = true;
                seen.log.fenced |= !written;
                seen.holder = Some(sent);
            }
            Step::Launch { image } => self.launch(&image, seen).await?,
            Step::Tag(instance_ids) => {
                let holder = seen.holder.as_ref().ok_or_else(no_holder)?;
                // Best effort: an untagged instance only costs a harmless re-apply later.
                if let Err(e) = self.inventory.tag_release(&instance_ids, &holder.id).await {
                    warn!(error = %e, "could not tag instances with their release");
                }
                seen.log.tagged = true;
            }
            Step::Untag(instance_ids) => {
                // Best effort too: a host whose tag stays is left to the next
                // failure or to an operator, as before tags were forgotten.
                match self.inventory.untag_release(&instance_ids).await {
                    Ok(()) => {
                        info!(instances = instance_ids.len(), "release tag forgotten on hosts a failed release reached")
                    }
                    Err(e) => warn!(error = %e, "could not forget the release tag of hosts a failed release reached"),
                }
                seen.log.untagged = true;
            }
            Step::StartRepair { mut repair, plan } => {
                let desired = super::planner::lease::becomes_desired(&repair);
                match self.admit(&mut repair, None, desired, pass.now()).await? {
                    Admission::Admitted => {}
                    Admission::Busy { holder } => {
                        let skipped = Some(format!("release {holder} holds the fleet"));
                        return Ok(Flow::Rest { outcome: Outcome::Idle, skipped });
                    }
                    other => return Err(StoreError::Unavailable(format!("a repair was refused: {other:?}")).into()),
                }
                info!(launch = plan.launch.len(), reapply = plan.reapply.len(), "repairing the fleet");
                seen.holder = Some(*repair);
                seen.log.created_here = true;
                seen.log.started_repair = Some(plan);
            }
            Step::Corrupt(what) => return Err(StoreError::Corrupt(what).into()),
        }
        Ok(Flow::Continue)
    }

    /// Asks SSM to cancel invocations, then stores the release with those it
    /// accepted recorded as cancelled.
    async fn cancel(
        &self,
        requests: &[(String, Vec<String>)],
        mut release: Release,
        seen: &mut Observed,
        pass: &Pass,
    ) -> Result<(), ControlError> {
        for (command_id, instance_ids) in requests {
            seen.log.cancels_asked.extend(instance_ids.iter().cloned());
            // An invocation counts as cancelled only once SSM took the
            // request; a refused one is asked again by the next pass,
            // and awaited like a running one meanwhile.
            match self.runner.cancel(command_id, instance_ids).await {
                Ok(()) => {
                    info!(command_id = %command_id, instances = instance_ids.len(), "cancel requested");
                    if let Some(stopping) = release.stopping.as_mut() {
                        stopping.cancelled.extend(instance_ids.iter().cloned());
                    }
                }
                Err(e) => warn!(command_id = %command_id, error = %e, "could not cancel invocations"),
            }
        }
        let (stored, written) = self.record(release, pass.now()).await?;
        seen.holder = Some(stored);
        seen.log.fenced |= !written;
        seen.log.dirty = false;
        Ok(())
    }

    /// Reads what the planner asked for.
    async fn observe(&self, need: Need, seen: &mut Observed) -> Result<(), ControlError> {
        let target = &self.settings.target;
        match need {
            Need::FleetState => {
                let state = self.store.fleet_state(self.fleet()).await?;
                // A gauge for the halted-fleet alarm, written on every pass.
                self.metric("FleetIsHalted", "None", if state.halted.is_some() { 1.0 } else { 0.0 }, None);
                seen.fleet = Some(state);
            }
            Need::Holder(id) => {
                record_release_id(&id);
                let holder = self.store.release(self.fleet(), &id).await?;
                let what = || StoreError::Corrupt(format!("lease names release {id} which is not stored"));
                seen.holder = Some(holder.ok_or_else(what)?);
            }
            Need::SentBatches { comments, since } => {
                let mut found = Vec::new();
                for comment in &comments {
                    found.push(self.runner.find(comment, since).await?);
                }
                seen.sent_batches = Some(found);
            }
            Need::SentBefore { comment, since } => {
                let found = self.runner.find(&comment, since).await?;
                if let Some(id) = &found {
                    info!(command_id = %id, "found the command an earlier attempt sent");
                }
                seen.sent_before = Some(found);
            }
            Need::Canary(size) => {
                let mut running = self.inventory.running_instances(target, Some(size)).await?;
                running.sort();
                running.truncate(size);
                seen.canary = Some(running);
                seen.canary_limit = size;
            }
            Need::ManagedNodes(ids) => seen.nodes.extend(self.runner.managed_nodes(&ids).await?),
            Need::AnyRunning => {
                seen.any_running = Some(!self.inventory.running_instances(target, Some(1)).await?.is_empty());
            }
            Need::Report(command_id) => seen.report = Some(self.runner.report(&command_id).await?),
            Need::WaveReports(command_ids) => {
                let mut invocations = Vec::new();
                for command_id in &command_ids {
                    invocations.extend(self.runner.report(command_id).await?.invocations);
                }
                seen.wave_reports = Some(invocations);
            }
            Need::Alarms => seen.alarms = Some(self.alarms.firing(&self.settings.rollout.alarms).await?),
            Need::CheckReports(command_ids) => {
                let mut invocations = Vec::new();
                for command_id in &command_ids {
                    invocations.extend(self.runner.report(command_id).await?.invocations);
                }
                seen.check_reports = Some(invocations);
            }
            Need::Running => seen.running = Some(self.inventory.running_instances(target, None).await?),
            Need::RollbackTarget { good: Some(id), .. } => {
                seen.rollback_target = Some(self.store.release(self.fleet(), &id).await?);
            }
            Need::RollbackTarget { good: None, before } => {
                seen.rollback_target = Some(self.store.last_succeeded_before(self.fleet(), &before).await?);
            }
            Need::GoodRelease(id) => seen.good = Some(self.release(&id).await?),
            Need::FleetInstances => seen.instances = Some(self.inventory.fleet_instances(target).await?),
            Need::TaggedReleases(ids) => {
                let mut flakerefs = HashMap::new();
                for id in ids {
                    if let Some(release) = self.store.release(self.fleet(), &id).await? {
                        if release.kind == ReleaseKind::Targeted {
                            seen.tagged_targeted.insert(id.clone(), release.status);
                        }
                        flakerefs.insert(id, release.flakeref);
                    }
                }
                seen.tagged_flakerefs = Some(flakerefs);
            }
            Need::Image => {
                seen.image = Some(match self.inventory.newest_image(&self.settings.spec.image).await {
                    Ok(Some(image)) => Ok(image),
                    Ok(None) => Err(format!("no image matches {:?}", self.settings.spec.image)),
                    Err(e) => Err(e.to_string()),
                });
            }
        }
        Ok(())
    }

    async fn send_first(&self, command: &ApplyCommand, seen: &mut Observed) -> Result<(), ControlError> {
        match self.runner.send(command).await {
            Ok(id) => {
                info!(command_id = %id, "apply command sent");
                seen.log.first_send = Some(Ok(id));
                Ok(())
            }
            Err(RunnerError::Rejected(reason)) => {
                seen.log.first_send = Some(Err(reason));
                Ok(())
            }
            Err(RunnerError::NotManaged(reason)) => {
                // An agent went away since the planner looked: look again, so
                // it chooses among what is reachable now. If every target
                // still looks Online, the refusal is SSM's own and stands.
                let CommandTarget::Instances(ids) = &command.target else {
                    seen.log.first_send = Some(Err(reason));
                    return Ok(());
                };
                let fresh = self.runner.managed_nodes(ids).await?;
                if refusal_stands(&fresh) {
                    seen.log.first_send = Some(Err(reason));
                } else {
                    warn!(%reason, "a canary target is no longer a managed node; choosing again");
                }
                seen.nodes.extend(fresh);
                Ok(())
            }
            Err(RunnerError::Unavailable(reason)) => {
                warn!(%reason, "apply command not confirmed; left pending for reconcile");
                let release = Box::new(seen.holder.clone().ok_or_else(no_holder)?);
                Err(ControlError::CommandUnconfirmed { release, reason })
            }
        }
    }

    /// Launches every slot of the holder not yet launched or failed. Tokens
    /// come from the release's id and the slot, so doing this again after a
    /// crash asks EC2 for the same instances.
    async fn launch(&self, image: &Result<MachineImage, String>, seen: &mut Observed) -> Result<(), ControlError> {
        let mut repair = seen.holder.take().ok_or_else(no_holder)?;
        let slots: Vec<usize> =
            repair.launches.iter().filter(|l| l.instance_id.is_none() && l.error.is_none()).map(|l| l.slot).collect();
        for slot in slots {
            let result = match image {
                Ok(image) => {
                    let request = launch_request(self.settings, &repair, slot, image);
                    self.inventory.launch(&request).await.map_err(|e| e.to_string())
                }
                Err(why) => Err(why.clone()),
            };
            let Some(launch) = repair.launches.iter_mut().find(|l| l.slot == slot) else { continue };
            match result {
                Ok(id) => {
                    info!(instance_id = %id, slot = launch.slot, "launched");
                    seen.log.launched_ids.push(id.clone());
                    launch.instance_id = Some(id);
                }
                Err(why) => {
                    warn!(slot = launch.slot, error = %why, "launch failed; the next reconcile tries again");
                    launch.error = Some(why);
                }
            }
        }
        seen.holder = Some(repair);
        seen.log.launched = true;
        seen.log.dirty = true;
        Ok(())
    }

    /// Sends the unsent batches of the release's current wave, recording
    /// their command ids. `resume`: look for each batch's command first.
    /// Answers the release as stored, and false if a write was fenced off.
    async fn send_wave(
        &self,
        mut release: Release,
        resume: bool,
        now: Timestamp,
    ) -> Result<(Release, bool), ControlError> {
        let mut unsaved = 0;
        loop {
            let Some((wave_number, batch_number, batch)) = next_batch(&release) else {
                // The last batches' hosts all dropped out: what was dropped
                // is recorded, so the wave is judged now, not at the deadline.
                if unsaved > 0 {
                    return self.record(release, now).await;
                }
                return Ok((release, true));
            };
            let comment = release.batch_comment(wave_number, batch_number);
            let since = release.created_at.minus(super::planner::COMMAND_LOOKBACK);
            let found = if resume { self.runner.find(&comment, since).await? } else { None };
            let command_id = match found {
                Some(id) => id,
                None => {
                    let target = CommandTarget::Instances(batch.clone());
                    let command =
                        ApplyCommand { flakeref: release.flakeref.clone(), target, comment, check_only: false };
                    match self.runner.send(&command).await {
                        Ok(id) => id,
                        Err(RunnerError::NotManaged(reason)) => {
                            // An agent went away after the wave was chosen: the
                            // planner's rule drops what is not Online now, and
                            // the rest of the batch is sent.
                            let fresh = self.runner.managed_nodes(&batch).await?;
                            if !drop_unreachable(&mut release, &fresh) {
                                if unsaved > 0 {
                                    self.record(release, now).await?;
                                }
                                return Err(RunnerError::Rejected(reason).into());
                            }
                            warn!(%reason, "dropped wave targets that are no longer managed nodes");
                            unsaved += 1;
                            continue;
                        }
                        Err(e) => {
                            // Left claimed: the reconcile takes over after the claim
                            // lapses. Record what went out so it need not search for it.
                            if unsaved > 0 {
                                release = self.record(release, now).await?.0;
                            }
                            return Err(send_failed(e, release));
                        }
                    }
                }
            };
            info!(command_id = %command_id, wave = wave_number + 1, batch = batch_number + 1, "wave batch sent");
            let mut last = false;
            if let Some(wave) = release.rollout.as_mut().and_then(|r| r.waves.last_mut()) {
                wave.record_sent(command_id, now);
                last = wave.fully_sent();
            }
            unsaved += 1;
            // Command ids are written every few batches rather than after each:
            // a release of 10,000 instances is rewritten whole on every save, and
            // a batch sent but not recorded is found by its comment after a crash.
            if last || unsaved == BATCHES_PER_SAVE {
                let written;
                (release, written) = self.record(release, now).await?;
                unsaved = 0;
                if !written {
                    return Ok((release, false)); // another writer moved it on
                }
            }
        }
    }

    /// Sends the current wave's unsent end-of-bake check commands and
    /// records their ids. A check changes nothing on a host, so one sent but
    /// not recorded (a crash, a lost answer) is simply sent again.
    async fn send_checks(&self, mut release: Release, now: Timestamp) -> Result<(Release, bool), ControlError> {
        let Some(rollout) = release.rollout.as_ref() else { return Ok((release, true)) };
        let wave_number = rollout.waves.len().saturating_sub(1);
        let Some(wave) = rollout.current() else { return Ok((release, true)) };
        let sent = wave.bake.as_ref().and_then(|b| b.checks.as_ref()).map_or(0, |c| c.command_ids.len());
        let unsent: Vec<(usize, Vec<String>)> =
            wave.batches().enumerate().skip(sent).map(|(n, batch)| (n, batch.to_vec())).collect();
        for (batch_number, batch) in unsent {
            let comment = release.check_comment(wave_number, batch_number);
            let target = CommandTarget::Instances(batch);
            let command = ApplyCommand { flakeref: release.flakeref.clone(), target, comment, check_only: true };
            let command_id = match self.runner.send(&command).await {
                Ok(id) => id,
                Err(e) => return Err(send_failed(e, release)),
            };
            info!(command_id = %command_id, wave = wave_number + 1, batch = batch_number + 1, "health checks sent");
            let checks = release
                .rollout
                .as_mut()
                .and_then(|r| r.waves.last_mut())
                .and_then(|w| w.bake.as_mut())
                .and_then(|b| b.checks.as_mut());
            if let Some(checks) = checks {
                checks.command_ids.push(command_id);
            }
        }
        self.record(release, now).await
    }

    /// The rollback alarms in ALARM now (none when none are configured).
    pub async fn firing_alarms(&self) -> Result<Vec<String>, ControlError> {
        if self.settings.rollout.alarms.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.alarms.firing(&self.settings.rollout.alarms).await?)
    }

    /// Admits a new release: recorded with its notice, holding the fleet;
    /// once admitted, `release` is the release as stored.
    pub async fn admit(
        &self,
        release: &mut Release,
        claim: Option<&IdempotencyClaim>,
        desired: bool,
        now: Timestamp,
    ) -> Result<Admission, ControlError> {
        record_release_id(&release.id);
        let mut marked = release.clone();
        let notices: Vec<Notice> = notice::due(&mut marked).into_iter().collect();
        let answer = self.store.admit(&marked, &lease::lease_for(&marked), claim, desired, &notices, now).await?;
        let admission = lease::admission(answer, claim.map(|c| c.request.as_str()));
        if admission == Admission::Admitted {
            *release = marked;
            if desired {
                info!(kind = release.kind.as_str(), flakeref = %release.flakeref, "release recorded");
                self.metric("DeploysStarted", "Count", 1.0, Some(release.kind));
            }
        }
        Ok(admission)
    }

    /// Stores a release's progress; when fenced off, another writer moved it
    /// on and its record is the truth. Answers the release as stored, and
    /// whether this write won.
    pub(crate) async fn record(&self, mut release: Release, now: Timestamp) -> Result<(Release, bool), ControlError> {
        let expected = stamp(&mut release, now);
        let notices: Vec<Notice> = notice::due(&mut release).into_iter().collect();
        match self.store.save(&release, expected, &notices).await? {
            Written::Yes => Ok((release, true)),
            Written::Fenced(_) => Ok((self.release(&release.id).await?, false)),
        }
    }

    /// Settles a release; a lost lease settles it alone where the lease
    /// model allows. Answers the release as stored, and the release the
    /// settlement handed the fleet to, if one.
    async fn settle(
        &self,
        mut settlement: Settlement,
        pass: &Pass,
    ) -> Result<(Release, Option<Release>), ControlError> {
        stamp(&mut settlement.release, pass.now());
        settlement.notices.extend(notice::due(&mut settlement.release));
        if let Some(next) = settlement.fleet.as_mut().and_then(|c| c.next.as_mut()) {
            settlement.notices.extend(notice::due(&mut next.release));
        }
        let mut written = self.store.settle(&settlement).await?;
        if written == Written::Fenced(super::model::store::Fence::LeaseLost) {
            if let Some(alone) = lease::settle_without_lease(&settlement) {
                settlement = alone;
                written = self.store.settle(&settlement).await?;
            }
        }
        if written != Written::Yes {
            return Ok((self.release(&settlement.release.id).await?, None));
        }
        let release = &settlement.release;
        info!(
            status = release.status.as_str(),
            reason = release.status_reason.as_deref().unwrap_or(""),
            "release finished"
        );
        self.settled_metrics(release, pass.now());
        let change = settlement.fleet.unwrap_or_default();
        if let Some(halt) = &change.halt {
            warn!(reason = %halt, "fleet halted: no automatic action until an operator deploys or rolls back");
        }
        let next = change.next.map(|n| n.release);
        if let Some(rollback) = &next {
            info!(rollback = %rollback.id, to = ?rollback.rollback_of, "automatic rollback started");
        }
        Ok((settlement.release, next))
    }

    fn settled_metrics(&self, release: &Release, now: Timestamp) {
        let name = match release.status {
            ReleaseStatus::Succeeded => "DeploysSucceeded",
            ReleaseStatus::Failed => "DeploysFailed",
            ReleaseStatus::RolledBack => "DeploysRolledBack",
            ReleaseStatus::Halted => "FleetHalted",
            _ => return,
        };
        self.metric(name, "Count", 1.0, Some(release.kind));
        let duration = now.millis().saturating_sub(release.created_at.millis());
        self.metric("RolloutDuration", "Milliseconds", duration as f64, Some(release.kind));
    }

    /// One CloudWatch metric (written by `telemetry::EmfLayer`): a metric of the fleet; one about a release also carries its kind
    /// (deploy, rollback, repair, targeted) as a second dimension set.
    fn metric(&self, metric: &'static str, unit: &'static str, value: f64, kind: Option<ReleaseKind>) {
        let kind = kind.map(ReleaseKind::as_str);
        info!(target: METRICS_TARGET, metric, unit, value, fleet = self.fleet().as_str(), kind);
    }
}

/// The wave number, batch number and instances of the release's next unsent batch.
fn next_batch(release: &Release) -> Option<(usize, usize, Vec<String>)> {
    let rollout = release.rollout.as_ref()?;
    let wave = rollout.current()?;
    let batch_number = wave.command_ids.len();
    let batch = wave.batches().nth(batch_number)?.to_vec();
    Some((rollout.waves.len() - 1, batch_number, batch))
}

/// Raises a release's version for a write; answers the version it was read at.
fn stamp(release: &mut Release, now: Timestamp) -> u64 {
    let expected = release.version;
    release.version += 1;
    release.updated_at = now;
    expected
}

/// A send that failed: one whose answer is unclear (it may have gone out)
/// says so, with the release as it stands, whatever asked for it.
fn send_failed(e: RunnerError, release: Release) -> ControlError {
    match e {
        RunnerError::Unavailable(reason) => ControlError::CommandUnconfirmed { release: Box::new(release), reason },
        other => other.into(),
    }
}

fn no_holder() -> ControlError {
    StoreError::Corrupt("a step on a release was planned without one".into()).into()
}

pub fn record_release_id(id: &ReleaseId) {
    tracing::Span::current().record("release_id", id.as_str());
}

/// A fresh claim token for one invocation.
pub fn invocation_claim(now: Timestamp) -> Claim {
    Claim::new(format!("{:016x}", fastrand::u64(..)), now)
}
