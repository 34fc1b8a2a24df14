//! The issuer's signing keys, fetched over HTTPS and kept for an hour. An
//! unknown `kid` triggers one refetch, and fetches are spaced by at least
//! `min_refetch`, so a flood of made-up kids costs the issuer one request
//! per interval. Without keys younger than an hour, every token is refused.

use super::AuthError;
use crate::domain::model::time::Timestamp;
use crate::https::HttpsClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::DecodingKey;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Keys older than this are not used.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
const MAX_JWKS_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JwksCache {
    url: String,
    http: HttpsClient,
    min_refetch: Duration,
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Timestamp>,
    last_attempt: Option<Timestamp>,
}

impl JwksCache {
    pub fn new(url: impl Into<String>, http: HttpsClient, min_refetch: Duration) -> Self {
        Self { url: url.into(), http, min_refetch, state: Mutex::new(Cached::default()) }
    }

    /// The key named `kid`, fetching the set when it is missing, stale or
    /// does not hold that kid, at most once per `min_refetch`.
    pub async fn key(&self, kid: &str, now: Timestamp) -> Result<Arc<DecodingKey>, AuthError> {
        let mut cached = self.state.lock().await;
        let fresh = |c: &Cached| c.fetched_at.is_some_and(|t| now < t.plus(MAX_KEY_AGE));
        if fresh(&cached) {
            if let Some(key) = cached.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        let may_fetch = cached.last_attempt.is_none_or(|t| now >= t.plus(self.min_refetch));
        if may_fetch {
            cached.last_attempt = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(url = %self.url, keys = keys.len(), "signing keys fetched");
                    cached.keys = keys;
                    cached.fetched_at = Some(now);
                }
                Err(reason) => tracing::warn!(url = %self.url, %reason, "signing keys could not be fetched"),
            }
        }
        if !fresh(&cached) {
            cached.keys.clear();
            return Err(AuthError::Unavailable(
                "the token issuer's signing keys could not be fetched; try again shortly".into(),
            ));
        }
        cached
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Unauthenticated(format!("the token is signed with an unknown key (kid {kid:?})")))
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let request = http::Request::get(&self.url)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = tokio::time::timeout(FETCH_TIMEOUT, Limited::new(response.into_body(), MAX_JWKS_BYTES).collect())
            .await
            .map_err(|_| format!("body not read within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| format!("body unreadable or over {MAX_JWKS_BYTES} bytes: {e}"))?
            .to_bytes();
        parse_key_set(&body)
    }
}

/// The RSA signing keys of a JWKS document, by kid; other keys are skipped.
pub fn parse_key_set(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("no \"keys\" array")?;
    let text = |key: &Value, name: &str| key.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut found = HashMap::new();
    for key in keys {
        let usable = text(key, "kty").as_deref() == Some("RSA")
            && text(key, "use").as_deref().is_none_or(|u| u == "sig")
            && text(key, "alg").as_deref().is_none_or(|a| a == "RS256");
        let (Some(kid), Some(n), Some(e)) = (text(key, "kid"), text(key, "n"), text(key, "e")) else {
            continue;
        };
        if usable {
            if let Ok(decoding) = DecodingKey::from_rsa_components(&n, &e) {
                found.insert(kid, Arc::new(decoding));
            }
        }
    }
    if found.is_empty() {
        return Err("no RSA signing keys in the set".into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_rsa_signing_keys_are_kept() {
        let set = json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": "sXch", "e": "AQAB", "use": "sig", "alg": "RS256"},
            {"kty": "RSA", "kid": "b", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "c", "n": "sXch", "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "d", "n": "sXch", "e": "AQAB", "alg": "RS512"},
            {"kty": "EC", "kid": "e", "x": "a", "y": "b", "crv": "P-256"},
            {"kty": "oct", "kid": "f", "k": "c2VjcmV0"},
        ]});
        let keys = parse_key_set(set.to_string().as_bytes()).unwrap();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert!(parse_key_set(b"{\"keys\": []}").is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }
}
