//! A crash between any two steps of a deploy loses nothing and sends nothing twice.

use crate::support::{gate, Stack, GOOD};
use flakefleet::aws::dynamodb::INLINE_BODY_BYTES;
use flakefleet::aws::{DynamoReleaseStore, SsmCommandRunner};
use flakefleet::domain::model::command::{ApplyCommand, CommandTarget};
use flakefleet::domain::model::flakeref::Flakeref;
use flakefleet::domain::model::ids::{IdempotencyKey, ReleaseId};
use flakefleet::domain::model::outcome::InstanceOutcome;
use flakefleet::domain::model::release::{Release, ReleaseKind, ReleaseStatus};
use flakefleet::domain::model::store::{AdmitConflict, Admitted, IdempotencyClaim, Settlement, Written};
use flakefleet::domain::model::time::Timestamp;
use flakefleet::domain::planner::lease::{self, lease_for};
use flakefleet::domain::ports::{CommandRunner, ReleaseStore, StoreError};
use serde_json::json;
use std::time::Duration;

pub(crate) fn pending_release(stack: &Stack, now: Timestamp) -> Release {
    Release {
        id: ReleaseId::generate(now, fastrand::u128(..)),
        fleet: stack.fleet.clone(),
        flakeref: Flakeref::parse(GOOD).unwrap(),
        revision: None,
        kind: ReleaseKind::Deploy,
        rollback_of: None,
        replaces: None,
        origin: Default::default(),
        status: ReleaseStatus::Pending,
        status_reason: None,
        command_id: None,
        created_at: now,
        updated_at: now,
        deadline: now.plus(Duration::from_secs(600)),
        instances: vec![],
        rollout: None,
        launches: vec![],
        unreachable: vec![],
        claim: None,
        stopping: None,
        control: None,
        ignored_alarms: Vec::new(),
        noticed: None,
        version: 0,
    }
}

pub(crate) fn store(stack: &Stack) -> DynamoReleaseStore {
    DynamoReleaseStore::new(stack.ddb.clone(), &stack.table)
}

/// The fingerprint the controller records for `{"flakeref": GOOD}`.
fn claim(key: &str, now: Timestamp) -> IdempotencyClaim {
    IdempotencyClaim {
        key: IdempotencyKey::parse(key).unwrap(),
        request: format!("deploy {GOOD} -"),
        expires_at: now.plus(Duration::from_secs(600)),
    }
}

#[tokio::test]
async fn crash_after_recording_before_sending_is_finished_by_the_retry() {
    let stack = Stack::new(2).await;
    let now = Timestamp::now();
    let release = pending_release(&stack, now);
    assert_eq!(
        store(&stack)
            .admit(&release, &lease_for(&release), Some(&claim("ci-run-7", now)), true, &[], now)
            .await
            .unwrap(),
        Admitted::Yes
    );

    // The caller never got an answer, so it retries with the same key.
    let controller = stack.controller();
    let body = json!({"flakeref": GOOD, "idempotency_key": "ci-run-7"}).to_string();
    let (status, answer) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["release"]["id"], release.id.as_str());
    assert_eq!(answer["release"]["status"], "in_progress");
    assert_eq!(stack.commands().await.len(), 1);
    let (_, again) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(again["release"]["command_id"], answer["release"]["command_id"]);
    assert_eq!(stack.commands().await.len(), 1);
}

#[tokio::test]
async fn crash_after_recording_is_finished_by_the_reconcile() {
    let stack = Stack::new(1).await;
    let now = Timestamp::now();
    let release = pending_release(&stack, now);
    store(&stack).admit(&release, &lease_for(&release), None, true, &[], now).await.unwrap();
    let controller = stack.controller();
    let answer = flakefleet::entry::handle(&controller, &gate(), json!({"action": "reconcile"}), "it").await.unwrap();
    assert_eq!(answer["reconcile"]["outcome"], "dispatched");
    assert_eq!(stack.commands().await.len(), 1);
    assert_eq!(stack.settle(&controller).await["release"]["status"], "succeeded");
}

#[tokio::test]
async fn crash_after_sending_before_recording_adopts_the_sent_command() {
    let stack = Stack::new(2).await;
    let now = Timestamp::now();
    let release = pending_release(&stack, now);
    store(&stack).admit(&release, &lease_for(&release), None, true, &[], now).await.unwrap();
    let runner = SsmCommandRunner::new(stack.ssm.clone(), crate::support::ssm_settings());
    let sent = runner
        .send(&ApplyCommand {
            flakeref: release.flakeref.clone(),
            target: CommandTarget::Tag(stack.tag.clone()),
            comment: release.command_comment(),
            check_only: false,
        })
        .await
        .unwrap();

    let controller = stack.controller();
    let answer = flakefleet::entry::handle(&controller, &gate(), json!({"action": "reconcile"}), "it").await.unwrap();
    assert_eq!(answer["reconcile"]["release"]["command_id"], sent.as_str(), "{answer}");
    assert_eq!(stack.commands().await.len(), 1, "no second command");
    assert_eq!(stack.settle(&controller).await["release"]["status"], "succeeded");
}

#[tokio::test]
async fn a_recorded_release_is_never_overwritten() {
    let stack = Stack::new(1).await;
    let now = Timestamp::now();
    let release = pending_release(&stack, now);
    let store = store(&stack);
    store.admit(&release, &lease_for(&release), None, true, &[], now).await.unwrap();
    // The same id again (a retry that regenerated nothing) is refused while the lease is held...
    let mut copy = release.clone();
    copy.flakeref = Flakeref::parse("Evil/infra/=6.6.6#nixosConfigurations.web").unwrap();
    // (DynamoDB's CancellationReasons name both conditions that failed)...
    let refused = store.admit(&copy, &lease_for(&copy), None, true, &[], now).await.unwrap();
    let holder = AdmitConflict::LeaseHeld { holder: release.id.clone() };
    assert_eq!(refused, Admitted::Refused(vec![AdmitConflict::IdTaken, holder]));
    // ...and once the release settled and freed the fleet, the condition on
    // the release item still holds, and says so.
    let mut done = release.clone();
    (done.status, done.version) = (ReleaseStatus::Succeeded, 1);
    let settled = Settlement { expected_version: 0, ..lease::settlement(done, None, None) };
    assert_eq!(store.settle(&settled).await.unwrap(), Written::Yes);
    let later = now.plus(Duration::from_secs(601));
    let refused = store.admit(&copy, &lease_for(&copy), None, true, &[], later).await.unwrap();
    assert_eq!(refused, Admitted::Refused(vec![AdmitConflict::IdTaken]));
    let stored = store.release(&stack.fleet, &release.id).await.unwrap().unwrap();
    assert_eq!(stored.flakeref.as_str(), GOOD);
}

/// The release body's byte length as stored inline, read back raw from the table.
async fn stored_body_len(stack: &Stack, release: &Release) -> Option<usize> {
    let item = stack
        .ddb
        .get_item()
        .table_name(&stack.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("FLEET#{}", stack.fleet.as_str())))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("RELEASE#{}", release.id.as_str())))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item.get("body").map(|b| b.as_s().unwrap().len())
}

fn with_outcomes(release: &Release, n: usize) -> Release {
    let mut release = release.clone();
    release.instances = (0..n)
        .map(|i| InstanceOutcome {
            instance_id: format!("i-{i:017x}"),
            status: "Success".into(),
            detail: "Success".into(),
            exit_code: Some(0),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            output_note: None,
            started: false,
        })
        .collect();
    release
}

/// At the store's real inline limit (96 KiB, far below DynamoDB's 400 KB item):
/// a body one outcome under it stays in the release item, one outcome over it
/// moves to part items, both read back whole; past the 3 MiB a transaction can
/// carry, the write is refused with a message and nothing changes.
#[tokio::test]
async fn bodies_split_exactly_at_the_real_inline_limit() {
    let stack = Stack::new(0).await;
    let store = store(&stack);
    let now = Timestamp::now();
    let mut current = pending_release(&stack, now);
    store.admit(&current, &lease_for(&current), None, true, &[], now).await.unwrap();
    // Saves `current` with `n` outcomes as its next version.
    async fn save(store: &DynamoReleaseStore, current: &mut Release, n: usize) -> Result<bool, StoreError> {
        let mut next = with_outcomes(current, n);
        next.version = current.version + 1;
        let saved = store.save(&next, current.version, &[]).await?;
        if saved == Written::Yes {
            *current = next;
        }
        Ok(saved == Written::Yes)
    }
    // The body grows by the same number of bytes with every outcome: measure it.
    assert!(save(&store, &mut current, 1).await.unwrap());
    let a = stored_body_len(&stack, &current).await.unwrap();
    assert!(save(&store, &mut current, 2).await.unwrap());
    let per = stored_body_len(&stack, &current).await.unwrap() - a;
    let base = a - per;
    let under = (INLINE_BODY_BYTES - base) / per;

    assert!(save(&store, &mut current, under).await.unwrap());
    let len = stored_body_len(&stack, &current).await.expect("inline");
    assert!(len <= INLINE_BODY_BYTES && len + per > INLINE_BODY_BYTES, "{len} bytes inline");
    assert!(!stack.sort_keys().await.iter().any(|k| k.starts_with("PART#")));
    assert_eq!(store.release(&stack.fleet, &current.id).await.unwrap().unwrap(), current);

    assert!(save(&store, &mut current, under + 1).await.unwrap());
    assert_eq!(stored_body_len(&stack, &current).await, None, "one outcome more moves the body to parts");
    assert!(stack.sort_keys().await.iter().any(|k| k.starts_with("PART#")));
    assert_eq!(store.release(&stack.fleet, &current.id).await.unwrap().unwrap(), current);
    let split = current.clone();

    let too_big = (3 * 1024 * 1024 - base) / per + 1;
    let refused = save(&store, &mut current, too_big).await;
    assert!(
        matches!(&refused, Err(StoreError::Corrupt(m)) if m.contains("more than the 3145728 bytes")),
        "{refused:?}"
    );
    assert_eq!(store.release(&stack.fleet, &split.id).await.unwrap().unwrap(), split, "nothing changed");
}
