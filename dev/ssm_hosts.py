"""Fake NixOS hosts on which the SSM simulator runs the apply document's own
script, as an agent would: the script's text from template.yaml with the
parameters pasted in (every agent does) written to a file of its own and run
as `sh -c FILE ""`, `SSM_<name>` set too from agent 3.3.2746.0 on, the
agent's minimal PATH, in a mount namespace of its own where the host's `fh`, `readlink`, `systemctl` and `determinate-nixd`
sit in `/run/current-system/sw/bin` and `/var/log`, `/var/lib` are the
host's. Needs root (`unshare -m`), as CI and the demo run.

A host is scripted with `POST /_sim/hosts` (see dev/README.md): how its
activation behaves (`works`, `fails` the way fh does it, exiting 0 with the
old system still running, or `errors`, fh exiting 1), for every flakeref or
for those containing a given part, what fh prints when it errors, how long an apply
takes, how many lines of copy progress fh prints, and which units are failed
before and after an apply.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading

# The first agent version that sets SSM_<name> for interpolationType ENV_VAR.
ENV_VAR_AGENT = (3, 3, 2746, 0)
# What the agent's service has on PATH on a NixOS host without the fleet-host
# module: nothing of the system profile.
AGENT_PATH = "/usr/bin:/bin"
ACTIVATIONS = ("works", "fails", "errors")
STDOUT_MAX, STDERR_MAX = 24000, 8000
# aws:runShellScript: exit 194 asks the agent to reboot and run the script again.
REBOOT_AND_RERUN = 194

# The fake host's namespace, shared with the document's tests.
NAMESPACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host-namespace.sh")

FH = r"""#!/usr/bin/env bash
h='{host}'
echo "fh $*" >> "$h/calls"
path_for() {{ printf '/nix/store/%s-nixos-system' "$(printf '%s' "$1" | sha256sum | cut -c 1-32)"; }}
# What a setting is for this flakeref: its `_for` entry that matches, else its default.
setting_for() {{
  local value part outcome
  value="$(cat "$h/$1")"
  while read -r part outcome; do
    case "$2" in *"$part"*) value="$outcome"; break ;; esac
  done < "$h/$1_for"
  echo "$value"
}}
case "$1" in
  resolve) path_for "$2"; echo ;;
  apply)
    target="$(path_for "$3")"
    for i in $(seq 1 "$(cat "$h/noise")"); do
      echo "copying path '/nix/store/$(printf '%032d' "$i")-dependency-$i' from 'https://cache.flakehub.com'..."
    done
    sleep "$(cat "$h/apply_seconds")"
    activation="$(setting_for activation "$3")"
    if [ "$activation" = errors ]; then
      if [ -s "$h/fh_error" ]; then cat "$h/fh_error" >&2; else echo "error: cannot download $target: HTTP error 403" >&2; fi
      exit 1
    fi
    # The system is in the store now, with the health checks its configuration declares.
    fake-store-add "$target" "$(setting_for health "$3")"
    echo "$target" > "$h/profile"
    case "$activation" in
      works) "$target/bin/switch-to-configuration" switch ;;
      fails) echo "warning: error(s) occurred while switching to the new configuration" ;;
    esac ;;
esac
"""

# Puts a system in the fake store: its switch-to-configuration, and a health
# check `web` that passes, fails, or degrades (passes its first run, the
# apply's, and fails after: a bake's check), none for "none"; tried twice at once.
SYSTEM = r"""#!/usr/bin/env bash
h='{host}'
path="$1"
mkdir -p "$path/bin"
printf '#!/usr/bin/env bash\necho "activating the configuration..."\necho %s > %s/current\ncp %s/failed_after %s/failed\n' \
  "$path" "$h" "$h" "$h" > "$path/bin/switch-to-configuration"
chmod +x "$path/bin/switch-to-configuration"
rm -rf "$path/etc"
rm -f "$h/runs-$(basename "$path")"
case "$2" in
  passes|fails|degrades)
    mkdir -p "$path/etc/flakefleet/health-checks"
    printf 'attempts=2\ninterval_seconds=0\ntimeout_seconds=5\n' > "$path/etc/flakefleet/health.conf"
    fail='echo "HTTP 500 from http://127.0.0.1:8080/health"; exit 1'
    case "$2" in
      passes) answer='echo "HTTP 200"' ;;
      fails) answer="$fail" ;;
      # Passes its first run (the apply's), fails every one after (a bake's).
      degrades) answer="runs=\$(( \$(cat '$h/runs-$(basename "$path")' 2>/dev/null || echo 0) + 1 )); echo \$runs > '$h/runs-$(basename "$path")'; if [ \$runs -le 1 ]; then echo 'HTTP 200'; else $fail; fi" ;;
    esac
    printf '#!/usr/bin/env bash\n%s\n' "$answer" > "$path/etc/flakefleet/health-checks/web"
    chmod +x "$path/etc/flakefleet/health-checks/web" ;;
esac
"""

HEALTH = ("none", "passes", "fails", "degrades")


def store_path(flakeref):
    """The system a fake host's fh resolves a flakeref to."""
    return f"/nix/store/{hashlib.sha256(flakeref.encode()).hexdigest()[:32]}-nixos-system"


def agent_sets_variables(version):
    try:
        return tuple(int(p) for p in version.split(".")) >= ENV_VAR_AGENT
    except ValueError:
        return False


class Run:
    """One run of a command on one host, in its namespace; `done` once it
    exited. An agent's run of the document is run again when it exits 194.

    As the agent runs a script (amazon-ssm-agent, agent/executers:
    executers_unix.go starts it with `Setpgid: true`, and both a cancel and
    the step's `timeoutSeconds` end it with `syscall.Kill(-pid, SIGKILL)`):
    in a process group of its own, killed whole. `ended_by` says which
    ("cancel" or "timeout"); anything the script started in a session of its
    own (setsid) is not in the group and runs on."""

    def __init__(self, host_dir, command, env, agent=True, timeout_seconds=None, on_done=None):
        self.done = False
        self.exit_code = None
        self.stdout = self.stderr = ""
        # The whole output, as the agent uploads it to CloudWatch Logs (SSM keeps the first characters only).
        self.full_stdout = self.full_stderr = ""
        self.on_done = on_done
        self.reruns = 0
        self.agent = agent
        self.ended_by = None
        self.process = None
        self.lock = threading.Lock()
        self._start(host_dir, command, env)
        if timeout_seconds is not None:
            timer = threading.Timer(timeout_seconds, self.kill, args=("timeout",))
            timer.daemon = True
            timer.start()

    def kill(self, why):
        """SIGKILL to the script's process group, as the agent's cancel and timeout do."""
        with self.lock:
            if self.done or self.ended_by is not None or self.process is None:
                return
            self.ended_by = why
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _start(self, host_dir, command, env):
        process = subprocess.Popen(
            ["unshare", "-m", "bash", NAMESPACE, host_dir, *command],
            env=env, cwd=host_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            process_group=0,
        )
        self.process = process

        def wait():
            out, err = process.communicate()
            if self.agent and process.returncode == REBOOT_AND_RERUN and self.reruns < 3:
                # The agent reboots the host and runs the script again.
                self.reruns += 1
                self._start(host_dir, command, env)
                return
            self.full_stdout, self.full_stderr = out.decode(errors="replace"), err.decode(errors="replace")
            self.stdout = self.full_stdout[:STDOUT_MAX]
            self.stderr = self.full_stderr[:STDERR_MAX]
            self.exit_code = process.returncode
            if self.on_done is not None:
                try:
                    self.on_done(self)
                except Exception as e:  # noqa: BLE001 - the agent's upload never fails the command
                    print(f"output upload failed: {e!r}", flush=True)
            self.done = True

        threading.Thread(target=wait, daemon=True).start()


class FakeHosts:
    def __init__(self, root):
        self.root = root
        self.hosts = {}  # instance id -> host dir
        self.boots = {}  # instance id -> the Run of its user data
        # Instance id -> the IAM policy its agent's uploads are judged by
        # (None: the template's FleetHostPolicy), and what each upload did.
        self.policies = {}
        self.uploads = {}
        # What instances that register by themselves (launched ones) become:
        # `POST /_sim/hosts {"launched": true, ...}`; None keeps them on the rules.
        self.launched = None
        self.lock = threading.Lock()

    def configure(self, body):
        """`POST /_sim/hosts`: makes these instances fake hosts (or changes them);
        with `"launched": true`, every instance that registers by itself from
        now on becomes one, booting its user data. Answers the ids to boot."""
        if body.get("launched") is True:
            settings = {k: v for k, v in body.items() if k != "launched"}
            self._check(dict(settings, instance_ids=["i-0"]))
            with self.lock:
                self.launched = settings
            return []
        ids = self._check(body)
        self._apply(ids, body)
        return ids

    def _check(self, body):
        ids = body.get("instance_ids", [body["instance_id"]] if "instance_id" in body else None)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.startswith("i-") for i in ids):
            raise ValueError("give instance_id or instance_ids, each an instance id")
        if not isinstance(body.get("boot", False), bool):
            raise ValueError("boot is true or false")
        activation = body.get("activation", "works")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(ACTIVATIONS)}")
        seconds = body.get("apply_seconds", 0)
        noise = body.get("noise_lines", 20)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 600:
            raise ValueError("apply_seconds must be a number from 0 to 600")
        if not isinstance(noise, int) or isinstance(noise, bool) or not 0 <= noise <= 100000:
            raise ValueError("noise_lines must be a whole number from 0 to 100000")
        if body.get("health", "none") not in HEALTH:
            raise ValueError(f"health must be one of {list(HEALTH)}")
        for key, allowed in (("activation_for", ACTIVATIONS), ("health_for", HEALTH)):
            value = body.get(key, {})
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and re.fullmatch(r"[\w./=#+-]+", k) and v in allowed for k, v in value.items()
            ):
                raise ValueError(f"{key} maps parts of a flakeref to one of {list(allowed)}")
        policy = body.get("iam_policy")
        if policy is not None and not (isinstance(policy, dict) and isinstance(policy.get("Statement"), list)):
            raise ValueError("iam_policy is an IAM policy document (with a Statement list), or null for the template's")
        fh_error = body.get("fh_error", "")
        if not isinstance(fh_error, str) or len(fh_error) > 2000 or "\0" in fh_error:
            raise ValueError("fh_error must be text of at most 2000 characters")
        units = {k: body.get(k, []) for k in ("failed_units_before", "failed_units_after")}
        for key, value in units.items():
            if not isinstance(value, list) or not all(isinstance(u, str) and re.fullmatch(r"[\w@.-]+", u) for u in value):
                raise ValueError(f"{key} must be a list of unit names")
        if os.geteuid() != 0:
            raise ValueError("fake hosts run the document in a mount namespace (unshare -m): run as root")
        return ids

    def _apply(self, ids, body):
        activation = body.get("activation", "works")
        seconds = body.get("apply_seconds", 0)
        noise = body.get("noise_lines", 20)
        fh_error = body.get("fh_error", "")
        units = {k: body.get(k, []) for k in ("failed_units_before", "failed_units_after")}
        with self.lock:
            for instance_id in ids:
                host = self.hosts.get(instance_id) or self._create(instance_id)
                if "iam_policy" in body:
                    self.policies[instance_id] = body["iam_policy"]
                self._write(host, "activation", activation)
                self._write(host, "fh_error", fh_error)
                self._write(host, "health", body.get("health", "none"))
                for key in ("activation_for", "health_for"):
                    self._write(host, key, "".join(f"{k} {v}\n" for k, v in body.get(key, {}).items()))
                self._write(host, "apply_seconds", str(seconds))
                self._write(host, "noise", str(noise))
                self._write(host, "failed_after", "".join(f"{u} loaded failed failed {u}\n" for u in units["failed_units_after"]))
                if "failed_units_before" in body or not os.path.exists(os.path.join(host, "failed")):
                    self._write(host, "failed", "".join(f"{u} loaded failed failed {u}\n" for u in units["failed_units_before"]))
        return len(ids)

    def _create(self, instance_id):
        host = os.path.join(self.root, instance_id)
        shutil.rmtree(host, ignore_errors=True)
        for sub in ("bin", "var-log", "var-lib"):
            os.makedirs(os.path.join(host, sub))
        initial = store_path("initial")
        self._write(host, "current", initial)
        self._write(host, "profile", initial)
        links = {"/run/current-system": "current", "/nix/var/nix/profiles/system": "profile"}
        readlink = "".join(f"  {path}) cat '{host}/{name}' ;;\n" for path, name in links.items())
        tools = {
            "fh": FH.format(host=host),
            "fake-store-add": SYSTEM.format(host=host),
            "readlink": f"#!/usr/bin/env bash\ncase \"$2\" in\n{readlink}  *) exec /usr/bin/readlink \"$@\" ;;\nesac\n",
            "nix-env": f"#!/usr/bin/env bash\n[ \"$1 $2 $3\" = '-p /nix/var/nix/profiles/system --set' ] && echo \"$4\" > '{host}/profile'\n",
            "systemctl": f"#!/usr/bin/env bash\ncat '{host}/failed'\n",
            "determinate-nixd": f"#!/usr/bin/env bash\necho \"determinate-nixd $*\" >> '{host}/calls'\n",
        }
        for name, text in tools.items():
            path = os.path.join(host, "bin", name)
            self._write(host, os.path.join("bin", name), text)
            os.chmod(path, 0o755)
        os.makedirs(os.path.join(host, "store", os.path.basename(initial), "bin"))
        path = os.path.join(host, "store", os.path.basename(initial), "bin", "switch-to-configuration")
        self._write(host, path, f"#!/usr/bin/env bash\necho {initial} > '{host}/current'\n")
        os.chmod(path, 0o755)
        self.hosts[instance_id] = host
        return host

    @staticmethod
    def _write(host, name, text):
        with open(os.path.join(host, name), "w", encoding="utf-8") as f:
            f.write(text)

    def launch(self, instance_id):
        """An instance registered by itself: a fake host with the `launched`
        settings, if any and if it is not one yet. Answers whether it should boot."""
        with self.lock:
            settings = self.launched
            if settings is None or instance_id in self.hosts:
                return False
        self._apply([instance_id], settings)
        return True

    def boot(self, instance_id, user_data):
        """Runs the instance's user data as NixOS's amazon-init does at boot:
        as root, a `#!` script run as a file (`bash FILE`), beside the agent."""
        with self.lock:
            host = self.hosts[instance_id]
        path = os.path.join(host, "user-data")
        with open(path, "wb") as f:
            f.write(user_data)
        run = Run(host, ["bash", path], {"PATH": AGENT_PATH}, agent=False)
        with self.lock:
            self.boots[instance_id] = run

    def has(self, instance_id):
        with self.lock:
            return instance_id in self.hosts

    def view(self, instance_id):
        """What a host runs, and what its fh was asked: for tests."""
        with self.lock:
            host = self.hosts.get(instance_id)
        if host is None:
            return None
        read = lambda name: open(os.path.join(host, name)).read() if os.path.exists(os.path.join(host, name)) else ""
        boot = self.boots.get(instance_id)
        booted = None if boot is None else {"done": boot.done, "exit_code": boot.exit_code,
                                            "output": boot.stdout + boot.stderr}
        with self.lock:
            uploads = dict(self.uploads.get(instance_id, {}))
        return {"instance_id": instance_id, "current": read("current").strip(), "profile": read("profile").strip(),
                "calls": read("calls").splitlines(),
                "boot": booted, "uploads": uploads}

    def policy(self, instance_id):
        with self.lock:
            return self.policies.get(instance_id)

    def record_upload(self, instance_id, command_id, result):
        with self.lock:
            self.uploads.setdefault(instance_id, {})[command_id] = result

    def run(self, instance_id, command_id, run_command, parameters, agent_version, timeout_seconds=None,
            on_done=None):
        """Starts the document's script on the host, as its agent would: the
        runCommand lines, parameters pasted in, joined and written to
        `_script.sh` in the command's orchestration directory (mode 0750)."""
        text = "\n".join(run_command) + "\n"
        text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: " ".join(parameters.get(m.group(1), [])), text)
        host = self.hosts[instance_id]
        directory = os.path.join(host, "orchestration", command_id, "awsrunShellScript")
        os.makedirs(directory, exist_ok=True)
        script_file = os.path.join(directory, "_script.sh")
        with open(script_file, "w") as f:
            f.write(text)
        os.chmod(script_file, 0o750)
        env = {"PATH": AGENT_PATH}
        if agent_sets_variables(agent_version):
            env.update({f"SSM_{name}": " ".join(values) for name, values in parameters.items()})
        # As the agent's runShellScript plugin runs it (agent/plugins/runscript).
        return Run(host, ["sh", "-c", script_file, ""], env, timeout_seconds=timeout_seconds, on_done=on_done)

    def reset(self):
        with self.lock:
            for host in self.hosts.values():
                shutil.rmtree(host, ignore_errors=True)
            self.hosts.clear()
            self.boots.clear()
            self.policies.clear()
            self.uploads.clear()
            self.launched = None
