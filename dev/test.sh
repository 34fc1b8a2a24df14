#!/usr/bin/env bash
# The whole test suite, from a clean checkout: installs the pinned tools,
# starts a local AWS of its own (ports 5155/5156, apart from the demo's),
# runs every Rust test against it, then lints the template (before and after
# the SAM transform) and the workflows, and parses the flake.
set -euo pipefail
cd "$(dirname "$0")/.."

dev/setup.sh

export MOTO_PORT=${TEST_MOTO_PORT:-5155} SSM_SIM_PORT=${TEST_SSM_SIM_PORT:-5156}
trap 'dev/local-aws.sh stop' EXIT
dev/local-aws.sh start

export FLAKEFLEET_TEST_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
export FLAKEFLEET_TEST_SSM_URL="http://127.0.0.1:$SSM_SIM_PORT"
# The SDK must never reach for real credentials or IMDS in tests.
export AWS_EC2_METADATA_DISABLED=true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== the Lambda under cargo lambda watch, for the CLI tests"
cargo build --locked --bins
watch_port=${TEST_WATCH_PORT:-9155}
run=.dev/run-$MOTO_PORT
set -a; . dev/test-lambda.env; set +a
.dev/venv/bin/python dev/fleet.py table "$FLAKEFLEET_TABLE"
.dev/venv/bin/python dev/fleet.py instances 3 "Name=$FLAKEFLEET_TARGET_TAG_VALUE" >/dev/null
set -m
PATH="$PWD/.dev/venv/bin:$PATH" cargo lambda watch --env-file dev/test-lambda.env --ignore-changes \
  --invoke-port "$watch_port" >"$run/lambda.log" 2>&1 &
watch_pid=$!
set +m
trap 'kill -- "-$watch_pid" 2>/dev/null || true; dev/local-aws.sh stop' EXIT
export FLAKEFLEET_TEST_FUNCTION_URL="http://127.0.0.1:$watch_port/lambda-url/flakefleet-lambda"
for _ in $(seq 1 600); do
  if curl -fs -o /dev/null "$FLAKEFLEET_TEST_FUNCTION_URL/healthz"; then break; fi
  if ! kill -0 "$watch_pid" 2>/dev/null; then echo "cargo lambda watch stopped; its log:" >&2; cat "$run/lambda.log" >&2; exit 1; fi
  sleep 1
done

echo "== cargo test"
cargo test --locked --all-targets

echo "== cargo lambda build --release (x86_64; arm64 needs a standard library this machine cannot fetch)"
PATH="$PWD/.dev/venv/bin:$PATH" cargo lambda build --release --locked --bin flakefleet-lambda
test -x target/lambda/flakefleet-lambda/bootstrap
ls -l target/lambda/flakefleet-lambda/bootstrap

echo "== template.yaml: cfn-lint, before and after the SAM transform"
.dev/venv/bin/python dev/lint-template.py
echo "== actionlint .github/workflows"
.dev/venv/bin/actionlint .github/workflows/*.yml
echo "== nix-instantiate --parse flake.nix (parse only: evaluating needs the network)"
nix-instantiate --option build-users-group "" --parse flake.nix >/dev/null
echo "== all checks passed"
