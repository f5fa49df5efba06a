#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
#   1. `docker info` already answers        -> print the engine version, exit 0.
#   2. no `dockerd` binary                  -> apt-get install docker.io (non-interactive, as root).
#   3. dockerd not running                  -> start it in the background, log to a file.
#   4. wait up to DOCKER_WAIT_SECONDS (60)  -> print the engine version, or fail naming the log.
#
# Safe to run twice in a row, and while dockerd is already running or still starting.
# Needs root (or password-less sudo) only when it has to install or start the engine.
#
# Env:
#   MASSGEN_HOME          fallback log directory (default $HOME/.massgen) when /var/log is not writable
#   DOCKERD_LOG           explicit log path (default /var/log/dockerd.log)
#   DOCKER_WAIT_SECONDS   how long to wait for `docker info` (default 60)
#   DOCKERD_ARGS          extra arguments for dockerd (e.g. "--storage-driver=vfs")
set -euo pipefail

WAIT="${DOCKER_WAIT_SECONDS:-60}"
MASSGEN_HOME="${MASSGEN_HOME:-$HOME/.massgen}"

say() { echo "docker-engine: $*"; }
die() { echo "docker-engine: ERROR: $*" >&2; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }

print_version() {
  local v
  v="$(docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}' 2>/dev/null || true)"
  say "ready: ${v:-$(docker info --format 'engine {{.ServerVersion}}' 2>/dev/null)}," \
      "storage driver $(docker info --format '{{.Driver}}' 2>/dev/null)," \
      "cgroup v$(docker info --format '{{.CgroupVersion}}' 2>/dev/null)"
}

# Already answering (e.g. a system service, Docker Desktop, or a previous run): nothing to do.
if command -v docker >/dev/null 2>&1 && engine_up; then
  print_version
  exit 0
fi

# Everything below may need root.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    die "no Docker engine answers and installing/starting one needs root (run as root or with password-less sudo)"
  fi
fi

# Install the engine when missing. A docker *client* alone (e.g. /usr/local/bin/docker) is not an
# engine, so look for dockerd itself.
if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ] && [ ! -x /usr/bin/dockerd ]; then
  command -v apt-get >/dev/null 2>&1 || die "no dockerd and no apt-get: install Docker Engine by hand"
  say "installing docker.io from Debian (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q </dev/null >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      docker.io </dev/null >/dev/null
fi
DOCKERD="$(command -v dockerd 2>/dev/null || true)"
[ -n "$DOCKERD" ] || for c in /usr/sbin/dockerd /usr/bin/dockerd; do [ -x "$c" ] && DOCKERD="$c" && break; done
[ -n "$DOCKERD" ] || die "dockerd still not found after installing docker.io"

# Log file: /var/log/dockerd.log, or under MASSGEN_HOME when /var/log is not writable.
LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
if ! { [ -n "$SUDO" ] || touch "$LOG" 2>/dev/null; }; then
  mkdir -p "$MASSGEN_HOME"
  LOG="$MASSGEN_HOME/dockerd.log"
fi

dockerd_running() {
  # pidfile written by dockerd itself; fall back to a process-name match (read-only check).
  local pid
  if [ -r /var/run/docker.pid ]; then
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
  fi
  pgrep -x dockerd >/dev/null 2>&1
}

# Serialize concurrent callers (e.g. two CI steps): only one of them may start the daemon.
exec 9>"${TMPDIR:-/tmp}/massgen-docker-engine.lock"
command -v flock >/dev/null 2>&1 && flock 9
engine_up && { print_version; exit 0; }

if dockerd_running; then
  say "dockerd is already running; waiting for it to answer"
else
  say "starting $DOCKERD in the background (log: $LOG)"
  # setsid + nohup: the daemon outlives this script and the caller's terminal/CI step.
  # The redirection happens inside the (possibly sudo'ed) shell so a root-owned log path works.
  # fd 9 (the lock) is closed for the daemon, or it would hold the lock for its whole life.
  $SUDO sh -c 'exec setsid nohup "$0" $1 </dev/null >>"$2" 2>&1' "$DOCKERD" "${DOCKERD_ARGS:-}" "$LOG" 9>&- &
fi

last_lines() { tail -n 3 "$LOG" 2>/dev/null | tr '\n' ' ' | cut -c1-300; }
for i in $(seq 1 "$WAIT"); do
  if engine_up; then
    print_version
    exit 0
  fi
  if [ "$i" -ge 3 ] && ! dockerd_running; then
    die "dockerd exited while starting; see $LOG (last lines: $(last_lines))"
  fi
  sleep 1
done
die "dockerd did not answer 'docker info' within ${WAIT}s; see $LOG (last lines: $(last_lines))"
