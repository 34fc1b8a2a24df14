//! EventBridge behind `NoticeBoard`: each notice one `Release Status Change`
//! event from source `flakefleet` on the configured bus (the default bus
//! unless named), ten per PutEvents call, each entry's own result read.

use crate::domain::ports::{Notice, NoticeBoard, NoticeError};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tracing::{instrument, warn};

pub const SOURCE: &str = "flakefleet";
pub const DETAIL_TYPE: &str = "Release Status Change";
/// PutEvents takes at most 10 entries.
const ENTRIES_PER_CALL: usize = 10;

pub struct EventBridgeNotices {
    client: aws_sdk_eventbridge::Client,
    /// None: the account's default bus.
    bus: Option<String>,
}

impl EventBridgeNotices {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: Option<String>) -> Self {
        Self { client, bus }
    }
}

impl NoticeBoard for EventBridgeNotices {
    #[instrument(skip_all, fields(notices = notices.len()))]
    async fn post(&self, notices: &[Notice]) -> Result<Vec<String>, NoticeError> {
        let mut posted = Vec::new();
        for chunk in notices.chunks(ENTRIES_PER_CALL) {
            let entries = chunk
                .iter()
                .map(|notice| {
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(DETAIL_TYPE)
                        .detail(&notice.detail)
                        .time(DateTime::from_millis(notice.at.millis() as i64))
                        .set_event_bus_name(self.bus.clone())
                        .build()
                })
                .collect();
            let out = match self.client.put_events().set_entries(Some(entries)).send().await {
                Ok(out) => out,
                // Those posted so far are cleared; the rest wait for the next pass.
                Err(e) if !posted.is_empty() => {
                    warn!(error = %super::describe("PutEvents", &e), "some release notices not posted yet");
                    return Ok(posted);
                }
                Err(e) => return Err(NoticeError(super::logged_failure("EventBridge", "PutEvents", &e))),
            };
            // One result per entry, in the request's order.
            for (notice, entry) in chunk.iter().zip(out.entries()) {
                match (entry.event_id(), entry.error_code()) {
                    (Some(_), None) => posted.push(notice.id.clone()),
                    (_, code) => warn!(
                        notice = %notice.id,
                        code = code.unwrap_or("none"),
                        message = entry.error_message().unwrap_or(""),
                        "EventBridge refused a release notice; it stays in the outbox"
                    ),
                }
            }
        }
        Ok(posted)
    }
}
