//! In-memory ports for the domain's unit tests.

use super::fleet::{FleetName, FleetState, Lease, TargetTag};
use super::ports::*;
use super::release::{Release, ReleaseId, ReleaseStatus};
use super::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    pub releases: Mutex<BTreeMap<ReleaseId, Release>>,
    pub fleet: Mutex<FleetState>,
    claims: Mutex<HashMap<String, (ReleaseId, String, Timestamp)>>,
}

impl ReleaseStore for MemoryStore {
    async fn admit(
        &self,
        release: &Release,
        claim: Option<&IdempotencyClaim>,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let mut claims = self.claims.lock().unwrap();
        if let Some(c) = claim {
            if let Some((id, request, expires)) = claims.get(c.key.as_str()) {
                if *expires > now {
                    return Ok(Admission::Replay {
                        release_id: id.clone(),
                        same_request: *request == c.request,
                    });
                }
            }
        }
        let mut fleet = self.fleet.lock().unwrap();
        if let Some(lease) = fleet.live_lease(now) {
            return Ok(Admission::Busy {
                holder: lease.release_id.clone(),
            });
        }
        let mut releases = self.releases.lock().unwrap();
        if releases.contains_key(&release.id) {
            return Err(StoreError::Unavailable("duplicate id".into()));
        }
        releases.insert(release.id.clone(), release.clone());
        fleet.desired_release = Some(release.id.clone());
        fleet.lease = Some(Lease {
            release_id: release.id.clone(),
            expires_at: release.deadline,
        });
        if let Some(c) = claim {
            claims.insert(
                c.key.as_str().to_owned(),
                (release.id.clone(), c.request.clone(), c.expires_at),
            );
        }
        Ok(Admission::Admitted)
    }

    async fn release(&self, _: &FleetName, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
        Ok(self.releases.lock().unwrap().get(id).cloned())
    }

    async fn releases(&self, _: &FleetName, limit: u32, after: Option<&ReleaseId>) -> Result<ReleasePage, StoreError> {
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
        Ok(ReleasePage {
            next: releases.last().map(|r| r.id.clone()),
            releases,
        })
    }

    async fn last_succeeded_before(&self, _: &FleetName, before: &ReleaseId) -> Result<Option<Release>, StoreError> {
        let releases = self.releases.lock().unwrap();
        Ok(releases
            .values()
            .rev()
            .find(|r| &r.id < before && r.status == ReleaseStatus::Succeeded)
            .cloned())
    }

    async fn fleet_state(&self, _: &FleetName) -> Result<FleetState, StoreError> {
        Ok(self.fleet.lock().unwrap().clone())
    }

    async fn record_command(&self, release: &Release) -> Result<bool, StoreError> {
        self.update_if(release, |r| r.status == ReleaseStatus::Pending)
    }

    async fn record_progress(&self, release: &Release) -> Result<bool, StoreError> {
        self.update_if(release, |r| r.status == ReleaseStatus::InProgress)
    }

    async fn finish(&self, release: &Release) -> Result<bool, StoreError> {
        let done = self.update_if(release, |r| !r.status.is_final())?;
        let mut fleet = self.fleet.lock().unwrap();
        if done && fleet.lease.as_ref().is_some_and(|l| l.release_id == release.id) {
            fleet.lease = None;
        }
        Ok(done)
    }
}

impl MemoryStore {
    fn update_if(&self, release: &Release, condition: impl Fn(&Release) -> bool) -> Result<bool, StoreError> {
        let mut releases = self.releases.lock().unwrap();
        let stored = releases
            .get_mut(&release.id)
            .ok_or_else(|| StoreError::Corrupt("missing".into()))?;
        if !condition(stored) {
            return Ok(false);
        }
        // Identity never changes; only progress is written.
        stored.status = release.status;
        stored.status_reason = release.status_reason.clone();
        stored.command_id = release.command_id.clone();
        stored.instances = release.instances.clone();
        stored.updated_at = release.updated_at;
        Ok(true)
    }
}

pub struct FixedInventory(pub bool);

impl FleetInventory for FixedInventory {
    async fn has_running_instances(&self, _: &TargetTag) -> Result<bool, InventoryError> {
        Ok(self.0)
    }
}

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
    pub reports: Mutex<HashMap<String, CommandReport>>,
}

impl Default for ScriptedRunner {
    fn default() -> Self {
        Self {
            sent: Mutex::default(),
            next: Mutex::new(SendBehaviour::Accept),
            reports: Mutex::default(),
        }
    }
}

impl ScriptedRunner {
    pub fn sent_count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl CommandRunner for ScriptedRunner {
    async fn send(&self, command: &ApplyCommand) -> Result<String, RunnerError> {
        let behaviour = self.next.lock().unwrap().clone();
        let mut sent = self.sent.lock().unwrap();
        let id = format!("cmd-{}", sent.len() + 1);
        match behaviour {
            SendBehaviour::Accept => {
                sent.push((id.clone(), command.clone()));
                Ok(id)
            }
            SendBehaviour::Reject => Err(RunnerError::Rejected("InvalidDocument: no such document".into())),
            SendBehaviour::SendThenTimeOut => {
                sent.push((id, command.clone()));
                Err(RunnerError::Unavailable("timed out".into()))
            }
            SendBehaviour::Unavailable => Err(RunnerError::Unavailable("connection refused".into())),
        }
    }

    async fn find(&self, comment: &str, _: Timestamp) -> Result<Option<String>, RunnerError> {
        Ok(self
            .sent
            .lock()
            .unwrap()
            .iter()
            .find(|(_, c)| c.comment == comment)
            .map(|(id, _)| id.clone()))
    }

    async fn report(&self, command_id: &str) -> Result<CommandReport, RunnerError> {
        Ok(self
            .reports
            .lock()
            .unwrap()
            .get(command_id)
            .cloned()
            .unwrap_or(CommandReport {
                finished: false,
                invocations: vec![],
            }))
    }
}
