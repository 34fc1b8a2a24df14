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
url=http://127.0.0.1:9000/lambda-url/flakefleet
run=.dev/run-$MOTO_PORT
py=.dev/venv/bin/python

cleanup() {
  [ -n "${watch_pid:-}" ] && kill -- "-$watch_pid" 2>/dev/null || true
  dev/local-aws.sh stop
}
if [ "${KEEP_RUNNING:-0}" != 1 ]; then trap cleanup EXIT; fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
call() { # method path [body]
  curl -sS -X "$1" -H 'content-type: application/json' ${3:+--data "$3"} "$url$2"
}
reconcile() { # what EventBridge Scheduler (every minute) and SSM status events do in AWS
  for _ in $(seq 1 30); do
    answer=$(cargo lambda invoke flakefleet --data-file events/eventbridge-scheduled.json)
    outcome=$(echo "$answer" | $py -c 'import json,sys; print(json.load(sys.stdin)["reconcile"]["outcome"])')
    case "$outcome" in idle|halted) echo "reconcile: $outcome (the fleet is at rest)"; return ;; esac
    echo "$answer" | $py dev/show.py
  done
}

step "Starting the local AWS (moto + SSM simulator)"
dev/local-aws.sh start
curl -fsS -X POST "http://127.0.0.1:$MOTO_PORT/moto-api/reset" >/dev/null
curl -fsS -X POST "http://127.0.0.1:$SSM_SIM_PORT/_sim/reset" >/dev/null

step "Creating the releases table and a fleet of 3 instances tagged Name=FlakeHubDemo"
$py dev/fleet.py table "$FLAKEFLEET_TABLE"
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
call GET /healthz; echo

good='AcmeCorp/infra/=0.1.41+rev-1111111#nixosConfigurations.web'
bad='AcmeCorp/infra/=0.1.42+rev-2222222#nixosConfigurations.web'
fixed='AcmeCorp/infra/=0.1.43+rev-3333333#nixosConfigurations.web'

step "POST /releases: deploy $good (staged: a canary, then waves of 25%)"
call POST /releases "{\"flakeref\": \"$good\", \"revision\": \"1111111\", \"idempotency_key\": \"demo-1\"}" | $py dev/show.py
step "Reconcile until the rollout is done: each wave is judged from ListCommandInvocations"
reconcile

step "Scripting the SSM simulator: release 0.1.42 fails to activate on every host"
for id in $instances; do
  $py dev/fleet.py outcome "{\"instance_id\": \"$id\", \"flakeref_contains\": \"0.1.42\", \"outcome\": \"failed\", \"exit_code\": 1, \"stderr\": \"flakefleet: activation did not take\"}" >/dev/null
done

step "POST /releases: deploy $bad"
call POST /releases "{\"flakeref\": \"$bad\", \"revision\": \"2222222\"}" | $py dev/show.py
step "A deploy while that one is in flight is refused"
call POST /releases "{\"flakeref\": \"$good\"}" | $py dev/show.py
step "Reconcile: the canary fails, so flakefleet rolls back on its own"
reconcile

step "POST /releases: deploy the fix, $fixed"
call POST /releases "{\"flakeref\": \"$fixed\", \"revision\": \"3333333\"}" | $py dev/show.py
reconcile

step "POST /rollback with an empty body: back to the last release that succeeded before the current one"
call POST /rollback | $py dev/show.py
reconcile

step "GET /fleet"
call GET /fleet | $py dev/show.py

step "GET /releases: the history, newest first (no record is ever rewritten by a rollback)"
call GET "/releases?limit=10" | $py dev/show.py

victim=$(echo "$instances" | tail -n 1)
step "An instance dies"
$py dev/fleet.py terminate "$victim"
step "POST /reconcile: the fleet is kept at 3; the replacement boots on exactly the current good release"
call POST /reconcile | $py dev/show.py
reconcile

step "Done. The Lambda's log is in $run/lambda.log"
