//! The operator CLI's side of the HTTP API: SigV4-signed requests to the
//! function URL (credentials from the SDK's default chain), and tables for people.

pub mod render;

use crate::https::HttpsClient;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::time::SystemTime;

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("no AWS region: set AWS_REGION or pass --region")]
    NoRegion,
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("{url} did not answer: {reason}")]
    Transport { url: String, reason: String },
    #[error("{status} from flakefleet but not JSON: {body}")]
    NotJson { status: u16, body: String },
}

/// A client of one deployment's function URL.
pub struct FunctionUrl {
    base: String,
    region: String,
    credentials: SharedCredentialsProvider,
    http: HttpsClient,
}

impl FunctionUrl {
    /// `base` is the function URL (https in AWS; http for `cargo lambda watch`).
    pub async fn new(base: &str, region: Option<String>) -> Result<Self, CallError> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let region = region.or_else(|| sdk.region().map(|r| r.to_string())).ok_or(CallError::NoRegion)?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| CallError::Credentials("the default chain found no provider".into()))?;
        let http = crate::https::client().map_err(|reason| CallError::Transport { url: base.into(), reason })?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), region, credentials, http })
    }

    /// One signed request; answers the HTTP status and the JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), CallError> {
        let url = format!("{}{path}", self.base);
        let body = body.map(Value::to_string).unwrap_or_default();
        let credentials =
            self.credentials.provide_credentials().await.map_err(|e| CallError::Credentials(e.to_string()))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Signing(e.to_string()))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable = SignableRequest::new(method, &url, headers.into_iter(), SignableBody::Bytes(body.as_bytes()))
            .map_err(|e| CallError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| CallError::Signing(e.to_string()))?.into_parts();
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Signing(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);

        let transport = |reason: String| CallError::Transport { url: url.clone(), reason };
        let response = self.http.request(request).await.map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        serde_json::from_slice(&bytes).map(|json| (status, json)).map_err(|_| CallError::NotJson {
            status,
            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        })
    }
}

/// Whether a release status is final, and whether it is the good kind of final.
pub fn outcome(status: &str) -> Option<bool> {
    match status {
        "pending" | "in_progress" => None,
        "succeeded" => Some(true),
        _ => Some(false),
    }
}
