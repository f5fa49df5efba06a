#!/usr/bin/env bash
# `make compose-up`: bring the compose stack up on this machine (idempotent).
#
#   1. a Docker engine (scripts/docker-engine.sh) and Compose v2 (scripts/compose-install.sh)
#   2. credentials: deploy/.env and deploy/build/env/*.env (scripts/compose-secrets.sh)
#   3. the images (scripts/compose-build.sh; COMPOSE_SKIP_BUILD=1 skips it when they exist)
#   4. the MASSGEN_HOME host directory (MASSGEN_DATA, default /var/lib/massgen): uid 10001 (the
#      services), group 1000 (the executor's sandbox user), mode 2775 (setgid: new directories keep
#      group 1000)
#   5. docker compose --env-file deploy/.env up -d --wait [--scale agent-worker=$WORKERS]
#   6. the CLI's context: deploy/build/env/cli.env holds MASSGEN_NATS_URL (user `cli`, 127.0.0.1)
#
# Env: WORKERS (agent-worker replicas, default 1), MASSGEN_DATA, COMPOSE_SKIP_BUILD=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "compose-up: $*"; }
die() { echo "compose-up: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

bash scripts/docker-engine.sh
bash scripts/compose-install.sh
bash scripts/compose-secrets.sh

images_present() {
  local i
  for i in nats orchestrator agent-worker mcp-broker executor local-llm; do
    docker image inspect "${MASSGEN_IMAGE_PREFIX:-massgen}/$i:${MASSGEN_TAG:-latest}" >/dev/null 2>&1 || return 1
  done
}
if [ "${COMPOSE_SKIP_BUILD:-0}" = 1 ] && images_present; then
  say "COMPOSE_SKIP_BUILD=1: using the existing images"
else
  bash scripts/compose-build.sh
fi

DATA="${MASSGEN_DATA:-$(sed -n 's/^MASSGEN_DATA=//p' deploy/.env | tail -n1)}"
DATA="${DATA:-/var/lib/massgen}"
case "$DATA" in /*) ;; *) die "MASSGEN_DATA must be an absolute path (got '$DATA')" ;; esac
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$DATA"
  chown 10001:1000 "$DATA"
  chmod 2775 "$DATA"
elif [ ! -d "$DATA" ] || [ "$(stat -c %u "$DATA")" != 10001 ]; then
  die "create $DATA as root: mkdir -p $DATA && chown 10001:1000 $DATA && chmod 2775 $DATA"
fi
export MASSGEN_DATA="$DATA"

t0="$(now)"
docker compose --env-file deploy/.env up -d --wait --scale "agent-worker=${WORKERS:-1}"
say "stack up in $(secs "$t0")s (data: $DATA)"
docker compose --env-file deploy/.env ps --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}'
say "for the CLI (NATS user cli on 127.0.0.1):"
say "  set -a; . deploy/build/env/cli.env; set +a"
say "  .venv/bin/massgen submit \"What is 2+2?\""
