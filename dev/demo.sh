#!/usr/bin/env bash
# The main job, locally: start the local AWS, run the Lambda under
# `cargo lambda watch`, create a fleet of three instances, then deploy a good
# release, deploy a bad one (rolled back on its own), deploy a fix, roll back,
# list what happened, and replace an instance that died.
# Set KEEP_RUNNING=1 to leave everything up afterwards (stop with `make local-aws-stop`).
set -euo pipefail
cd "$(dirname "$0")/.."

dev/setup.sh
export PATH="$PWD/.dev/venv/bin:$PATH"
set -a; . dev/local.env; set +a
export MOTO_PORT=5055 SSM_SIM_PORT=5056
url=http://127.0.0.1:9000/lambda-url/flakefleet-lambda
run=.dev/run-$MOTO_PORT
py=.dev/venv/bin/python

cleanup() {
  [ -n "${watch_pid:-}" ] && kill -- "-$watch_pid" 2>/dev/null || true
  dev/local-aws.sh stop
}
if [ "${KEEP_RUNNING:-0}" != 1 ]; then trap cleanup EXIT; fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting the local AWS (moto + SSM simulator)"
dev/local-aws.sh start
curl -fsS -X POST "http://127.0.0.1:$MOTO_PORT/moto-api/reset" >/dev/null
curl -fsS -X POST "http://127.0.0.1:$SSM_SIM_PORT/_sim/reset" >/dev/null

step "Creating the releases table (its stream carried by the template's notices pipe to the bus $FLAKEFLEET_TABLE-notices) and a fleet of 3 instances tagged Name=FlakeHubDemo"
$py dev/fleet.py table "$FLAKEFLEET_TABLE"
notices_queue=$($py dev/fleet.py listen "$FLAKEFLEET_TABLE-notices")
instances=$($py dev/fleet.py instances 3 Name=FlakeHubDemo)
echo $instances

step "Starting the Lambda under cargo lambda watch (the first build takes a few minutes)"
set -m
cargo lambda watch --env-file dev/local.env --ignore-changes >"$run/lambda.log" 2>&1 &
watch_pid=$!
set +m
for _ in $(seq 1 900); do
  if curl -fs -o /dev/null "$url/healthz"; then break; fi
  if ! kill -0 "$watch_pid" 2>/dev/null; then echo "cargo lambda watch stopped; see $run/lambda.log" >&2; exit 1; fi
  sleep 1
done
curl -fsS "$url/healthz"; echo

step "SSM's status-change events go to the Lambda, as the template's EventBridge rule sends them in AWS"
curl -fsS -X POST "http://127.0.0.1:$SSM_SIM_PORT/_sim/events" \
  -d '{"invoke_url": "http://127.0.0.1:9000/2015-03-31/functions/flakefleet-lambda/invocations"}' >/dev/null
echo "each command that ends invokes the Lambda once; the agents of the 3 instances register a few seconds after launch:"
$py dev/fleet.py wait-agents $instances
# As root, the hosts run the apply document's own script (in a mount namespace
# each); elsewhere the simulator's rules decide each invocation.
if [ "$(id -u)" = 0 ]; then
  hosts=script
  step "The 3 instances are fake NixOS hosts: the simulator runs the document's own script on them (the last one's agent is older than 3.3.2746.0: the parameter comes as pasted text)"
  $py dev/fleet.py host works $instances
  $py dev/fleet.py agent-version 3.3.2746.0 $(echo "$instances" | head -n 2)
  $py dev/fleet.py agent-version 3.3.2299.0 $(echo "$instances" | tail -n 1)
  # Instances flakefleet launches boot as fake hosts too: their user data runs
  # as NixOS's amazon-init runs it, beside the agent.
  $py dev/fleet.py launched works
else
  hosts=rules
fi

good='AcmeCorp/infra/=0.1.41+rev-1111111#nixosConfigurations.web'
bad='AcmeCorp/infra/=0.1.42+rev-2222222#nixosConfigurations.web'
fixed='AcmeCorp/infra/=0.1.43+rev-3333333#nixosConfigurations.web'

# The operator CLI, signing with the local credentials from dev/local.env.
# --drive runs a reconcile on each poll, as EventBridge does every minute in AWS.
cargo build --quiet --bin flakefleet
export FLAKEFLEET_URL=$url
cli() { target/debug/flakefleet "$@"; }

step "flakefleet deploy $good --wait (staged: a canary, then waves)"
cli deploy "$good" --revision 1111111 --idempotency-key demo-1 --wait --drive --interval 1

if [ "$hosts" = script ]; then
  step "The hosts' next activation fails the way fh does it (exit 0, the old system still running): the document notices"
  $py dev/fleet.py host fails $instances
else
  step "Scripting the SSM simulator: release 0.1.42 fails to activate on every host"
  for id in $instances; do
    $py dev/fleet.py outcome "{\"instance_id\": \"$id\", \"flakeref_contains\": \"0.1.42\", \"outcome\": \"failed\", \"exit_code\": 1, \"stderr\": \"flakefleet: activation did not take\"}" >/dev/null
  done
fi

step "flakefleet deploy $bad (no --wait)"
bad_id=$(cli --json deploy "$bad" --revision 2222222 | $py -c 'import json,sys; print(json.load(sys.stdin)["release"]["id"])')
echo "release $bad_id recorded; its canary is running"
step "Another deploy while it is in flight is refused"
cli deploy "$good" || echo "(exit $?)"
step "Waiting on $bad_id: the canary fails, and flakefleet rolls back on its own"
set +e
cli show "$bad_id" >/dev/null
cli reconcile
cli show "$bad_id"
set -e
step "flakefleet fleet: the automatic rollback is the desired release now"
cli reconcile >/dev/null
cli fleet

step "A flake that is not on FLAKEFLEET_ALLOWED_FLAKES is refused (403, nothing recorded)"
cli deploy 'attacker/evil/=1.0.0#nixosConfigurations.x' || echo "(exit $?)"

if [ "$hosts" = script ]; then
  step "The hosts' activations work again"
  $py dev/fleet.py host works $instances
fi

step "flakefleet deploy the fix, $fixed --wait"
cli deploy "$fixed" --revision 3333333 --wait --drive --interval 1

step "flakefleet rollback --wait: back to the last release that succeeded before the current one"
cli rollback --wait --drive --interval 1

step "flakefleet releases: the history, newest first (no record is ever rewritten by a rollback)"
cli releases

if [ "$hosts" = script ]; then
  unhealthy='AcmeCorp/infra/=0.1.44+rev-4444444#nixosConfigurations.web'
  step "Releases declare a health check (flakefleet.healthChecks.web in the fleet-host module); 0.1.44 activates, but its check answers 500"
  $py dev/fleet.py unhealthy 0.1.44 $instances
  step "flakefleet deploy $unhealthy --wait: the canary's check fails, the host switches itself back, and flakefleet rolls back"
  set +e
  # --json --wait streams one JSON object a line: progress lines, then the release.
  unhealthy_id=$(cli --json deploy "$unhealthy" --revision 4444444 --wait --drive --interval 1 |
    $py -c 'import json,sys; print([d for d in map(json.loads, filter(str.strip, sys.stdin)) if "release" in d][-1]["release"]["id"])')
  set -e
  [ -n "$unhealthy_id" ] || { echo "the unhealthy deploy answered no release id" >&2; exit 1; }
  cli show "$unhealthy_id"
  cli reconcile >/dev/null
fi

victim=$(echo "$instances" | tail -n 1)
step "An instance dies"
$py dev/fleet.py terminate "$victim"
step "flakefleet reconcile: the fleet is kept at 3; the replacement boots on exactly the current good release"
out="$(cli reconcile)"
echo "$out"
repair="$(echo "$out" | sed -n 's/^release: \([0-9A-Z]*\) repair .*/\1/p')"
step "flakefleet show $repair: the new host counts once SSM reports the release applied on it (its agent registers, then an apply over SSM, a no-op after its user data)"
for _ in $(seq 1 60); do
  status="$(cli show "$repair" | sed -n 's/^status: *//p')"
  if [ "$status" != in_progress ]; then break; fi
  cli reconcile >/dev/null
  sleep 1
done
cli show "$repair"
if [ "$hosts" = script ]; then
  replacement="$(cli --json show "$repair" | $py -c 'import json,sys; print(json.load(sys.stdin)["release"]["launches"][0]["instance_id"])')"
  step "The replacement's first boot: its user data applied the release (/var/log/flakefleet/user-data.log on the host)"
  curl -fsS "http://127.0.0.1:$SSM_SIM_PORT/_sim/hosts/$replacement" | $py -c 'import json,sys; boot = json.load(sys.stdin)["boot"]; print("\n".join(l for l in boot["output"].splitlines() if l.startswith("flakefleet:")), f"(exit {boot['"'"'exit_code'"'"']})")'
fi
cli fleet

step "The release notices on the bus (Release Status Change, source flakefleet), carried from the table's stream"
$py dev/fleet.py heard "$notices_queue" | $py -c 'import json,sys; [print(e["detail"]["event_id"], e["detail"]["kind"], e["detail"]["previous_status"], "->", e["detail"]["status"]) for e in sorted(json.load(sys.stdin), key=lambda e: (e["detail"]["id"], e["detail"]["version"]))]'

step "Done. The Lambda's log is in $run/lambda.log"
if [ "${KEEP_RUNNING:-0}" = 1 ]; then
  step "Still running. To see the fleet in a browser (prints a one-time link; Ctrl-C stops it):"
  echo "  AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \\"
  echo "    target/debug/flakefleet --url $url --region $AWS_REGION ui --allow-writes"
  echo "Stop the local AWS with: make local-aws-stop"
fi
