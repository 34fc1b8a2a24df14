//! Who may call the function URL (see `crate::auth`): IAM principals,
//! GitHub's OIDC tokens, or, against local emulators only, anyone.

use super::vars::{comma_separated, invalid, Vars};
use super::ConfigError;
use crate::auth::iam::{IamAllowlist, Principal};
use crate::auth::oidc::{OidcPolicy, GITHUB_ISSUER};

/// Who may call the function URL; see `crate::auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSettings {
    Iam(IamAllowlist),
    GithubOidc { policy: OidcPolicy, jwks_url: String },
    None,
}

/// The GitHub environment the shipped deploy workflows run in.
pub const DEFAULT_ENVIRONMENT: &str = "production";

pub(super) fn settings(vars: &Vars) -> Result<AuthSettings, ConfigError> {
    match vars.or("FLAKEFLEET_AUTH", "iam").as_str() {
        "iam" => Ok(AuthSettings::Iam(IamAllowlist {
            readers: iam_entries(vars, "FLAKEFLEET_READERS")?,
            writers: iam_entries(vars, "FLAKEFLEET_WRITERS")?,
        })),
        "github-oidc" => github_oidc(vars),
        "none" => {
            local_only(vars)?;
            Ok(AuthSettings::None)
        }
        other => Err(invalid("FLAKEFLEET_AUTH", format!("{other:?} is not iam, github-oidc or none"))),
    }
}

fn github_oidc(vars: &Vars) -> Result<AuthSettings, ConfigError> {
    let issuer = vars.or("FLAKEFLEET_OIDC_ISSUER", GITHUB_ISSUER);
    secure("FLAKEFLEET_OIDC_ISSUER", &issuer)?;
    let jwks_url = vars.or("FLAKEFLEET_OIDC_JWKS_URL", &format!("{}/.well-known/jwks", issuer.trim_end_matches('/')));
    secure("FLAKEFLEET_OIDC_JWKS_URL", &jwks_url)?;
    let audience = vars.required("FLAKEFLEET_OIDC_AUDIENCE")?;
    // GitHub's default audience is the owner's URL and STS's is shared by every
    // AWS role: a token minted for either must not deploy here.
    if audience == "sts.amazonaws.com" || audience.starts_with("https://github.com/") {
        return Err(invalid(
            "FLAKEFLEET_OIDC_AUDIENCE",
            format!("{audience:?} is shared with other services; choose one unique to this deployment"),
        ));
    }
    // Every job of a trusted ref can mint a token, the publishing job with its
    // third-party actions too: only the deploying job's environment (or
    // workflow) may deploy. `-` turns the environment pin off for a
    // workflow pin alone.
    let environments = match vars.get("FLAKEFLEET_OIDC_ENVIRONMENTS").as_deref() {
        None => vec![DEFAULT_ENVIRONMENT.to_owned()],
        Some("-") => Vec::new(),
        Some(raw) => comma_separated(raw),
    };
    let workflow_refs = vars.list("FLAKEFLEET_OIDC_WORKFLOW_REFS");
    if environments.is_empty() && workflow_refs.is_empty() {
        return Err(invalid(
            "FLAKEFLEET_OIDC_ENVIRONMENTS",
            "pins no environment, and FLAKEFLEET_OIDC_WORKFLOW_REFS no workflow: any job of the \
             repository could deploy; name the deploy job's environment or workflow"
                .into(),
        ));
    }
    Ok(AuthSettings::GithubOidc {
        policy: OidcPolicy {
            issuer,
            audience,
            repository_id: github_id(vars, "FLAKEFLEET_OIDC_REPOSITORY_ID")?,
            repository_owner_id: github_id(vars, "FLAKEFLEET_OIDC_REPOSITORY_OWNER_ID")?,
            refs: vars.list("FLAKEFLEET_OIDC_REFS"),
            environments,
            workflow_refs,
        },
        jwks_url,
    })
}

/// An IAM allowlist. Where the function knows its account
/// (`FLAKEFLEET_ACCOUNT_ID`, set by the template), an entry of another account
/// is refused: a function URL with AWS_IAM admits another account's callers
/// only with a resource-based permission for them, which the stack does not
/// grant, so the entry could never work.
fn iam_entries(vars: &Vars, var: &'static str) -> Result<Vec<Principal>, ConfigError> {
    let entries = IamAllowlist::parse_list(&vars.or(var, "")).map_err(|m| invalid(var, m))?;
    let Some(own) = vars.get("FLAKEFLEET_ACCOUNT_ID") else {
        return Ok(entries);
    };
    match entries.iter().find(|p| p.account() != own) {
        Some(stranger) => Err(invalid(
            var,
            format!(
                "names a principal of account {} ({stranger:?}), but the function URL admits only account {own}: \
                 AWS_IAM lets another account in only with a resource-based permission for it, which this stack \
                 does not grant; use a role in {own}",
                stranger.account()
            ),
        )),
        None => Ok(entries),
    }
}

/// A numeric GitHub id, as the repository's API JSON shows it.
fn github_id(vars: &Vars, var: &'static str) -> Result<String, ConfigError> {
    let raw = vars.required(var)?;
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(var, format!("{raw:?} is not a numeric GitHub id (see the repository's API JSON)")));
    }
    Ok(raw)
}

/// Plain http only to this machine.
fn secure(var: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || crate::https::is_loopback(url) {
        Ok(())
    } else {
        Err(invalid(var, format!("{url:?} must be an https URL (plain http only on 127.0.0.1)")))
    }
}

/// `FLAKEFLEET_AUTH=none` lets anyone deploy: only where every AWS call goes
/// to an emulator on this machine, and invocations come from a local runtime.
fn local_only(vars: &Vars) -> Result<(), ConfigError> {
    let refuse = |why: String| {
        Err(ConfigError::Invalid {
            var: "FLAKEFLEET_AUTH",
            message: format!(
                "none lets anyone deploy, so it runs only against local emulators: {why}; use iam or github-oidc"
            ),
        })
    };
    let endpoints = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_SSM"];
    if vars.get("AWS_ENDPOINT_URL").is_none() {
        return refuse("AWS_ENDPOINT_URL is not set".into());
    }
    if let Some(var) = endpoints.iter().find(|var| vars.get(var).is_some_and(|url| !crate::https::is_loopback(&url))) {
        return refuse(format!("{var} is not on 127.0.0.1"));
    }
    // The SDK ignores every configured endpoint when told to, from the
    // environment or from the profile, and would then call AWS itself.
    if vars.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return refuse("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true".into());
    }
    let profile = vars.get("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let config_file =
        vars.get("AWS_CONFIG_FILE").or_else(|| vars.get("HOME").map(|home| format!("{home}/.aws/config")));
    if let Some(path) = config_file {
        match std::fs::read_to_string(&path) {
            Ok(text) if profile_ignores_endpoints(&text, &profile) => {
                return refuse(format!("profile {profile:?} in {path} sets ignore_configured_endpoint_urls"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return refuse(format!("cannot read {path} to check ignore_configured_endpoint_urls: {e}")),
        }
    }
    // Invocations must come from a runtime on this machine (cargo lambda watch), not Lambda's.
    // Lambda's is `127.0.0.1:9001`; cargo lambda watch's `http://[::]:PORT/.rt/NAME`
    // (the unspecified address, which as a destination is this machine).
    match vars.get("AWS_LAMBDA_RUNTIME_API") {
        Some(api) => {
            let url = if api.contains("://") { api.clone() } else { format!("http://{api}") };
            let this_machine = ["http://[::]", "http://0.0.0.0"]
                .iter()
                .any(|any| url.strip_prefix(any).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
            if crate::https::is_loopback(&url) || this_machine {
                Ok(())
            } else {
                refuse(format!("AWS_LAMBDA_RUNTIME_API {api:?} is not on this machine"))
            }
        }
        None => Ok(()),
    }
}

/// Whether `profile`'s section of an AWS config file turns
/// `ignore_configured_endpoint_urls` on (stricter than the SDK: any
/// spelling of true, in `[default]` or `[profile NAME]`).
fn profile_ignores_endpoints(config: &str, profile: &str) -> bool {
    let wanted = if profile == "default" {
        vec!["default".to_owned(), "profile default".to_owned()]
    } else {
        vec![format!("profile {profile}")]
    };
    let mut in_section = false;
    for line in config.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = wanted.iter().any(|w| w == section.trim());
        } else if in_section {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "ignore_configured_endpoint_urls" && value.trim().eq_ignore_ascii_case("true") {
                    return true;
                }
            }
        }
    }
    false
}
