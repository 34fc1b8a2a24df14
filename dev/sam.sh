#!/usr/bin/env bash
# The SAM CLI at the version samconfig.toml is written for, in a virtualenv of
# its own (.dev/sam-venv: it pins boto3 and others apart from moto's), with
# cargo-lambda (.dev/venv, from dev/setup.sh) on its PATH for `sam build`.
# Usage: dev/sam.sh build | dev/sam.sh deploy [--config-env oidc] | ...
set -euo pipefail
cd "$(dirname "$0")/.."
# dev/sam-requirements.txt: aws-sam-cli 1.170.0 and every dependency, pinned with hashes.
venv=.dev/sam-venv
stamp=$venv/.requirements.sha256
want=$(sha256sum dev/sam-requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r dev/sam-requirements.txt
  echo "$want" > "$stamp"
fi
[ -x .dev/venv/bin/cargo-lambda ] || dev/setup.sh
# SAM CLI reports usage to AWS unless told not to.
export SAM_CLI_TELEMETRY=${SAM_CLI_TELEMETRY:-0}
PATH="$PWD/.dev/venv/bin:$PATH" exec "$venv/bin/sam" "$@"
