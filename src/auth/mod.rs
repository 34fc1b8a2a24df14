//! Who may call the function URL (`FLAKEFLEET_AUTH`):
//! - `iam` (default): AWS checks the SigV4 signature (AuthType AWS_IAM); the
//!   signer must be on `FLAKEFLEET_READERS` or `FLAKEFLEET_WRITERS`.
//! - `github-oidc`: the URL is open (AuthType NONE) and each request carries
//!   a GitHub Actions token, verified here and used once.
//! - `none`: everyone may do everything; accepted only when every AWS call
//!   goes to an emulator on this machine (`cargo lambda watch`).
//!
//! Direct invokes and EventBridge events never reach this gate: the
//! `lambda:InvokeFunction` permission is their authorisation.

pub mod iam;
pub mod jwks;
pub mod oidc;

use crate::domain::model::time::Timestamp;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use iam::{IamAllowlist, IamIdentity};
use oidc::OidcVerifier;
use std::future::Future;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that does not verify: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A good credential without the right: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The decision cannot be made now (keys or ledger unreachable): 503.
    #[error("{0}")]
    Unavailable(String),
}

/// GET routes read; every other method writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn of_method(method: &str) -> Self {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            Self::Read
        } else {
            Self::Write
        }
    }
}

/// An authenticated caller. `principal` is safe to log; the token itself is
/// never kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    /// Recorded on the releases it asks for: the IAM principal's ARN, or the
    /// OIDC token's subject and repository.
    pub requested_by: String,
    rights: Rights,
    /// A token id to record as used before the request runs.
    single_use: Option<(String, Timestamp)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rights {
    Read,
    ReadWrite,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("token ledger unavailable: {0}")]
pub struct LedgerError(pub String);

/// Where used token ids are remembered until they expire.
pub trait TokenLedger: Send + Sync {
    /// Records `jti`; false when it was recorded before (a replay).
    fn record_first_use(
        &self,
        jti: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;
}

/// The check every function URL request passes before it is decoded.
pub enum Gate<L> {
    Iam(IamAllowlist),
    GithubOidc {
        verifier: Box<OidcVerifier>,
        ledger: L,
    },
    /// `FLAKEFLEET_AUTH=none`: local emulators only (checked by `Config`).
    Open,
}

impl<L: TokenLedger> Gate<L> {
    /// Who is calling: 401 without a credential that verifies, 403 when a
    /// verified token is not one this fleet trusts. Writes nothing.
    pub async fn authenticate(&self, request: &LambdaFunctionUrlRequest, now: Timestamp) -> Result<Caller, AuthError> {
        match self {
            Self::Open => Ok(Caller {
                principal: "anyone (FLAKEFLEET_AUTH=none)".into(),
                requested_by: "anyone (FLAKEFLEET_AUTH=none)".into(),
                rights: Rights::ReadWrite,
                single_use: None,
            }),
            Self::Iam(allowlist) => {
                let iam = request.request_context.authorizer.as_ref().and_then(|a| a.iam.as_ref());
                let identity = iam.and_then(|iam| {
                    Some(IamIdentity { account_id: iam.account_id.clone()?, user_arn: iam.user_arn.clone()? })
                });
                let identity = identity.ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "the request carries no IAM identity: sign it with SigV4 (service lambda) and keep the \
                         function URL's AuthType AWS_IAM"
                            .into(),
                    )
                })?;
                let rights = if allowlist.may_write(&identity) {
                    Rights::ReadWrite
                } else if allowlist.may_read(&identity) {
                    Rights::Read
                } else {
                    return Err(AuthError::Forbidden(format!(
                        "{} is not on FLAKEFLEET_READERS or FLAKEFLEET_WRITERS",
                        identity.user_arn
                    )));
                };
                Ok(Caller {
                    requested_by: identity.user_arn.clone(),
                    principal: identity.user_arn,
                    rights,
                    single_use: None,
                })
            }
            Self::GithubOidc { verifier, .. } => {
                let token = bearer_token(request)?;
                let verified = verifier.verify(token, now).await?;
                Ok(Caller {
                    principal: verified.principal,
                    requested_by: verified.requested_by,
                    rights: Rights::ReadWrite,
                    single_use: Some((verified.jti, verified.expires_at)),
                })
            }
        }
    }

    /// 403 unless the caller may read or write as asked.
    pub fn authorize(&self, caller: &Caller, access: Access) -> Result<(), AuthError> {
        match (access, caller.rights) {
            (Access::Read, _) | (Access::Write, Rights::ReadWrite) => Ok(()),
            (Access::Write, Rights::Read) => Err(AuthError::Forbidden(format!(
                "{} may read but not deploy, roll back or reconcile; add it to FLAKEFLEET_WRITERS",
                caller.principal
            ))),
        }
    }

    /// Marks the caller's token as used: a second request with it gets 401.
    /// Called once the request is known to be acceptable, right before it runs.
    pub async fn consume(&self, caller: &Caller) -> Result<(), AuthError> {
        let (Self::GithubOidc { ledger, .. }, Some((jti, expires_at))) = (self, &caller.single_use) else {
            return Ok(());
        };
        match ledger.record_first_use(jti, *expires_at).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(AuthError::Unauthenticated("this token was used before; request a new one for every call".into()))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the token's use");
                Err(AuthError::Unavailable("cannot record the token's use; try again shortly".into()))
            }
        }
    }
}

/// The bearer token of the `authorization` header.
fn bearer_token(request: &LambdaFunctionUrlRequest) -> Result<&str, AuthError> {
    let missing = || {
        AuthError::Unauthenticated(
            "no bearer token: send `authorization: Bearer <GitHub Actions OIDC token>` with this service's audience"
                .into(),
        )
    };
    let header = request.headers.get(http::header::AUTHORIZATION).ok_or_else(missing)?;
    let value = header.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// An in-memory ledger for unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemoryLedger(std::sync::Mutex<std::collections::HashSet<String>>);

#[cfg(test)]
impl TokenLedger for MemoryLedger {
    async fn record_first_use(&self, jti: &str, _expires_at: Timestamp) -> Result<bool, LedgerError> {
        Ok(self.0.lock().map_err(|e| LedgerError(e.to_string()))?.insert(jti.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(method: &str, iam: Option<&str>, authorization: Option<&str>) -> LambdaFunctionUrlRequest {
        let mut event = json!({
            "version": "2.0", "rawPath": "/releases", "rawQueryString": "",
            "headers": {},
            "requestContext": { "http": { "method": method, "path": "/releases" }, "timeEpoch": 0 },
            "isBase64Encoded": false,
        });
        if let Some(arn) = iam {
            let account = arn.split(':').nth(4).unwrap();
            event["requestContext"]["authorizer"] = json!({"iam": {"accountId": account, "userArn": arn}});
        }
        if let Some(value) = authorization {
            event["headers"]["authorization"] = value.into();
        }
        serde_json::from_value(event).unwrap()
    }

    fn iam_gate() -> Gate<MemoryLedger> {
        Gate::Iam(IamAllowlist {
            readers: IamAllowlist::parse_list("arn:aws:iam::111122223333:role/viewer").unwrap(),
            writers: IamAllowlist::parse_list("arn:aws:iam::111122223333:role/deploy").unwrap(),
        })
    }

    async fn decide(gate: &Gate<MemoryLedger>, method: &str, arn: Option<&str>) -> Result<(), AuthError> {
        let caller = gate.authenticate(&request(method, arn, None), Timestamp::from_millis(0)).await?;
        gate.authorize(&caller, Access::of_method(method))
    }

    #[tokio::test]
    async fn iam_mode_separates_readers_from_writers() {
        let gate = iam_gate();
        let viewer = Some("arn:aws:sts::111122223333:assumed-role/viewer/alice");
        let deployer = Some("arn:aws:sts::111122223333:assumed-role/deploy/ci");
        let stranger = Some("arn:aws:sts::111122223333:assumed-role/other/bob");
        assert_eq!(decide(&gate, "GET", viewer).await, Ok(()));
        assert!(matches!(decide(&gate, "POST", viewer).await, Err(AuthError::Forbidden(_))));
        assert_eq!(decide(&gate, "POST", deployer).await, Ok(()));
        assert!(matches!(decide(&gate, "GET", stranger).await, Err(AuthError::Forbidden(_))));
        assert!(matches!(decide(&gate, "GET", None).await, Err(AuthError::Unauthenticated(_))));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(bearer_token(&request("GET", None, Some("Bearer abc.def.ghi"))).unwrap(), "abc.def.ghi");
        assert_eq!(bearer_token(&request("GET", None, Some("bearer  abc "))).unwrap(), "abc");
        for bad in [None, Some("Basic abc"), Some("Bearer"), Some("Bearer   "), Some("abc")] {
            assert!(matches!(bearer_token(&request("GET", None, bad)), Err(AuthError::Unauthenticated(_))), "{bad:?}");
        }
    }
}
