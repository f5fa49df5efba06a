#!/usr/bin/env bash
# Make sure bubblewrap (`bwrap`) is installed and can create a sandbox (idempotent). The executor's
# local mode runs every command through it (issue 13 item 2); without it local mode refuses.
#
#   1. `bwrap` on PATH                -> go to the check.
#   2. missing                        -> apt-get install bubblewrap (non-interactive, as root or sudo).
#   3. check: run `true` in a sandbox -> print the version, or fail naming the cause (user namespaces).
#
# Safe to run twice in a row. Needs root (or password-less sudo) only when it has to install.
set -euo pipefail

say() { echo "bubblewrap: $*"; }
die() { echo "bubblewrap: ERROR: $*" >&2; exit 1; }

if ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO="sudo -n"
    else
      die "bwrap is missing and installing it needs root: apt-get install bubblewrap (as root)"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "no bwrap and no apt-get: install bubblewrap with your package manager"
  say "installing bubblewrap from Debian (apt-get)"
  # Serialize with the Docker engine script's apt-get (dpkg takes one caller at a time).
  exec 9>"${TMPDIR:-/tmp}/massgen-apt.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  if ! command -v bwrap >/dev/null 2>&1; then
    $SUDO apt-get update -q </dev/null >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        bubblewrap </dev/null >/dev/null
  fi
  command -v bwrap >/dev/null 2>&1 || die "bwrap still not found after installing bubblewrap"
fi

# The same namespaces the executor asks for; fails where user namespaces are off (e.g. a container
# without security_opt seccomp=unconfined,systempaths=unconfined, or kernel.unprivileged_userns_clone=0).
if ! err="$(env -i bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev true 2>&1)"; then
  die "bwrap is installed but cannot create a sandbox here: ${err} (enable user namespaces; in a container add security_opt: [seccomp=unconfined, systempaths=unconfined])"
fi
say "ready: $(bwrap --version)"
