//! The release store in memory, with scripted busy writes.

use super::*;

#[derive(Default)]
pub struct MemoryStore {
    pub releases: Mutex<BTreeMap<ReleaseId, Release>>,
    pub fleet: Mutex<FleetState>,
    claims: Mutex<HashMap<String, (ReleaseId, String, Timestamp)>>,
    /// Notices written, in the order they were written: what the table's
    /// stream carries to the bus on AWS.
    pub notices: Mutex<Vec<Notice>>,
    /// Every release as written, in the order written: what a test checks
    /// the rollout's transitions against.
    pub history: Mutex<Vec<Release>>,
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
        self.history.lock().unwrap().push(release.clone());
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
        self.history.lock().unwrap().push(release.clone());
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
        let mut history = self.history.lock().unwrap();
        history.push(release.clone());
        history.extend(s.fleet.iter().flat_map(|c| c.next.as_ref()).map(|n| n.release.clone()));
        self.notices.lock().unwrap().extend_from_slice(&s.notices);
        Ok(Written::Yes)
    }
}

fn holds_lease(fleet: &FleetState, id: &ReleaseId) -> bool {
    fleet.lease.as_ref().is_some_and(|l| &l.release_id == id)
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
