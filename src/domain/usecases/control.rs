//! An operator steering the rollout in flight: pause, resume, abort.

use super::FleetController;
use crate::domain::error::ControlError;
use crate::domain::model::ids::ReleaseId;
use crate::domain::model::release::Release;
use crate::domain::model::time::Timestamp;
use crate::domain::planner::control::{apply, Applied, ControlRequest};
use crate::domain::ports::{Ports, StoreError};
use tracing::info;

/// Tries of the read → apply → fenced write, when other writers (reconciles)
/// move the release on in between.
const TRIES: usize = 5;

impl<P: Ports> FleetController<P> {
    /// Applies `request` by `by` to release `id` (the rules are the
    /// planner's: `planner::control`), and answers the release. A resume or
    /// an abort then runs a reconcile pass, so the next wave, or the end of
    /// the rollout, comes now rather than at the next schedule.
    pub async fn control(
        &self,
        id: &ReleaseId,
        request: ControlRequest,
        by: &str,
        now: Timestamp,
    ) -> Result<Release, ControlError> {
        let executor = self.executor();
        for _ in 0..TRIES {
            let release = executor.release(id).await?;
            let next = match apply(&release, request, by, &self.settings, now) {
                Err(why) => return Err(ControlError::NotSteerable(why)),
                Ok(Applied::Unchanged) => return Ok(release),
                Ok(Applied::Changed(next)) => *next,
            };
            let (stored, won) = executor.record(next, now).await?;
            if !won {
                continue;
            }
            info!(action = request.action().as_str(), by, "release steered");
            if matches!(request, ControlRequest::Pause) {
                return Ok(stored);
            }
            // Boxed: only these requests carry a reconcile.
            Box::pin(self.reconcile(now)).await?;
            return executor.release(id).await;
        }
        Err(StoreError::Busy(format!("release {id} kept changing while it was being steered")).into())
    }
}
