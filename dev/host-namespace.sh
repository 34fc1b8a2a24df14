#!/usr/bin/env bash
# Runs a command on a fake host as an SSM agent or amazon-init would on a
# NixOS one, for the SSM simulator's fake hosts (dev/ssm_hosts.py) and the
# document's tests (tests/it/document.rs). Run it inside a mount namespace of
# its own, as root:
#
#   unshare -m bash dev/host-namespace.sh HOST_DIR COMMAND [ARG...]
#
# The agent runs a document's script as a file: `sh -c HOST_DIR/.../_script.sh ""`;
# amazon-init runs user data as `bash USER_DATA_FILE`.
#
# /run is fresh (as after a boot), /var/log and /var/lib are the host's own
# (HOST_DIR/var-log, HOST_DIR/var-lib: they persist across runs), the host's
# tools (HOST_DIR/bin) are its system profile, /run/current-system/sw/bin,
# and its systems (HOST_DIR/store: each with bin/switch-to-configuration and
# the health checks its configuration declares) are /nix/store. The command
# runs with the caller's environment (the agent's PATH and variables).
set -e
host="$1"
shift
mount -t tmpfs flakefleet-run /run
mount --bind "$host/var-log" /var/log
mount --bind "$host/var-lib" /var/lib
mkdir -p /run/current-system/sw/bin
mount --bind "$host/bin" /run/current-system/sw/bin
# The mount point is the one thing made outside the namespace (an empty
# /nix/store, which Debian's nix-bin makes anyway).
mkdir -p /nix/store "$host/store"
mount --bind "$host/store" /nix/store
set +e
exec "$@"
