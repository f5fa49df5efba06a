#!/usr/bin/env bash
# `make compose-down`: stop and remove the stack's containers and network (idempotent). The event log
# (volume massgen_nats-data) and MASSGEN_DATA are kept; `scripts/compose-down.sh -v` also removes the
# volume. Sandboxes left by a crashed executor (label massgen.executor) are reaped by the next
# executor on start; `docker ps --filter label=massgen.executor` lists them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
docker compose version >/dev/null 2>&1 || { echo "compose-down: no docker compose; nothing to do"; exit 0; }
[ -f deploy/build/env/nats.env ] || bash scripts/compose-secrets.sh >/dev/null   # env_file must exist
env_file=(); [ -f deploy/.env ] && env_file=(--env-file deploy/.env)
docker compose "${env_file[@]}" down --remove-orphans "$@"
