#!/usr/bin/env bash
# Runs a script on a fake host as an SSM agent would on a NixOS one, for the
# SSM simulator's fake hosts (dev/ssm_hosts.py) and the document's tests
# (tests/it/document.rs). Run it inside a mount namespace of its own, as root:
#
#   unshare -m bash dev/host-namespace.sh SCRIPT HOST_DIR
#
# /run is fresh (as after a boot), /var/log and /var/lib are the host's own
# (HOST_DIR/var-log, HOST_DIR/var-lib: they persist across runs), and the
# host's tools (HOST_DIR/bin) are its system profile,
# /run/current-system/sw/bin. The script itself runs with the caller's
# environment (the agent's PATH and variables).
set -e
mount -t tmpfs flakefleet-run /run
mount --bind "$2/var-log" /var/log
mount --bind "$2/var-lib" /var/lib
mkdir -p /run/current-system/sw/bin
mount --bind "$2/bin" /run/current-system/sw/bin
set +e
exec bash -c "$1"
