//! The token ledger of `FLAKEFLEET_AUTH=github-oidc`: used GitHub token ids,
//! one item each (`pk = TOKEN#<jti>`, `sk = TOKEN`), expiring with the token,
//! on the same table as the fleets.

use super::codec::{n, s, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use crate::auth::{LedgerError, TokenLedger};
use crate::domain::model::time::Timestamp;
use aws_sdk_dynamodb::Client;

const TOKEN_PREFIX: &str = "TOKEN#";

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
            Err(e) => Err(LedgerError(crate::aws::describe("PutItem", &e))),
        }
    }
}
