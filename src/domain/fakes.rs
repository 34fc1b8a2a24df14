//! In-memory ports for the domain's unit tests.

use super::model::command::*;
use super::model::fleet::{FleetInstance, FleetState, Halt, ImageSelector, InstanceState, Lease, MachineImage};
use super::model::ids::{FleetName, ReleaseId, TargetTag};
use super::model::outcome::{InstanceOutcome, InvocationState, PingStatus};
use super::model::release::{Release, ReleaseKind};
use super::model::store::*;
use super::model::time::Timestamp;
use super::ports::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Where concurrent invocations in one test interleave: off by default;
/// seeded, every port call first yields to the other invocations 0 to 2 times,
/// so `join!` of several use cases explores one interleaving per seed.
#[derive(Default)]
pub struct Yields(Mutex<Option<fastrand::Rng>>);

impl Yields {
    /// Interleaves from now on with this seed; `None`: never yields.
    pub fn set(&self, seed: Option<u64>) {
        *self.0.lock().unwrap() = seed.map(fastrand::Rng::with_seed);
    }

    async fn point(&self) {
        let times = self.0.lock().unwrap().as_mut().map_or(0, |rng| rng.usize(0..3));
        for _ in 0..times {
            tokio::task::yield_now().await;
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    pub releases: Mutex<BTreeMap<ReleaseId, Release>>,
    pub fleet: Mutex<FleetState>,
    claims: Mutex<HashMap<String, (ReleaseId, String, Timestamp)>>,
    /// Notices written, in the order they were written: what the table's
    /// stream carries to the bus on AWS.
    pub notices: Mutex<Vec<Notice>>,
    /// The next this many writes fail as DynamoDB's do when other
    /// transactions hold their items (after the adapter's retries): busy,
    /// nothing written.
    pub busy_writes: Mutex<usize>,
    /// Writes that go through before `busy_writes` start to count.
    pub busy_after: Mutex<usize>,
    pub yields: Yields,
}

impl MemoryStore {
    fn busy(&self) -> Result<(), StoreError> {
        let mut after = self.busy_after.lock().unwrap();
        if *after > 0 {
            *after -= 1;
            return Ok(());
        }
        let mut busy = self.busy_writes.lock().unwrap();
        if *busy == 0 {
            return Ok(());
        }
        *busy -= 1;
        Err(StoreError::Busy("TransactionConflict (scripted)".into()))
    }
}

impl ReleaseStore for MemoryStore {
    async fn admit(
        &self,
        release: &Release,
        lease: &Lease,
        claim: Option<&IdempotencyClaim>,
        desired: bool,
        notices: &[Notice],
        now: Timestamp,
    ) -> Result<Admitted, StoreError> {
        self.yields.point().await;
        self.busy()?;
        let mut claims = self.claims.lock().unwrap();
        let mut fleet = self.fleet.lock().unwrap();
        let mut releases = self.releases.lock().unwrap();
        // Every condition is checked, as one DynamoDB transaction reports each.
        let mut conflicts = Vec::new();
        if releases.contains_key(&release.id) {
            conflicts.push(AdmitConflict::IdTaken);
        }
        if let Some(lease) = &fleet.lease {
            conflicts.push(AdmitConflict::LeaseHeld { holder: lease.release_id.clone() });
        }
        if let Some((id, request, _)) = claim.and_then(|c| claims.get(c.key.as_str())).filter(|(_, _, e)| *e > now) {
            conflicts.push(AdmitConflict::KeyUsed { release_id: id.clone(), request: request.clone() });
        }
        if !conflicts.is_empty() {
            return Ok(Admitted::Refused(conflicts));
        }
        if release.kind == ReleaseKind::Rollback && release.replaces != fleet.desired_release {
            return Err(StoreError::Busy("the fleet's desired release changed since the rollback read it".into()));
        }
        releases.insert(release.id.clone(), release.clone());
        if desired {
            fleet.desired_release = Some(release.id.clone());
            fleet.halted = None;
        }
        fleet.lease = Some(lease.clone());
        if let Some(c) = claim {
            claims.insert(c.key.as_str().to_owned(), (release.id.clone(), c.request.clone(), c.expires_at));
        }
        self.notices.lock().unwrap().extend_from_slice(notices);
        Ok(Admitted::Yes)
    }

    async fn release(&self, _: &FleetName, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
        self.yields.point().await;
        Ok(self.releases.lock().unwrap().get(id).cloned())
    }

    async fn releases(&self, _: &FleetName, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, StoreError> {
        self.yields.point().await;
        let releases: Vec<Release> = self
            .releases
            .lock()
            .unwrap()
            .values()
            .rev()
            .filter(|r| after.is_none_or(|a| &r.id < a))
            .take(limit as usize)
            .cloned()
            .collect();
        Ok(ReleasePage { next: releases.last().map(|r| r.id.clone()), releases })
    }

    async fn last_succeeded_before(&self, _: &FleetName, before: &ReleaseId) -> Result<Option<Release>, StoreError> {
        self.yields.point().await;
        let releases = self.releases.lock().unwrap();
        Ok(releases.values().rev().find(|r| &r.id < before && r.is_rollback_target()).cloned())
    }

    async fn replaced_by(&self, _: &FleetName, id: &ReleaseId) -> Result<Option<ReleaseId>, StoreError> {
        self.yields.point().await;
        let releases = self.releases.lock().unwrap();
        Ok(releases.values().find(|r| r.replaces.as_ref() == Some(id)).map(|r| r.id.clone()))
    }

    async fn fleet_state(&self, _: &FleetName) -> Result<FleetState, StoreError> {
        self.yields.point().await;
        Ok(self.fleet.lock().unwrap().clone())
    }

    async fn save(&self, release: &Release, expected_version: u64, notices: &[Notice]) -> Result<Written, StoreError> {
        self.yields.point().await;
        self.busy()?;
        let mut fleet = self.fleet.lock().unwrap();
        let mut releases = self.releases.lock().unwrap();
        if releases.get(&release.id).is_none_or(|r| r.version != expected_version) {
            return Ok(Written::Fenced(Fence::StaleVersion));
        }
        if !holds_lease(&fleet, &release.id) {
            return Ok(Written::Fenced(Fence::LeaseLost));
        }
        // The lease's deadline follows the release's (a pause moves it).
        if let Some(lease) = fleet.lease.as_mut() {
            lease.deadline = release.deadline;
        }
        releases.insert(release.id.clone(), release.clone());
        self.notices.lock().unwrap().extend_from_slice(notices);
        Ok(Written::Yes)
    }

    async fn settle(&self, s: &Settlement) -> Result<Written, StoreError> {
        self.yields.point().await;
        self.busy()?;
        let mut fleet = self.fleet.lock().unwrap();
        let mut releases = self.releases.lock().unwrap();
        let release = &s.release;
        if releases.get(&release.id).is_none_or(|r| r.version != s.expected_version) {
            return Ok(Written::Fenced(Fence::StaleVersion));
        }
        if let Some(change) = &s.fleet {
            if !holds_lease(&fleet, &release.id) {
                return Ok(Written::Fenced(Fence::LeaseLost));
            }
            if change.next.as_ref().is_some_and(|n| releases.contains_key(&n.release.id)) {
                return Ok(Written::Fenced(Fence::AlreadyExists));
            }
            if change.last_good {
                fleet.last_good_release = Some(release.id.clone());
            }
            if let Some(reason) = &change.halt {
                fleet.halted = Some(Halt { release_id: release.id.clone(), reason: reason.clone() });
            }
            fleet.lease = change.next.as_ref().map(|n| n.lease.clone());
            if let Some(next) = &change.next {
                fleet.desired_release = Some(next.release.id.clone());
                releases.insert(next.release.id.clone(), next.release.clone());
            }
        }
        releases.insert(release.id.clone(), release.clone());
        self.notices.lock().unwrap().extend_from_slice(&s.notices);
        Ok(Written::Yes)
    }
}

fn holds_lease(fleet: &FleetState, id: &ReleaseId) -> bool {
    fleet.lease.as_ref().is_some_and(|l| &l.release_id == id)
}

/// A fleet of instances in memory: launches add to it, tags are kept.
#[derive(Default)]
pub struct MemoryFleet {
    pub instances: Mutex<Vec<FleetInstance>>,
    pub launches: Mutex<Vec<LaunchRequest>>,
    pub image: Option<MachineImage>,
    pub yields: Yields,
}

impl MemoryFleet {
    pub fn of(count: usize) -> Self {
        let instances = (0..count)
            .map(|i| FleetInstance {
                id: format!("i-{i:02}"),
                state: InstanceState::Running,
                slot: Some(i),
                release: None,
            })
            .collect();
        let image =
            MachineImage { id: "ami-nixos".into(), root_device: "/dev/xvda".into(), root_snapshot_gib: Some(8) };
        Self {
            instances: Mutex::new(instances),
            launches: Mutex::default(),
            image: Some(image),
            yields: Yields::default(),
        }
    }
}

impl FleetInventory for MemoryFleet {
    async fn running_instances(&self, _: &TargetTag, limit: Option<usize>) -> Result<Vec<String>, InventoryError> {
        self.yields.point().await;
        let instances = self.instances.lock().unwrap();
        let running = instances.iter().filter(|i| i.state == InstanceState::Running).map(|i| i.id.clone());
        Ok(running.take(limit.unwrap_or(usize::MAX)).collect())
    }

    async fn fleet_instances(&self, _: &TargetTag) -> Result<Vec<FleetInstance>, InventoryError> {
        self.yields.point().await;
        Ok(self.instances.lock().unwrap().clone())
    }

    async fn newest_image(&self, _: &ImageSelector) -> Result<Option<MachineImage>, InventoryError> {
        self.yields.point().await;
        Ok(self.image.clone())
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<String, InventoryError> {
        self.yields.point().await;
        let mut instances = self.instances.lock().unwrap();
        let id = format!("i-new{:02}", instances.len());
        instances.push(FleetInstance {
            id: id.clone(),
            state: InstanceState::Running,
            slot: Some(request.slot),
            release: None,
        });
        self.launches.lock().unwrap().push(request.clone());
        Ok(id)
    }

    async fn tag_release(&self, instance_ids: &[String], release: &ReleaseId) -> Result<(), InventoryError> {
        self.yields.point().await;
        for instance in self.instances.lock().unwrap().iter_mut().filter(|i| instance_ids.contains(&i.id)) {
            instance.release = Some(release.clone());
        }
        Ok(())
    }

    async fn untag_release(&self, instance_ids: &[String]) -> Result<(), InventoryError> {
        self.yields.point().await;
        for instance in self.instances.lock().unwrap().iter_mut().filter(|i| instance_ids.contains(&i.id)) {
            instance.release = None;
        }
        Ok(())
    }
}

/// An invocation's status and details, as reported.
type Reported = (&'static str, &'static str);

/// What the next SendCommand does.
#[derive(Clone, Debug)]
pub enum SendBehaviour {
    Accept,
    Reject,
    /// Times out after the command really started (an ambiguous failure).
    SendThenTimeOut,
    /// Times out before anything was sent.
    Unavailable,
}

pub struct ScriptedRunner {
    pub sent: Mutex<Vec<(String, ApplyCommand)>>,
    pub next: Mutex<SendBehaviour>,
    /// Reports by command id; commands to instance ids without one are
    /// reported finished, each instance a Success unless listed in `failing`.
    pub reports: Mutex<HashMap<String, CommandReport>>,
    /// (instance id, flakeref) pairs whose apply fails.
    pub failing: Mutex<Vec<(String, String)>>,
    /// (instance id, flakeref) pairs whose health checks fail when a bake's
    /// check command runs them (the apply itself passed them).
    pub unhealthy: Mutex<Vec<(String, String)>>,
    /// Managed-node statuses; an instance not listed is Online. As SSM: a
    /// send naming an unregistered or inactive node is refused whole, one to
    /// a node that lost its connection is accepted and never delivered.
    pub agents: Mutex<HashMap<String, PingStatus>>,
    /// Agents that change just as the next send arrives (after the planner checked).
    pub agents_on_send: Mutex<Vec<(String, PingStatus)>>,
    /// CancelCommand calls: (command id, instance ids).
    pub cancels: Mutex<Vec<(String, Vec<String>)>>,
    /// Applies that take a while: ((instance id, flakeref), ticks). Time
    /// here is the runner's own clock, one tick per report asked for; such
    /// an apply ends that many ticks after its send, whoever looks.
    pub slow: Mutex<HashMap<(String, String), usize>>,
    clock: Mutex<usize>,
    /// The tick each command was sent at, by command id.
    sent_at: Mutex<HashMap<String, usize>>,
    /// What each host runs: the flakeref of its last apply that succeeded,
    /// in the order the applies ended.
    pub hosts: Mutex<HashMap<String, String>>,
    ended: Mutex<std::collections::HashSet<(String, String)>>,
    /// Invocations whose host's agent was there at the send, by (command id,
    /// instance id): they run to their end on the host, whatever happens to
    /// the agent after (the script runs on without it).
    delivered: Mutex<std::collections::HashSet<(String, String)>>,
    /// How an invocation that started reports while its agent is away. As
    /// AWS documents it (false): In Progress until the agent is back and
    /// reports how it ended. As the simulator once did (true): Undeliverable
    /// once it has been reported running, though it runs on. Flakefleet must
    /// be safe either way.
    pub lost_reports_undeliverable: std::sync::atomic::AtomicBool,
    /// Invocations reported In Progress at least once.
    reported_running: Mutex<std::collections::HashSet<(String, String)>>,
    /// Invocations reported in a terminal state, and which: it stands.
    reported_final: Mutex<HashMap<(String, String), Reported>>,
    pub yields: Yields,
}

impl Default for ScriptedRunner {
    fn default() -> Self {
        Self {
            sent: Mutex::default(),
            next: Mutex::new(SendBehaviour::Accept),
            reports: Mutex::default(),
            failing: Mutex::default(),
            unhealthy: Mutex::default(),
            agents: Mutex::default(),
            agents_on_send: Mutex::default(),
            cancels: Mutex::default(),
            slow: Mutex::default(),
            clock: Mutex::default(),
            sent_at: Mutex::default(),
            hosts: Mutex::default(),
            ended: Mutex::default(),
            delivered: Mutex::default(),
            reported_running: Mutex::default(),
            reported_final: Mutex::default(),
            lost_reports_undeliverable: std::sync::atomic::AtomicBool::new(false),
            yields: Yields::default(),
        }
    }
}

impl ScriptedRunner {
    pub fn sent_count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    pub fn set_agent(&self, instance_id: &str, status: PingStatus) {
        self.agents.lock().unwrap().insert(instance_id.to_owned(), status);
    }

    fn agent(&self, instance_id: &str) -> PingStatus {
        self.agents.lock().unwrap().get(instance_id).cloned().unwrap_or(PingStatus::Online)
    }

    /// The command reaches the hosts whose agent is there now.
    fn deliver(&self, command_id: &str, command: &ApplyCommand) {
        let CommandTarget::Instances(ids) = &command.target else { return };
        let mut delivered = self.delivered.lock().unwrap();
        for id in ids.iter().filter(|id| self.agent(id) == PingStatus::Online) {
            delivered.insert((command_id.to_owned(), id.clone()));
        }
    }
}

impl ScriptedRunner {
    /// When each apply ends, by (command id, instance id): its send's tick
    /// plus its slowness, but never before the apply sent to that host before
    /// it ended. A host runs one apply at a time, as the document's lock
    /// makes a real one do (a later apply waits for the one running).
    fn schedule(&self) -> HashMap<(String, String), usize> {
        let sent_at = self.sent_at.lock().unwrap();
        let slow = self.slow.lock().unwrap();
        let mut host_free: HashMap<&str, usize> = HashMap::new();
        let mut ends = HashMap::new();
        let sent = self.sent.lock().unwrap();
        for (command_id, command) in sent.iter() {
            let CommandTarget::Instances(ids) = &command.target else { continue };
            if command.check_only {
                continue; // a check applies nothing
            }
            let start = sent_at.get(command_id).copied().unwrap_or(0);
            for id in ids {
                let own = slow.get(&(id.clone(), command.flakeref.to_string())).copied().unwrap_or(0);
                let end = start.max(host_free.get(id.as_str()).copied().unwrap_or(0)) + own;
                host_free.insert(id.as_str(), end);
                ends.insert((command_id.clone(), id.clone()), end);
            }
        }
        ends
    }

    /// Every apply that has ended by `now` changes its host, in the order
    /// they ended: the last to end wins, as on a real host.
    fn end_applies(&self, now: usize) {
        let schedule = self.schedule();
        let mut ending = Vec::new();
        for (seq, (command_id, command)) in self.sent.lock().unwrap().iter().enumerate() {
            let CommandTarget::Instances(ids) = &command.target else { continue };
            if command.check_only {
                continue;
            }
            for id in ids {
                let end = schedule[&(command_id.clone(), id.clone())];
                if end <= now && !self.ended.lock().unwrap().contains(&(command_id.clone(), id.clone())) {
                    ending.push((end, seq, command_id.clone(), id.clone(), command.flakeref.to_string()));
                }
            }
        }
        ending.sort();
        for (_, _, command_id, id, flakeref) in ending {
            let fails = self.failing.lock().unwrap().iter().any(|(i, f)| i == &id && f == &flakeref);
            let delivered = self.delivered.lock().unwrap().contains(&(command_id.clone(), id.clone()));
            self.ended.lock().unwrap().insert((command_id, id.clone()));
            if !fails && delivered {
                self.hosts.lock().unwrap().insert(id, flakeref);
            }
        }
    }
}

impl CommandRunner for ScriptedRunner {
    async fn send(&self, command: &ApplyCommand) -> Result<String, RunnerError> {
        self.yields.point().await;
        let behaviour = self.next.lock().unwrap().clone();
        for (id, status) in self.agents_on_send.lock().unwrap().drain(..) {
            self.set_agent(&id, status);
        }
        if let CommandTarget::Instances(ids) = &command.target {
            let refused: Vec<&String> = ids
                .iter()
                .filter(|id| matches!(self.agent(id), PingStatus::NotRegistered | PingStatus::Inactive))
                .collect();
            if !refused.is_empty() {
                return Err(RunnerError::NotManaged(format!("InvalidInstanceId: {refused:?}")));
            }
        }
        let mut sent = self.sent.lock().unwrap();
        let id = format!("cmd-{}", sent.len() + 1);
        self.sent_at.lock().unwrap().insert(id.clone(), *self.clock.lock().unwrap());
        match behaviour {
            SendBehaviour::Accept => {
                sent.push((id.clone(), command.clone()));
                self.deliver(&id, command);
                Ok(id)
            }
            SendBehaviour::Reject => Err(RunnerError::Rejected("InvalidDocument: no such document".into())),
            SendBehaviour::SendThenTimeOut => {
                sent.push((id.clone(), command.clone()));
                self.deliver(&id, command);
                Err(RunnerError::Unavailable("timed out".into()))
            }
            SendBehaviour::Unavailable => Err(RunnerError::Unavailable("connection refused".into())),
        }
    }

    async fn find(&self, comment: &str, _: Timestamp) -> Result<Option<String>, RunnerError> {
        self.yields.point().await;
        Ok(self.sent.lock().unwrap().iter().find(|(_, c)| c.comment == comment).map(|(id, _)| id.clone()))
    }

    async fn report(&self, command_id: &str) -> Result<CommandReport, RunnerError> {
        self.yields.point().await;
        if let Some(report) = self.reports.lock().unwrap().get(command_id) {
            return Ok(report.clone());
        }
        let now = {
            let mut clock = self.clock.lock().unwrap();
            *clock += 1;
            *clock
        };
        self.end_applies(now);
        let schedule = self.schedule();
        let sent = self.sent.lock().unwrap();
        let Some((_, command)) = sent.iter().find(|(id, _)| id == command_id) else {
            return Err(RunnerError::Rejected(format!("InvalidCommandId: {command_id}")));
        };
        let CommandTarget::Instances(ids) = &command.target else {
            return Ok(CommandReport { finished: false, invocations: vec![] });
        };
        if command.check_only {
            // The document's check: the host must run this release, and pass its checks.
            let hosts = self.hosts.lock().unwrap();
            let unhealthy = self.unhealthy.lock().unwrap();
            let invocations: Vec<InstanceOutcome> = ids
                .iter()
                .map(|id| {
                    let runs = hosts.get(id).is_some_and(|f| f == command.flakeref.as_str());
                    let sick = unhealthy.iter().any(|(i, f)| i == id && f == command.flakeref.as_str());
                    let verdict = match (self.agent(id), runs, sick) {
                        (PingStatus::Online, true, false) => None,
                        (PingStatus::Online, false, _) => Some("flakefleet: not running this release"),
                        (PingStatus::Online, true, true) => {
                            Some("flakefleet: health check web failed 5 times; its last answer: HTTP 500")
                        }
                        _ => Some(""),
                    };
                    let (status, detail) = match (self.agent(id), verdict) {
                        (PingStatus::Online, None) => ("Success", "Success"),
                        (PingStatus::Online, Some(_)) => ("Failed", "Failed"),
                        _ => ("Failed", "Undeliverable"),
                    };
                    InstanceOutcome {
                        instance_id: id.clone(),
                        status: status.into(),
                        detail: detail.into(),
                        exit_code: (detail != "Undeliverable").then_some(i32::from(verdict.is_some())),
                        stdout_tail: String::new(),
                        stderr_tail: verdict.unwrap_or_default().to_owned(),
                        output_note: None,
                        started: false,
                    }
                })
                .collect();
            return Ok(CommandReport { finished: true, invocations });
        }
        let running = |id: &String| now < schedule[&(command_id.to_owned(), id.clone())];
        let failing = self.failing.lock().unwrap();
        let delivered = self.delivered.lock().unwrap();
        let lost_undeliverable = self.lost_reports_undeliverable.load(std::sync::atomic::Ordering::Relaxed);
        let mut reported_running = self.reported_running.lock().unwrap();
        let mut reported_final = self.reported_final.lock().unwrap();
        let invocations = ids
            .iter()
            .map(|id| {
                let fails = failing.iter().any(|(i, f)| i == id && f == command.flakeref.as_str());
                let key = (command_id.to_owned(), id.clone());
                let (status, detail) = if let Some(reported) = reported_final.get(&key) {
                    *reported // a terminal state stands
                } else if !delivered.contains(&key) {
                    ("Failed", "Undeliverable")
                } else if self.agent(id) != PingStatus::Online {
                    // It runs, or ran, on its host without the agent.
                    if lost_undeliverable && reported_running.contains(&key) {
                        ("Failed", "Undeliverable")
                    } else {
                        ("InProgress", "In Progress")
                    }
                } else if running(id) {
                    ("InProgress", "In Progress")
                } else if fails {
                    ("Failed", "Failed")
                } else {
                    ("Success", "Success")
                };
                if status == "InProgress" {
                    reported_running.insert(key);
                } else {
                    reported_final.insert(key, (status, detail));
                }
                InstanceOutcome {
                    instance_id: id.clone(),
                    status: status.into(),
                    detail: detail.into(),
                    exit_code: (!matches!(detail, "Undeliverable" | "In Progress")).then_some(i32::from(fails)),
                    stdout_tail: String::new(),
                    stderr_tail: String::new(),
                    output_note: None,
                    started: false,
                }
            })
            .collect::<Vec<InstanceOutcome>>();
        Ok(CommandReport { finished: invocations.iter().all(InstanceOutcome::is_finished), invocations })
    }

    /// As SSM: an invocation not yet started ends Cancelled; one running is
    /// left to finish (a scripted report says how).
    async fn cancel(&self, command_id: &str, instance_ids: &[String]) -> Result<(), RunnerError> {
        self.yields.point().await;
        self.cancels.lock().unwrap().push((command_id.to_owned(), instance_ids.to_vec()));
        if let Some(report) = self.reports.lock().unwrap().get_mut(command_id) {
            for invocation in report.invocations.iter_mut().filter(|i| instance_ids.contains(&i.instance_id)) {
                if matches!(invocation.status, InvocationState::Pending | InvocationState::Delayed) {
                    (invocation.status, invocation.detail) = (InvocationState::Cancelled, "Cancelled".into());
                }
            }
            report.finished = report.invocations.iter().all(InstanceOutcome::is_finished);
        }
        Ok(())
    }

    async fn managed_nodes(&self, instance_ids: &[String]) -> Result<HashMap<String, PingStatus>, RunnerError> {
        self.yields.point().await;
        Ok(instance_ids.iter().map(|id| (id.clone(), self.agent(id))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures;
    use crate::domain::model::flakeref::Flakeref;
    use crate::domain::model::release::ReleaseKind;
    use crate::domain::model::rollout::RolloutMode;
    use crate::domain::planner::new_release;

    #[tokio::test]
    async fn the_memory_store_keeps_the_store_contract() {
        let now = fixtures::T0;
        let settings = fixtures::settings(fixtures::policy(RolloutMode::AllAtOnce, true));
        let flakeref = Flakeref::parse(fixtures::GOOD).unwrap();
        let id = ReleaseId::generate(now, 0);
        let template = new_release(&settings, id, flakeref, None, ReleaseKind::Deploy, None, now);
        crate::domain::contract::check(&MemoryStore::default(), &template, now).await;
    }
}

/// Rollback alarms as CloudWatch would answer: the names in `firing` are in
/// ALARM; a name in `unknown` does not exist.
#[derive(Default)]
pub struct MemoryAlarms {
    pub firing: Mutex<Vec<String>>,
    pub unknown: Mutex<Vec<String>>,
    pub yields: Yields,
}

impl AlarmWatch for MemoryAlarms {
    async fn firing(&self, names: &[String]) -> Result<Vec<String>, AlarmError> {
        self.yields.point().await;
        let unknown: Vec<String> = names.iter().filter(|n| self.unknown.lock().unwrap().contains(n)).cloned().collect();
        if !unknown.is_empty() {
            return Err(AlarmError::Unknown(unknown));
        }
        Ok(names.iter().filter(|n| self.firing.lock().unwrap().contains(n)).cloned().collect())
    }
}
