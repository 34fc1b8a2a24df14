//! The Lambda's entry point: classify the event, decode it into an
//! operation, run it through the controller, encode the answer. No rules here.

pub mod error;
pub mod event;
pub mod http;
pub mod operation;

use crate::auth::{Access, Gate, TokenLedger};
use crate::domain::model::time::Timestamp;
use crate::domain::ports::Ports;
use crate::domain::usecases::FleetController;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use error::ApiError;
use event::{classify, Trigger, UnknownEvent};
use operation::{
    control_request, decode, perform, release_id, DeployBody, Operation, RollbackBody, DEPLOY_SHAPE, ROLLBACK_SHAPE,
};
use serde_json::{Map, Value};
use tracing::{field, info, info_span, Instrument};

/// Why an invocation ends in a Lambda error rather than an answer.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    #[error("unsupported EventBridge event {event_source}/{detail_type}; expected a Scheduled Event from aws.events or an EC2 Command (Invocation) Status-change Notification from aws.ssm")]
    UnsupportedEvent { event_source: String, detail_type: String },
    /// A server-side failure, returned as an error so asynchronous callers retry.
    #[error("{0}")]
    Failed(ApiError),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::UnknownEvent(_) => "unknown_event",
            HandlerError::UnsupportedEvent { .. } => "unsupported_event",
            HandlerError::Failed(api) => api.code,
        };
        let error_message = match &e {
            HandlerError::Failed(api) => api.message.clone(),
            other => other.to_string(),
        };
        Self { error_type: error_type.into(), error_message }
    }
}

/// Handles one invocation, in one span that carries the release id once known.
/// Function URL requests pass `gate` first; other triggers are authorised by
/// Lambda's own `lambda:InvokeFunction` permission.
pub async fn handle<P: Ports, L>(
    controller: &FleetController<P>,
    gate: &Gate<L>,
    event: Value,
    request_id: &str,
) -> Result<Value, HandlerError>
where
    L: TokenLedger,
{
    let span =
        info_span!("invocation", request_id, trigger = field::Empty, caller = field::Empty, release_id = field::Empty);
    async move {
        let now = Timestamp::now();
        match classify(event)? {
            Trigger::FunctionUrl(request) => Ok(function_url(controller, gate, &request, now).await),
            Trigger::EventBridge { source, detail_type, detail } => {
                tracing::Span::current().record("trigger", "eventbridge");
                if !event::is_reconcile_trigger(&source, &detail_type) {
                    return Err(HandlerError::UnsupportedEvent { event_source: source, detail_type });
                }
                // SSM notifications are hints: the record is what SSM lists.
                let command_id = detail.get("command-id").and_then(|v| v.as_str()).unwrap_or("");
                info!(%source, %detail_type, command_id, "event received");
                run(controller, Operation::Reconcile, now).await.map(|(_, body)| body).map_err(HandlerError::Failed)
            }
            Trigger::Invoke { action, fields } => invoke(controller, &action, fields, now).await,
        }
    }
    .instrument(span)
    .await
}

/// A function URL request: authenticated before it is decoded, so strangers
/// learn nothing about routes or bodies; its token used only for a request
/// that will run, so bad input changes nothing. Always an HTTP answer.
async fn function_url<P: Ports, L>(
    controller: &FleetController<P>,
    gate: &Gate<L>,
    request: &LambdaFunctionUrlRequest,
    now: Timestamp,
) -> Value
where
    L: TokenLedger,
{
    tracing::Span::current().record("trigger", "function_url");
    let method = request.request_context.http.method.clone().unwrap_or_default();
    let path = request.raw_path.clone().unwrap_or_default();
    let answer = async {
        let caller = gate.authenticate(request, now).await?;
        tracing::Span::current().record("caller", caller.principal.as_str());
        gate.authorize(&caller, Access::of_method(&method))?;
        let mut operation = http::decode_request(request)?;
        operation.asked_by(&caller.requested_by);
        gate.consume(&caller).await?;
        run(controller, operation, now).await
    }
    .await;
    let (status, body) = answer.unwrap_or_else(|e| (e.status, e.body()));
    info!(%method, %path, status, "request answered");
    http::response(status, &body)
}

/// A direct invoke: client errors are answered in the body with their
/// status; server errors fail the invocation so asynchronous callers retry.
async fn invoke<P: Ports>(
    controller: &FleetController<P>,
    action: &str,
    fields: Map<String, Value>,
    now: Timestamp,
) -> Result<Value, HandlerError> {
    tracing::Span::current().record("trigger", "invoke");
    let answer = match invoke_operation(action, fields) {
        Ok(mut operation) => {
            // Whoever may invoke the function: its IAM policy decided, and
            // the invoke does not say who.
            operation.asked_by(DIRECT_INVOKE);
            run(controller, operation, now).await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((_, body)) => Ok(body),
        Err(e) if e.is_server_error() => Err(HandlerError::Failed(e)),
        Err(e) => {
            let mut body = e.body();
            body["status"] = e.status.into();
            Ok(body)
        }
    }
}

async fn run<P: Ports>(
    controller: &FleetController<P>,
    operation: Operation,
    now: Timestamp,
) -> Result<(u16, Value), ApiError> {
    if let Some(id) = operation.release_id() {
        tracing::Span::current().record("release_id", id.as_str());
    }
    perform(controller, operation, now).await
}

const DIRECT_INVOKE: &str = "direct invoke";

/// Direct invokes: `{"action": "deploy" | "rollback" | "status" | "reconcile", ...}`.
fn invoke_operation(action: &str, fields: Map<String, Value>) -> Result<Operation, ApiError> {
    match action {
        "deploy" => decode::<DeployBody>(Value::Object(fields), DEPLOY_SHAPE)?.into_operation(),
        "rollback" => decode::<RollbackBody>(Value::Object(fields), ROLLBACK_SHAPE)?.into_operation(),
        "status" | "reconcile" if !fields.is_empty() => {
            let keys: Vec<&String> = fields.keys().collect();
            Err(ApiError::bad_request("invalid_json", format!("action {action:?} takes no other fields, got {keys:?}")))
        }
        "status" => Ok(Operation::FleetStatus),
        "reconcile" => Ok(Operation::Reconcile),
        "pause" | "resume" | "abort" => {
            let mut fields = fields;
            let id = match fields.remove("release_id") {
                Some(Value::String(id)) => release_id(&id)?,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_json",
                        format!("action {action:?} needs \"release_id\": \"<release id>\""),
                    ))
                }
            };
            let body = (!fields.is_empty()).then_some(Value::Object(fields));
            Ok(Operation::Control { id, request: control_request(action, body)?, by: DIRECT_INVOKE.into() })
        }
        other => Err(ApiError::bad_request(
            "unknown_action",
            format!(
                "unknown action {other:?}; expected one of deploy, rollback, status, reconcile, pause, resume, abort"
            ),
        )),
    }
}
