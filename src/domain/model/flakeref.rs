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

    /// Only flakes on the allowlist reach the fleet.
    pub fn check(&self, flakeref: &Flakeref) -> Result<(), FlakeNotAllowed> {
        if self.permits(flakeref) {
            return Ok(());
        }
        Err(FlakeNotAllowed { flake: flakeref.flake().to_owned(), allowed: self.to_string() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flake {flake} is not on this fleet's allowlist ({allowed}); add it to FLAKEFLEET_ALLOWED_FLAKES (the AllowedFlakes parameter) to deploy it")]
pub struct FlakeNotAllowed {
    pub flake: String,
    pub allowed: String,
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
#[path = "../../../tests/corpus/flakeref.rs"]
pub(crate) mod corpus;

#[cfg(test)]
pub(crate) mod tests {
    use super::corpus::engine_corpus;
    pub(crate) use super::corpus::{mutation, valid_flakeref, Mutation};
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
        /// Every mutation an attacker would try is refused, and the valid
        /// reference it came from is accepted: the assertion is reached in
        /// every case, with inputs of every length the grammar allows and
        /// past it up to 20,000 characters.
        #[test]
        fn every_attacker_mutation_of_a_valid_flakeref_is_refused(valid in valid_flakeref(), mutation in mutation()) {
            prop_assert_eq!(Flakeref::parse(&valid).map(|f| f.as_str().to_owned()), Ok(valid.clone()));
            let hostile = mutation.apply(&valid);
            let expected = if hostile.len() > FLAKEREF_MAX_LEN {
                FlakerefError::TooLong(hostile.len())
            } else {
                FlakerefError::Malformed
            };
            prop_assert_eq!(Flakeref::parse(&hostile), Err(expected), "{:?} of {:?}", mutation, valid);
        }
    }

    /// One regex, three engines: the Rust validator, the bash check in the
    /// SSM document's script (the `pattern=` line of template.yaml, run with
    /// bash) and the simulator's SendCommand check (dev/ssm_sim.py's own
    /// function, with the document's allowedPattern and maxChars) agree on
    /// every input, except where documented below, and each difference is safe.
    #[test]
    fn the_rust_bash_and_ssm_checks_agree() {
        let root = env!("CARGO_MANIFEST_DIR");
        let template: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(format!("{root}/template.yaml")).unwrap()).unwrap();
        let content = &template["Resources"]["ApplyNixosDocument"]["Properties"]["Content"];
        let script = content["mainSteps"][0]["inputs"]["runCommand"][0].as_str().unwrap();
        let pattern_line = script.lines().map(str::trim).find(|l| l.starts_with("pattern='")).unwrap();
        let spec = serde_json::to_string(&content["parameters"]["flakeref"]).unwrap();
        // Environment variables and bash strings cannot hold NUL, so no agent can pass one to the script.
        let corpus: Vec<String> = engine_corpus().into_iter().filter(|s| !s.contains('\0')).collect();
        let input: Vec<u8> = corpus.iter().flat_map(|s| s.bytes().chain([0])).collect();
        let run = |program: &str, args: &[&str]| -> Vec<bool> {
            use std::io::Write;
            let mut child = std::process::Command::new(program)
                .args(args)
                .current_dir(root)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{program}: {e} (make test installs .dev/venv)"));
            child.stdin.take().unwrap().write_all(&input).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{program} failed");
            out.stdout.iter().map(|b| *b == b'1').collect()
        };
        let bash = run(
            "bash",
            &["-c", &format!("{pattern_line}\nwhile IFS= read -r -d '' f; do if [[ \"$f\" =~ $pattern ]]; then printf 1; else printf 0; fi; done")],
        );
        let ssm = run(
            &format!("{root}/.dev/venv/bin/python"),
            &[
                "-c",
                "import json, sys; sys.path.insert(0, 'dev'); import ssm_sim\n\
                 spec = json.loads(sys.argv[1])\n\
                 for value in sys.stdin.buffer.read().split(b'\\0')[:-1]:\n\
                 \x20   try: ssm_sim.check_parameter('flakeref', spec, value.decode()); print(1, end='')\n\
                 \x20   except ssm_sim.SsmError: print(0, end='')",
                &spec,
            ],
        );
        assert_eq!((bash.len(), ssm.len()), (corpus.len(), corpus.len()));
        let (mut accepted, mut differences) = (0, Vec::new());
        for ((value, bash), ssm) in corpus.iter().zip(bash).zip(ssm) {
            let rust = Flakeref::parse(value).is_ok();
            accepted += usize::from(rust);
            if rust == bash && rust == ssm {
                continue;
            }
            let trimmed = value.strip_suffix('\n').is_some_and(|v| Flakeref::parse(v).is_ok());
            // Documented: (1) SSM's `$` also matches before one trailing newline, so it
            // accepts a valid reference plus "\n" that Rust never sends and bash refuses
            // on the host. (2) The pattern has no length check: bash accepts references
            // that match it but are over 512 characters, which Rust never sends and
            // SSM's maxChars refuses; the script checks the length beside the pattern
            // (tests/it/document.rs runs the whole script on this corpus).
            let safe = (trimmed && !rust && !bash && ssm) || (value.len() > FLAKEREF_MAX_LEN && !rust && bash && !ssm);
            assert!(safe, "the engines disagree on {value:?}: rust {rust}, bash {bash}, ssm {ssm}");
            differences.push(value.clone());
        }
        assert!(accepted >= 400, "the corpus must hold valid references: {accepted}");
        assert_eq!(differences.len(), 2, "the two documented differences, nothing else: {differences:?}");
    }
}
