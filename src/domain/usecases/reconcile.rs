//! The reconcile: plan → execute → plan, until the planner rests (the shape
//! of kube-rs's `reconcile → Action`). Also drives a newly admitted release.

use super::{new_pass, FleetController};
use crate::domain::error::ControlError;
use crate::domain::executor::Flow;
use crate::domain::model::ids::FleetName;
use crate::domain::model::release::Release;
use crate::domain::model::time::Timestamp;
use crate::domain::planner::{plan, Observed, Outcome, Pass};
use crate::domain::ports::{Ports, StoreError};
use serde::Serialize;

/// Steps one pass may take at most: far more than any path through the
/// planner needs, so a planner that never rests is an error, not a hang.
const MAX_STEPS: usize = 64;

/// What one reconcile pass did.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub fleet: FleetName,
    pub outcome: Outcome,
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

impl<P: Ports> FleetController<P> {
    /// Moves the fleet one safe step on: sends what was never confirmed sent,
    /// judges the wave in flight, starts the next wave, finishes, rolls back,
    /// or repairs a free fleet. Safe to run at any time, twice, late or
    /// concurrently: every write is fenced by the release's version and lease.
    pub async fn reconcile(&self, now: Timestamp) -> Result<ReconcileReport, ControlError> {
        let pass = new_pass(now);
        let (seen, outcome, skipped) = self.drive_to_rest(Observed::default(), &pass).await?;
        let mut report = ReconcileReport {
            fleet: self.settings.name.clone(),
            outcome,
            release: seen.holder,
            launched: seen.log.launched_ids,
            reapplied: Vec::new(),
            skipped,
        };
        if let Some(repair) = seen.log.started_repair {
            report.outcome = Outcome::Repaired;
            report.reapplied = repair.reapply;
            let errors: Vec<&str> =
                report.release.iter().flat_map(|r| &r.launches).filter_map(|l| l.error.as_deref()).collect();
            if !errors.is_empty() {
                report.skipped = Some(format!("some launches failed and are retried next time: {}", errors.join("; ")));
            }
        }
        Ok(report)
    }

    /// Drives the release in `seen` until the planner rests; answers what was learnt.
    pub(super) async fn drive(&self, seen: Observed, pass: &Pass) -> Result<Observed, ControlError> {
        Ok(self.drive_to_rest(seen, pass).await?.0)
    }

    /// Plan → execute until the planner rests. A refused first command is an
    /// error for the caller, after its release was settled as failed.
    async fn drive_to_rest(
        &self,
        mut seen: Observed,
        pass: &Pass,
    ) -> Result<(Observed, Outcome, Option<String>), ControlError> {
        let executor = self.executor();
        for _ in 0..MAX_STEPS {
            let step = plan(&seen, &self.settings, pass);
            let holder = seen.holder.as_ref().map(|r| r.id.clone());
            let flow = match executor.execute(step, &mut seen, pass).await {
                Ok(flow) => flow,
                // This pass recorded the release already: a busy store now
                // must not answer that nothing was recorded.
                Err(ControlError::Store(StoreError::Busy(reason))) if seen.log.created_here => {
                    let Some(release) = holder else { return Err(StoreError::Busy(reason).into()) };
                    let sent = matches!(seen.log.first_send, Some(Ok(_))) || seen.log.wave_sent;
                    return Err(ControlError::RecordedThenBusy { release, sent, reason });
                }
                Err(e) => return Err(e),
            };
            if let Flow::Rest { outcome, skipped } = flow {
                if let (Some(Err(reason)), Some(release)) = (&seen.log.first_send, &seen.holder) {
                    let release = Box::new(release.clone());
                    return Err(ControlError::CommandRejected { release, reason: reason.clone() });
                }
                return Ok((seen, outcome, skipped));
            }
        }
        Err(StoreError::Corrupt(format!("the planner did not come to rest within {MAX_STEPS} steps")).into())
    }
}
