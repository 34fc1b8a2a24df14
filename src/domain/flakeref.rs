//! The one grammar of a deployable FlakeHub reference, shared with the SSM document.

use regex::Regex;
use std::fmt;
use std::sync::LazyLock;

/// Accepted form: `<org>/<flake>/=<exact version>#<attribute path>`.
///
/// Only exact versions are accepted: a release must name one closure, or a
/// rollback to it would not be a rollback. The same string is the SSM
/// document's `allowedPattern` (a test reads `template.yaml` to prove it), so
/// it avoids nested quantifiers and stays linear in both regex engines.
pub const FLAKEREF_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,38}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/=[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,128})?#[A-Za-z_][A-Za-z0-9_.-]{0,199}$";

/// Upper bound on a flakeref's length; also the document's `maxChars`.
pub const FLAKEREF_MAX_LEN: usize = 512;

/// What an error message shows a caller who sent something else.
pub const FLAKEREF_EXAMPLE: &str =
    "<org>/<flake>/=<exact version>#<attribute path>, e.g. AcmeCorp/infra/=0.1.42+rev-4f2a9c1#nixosConfigurations.web";

static FLAKEREF_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(FLAKEREF_PATTERN).expect("FLAKEREF_PATTERN is a valid regex"));

/// A FlakeHub reference to one exact NixOS closure: safe to hand to a shell
/// argument and to `fh apply nixos`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Flakeref(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlakerefError {
    #[error("flakeref is empty; expected {FLAKEREF_EXAMPLE}")]
    Empty,
    #[error("flakeref is {0} characters long, over the limit of {FLAKEREF_MAX_LEN}")]
    TooLong(usize),
    #[error("flakeref is not an exact FlakeHub release; expected {FLAKEREF_EXAMPLE}")]
    Malformed,
}

impl Flakeref {
    pub fn parse(raw: &str) -> Result<Self, FlakerefError> {
        if raw.is_empty() {
            return Err(FlakerefError::Empty);
        }
        if raw.len() > FLAKEREF_MAX_LEN {
            return Err(FlakerefError::TooLong(raw.len()));
        }
        if !FLAKEREF_RE.is_match(raw) {
            return Err(FlakerefError::Malformed);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<org>/<flake>`: the part a [`FlakeAllowlist`] names.
    pub fn flake(&self) -> &str {
        // The grammar guarantees two slashes before the version.
        let version = self.0.find("/=").expect("a parsed flakeref has /=");
        &self.0[..version]
    }
}

/// The flakes a fleet may run, as exact `<org>/<flake>` names (case and
/// all: the stricter reading when FlakeHub's own matching is not the
/// question). Whoever can deploy a
/// flake gains root on every host: an allowlist keeps a writer, or a
/// compromised CI job, from deploying a flake of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlakeAllowlist(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlakeAllowlistError {
    #[error("no flake is allowed; name at least one <org>/<flake>, e.g. AcmeCorp/infra")]
    Empty,
    #[error("{0:?} is not <org>/<flake> (letters, digits, _ . - and one slash; no wildcards)")]
    Malformed(String),
}

static FLAKE_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,38}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$").unwrap());

impl FlakeAllowlist {
    /// Comma-separated `<org>/<flake>` names; at least one.
    pub fn parse(raw: &str) -> Result<Self, FlakeAllowlistError> {
        let mut flakes = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if !FLAKE_NAME_RE.is_match(item) {
                return Err(FlakeAllowlistError::Malformed(item.to_owned()));
            }
            flakes.push(item.to_owned());
        }
        if flakes.is_empty() {
            return Err(FlakeAllowlistError::Empty);
        }
        Ok(Self(flakes))
    }

    pub fn permits(&self, flakeref: &Flakeref) -> bool {
        self.0.iter().any(|allowed| allowed == flakeref.flake())
    }
}

impl fmt::Display for FlakeAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl fmt::Display for Flakeref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_what_flakehub_push_prints() {
        for ok in [
            "DeterminateSystems/demo/=0.1.42+rev-4f2a9c1e#nixosConfigurations.ethercalc-demo",
            "a/b/=0.0.1#x",
            "org_1/flake.name/=1.2.3-rc.1+rev-abc#nixosConfigurations.web_01",
        ] {
            assert_eq!(Flakeref::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_ranges_urls_paths_and_shell_text() {
        for bad in [
            "",
            "org/flake/0.1#nixosConfigurations.a",
            "org/flake/*#nixosConfigurations.a",
            "org/flake/=0.1.*#nixosConfigurations.a",
            "org/flake/=0.1.2",
            "https://flakehub.com/f/org/flake/=0.1.2#a",
            "/nix/store/abc-nixos-system#a",
            "org/flake/=0.1.2#a;reboot",
            "org/flake/=0.1.2#a$(id)",
            "org/flake/=0.1.2#a`id`",
            "org/flake/=0.1.2#a\nreboot",
            "org/flake/=0.1.2#a b",
            "-org/flake/=0.1.2#a",
            "org/flake/=0.1.2#a'b",
        ] {
            assert!(Flakeref::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("org/flake/=0.1.2#{}", "a".repeat(10_000));
        assert_eq!(Flakeref::parse(&long), Err(FlakerefError::TooLong(long.len())));
    }

    #[test]
    fn the_allowlist_matches_whole_flake_names_only() {
        let allowed = FlakeAllowlist::parse(" AcmeCorp/infra , AcmeCorp/edge").unwrap();
        let permits = |raw: &str| allowed.permits(&Flakeref::parse(raw).unwrap());
        assert!(permits("AcmeCorp/infra/=0.1.42+rev-4f2a9c1#nixosConfigurations.web"));
        assert!(permits("AcmeCorp/edge/=1.0.0#x"));
        for refused in [
            "AcmeCorp/infra2/=1.0.0#x",
            "AcmeCorp/inf/=1.0.0#x",
            "attacker/infra/=1.0.0#x",
            "AcmeCorpX/infra/=1.0.0#x",
            "acmecorp/infra/=1.0.0#x",
        ] {
            assert!(!permits(refused), "{refused}");
        }
        assert_eq!(FlakeAllowlist::parse(" , "), Err(FlakeAllowlistError::Empty));
        for bad in ["AcmeCorp/*", "AcmeCorp", "AcmeCorp/infra/=1.0.0", "*/*", "a/b;c"] {
            assert!(matches!(FlakeAllowlist::parse(bad), Err(FlakeAllowlistError::Malformed(_))), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn nothing_outside_the_grammar_gets_through(raw in "\\PC{0,80}|[ -~\n]{0,80}") {
            if let Ok(flakeref) = Flakeref::parse(&raw) {
                let s = flakeref.as_str();
                prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || "/=.+-_#".contains(c)), "{s:?}");
                prop_assert!(!s.starts_with('-'));
            }
        }
    }
}
