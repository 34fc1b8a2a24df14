//! The item codec: a release as DynamoDB items and back, with the per-instance
//! body inline or split over part items, and the keys every item lives under.

use crate::domain::model::flakeref::Flakeref;
use crate::domain::model::ids::{FleetName, Reason, ReleaseId, Revision, RunUrl};
use crate::domain::model::outcome::{InstanceOutcome, Unreachable};
use crate::domain::model::release::{Control, Launch, Origin, Release, ReleaseKind, ReleaseStatus, Stopping};
use crate::domain::model::rollout::{Claimed, Rollout};
use crate::domain::model::store::Notice;
use crate::domain::model::time::Timestamp;
use crate::domain::ports::StoreError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

pub(super) const STATE_SK: &str = "STATE";
pub(super) const RELEASE_PREFIX: &str = "RELEASE#";
pub(super) const IDEMPOTENCY_PREFIX: &str = "IDEMPOTENCY#";
pub(super) const PART_PREFIX: &str = "PART#";
pub(super) const NOTICE_PREFIX: &str = "NOTICE#";
/// How long a notice item stays in the table (TTL) once the stream has
/// carried it: long enough to read one the pipe dead-lettered.
const NOTICE_TTL_SECS: u64 = 7 * 86_400;
/// A body up to this size stays on the release item (400 KB at most).
pub const INLINE_BODY_BYTES: usize = 96 * 1024;
/// Bytes of body per part item, under the 400 KB item limit with keys and version.
const PART_BYTES: usize = 360 * 1024;
/// One transaction writes at most 4 MB: the body of one release must fit with
/// the release item and, for a settlement, the next release.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Parts per release at most, within a transaction's 100 items.
const MAX_PARTS: usize = 40;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn corrupt_part(id: &str) -> StoreError {
    StoreError::Corrupt(format!("release {id} names parts that are missing or unreadable"))
}

pub(super) fn fleet_pk(fleet: &FleetName) -> String {
    format!("FLEET#{fleet}")
}

pub(super) fn release_sk(id: &ReleaseId) -> String {
    format!("{RELEASE_PREFIX}{id}")
}

pub(super) fn release_id_from_sk(sk: &str) -> Result<ReleaseId, StoreError> {
    parse_id(sk.strip_prefix(RELEASE_PREFIX).unwrap_or(sk))
}

pub(super) fn parse_id(raw: &str) -> Result<ReleaseId, StoreError> {
    ReleaseId::parse(raw).map_err(|_| StoreError::Corrupt(format!("stored release id {raw:?} is malformed")))
}

/// The per-instance side of a release, as stored.
#[derive(Serialize)]
struct BodyRef<'a> {
    instances: &'a [InstanceOutcome],
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<&'a Rollout>,
    #[serde(skip_serializing_if = "<[Launch]>::is_empty")]
    launches: &'a [Launch],
    #[serde(skip_serializing_if = "<[Unreachable]>::is_empty")]
    unreachable: &'a [Unreachable],
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<&'a Claimed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopping: Option<&'a Stopping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    control: Option<&'a Control>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignored_alarms: &'a [String],
}

#[derive(Default, Deserialize)]
struct Body {
    #[serde(default)]
    instances: Vec<InstanceOutcome>,
    #[serde(default)]
    rollout: Option<Rollout>,
    #[serde(default)]
    launches: Vec<Launch>,
    #[serde(default)]
    unreachable: Vec<Unreachable>,
    #[serde(default)]
    claim: Option<Claimed>,
    #[serde(default)]
    stopping: Option<Stopping>,
    #[serde(default)]
    control: Option<Control>,
    #[serde(default)]
    ignored_alarms: Vec<String>,
}

/// The release item, and the part items when its body is over `inline_bytes`.
pub(crate) fn release_items(r: &Release, inline_bytes: usize) -> Result<(Item, Vec<Item>), StoreError> {
    let mut item = Item::new();
    item.insert(PARTITION_KEY.into(), s(fleet_pk(&r.fleet)));
    item.insert(SORT_KEY.into(), s(release_sk(&r.id)));
    item.insert("id".into(), s(r.id.as_str()));
    item.insert("fleet".into(), s(r.fleet.as_str()));
    item.insert("flakeref".into(), s(r.flakeref.as_str()));
    item.insert("kind".into(), s(r.kind.as_str()));
    item.insert("status".into(), s(r.status.as_str()));
    item.insert("created_ms".into(), n(r.created_at.millis()));
    item.insert("updated_ms".into(), n(r.updated_at.millis()));
    item.insert("deadline_ms".into(), n(r.deadline.millis()));
    item.insert("version".into(), n(r.version));
    if let Some(v) = &r.revision {
        item.insert("revision".into(), s(v.as_str()));
    }
    if let Some(v) = &r.rollback_of {
        item.insert("rollback_of".into(), s(v.as_str()));
    }
    if let Some(v) = &r.replaces {
        item.insert("replaces".into(), s(v.as_str()));
    }
    if let Some(v) = r.noticed {
        item.insert("noticed".into(), s(v.as_str()));
    }
    if let Some(v) = &r.origin.requested_by {
        item.insert("requested_by".into(), s(v.clone()));
    }
    if let Some(v) = &r.origin.run_url {
        item.insert("run_url".into(), s(v.as_str()));
    }
    if let Some(v) = &r.origin.reason {
        item.insert("reason".into(), s(v.as_str()));
    }
    if let Some(v) = &r.status_reason {
        item.insert("status_reason".into(), s(v.clone()));
    }
    if let Some(v) = &r.command_id {
        item.insert("command_id".into(), s(v.clone()));
    }
    // Outputs arrive cut to their tails (aws/ssm.rs) and trimmed to a few
    // failures (domain::model::outcome::trim_outputs): stored as they are.
    let body = serde_json::to_string(&BodyRef {
        instances: &r.instances,
        rollout: r.rollout.as_ref(),
        launches: &r.launches,
        unreachable: &r.unreachable,
        claim: r.claim.as_ref(),
        stopping: r.stopping.as_ref(),
        control: r.control.as_ref(),
        ignored_alarms: &r.ignored_alarms,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if body.len() <= inline_bytes {
        item.insert("body".into(), s(body));
        return Ok((item, Vec::new()));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(StoreError::Corrupt(format!(
            "release {} records {} bytes of per-instance state, more than the {MAX_BODY_BYTES} bytes one \
             DynamoDB transaction can write (about 30,000 instances)",
            r.id,
            body.len()
        )));
    }
    let chunk = PART_BYTES.min(inline_bytes.max(1)).max(body.len().div_ceil(MAX_PARTS));
    let parts: Vec<Item> = body
        .as_bytes()
        .chunks(chunk)
        .enumerate()
        .map(|(index, chunk)| {
            Item::from([
                (PARTITION_KEY.to_owned(), s(fleet_pk(&r.fleet))),
                (SORT_KEY.to_owned(), s(format!("{PART_PREFIX}{}#{index:03}", r.id))),
                ("data".to_owned(), AttributeValue::B(Blob::new(chunk))),
                ("version".to_owned(), n(r.version)),
            ])
        })
        .collect();
    item.insert("parts".into(), n(parts.len() as u64));
    Ok((item, parts))
}

/// `NOTICE#<release id>#<version, 10 digits>` for notice id `<release id>/<version>`:
/// a release's notices sort by write.
pub(super) fn notice_sk(id: &str) -> Option<String> {
    let (release, version) = id.rsplit_once('/')?;
    let version: u64 = version.parse().ok()?;
    Some(format!("{NOTICE_PREFIX}{release}#{version:010}"))
}

pub(super) fn notice_item(fleet: &FleetName, notice: &Notice) -> Result<Item, StoreError> {
    let sk = notice_sk(&notice.id).ok_or_else(|| StoreError::Corrupt(format!("{:?} is not a notice id", notice.id)))?;
    Ok(Item::from([
        (PARTITION_KEY.to_owned(), s(fleet_pk(fleet))),
        (SORT_KEY.to_owned(), s(sk)),
        ("notice_id".to_owned(), s(notice.id.clone())),
        ("release_id".to_owned(), s(notice.release_id.as_str())),
        ("at_ms".to_owned(), n(notice.at.millis())),
        ("detail".to_owned(), s(notice.detail.clone())),
        (TTL_ATTRIBUTE.to_owned(), n(notice.at.secs() + NOTICE_TTL_SECS)),
    ]))
}

/// A release from its item and, when the body was split, the parts joined.
pub(crate) fn release_from_item(item: &Item, parts: Option<&[u8]>) -> Result<Release, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("release item has an invalid {what}"));
    let body: Body = match (parts, opt_string(item, "body")) {
        (Some(bytes), _) => serde_json::from_slice(bytes).map_err(|_| corrupt("body"))?,
        (None, Some(text)) => serde_json::from_str(&text).map_err(|_| corrupt("body"))?,
        (None, None) => Body::default(),
    };
    Ok(Release {
        id: parse_id(&string(item, "id")?)?,
        fleet: FleetName::parse(&string(item, "fleet")?).map_err(|_| corrupt("fleet"))?,
        flakeref: Flakeref::parse(&string(item, "flakeref")?).map_err(|_| corrupt("flakeref"))?,
        revision: opt_string(item, "revision")
            .map(|v| Revision::parse(&v).map_err(|_| corrupt("revision")))
            .transpose()?,
        kind: ReleaseKind::parse(&string(item, "kind")?).ok_or_else(|| corrupt("kind"))?,
        rollback_of: opt_string(item, "rollback_of").map(|v| parse_id(&v)).transpose()?,
        replaces: opt_string(item, "replaces").map(|v| parse_id(&v)).transpose()?,
        origin: Origin {
            requested_by: opt_string(item, "requested_by"),
            run_url: opt_string(item, "run_url")
                .map(|v| RunUrl::parse(&v).map_err(|_| corrupt("run_url")))
                .transpose()?,
            // Stored as admitted (or as flakefleet cut its own): read back as it is.
            reason: opt_string(item, "reason").map(|v| Reason::own(&v)),
        },
        status: ReleaseStatus::parse(&string(item, "status")?).ok_or_else(|| corrupt("status"))?,
        status_reason: opt_string(item, "status_reason"),
        command_id: opt_string(item, "command_id"),
        created_at: Timestamp::from_millis(num(item, "created_ms")?),
        updated_at: Timestamp::from_millis(num(item, "updated_ms")?),
        deadline: Timestamp::from_millis(num(item, "deadline_ms")?),
        instances: body.instances,
        launches: body.launches,
        rollout: body.rollout,
        unreachable: body.unreachable,
        claim: body.claim,
        stopping: body.stopping,
        control: body.control,
        ignored_alarms: body.ignored_alarms,
        noticed: opt_string(item, "noticed")
            .map(|v| ReleaseStatus::parse(&v).ok_or_else(|| corrupt("noticed")))
            .transpose()?,
        version: num(item, "version")?,
    })
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn string(item: &Item, key: &str) -> Result<String, StoreError> {
    opt_string(item, key).ok_or_else(|| StoreError::Corrupt(format!("item lacks string attribute {key}")))
}

pub(super) fn opt_string(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn num(item: &Item, key: &str) -> Result<u64, StoreError> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks numeric attribute {key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_items_round_trip() {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let release = Release {
            id: ReleaseId::generate(now, 7),
            fleet: FleetName::parse("production").unwrap(),
            flakeref: Flakeref::parse("a/b/=0.1.2#nixosConfigurations.x").unwrap(),
            revision: Some(Revision::parse("abcdef1").unwrap()),
            kind: ReleaseKind::Rollback,
            rollback_of: Some(ReleaseId::generate(now, 8)),
            replaces: Some(ReleaseId::generate(now, 9)),
            origin: Origin {
                requested_by: Some("arn:aws:sts::111122223333:assumed-role/deploy/gha".into()),
                run_url: Some(RunUrl::parse("https://github.com/acme/infra/actions/runs/1").unwrap()),
                reason: Some(Reason::parse("fix: räumt auf").unwrap()),
            },
            status: ReleaseStatus::Failed,
            status_reason: Some("why".into()),
            command_id: Some("cmd".into()),
            created_at: now,
            updated_at: now.plus(std::time::Duration::from_secs(1)),
            deadline: now.plus(std::time::Duration::from_secs(60)),
            instances: vec![InstanceOutcome {
                instance_id: "i-1".into(),
                status: "Failed".into(),
                detail: "Failed".into(),
                exit_code: Some(1),
                stdout_tail: "applying".into(),
                stderr_tail: "boom".into(),
                output_note: None,
                started: true,
            }],
            rollout: Some(crate::domain::model::rollout::Rollout {
                waves: vec![crate::domain::model::rollout::Wave::new(
                    vec!["i-1".into()],
                    &crate::domain::model::rollout::Claim::new("a", now),
                )],
                fleet_size: Some(3),
                fixed: false,
            }),
            launches: vec![crate::domain::model::release::Launch {
                slot: 2,
                instance_id: Some("i-9".into()),
                error: None,
            }],
            unreachable: vec![Unreachable {
                instance_id: "i-4".into(),
                ping_status: crate::domain::model::outcome::PingStatus::ConnectionLost,
            }],
            claim: Some(Claimed { claimed_ms: 5, claimed_by: "b".into(), takeover: true }),
            stopping: Some(Stopping {
                reason: "canary failed".into(),
                since_ms: 9,
                cancelled: vec!["i-5".into()],
                unsettled: vec!["i-6".into()],
            }),
            control: Some(Control {
                paused: Some(crate::domain::model::release::Paused {
                    since_ms: 11,
                    by: "arn:aws:iam::1:user/ops".into(),
                    deadline_ms: 12,
                    automatic: false,
                }),
                paused_ms: 13,
                aborted: None,
                actions: vec![crate::domain::model::release::OperatorAction {
                    action: crate::domain::model::release::ControlAction::Pause,
                    by: "arn:aws:iam::1:user/ops".into(),
                    at_ms: 11,
                    waves: 1,
                }],
            }),
            ignored_alarms: vec!["web-5xx".into()],
            noticed: Some(ReleaseStatus::Failed),
            version: 4,
        };
        let (head, parts) = release_items(&release, INLINE_BODY_BYTES).unwrap();
        assert!(parts.is_empty());
        assert_eq!(release_from_item(&head, None).unwrap(), release);

        // Split over parts, joined back.
        let (head, parts) = release_items(&release, 10).unwrap();
        assert!(parts.len() > 1 && !head.contains_key("body"));
        let joined: Vec<u8> = parts.iter().flat_map(|p| p["data"].as_b().unwrap().as_ref().to_vec()).collect();
        assert_eq!(release_from_item(&head, Some(&joined)).unwrap(), release);
    }
}
