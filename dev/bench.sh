#!/usr/bin/env bash
# `make bench`: builds the Lambda's release bootstrap (x86_64 to run, arm64 for
# its size), starts a local AWS of its own (ports 5355/5356), and measures
# binary size, the demo's `aws ssm send-command` side by side, cold start and
# deploy requests at fleet sizes 10 to 5,000, the connection warm-up, rollout
# convergence, reconciles of 1,000 and 10,000 instances, a flood of 401s (examples/bench.rs;
# BENCH_ONLY and BENCH_RECONCILE_SIZES narrow it), and the status page in
# headless Chromium (`BENCH_ONLY=ui` alone skips the release builds). Prints Markdown; the numbers
# in docs/performance.md come from it. Timings are this machine's, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

dev/setup.sh
# awscli for the demo's deploy path, locked with its hashes like dev/setup.sh's.
bench_venv=.dev/bench-venv
stamp=$bench_venv/.requirements.sha256
want=$(sha256sum dev/bench-requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing awscli into $bench_venv" >&2
  python3 -m venv --clear "$bench_venv"
  "$bench_venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r dev/bench-requirements.txt
  echo "$want" > "$stamp"
fi

export MOTO_PORT=${BENCH_MOTO_PORT:-5355} SSM_SIM_PORT=${BENCH_SSM_SIM_PORT:-5356}
trap 'dev/local-aws.sh stop' EXIT
dev/local-aws.sh start >&2
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$SSM_SIM_PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

only=${BENCH_ONLY:-}
runs() { [ -z "$only" ] || [[ ",${only// /}," == *",$1,"* ]]; }

echo "## flakefleet benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
  "$(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)."
echo

if [ "$only" != ui ]; then
echo "== cargo lambda build --release (the same build and directory as make test)" >&2
PATH="$PWD/.dev/venv/bin:$PATH" CARGO_TARGET_DIR=target/lambda-release \
  cargo lambda build --release --locked --no-default-features --bin flakefleet-lambda >&2
bootstrap=target/lambda-release/lambda/flakefleet-lambda/bootstrap
# The function ships arm64 (template.yaml): built for its size only, into a
# directory of its own so the x86_64 bootstrap the bench runs stays in place.
arm64=""
if dev/aarch64-target.sh >&2; then
  echo "== cargo lambda build --release --arm64" >&2
  PATH="$PWD/.dev/venv/bin:$PATH" CARGO_TARGET_DIR=target/lambda-release \
    cargo lambda build --release --arm64 --locked --no-default-features --bin flakefleet-lambda \
    --lambda-dir target/lambda-arm64 >&2
  arm64=target/lambda-arm64/flakefleet-lambda/bootstrap
fi
cargo build --locked --example bench >&2

echo "### Binary (release profile: fat LTO, one codegen unit, stripped, panic=abort)"
echo
.dev/venv/bin/python - "$bootstrap" $arm64 <<'PY'
import os, sys, zipfile, io
print("| bootstrap | stripped | zipped |\n|---|---:|---:|")
for path in sys.argv[1:]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, "bootstrap")
    print(f"| {path} | {os.path.getsize(path) / 1e6:.2f} MB | {len(buf.getvalue()) / 1e6:.2f} MB |")
PY
[ -n "$arm64" ] || echo "(arm64 not built: its standard library could not be installed)"
echo
target/debug/examples/bench "$bootstrap" .dev/venv/bin/python "$bench_venv/bin/aws"
fi

# The status page: `flakefleet ui` in front of the Lambda under cargo lambda
# watch (port 9361), over 100 instances; tests/it/ui.rs makes 100 releases
# (the last left in flight) and loads the page in headless Chromium.
if runs ui; then
  echo "== the status page: 100 instances, the Lambda under cargo lambda watch on 9361" >&2
  (set -a; . dev/bench-ui-lambda.env
    .dev/venv/bin/python dev/fleet.py table "$FLAKEFLEET_TABLE"
    ids=$(.dev/venv/bin/python dev/fleet.py instances 100 "Name=$FLAKEFLEET_TARGET_TAG_VALUE")
    .dev/venv/bin/python dev/fleet.py agents Online $ids) >&2
  cargo build --locked --bins --tests >&2
  set -m
  PATH="$PWD/.dev/venv/bin:$PATH" cargo lambda watch --env-file dev/bench-ui-lambda.env --ignore-changes \
    --invoke-port 9361 >".dev/bench-ui-lambda.log" 2>&1 &
  watch_pid=$!
  set +m
  trap 'kill -- "-$watch_pid" 2>/dev/null; dev/local-aws.sh stop' EXIT
  ui_url=http://127.0.0.1:9361/lambda-url/flakefleet-lambda
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$ui_url/healthz")" = 200 ] && break
    sleep 1
  done
  FLAKEFLEET_BENCH_UI_URL=$ui_url cargo test --locked --test it -- --ignored --exact ui::bench_the_status_page \
    --nocapture 2>.dev/bench-ui-test.log | sed -n '/^### Status page/,/own redraw/p'
fi
