//! The DynamoDB store keeps the same contract as the in-memory store of the
//! unit tests (`domain::contract`): the conditions it reports come from the
//! transaction's CancellationReasons, read from the local AWS.

use crate::crash::{pending_release, store};
use crate::support::Stack;
use flakefleet::domain::model::time::Timestamp;

#[tokio::test]
async fn the_dynamodb_store_keeps_the_store_contract() {
    let stack = Stack::new(0).await;
    let now = Timestamp::now();
    flakefleet::domain::contract::check(&store(&stack), &pending_release(&stack, now), now).await;
}

/// The same, with every release body split over part items.
#[tokio::test]
async fn the_contract_holds_with_bodies_in_parts() {
    let stack = Stack::new(0).await;
    let now = Timestamp::now();
    let parts = store(&stack).with_inline_body_bytes(8);
    flakefleet::domain::contract::check(&parts, &pending_release(&stack, now), now).await;
}
