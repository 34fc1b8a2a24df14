//! The SSM document's script, run with bash as the SSM agent would, against a
//! fake host: hostile flakerefs never execute, failed activations fail, old
//! and new agents alike. Each run is in a mount namespace of its own
//! (`unshare -m`, as root: CI and `make test` run as root here) where `/run`
//! and `/var/log` are fresh, the host's `fh`, `readlink` and `systemctl` sit
//! in `/run/current-system/sw/bin`, and `PATH` is the agent's minimal one: the
//! script must find them in the system profile by itself.

use crate::support::{template, GOOD};
use flakefleet::domain::model::flakeref::{Flakeref, FLAKEREF_MAX_LEN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TARGET: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-web";
const OLD: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-web";

/// How the agent hands the parameters over.
#[derive(Clone, Copy, Debug)]
enum Agent {
    /// Before 3.3.2746.0: the parameter text pasted into the script only.
    Old,
    /// 3.3.2746.0 on: the text pasted, and `SSM_<name>` set as well.
    New,
}

const AGENTS: [Agent; 2] = [Agent::Old, Agent::New];

/// What `fh apply … switch` does on the fake host: the system profile and
/// the running system become the target.
const SWITCH: &str = "echo {TARGET} > \"{DIR}/profile\"; echo {TARGET} > \"{DIR}/current\"";

/// The hostile-flakeref corpus the validator's tests use too.
#[path = "../corpus/flakeref.rs"]
mod corpus;

struct Host {
    dir: PathBuf,
}

impl Host {
    /// A fake host: `fh apply` switches /run/current-system unless told the activation fails.
    fn new(activation_works: bool) -> Self {
        Self::with_apply(if activation_works { SWITCH } else { "true" })
    }

    /// A fake host whose `fh apply` runs `apply` ({TARGET} and {DIR} filled
    /// in); `systemctl --failed` lists the lines of `{DIR}/failed`.
    fn with_apply(apply: &str) -> Self {
        let switch = apply.replace("{TARGET}", TARGET);
        Self::with_fh(&format!("case \"$1\" in\n  resolve) echo \"{TARGET}\" ;;\n  apply) {switch} ;;\nesac\n"))
    }

    /// A fake host whose `fh` runs `body` ({DIR} filled in) after noting its
    /// arguments in `{DIR}/calls`.
    fn with_fh(body: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flakefleet-doc-{}-{}", std::process::id(), fastrand::u64(..)));
        for sub in ["bin", "var-log", "var-lib"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("current"), OLD).unwrap();
        std::fs::write(dir.join("profile"), OLD).unwrap();
        std::fs::write(dir.join("failed"), "").unwrap();
        // Both systems in the host's store (its /nix/store), each able to switch to itself.
        for system in [TARGET, OLD] {
            let bin = dir.join("store").join(system.trim_start_matches("/nix/store/")).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let switch = format!("#!/usr/bin/env bash\necho {system} > \"{}/current\"\n", dir.display());
            std::fs::write(bin.join("switch-to-configuration"), switch).unwrap();
            Command::new("chmod").arg("+x").arg(bin.join("switch-to-configuration")).status().unwrap();
        }
        let fh = format!(
            "#!/usr/bin/env bash\necho \"fh $*\" >> \"{dir}/calls\"\n{body}",
            dir = dir.display(),
            body = body.replace("{DIR}", &dir.display().to_string()),
        );
        let readlink = format!(
            "#!/usr/bin/env bash\ncase \"$2\" in\n  /run/current-system) cat \"{0}/current\" ;;\n  \
             /nix/var/nix/profiles/system) cat \"{0}/profile\" ;;\n  *) exec /usr/bin/readlink \"$@\" ;;\nesac\n",
            dir.display()
        );
        let nix_env = format!(
            "#!/usr/bin/env bash\n[ \"$1 $2 $3\" = '-p /nix/var/nix/profiles/system --set' ] && echo \"$4\" > \"{}/profile\"\n",
            dir.display()
        );
        let systemctl = format!("#!/usr/bin/env bash\ncat \"{}/failed\"\n", dir.display());
        let nixd = format!("#!/usr/bin/env bash\necho \"determinate-nixd $*\" >> \"{}/calls\"\n", dir.display());
        for (name, body) in [
            ("fh", fh.as_str()),
            ("readlink", readlink.as_str()),
            ("nix-env", nix_env.as_str()),
            ("systemctl", systemctl.as_str()),
            ("determinate-nixd", nixd.as_str()),
        ] {
            let path = dir.join("bin").join(name);
            std::fs::write(&path, body).unwrap();
            Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        }
        Self { dir }
    }

    fn run(&self, flakeref: &str) -> Output {
        self.run_as(Agent::New, flakeref)
    }

    /// Runs the document's script as `agent` would, with `flakeref`.
    fn run_as(&self, agent: Agent, flakeref: &str) -> Output {
        let mut command = self.agent_command(flakeref, "switch");
        if let Agent::New = agent {
            command.env("SSM_flakeref", flakeref).env("SSM_action", "switch");
        }
        command.output().unwrap()
    }

    /// The document's script as the agent runs it: its runCommand from
    /// template.yaml, the parameter text pasted in, written to `_script.sh`
    /// in an orchestration directory of its own, run as `sh -c FILE ""`
    /// (agent/plugins/runscript in amazon-ssm-agent).
    fn agent_command(&self, flakeref: &str, action: &str) -> Command {
        let file = self.script_file(flakeref, action);
        let mut command = self.in_namespace();
        command.arg("sh").arg("-c").arg(&file).arg("");
        command
    }

    /// The script file the agent writes: the document's runCommand, the parameter text pasted in.
    fn script_file(&self, flakeref: &str, action: &str) -> PathBuf {
        let content = &template()["Resources"]["ApplyNixosDocument"]["Properties"]["Content"];
        let lines: Vec<&str> = content["mainSteps"][0]["inputs"]["runCommand"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|line| line.as_str().unwrap())
            .collect();
        let text = (lines.join("\n") + "\n").replace("{{ flakeref }}", flakeref).replace("{{ action }}", action);
        let dir = self.dir.join("orchestration").join(fastrand::u64(..).to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("_script.sh");
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        file
    }

    /// Boots the host: its user data `script`, as amazon-init runs it (as
    /// root, on every boot, as a file: `bash FILE`).
    fn boot(&self, script: &str) -> Output {
        self.boot_command(script).output().unwrap()
    }

    fn boot_command(&self, script: &str) -> Command {
        let file = self.dir.join("user-data");
        std::fs::write(&file, script).unwrap();
        let mut command = self.in_namespace();
        command.arg("bash").arg(file);
        command
    }

    /// A command to run on this host, in a mount namespace of its own
    /// (dev/host-namespace.sh, which the simulator's fake hosts use too).
    fn in_namespace(&self) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["-m", "bash", concat!(env!("CARGO_MANIFEST_DIR"), "/dev/host-namespace.sh")])
            .arg(&self.dir)
            .current_dir(&self.dir)
            .env_clear()
            // The agent's service PATH on a NixOS host without fleet-host: no fh on it.
            .env("PATH", "/usr/bin:/bin");
        command
    }

    /// Declares health checks in the target system's closure, as the
    /// fleet-host module does: `SYSTEM/etc/flakefleet/health-checks/<name>`,
    /// each `(name, bash body)` ({DIR} filled in), and `health.conf`.
    fn declare_checks(&self, conf: &str, checks: &[(&str, &str)]) {
        let etc = self.dir.join("store").join(TARGET.trim_start_matches("/nix/store/")).join("etc/flakefleet");
        std::fs::create_dir_all(etc.join("health-checks")).unwrap();
        std::fs::write(etc.join("health.conf"), conf).unwrap();
        for (name, body) in checks {
            let path = etc.join("health-checks").join(name);
            let body = body.replace("{DIR}", &self.dir.display().to_string());
            std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
            Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap().trim().to_owned()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default()
    }

    /// The apply logs the last run left on the host.
    fn logs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("var-log/flakefleet")) else { return Vec::new() };
        let mut logs: Vec<String> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("apply-")))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        logs.sort();
        logs
    }

    /// Every file and directory on the host (its /var/lib and /var/log
    /// too), but the agent's orchestration directories.
    fn entries(&self) -> Vec<String> {
        fn walk(dir: &Path, into: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n == "orchestration") {
                    continue;
                }
                into.push(path.display().to_string());
                if path.is_dir() {
                    walk(&path, into);
                }
            }
        }
        let mut names = Vec::new();
        walk(&self.dir, &mut names);
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
fn applies_and_checks_the_activation_on_old_and_new_agents() {
    for agent in AGENTS {
        let host = Host::new(true);
        let out = host.run_as(agent, GOOD);
        assert!(out.status.success(), "{agent:?}: {}", text(&out.stderr));
        assert_eq!(host.calls(), format!("fh resolve {GOOD}\nfh apply nixos {GOOD} switch\n"), "{agent:?}");
        assert!(text(&out.stdout).contains(TARGET));
    }
}

/// AWS's ENV_VAR examples still paste the text, so every agent is assumed to:
/// where the variable is set, it is what counts, even when the text differs
/// or would be refused.
#[test]
fn a_new_agents_variable_wins_over_the_pasted_text() {
    let content = &template()["Resources"]["ApplyNixosDocument"]["Properties"]["Content"];
    let script = content["mainSteps"][0]["inputs"]["runCommand"][0].as_str().unwrap();
    assert_eq!(script.matches("{{ flakeref }}").count(), 1, "one place takes the text");
    for pasted in [crate::support::NEXT, "not a flakeref\nat all"] {
        let host = Host::new(true);
        let out =
            host.agent_command(pasted, "boot").env("SSM_flakeref", GOOD).env("SSM_action", "switch").output().unwrap();
        assert!(out.status.success(), "{pasted:?}: {}", text(&out.stderr));
        assert_eq!(host.calls(), format!("fh resolve {GOOD}\nfh apply nixos {GOOD} switch\n"), "{pasted:?}");
    }
}

#[test]
fn does_nothing_when_the_host_already_runs_the_target() {
    for agent in AGENTS {
        let host = Host::new(true);
        std::fs::write(host.dir.join("current"), TARGET).unwrap();
        let out = host.run_as(agent, GOOD);
        assert!(out.status.success());
        assert_eq!(host.calls(), format!("fh resolve {GOOD}\n"));
    }
}

#[test]
fn a_failed_activation_fails_the_command() {
    let host = Host::new(false);
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("activation did not take"));
}

/// Only units this activation broke fail the apply; units that had failed
/// before it are the host's, reported as a warning.
#[test]
fn units_that_failed_before_the_apply_are_a_warning_and_new_ones_a_failure() {
    let failed = |unit: &str| format!("{unit} loaded failed failed {unit}");
    let host = Host::with_apply(&format!(
        "echo {{TARGET}} > \"{{DIR}}/current\"; echo '{}' >> \"{{DIR}}/failed\"",
        failed("web.service")
    ));
    std::fs::write(host.dir.join("failed"), failed("old-backup.service") + "\n").unwrap();
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("units failed after activation: web.service"), "{stderr}");
    assert!(!stderr.contains("units failed after activation: old-backup"), "{stderr}");
    assert!(
        text(&out.stdout).contains("warning: units that had failed before this apply still fail: old-backup.service")
    );

    let host = Host::new(true);
    std::fs::write(host.dir.join("failed"), failed("old-backup.service") + "\n").unwrap();
    let out = host.run(GOOD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("warning: units that had failed before this apply still fail: old-backup.service")
    );
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
        "AcmeCorp/infra/=0.1.2#web}\"; touch pwned; : \"${x",
        "AcmeCorp/infra/=0.1.2#web\n$(touch pwned)\n",
        "",
    ];
    for agent in AGENTS {
        for flakeref in hostile {
            let host = Host::new(true);
            let before = host.entries();
            let out = host.run_as(agent, flakeref);
            assert_eq!(out.status.code(), Some(2), "{agent:?} {flakeref:?}: {}", text(&out.stderr));
            assert_eq!(host.calls(), "", "{agent:?} {flakeref:?} reached fh");
            assert_eq!(host.entries(), before, "{agent:?} {flakeref:?} wrote a file");
            assert!(!Path::new(&host.dir.join("pwned")).exists());
        }
    }
}

/// SSM keeps only the first 2,500 characters of a command's output in its
/// listings (24,000 of stdout, 8,000 of stderr otherwise): fh's own output
/// goes to a log on the host, and the script prints a short verdict, with
/// the log's last lines on failure, well within the first 2,500 of each.
#[test]
fn a_long_apply_leaves_a_short_verdict_and_its_whole_output_in_a_log() {
    let noisy = "for i in $(seq 1 4000); do echo \"building derivation $i of 4000\"; done; echo 'THE LAST LINE'";
    for (apply, code) in [
        (format!("{noisy}; echo {{TARGET}} > \"{{DIR}}/current\""), 0),
        (format!("{noisy}; echo 'error: collision between a and b' >&2; exit 7"), 7),
    ] {
        let host = Host::with_apply(&apply);
        let out = host.run(GOOD);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stdout.len() + stderr.len() <= 2_500, "{} + {} characters", stdout.len(), stderr.len());
        assert!(!stdout.contains("derivation 1 of 4000") && !stderr.contains("derivation 1 of 4000"));
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].contains("derivation 1 of 4000") && logs[0].contains("THE LAST LINE"), "the whole output");
        if code == 0 {
            assert!(stdout.contains(&format!("switch of {GOOD} done: {TARGET}")), "{stdout}");
        } else {
            assert!(stderr.contains("error: collision between a and b"), "the log's last lines: {stderr}");
            let last = stderr.trim_end().lines().last().unwrap();
            assert!(last.starts_with("flakefleet: fh apply failed (exit 7) (log: /var/log/flakefleet/"), "{stderr}");
        }
    }
}

/// The launch user data applies its release on the first boot only: after
/// flakefleet moves the host on over SSM, a reboot (amazon-init runs user
/// data on every boot) leaves it where it is. A first boot that failed tries
/// again at the next.
#[test]
fn user_data_applies_on_the_first_boot_only_and_never_moves_a_host_back() {
    use flakefleet::domain::model::flakeref::Flakeref;
    use flakefleet::domain::planner::repair::user_data;
    // fh's store path for a flakeref: its text made path-safe; apply switches to it.
    let fh = r#"path="/nix/store/$(printf '%s' "$2$3" | tr -c 'A-Za-z0-9' '-')"
case "$1" in
  resolve) echo "$path" ;;
  apply) [ -e "{DIR}/apply-fails" ] && exit 1; echo "/nix/store/$(printf '%s' "$3" | tr -c 'A-Za-z0-9' '-')" > "{DIR}/current" ;;
esac
"#;
    let r1 = crate::support::GOOD;
    let r2 = crate::support::NEXT;
    let store_path = |flakeref: &str| {
        format!(
            "/nix/store/{}",
            flakeref.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>()
        )
    };
    let boot_script = user_data(&Flakeref::parse(r1).unwrap());
    let current = |host: &Host| std::fs::read_to_string(host.dir.join("current")).unwrap().trim().to_owned();

    let host = Host::with_fh(fh);
    let out = host.boot(&boot_script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(current(&host), store_path(r1), "boot 1 applies R1");
    assert!(host.calls().contains("determinate-nixd login aws"));
    let out = host.run(r2);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(current(&host), store_path(r2), "SSM applies R2");
    let applies = host.calls().matches("fh apply").count();
    let out = host.boot(&boot_script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(current(&host), store_path(r2), "boot 2: still on R2");
    assert_eq!(host.calls().matches("fh apply").count(), applies, "boot 2 applies nothing");

    let failing = Host::with_fh(fh);
    std::fs::write(failing.dir.join("apply-fails"), "").unwrap();
    assert!(!failing.boot(&boot_script).status.success(), "boot 1 fails");
    std::fs::remove_file(failing.dir.join("apply-fails")).unwrap();
    let out = failing.boot(&boot_script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(current(&failing), store_path(r1), "boot 2 tries again, and applies R1");
    let log = std::fs::read_to_string(failing.dir.join("var-log/flakefleet/user-data.log")).unwrap();
    assert_eq!(log.matches("applying").count(), 2, "{log}");
}

/// The agent runs commands side by side, and the first boot's user data runs
/// beside the agent: one apply at a time on a host. An SSM apply arriving
/// while the user data applies waits for it, then finds the host on its
/// release and does nothing.
#[test]
fn an_ssm_apply_waits_for_the_apply_running_on_the_host() {
    use flakefleet::domain::model::flakeref::Flakeref;
    use flakefleet::domain::planner::repair::user_data;
    let host = Host::with_apply(
        "echo \"start $$\" >> \"{DIR}/applies\"; sleep 1; echo {TARGET} > \"{DIR}/current\"; echo \"end $$\" >> \"{DIR}/applies\"",
    );
    let boot_script = user_data(&Flakeref::parse(GOOD).unwrap());
    let mut booting = host.boot_command(&boot_script);
    let booting = booting.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // The user data holds the lock once its fh has started applying.
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(host.dir.join("applies")).is_ok_and(|a| a.starts_with("start")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the user data never started applying");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = host.run(GOOD);
    assert!(booting.wait_with_output().unwrap().status.success());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already running"), "{}", text(&out.stdout));
    let applies = std::fs::read_to_string(host.dir.join("applies")).unwrap();
    assert_eq!(applies.lines().count(), 2, "one apply, by the user data: {applies}");
}

/// An unprivileged user on a host that ran an older document (flakefleet's
/// directories 0755, the lock and logs 0644) holds the old lock through a
/// descriptor it opened then. The apply still goes through; afterwards that
/// user can neither open the lock nor read a log.
#[test]
fn only_root_can_lock_or_read_the_hosts_flakefleet_files() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::new(true);
    let (lib, logs) = (host.dir.join("var-lib/flakefleet"), host.dir.join("var-log/flakefleet"));
    for dir in [&lib, &logs] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, PermissionsExt::from_mode(0o755)).unwrap();
    }
    for file in [lib.join("apply.lock"), logs.join("apply-20261101T000000Z-1.log")] {
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    }
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let script = host.script_file(GOOD, "switch").display().to_string();
    let scenario = format!(
        r#"set -u
# The old lock, held by nobody through a descriptor opened before the change.
coproc HOLDER {{ {nobody} flock /var/lib/flakefleet/apply.lock sh -c 'echo held; exec cat'; }}
read -r held <&"${{HOLDER[0]}}"
echo "holder: $held"
SSM_flakeref='{GOOD}' SSM_action=switch sh -c '{script}' ""
echo "apply: $?"
{nobody} flock -n /var/lib/flakefleet/host.lock true 2>/dev/null; echo "nobody locks: $?"
{nobody} cat /var/log/flakefleet/apply-20261101T000000Z-1.log 2>/dev/null; echo "nobody reads the old log: $?"
{nobody} ls /var/log/flakefleet 2>/dev/null; echo "nobody lists the logs: $?"
stat -c '%a %n' /var/lib/flakefleet /var/log/flakefleet /var/lib/flakefleet/host.lock /var/log/flakefleet/*
"#
    );
    let out = host.in_namespace().arg("bash").arg("-c").arg(&scenario).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("holder: held"), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("apply: 0"), "the apply went through: {stdout}\n{}", text(&out.stderr));
    assert_eq!(host.read("current"), TARGET);
    // flock exits 66 (EX_NOINPUT) when it cannot open the file; cat 1; ls 2.
    for refused in ["nobody locks: 66", "nobody reads the old log: 1", "nobody lists the logs: 2"] {
        assert!(stdout.contains(refused), "{refused}: {stdout}");
    }
    // stat's lines: "<mode> <path>".
    let modes: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(m, p)| m.len() == 3 && m.bytes().all(|b| b.is_ascii_digit()) && p.starts_with("/var/"))
        })
        .collect();
    assert!(modes.len() >= 5, "{stdout}");
    for line in modes {
        let want = if line.ends_with("/var/lib/flakefleet") || line.ends_with("/var/log/flakefleet") {
            "700 "
        } else {
            "600 "
        };
        assert!(line.starts_with(want), "{line}");
    }
}

/// A lock held past the bound (here 1 s, in the real document 3600 s) fails
/// the apply with a verdict naming the process that holds it; nothing is applied.
#[test]
fn a_lock_held_past_its_bound_fails_the_apply_naming_its_holder() {
    let host = Host::new(true);
    let file = host.script_file(GOOD, "switch").display().to_string();
    let script = std::fs::read_to_string(&file).unwrap();
    assert!(script.contains("lock_wait=3600\n"), "the document's bound");
    std::fs::write(&file, script.replace("lock_wait=3600\n", "lock_wait=1\n")).unwrap();
    let scenario = format!(
        r#"install -d -m 0700 /var/lib/flakefleet
coproc HOLDER {{ flock /var/lib/flakefleet/host.lock sh -c 'echo held; exec cat'; }}
read -r held <&"${{HOLDER[0]}}"
SSM_flakeref='{GOOD}' SSM_action=switch sh -c '{file}' ""
echo "apply: $?"
"#
    );
    let out = host.in_namespace().arg("bash").arg("-c").arg(&scenario).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("apply: 1"), "{stdout}\n{stderr}");
    let verdict = stderr.lines().last().unwrap_or_default();
    assert!(
        verdict.starts_with("flakefleet: the host's apply lock was held for over 1s by pid ")
            && verdict.contains("(user root: flock /var/lib/flakefleet/host.lock sh -c echo held")
            && verdict.contains("not applied"),
        "{stderr}"
    );
    assert_eq!(host.read("current"), OLD, "nothing applied");
    assert!(!host.calls().contains("fh apply"), "{}", host.calls());
}

/// The agent cancels a command, or ends one past its timeout, by killing the
/// script's whole process group with SIGKILL (amazon-ssm-agent's
/// executers_unix.go). The apply runs detached (setsid), holding the lock:
/// the kill ends the script, the switch completes, and the next apply waits
/// for it and then finds the host on its release.
#[test]
fn killing_the_scripts_process_group_never_interrupts_a_switch() {
    use std::os::unix::process::CommandExt;
    let host = Host::with_apply(
        "echo start >> \"{DIR}/applies\"; sleep 2; echo {TARGET} > \"{DIR}/profile\"; echo {TARGET} > \"{DIR}/current\"; echo end >> \"{DIR}/applies\"",
    );
    let mut agent = host.agent_command(GOOD, "switch");
    agent.env("SSM_flakeref", GOOD).env("SSM_action", "switch").process_group(0);
    let running = agent.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(host.dir.join("applies")).is_ok_and(|a| a.contains("start")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "fh apply never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // As the agent does on a cancel or a timeout: SIGKILL to the process group.
    let group = format!("-{}", running.id());
    assert!(Command::new("kill").args(["-KILL", "--", &group]).status().unwrap().success());
    let killed = running.wait_with_output().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9), "the script was killed");
    // The next apply, sent at once, waits for the lock the detached apply holds.
    let next = host.run(GOOD);
    assert!(next.status.success(), "{}", text(&next.stderr));
    let applies = std::fs::read_to_string(host.dir.join("applies")).unwrap();
    assert_eq!(applies, "start\nend\n", "the switch completed, and nothing ran beside it");
    assert_eq!(host.read("current"), TARGET);
    assert!(text(&next.stdout).contains("already running"), "{}", text(&next.stdout));
}

/// fh killed by a signal (the OOM killer's SIGKILL on a small instance):
/// the agent would report the script's exit 137 as TimedOut, so the script
/// exits 1 with a verdict naming the signal and its likely cause.
#[test]
fn fh_killed_by_a_signal_fails_with_a_verdict_that_names_it() {
    for (signal, code, said) in [
        ("KILL", 137, "killed (SIGKILL), most often by the out-of-memory killer"),
        ("TERM", 143, "terminated (SIGTERM)"),
        ("SEGV", 139, "killed by signal 11 (SIGSEGV)"),
    ] {
        let host = Host::with_apply(&format!("kill -{signal} $$"));
        let out = host.run(GOOD);
        assert_eq!(out.status.code(), Some(1), "{signal}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        let verdict = stderr.lines().last().unwrap_or_default();
        assert!(
            verdict.starts_with(&format!("flakefleet: fh apply was {said}"))
                && verdict.contains(&format!("(exit {code})")),
            "{signal}: {stderr}"
        );
    }
}

/// Exit 194 from a script makes the SSM agent reboot the host and run the
/// script again: an fh that happens to exit 194 must not reboot the fleet.
#[test]
fn an_fh_exit_of_194_never_asks_the_agent_for_a_reboot() {
    let host = Host::with_apply("exit 194");
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("fh apply failed (exit 194)"));
}

/// Every attacker's insertion into a valid flakeref (shell metacharacters,
/// quotes, whitespace and line breaks, invisible and lookalike characters) at
/// the start, inside and at the end, fed to
/// the script directly, bypassing SSM's allowedPattern, as an old agent (the
/// text pasted) and a new one (the variable too): never more than one shell
/// word, never reaches fh, never writes a file. (A value holding a line that
/// reads exactly the here-document's delimiter is the one the text path
/// cannot stop by itself: docs/security.md says what stops it.)
#[test]
fn every_insertion_into_a_valid_flakeref_is_refused_by_the_script_in_both_modes() {
    let insertions = [
        ";",
        "$",
        "(",
        ")",
        "`",
        "|",
        "&",
        "<",
        ">",
        "'",
        "\"",
        "\\",
        " ",
        "\t",
        "\n",
        "\r",
        "*",
        "?",
        "[",
        "]",
        "{",
        "}",
        "~",
        "!",
        "%",
        "^",
        ",",
        ":",
        "@",
        "\u{200b}",
        "\u{202e}",
        "\u{ff03}",
        "\u{2215}",
        "\u{ff1d}",
        "$(touch pwned)",
        "${IFS}",
    ];
    let host = Host::new(true);
    let before = host.entries();
    let at = [0, GOOD.find('#').unwrap(), GOOD.len()];
    let inserted = insertions.iter().flat_map(|i| at.map(|p| format!("{}{i}{}", &GOOD[..p], &GOOD[p..])));
    // A leading '-' would read as an option to fh.
    for flakeref in inserted.chain([format!("-{GOOD}")]) {
        for agent in AGENTS {
            let out = host.run_as(agent, &flakeref);
            assert_eq!(out.status.code(), Some(2), "{agent:?} {flakeref:?}: {}", text(&out.stderr));
            assert_eq!(host.calls(), "", "{agent:?} {flakeref:?} reached fh");
            assert_eq!(host.entries(), before, "{agent:?} {flakeref:?} wrote a file");
        }
    }
}

/// The hostile-flakeref corpus (tests/corpus/flakeref.rs: 400 valid references
/// across the grammar, one attacker's mutation of each, and the edge cases
/// where engines differ or the text's line structure is attacked), fed to the
/// script directly, bypassing SendCommand's allowedPattern and maxChars, as an
/// old agent (the text pasted) and a new one (the variable set too): the
/// script accepts exactly what flakefleet's validator accepts. Every other
/// value exits 2 before it reaches fh or writes a file; an accepted one reaches
/// fh whole, as one argument.
#[test]
fn the_script_accepts_exactly_what_the_validator_accepts_across_the_hostile_corpus() {
    let corpus = corpus::engine_corpus();
    // Four hosts side by side: each run is a few processes that mostly wait.
    let counts: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let chunks = corpus.chunks(corpus.len().div_ceil(4));
        let runs: Vec<_> = chunks.map(|values| scope.spawn(move || feed_to_the_script(values))).collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let (accepted, refused) = counts.iter().fold((0, 0), |(a, r), (ca, cr)| (a + ca, r + cr));
    assert!(accepted >= 800 && refused >= 800, "accepted {accepted}, refused {refused}");
}

/// Runs the script with each of `values` as both agents; (accepted, refused).
fn feed_to_the_script(values: &[String]) -> (usize, usize) {
    let refusing = Host::new(true);
    let before = refusing.entries();
    let applying = Host::with_fh(&format!(
        "case \"$1:$#\" in\n  resolve:2) echo {TARGET} ;;\n  apply:4) echo {TARGET} > \"{{DIR}}/current\" ;;\n  *) echo \"$# arguments\" >> \"{{DIR}}/calls\"; exit 9 ;;\nesac\n"
    ));
    let (mut accepted, mut refused) = (0, 0);
    for value in values {
        let valid = Flakeref::parse(value).is_ok();
        for agent in AGENTS {
            // No environment variable can hold a NUL, so no agent sets one.
            if value.contains('\0') && matches!(agent, Agent::New) {
                continue;
            }
            if valid {
                std::fs::write(applying.dir.join("calls"), "").unwrap();
                let out = applying.run_as(agent, value);
                assert!(out.status.success(), "{agent:?} {value:?}: {}", text(&out.stderr));
                let calls = applying.calls();
                let resolve = format!("fh resolve {value}\n");
                assert!(
                    calls == resolve || calls == format!("{resolve}fh apply nixos {value} switch\n"),
                    "{agent:?} {value:?}: {calls}"
                );
                accepted += 1;
            } else {
                let out = refusing.run_as(agent, value);
                assert_eq!(out.status.code(), Some(2), "{agent:?} {value:?}: {}", text(&out.stderr));
                assert_eq!(refusing.calls(), "", "{agent:?} {value:?} reached fh");
                assert_eq!(refusing.entries(), before, "{agent:?} {value:?} wrote a file");
                refused += 1;
            }
        }
    }
    (accepted, refused)
}

/// Health checks the release declares run after activation: passing ones let
/// the apply succeed and say so.
#[test]
fn health_checks_that_pass_let_the_apply_succeed() {
    for agent in AGENTS {
        let host = Host::new(true);
        host.declare_checks("", &[("web", "echo 'HTTP 200'"), ("db", "true")]);
        let out = host.run_as(agent, GOOD);
        assert!(out.status.success(), "{agent:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("health checks passed on attempt 1 of 5: db web"), "{}", text(&out.stdout));
        assert_eq!(host.read("current"), TARGET);
    }
}

/// A check that never passes fails the apply with its name and last answer,
/// and the host switches itself back to what it ran, its boot entry too.
#[test]
fn a_check_that_never_passes_fails_the_apply_and_the_host_switches_itself_back() {
    let host = Host::new(true);
    host.declare_checks(
        "attempts=3\ninterval_seconds=0\n",
        &[("db", "true"), ("web", "echo 'connecting...'; echo 'HTTP 500 from /health'; exit 1")],
    );
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "flakefleet: health check web failed 3 times; its last answer: HTTP 500 from /health; switched back to {OLD}"
        )),
        "{stderr}"
    );
    assert_eq!((host.read("current"), host.read("profile")), (OLD.to_owned(), OLD.to_owned()), "back, boot entry too");

    // A check that hangs is cut off at the timeout.
    let host = Host::new(true);
    host.declare_checks("attempts=1\ntimeout_seconds=1\n", &[("web", "sleep 30")]);
    let out = host.run(GOOD);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("health check web failed 1 times; its last answer: no answer within 1s"));
    assert_eq!(host.read("current"), OLD);
}

#[test]
fn a_check_that_passes_on_its_third_try_passes() {
    let host = Host::new(true);
    let flaky = "n=$(( $(cat {DIR}/tries 2>/dev/null || echo 0) + 1 )); echo $n > {DIR}/tries\n\
                 if [ $n -lt 3 ]; then echo 'HTTP 503'; exit 1; fi; echo 'HTTP 200'";
    host.declare_checks("attempts=5\ninterval_seconds=0\n", &[("web", flaky)]);
    let out = host.run(GOOD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("health checks passed on attempt 3 of 5: web"), "{}", text(&out.stdout));
    assert_eq!(host.read("tries"), "3");
    assert_eq!(host.read("current"), TARGET);
}

/// The bake's `check` action runs the checks of the release the host runs,
/// and changes nothing: a host on another system fails it.
#[test]
fn the_check_action_runs_the_checks_again_and_changes_nothing() {
    let check = |host: &Host| {
        host.agent_command(GOOD, "check").env("SSM_flakeref", GOOD).env("SSM_action", "check").output().unwrap()
    };
    let host = Host::new(true);
    host.declare_checks("attempts=1\n", &[("web", "echo 'HTTP 200'")]);
    let out = check(&host);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains(&format!("not running this release: found {OLD}, expected {TARGET}")));
    std::fs::write(host.dir.join("current"), TARGET).unwrap();
    let out = check(&host);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("is healthy"), "{}", text(&out.stdout));
    host.declare_checks("attempts=1\n", &[("web", "echo 'HTTP 500'; exit 1")]);
    let out = check(&host);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("health check web failed 1 times; its last answer: HTTP 500"));
    assert_eq!(host.calls(), format!("fh resolve {GOOD}\n").repeat(3), "never applied");
    assert_eq!(host.read("current"), TARGET, "nothing switched");
}
