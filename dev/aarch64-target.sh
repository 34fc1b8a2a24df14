#!/usr/bin/env bash
# Installs the aarch64 standard library the arm64 Lambda is built with, if it
# is missing (rustup fetches it from static.rust-lang.org). Exit 1 when it
# cannot be installed, so callers can say so and go on.
set -uo pipefail
target=aarch64-unknown-linux-gnu
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  exit 0
fi
echo "== rustup target add $target" >&2
timeout 300 rustup target add "$target" >&2
