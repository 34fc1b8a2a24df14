//! Configuration from environment variables, read and checked once at
//! start-up in named parts: `fleet` (what the fleet is and how releases roll
//! out), `ssm` (how the document is invoked) and `auth` (who may call). Every
//! variable is documented in README.md and set by template.yaml.

mod auth;
pub mod fleet;
mod ssm;
mod vars;

pub use auth::{AuthSettings, DEFAULT_ENVIRONMENT};

use crate::aws::SsmSettings;
use crate::domain::model::fleet::FleetSettings;
use vars::Vars;

#[derive(Clone, Debug)]
pub struct Config {
    pub table: String,
    pub fleet: FleetSettings,
    pub ssm: SsmSettings,
    pub auth: AuthSettings,
    /// Open each service's connection during init (`FLAKEFLEET_WARM_CONNECTIONS`).
    pub warm_connections: bool,
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
        let vars = Vars::new(&lookup);
        Ok(Self {
            warm_connections: vars.flag("FLAKEFLEET_WARM_CONNECTIONS", "false")?,
            auth: auth::settings(&vars)?,
            table: vars.required("FLAKEFLEET_TABLE")?,
            fleet: fleet::settings(&vars)?,
            ssm: ssm::settings(&vars)?,
            // PutEvents' EventBusName: a bus name or ARN; unset, the default bus.
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::iam::IamAllowlist;
    use crate::domain::model::ids::TargetTag;
    use crate::domain::model::rollout::{Rate, RolloutMode};
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
        assert_eq!(c.fleet.spec.image.name_pattern, "determinate/nixos/epoch-1/26.05.*");
        assert_eq!(
            (c.fleet.spec.image.architecture.as_str(), c.fleet.spec.instance_type.as_str()),
            ("x86_64", "t3a.nano")
        );
    }

    #[test]
    fn hosts_send_their_output_to_the_log_group_named() {
        let base = [("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d")];
        assert_eq!(config(&base).unwrap().ssm.output_log_group, None);
        let group = [&base[..], &[("FLAKEFLEET_HOST_LOG_GROUP", "/flakefleet/prod/hosts")]].concat();
        assert_eq!(config(&group).unwrap().ssm.output_log_group.as_deref(), Some("/flakefleet/prod/hosts"));
        let long = "a".repeat(513);
        for bad in ["/flake fleet", "group:1", long.as_str()] {
            let err = config(&[&base[..], &[("FLAKEFLEET_HOST_LOG_GROUP", bad)]].concat()).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { var: "FLAKEFLEET_HOST_LOG_GROUP", .. }), "{bad}: {err}");
        }
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
    fn iam_entries_of_another_account_are_refused_when_the_account_is_known() {
        let base = [("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_ACCOUNT_ID", "111122223333")];
        let with = |var, value| config(&[&base[..], &[(var, value)]].concat());
        assert!(with("FLAKEFLEET_WRITERS", "arn:aws:iam::111122223333:role/deploy").is_ok());
        assert!(with("FLAKEFLEET_READERS", "111122223333").is_ok());
        for (var, entry) in [
            ("FLAKEFLEET_WRITERS", "arn:aws:iam::111122223333:role/deploy, arn:aws:iam::444455556666:role/deploy"),
            ("FLAKEFLEET_READERS", "444455556666"),
            ("FLAKEFLEET_READERS", "arn:aws:iam::444455556666:user/ops/alice"),
        ] {
            let err = with(var, entry).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains("444455556666") && err.contains("resource-based"), "{err}");
        }
        // Unknown (local runs): not checked.
        assert!(config(&[
            ("FLAKEFLEET_TABLE", "t"),
            ("FLAKEFLEET_DOCUMENT", "d"),
            ("FLAKEFLEET_READERS", "444455556666")
        ])
        .is_ok());
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

    #[test]
    fn rollback_alarms_must_fit_the_alarm_rules_pattern() {
        let alarms =
            |count: usize| (0..count).map(|n| format!("{n:03}{}", "a".repeat(252))).collect::<Vec<_>>().join(",");
        let with = |names: &str| {
            config(&[("FLAKEFLEET_TABLE", "t"), ("FLAKEFLEET_DOCUMENT", "d"), ("FLAKEFLEET_ROLLBACK_ALARMS", names)])
        };
        assert!(with(&alarms(15)).is_ok(), "15 names of 255 characters fit");
        let err = with(&alarms(16)).unwrap_err().to_string();
        assert!(err.contains("FLAKEFLEET_ROLLBACK_ALARMS") && err.contains("at most 4096"), "{err}");
        assert!(with(&alarms(101)).unwrap_err().to_string().contains("at most 100"));
    }
}
