//! `FLAKEFLEET_AUTH=github-oidc`: the function URL is open (AuthType NONE)
//! and every request carries a GitHub Actions OIDC token, verified here:
//! RS256 against the issuer's published keys, then each claim against the
//! operator's pins.

use super::jwks::JwksCache;
use super::AuthError;
use crate::domain::time::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// GitHub Actions' issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a token must say to be let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcPolicy {
    pub issuer: String,
    /// Unique to this deployment; never GitHub's default (the owner's URL) nor STS's.
    pub audience: String,
    pub repository_id: String,
    pub repository_owner_id: String,
    /// Allowed `ref` values (e.g. `refs/heads/main`); empty allows any.
    pub refs: Vec<String>,
    /// Allowed `environment` values; empty allows any, including none.
    pub environments: Vec<String>,
    /// Allowed `job_workflow_ref` values; empty allows any.
    pub workflow_refs: Vec<String>,
}

/// The claims of a GitHub Actions token that flakefleet reads.
#[derive(Clone, Debug, Deserialize)]
pub struct GithubClaims {
    pub iss: String,
    pub aud: Audience,
    pub exp: u64,
    pub iat: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub repository_id: Option<Value>,
    #[serde(default)]
    pub repository_owner_id: Option<Value>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub job_workflow_ref: Option<String>,
}

/// `aud` is a string or a list of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// A verified token: who sent it and the id that must not be seen again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `owner/repo@ref`, for the log.
    pub principal: String,
    pub jti: String,
    /// When the token stops being acceptable, leeway included.
    pub expires_at: Timestamp,
}

pub struct OidcVerifier {
    policy: OidcPolicy,
    jwks: JwksCache,
}

impl OidcVerifier {
    pub fn new(policy: OidcPolicy, jwks: JwksCache) -> Self {
        Self { policy, jwks }
    }

    /// Verifies signature and claims; recording the `jti` is the caller's job,
    /// once the request is known to be acceptable.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, AuthError> {
        let kid = key_id(token)?;
        let key = self.jwks.key(&kid, now).await?;
        let claims = verify_signature(token, &key)?;
        check_claims(&claims, &self.policy, now)
    }
}

/// The `kid` of an RS256 token; any other algorithm, `none` included, is refused here.
pub fn key_id(token: &str) -> Result<String, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Unauthenticated(format!("the token is over {MAX_TOKEN_BYTES} bytes")));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| AuthError::Unauthenticated(format!("the bearer token is not a JWT: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(AuthError::Unauthenticated(format!(
            "the token is signed with {:?}; only RS256 is accepted",
            header.alg
        )));
    }
    header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AuthError::Unauthenticated("the token names no key (kid)".into()))
}

/// Checks the RS256 signature only; every claim is checked by `check_claims`
/// against the caller's clock.
pub fn verify_signature(token: &str, key: &DecodingKey) -> Result<GithubClaims, AuthError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<GithubClaims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| AuthError::Unauthenticated(format!("the token does not verify: {e}")))
}

/// Issuer, audience and times make a token valid (401 otherwise); the pinned
/// repository, owner, ref, environment and workflow give it the right (403).
pub fn check_claims(claims: &GithubClaims, policy: &OidcPolicy, now: Timestamp) -> Result<VerifiedToken, AuthError> {
    let invalid = |m: String| Err(AuthError::Unauthenticated(m));
    let now = now.secs();
    if claims.iss != policy.issuer {
        return invalid(format!("the token's issuer {:?} is not {:?}", claims.iss, policy.issuer));
    }
    if !claims.aud.contains(&policy.audience) {
        return invalid(format!(
            "the token's audience is not {:?}; request the token with that audience",
            policy.audience
        ));
    }
    if now > claims.exp.saturating_add(LEEWAY_SECS) {
        return invalid("the token has expired".into());
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
        return invalid("the token is not valid yet (nbf)".into());
    }
    if claims.iat > now.saturating_add(LEEWAY_SECS) {
        return invalid("the token was issued in the future (iat)".into());
    }
    let jti = match claims.jti.as_deref() {
        Some(j)
            if !j.is_empty()
                && j.len() <= 128
                && j.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            j
        }
        _ => return invalid("the token has no usable id (jti)".into()),
    };

    let forbidden = |m: String| Err(AuthError::Forbidden(m));
    let id = |v: &Option<Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if id(&claims.repository_id).as_deref() != Some(policy.repository_id.as_str()) {
        return forbidden("the token comes from a repository this fleet does not trust (repository_id)".into());
    }
    if id(&claims.repository_owner_id).as_deref() != Some(policy.repository_owner_id.as_str()) {
        return forbidden("the token comes from an owner this fleet does not trust (repository_owner_id)".into());
    }
    let allowed = |list: &[String], value: &Option<String>| {
        list.is_empty() || value.as_ref().is_some_and(|v| list.iter().any(|a| a == v))
    };
    if !allowed(&policy.refs, &claims.git_ref) {
        return forbidden(format!("ref {:?} may not deploy; allowed: {}", claims.git_ref, policy.refs.join(", ")));
    }
    if !allowed(&policy.environments, &claims.environment) {
        return forbidden(format!(
            "environment {:?} may not deploy; allowed: {}",
            claims.environment,
            policy.environments.join(", ")
        ));
    }
    if !allowed(&policy.workflow_refs, &claims.job_workflow_ref) {
        return forbidden(format!(
            "workflow {:?} may not deploy; allowed: {}",
            claims.job_workflow_ref,
            policy.workflow_refs.join(", ")
        ));
    }
    Ok(VerifiedToken {
        principal: format!(
            "{}@{}",
            claims.repository.as_deref().unwrap_or("github"),
            claims.git_ref.as_deref().unwrap_or("?")
        ),
        jti: jti.to_owned(),
        expires_at: Timestamp::from_millis(claims.exp.saturating_add(LEEWAY_SECS).saturating_mul(1000)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_795_700_000;

    fn policy() -> OidcPolicy {
        OidcPolicy {
            issuer: GITHUB_ISSUER.into(),
            audience: "flakefleet-prod".into(),
            repository_id: "123".into(),
            repository_owner_id: "456".into(),
            refs: vec!["refs/heads/main".into()],
            environments: vec![],
            workflow_refs: vec![],
        }
    }

    fn claims(overrides: Value) -> GithubClaims {
        let mut base = json!({
            "iss": GITHUB_ISSUER, "aud": "flakefleet-prod", "exp": NOW + 300, "iat": NOW - 10, "nbf": NOW - 10,
            "jti": "0f3b1c9e-1d2a-4c7b-9a51-6b2f3b8c1d2e", "repository_id": "123", "repository_owner_id": "456",
            "repository": "acme/fleet", "ref": "refs/heads/main", "environment": "production",
            "job_workflow_ref": "acme/fleet/.github/workflows/deploy.yml@refs/heads/main",
        });
        base.as_object_mut().unwrap().extend(overrides.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn check(overrides: Value) -> Result<VerifiedToken, AuthError> {
        check_claims(&claims(overrides), &policy(), Timestamp::from_millis(NOW * 1000))
    }

    #[test]
    fn a_pinned_token_is_accepted_until_its_expiry_plus_leeway() {
        let token = check(json!({})).unwrap();
        assert_eq!(token.principal, "acme/fleet@refs/heads/main");
        assert_eq!(token.expires_at.secs(), NOW + 300 + LEEWAY_SECS);
        assert!(check(json!({"aud": ["other", "flakefleet-prod"]})).is_ok());
        assert!(check(json!({"repository_id": 123, "repository_owner_id": 456})).is_ok());
        assert!(check(json!({"exp": NOW - LEEWAY_SECS})).is_ok(), "within the leeway");
    }

    #[test]
    fn invalid_tokens_are_unauthenticated() {
        for overrides in [
            json!({"iss": "https://token.actions.githubusercontent.com/"}),
            json!({"aud": "https://github.com/acme"}),
            json!({"aud": "sts.amazonaws.com"}),
            json!({"exp": NOW - LEEWAY_SECS - 1}),
            json!({"nbf": NOW + LEEWAY_SECS + 1}),
            json!({"iat": NOW + LEEWAY_SECS + 1}),
            json!({"jti": null}),
            json!({"jti": "a b"}),
            json!({"jti": "x".repeat(129)}),
        ] {
            assert!(matches!(check(overrides.clone()), Err(AuthError::Unauthenticated(_))), "{overrides}");
        }
    }

    #[test]
    fn valid_tokens_from_elsewhere_are_forbidden() {
        for overrides in [
            json!({"repository_id": "124"}),
            json!({"repository_id": null}),
            json!({"repository_owner_id": "457"}),
            json!({"ref": "refs/heads/feature"}),
            json!({"ref": null}),
        ] {
            assert!(matches!(check(overrides.clone()), Err(AuthError::Forbidden(_))), "{overrides}");
        }
        let pinned = OidcPolicy {
            environments: vec!["production".into()],
            workflow_refs: vec!["acme/fleet/.github/workflows/deploy.yml@refs/heads/main".into()],
            ..policy()
        };
        let at = Timestamp::from_millis(NOW * 1000);
        assert!(check_claims(&claims(json!({})), &pinned, at).is_ok());
        assert!(check_claims(&claims(json!({"environment": "staging"})), &pinned, at).is_err());
        assert!(check_claims(&claims(json!({"environment": null})), &pinned, at).is_err());
        let other_workflow = json!({"job_workflow_ref": "acme/fleet/.github/workflows/pr.yml@refs/heads/main"});
        assert!(matches!(check_claims(&claims(other_workflow), &pinned, at), Err(AuthError::Forbidden(_))));
    }

    #[test]
    fn only_rs256_headers_with_a_kid_pass() {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = |header: Value| format!("{}.{}.sig", b64(header), b64(json!({"iss": "x"})));
        assert_eq!(key_id(&token(json!({"alg": "RS256", "kid": "k1"}))).unwrap(), "k1");
        for header in [
            json!({"alg": "none", "kid": "k1"}),
            json!({"alg": "HS256", "kid": "k1"}),
            json!({"alg": "ES256", "kid": "k1"}),
            json!({"alg": "RS256"}),
            json!({"alg": "RS256", "kid": ""}),
        ] {
            assert!(matches!(key_id(&token(header.clone())), Err(AuthError::Unauthenticated(_))), "{header}");
        }
        assert!(key_id("not a token").is_err());
        assert!(key_id(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Arbitrary bearer values, and well-formed tokens with arbitrary
        /// headers, claims and signatures: no panic, and nothing verifies.
        #[test]
        fn hostile_tokens_never_verify(
            raw in "\\PC{0,300}",
            alg in proptest::prop_oneof![
                proptest::strategy::Just("RS256"), proptest::strategy::Just("none"),
                proptest::strategy::Just("HS256"), proptest::strategy::Just("PS256"),
            ],
            payload in "\\PC{0,200}",
            signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            use base64::Engine;
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let key = DecodingKey::from_rsa_components("sXch", "AQAB").unwrap();
            let structured = format!(
                "{}.{}.{}",
                b64(json!({"alg": alg, "kid": "k"}).to_string().as_bytes()),
                b64(payload.as_bytes()),
                b64(&signature)
            );
            for token in [raw.as_str(), structured.as_str()] {
                let verified = key_id(token).and_then(|_| verify_signature(token, &key));
                proptest::prop_assert!(verified.is_err());
            }
        }
    }
}
