//! `FLAKEFLEET_AUTH=github-oidc`: the function URL is open (AuthType NONE)
//! and every request carries a GitHub Actions OIDC token, verified here:
//! RS256 against the issuer's published keys, then each claim against the
//! operator's pins.

use super::jwks::JwksCache;
use super::AuthError;
use crate::domain::model::time::Timestamp;
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
    pub sub: Option<String>,
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
    /// Who asked, as recorded on a release: the token's subject (GitHub's
    /// `repo:owner/repo:environment:name` or `...:ref:refs/heads/main`) and repository.
    pub requested_by: String,
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
    let jti = check_validity(claims, policy, now)?;
    check_trust(claims, policy)?;
    Ok(VerifiedToken {
        principal: format!(
            "{}@{}",
            claims.repository.as_deref().unwrap_or("github"),
            claims.git_ref.as_deref().unwrap_or("?")
        ),
        requested_by: format!(
            "{} (repository {})",
            claims.sub.as_deref().unwrap_or("no subject"),
            claims.repository.as_deref().unwrap_or("unknown")
        ),
        jti: jti.to_owned(),
        expires_at: Timestamp::from_millis(claims.exp.saturating_add(LEEWAY_SECS).saturating_mul(1000)),
    })
}

/// Whether the token is one for this deployment, now: issuer, audience,
/// times and a usable id (answered). Failing any is a 401.
fn check_validity<'c>(claims: &'c GithubClaims, policy: &OidcPolicy, now: Timestamp) -> Result<&'c str, AuthError> {
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
    Ok(jti)
}

/// Whether the job that minted the token may deploy: repository, owner, ref,
/// environment and workflow. Failing any is a 403.
fn check_trust(claims: &GithubClaims, policy: &OidcPolicy) -> Result<(), AuthError> {
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
    Ok(())
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
        for environment in [json!("staging"), json!(null)] {
            let refused = check_claims(&claims(json!({ "environment": environment })), &pinned, at);
            assert!(matches!(refused, Err(AuthError::Forbidden(_))), "{environment}: {refused:?}");
        }
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
        assert!(matches!(key_id("not a token"), Err(AuthError::Unauthenticated(_))));
        assert!(matches!(key_id(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::Unauthenticated(_))));
    }

    mod tokens {
        //! Real RS256 tokens signed with a 2048-bit key, verified the way
        //! `OidcVerifier::verify` does (kid → key → signature → claims), then
        //! mutated the ways an attacker would.
        use super::*;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
        use base64::Engine;
        use proptest::prelude::*;
        use std::sync::LazyLock;

        const KID: &str = "github-2026-11";
        static KEY: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate(KeySize::Rsa2048).expect("RSA key"));

        fn b64(bytes: &[u8]) -> String {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }

        fn unb64(text: &str) -> Vec<u8> {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
        }

        fn sign(header: &Value, claims: &Value) -> String {
            let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
            let mut signature = vec![0; KEY.public_modulus_len()];
            KEY.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
                .unwrap();
            format!("{input}.{}", b64(&signature))
        }

        /// What the verifier does, with the published key set holding `KEY` under `KID`.
        fn verify(token: &str) -> Result<VerifiedToken, AuthError> {
            let kid = key_id(token)?;
            if kid != KID {
                return Err(AuthError::Unauthenticated(format!("no published key {kid:?}")));
            }
            let public = KEY.public_key();
            let key = DecodingKey::from_rsa_raw_components(
                public.modulus().big_endian_without_leading_zero(),
                public.exponent().big_endian_without_leading_zero(),
            );
            check_claims(&verify_signature(token, &key)?, &policy(), Timestamp::from_millis(NOW * 1000))
        }

        /// Valid claims for the test policy, with what varies from token to token varied.
        fn valid_claims() -> impl Strategy<Value = Value> {
            ("[a-f0-9-]{8,64}", 0u64..240, proptest::option::of("[a-z]{1,12}"), "[a-z]{1,8}/[a-z]{1,8}").prop_map(
                |(jti, age, environment, repository)| {
                    json!({
                        "iss": GITHUB_ISSUER, "aud": "flakefleet-prod", "exp": NOW - age + 300, "iat": NOW - age,
                        "nbf": NOW - age, "jti": jti, "repository_id": "123", "repository_owner_id": "456",
                        "repository": repository, "ref": "refs/heads/main", "environment": environment,
                    })
                },
            )
        }

        #[derive(Clone, Debug)]
        enum Tamper {
            /// One byte of the signed payload changed.
            PayloadByte { at: usize, xor: u8 },
            /// A claim swapped for one that would pass the policy's own checks elsewhere.
            Claim(&'static str, Value),
            /// The header's algorithm changed, signature kept.
            Alg(&'static str),
            /// `alg: none` and no signature at all.
            Unsigned,
            /// Another key id, or none.
            Kid(Option<&'static str>),
            /// One byte of the signature changed.
            SignatureByte { at: usize, xor: u8 },
            /// The signature cut short, or grown.
            SignatureLength(isize),
            /// HS256, keyed with the public key's DER (algorithm confusion).
            HmacWithPublicKey,
        }

        fn tamper() -> impl Strategy<Value = Tamper> {
            prop_oneof![
                (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Tamper::PayloadByte { at, xor }),
                prop::sample::select(vec![
                    ("repository_id", json!("124")),
                    ("repository_owner_id", json!("457")),
                    ("aud", json!("other-deployment")),
                    ("iss", json!("https://token.actions.githubusercontent.com.evil.example")),
                    ("ref", json!("refs/heads/feature")),
                    ("exp", json!(NOW + 86_400)),
                ])
                .prop_map(|(claim, value)| Tamper::Claim(claim, value)),
                prop::sample::select(vec!["none", "HS256", "RS384", "RS512", "PS256", "ES256", "rs256", "EdDSA"])
                    .prop_map(Tamper::Alg),
                Just(Tamper::Unsigned),
                prop::sample::select(vec![None, Some("github-2026-10"), Some(""), Some("github-2026-11 ")])
                    .prop_map(Tamper::Kid),
                (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Tamper::SignatureByte { at, xor }),
                prop_oneof![-256isize..0, 1isize..64].prop_map(Tamper::SignatureLength),
                Just(Tamper::HmacWithPublicKey),
            ]
        }

        fn apply(tamper: &Tamper, token: &str, claims: &Value) -> String {
            let parts: Vec<&str> = token.split('.').collect();
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID});
            let with_header = |h: Value| format!("{}.{}.{}", b64(h.to_string().as_bytes()), parts[1], parts[2]);
            match tamper {
                Tamper::PayloadByte { at, xor } => {
                    let mut payload = unb64(parts[1]);
                    let at = at % payload.len();
                    payload[at] ^= xor;
                    format!("{}.{}.{}", parts[0], b64(&payload), parts[2])
                }
                Tamper::Claim(claim, value) => {
                    let mut changed = claims.clone();
                    changed[*claim] = value.clone();
                    format!("{}.{}.{}", parts[0], b64(changed.to_string().as_bytes()), parts[2])
                }
                Tamper::Alg(alg) => with_header(json!({"alg": alg, "typ": "JWT", "kid": KID})),
                Tamper::Unsigned => {
                    format!("{}.{}.", b64(json!({"alg": "none", "kid": KID}).to_string().as_bytes()), parts[1])
                }
                Tamper::Kid(None) => with_header(json!({"alg": "RS256", "typ": "JWT"})),
                Tamper::Kid(Some(kid)) => with_header(json!({"alg": "RS256", "typ": "JWT", "kid": kid})),
                Tamper::SignatureByte { at, xor } => {
                    let mut signature = unb64(parts[2]);
                    let at = at % signature.len();
                    signature[at] ^= xor;
                    format!("{}.{}.{}", parts[0], parts[1], b64(&signature))
                }
                Tamper::SignatureLength(delta) => {
                    let mut signature = unb64(parts[2]);
                    if *delta < 0 {
                        signature.truncate(signature.len().saturating_sub(delta.unsigned_abs()));
                    } else {
                        signature.extend(std::iter::repeat_n(0xA5, *delta as usize));
                    }
                    format!("{}.{}.{}", parts[0], parts[1], b64(&signature))
                }
                Tamper::HmacWithPublicKey => {
                    let public =
                        aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(KEY.public_key())
                            .unwrap();
                    let hs = json!({"alg": "HS256", "typ": "JWT", "kid": KID});
                    let input = format!("{}.{}", b64(hs.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
                    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_ref());
                    let _ = header;
                    format!("{input}.{}", b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref()))
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]
            /// A valid token verifies, to the caller it names; every
            /// tampering with its payload, header, key id or signature is
            /// refused as unauthenticated.
            #[test]
            fn every_tampering_with_a_valid_token_is_refused(claims in valid_claims(), tamper in tamper()) {
                let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID});
                let token = sign(&header, &claims);
                let verified = verify(&token);
                prop_assert!(verified.is_ok(), "the valid token was refused: {:?}", verified);
                prop_assert_eq!(
                    verified.unwrap().principal,
                    format!("{}@refs/heads/main", claims["repository"].as_str().unwrap())
                );
                let tampered = apply(&tamper, &token, &claims);
                prop_assert!(tampered != token);
                let refused = verify(&tampered);
                prop_assert!(matches!(refused, Err(AuthError::Unauthenticated(_))), "{:?} verified: {:?}", tamper, refused);
            }
        }

        /// Arbitrary bearer values never panic and never verify.
        #[test]
        fn arbitrary_bearer_values_never_verify() {
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(10_000));
            runner
                .run(&"\\PC{0,300}", |raw| {
                    prop_assert!(verify(&raw).is_err());
                    Ok(())
                })
                .unwrap();
        }
    }
}
