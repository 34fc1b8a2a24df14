//! The operator CLI's side of the HTTP API: SigV4-signed requests to the
//! function URL (credentials from the SDK's default chain, or a named
//! profile), and tables for people.

pub mod exit;
pub mod progress;
pub mod render;
pub mod ui;

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
    #[error("no AWS credentials: {0}. Set AWS_PROFILE or pass --profile (after `aws sso login --profile NAME` for an SSO profile), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    Credentials(String),
    #[error("no AWS region: the URL does not name one; pass --region or set AWS_REGION")]
    NoRegion,
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("{url} did not answer: {reason}")]
    Transport { url: String, reason: String },
    #[error("{0}")]
    BadUrl(String),
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

/// One answer of the function URL: its status, and its body as JSON (or as
/// text when it is not JSON: then something other than flakefleet answered).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Result<Value, String>,
}

/// Checks a function URL before anything is signed for it: https (plain http
/// only to this machine), a host, no query. Answers the base to append
/// routes to, and the region its host names (`<id>.lambda-url.<region>.on.aws`).
pub fn check_url(raw: &str) -> Result<(String, Option<String>), CallError> {
    let shown = printable(raw);
    if !raw.contains("://") {
        return Err(CallError::BadUrl(format!(
            "{shown:?} has no scheme: the function URL looks like https://<id>.lambda-url.<region>.on.aws/ \
             (the stack's FunctionUrl output)"
        )));
    }
    if !raw.starts_with("https://") && !crate::https::is_loopback(raw) {
        return Err(CallError::Insecure(shown));
    }
    let uri: http::Uri = raw.parse().map_err(|e| CallError::BadUrl(format!("{shown:?} is not a URL: {e}")))?;
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(CallError::BadUrl(format!("{shown:?} names no host")));
    };
    if uri.query().is_some() || raw.contains('#') {
        return Err(CallError::BadUrl(format!("{shown:?} has a query or fragment; pass the function URL alone")));
    }
    Ok((raw.trim_end_matches('/').to_owned(), region_of_host(host)))
}

/// The region in a function URL's host, `<url-id>.lambda-url.<region>.on.aws`.
fn region_of_host(host: &str) -> Option<String> {
    let rest = host.to_ascii_lowercase();
    let rest = rest.strip_suffix(".on.aws")?;
    let (_, region) = rest.split_once(".lambda-url.")?;
    let valid = !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_owned())
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
    /// The region signed for: `region` when given, else the URL's, else the
    /// SDK's (AWS_REGION, the profile's). Credentials: the named profile's,
    /// else the SDK's default chain (environment, AWS_PROFILE with SSO or
    /// credential_process, web identity, container and instance roles).
    pub async fn new(base: &str, region: Option<String>, profile: Option<String>) -> Result<Self, CallError> {
        let (base, url_region) = check_url(base)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        let sdk = loader.load().await;
        let region =
            region.or(url_region).or_else(|| sdk.region().map(|r| r.to_string())).ok_or(CallError::NoRegion)?;
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| CallError::Credentials("the default chain found no provider".into()))?;
        let http = crate::https::client().map_err(|reason| CallError::Transport { url: base.clone(), reason })?;
        Ok(Self { base, region, credentials, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// One signed request; answers whatever answered it.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, CallError> {
        let url = format!("{}{path}", self.base);
        let body = body.map(Value::to_string).unwrap_or_default();
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            CallError::Credentials(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
        })?;
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
        let body = serde_json::from_slice(&bytes)
            .map(printable_json)
            .map_err(|_| printable(&String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>()));
        Ok(Reply { status, body })
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
        for url in ["http://abc.lambda-url.us-east-1.on.aws/", "http://127.0.0.1.evil.example/", "ftp://x"] {
            let err = FunctionUrl::new(url, Some("us-east-1".into()), None).await.err().expect(url);
            assert!(matches!(err, CallError::Insecure(_)), "{url}: {err}");
        }
        assert!(!matches!(
            FunctionUrl::new("http://127.0.0.1:9000/lambda-url/f", Some("us-east-1".into()), None).await,
            Err(CallError::Insecure(_))
        ));
    }

    #[test]
    fn urls_are_checked_and_name_their_region() {
        let (base, region) = check_url("https://abcdef123.lambda-url.eu-west-2.on.aws/").unwrap();
        assert_eq!(
            (base.as_str(), region.as_deref()),
            ("https://abcdef123.lambda-url.eu-west-2.on.aws", Some("eu-west-2"))
        );
        assert_eq!(check_url("http://127.0.0.1:9000/lambda-url/f").unwrap().1, None);
        assert_eq!(check_url("https://example.com/").unwrap().1, None);
        for (bad, says) in [
            ("abc.lambda-url.us-east-1.on.aws", "has no scheme"),
            ("https://", "is not a URL"),
            ("https:///releases", "is not a URL"),
            ("https://x.on.aws/?a=b", "query"),
            ("https://x.on.aws/#f", "fragment"),
        ] {
            let err = check_url(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
