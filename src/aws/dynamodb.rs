//! The release store on one DynamoDB table shared by all fleets.
//!
//! Every key starts with the fleet: `pk = FLEET#<fleet>`, and `sk` is
//! `STATE` (desired release and lease), `RELEASE#<id>` (one per release, ids
//! sort by creation), `PART#<id>#<n>` (the per-instance records of a release
//! too large for one item) or `IDEMPOTENCY#<key>` (expires through TTL on
//! `expires_at`). Writes that matter are conditional, so an acknowledged
//! release is never overwritten.
//!
//! What grows with the fleet (per-instance outcomes, wave instance ids,
//! launches) is one JSON body: on the release item while it is under
//! [`INLINE_BODY_BYTES`], otherwise split over part items written in the same
//! transaction as the release item and stamped with its version, so a reader
//! never mixes two writes.
//!
//! Used GitHub token ids live apart from the fleets, one item each:
//! `pk = TOKEN#<jti>`, `sk = TOKEN`, expiring with the token.

use crate::auth::{LedgerError, TokenLedger};
use crate::domain::flakeref::Flakeref;
use crate::domain::fleet::{FleetName, FleetState, Halt, Lease};
use crate::domain::ports::{Admission, IdempotencyClaim, ReleasePage, ReleaseStore, Settlement, StoreError};
use crate::domain::release::{InstanceOutcome, Release, ReleaseId, ReleaseKind, ReleaseStatus, Revision};
use crate::domain::repair::Launch;
use crate::domain::rollout::Rollout;
use crate::domain::time::Timestamp;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tracing::instrument;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

const STATE_SK: &str = "STATE";
const RELEASE_PREFIX: &str = "RELEASE#";
const IDEMPOTENCY_PREFIX: &str = "IDEMPOTENCY#";
const TOKEN_PREFIX: &str = "TOKEN#";
const PART_PREFIX: &str = "PART#";
/// How many times `admit` re-reads and retries when a transaction lost a race
/// without a clear winner (DynamoDB's TransactionConflict).
const ADMIT_ATTEMPTS: usize = 5;
/// A body up to this size stays on the release item (400 KB at most).
pub const INLINE_BODY_BYTES: usize = 96 * 1024;
/// Bytes of body per part item, under the 400 KB item limit with keys and version.
const PART_BYTES: usize = 360 * 1024;
/// One transaction writes at most 4 MB: the body of one release must fit with
/// the release item and, for a settlement, the next release.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Parts per release at most, within a transaction's 100 items.
const MAX_PARTS: usize = 40;
/// How often a read retries when a writer replaced the parts between its two reads.
const READ_ATTEMPTS: usize = 3;

type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoReleaseStore {
    client: Client,
    table: String,
    inline_body_bytes: usize,
}

impl DynamoReleaseStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), inline_body_bytes: INLINE_BODY_BYTES }
    }

    /// Moves bodies larger than `bytes` to part items (tests use a small
    /// value to exercise parts without thousands of instances).
    pub fn with_inline_body_bytes(mut self, bytes: usize) -> Self {
        self.inline_body_bytes = bytes;
        self
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(pk))
            .key(SORT_KEY, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item)
    }

    async fn idempotency_record(
        &self,
        fleet: &FleetName,
        claim: &IdempotencyClaim,
        now: Timestamp,
    ) -> Result<Option<Admission>, StoreError> {
        let Some(item) = self.get(fleet_pk(fleet), format!("{IDEMPOTENCY_PREFIX}{}", claim.key.as_str())).await? else {
            return Ok(None);
        };
        // TTL deletes lazily: an expired record no longer counts.
        if num(&item, TTL_ATTRIBUTE)? <= now.secs() {
            return Ok(None);
        }
        let release_id =
            ReleaseId::parse(&string(&item, "release_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(Admission::Replay { release_id, same_request: string(&item, "request")? == claim.request }))
    }
}

impl ReleaseStore for DynamoReleaseStore {
    #[instrument(skip_all, fields(release_id = %release.id))]
    async fn admit(
        &self,
        release: &Release,
        claim: Option<&IdempotencyClaim>,
        desired: bool,
        now: Timestamp,
    ) -> Result<Admission, StoreError> {
        let pk = fleet_pk(&release.fleet);
        let put_release = self.put_new_release(release)?;
        let take_lease = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(pk.clone()))
            .key(SORT_KEY, s(STATE_SK))
            // An operator's deploy or rollback becomes the desired release and
            // lifts a halt; a repair only takes the lease.
            .update_expression(if desired {
                "SET desired_release_id = :id, lease_release_id = :id, lease_expires_ms = :expires, updated_ms = :now \
                 REMOVE halted_release_id, halted_reason"
            } else {
                "SET lease_release_id = :id, lease_expires_ms = :expires, updated_ms = :now"
            })
            .condition_expression("attribute_not_exists(lease_expires_ms) OR lease_expires_ms <= :now")
            .expression_attribute_values(":id", s(release.id.as_str()))
            .expression_attribute_values(":expires", n(release.deadline.millis()))
            .expression_attribute_values(":now", n(now.millis()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut items: Vec<TransactWriteItem> =
            put_release.into_iter().map(|put| TransactWriteItem::builder().put(put).build()).collect();
        items.push(TransactWriteItem::builder().update(take_lease).build());
        if let Some(claim) = claim {
            let mut record = Item::new();
            record.insert(PARTITION_KEY.into(), s(pk.clone()));
            record.insert(SORT_KEY.into(), s(format!("{IDEMPOTENCY_PREFIX}{}", claim.key.as_str())));
            record.insert("release_id".into(), s(release.id.as_str()));
            record.insert("request".into(), s(claim.request.clone()));
            record.insert(TTL_ATTRIBUTE.into(), n(claim.expires_at.secs()));
            let put_claim = Put::builder()
                .table_name(&self.table)
                .set_item(Some(record))
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now_s")
                .expression_attribute_values(":now_s", n(now.secs()))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push(TransactWriteItem::builder().put(put_claim).build());
        }

        for _ in 0..ADMIT_ATTEMPTS {
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            match result {
                Ok(_) => return Ok(Admission::Admitted),
                Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => {}
                Err(e) => return Err(unavailable("TransactWriteItems", &e)),
            }
            // Cancelled: find out by reading which condition stood in the way.
            // A replay wins over a busy fleet, so a retried request gets its answer.
            if let Some(claim) = claim {
                if let Some(replay) = self.idempotency_record(&release.fleet, claim, now).await? {
                    return Ok(replay);
                }
            }
            if let Some(lease) = self.fleet_state(&release.fleet).await?.live_lease(now) {
                return Ok(Admission::Busy { holder: lease.release_id.clone() });
            }
        }
        Err(StoreError::Unavailable(format!(
            "TransactWriteItems was cancelled {ADMIT_ATTEMPTS} times without a conflicting record; try again"
        )))
    }

    #[instrument(skip(self))]
    async fn release(&self, fleet: &FleetName, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
        match self.get(fleet_pk(fleet), release_sk(id)).await? {
            Some(item) => Ok(Some(self.complete(item).await?)),
            None => Ok(None),
        }
    }

    #[instrument(skip(self))]
    async fn releases(
        &self,
        fleet: &FleetName,
        limit: u32,
        after: Option<&ReleaseId>,
    ) -> Result<ReleasePage, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(fleet_pk(fleet)))
            .expression_attribute_values(":prefix", s(RELEASE_PREFIX))
            .scan_index_forward(false)
            .limit(limit as i32);
        if let Some(after) = after {
            query = query
                .exclusive_start_key(PARTITION_KEY, s(fleet_pk(fleet)))
                .exclusive_start_key(SORT_KEY, s(release_sk(after)));
        }
        let out = query.send().await.map_err(|e| unavailable("Query", &e))?;
        let mut releases = Vec::with_capacity(out.items().len());
        for item in out.items() {
            releases.push(self.complete(item.clone()).await?);
        }
        let next = match out.last_evaluated_key() {
            Some(key) => Some(release_id_from_sk(&string(key, SORT_KEY)?)?),
            None => None,
        };
        Ok(ReleasePage { releases, next })
    }

    #[instrument(skip(self))]
    async fn last_succeeded_before(
        &self,
        fleet: &FleetName,
        before: &ReleaseId,
    ) -> Result<Option<Release>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .filter_expression("#status = :succeeded")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pk", s(fleet_pk(fleet)))
            .expression_attribute_values(":lo", s(RELEASE_PREFIX))
            .expression_attribute_values(":hi", s(release_sk(before)))
            .expression_attribute_values(":succeeded", s(ReleaseStatus::Succeeded.as_str()))
            .scan_index_forward(false)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("Query", &e))?;
            for item in page.items() {
                if string(item, "id")? != before.as_str() {
                    return Ok(Some(self.complete(item.clone()).await?));
                }
            }
        }
        Ok(None)
    }

    #[instrument(skip(self))]
    async fn fleet_state(&self, fleet: &FleetName) -> Result<FleetState, StoreError> {
        let Some(item) = self.get(fleet_pk(fleet), STATE_SK.into()).await? else {
            return Ok(FleetState::default());
        };
        let desired_release = opt_string(&item, "desired_release_id").map(|id| parse_id(&id)).transpose()?;
        let lease = match opt_string(&item, "lease_release_id") {
            Some(id) => Some(Lease {
                release_id: parse_id(&id)?,
                expires_at: Timestamp::from_millis(num(&item, "lease_expires_ms")?),
            }),
            None => None,
        };
        let last_good_release = opt_string(&item, "last_good_release_id").map(|id| parse_id(&id)).transpose()?;
        let halted = match opt_string(&item, "halted_release_id") {
            Some(id) => Some(Halt {
                release_id: parse_id(&id)?,
                reason: opt_string(&item, "halted_reason").unwrap_or_default(),
            }),
            None => None,
        };
        Ok(FleetState { desired_release, last_good_release, lease, halted })
    }

    #[instrument(skip_all, fields(release_id = %release.id, version = release.version))]
    async fn save(&self, release: &Release, expected_version: u64) -> Result<bool, StoreError> {
        let mut items = vec![TransactWriteItem::builder().condition_check(self.holds_lease(release)?).build()];
        items.extend(self.put_release(release, expected_version)?.into_iter().map(put_item));
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(unavailable("TransactWriteItems", &e)),
        }
    }

    #[instrument(skip_all, fields(release_id = %settlement.release.id, status = settlement.release.status.as_str()))]
    async fn settle(&self, settlement: &Settlement<'_>) -> Result<bool, StoreError> {
        let release = settlement.release;
        let mut set = vec!["updated_ms = :now".to_owned()];
        let mut remove = Vec::new();
        let mut values = Item::from([(":now".to_owned(), n(release.updated_at.millis()))]);
        if settlement.last_good {
            set.push("last_good_release_id = :id".into());
        }
        if let Some(reason) = &settlement.halt {
            set.push("halted_release_id = :id, halted_reason = :reason".into());
            values.insert(":reason".into(), s(reason));
        }
        match settlement.next {
            Some(next) => {
                set.push("lease_release_id = :next, lease_expires_ms = :expires, desired_release_id = :next".into());
                values.insert(":next".into(), s(next.id.as_str()));
                values.insert(":expires".into(), n(next.deadline.millis()));
            }
            None => remove.push("lease_release_id, lease_expires_ms"),
        }
        values.insert(":id".into(), s(release.id.as_str()));
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let fleet_update = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(fleet_pk(&release.fleet)))
            .key(SORT_KEY, s(STATE_SK))
            .update_expression(expression)
            // A release whose lease lapsed and was taken cannot change the fleet.
            .condition_expression("lease_release_id = :id")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let put_release = self.put_release(release, settlement.expected_version)?;
        let mut items: Vec<TransactWriteItem> = put_release.clone().into_iter().map(put_item).collect();
        items.push(TransactWriteItem::builder().update(fleet_update).build());
        if let Some(next) = settlement.next {
            items.extend(self.put_new_release(next)?.into_iter().map(put_item));
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => {
                // Fenced off, or the lease was lost: the release may still be
                // settled on its own, but never change a fleet it no longer holds.
                if settlement.next.is_some() || settlement.halt.is_some() {
                    return Ok(false);
                }
                let alone = put_release.into_iter().map(put_item).collect();
                match self.client.transact_write_items().set_transact_items(Some(alone)).send().await {
                    Ok(_) => Ok(true),
                    Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => {
                        Ok(false)
                    }
                    Err(e) => Err(unavailable("TransactWriteItems", &e)),
                }
            }
            Err(e) => Err(unavailable("TransactWriteItems", &e)),
        }
    }
}

impl DynamoReleaseStore {
    /// A new release item, never written over an existing one, and its parts.
    fn put_new_release(&self, release: &Release) -> Result<Vec<Put>, StoreError> {
        let (head, parts) = release_items(release, self.inline_body_bytes)?;
        let head = Put::builder()
            .table_name(&self.table)
            .set_item(Some(head))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with_parts(head, parts)
    }

    /// The release item, written only over the version it was read at, and its parts.
    fn put_release(&self, release: &Release, expected_version: u64) -> Result<Vec<Put>, StoreError> {
        let (head, parts) = release_items(release, self.inline_body_bytes)?;
        let head = Put::builder()
            .table_name(&self.table)
            .set_item(Some(head))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with_parts(head, parts)
    }

    /// Part items need no condition: the release item's condition decides the
    /// whole transaction.
    fn with_parts(&self, head: Put, parts: Vec<Item>) -> Result<Vec<Put>, StoreError> {
        let mut puts = vec![head];
        for part in parts {
            puts.push(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(part))
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(puts)
    }

    /// The release an item names, with its parts read when its body was split.
    async fn complete(&self, mut head: Item) -> Result<Release, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            let Some(count) = head.get("parts").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<usize>().ok())
            else {
                return release_from_item(&head, None);
            };
            let version = num(&head, "version")?;
            let id = string(&head, "id")?;
            let pk = string(&head, PARTITION_KEY)?;
            let mut body = Vec::new();
            let mut current = true;
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(format!("{PART_PREFIX}{id}#")))
                .consistent_read(true)
                .into_paginator()
                .send();
            let mut seen = 0;
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| unavailable("Query", &e))?;
                for part in page.items().iter().take(count.saturating_sub(seen)) {
                    current &= num(part, "version")? == version;
                    let data = part.get("data").and_then(|v| v.as_b().ok()).ok_or_else(|| corrupt_part(&id))?;
                    body.extend_from_slice(data.as_ref());
                    seen += 1;
                }
            }
            if current && seen == count {
                return release_from_item(&head, Some(&body));
            }
            // A writer replaced the release between the two reads: read both again.
            let sk = string(&head, SORT_KEY)?;
            head = self.get(pk, sk).await?.ok_or_else(|| corrupt_part(&id))?;
        }
        Err(StoreError::Unavailable("the release kept changing while it was read; try again".into()))
    }

    fn holds_lease(&self, release: &Release) -> Result<ConditionCheck, StoreError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(fleet_pk(&release.fleet)))
            .key(SORT_KEY, s(STATE_SK))
            .condition_expression("lease_release_id = :id")
            .expression_attribute_values(":id", s(release.id.as_str()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn put_item(put: Put) -> TransactWriteItem {
    TransactWriteItem::builder().put(put).build()
}

fn corrupt_part(id: &str) -> StoreError {
    StoreError::Corrupt(format!("release {id} names parts that are missing or unreadable"))
}

fn fleet_pk(fleet: &FleetName) -> String {
    format!("FLEET#{fleet}")
}

fn release_sk(id: &ReleaseId) -> String {
    format!("{RELEASE_PREFIX}{id}")
}

fn release_id_from_sk(sk: &str) -> Result<ReleaseId, StoreError> {
    parse_id(sk.strip_prefix(RELEASE_PREFIX).unwrap_or(sk))
}

fn parse_id(raw: &str) -> Result<ReleaseId, StoreError> {
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
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    instances: Vec<InstanceOutcome>,
    #[serde(default)]
    rollout: Option<Rollout>,
    #[serde(default)]
    launches: Vec<Launch>,
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
    if let Some(v) = &r.status_reason {
        item.insert("status_reason".into(), s(v.clone()));
    }
    if let Some(v) = &r.command_id {
        item.insert("command_id".into(), s(v.clone()));
    }
    // Outputs arrive cut to their tails (aws/ssm.rs) and trimmed to a few
    // failures (domain::release::trim_outputs): stored as they are.
    let body =
        serde_json::to_string(&BodyRef { instances: &r.instances, rollout: r.rollout.as_ref(), launches: &r.launches })
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

/// A release from its item and, when the body was split, the parts joined.
pub(crate) fn release_from_item(item: &Item, parts: Option<&[u8]>) -> Result<Release, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("release item has an invalid {what}"));
    let body: Body = match (parts, opt_string(item, "body")) {
        (Some(bytes), _) => serde_json::from_slice(bytes).map_err(|_| corrupt("body"))?,
        (None, Some(text)) => serde_json::from_str(&text).map_err(|_| corrupt("body"))?,
        (None, None) => Body { instances: Vec::new(), rollout: None, launches: Vec::new() },
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
        status: ReleaseStatus::parse(&string(item, "status")?).ok_or_else(|| corrupt("status"))?,
        status_reason: opt_string(item, "status_reason"),
        command_id: opt_string(item, "command_id"),
        created_at: Timestamp::from_millis(num(item, "created_ms")?),
        updated_at: Timestamp::from_millis(num(item, "updated_ms")?),
        deadline: Timestamp::from_millis(num(item, "deadline_ms")?),
        instances: body.instances,
        launches: body.launches,
        rollout: body.rollout,
        version: num(item, "version")?,
    })
}

/// The last `max` characters of `text`, on a character boundary (SSM output as kept).
pub(crate) fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max)).collect()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn string(item: &Item, key: &str) -> Result<String, StoreError> {
    opt_string(item, key).ok_or_else(|| StoreError::Corrupt(format!("item lacks string attribute {key}")))
}

fn opt_string(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn num(item: &Item, key: &str) -> Result<u64, StoreError> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks numeric attribute {key}")))
}

fn unavailable<E: std::error::Error>(operation: &str, e: &E) -> StoreError {
    let text = super::describe(operation, e);
    tracing::error!(error = %text, "DynamoDB call failed");
    StoreError::Unavailable(text)
}

/// The token ledger of `FLAKEFLEET_AUTH=github-oidc`, on the same table.
#[derive(Clone, Debug)]
pub struct DynamoTokenLedger {
    client: Client,
    table: String,
}

impl DynamoTokenLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl TokenLedger for DynamoTokenLedger {
    async fn record_first_use(&self, jti: &str, expires_at: Timestamp) -> Result<bool, LedgerError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(format!("{TOKEN_PREFIX}{jti}")))
            .item(SORT_KEY, s(TOKEN_PREFIX.trim_end_matches('#')))
            .item(TTL_ATTRIBUTE, n(expires_at.secs()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(LedgerError(super::describe("PutItem", &e))),
        }
    }
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
            }],
            rollout: Some(crate::domain::rollout::Rollout {
                waves: vec![crate::domain::rollout::Wave::new(vec!["i-1".into()], 5)],
                fleet_size: Some(3),
                fixed: false,
            }),
            launches: vec![crate::domain::repair::Launch { slot: 2, instance_id: Some("i-9".into()), error: None }],
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

    #[test]
    fn tail_keeps_the_end_on_char_boundaries() {
        assert_eq!(tail("héllo", 3), "llo");
        assert_eq!(tail("hé", 10), "hé");
    }
}
