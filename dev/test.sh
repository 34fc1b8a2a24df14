#!/usr/bin/env bash
# The whole test suite, from a clean checkout: installs the pinned tools,
# starts a local AWS of its own (ports 5155/5156, apart from the demo's) and
# the Lambda under `cargo lambda watch` five times (port 9155 for the CLI's
# tests, 9157 for the one SSM's status events drive, 9158 and 9159 for the
# GitHub Action's, the second in github-oidc mode, 9161 for the status
# page's, which `flakefleet ui` proxies to a headless Chromium), runs
# fmt, clippy and every Rust test, builds the release bootstrap, lints the
# template (cfn-lint and checkov, before and after the SAM transform) and the
# workflows, and parses the flake.
set -euo pipefail
cd "$(dirname "$0")/.."

export MOTO_PORT=${TEST_MOTO_PORT:-5155} SSM_SIM_PORT=${TEST_SSM_SIM_PORT:-5156}
# The local pipes carry notices when a test drains them (fleet.py heard): a
# poll four times a second of every test table's stream would take a share of
# the two cores from the whole run, since moto and boto3 are Python.
export SSM_SIM_PIPES_INTERVAL=${SSM_SIM_PIPES_INTERVAL:-0}
run=.dev/run-$MOTO_PORT
mkdir -p "$run"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  dev/local-aws.sh stop
}
trap cleanup EXIT

# The installs are CPU-bound on one core each (pip unpacking and compiling):
# checkov's venv, needed only by the lints at the end, installs beside the
# rest; the release build starts as soon as cargo-lambda is there.
set -m
(dev/setup.sh checkov >"$run/setup-checkov.log" 2>&1) &
checkov_pid=$!
pids+=("$checkov_pid")
set +m
dev/setup.sh python

# The release build is long and mostly serial at its end (fat LTO, one codegen
# unit), so it runs beside the debug builds, in a target directory of its own.
# It builds for this machine (x86_64): cross-building the arm64 binary that
# ships took 24 minutes beside the tests here, too close to CI's 30-minute
# budget; `make bench` builds and weighs it (dev/aarch64-target.sh).
echo "== cargo lambda build --release (x86_64), in the background"
set -m
(PATH="$PWD/.dev/venv/bin:$PATH" CARGO_TARGET_DIR=target/lambda-release \
  cargo lambda build --release --locked --no-default-features --bin flakefleet-lambda >"$run/release-build.log" 2>&1) &
release_pid=$!
pids+=("$release_pid")
set +m
dev/setup.sh apt

dev/local-aws.sh start
export FLAKEFLEET_TEST_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
export FLAKEFLEET_TEST_SSM_URL="http://127.0.0.1:$SSM_SIM_PORT"
# The SDK must never reach for real credentials or IMDS in tests.
export AWS_EC2_METADATA_DISABLED=true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

# Starts the Lambda under cargo lambda watch with ENV_FILE on PORT; answers
# once it answers /healthz (401 in github-oidc mode, which asks a token of every route).
start_lambda() {
  local env_file=$1 port=$2 log=$run/lambda-$2.log
  set -m
  PATH="$PWD/.dev/venv/bin:$PATH" cargo lambda watch --env-file "$env_file" --ignore-changes \
    --invoke-port "$port" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  set +m
  for _ in $(seq 1 600); do
    case $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/lambda-url/flakefleet-lambda/healthz") in
      200 | 401) return ;;
    esac
    if ! kill -0 "$pid" 2>/dev/null; then echo "cargo lambda watch stopped; its log:" >&2; cat "$log" >&2; exit 1; fi
    sleep 1
  done
}

# The same over a table and COUNT instances (their agents registered at
# once) of its own. With HOSTS=hosts, the instances are fake hosts that run
# the document's own script, the last on an old agent (the simulator's
# default) and the others on 3.3.2746.0.
watch_lambda() {
  local env_file=$1 port=$2 count=$3 hosts=${4:-}
  (set -a; . "$env_file"; .dev/venv/bin/python dev/fleet.py table "$FLAKEFLEET_TABLE" >&2
    ids=$(.dev/venv/bin/python dev/fleet.py instances "$count" "Name=$FLAKEFLEET_TARGET_TAG_VALUE")
    .dev/venv/bin/python dev/fleet.py agents Online $ids
    if [ "$hosts" = hosts ]; then
      .dev/venv/bin/python dev/fleet.py host works $ids
      .dev/venv/bin/python dev/fleet.py agent-version 3.3.2746.0 $(echo "$ids" | head -n -1)
    fi)
  start_lambda "$env_file" "$port"
}

echo "== the Lambda under cargo lambda watch: for the CLI tests, one SSM's events drive, the action's (auth none and github-oidc, one fleet) and the status page's"
cargo build --locked --bins
watch_port=${TEST_WATCH_PORT:-9155}
events_port=${TEST_EVENTS_WATCH_PORT:-9157}
watch_lambda dev/test-lambda.env "$watch_port" 3 hosts
watch_lambda dev/test-events-lambda.env "$events_port" 100
# The action's fleet: one Lambda without auth (and the tests' reconciles),
# one in github-oidc mode trusting the issuer the action test serves on 9160.
watch_lambda dev/test-action-lambda.env 9158 3 hosts
start_lambda dev/test-action-oidc-lambda.env 9159
# The status page's fleet: three fake hosts, read through `flakefleet ui`.
watch_lambda dev/test-ui-lambda.env 9161 3 hosts
export FLAKEFLEET_TEST_FUNCTION_URL="http://127.0.0.1:$watch_port/lambda-url/flakefleet-lambda"
export FLAKEFLEET_TEST_EVENTS_FUNCTION_URL="http://127.0.0.1:$events_port/lambda-url/flakefleet-lambda"
export FLAKEFLEET_TEST_EVENTS_INVOKE_URL="http://127.0.0.1:$events_port/2015-03-31/functions/flakefleet-lambda/invocations"
export FLAKEFLEET_TEST_ACTION_URL="http://127.0.0.1:9158/lambda-url/flakefleet-lambda"
export FLAKEFLEET_TEST_ACTION_OIDC_URL="http://127.0.0.1:9159/lambda-url/flakefleet-lambda"
export FLAKEFLEET_TEST_UI_URL="http://127.0.0.1:9161/lambda-url/flakefleet-lambda"

echo "== cargo test"
# 8 MiB per test thread, as a main thread gets: the EC2 SDK's XML
# deserialiser (de_instance) takes more than the default 2 MiB in debug builds.
RUST_MIN_STACK=8388608 cargo test --locked --all-targets

echo "== make demo, every scene, as a new user runs it (its own local AWS on 5055/5056, its Lambda on 9000)"
demo_started=$SECONDS
if ! bash dev/demo.sh >"$run/demo.log" 2>&1 || grep -q 'Traceback' "$run/demo.log"; then
  echo "make demo failed; its output ends with:" >&2
  tail -n 60 "$run/demo.log" >&2
  exit 1
fi
grep -c '^.\[1m== ' "$run/demo.log" | xargs -I{} echo "demo: {} scenes in $((SECONDS - demo_started)) s"

echo "== the local AWS's own logic: the Pipes input transformation (dev/test_*.py)"
.dev/venv/bin/python -m unittest discover -s dev -p 'test_*.py'
echo "== template.yaml: cfn-lint, before and after the SAM transform"
.dev/venv/bin/python dev/lint-template.py
if ! wait "$checkov_pid"; then
  echo "installing checkov failed; its log:" >&2
  cat "$run/setup-checkov.log" >&2
  exit 1
fi
echo "== checkov on template.yaml and on its SAM expansion (skips carry their reasons inline)"
for t in template.yaml .dev/template.expanded.json; do
  .dev/checkov-venv/bin/checkov --file "$t" --framework cloudformation --compact --quiet --skip-download
done
echo "== actionlint .github/workflows"
.dev/venv/bin/actionlint .github/workflows/*.yml
echo "== nix-instantiate --parse flake.nix (parse only: evaluating needs the network)"
nix-instantiate --option build-users-group "" --parse flake.nix >/dev/null

echo "== waiting for the release build"
if ! wait "$release_pid"; then
  echo "cargo lambda build --release failed; its log ends with:" >&2
  tail -n 40 "$run/release-build.log" >&2
  exit 1
fi
tail -n 1 "$run/release-build.log"
bootstrap=target/lambda-release/lambda/flakefleet-lambda/bootstrap
test -x "$bootstrap"
ls -l "$bootstrap"
echo "== all checks passed"
