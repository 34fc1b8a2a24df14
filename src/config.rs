//! Configuration from environment variables, read and checked once at start-up.
//! Every variable is documented in README.md and set by template.yaml.

use crate::auth::iam::IamAllowlist;
use crate::auth::oidc::{OidcPolicy, GITHUB_ISSUER};
use crate::aws::SsmSettings;
use crate::domain::model::flakeref::FlakeAllowlist;
use crate::domain::model::fleet::FleetSettings;
use crate::domain::model::fleet::{FleetSpec, ImageSelector};
use crate::domain::model::ids::{FleetName, TargetTag};
use crate::domain::model::rollout::{Rate, RolloutMode, RolloutPolicy};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    pub table: String,
    pub fleet: FleetSettings,
    pub ssm: SsmSettings,
    pub auth: AuthSettings,
    /// Open each service's connection during init (`FLAKEFLEET_WARM_CONNECTIONS`).
    pub warm_connections: bool,
}

/// Who may call the function URL; see `crate::auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSettings {
    Iam(IamAllowlist),
    GithubOidc { policy: OidcPolicy, jwks_url: String },
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; it is required")]
    Missing(&'static str),
    #[error("{var} is invalid: {message}")]
    Invalid { var: &'static str, message: String },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| lookup(var).ok_or(ConfigError::Missing(var));
        let or = |var: &'static str, default: &str| lookup(var).unwrap_or_else(|| default.to_owned());
        let secs = |var: &'static str,
                    default: u64,
                    range: std::ops::RangeInclusive<u64>|
         -> Result<u64, ConfigError> {
            let raw = or(var, &default.to_string());
            raw.parse::<u64>().ok().filter(|v| range.contains(v)).ok_or_else(|| ConfigError::Invalid {
                var,
                message: format!("{raw:?} is not a whole number of seconds from {} to {}", range.start(), range.end()),
            })
        };

        let fleet_name = or("FLAKEFLEET_FLEET", "default");
        let name = FleetName::parse(&fleet_name)
            .map_err(|e| ConfigError::Invalid { var: "FLAKEFLEET_FLEET", message: e.to_string() })?;
        let target = TargetTag {
            key: or("FLAKEFLEET_TARGET_TAG_KEY", "Name"),
            value: or("FLAKEFLEET_TARGET_TAG_VALUE", "FlakeHubDemo"),
        };
        if target.key.is_empty() || target.key.len() > 128 || target.value.len() > 256 {
            return Err(ConfigError::Invalid {
                var: "FLAKEFLEET_TARGET_TAG_KEY",
                message: "tag keys are 1 to 128 characters, values up to 256".into(),
            });
        }

        let action = or("FLAKEFLEET_APPLY_ACTION", "switch");
        if !["switch", "boot", "test", "dry-activate"].contains(&action.as_str()) {
            return Err(ConfigError::Invalid {
                var: "FLAKEFLEET_APPLY_ACTION",
                message: format!("{action:?} is not one of switch, boot, test, dry-activate"),
            });
        }
        let max_concurrency = or("FLAKEFLEET_MAX_CONCURRENCY", "50");
        check_rate("FLAKEFLEET_MAX_CONCURRENCY", &max_concurrency, 1)?;
        let max_errors = or("FLAKEFLEET_MAX_ERRORS", "0");
        check_rate("FLAKEFLEET_MAX_ERRORS", &max_errors, 0)?;

        let mode = match or("FLAKEFLEET_ROLLOUT", "staged").as_str() {
            "staged" => RolloutMode::Staged,
            "all-at-once" => RolloutMode::AllAtOnce,
            other => {
                return Err(ConfigError::Invalid {
                    var: "FLAKEFLEET_ROLLOUT",
                    message: format!("{other:?} is not staged or all-at-once"),
                })
            }
        };
        let rate = |var: &'static str, default: &str, min: usize| -> Result<Rate, ConfigError> {
            let raw = or(var, default);
            Rate::parse(&raw)
                .filter(|r| match r {
                    Rate::Count(n) | Rate::Percent(n) => *n >= min,
                })
                .ok_or_else(|| ConfigError::Invalid {
                    var,
                    message: format!("{raw:?} is not a count (e.g. 2) or a percentage (e.g. 25%) of at least {min}"),
                })
        };
        let flag = |var: &'static str, default: &str| match or(var, default).as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ConfigError::Invalid { var, message: format!("{other:?} is not true or false") }),
        };
        let auto_rollback = flag("FLAKEFLEET_AUTO_ROLLBACK", "true")?;
        let rollout = RolloutPolicy {
            mode,
            canary: secs("FLAKEFLEET_CANARY_SIZE", 1, 1..=50)? as usize,
            wave: rate("FLAKEFLEET_WAVE_SIZE", "50%", 1)?,
            failure_threshold: rate("FLAKEFLEET_FAILURE_THRESHOLD", "0", 0)?,
            auto_rollback,
        };

        let list = |var: &'static str, prefix: &str| -> Result<Vec<String>, ConfigError> {
            let items = comma_separated(&or(var, ""));
            match items.iter().find(|v| !v.starts_with(prefix)) {
                Some(bad) => {
                    Err(ConfigError::Invalid { var, message: format!("{bad:?} is not an id starting {prefix}") })
                }
                None => Ok(items),
            }
        };
        let architecture = or("FLAKEFLEET_AMI_ARCHITECTURE", "x86_64");
        if !["x86_64", "arm64"].contains(&architecture.as_str()) {
            return Err(ConfigError::Invalid {
                var: "FLAKEFLEET_AMI_ARCHITECTURE",
                message: format!("{architecture:?} is not x86_64 or arm64"),
            });
        }
        let spec = FleetSpec {
            desired_capacity: secs("FLAKEFLEET_DESIRED_CAPACITY", 0, 0..=10_000)? as usize,
            instance_type: or("FLAKEFLEET_INSTANCE_TYPE", "t3a.nano"),
            subnets: list("FLAKEFLEET_SUBNET_IDS", "subnet-")?,
            security_groups: list("FLAKEFLEET_SECURITY_GROUP_IDS", "sg-")?,
            instance_profile: or("FLAKEFLEET_INSTANCE_PROFILE", "FlakeHubClientMachine"),
            image: ImageSelector {
                owner: or("FLAKEFLEET_AMI_OWNER", "535002876703"),
                name_pattern: or("FLAKEFLEET_AMI_NAME_PATTERN", "determinate/nixos/epoch-1/24.05.*"),
                architecture,
            },
            root_volume_gib: secs("FLAKEFLEET_ROOT_VOLUME_GIB", 16, 4..=16_384)? as i32,
        };

        let allowed_flakes = FlakeAllowlist::parse(&required("FLAKEFLEET_ALLOWED_FLAKES")?)
            .map_err(|e| ConfigError::Invalid { var: "FLAKEFLEET_ALLOWED_FLAKES", message: e.to_string() })?;

        Ok(Self {
            warm_connections: flag("FLAKEFLEET_WARM_CONNECTIONS", "false")?,
            auth: auth_settings(&lookup)?,
            table: required("FLAKEFLEET_TABLE")?,
            fleet: FleetSettings {
                name,
                target,
                deploy_timeout: Duration::from_secs(secs("FLAKEFLEET_DEPLOY_TIMEOUT_SECONDS", 3600, 60..=86_400)?),
                idempotency_ttl: Duration::from_secs(secs(
                    "FLAKEFLEET_IDEMPOTENCY_TTL_SECONDS",
                    86_400,
                    60..=2_592_000,
                )?),
                rollout,
                spec,
                takeover_after: Duration::from_secs(secs("FLAKEFLEET_TAKEOVER_SECONDS", 120, 30..=3600)?),
                allowed_flakes,
            },
            ssm: SsmSettings {
                document: required("FLAKEFLEET_DOCUMENT")?,
                action,
                max_concurrency,
                max_errors,
                delivery_timeout_secs: secs("FLAKEFLEET_DELIVERY_TIMEOUT_SECONDS", 600, 30..=2_592_000)? as i32,
            },
        })
    }
}

fn auth_settings(lookup: &impl Fn(&str) -> Option<String>) -> Result<AuthSettings, ConfigError> {
    let invalid = |var: &'static str, message: String| ConfigError::Invalid { var, message };
    let items = |var: &str| comma_separated(&lookup(var).unwrap_or_default());
    let digits = |var: &'static str| -> Result<String, ConfigError> {
        let raw = lookup(var).ok_or(ConfigError::Missing(var))?;
        if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(var, format!("{raw:?} is not a numeric GitHub id (see the repository's API JSON)")));
        }
        Ok(raw)
    };
    let secure = |var: &'static str, url: &str| -> Result<(), ConfigError> {
        if url.starts_with("https://") || crate::https::is_loopback(url) {
            Ok(())
        } else {
            Err(invalid(var, format!("{url:?} must be an https URL (plain http only on 127.0.0.1)")))
        }
    };
    match lookup("FLAKEFLEET_AUTH").as_deref().unwrap_or("iam") {
        "iam" => {
            let list = |var: &'static str| {
                IamAllowlist::parse_list(&lookup(var).unwrap_or_default()).map_err(|m| invalid(var, m))
            };
            Ok(AuthSettings::Iam(IamAllowlist {
                readers: list("FLAKEFLEET_READERS")?,
                writers: list("FLAKEFLEET_WRITERS")?,
            }))
        }
        "github-oidc" => {
            let issuer = lookup("FLAKEFLEET_OIDC_ISSUER").unwrap_or_else(|| GITHUB_ISSUER.into());
            secure("FLAKEFLEET_OIDC_ISSUER", &issuer)?;
            let jwks_url = lookup("FLAKEFLEET_OIDC_JWKS_URL")
                .unwrap_or_else(|| format!("{}/.well-known/jwks", issuer.trim_end_matches('/')));
            secure("FLAKEFLEET_OIDC_JWKS_URL", &jwks_url)?;
            let audience =
                lookup("FLAKEFLEET_OIDC_AUDIENCE").ok_or(ConfigError::Missing("FLAKEFLEET_OIDC_AUDIENCE"))?;
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
            let environments = match lookup("FLAKEFLEET_OIDC_ENVIRONMENTS").as_deref() {
                None => vec![DEFAULT_ENVIRONMENT.to_owned()],
                Some("-") => Vec::new(),
                Some(raw) => comma_separated(raw),
            };
            let workflow_refs = items("FLAKEFLEET_OIDC_WORKFLOW_REFS");
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
                    repository_id: digits("FLAKEFLEET_OIDC_REPOSITORY_ID")?,
                    repository_owner_id: digits("FLAKEFLEET_OIDC_REPOSITORY_OWNER_ID")?,
                    refs: items("FLAKEFLEET_OIDC_REFS"),
                    environments,
                    workflow_refs,
                },
                jwks_url,
            })
        }
        "none" => {
            local_only(lookup)?;
            Ok(AuthSettings::None)
        }
        other => Err(invalid("FLAKEFLEET_AUTH", format!("{other:?} is not iam, github-oidc or none"))),
    }
}

/// The GitHub environment the shipped deploy workflows run in.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// `FLAKEFLEET_AUTH=none` lets anyone deploy: only where every AWS call goes
/// to an emulator on this machine, and invocations come from a local runtime.
fn local_only(lookup: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let refuse = |why: String| {
        Err(ConfigError::Invalid {
            var: "FLAKEFLEET_AUTH",
            message: format!(
                "none lets anyone deploy, so it runs only against local emulators: {why}; use iam or github-oidc"
            ),
        })
    };
    let endpoints = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_SSM"];
    if lookup("AWS_ENDPOINT_URL").is_none() {
        return refuse("AWS_ENDPOINT_URL is not set".into());
    }
    if let Some(var) = endpoints.iter().find(|var| lookup(var).is_some_and(|url| !crate::https::is_loopback(&url))) {
        return refuse(format!("{var} is not on 127.0.0.1"));
    }
    // The SDK ignores every configured endpoint when told to, from the
    // environment or from the profile, and would then call AWS itself.
    if lookup("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return refuse("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true".into());
    }
    let profile = lookup("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let config_file = lookup("AWS_CONFIG_FILE").or_else(|| lookup("HOME").map(|home| format!("{home}/.aws/config")));
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
    match lookup("AWS_LAMBDA_RUNTIME_API") {
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

/// `a, b,,c` → `["a", "b", "c"]`.
fn comma_separated(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

/// SSM's MaxConcurrency / MaxErrors: a count or a percentage.
fn check_rate(var: &'static str, raw: &str, min: u32) -> Result<(), ConfigError> {
    let (digits, percent) = match raw.strip_suffix('%') {
        Some(d) => (d, true),
        None => (raw, false),
    };
    let valid = !digits.is_empty()
        && digits.len() <= 7
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u32>().is_ok_and(|v| v >= min && (!percent || v <= 100));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            var,
            message: format!("{raw:?} is not a count (e.g. 10) or a percentage (e.g. 25%) of at least {min}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// With the one required setting every test would otherwise repeat.
    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> =
            HashMap::from([("FLAKEFLEET_ALLOWED_FLAKES".into(), "AcmeCorp/infra".into())]);
        map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_demo() {
        let c = config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d")]).unwrap();
        assert_eq!(c.fleet.target, TargetTag { key: "Name".into(), value: "FlakeHubDemo".into() });
        assert_eq!(c.fleet.name.as_str(), "default");
        assert_eq!(c.ssm.action, "switch");
        assert_eq!((c.ssm.max_concurrency.as_str(), c.ssm.max_errors.as_str()), ("50", "0"));
        assert_eq!(c.fleet.rollout.mode, RolloutMode::Staged);
        assert_eq!((c.fleet.rollout.canary, c.fleet.rollout.wave), (1, Rate::Percent(50)));
        assert_eq!(c.fleet.rollout.failure_threshold, Rate::Count(0));
        assert!(c.fleet.rollout.auto_rollback);
        assert_eq!(c.fleet.spec.desired_capacity, 0, "capacity is not managed unless asked");
        assert_eq!(c.auth, AuthSettings::Iam(IamAllowlist::default()), "IAM, and nobody named yet");
        assert_eq!(c.fleet.spec.image.owner, "535002876703");
        assert_eq!(c.fleet.spec.image.name_pattern, "determinate/nixos/epoch-1/24.05.*");
        assert_eq!(
            (c.fleet.spec.image.architecture.as_str(), c.fleet.spec.instance_type.as_str()),
            ("x86_64", "t3a.nano")
        );
    }

    #[test]
    fn auth_modes() {
        let base = [("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d")];
        let with = |extra: &[(&'static str, &'static str)]| config(&[&base[..], extra].concat());
        let oidc = [
            ("FLAKEFLEET_AUTH", "github-oidc"),
            ("FLAKEFLEET_OIDC_AUDIENCE", "flakefleet-prod"),
            ("FLAKEFLEET_OIDC_REPOSITORY_ID", "123"),
            ("FLAKEFLEET_OIDC_REPOSITORY_OWNER_ID", "456"),
            ("FLAKEFLEET_OIDC_REFS", "refs/heads/main"),
        ];
        let AuthSettings::GithubOidc { policy, jwks_url } = with(&oidc).unwrap().auth else { panic!("not oidc") };
        assert_eq!(jwks_url, "https://token.actions.githubusercontent.com/.well-known/jwks");
        assert_eq!(
            (policy.refs, policy.environments),
            (vec!["refs/heads/main".to_owned()], vec!["production".to_owned()]),
            "only the deploy job's environment, by default"
        );
        let workflow_only = [
            ("FLAKEFLEET_OIDC_ENVIRONMENTS", "-"),
            ("FLAKEFLEET_OIDC_WORKFLOW_REFS", "acme/fleet/.github/workflows/deploy.yml@refs/heads/main"),
        ];
        let AuthSettings::GithubOidc { policy, .. } = with(&[&oidc[..], &workflow_only].concat()).unwrap().auth else {
            panic!("not oidc")
        };
        assert!(policy.environments.is_empty());
        let err = with(&[&oidc[..], &[("FLAKEFLEET_OIDC_ENVIRONMENTS", "-")]].concat()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { var: "FLAKEFLEET_OIDC_ENVIRONMENTS", .. }),
            "no pin at all: {err}"
        );
        for (var, bad) in [
            ("FLAKEFLEET_OIDC_AUDIENCE", "sts.amazonaws.com"),
            ("FLAKEFLEET_OIDC_AUDIENCE", "https://github.com/acme"),
            ("FLAKEFLEET_OIDC_REPOSITORY_ID", "acme/fleet"),
            ("FLAKEFLEET_OIDC_ISSUER", "http://token.example.com"),
            ("FLAKEFLEET_OIDC_JWKS_URL", "http://10.0.0.1/jwks"),
        ] {
            let err = with(&[&oidc[..], &[(var, bad)]].concat()).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = with(&oidc[..2]).unwrap_err();
        assert!(err.to_string().contains("FLAKEFLEET_OIDC_REPOSITORY_ID"), "{err}");

        let local = [("FLAKEFLEET_AUTH", "none"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:5055")];
        assert_eq!(with(&local).unwrap().auth, AuthSettings::None);
        let leaky = [&local[..], &[("AWS_ENDPOINT_URL_SSM", "https://ssm.us-east-1.amazonaws.com")]].concat();
        assert!(with(&leaky).is_err(), "none with a real AWS endpoint");
        for api in ["127.0.0.1:9001", "http://[::]:9155/.rt/flakefleet-lambda", "http://127.0.0.1:9000/.rt/f"] {
            let runtime = [&local[..], &[("AWS_LAMBDA_RUNTIME_API", api)]].concat();
            assert_eq!(with(&runtime).unwrap().auth, AuthSettings::None, "a runtime on this machine: {api}");
        }
        for refused in [
            [("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")],
            [("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", " TRUE")],
            [("AWS_LAMBDA_RUNTIME_API", "10.1.2.3:9001")],
            [("AWS_LAMBDA_RUNTIME_API", "http://[::].evil.example:9001")],
            [("AWS_LAMBDA_RUNTIME_API", "0.0.0.0.evil.example:9001")],
        ] {
            let err = with(&[&local[..], &refused].concat()).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { var: "FLAKEFLEET_AUTH", .. }), "{refused:?}: {err}");
        }
    }

    #[test]
    fn none_is_refused_when_the_profile_ignores_configured_endpoints() {
        let dir = std::env::temp_dir().join(format!("flakefleet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config");
        std::fs::write(
            &file,
            "[default]\nregion = us-east-1\n\n[profile local]\nignore_configured_endpoint_urls = true\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let base = [
            ("FLAKEFLEET_TABLE", "t"),
            ("FLAKEFLEET_DOCUMENT", "d"),
            ("FLAKEFLEET_AUTH", "none"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"),
            ("AWS_CONFIG_FILE", path),
        ];
        assert_eq!(config(&base).unwrap().auth, AuthSettings::None, "the default profile leaves endpoints alone");
        let err = config(&[&base[..], &[("AWS_PROFILE", "local")]].concat()).unwrap_err();
        assert!(err.to_string().contains("ignore_configured_endpoint_urls"), "{err}");
        std::fs::write(&file, "[default]\nignore_configured_endpoint_urls=true\n").unwrap();
        assert!(config(&base).is_err(), "[default] too");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_variable() {
        let err = config(&[("FLAKEFLEET_DOCUMENT", "d")]).unwrap_err();
        assert!(err.to_string().contains("FLAKEFLEET_TABLE"), "{err}");
        let err =
            config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_MAX_CONCURRENCY", "0")])
                .unwrap_err();
        assert!(err.to_string().contains("FLAKEFLEET_MAX_CONCURRENCY"), "{err}");
        let err = config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_FLEET", "Prod")])
            .unwrap_err();
        assert!(err.to_string().contains("FLAKEFLEET_FLEET"), "{err}");
        assert!(config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_MAX_ERRORS", "10%")])
            .is_ok());
        assert!(config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_MAX_ERRORS", "101%")])
            .is_err());
        let err = Config::from_lookup(|k| match k {
            "FLAKEFLEET_TABLE" | "FLAKEFLEET_DOCUMENT" => Some("x".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Missing("FLAKEFLEET_ALLOWED_FLAKES")), "the allowlist is required: {err}");
        for (var, bad) in [
            ("FLAKEFLEET_ALLOWED_FLAKES", " , "),
            ("FLAKEFLEET_ALLOWED_FLAKES", "AcmeCorp/*"),
            ("FLAKEFLEET_AUTH", "open"),
            ("FLAKEFLEET_AUTH", "none"),
            ("FLAKEFLEET_WRITERS", "arn:aws:iam::123456789012:role/*"),
            ("FLAKEFLEET_ROLLOUT", "yolo"),
            ("FLAKEFLEET_WAVE_SIZE", "0"),
            ("FLAKEFLEET_CANARY_SIZE", "51"),
            ("FLAKEFLEET_AUTO_ROLLBACK", "yes"),
            ("FLAKEFLEET_SUBNET_IDS", "subnet-1,vpc-2"),
            ("FLAKEFLEET_AMI_ARCHITECTURE", "sparc"),
            ("FLAKEFLEET_DESIRED_CAPACITY", "-1"),
        ] {
            let err = config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), (var, bad)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
