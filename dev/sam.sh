#!/usr/bin/env bash
# The SAM CLI at the version samconfig.toml is written for, in a virtualenv of
# its own (.dev/sam-venv: it pins boto3 and others apart from moto's), with
# cargo-lambda (.dev/venv, from dev/setup.sh) on its PATH for `sam build`.
# Usage: dev/sam.sh build | dev/sam.sh deploy [--config-env oidc] | ...
set -euo pipefail
cd "$(dirname "$0")/.."
SAM_CLI_VERSION=1.170.0
venv=.dev/sam-venv
if [ "$("$venv/bin/sam" --version 2>/dev/null)" != "SAM CLI, version $SAM_CLI_VERSION" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
fi
[ -x .dev/venv/bin/cargo-lambda ] || dev/setup.sh
# SAM CLI reports usage to AWS unless told not to.
export SAM_CLI_TELEMETRY=${SAM_CLI_TELEMETRY:-0}
PATH="$PWD/.dev/venv/bin:$PATH" exec "$venv/bin/sam" "$@"
