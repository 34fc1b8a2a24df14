#!/usr/bin/env bash
# Locks dev/*.in into dev/*.txt: every package, the transitive ones too, at
# one version with its hashes, for `pip install --require-hashes` (dev/setup.sh,
# dev/bench.sh). Run it after changing a .in file; commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check uv==0.13.10
for name in requirements checkov-requirements bench-requirements sam-requirements; do
  "$tools/venv/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "dev/lock-requirements.sh" --output-file "dev/$name.txt" "dev/$name.in"
done
