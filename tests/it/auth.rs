//! Function URL authentication end to end: GitHub OIDC tokens signed with an
//! RSA key made here, verified against a JWKS served on 127.0.0.1, used once
//! through the DynamoDB ledger in moto; IAM identities against allowlists.
//! Every refusal must leave the table and the fleet untouched.

use crate::support::{sample_event, serve_http, Stack, DEPLOY_ROLE, GOOD};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use flakefleet::auth::iam::IamAllowlist;
use flakefleet::auth::jwks::JwksCache;
use flakefleet::auth::oidc::{verify_signature, OidcPolicy, OidcVerifier};
use flakefleet::auth::{AuthError, Gate};
use flakefleet::aws::DynamoTokenLedger;
use flakefleet::domain::model::time::Timestamp;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const ISSUER_PATH: &str = "/issuer";
const AUDIENCE: &str = "flakefleet-it";
pub(crate) const KID: &str = "it-key-1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One 2048-bit key for the whole test binary: generating it is the slow part.
fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(KeySize::Rsa2048).expect("RSA key"))
}

/// A second key, the one the issuer rotates to.
fn rotated_key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(KeySize::Rsa2048).expect("RSA key"))
}

pub(crate) fn jwk(kid: &str) -> Value {
    jwk_of(key(), kid)
}

fn jwk_of(key: &KeyPair, kid: &str) -> Value {
    let public = key.public_key();
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests; its key set can change.
struct Issuer {
    url: String,
    hits: Arc<AtomicUsize>,
    keys: Arc<Mutex<Value>>,
}

impl Issuer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{ISSUER_PATH}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let keys = Arc::new(Mutex::new(json!({ "keys": [jwk(KID)] })));
        let (counter, set) = (hits.clone(), keys.clone());
        serve_http(listener, move |head| {
            counter.fetch_add(1, Ordering::SeqCst);
            if head.starts_with(&format!("GET {ISSUER_PATH}/.well-known/jwks ")) {
                (200, set.lock().unwrap().to_string())
            } else {
                (404, "{}".into())
            }
        });
        Self { url, hits, keys }
    }

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks", self.url)
    }

    fn policy(&self) -> OidcPolicy {
        OidcPolicy {
            issuer: self.url.clone(),
            audience: AUDIENCE.into(),
            repository_id: "700100".into(),
            repository_owner_id: "700001".into(),
            refs: vec!["refs/heads/main".into()],
            environments: vec![],
            workflow_refs: vec![],
        }
    }

    fn gate(&self, stack: &Stack) -> Gate<DynamoTokenLedger> {
        oidc_gate(self.policy(), &self.jwks_url(), Duration::from_secs(30), stack.ddb.clone(), &stack.table)
    }

    /// The claims GitHub would send for a run on main, with `overrides` applied.
    fn claims(&self, overrides: Value) -> Value {
        let now = Timestamp::now().secs();
        let mut claims = json!({
            "iss": self.url, "aud": AUDIENCE, "iat": now - 5, "nbf": now - 5, "exp": now + 300,
            "jti": format!("jti-{}", fastrand::u64(..)),
            "sub": "repo:acme/fleet:ref:refs/heads/main", "repository": "acme/fleet",
            "repository_id": "700100", "repository_owner": "acme", "repository_owner_id": "700001",
            "ref": "refs/heads/main", "job_workflow_ref": "acme/fleet/.github/workflows/deploy.yml@refs/heads/main",
        });
        claims.as_object_mut().unwrap().extend(overrides.as_object().unwrap().clone());
        claims
    }
}

fn oidc_gate(
    policy: OidcPolicy,
    jwks_url: &str,
    min_refetch: Duration,
    ddb: aws_sdk_dynamodb::Client,
    table: &str,
) -> Gate<DynamoTokenLedger> {
    let jwks = JwksCache::new(jwks_url, flakefleet::https::client().unwrap(), min_refetch);
    Gate::GithubOidc { verifier: Box::new(OidcVerifier::new(policy, jwks)), ledger: DynamoTokenLedger::new(ddb, table) }
}

/// A compact JWS over `header` and `claims`, RS256-signed with the test key.
fn rs256(header: Value, claims: &Value) -> String {
    rs256_with(key(), header, claims)
}

fn rs256_with(key: &KeyPair, header: Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
    format!("{input}.{}", b64(&signature))
}

pub(crate) fn token(claims: &Value) -> String {
    rs256(json!({"alg": "RS256", "typ": "JWT", "kid": KID}), claims)
}

/// The sample deploy request, arriving through an AuthType NONE URL with a bearer token.
fn bearer_request(method: &str, path: &str, token: &str) -> Value {
    let mut event = sample_event("function-url-deploy.json");
    event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["rawPath"] = path.into();
    event["headers"]["authorization"] = format!("Bearer {token}").into();
    event["body"] = json!({ "flakeref": GOOD }).to_string().into();
    event
}

async fn call(stack: &Stack, gate: &Gate<DynamoTokenLedger>, event: Value) -> (u16, Value) {
    let response = flakefleet::entry::handle(&stack.controller(), gate, event, "it").await.unwrap();
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    (response["statusCode"].as_u64().unwrap() as u16, body)
}

async fn assert_untouched(stack: &Stack) {
    assert_eq!(stack.item_count().await, 0, "a refused request wrote to the table");
    assert!(stack.commands().await.is_empty(), "a refused request sent a command");
}

#[tokio::test]
async fn github_tokens_are_verified_pinned_and_used_once() {
    let stack = Stack::new(1).await;
    let issuer = Issuer::start().await;
    let gate = issuer.gate(&stack);

    let hs256 = {
        // The classic confusion attack: HMAC keyed with the public key's bytes.
        let claims = issuer.claims(json!({}));
        let public =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(key().public_key()).unwrap();
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "typ": "JWT", "kid": KID}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_ref()),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(mac.as_ref()))
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(issuer.claims(json!({})).to_string().as_bytes())
    );
    let tampered = {
        let genuine = token(&issuer.claims(json!({})));
        let parts: Vec<&str> = genuine.split('.').collect();
        let forged = issuer.claims(json!({"repository_id": "700100", "ref": "refs/heads/evil"}));
        format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2])
    };
    let now = Timestamp::now().secs();
    let refused: Vec<(&str, String, u16)> = vec![
        ("no token", String::new(), 401),
        ("wrong aud", token(&issuer.claims(json!({"aud": "https://github.com/acme"}))), 401),
        ("wrong iss", token(&issuer.claims(json!({"iss": "https://token.actions.githubusercontent.com"}))), 401),
        ("expired", token(&issuer.claims(json!({"iat": now - 900, "nbf": now - 900, "exp": now - 120}))), 401),
        ("not yet valid", token(&issuer.claims(json!({"nbf": now + 300, "exp": now + 900}))), 401),
        ("alg none", unsigned, 401),
        ("HS256 with the public key", hs256, 401),
        ("unknown kid", rs256(json!({"alg": "RS256", "kid": "someone-else"}), &issuer.claims(json!({}))), 401),
        ("tampered payload", tampered, 401),
        ("another repository", token(&issuer.claims(json!({"repository_id": "700101"}))), 403),
        ("another owner", token(&issuer.claims(json!({"repository_owner_id": "700002"}))), 403),
        ("a ref not allowed", token(&issuer.claims(json!({"ref": "refs/heads/feature"}))), 403),
    ];
    for (case, bad, status) in &refused {
        let mut event = bearer_request("POST", "/releases", bad);
        if bad.is_empty() {
            event["headers"].as_object_mut().unwrap().remove("authorization");
        }
        let (got, body) = call(&stack, &gate, event).await;
        assert_eq!(got, *status, "{case}: {body}");
        let code = if *status == 401 { "unauthenticated" } else { "forbidden" };
        assert_eq!(body["error"], code, "{case}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    assert_untouched(&stack).await;

    // A good token with a bad body: 400, and the token is not spent.
    let good = token(&issuer.claims(json!({})));
    let mut event = bearer_request("POST", "/releases", &good);
    event["body"] = json!({ "flakeref": "acme/fleet/0.1;reboot" }).to_string().into();
    assert_eq!(call(&stack, &gate, event).await.0, 400);
    assert_untouched(&stack).await;

    let (status, body) = call(&stack, &gate, bearer_request("POST", "/releases", &good)).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = call(&stack, &gate, bearer_request("GET", "/fleet", &good)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthenticated")), "a replayed jti: {body}");
    let (status, body) = call(&stack, &gate, bearer_request("GET", "/fleet", &token(&issuer.claims(json!({}))))).await;
    assert_eq!(status, 200, "a fresh token reads: {body}");
    assert_eq!(stack.commands().await.len(), 1, "exactly the accepted deploy was sent");

    // A second gate (another Lambda instance) shares the ledger.
    let (status, _) = call(&stack, &issuer.gate(&stack), bearer_request("GET", "/fleet", &good)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_most_once_per_interval() {
    let issuer = Issuer::start().await;
    let cache = JwksCache::new(issuer.jwks_url(), flakefleet::https::client().unwrap(), Duration::from_secs(30));
    let at = |secs: u64| Timestamp::from_millis(1_795_700_000_000 + secs * 1000);
    // The key returned is the one published under that kid: it verifies what that key signed, and nothing else.
    let claims = issuer.claims(json!({}));
    let signed_by = |key: &KeyPair| rs256_with(key, json!({"alg": "RS256", "kid": "k"}), &claims);
    let verifies = |returned: &jsonwebtoken::DecodingKey, token: &str| verify_signature(token, returned).is_ok();
    let first = cache.key(KID, at(0)).await.unwrap();
    assert!(verifies(&first, &signed_by(key())) && !verifies(&first, &signed_by(rotated_key())));
    assert!(verifies(&cache.key(KID, at(10)).await.unwrap(), &signed_by(key())));
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 1, "known kids come from the cache");

    let unknown = cache.key("rotated", at(31)).await.err();
    assert!(matches!(unknown, Some(AuthError::Unauthenticated(_))), "{unknown:?}");
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 2, "an unknown kid refetches once");
    for i in 0..200 {
        let refused = cache.key(&format!("flood-{i}"), at(32 + i % 20)).await.err();
        assert!(matches!(refused, Some(AuthError::Unauthenticated(_))), "{refused:?}");
    }
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 2, "a flood of unknown kids does not reach the issuer");

    // The issuer rotates: the new kid is found on the next allowed refetch.
    *issuer.keys.lock().unwrap() = json!({ "keys": [jwk(KID), jwk_of(rotated_key(), "rotated")] });
    let rotated = cache.key("rotated", at(62)).await.unwrap();
    assert!(verifies(&rotated, &signed_by(rotated_key())) && !verifies(&rotated, &signed_by(key())));
    assert_eq!(issuer.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_keys_every_token_is_refused() {
    let stack = Stack::new(1).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let issuer = Issuer::start().await;
    let jwks = format!("http://{closed}/jwks");
    let gate = oidc_gate(issuer.policy(), &jwks, Duration::ZERO, stack.ddb.clone(), &stack.table);
    let (status, body) =
        call(&stack, &gate, bearer_request("POST", "/releases", &token(&issuer.claims(json!({}))))).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("auth_unavailable")), "{body}");
    assert_untouched(&stack).await;
}

#[tokio::test]
async fn iam_callers_need_to_be_named_and_readers_cannot_write() {
    let stack = Stack::new(1).await;
    let viewer = "arn:aws:sts::123456789012:assumed-role/flakefleet-viewer/alice";
    let gate: Gate<DynamoTokenLedger> = Gate::Iam(IamAllowlist {
        readers: IamAllowlist::parse_list("arn:aws:iam::123456789012:role/flakefleet-viewer").unwrap(),
        writers: IamAllowlist::parse_list(DEPLOY_ROLE).unwrap(),
    });
    let signed_by = |arn: Option<&str>, method: &str, path: &str| {
        let mut event = sample_event("function-url-deploy.json");
        event["requestContext"]["http"]["method"] = method.into();
        event["rawPath"] = path.into();
        match arn {
            Some(arn) => event["requestContext"]["authorizer"]["iam"]["userArn"] = arn.into(),
            None => drop(event["requestContext"].as_object_mut().unwrap().remove("authorizer")),
        }
        event
    };
    let stranger = "arn:aws:sts::123456789012:assumed-role/someone-else/x";
    for (arn, method, path, status) in [
        (None, "POST", "/releases", 401),
        (None, "GET", "/fleet", 401),
        (Some(stranger), "GET", "/fleet", 403),
        (Some(stranger), "POST", "/releases", 403),
        (Some(viewer), "POST", "/releases", 403),
        (Some(viewer), "POST", "/rollback", 403),
        (Some(viewer), "POST", "/reconcile", 403),
    ] {
        let (got, body) = call(&stack, &gate, signed_by(arn, method, path)).await;
        assert_eq!(got, status, "{arn:?} {method} {path}: {body}");
    }
    assert_untouched(&stack).await;
    assert_eq!(call(&stack, &gate, signed_by(Some(viewer), "GET", "/fleet")).await.0, 200);
    let (status, body) = call(&stack, &gate, sample_event("function-url-deploy.json")).await;
    assert_eq!(status, 202, "the named writer deploys: {body}");
}

/// Everything logged at TRACE while tokens and credentials pass through:
/// none of them may appear, while the callers they authenticate do.
#[tokio::test]
async fn tokens_and_credentials_never_reach_the_log() {
    let capture = capture_logs();
    let stack = Stack::new(1).await;
    const SECRET: &str = "wJalrXUtnFEMI-secret-that-must-not-be-logged";
    const SESSION: &str = "FwoGZXIvYXdzE-session-token-that-must-not-be-logged";
    let credentials =
        aws_sdk_dynamodb::config::Credentials::new("AKIALOGTEST", SECRET, Some(SESSION.into()), None, "it");
    let ddb =
        aws_sdk_dynamodb::Client::from_conf(stack.ddb.config().to_builder().credentials_provider(credentials).build());
    let issuer = Issuer::start().await;
    let gate = oidc_gate(issuer.policy(), &issuer.jwks_url(), Duration::from_secs(30), ddb, &stack.table);
    let good = token(&issuer.claims(json!({})));
    let forbidden = token(&issuer.claims(json!({"ref": "refs/heads/feature"})));
    assert_eq!(call(&stack, &gate, bearer_request("POST", "/releases", &good)).await.0, 202);
    assert_eq!(call(&stack, &gate, bearer_request("GET", "/fleet", &good)).await.0, 401);
    assert_eq!(call(&stack, &gate, bearer_request("GET", "/fleet", &forbidden)).await.0, 403);
    let mut iam = sample_event("function-url-deploy.json");
    iam["headers"]["authorization"] =
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEY/20261126/us-east-2/lambda/aws4_request, Signature=f00dfeed".into();
    iam["headers"]["x-amz-security-token"] = SESSION.into();
    assert_eq!(call(&stack, &crate::support::gate(), iam).await.0, 409, "the deploy above holds the fleet");

    let log = String::from_utf8(capture.lock().unwrap().clone()).unwrap();
    assert!(log.contains("acme/fleet@refs/heads/main"), "the OIDC caller is logged");
    assert!(log.contains("assumed-role/flakefleet-deploy"), "the IAM caller is logged");
    let signature = good.rsplit('.').next().unwrap();
    for (what, needle) in [
        ("a token", good.as_str()),
        ("a token's signature", signature),
        ("a refused token", forbidden.as_str()),
        ("the secret access key", SECRET),
        ("the session token", SESSION),
        ("the caller's access key", "ASIAEXAMPLEKEY"),
        ("the caller's signature", "f00dfeed"),
    ] {
        assert!(!log.contains(needle), "{what} is in the log");
    }
}

thread_local! {
    static LOG_SINK: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

/// Captures, from now on, every event at any level logged on this thread in
/// the Lambda's JSON format. One global subscriber for the test binary: a
/// scoped one misses callsites other threads registered first.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    struct ThreadSink;
    impl std::io::Write for ThreadSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            LOG_SINK.with(|sink| {
                if let Some(sink) = sink.borrow().as_ref() {
                    sink.lock().unwrap().extend_from_slice(buf);
                }
            });
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Dynamic: asked on every event, never cached per callsite.
        let capturing =
            tracing_subscriber::filter::dynamic_filter_fn(|_, _| LOG_SINK.with(|sink| sink.borrow().is_some()));
        let subscriber =
            tracing_subscriber::registry().with(flakefleet::telemetry::json_logs(|| ThreadSink).with_filter(capturing));
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    LOG_SINK.with(|sink| *sink.borrow_mut() = Some(buffer.clone()));
    buffer
}
