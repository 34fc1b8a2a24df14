//! A free fleet's drift repair: the good release put back where it is
//! missing or drifted (the pure rules are in `repair`).

use super::*;

/// A free fleet: put its good release where it is missing (launch into free
/// slots) or has drifted (apply it again).
pub(super) fn plan_repair_step(fleet: &FleetState, seen: &Observed, settings: &FleetSettings, pass: &Pass) -> Step {
    let Some(good_id) = &fleet.last_good_release else {
        let why = "no release has succeeded on this fleet yet: nothing to repair towards";
        return rest_because(Outcome::Idle, why.into());
    };
    let Some(good) = &seen.good else {
        return Step::Observe(Need::GoodRelease(good_id.clone()));
    };
    if let Err(refused) = settings.allowed_flakes.check(&good.flakeref) {
        return rest_because(
            Outcome::Idle,
            format!("the last good release {good_id} cannot be repaired towards: {refused}"),
        );
    }
    let Some(instances) = &seen.instances else {
        return Step::Observe(Need::FleetInstances);
    };
    let Some(flakerefs) = &seen.tagged_flakerefs else {
        return Step::Observe(Need::TaggedReleases(tagged_releases(instances)));
    };
    // A deploy to named instances that succeeded, newer than the good
    // release, stays on its hosts until a fleet-wide release supersedes it;
    // one that failed never does.
    let kept = |id: &ReleaseId| seen.tagged_targeted.get(id) == Some(&ReleaseStatus::Succeeded) && id > good_id;
    let mut repair = plan_repair(&settings.spec, instances, |id| flakerefs.get(id) == Some(&good.flakeref) || kept(id));
    // Drifted instances are applied to only while they are Online managed nodes.
    let passed = match reach::choose(&repair.reapply, repair.reapply.len(), &seen.nodes) {
        Choice::LookUp(ids) => return Step::Observe(Need::ManagedNodes(ids)),
        Choice::Chosen { online, passed } => {
            repair.reapply = online;
            passed
        }
    };
    if repair.is_empty() {
        if passed.is_empty() {
            return rest(Outcome::Idle);
        }
        let names: Vec<String> = passed.iter().take(5).map(Unreachable::to_string).collect();
        let why = format!("{} drifted instances are not Online managed nodes: {}", passed.len(), names.join(", "));
        return rest_because(Outcome::Idle, why);
    }
    let image = match (&seen.image, repair.launch.is_empty()) {
        (_, true) => Err(String::new()),
        (Some(image), false) => image.clone(),
        (None, false) => return Step::Observe(Need::Image),
    };
    if let (Err(why), true) = (&image, repair.reapply.is_empty()) {
        // No image, nothing to launch: said, with no release recorded each minute.
        return rest_because(Outcome::Idle, format!("{} instances missing but {why}", repair.launch.len()));
    }
    let mut release = put_back(good, ReleaseKind::Repair, repair.reapply.clone(), settings, pass);
    release.origin.requested_by = Some(format!("{BY_FLAKEFLEET} (drift repair)"));
    release.launches =
        repair.launch.iter().map(|slot| Launch { slot: *slot, instance_id: None, error: None }).collect();
    pass_over(&mut release, passed);
    Step::StartRepair { repair: Box::new(release), plan: repair }
}
