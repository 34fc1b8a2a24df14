//! When a release's status change is announced: a write that changes its
//! status from the one its last notice announced carries a notice (one per
//! change, whoever writes it), which the store writes with it and carries
//! to the bus (docs/notifications.md).

use crate::domain::model::release::Release;
use crate::domain::model::store::Notice;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The notice this write of `release` (its version already raised) carries,
/// if its status changed since the last one announced; marks the status
/// announced.
pub fn due(release: &mut Release) -> Option<Notice> {
    if release.noticed == Some(release.status) {
        return None;
    }
    let previous = release.noticed.replace(release.status);
    let id = format!("{}/{}", release.id, release.version);
    let mut detail = summary(release);
    detail["event_id"] = json!(id);
    detail["previous_status"] = json!(previous.map(|s| s.as_str()));
    Some(Notice { id, release_id: release.id.clone(), at: release.updated_at, detail: detail.to_string() })
}

/// A release without what grows with the fleet: per-instance outcomes counted
/// by SSM's status detail, waves counted. Listings and notices show this.
pub fn summary(release: &Release) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in &release.instances {
        *counts.entry(outcome.detail.as_str()).or_default() += 1;
    }
    let mut summary = json!(release);
    if let Some(fields) = summary.as_object_mut() {
        for bulky in ["instances", "rollout", "claim", "launches", "unreachable", "control", "stopping"] {
            fields.remove(bulky);
        }
        fields.insert("instance_counts".into(), json!(counts));
        if let Some(rollout) = &release.rollout {
            fields.insert("waves".into(), json!(rollout.waves.len()));
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{self, GOOD};
    use crate::domain::model::flakeref::Flakeref;
    use crate::domain::model::ids::ReleaseId;
    use crate::domain::model::release::{ReleaseKind, ReleaseStatus};
    use crate::domain::model::rollout::RolloutMode;
    use crate::domain::planner::new_release;

    #[test]
    fn one_notice_per_status_change_named_by_the_write_that_made_it() {
        let settings = fixtures::settings(fixtures::policy(RolloutMode::AllAtOnce, false));
        let id = ReleaseId::generate(fixtures::T0, 1);
        let mut r =
            new_release(&settings, id, Flakeref::parse(GOOD).unwrap(), None, ReleaseKind::Deploy, None, fixtures::T0);
        let first = due(&mut r).expect("a new release is announced");
        assert_eq!(first.id, format!("{}/0", r.id));
        let detail: Value = serde_json::from_str(&first.detail).unwrap();
        assert_eq!((detail["status"].as_str(), detail["previous_status"].as_str()), (Some("pending"), None));
        assert_eq!(detail["event_id"], first.id.as_str());
        r.version = 1;
        assert_eq!(due(&mut r), None, "progress without a status change is not announced");
        r.status = ReleaseStatus::InProgress;
        r.version = 2;
        let next = due(&mut r).unwrap();
        assert_eq!(next.id, format!("{}/2", r.id));
        let detail: Value = serde_json::from_str(&next.detail).unwrap();
        assert_eq!(
            (detail["status"].as_str(), detail["previous_status"].as_str()),
            (Some("in_progress"), Some("pending"))
        );
        assert!(detail.get("instances").is_none() && detail.get("instance_counts").is_some(), "{detail}");
    }
}
