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
    #[error("{0} is not https: the request's signature and session token would travel in clear text and could be replayed; use the https function URL (plain http only on 127.0.0.1)")]
    Insecure(String),
}

/// Removes what a terminal would act on from text that came from hosts or the
/// API: control characters (C0, DEL, C1: escape sequences, bells, carriage
/// returns) and the bidirectional controls that reorder what is shown.
/// Newlines and tabs stay.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            c == '\n'
                || c == '\t'
                || !(c.is_control()
                    || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        })
        .collect()
}

/// [`printable`] over every string of a JSON answer, keys included.
pub fn printable_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(printable(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(printable_json).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (printable(&k), printable_json(v))).collect()),
        other => other,
    }
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
        if !base.starts_with("https://") && !crate::https::is_loopback(base) {
            return Err(CallError::Insecure(printable(base)));
        }
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
        // Everything printed from here on came through this one place.
        serde_json::from_slice(&bytes).map(|json| (status, printable_json(json))).map_err(|_| CallError::NotJson {
            status,
            body: printable(&String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_output_cannot_drive_the_terminal() {
        let hostile = "ok\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{9b}31m\u{202E}txt.exe\u{7f}\tend\nnext";
        assert_eq!(printable(hostile), "ok]0;owned[2J31mtxt.exe\tend\nnext");
        let answer = json!({"release": {"instances": [{"stderr_tail": hostile, "\u{1b}[1mkey": 1}]}});
        let clean = printable_json(answer).to_string();
        assert!(!clean.chars().any(|c| c.is_control()), "{clean}");
        assert!(!clean.contains("\\u001b"), "not even escaped: {clean}");
    }

    #[tokio::test]
    async fn plain_http_is_refused_unless_it_is_loopback() {
        for url in [
            "http://abc.lambda-url.us-east-1.on.aws/",
            "http://127.0.0.1.evil.example/",
            "ftp://x",
            "abc.lambda-url.us-east-1.on.aws",
        ] {
            let err = FunctionUrl::new(url, Some("us-east-1".into())).await.err().expect(url);
            assert!(matches!(err, CallError::Insecure(_)), "{url}: {err}");
        }
        assert!(!matches!(
            FunctionUrl::new("http://127.0.0.1:9000/lambda-url/f", Some("us-east-1".into())).await,
            Err(CallError::Insecure(_))
        ));
    }
}
