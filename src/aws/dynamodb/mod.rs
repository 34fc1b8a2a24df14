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
//! never mixes two writes (`codec`). Used GitHub token ids live apart from
//! the fleets (`ledger`).
//!
//! Which condition refused a transaction is read from its
//! `CancellationReasons`, never guessed; what that means is the domain's
//! rule (`domain::planner::lease`).

mod codec;
mod ledger;

pub use codec::{INLINE_BODY_BYTES, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
pub use ledger::DynamoTokenLedger;

use crate::domain::model::fleet::{FleetState, Halt, Lease};
use crate::domain::model::ids::{FleetName, ReleaseId};
use crate::domain::model::release::{Release, ReleaseKind, ReleaseStatus};
use crate::domain::model::store::{
    AdmitConflict, Admitted, Fence, FleetChange, IdempotencyClaim, Notice, ReleasePage, Settlement, Written,
};
use crate::domain::model::time::Timestamp;
use crate::domain::ports::{ReleaseStore, StoreError};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use codec::*;
use tracing::instrument;

/// How often a transaction is tried when DynamoDB cancelled it for a reason
/// other than a condition (TransactionConflict, throttling), or when the
/// condition that failed had lapsed by the time it was read.
const TRANSACT_ATTEMPTS: u32 = 5;
/// The first backoff between those tries; each doubles it, with full jitter
/// (at most 20 + 40 + 80 + 160 ms in all).
const TRANSACT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);
/// How often a read retries when a writer replaced the parts between its two reads.
const READ_ATTEMPTS: usize = 3;
/// The code of a cancellation reason that says a condition did not hold.
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// How a transaction ended.
enum Transaction {
    Done,
    /// Cancelled because these items' conditions failed (by position).
    ConditionsFailed(Vec<usize>),
}

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

    /// The live claim on an idempotency key, if any.
    async fn idempotency_record(
        &self,
        fleet: &FleetName,
        claim: &IdempotencyClaim,
        now: Timestamp,
    ) -> Result<Option<AdmitConflict>, StoreError> {
        let Some(item) = self.get(fleet_pk(fleet), format!("{IDEMPOTENCY_PREFIX}{}", claim.key.as_str())).await? else {
            return Ok(None);
        };
        // TTL deletes lazily: an expired record no longer counts.
        if num(&item, TTL_ATTRIBUTE)? <= now.secs() {
            return Ok(None);
        }
        let release_id = parse_id(&string(&item, "release_id")?)?;
        Ok(Some(AdmitConflict::KeyUsed { release_id, request: string(&item, "request")? }))
    }

    /// Runs a transaction; reads its `CancellationReasons` when cancelled.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Transaction, StoreError> {
        let mut last = String::new();
        for attempt in 0..TRANSACT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let error = match result {
                Ok(_) => return Ok(Transaction::Done),
                Err(e) => e,
            };
            let Some(codes) = cancellation_codes(&error) else {
                return Err(unavailable("TransactWriteItems", &error));
            };
            let failed: Vec<usize> =
                codes.iter().enumerate().filter(|(_, c)| c.as_str() == CONDITION_FAILED).map(|(i, _)| i).collect();
            let other: Vec<&String> =
                codes.iter().filter(|c| !matches!(c.as_str(), "None" | CONDITION_FAILED)).collect();
            if other.is_empty() && !failed.is_empty() {
                return Ok(Transaction::ConditionsFailed(failed));
            }
            // Another transaction on the same item, throttling, ...: nothing
            // was written and nobody is known to have won; try again.
            last = format!("{codes:?}");
            tracing::warn!(reasons = %last, attempt, "TransactWriteItems cancelled without a failed condition");
        }
        Err(StoreError::Busy(format!("TransactWriteItems was cancelled {TRANSACT_ATTEMPTS} times, last for {last}")))
    }
}

/// Sleeps a random time up to the backoff's `attempt`th doubling.
async fn backoff(attempt: u32) {
    let cap = TRANSACT_BACKOFF.saturating_mul(1 << attempt.min(10)) / 2;
    tokio::time::sleep(cap.mul_f64(fastrand::f64())).await;
}

/// The cancellation reason codes of a cancelled transaction, one per item in
/// order (`None` for items that were fine); None for any other error.
fn cancellation_codes(
    e: &SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
            Some(cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect())
        }
        _ => None,
    }
}

impl ReleaseStore for DynamoReleaseStore {
    #[instrument(skip_all, fields(release_id = %release.id))]
    async fn admit(
        &self,
        release: &Release,
        lease: &Lease,
        claim: Option<&IdempotencyClaim>,
        desired: bool,
        notices: &[Notice],
        now: Timestamp,
    ) -> Result<Admitted, StoreError> {
        let mut items: Vec<TransactWriteItem> = self.put_new_release(release)?.into_iter().map(put_item).collect();
        let lease_index = items.len();
        items.push(TransactWriteItem::builder().update(self.take_lease(lease, release, desired, now)?).build());
        let claim_index = items.len();
        if let Some(claim) = claim {
            items.push(put_item(self.put_claim(release, claim, now)?));
        }
        items.extend(self.put_notices(&release.fleet, notices)?);

        for attempt in 0..TRANSACT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Transaction::ConditionsFailed(failed) = self.transact(items.clone()).await? else {
                return Ok(Admitted::Yes);
            };
            // Read what stood in the way; a condition that lapsed since is tried again.
            let mut conflicts = Vec::new();
            if failed.contains(&0) {
                conflicts.push(AdmitConflict::IdTaken);
            }
            if failed.contains(&lease_index) {
                if let Some(lease) = self.fleet_state(&release.fleet).await?.lease {
                    conflicts.push(AdmitConflict::LeaseHeld { holder: lease.release_id.clone() });
                }
            }
            if let (Some(claim), true) = (claim, failed.contains(&claim_index)) {
                conflicts.extend(self.idempotency_record(&release.fleet, claim, now).await?);
            }
            if !conflicts.is_empty() {
                return Ok(Admitted::Refused(conflicts));
            }
        }
        Err(StoreError::Busy(format!(
            "TransactWriteItems was refused {TRANSACT_ATTEMPTS} times by conditions that had lapsed when read"
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
            // Release::is_rollback_target, as a filter: a deploy or a rollback that succeeded.
            .filter_expression("#status = :succeeded AND #kind IN (:deploy, :rollback)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_values(":deploy", s(ReleaseKind::Deploy.as_str()))
            .expression_attribute_values(":rollback", s(ReleaseKind::Rollback.as_str()))
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
    async fn replaced_by(&self, fleet: &FleetName, id: &ReleaseId) -> Result<Option<ReleaseId>, StoreError> {
        // Only a newer release can replace it; ids sort by creation.
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :after")
            .filter_expression("replaces = :id")
            .projection_expression("id")
            .expression_attribute_values(":pk", s(fleet_pk(fleet)))
            .expression_attribute_values(":after", s(release_sk(id)))
            .expression_attribute_values(":id", s(id.as_str()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("Query", &e))?;
            if let Some(item) = page.items().first() {
                return Ok(Some(parse_id(&string(item, "id")?)?));
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
                deadline: Timestamp::from_millis(num(&item, "lease_deadline_ms")?),
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
    async fn save(&self, release: &Release, expected_version: u64, notices: &[Notice]) -> Result<Written, StoreError> {
        let mut items = vec![TransactWriteItem::builder().update(self.follow_deadline(release)?).build()];
        items.extend(self.put_release(release, expected_version)?.into_iter().map(put_item));
        items.extend(self.put_notices(&release.fleet, notices)?);
        match self.transact(items).await? {
            Transaction::Done => Ok(Written::Yes),
            Transaction::ConditionsFailed(failed) if failed.contains(&1) => Ok(Written::Fenced(Fence::StaleVersion)),
            Transaction::ConditionsFailed(_) => Ok(Written::Fenced(Fence::LeaseLost)),
        }
    }

    #[instrument(skip_all, fields(release_id = %settlement.release.id, status = settlement.release.status.as_str()))]
    async fn settle(&self, settlement: &Settlement) -> Result<Written, StoreError> {
        let release = &settlement.release;
        let mut items: Vec<TransactWriteItem> =
            self.put_release(release, settlement.expected_version)?.into_iter().map(put_item).collect();
        let fleet_index = items.len();
        let mut next_index = None;
        if let Some(change) = &settlement.fleet {
            items.push(TransactWriteItem::builder().update(self.fleet_update(release, change)?).build());
            if let Some(next) = &change.next {
                next_index = Some(items.len());
                items.extend(self.put_new_release(&next.release)?.into_iter().map(put_item));
            }
        }
        items.extend(self.put_notices(&release.fleet, &settlement.notices)?);
        match self.transact(items).await? {
            Transaction::Done => Ok(Written::Yes),
            Transaction::ConditionsFailed(failed) if failed.contains(&0) => Ok(Written::Fenced(Fence::StaleVersion)),
            Transaction::ConditionsFailed(failed) if failed.contains(&fleet_index) => {
                Ok(Written::Fenced(Fence::LeaseLost))
            }
            Transaction::ConditionsFailed(failed) if next_index.is_some_and(|i| failed.contains(&i)) => {
                Ok(Written::Fenced(Fence::AlreadyExists))
            }
            Transaction::ConditionsFailed(failed) => Err(StoreError::Corrupt(format!(
                "a settlement was refused by conditions on items {failed:?}, which carry none"
            ))),
        }
    }
}

impl DynamoReleaseStore {
    /// The items of these notices, written with the change they announce:
    /// the table's stream carries each new one to the bus (template.yaml, NoticesPipe).
    fn put_notices(&self, fleet: &FleetName, notices: &[Notice]) -> Result<Vec<TransactWriteItem>, StoreError> {
        notices
            .iter()
            .map(|notice| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(notice_item(fleet, notice)?))
                    .build()
                    .map(put_item)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

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

    /// The fleet's lease for a new release, if no live lease binds. An
    /// operator's deploy or rollback becomes the desired release and lifts a
    /// halt; a repair only takes the lease.
    fn take_lease(
        &self,
        lease: &Lease,
        release: &Release,
        desired: bool,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        // Held until its release settles, whatever the clock says; a rollback
        // only while the release it replaces is still the desired one.
        let (condition, replaces) = match (release.kind, &release.replaces) {
            (ReleaseKind::Rollback, Some(id)) => {
                ("attribute_not_exists(lease_release_id) AND desired_release_id = :replaces", Some(id))
            }
            (ReleaseKind::Rollback, None) => {
                ("attribute_not_exists(lease_release_id) AND attribute_not_exists(desired_release_id)", None)
            }
            _ => ("attribute_not_exists(lease_release_id)", None),
        };
        Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(fleet_pk(&release.fleet)))
            .key(SORT_KEY, s(STATE_SK))
            .update_expression(if desired {
                "SET desired_release_id = :id, lease_release_id = :id, lease_deadline_ms = :deadline, updated_ms = :now \
                 REMOVE halted_release_id, halted_reason"
            } else {
                "SET lease_release_id = :id, lease_deadline_ms = :deadline, updated_ms = :now"
            })
            .condition_expression(condition)
            .set_expression_attribute_values(replaces.map(|id| Item::from([(":replaces".to_owned(), s(id.as_str()))])))
            .expression_attribute_values(":id", s(lease.release_id.as_str()))
            .expression_attribute_values(":deadline", n(lease.deadline.millis()))
            .expression_attribute_values(":now", n(now.millis()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The idempotency record, if its key is free (or its record expired).
    fn put_claim(&self, release: &Release, claim: &IdempotencyClaim, now: Timestamp) -> Result<Put, StoreError> {
        let mut record = Item::new();
        record.insert(PARTITION_KEY.into(), s(fleet_pk(&release.fleet)));
        record.insert(SORT_KEY.into(), s(format!("{IDEMPOTENCY_PREFIX}{}", claim.key.as_str())));
        record.insert("release_id".into(), s(release.id.as_str()));
        record.insert("request".into(), s(claim.request.clone()));
        record.insert(TTL_ATTRIBUTE.into(), n(claim.expires_at.secs()));
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now_s")
            .expression_attribute_values(":now_s", n(now.secs()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The fleet's side of a settlement, only while the release holds the lease.
    fn fleet_update(&self, release: &Release, change: &FleetChange) -> Result<Update, StoreError> {
        let mut set = vec!["updated_ms = :now".to_owned()];
        let mut values = Item::from([(":now".to_owned(), n(release.updated_at.millis()))]);
        values.insert(":id".into(), s(release.id.as_str()));
        if change.last_good {
            set.push("last_good_release_id = :id".into());
        }
        if let Some(reason) = &change.halt {
            set.push("halted_release_id = :id, halted_reason = :reason".into());
            values.insert(":reason".into(), s(reason));
        }
        let expression = match &change.next {
            Some(next) => {
                set.push("lease_release_id = :next, lease_deadline_ms = :deadline, desired_release_id = :next".into());
                values.insert(":next".into(), s(next.lease.release_id.as_str()));
                values.insert(":deadline".into(), n(next.lease.deadline.millis()));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE lease_release_id, lease_deadline_ms", set.join(", ")),
        };
        Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(fleet_pk(&release.fleet)))
            .key(SORT_KEY, s(STATE_SK))
            .update_expression(expression)
            // Only the release holding the fleet changes it (a stale writer of a
            // release that is final already does not).
            .condition_expression("lease_release_id = :id")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Only while the release holds the lease; the lease's deadline follows
    /// the release's (a pause moves it out, a resume back).
    fn follow_deadline(&self, release: &Release) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(fleet_pk(&release.fleet)))
            .key(SORT_KEY, s(STATE_SK))
            .update_expression("SET lease_deadline_ms = :deadline")
            .condition_expression("lease_release_id = :id")
            .expression_attribute_values(":id", s(release.id.as_str()))
            .expression_attribute_values(":deadline", n(release.deadline.millis()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn put_item(put: Put) -> TransactWriteItem {
    TransactWriteItem::builder().put(put).build()
}

fn unavailable<E: std::error::Error>(operation: &str, e: &E) -> StoreError {
    StoreError::Unavailable(crate::aws::logged_failure("DynamoDB", operation, e))
}
