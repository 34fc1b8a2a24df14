//! The SSM document's script, run with bash against fake `fh`, `readlink` and
//! `systemctl`: hostile flakerefs never execute, failed activations fail.

use crate::support::{template, GOOD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TARGET: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";
const OLD: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web";

struct Host {
    dir: PathBuf,
}

impl Host {
    /// A fake host: `fh apply` switches /run/current-system unless told the activation fails.
    fn new(activation_works: bool) -> Self {
        Self::with_apply(if activation_works { "echo {TARGET} > \"{DIR}/current\"" } else { "true" })
    }

    /// A fake host whose `fh apply` runs `apply` ({TARGET} and {DIR} filled in).
    fn with_apply(apply: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flakefleet-doc-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("current"), OLD).unwrap();
        let fh = format!(
            r#"#!/usr/bin/env bash
echo "fh $*" >> "{dir}/calls"
case "$1" in
  resolve) echo "{TARGET}" ;;
  apply) {switch} ;;
esac
"#,
            dir = dir.display(),
            switch = apply.replace("{TARGET}", TARGET).replace("{DIR}", &dir.display().to_string()),
        );
        let readlink = format!("#!/usr/bin/env bash\ncat \"{}/current\"\n", dir.display());
        for (name, body) in
            [("fh", fh.as_str()), ("readlink", readlink.as_str()), ("systemctl", "#!/usr/bin/env bash\n")]
        {
            let path = dir.join("bin").join(name);
            std::fs::write(&path, body).unwrap();
            Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        }
        Self { dir }
    }

    fn run(&self, flakeref: &str) -> Output {
        let content = &template()["Resources"]["ApplyNixosDocument"]["Properties"]["Content"];
        let script = content["mainSteps"][0]["inputs"]["runCommand"][0].as_str().unwrap().to_owned();
        let path = format!("{}:/usr/bin:/bin", self.dir.join("bin").display());
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", path)
            .env("SSM_flakeref", flakeref)
            .env("SSM_action", "switch")
            .output()
            .unwrap()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default()
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn applies_and_checks_the_activation() {
    let host = Host::new(true);
    let out = host.run(GOOD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(host.calls(), format!("fh resolve {GOOD}\nfh apply nixos {GOOD} switch\n"));
    assert!(text(&out.stdout).contains(TARGET));
}

#[test]
fn does_nothing_when_the_host_already_runs_the_target() {
    let host = Host::new(true);
    std::fs::write(host.dir.join("current"), TARGET).unwrap();
    let out = host.run(GOOD);
    assert!(out.status.success());
    assert_eq!(host.calls(), format!("fh resolve {GOOD}\n"));
}

#[test]
fn a_failed_activation_fails_the_command() {
    let host = Host::new(false);
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("activation did not take"));
}

#[test]
fn hostile_flakerefs_never_execute() {
    let hostile = [
        "AcmeCorp/infra/=0.1.2#web;touch pwned",
        "AcmeCorp/infra/=0.1.2#$(touch pwned)",
        "AcmeCorp/infra/=0.1.2#`touch pwned`",
        "AcmeCorp/infra/=0.1.2#*",
        "*",
        "AcmeCorp/infra/=0.1.2#web\ntouch pwned",
        "AcmeCorp/infra/=0.1.2#web' ; touch pwned; echo '",
        "AcmeCorp/infra/=0.1.2#web\" ; touch pwned; echo \"",
        "AcmeCorp/infra/=0.1.2#web && touch pwned",
        "",
    ];
    for flakeref in hostile {
        let host = Host::new(true);
        let before = host.entries();
        let out = host.run(flakeref);
        assert_eq!(out.status.code(), Some(2), "{flakeref:?}: {}", text(&out.stderr));
        assert_eq!(host.calls(), "", "{flakeref:?} reached fh");
        assert_eq!(host.entries(), before, "{flakeref:?} wrote a file");
        assert!(!Path::new(&host.dir.join("pwned")).exists());
    }
}

/// SSM keeps only the first 24,000 characters of a command's output (8,000 of
/// its errors): the document keeps fh's whole output on the host and prints its
/// end, so what SSM shows is the part that explains a failure.
#[test]
fn a_long_apply_prints_its_end_within_what_ssm_keeps() {
    let noisy = "for i in $(seq 1 4000); do echo \"building derivation $i of 4000\"; done; echo 'THE LAST LINE'";
    for (apply, code) in [
        (format!("{noisy}; echo {{TARGET}} > \"{{DIR}}/current\""), 0),
        (format!("{noisy}; echo 'error: collision' >&2; exit 7"), 7),
    ] {
        let host = Host::with_apply(&apply);
        let out = host.run(GOOD);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stdout.len() <= 24_000 && stderr.len() <= 8_000, "{} / {} characters", stdout.len(), stderr.len());
        assert!(stdout.contains("THE LAST LINE") && !stdout.contains("derivation 1 of 4000"), "the end, not the start");
        if code != 0 {
            assert!(stdout.trim_end().ends_with("error: collision"), "{}", &stdout[stdout.len() - 200..]);
            assert!(stderr.contains("fh apply failed (exit 7)"), "{stderr}");
        }
    }
}
