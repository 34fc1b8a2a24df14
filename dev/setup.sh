#!/usr/bin/env bash
# Installs what the local AWS, the demo and the tests need, at pinned versions,
# into .dev/ (git-ignored). Safe to run again: it does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.dev/venv
stamp=$venv/.requirements.sha256
want=$(sha256sum dev/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing Python tools (moto, cargo-lambda, cfn-lint) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r dev/requirements.txt
  echo "$want" > "$stamp"
fi

# checkov pins versions cfn-lint's dependencies disagree with: a venv of its own.
checkov_venv=.dev/checkov-venv
checkov_stamp=$checkov_venv/.requirements.sha256
checkov_want=$(sha256sum dev/checkov-requirements.txt | cut -d' ' -f1)
if [ "$(cat "$checkov_stamp" 2>/dev/null)" != "$checkov_want" ]; then
  echo "== installing checkov into $checkov_venv"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check -r dev/checkov-requirements.txt
  echo "$checkov_want" > "$checkov_stamp"
fi

# From Debian's packages, through apt:
# - nix-bin: nix-instantiate parses flake.nix (it cannot evaluate it here);
# - chromium and chromium-driver: the status page's browser tests
#   (tests/it/ui.rs) drive /usr/bin/chromium through /usr/bin/chromedriver.
#   Debian's security updates move their version; the tests need none in particular.
missing=()
command -v nix-instantiate >/dev/null || missing+=(nix-bin)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
    echo "== installing ${missing[*]} (Debian packages)"
    $sudo apt-get update -qq >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "${missing[*]} missing and cannot be installed here (needs apt-get): install these Debian packages" >&2
    exit 1
  fi
fi
