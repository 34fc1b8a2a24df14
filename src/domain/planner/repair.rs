//! Keeping the fleet whole: which slots need an instance, which running
//! instances have drifted from the release the fleet should run, and how a
//! launch is asked for. Pure rules.

use crate::domain::model::command::LaunchRequest;
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::fleet::{FleetInstance, FleetSettings, FleetSpec, InstanceState, MachineImage};
use crate::domain::model::ids::ReleaseId;
use crate::domain::model::release::Release;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// Free slots to launch an instance into, lowest first.
    pub launch: Vec<usize>,
    /// Running instances to apply the fleet's release to again.
    pub reapply: Vec<String>,
}

impl RepairPlan {
    pub fn is_empty(&self) -> bool {
        self.launch.is_empty() && self.reapply.is_empty()
    }
}

/// Plans a repair. `runs_target(release)` says whether an instance tagged with
/// that release runs the fleet's target flakeref (a rollback to the same
/// flakeref is no drift).
pub fn plan_repair(
    spec: &FleetSpec,
    instances: &[FleetInstance],
    runs_target: impl Fn(&ReleaseId) -> bool,
) -> RepairPlan {
    let live: Vec<&FleetInstance> = instances.iter().filter(|i| i.state != InstanceState::Gone).collect();
    let missing = spec.desired_capacity.saturating_sub(live.len());
    let occupied: BTreeSet<usize> = live.iter().filter_map(|i| i.slot).collect();
    let launch = (0..).filter(|s| !occupied.contains(s)).take(missing).collect();
    let mut reapply: Vec<String> = live
        .iter()
        .filter(|i| i.state == InstanceState::Running && !i.release.as_ref().is_some_and(&runs_target))
        .map(|i| i.id.clone())
        .collect();
    reapply.sort();
    RepairPlan { launch, reapply }
}

/// What RunInstances is asked for one slot of a repair: the image's own root
/// device, at least as large as its snapshot, a token stable for the slot, and
/// user data pinned to the repair's exact flakeref.
pub fn launch_request(settings: &FleetSettings, repair: &Release, slot: usize, image: &MachineImage) -> LaunchRequest {
    let spec = &settings.spec;
    LaunchRequest {
        image: image.clone(),
        root_volume_gib: spec.root_volume_gib.max(image.root_snapshot_gib.unwrap_or(0)),
        spec: spec.clone(),
        slot,
        subnet: subnet_for(spec, slot).map(str::to_owned),
        client_token: client_token(settings.name.as_str(), &repair.id, slot),
        user_data: user_data(&repair.flakeref),
        tag: settings.target.clone(),
        fleet: settings.name.clone(),
    }
}

/// A ClientToken for RunInstances (at most 64 characters) from fleet, repair
/// release and slot: a retried reconcile asks for the same launch, and EC2
/// starts nothing new.
pub fn client_token(fleet: &str, release: &ReleaseId, slot: usize) -> String {
    format!("ff-{:016x}-{}-{slot}", fnv1a(fleet.as_bytes()), release)
}

/// User data for a new instance: log in to FlakeHub with the instance role and
/// apply exactly this flakeref. NixOS runs user data on every boot, so a pinned
/// exact ref keeps a rebooted host on its release. The flakeref is checked
/// against the grammar, so it is safe inside single quotes.
pub fn user_data(flakeref: &Flakeref) -> String {
    format!(
        r#"#!/usr/bin/env bash
# flakefleet: bring this host up on one exact release, on its first boot only.
# NixOS's amazon-init runs user data on every boot; once this release is on,
# flakefleet moves the host over SSM, and a reboot must not move it back.
# Log: /var/log/flakefleet/user-data.log
set -euo pipefail
export PATH="/run/wrappers/bin:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:${{PATH:-/usr/bin:/bin}}"
marker=/var/lib/flakefleet/first-boot-applied
if [ -e "$marker" ]; then
  echo "flakefleet: the first boot's release is applied already; flakefleet moves this host from here on"
  exit 0
fi
# Only root may take the lock or read the log (0700 directories, 0600 files).
install -d -m 0700 /var/log/flakefleet /var/lib/flakefleet
(umask 077 && : >>/var/log/flakefleet/user-data.log)
chmod 0600 /var/log/flakefleet/user-data.log
exec > >(tee -a /var/log/flakefleet/user-data.log) 2>&1
# One apply at a time: an SSM apply arriving meanwhile waits for this one
# (the document's lock, bounded as there).
lock=/var/lib/flakefleet/host.lock
(umask 077 && : >>"$lock")
chmod 0600 "$lock"
exec 9>>"$lock"
if ! flock -w 3600 9; then
  echo "flakefleet: the host's apply lock was held for over 3600s; not applied (the next boot tries again)"
  exit 1
fi
if [ -e "$marker" ]; then
  exit 0
fi
echo "flakefleet: $(date -u +%FT%TZ) applying {flakeref}"
determinate-nixd login aws
fh apply nixos '{flakeref}'
# Written only after the apply: a first boot that failed tries again at the next.
echo '{flakeref}' > "$marker.tmp"
mv "$marker.tmp" "$marker"
echo "flakefleet: $(date -u +%FT%TZ) done"
"#
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Spreads slots across subnets.
pub fn subnet_for(spec: &FleetSpec, slot: usize) -> Option<&str> {
    (!spec.subnets.is_empty()).then(|| spec.subnets[slot % spec.subnets.len()].as_str())
}

/// Groups instances by the release their tag names, for looking those releases up once.
pub fn tagged_releases(instances: &[FleetInstance]) -> Vec<ReleaseId> {
    let mut ids: Vec<ReleaseId> = instances.iter().filter_map(|i| i.release.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::spec;
    use crate::domain::model::time::Timestamp;

    fn instance(id: &str, state: InstanceState, slot: Option<usize>, release: Option<&ReleaseId>) -> FleetInstance {
        FleetInstance { id: id.into(), state, slot, release: release.cloned() }
    }

    #[test]
    fn launches_into_free_slots_up_to_the_capacity() {
        let good = ReleaseId::generate(Timestamp::from_millis(1), 1);
        let instances = [
            instance("i-1", InstanceState::Running, Some(1), Some(&good)),
            instance("i-0", InstanceState::Gone, Some(0), Some(&good)),
        ];
        let plan = plan_repair(&spec(3), &instances, |r| r == &good);
        assert_eq!(plan, RepairPlan { launch: vec![0, 2], reapply: vec![] });
        // Pending instances count, and never more than the capacity.
        let instances = [
            instance("i-1", InstanceState::Running, Some(1), Some(&good)),
            instance("i-2", InstanceState::Pending, None, None),
            instance("i-3", InstanceState::Running, Some(7), Some(&good)),
        ];
        assert!(plan_repair(&spec(3), &instances, |r| r == &good).launch.is_empty());
        assert!(plan_repair(&spec(0), &instances, |r| r == &good).launch.is_empty());
    }

    #[test]
    fn reapplies_to_running_instances_off_the_target() {
        let good = ReleaseId::generate(Timestamp::from_millis(2), 1);
        let old = ReleaseId::generate(Timestamp::from_millis(1), 1);
        let instances = [
            instance("i-b", InstanceState::Running, Some(0), Some(&old)),
            instance("i-a", InstanceState::Running, Some(1), None),
            instance("i-c", InstanceState::Running, Some(2), Some(&good)),
            instance("i-d", InstanceState::Pending, Some(3), None),
        ];
        let plan = plan_repair(&spec(4), &instances, |r| r == &good);
        assert_eq!(plan.reapply, ["i-a", "i-b"]);
    }

    #[test]
    fn a_launch_uses_the_images_root_device_and_never_less_than_its_snapshot() {
        use crate::domain::fixtures;
        use crate::domain::model::release::ReleaseKind;
        use crate::domain::model::rollout::RolloutMode;
        let settings = fixtures::settings(fixtures::policy(RolloutMode::Staged, true));
        let flakeref = Flakeref::parse(fixtures::GOOD).unwrap();
        let id = ReleaseId::generate(fixtures::T0, 3);
        let repair =
            crate::domain::planner::new_release(&settings, id, flakeref, None, ReleaseKind::Repair, None, fixtures::T0);
        let image =
            |size| MachineImage { id: "ami-1".into(), root_device: "/dev/sda1".into(), root_snapshot_gib: size };
        let request = launch_request(&settings, &repair, 3, &image(Some(8)));
        assert_eq!((request.image.root_device.as_str(), request.root_volume_gib), ("/dev/sda1", 16), "configured 16");
        assert_eq!(launch_request(&settings, &repair, 3, &image(Some(30))).root_volume_gib, 30, "the snapshot's 30");
        assert_eq!(launch_request(&settings, &repair, 3, &image(None)).root_volume_gib, 16);
        assert_eq!(
            (request.client_token, request.subnet.as_deref()),
            (client_token("prod", &repair.id, 3), Some("subnet-b"))
        );
        assert!(request.user_data.contains(fixtures::GOOD));
    }

    #[test]
    fn tokens_fit_and_differ_by_release_and_slot() {
        let r1 = ReleaseId::generate(Timestamp::from_millis(1), 1);
        let r2 = ReleaseId::generate(Timestamp::from_millis(2), 1);
        let t = client_token(&"f".repeat(32), &r1, 9999);
        assert!(t.len() <= 64, "{}", t.len());
        assert_eq!(client_token("prod", &r1, 1), client_token("prod", &r1, 1));
        assert_ne!(client_token("prod", &r1, 1), client_token("prod", &r1, 2));
        assert_ne!(client_token("prod", &r1, 1), client_token("prod", &r2, 1));
        assert_ne!(client_token("prod", &r1, 1), client_token("stg", &r1, 1));
    }

    #[test]
    fn user_data_pins_the_exact_flakeref_and_stays_small() {
        let flakeref = Flakeref::parse("AcmeCorp/infra/=0.1.42+rev-abc#nixosConfigurations.web").unwrap();
        let script = user_data(&flakeref);
        assert!(script.contains("fh apply nixos 'AcmeCorp/infra/=0.1.42+rev-abc#nixosConfigurations.web'"));
        assert!(script.contains("marker=/var/lib/flakefleet/first-boot-applied"));
        assert!(script.contains("determinate-nixd login aws"));
        assert!(script.starts_with("#!/usr/bin/env bash\n"));
        assert!(script.len() < 16 * 1024);
        assert_eq!(subnet_for(&spec(3), 3), Some("subnet-b"));
    }
}
