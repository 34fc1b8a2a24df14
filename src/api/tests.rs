//! The contract: the JSON every response type encodes to is the JSON the API
//! has always answered (the domain's serde shape, plus `phase` and `shape`),
//! and docs/api/schema.json is what the types generate.

use super::*;
use crate::domain::fixtures::{self, NEXT, T0};
use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::ids::{Reason, ReleaseId, Revision, RunUrl};
use crate::domain::model::outcome::tests::outcome;
use crate::domain::model::outcome::{PingStatus, Unreachable as DomainUnreachable};
use crate::domain::model::release as domain;
use crate::domain::model::rollout::{Bake, Checks, Claim, Claimed as DomainClaimed, RolloutMode, Wave as DomainWave};
use crate::domain::planner::new_release;
use serde_json::{json, Value};

/// A release with every optional field set, as a staged deploy that was
/// paused, resumed and aborted mid-bake would be stored.
fn rich_release() -> domain::Release {
    let settings = fixtures::settings(fixtures::policy(RolloutMode::Staged, true));
    let id = ReleaseId::generate(T0, 7);
    let flakeref = Flakeref::parse(NEXT).unwrap();
    let revision = Some(Revision::parse("0123456789abcdef0123456789abcdef01234567").unwrap());
    let mut r = new_release(&settings, id, flakeref, revision, domain::ReleaseKind::Deploy, None, T0);
    r.status = domain::ReleaseStatus::InProgress;
    r.replaces = Some(ReleaseId::generate(T0, 3));
    r.rollback_of = Some(ReleaseId::generate(T0, 2));
    r.origin = domain::Origin {
        requested_by: Some("repo:acme/infra:ref:refs/heads/main".into()),
        run_url: Some(RunUrl::parse("https://github.com/acme/infra/actions/runs/1").unwrap()),
        reason: Some(Reason::parse("weekly upgrade").unwrap()),
    };
    r.status_reason = Some("why".into());
    let mut failed = outcome("i-1", "Failed");
    failed.exit_code = Some(1);
    failed.stdout_tail = "out".into();
    failed.stderr_tail = "err".into();
    failed.output_note = Some("trimmed".into());
    failed.started = true;
    r.instances = vec![outcome("i-0", "Success"), failed.clone()];
    let claim = Claim::new("token", T0);
    let mut wave = DomainWave::new(vec!["i-0".into(), "i-1".into()], &claim);
    wave.record_sent("cmd-1".into(), T0);
    wave.judged(T0);
    wave.claim.takeover = true;
    wave.bake = Some(Bake {
        healthy_since_ms: 5,
        checks: Some(Checks {
            command_ids: vec!["cmd-2".into()],
            claim: DomainClaimed::new(&claim, false),
            failed: vec![failed],
        }),
    });
    let rollout = r.rollout.as_mut().unwrap();
    rollout.waves.push(wave);
    rollout.fleet_size = Some(3);
    r.launches = vec![
        domain::Launch { slot: 0, instance_id: Some("i-2".into()), error: None },
        domain::Launch { slot: 1, instance_id: None, error: Some("InsufficientInstanceCapacity".into()) },
    ];
    r.unreachable = vec![DomainUnreachable { instance_id: "i-3".into(), ping_status: PingStatus::ConnectionLost }];
    r.claim = Some(DomainClaimed::new(&claim, false));
    r.stopping = Some(domain::Stopping {
        reason: "aborted".into(),
        since_ms: 9,
        cancelled: vec!["i-1".into()],
        unsettled: vec!["i-0".into()],
    });
    r.control = Some(domain::Control {
        paused: Some(domain::Paused { since_ms: 1, by: "ops".into(), deadline_ms: 2, automatic: true }),
        paused_ms: 3,
        aborted: Some(domain::Aborted { at_ms: 4, by: "ops".into(), rollback: true }),
        actions: vec![domain::OperatorAction {
            action: domain::ControlAction::AutoPause,
            by: "f".into(),
            at_ms: 1,
            waves: 1,
        }],
    });
    r.ignored_alarms = vec!["web-5xx".into()];
    r.version = 12;
    r
}

/// The domain's JSON with the API's additions.
fn with_phase(mut domain_json: Value, phase: &str, shape: &str) -> Value {
    let fields = domain_json.as_object_mut().unwrap();
    fields.insert("phase".into(), json!(phase));
    fields.insert("shape".into(), json!(shape));
    domain_json
}

#[test]
fn a_release_encodes_as_it_always_did_plus_its_phase() {
    let rich = rich_release();
    let plain = new_release(
        &fixtures::settings(fixtures::policy(RolloutMode::AllAtOnce, false)),
        ReleaseId::generate(T0, 1),
        Flakeref::parse(NEXT).unwrap(),
        None,
        domain::ReleaseKind::Deploy,
        None,
        T0,
    );
    for (release, phase, shape) in [(&rich, "stopping", "staged"), (&plain, "pending", "all_at_once")] {
        let api = serde_json::to_value(Release::from(release)).unwrap();
        assert_eq!(api, with_phase(json!(release), phase, shape));
        // And the CLI reads back what the handler wrote.
        assert_eq!(serde_json::from_value::<Release>(api).unwrap(), Release::from(release));
    }
}

#[test]
fn a_listed_release_counts_instead_of_listing() {
    let rich = rich_release();
    let summary = serde_json::to_value(ReleaseSummary::from(&rich)).unwrap();
    let mut expected = with_phase(json!(rich), "stopping", "staged");
    let fields = expected.as_object_mut().unwrap();
    fields.remove("instances");
    fields.remove("rollout");
    fields.insert("instance_counts".into(), json!({"Failed": 1, "Success": 1}));
    fields.insert("waves".into(), json!(1));
    assert_eq!(summary, expected);
}

#[test]
fn enums_are_spelled_as_their_json() {
    fn check<T: serde::Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
        for value in all {
            assert_eq!(json!(value), json!(as_str(*value)));
        }
    }
    check(ReleaseKind::ALL, ReleaseKind::as_str);
    check(ReleaseStatus::ALL, ReleaseStatus::as_str);
    check(Phase::ALL, Phase::as_str);
    check(Outcome::ALL, Outcome::as_str);
}

/// docs/api/schema.json is generated from the types: a change to the API
/// shows in its diff. `FLAKEFLEET_WRITE_API_SCHEMA=1 cargo test --lib api::`
/// writes it.
#[test]
fn the_published_schema_is_the_types() {
    let generated = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api/schema.json");
    if std::env::var_os("FLAKEFLEET_WRITE_API_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/api/schema.json is not what the API types generate; \
         run FLAKEFLEET_WRITE_API_SCHEMA=1 cargo test --lib api:: and review the diff"
    );
}

/// Every response body, by name, under `$defs`.
pub fn schema() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let bodies = [
        ("ErrorBody", generator.subschema_for::<ErrorBody>()),
        ("Health", generator.subschema_for::<Health>()),
        ("ReleaseBody", generator.subschema_for::<ReleaseBody>()),
        ("ReleasePage", generator.subschema_for::<ReleasePage>()),
        ("FleetBody", generator.subschema_for::<FleetBody>()),
        ("ReconcileBody", generator.subschema_for::<ReconcileBody>()),
    ];
    let responses: serde_json::Map<String, Value> =
        bodies.into_iter().map(|(name, s)| (name.to_owned(), s.to_value())).collect();
    // Closed: an answer carries no field the contract does not name, which
    // the tests that validate real answers check. Clients ignore unknown
    // fields all the same (serde does), so adding one is not a break for them.
    let mut definitions = generator.take_definitions(true);
    for definition in definitions.values_mut() {
        if let Some(object) = definition.as_object_mut().filter(|o| o.contains_key("properties")) {
            object.insert("additionalProperties".into(), json!(false));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/flakefleet/flakefleet/docs/api/schema.json",
        "title": "flakefleet HTTP API responses",
        "description": "Generated from src/api by its tests; do not edit by hand. Each response body is one of the names under x-responses: validate against {\"$ref\": \"#/$defs/<name>\"}. Objects are closed here (no field the contract does not name); clients should still ignore fields they do not know.",
        "x-responses": responses,
        "$defs": definitions,
    })
}
