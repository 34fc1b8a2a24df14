//! Apply commands through SSM Run Command, with the project's own document.

use crate::domain::model::command::{ApplyCommand, CommandReport, CommandTarget};
use crate::domain::model::outcome::PingStatus;
use crate::domain::model::outcome::{InstanceOutcome, InvocationState};
use crate::domain::model::time::Timestamp;
use crate::domain::ports::{CommandRunner, RunnerError};
use aws_sdk_ssm::config::retry::RetryConfig;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::send_command::{SendCommandError, SendCommandOutput};
use aws_sdk_ssm::types::{
    CloudWatchOutputConfig, CommandFilter, CommandFilterKey, CommandInvocationStatus, CommandStatus,
    InstanceInformationStringFilter, Target,
};
use aws_sdk_ssm::Client;
use std::collections::HashMap;
use tracing::instrument;

/// Output kept per instance: ListCommandInvocations gives at most 2,500 characters.
const OUTPUT_TAIL_CHARS: usize = 1000;
/// DescribeInstanceInformation answers at most 50 nodes a page; ids are asked
/// for in lists of the same size.
const NODES_PER_CALL: usize = 50;
/// How many failed instances per report get their streams read one by one.
const STREAMS_FOR_FAILURES: usize = 10;

/// How the document is invoked; from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsmSettings {
    pub document: String,
    /// The document's `action` parameter: switch, boot, test or dry-activate.
    pub action: String,
    pub max_concurrency: String,
    pub max_errors: String,
    /// SSM's delivery timeout (`TimeoutSeconds`), 30 to 2,592,000.
    pub delivery_timeout_secs: i32,
    /// Where the hosts send each invocation's whole output (SSM keeps only
    /// its first 24,000 characters); None: nowhere else.
    pub output_log_group: Option<String>,
    /// The document version this function's stack deployed, by its version
    /// name: every command names that version, so a stack update mid-rollout
    /// (a new version under the same name) changes no command in flight.
    /// None: the document's default version.
    pub document_version_name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SsmCommandRunner {
    client: Client,
    settings: SsmSettings,
    /// `document_version_name` resolved to its DocumentVersion, once per process.
    version: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl SsmCommandRunner {
    pub fn new(client: Client, settings: SsmSettings) -> Self {
        Self { client, settings, version: Default::default() }
    }

    /// The DocumentVersion commands name (DescribeDocument by name and
    /// version name, the first time); None without a version name.
    async fn document_version(&self) -> Result<Option<String>, RunnerError> {
        let resolved = self.version.get_or_try_init(|| async {
            let Some(name) = &self.settings.document_version_name else { return Ok(None) };
            let described =
                self.client.describe_document().name(&self.settings.document).version_name(name).send().await.map_err(
                    |e| {
                        let text = super::logged_failure("SSM", "DescribeDocument", &e);
                        if super::refused(&e) {
                            RunnerError::Rejected(format!(
                                "document {} has no version named {name} (FLAKEFLEET_DOCUMENT_VERSION_NAME): {text}",
                                self.settings.document
                            ))
                        } else {
                            RunnerError::Unavailable(text)
                        }
                    },
                )?;
            let version = described.document().and_then(|d| d.document_version()).map(str::to_owned);
            match version {
                Some(version) => Ok(Some(version)),
                None => Err(RunnerError::Unavailable("DescribeDocument answered without a DocumentVersion".into())),
            }
        });
        resolved.await.cloned()
    }
}

impl CommandRunner for SsmCommandRunner {
    #[instrument(skip_all, fields(comment = %command.comment))]
    async fn send(&self, command: &ApplyCommand) -> Result<String, RunnerError> {
        // Nothing is sent until the version is known: a failure here created nothing.
        let version = self.document_version().await?;
        let mut attempt = 1;
        loop {
            match self.send_once(command, version.as_deref()).await {
                // Throttled: SSM refused it before creating anything, so
                // sending again cannot double it. Nothing else is retried here.
                Err(e) if attempt < super::AWS_ATTEMPTS && throttled(&e) => {
                    let backoff = 100u64 << attempt;
                    tokio::time::sleep(std::time::Duration::from_millis(backoff + fastrand::u64(..backoff))).await;
                    attempt += 1;
                }
                Err(e) => return Err(classify_send_error(e)),
                Ok(out) => {
                    return out
                        .command()
                        .and_then(|c| c.command_id())
                        .map(str::to_owned)
                        .ok_or_else(|| RunnerError::Unavailable("SendCommand answered without a command id".into()))
                }
            }
        }
    }

    #[instrument(skip(self))]
    async fn find(&self, comment: &str, since: Timestamp) -> Result<Option<String>, RunnerError> {
        let filter = |key, value: String| {
            CommandFilter::builder().key(key).value(value).build().map_err(|e| RunnerError::Rejected(e.to_string()))
        };
        let mut pages = self
            .client
            .list_commands()
            .filters(filter(CommandFilterKey::DocumentName, self.settings.document.clone())?)
            .filters(filter(CommandFilterKey::InvokedAfter, since.to_rfc3339())?)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("ListCommands", &e))?;
            if let Some(found) = page.commands().iter().find(|c| c.comment() == Some(comment)) {
                return Ok(found.command_id().map(str::to_owned));
            }
        }
        Ok(None)
    }

    #[instrument(skip(self))]
    async fn report(&self, command_id: &str) -> Result<CommandReport, RunnerError> {
        let listed = self
            .client
            .list_commands()
            .command_id(command_id)
            .send()
            .await
            .map_err(|e| unavailable("ListCommands", &e))?;
        let finished = listed.commands().first().and_then(|c| c.status()).is_some_and(|s| {
            matches!(
                s,
                CommandStatus::Success | CommandStatus::Failed | CommandStatus::TimedOut | CommandStatus::Cancelled
            )
        });

        let mut invocations = Vec::new();
        let mut pages =
            self.client.list_command_invocations().command_id(command_id).details(true).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable("ListCommandInvocations", &e))?;
            for inv in page.command_invocations() {
                let plugin = inv.command_plugins().first();
                let mut outcome = InstanceOutcome {
                    instance_id: inv.instance_id().unwrap_or_default().to_owned(),
                    status: inv.status().map_or(InvocationState::Unknown(String::new()), invocation_state),
                    detail: inv.status_details().unwrap_or_default().to_owned(),
                    exit_code: plugin.map(|p| p.response_code()),
                    stdout_tail: String::new(),
                    stderr_tail: String::new(),
                    output_note: None,
                    started: false,
                };
                // SSM reports -1 until the step has ended.
                if !outcome.is_finished() {
                    outcome.exit_code = None;
                }
                // Output explains a failure; a success's output is left in SSM.
                if outcome.failed() {
                    outcome.stdout_tail =
                        plugin.and_then(|p| p.output()).map(|o| tail(o, OUTPUT_TAIL_CHARS)).unwrap_or_default();
                }
                invocations.push(outcome);
            }
        }
        // The listing mixes both streams and cuts them at 2,500 characters: for a
        // few failed instances, read stdout and stderr apart.
        for outcome in invocations.iter_mut().filter(|o| o.failed()).take(STREAMS_FOR_FAILURES) {
            self.fetch_streams(command_id, outcome).await;
        }
        Ok(CommandReport { finished, invocations })
    }

    #[instrument(skip(self))]
    async fn cancel(&self, command_id: &str, instance_ids: &[String]) -> Result<(), RunnerError> {
        match self
            .client
            .cancel_command()
            .command_id(command_id)
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = super::logged_failure("SSM", "CancelCommand", &e);
                Err(if super::refused(&e) { RunnerError::Rejected(text) } else { RunnerError::Unavailable(text) })
            }
        }
    }

    #[instrument(skip_all, fields(instances = instance_ids.len()))]
    async fn managed_nodes(&self, instance_ids: &[String]) -> Result<HashMap<String, PingStatus>, RunnerError> {
        let mut statuses: HashMap<String, PingStatus> =
            instance_ids.iter().map(|id| (id.clone(), PingStatus::NotRegistered)).collect();
        for chunk in instance_ids.chunks(NODES_PER_CALL) {
            let filter = InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(chunk.to_vec()))
                .build()
                .map_err(|e| RunnerError::Rejected(e.to_string()))?;
            let mut pages = self
                .client
                .describe_instance_information()
                .filters(filter)
                .max_results(NODES_PER_CALL as i32)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| unavailable("DescribeInstanceInformation", &e))?;
                for node in page.instance_information_list() {
                    let (Some(id), Some(ping)) = (node.instance_id(), node.ping_status()) else { continue };
                    if let Some(status) = statuses.get_mut(id) {
                        *status = PingStatus::parse(ping.as_str());
                    }
                }
            }
        }
        Ok(statuses)
    }
}

impl SsmCommandRunner {
    /// One SendCommand, with the SDK's retries off: an answer lost after SSM
    /// started the command would otherwise become a second command, since
    /// SendCommand takes no idempotency token. An unclear failure goes to
    /// flakefleet's own look-up by comment, under the release's claim.
    async fn send_once(
        &self,
        command: &ApplyCommand,
        version: Option<&str>,
    ) -> Result<SendCommandOutput, SdkError<SendCommandError>> {
        self.client
            .send_command()
            .document_name(&self.settings.document)
            .set_document_version(version.map(str::to_owned))
            .set_targets(match &command.target {
                CommandTarget::Tag(tag) => {
                    Some(vec![Target::builder().key(format!("tag:{}", tag.key)).values(&tag.value).build()])
                }
                CommandTarget::Instances(_) => None,
            })
            .set_instance_ids(match &command.target {
                CommandTarget::Instances(ids) => Some(ids.clone()),
                CommandTarget::Tag(_) => None,
            })
            .parameters("flakeref", vec![command.flakeref.as_str().to_owned()])
            .parameters(
                "action",
                vec![if command.check_only { "check".to_owned() } else { self.settings.action.clone() }],
            )
            .comment(&command.comment)
            .max_concurrency(&self.settings.max_concurrency)
            .max_errors(&self.settings.max_errors)
            .timeout_seconds(self.settings.delivery_timeout_secs)
            .set_cloud_watch_output_config(self.settings.output_log_group.as_ref().map(|group| {
                CloudWatchOutputConfig::builder()
                    .cloud_watch_output_enabled(true)
                    .cloud_watch_log_group_name(group)
                    .build()
            }))
            .customize()
            .config_override(aws_sdk_ssm::config::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await
    }

    /// One instance's stdout and stderr tails. Best effort: a failed fetch
    /// leaves them empty with a note, and never keeps the instances' statuses
    /// from being judged.
    async fn fetch_streams(&self, command_id: &str, outcome: &mut InstanceOutcome) {
        let fetched =
            self.client.get_command_invocation().command_id(command_id).instance_id(&outcome.instance_id).send().await;
        match fetched {
            Ok(streams) => {
                outcome.stdout_tail = tail(streams.standard_output_content().unwrap_or_default(), OUTPUT_TAIL_CHARS);
                outcome.stderr_tail = tail(streams.standard_error_content().unwrap_or_default(), OUTPUT_TAIL_CHARS);
            }
            Err(e) => {
                let why = super::logged_failure("SSM", "GetCommandInvocation", &e);
                outcome.stdout_tail.clear();
                outcome.output_note = Some(format!("output not fetched ({why}); it stays in SSM"));
            }
        }
    }
}

/// SSM's invocation status as the domain knows it; anything new stays unknown.
fn invocation_state(status: &CommandInvocationStatus) -> InvocationState {
    match status {
        CommandInvocationStatus::Pending => InvocationState::Pending,
        CommandInvocationStatus::InProgress => InvocationState::InProgress,
        CommandInvocationStatus::Delayed => InvocationState::Delayed,
        CommandInvocationStatus::Cancelling => InvocationState::Cancelling,
        CommandInvocationStatus::Success => InvocationState::Success,
        CommandInvocationStatus::Failed => InvocationState::Failed,
        CommandInvocationStatus::TimedOut => InvocationState::TimedOut,
        CommandInvocationStatus::Cancelled => InvocationState::Cancelled,
        other => InvocationState::Unknown(other.as_str().to_owned()),
    }
}

/// The last `max` characters of `text`, on a character boundary (SSM output as kept).
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max)).collect()
}

/// What a failed SendCommand means for the domain. A refusal by the service
/// means no command exists; anything else (a 5xx, a timeout, a lost
/// connection) may have started one.
fn classify_send_error(e: SdkError<SendCommandError>) -> RunnerError {
    let text = super::logged_failure("SSM", "SendCommand", &e);
    let not_managed = e.as_service_error().is_some_and(|s| s.is_invalid_instance_id());
    match (not_managed, super::refused(&e)) {
        (true, _) => RunnerError::NotManaged(text),
        (false, true) => RunnerError::Rejected(text),
        (false, false) => RunnerError::Unavailable(text),
    }
}

fn throttled(e: &SdkError<SendCommandError>) -> bool {
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    e.code().is_some_and(|c| c.contains("Throttl"))
}

fn unavailable<E: std::error::Error>(operation: &str, e: &E) -> RunnerError {
    RunnerError::Unavailable(crate::aws::logged_failure("SSM", operation, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_on_char_boundaries() {
        assert_eq!(tail("héllo", 3), "llo");
        assert_eq!(tail("hé", 10), "hé");
    }

    #[test]
    fn every_ssm_status_maps_by_name_and_new_ones_stay_unknown() {
        for status in CommandInvocationStatus::values() {
            let state = invocation_state(&CommandInvocationStatus::from(*status));
            assert_eq!(state.as_str(), *status);
            assert!(!matches!(state, InvocationState::Unknown(_)), "{status}");
        }
        let new = invocation_state(&CommandInvocationStatus::from("Paused"));
        assert_eq!(new, InvocationState::Unknown("Paused".into()));
        assert!(!new.is_finished());
    }
}
