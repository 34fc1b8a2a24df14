#!/usr/bin/env bash
# Installs what the local AWS, the demo and the tests need, at pinned versions,
# into .dev/ (git-ignored). Safe to run again: it does nothing when up to date.
# With arguments, only those parts (python, checkov, apt), so dev/test.sh can
# overlap them with its release build; without, all three.
set -euo pipefail
cd "$(dirname "$0")/.."

# A venv of its own for each locked requirements file (dev/*.txt, made by
# dev/lock-requirements.sh from dev/*.in: every package, transitive ones too,
# pinned with its hashes), made anew whenever the file changes.
locked_venv() {
  local venv=$1 requirements=$2 what=$3 stamp want
  stamp=$venv/.requirements.sha256
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing $what into $venv"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --only-binary :all: -r "$requirements"
    echo "$want" > "$stamp"
  fi
}

python_tools() {
  locked_venv .dev/venv dev/requirements.txt "Python tools (moto, cargo-lambda, cfn-lint, actionlint, cmarkgfm)"
}

# checkov pins versions cfn-lint's dependencies disagree with: a venv of its own.
checkov_tool() {
  locked_venv .dev/checkov-venv dev/checkov-requirements.txt checkov
}

# From Debian's packages, through apt:
# - nix-bin: nix-instantiate parses flake.nix (it cannot evaluate it here);
# - chromium and chromium-driver: the status page's browser tests
#   (tests/it/ui.rs) drive /usr/bin/chromium through /usr/bin/chromedriver.
#   Debian's security updates move their version; the tests need none in particular.
apt_packages() {
  local missing=() sudo
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
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(python checkov apt)
for part in "${parts[@]}"; do
  case $part in
    python) python_tools ;;
    checkov) checkov_tool ;;
    apt) apt_packages ;;
    *) echo "dev/setup.sh: unknown part $part (python, checkov or apt)" >&2; exit 2 ;;
  esac
done
