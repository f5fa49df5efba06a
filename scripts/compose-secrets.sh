#!/usr/bin/env bash
# Credentials of the compose stack (idempotent).
#
#   deploy/.env                 created from deploy/.env.example when missing; every empty or missing
#                               NATS_*_PASSWORD gets a random one (32 hex chars); existing values are
#                               kept. Mode 600. Never committed.
#   deploy/build/env/<svc>.env  derived from deploy/.env on every run, one per container, each with
#                               only what that container needs:
#                                 nats.env          the five NATS_*_PASSWORD (the server's users)
#                                 <service>.env     MASSGEN_NATS_URL with that service's user only
#                                 agent_worker.env  + the non-NATS settings of deploy/.env (provider keys)
#                                 cli.env           MASSGEN_NATS_URL for `massgen` on the host
#   deploy/build/env/cluster/<svc>.env   for deploy/cluster.yml (three NATS nodes): MASSGEN_NATS_URL
#                               listing all three nodes; nats.env also gets the route password
#                               (NATS_ROUTE_PASSWORD, generated into deploy/.env) and the route URLs.
#                               docker-compose.yml reads them with env_file, so a plain
#                               `docker compose up` needs no --env-file for credentials.
#
# Env: MASSGEN_NATS_SCHEME=tls (URLs for a TLS-enabled server), MASSGEN_NATS_HOST (default nats).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="${MASSGEN_COMPOSE_ENV:-$ROOT/deploy/.env}"
OUT="$ROOT/deploy/build/env"
USERS=(orchestrator agent_worker mcp_broker executor cli)   # NATS users: the services' names

say() { echo "compose-secrets: $*"; }
die() { echo "compose-secrets: ERROR: $*" >&2; exit 1; }

var_of() { echo "NATS_$(echo "$1" | tr 'a-z-' 'A-Z_')_PASSWORD"; }
random_password() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
get() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1 | tr -d '\r' | sed "s/^['\"]//; s/['\"]\$//"; }

umask 077
if [ ! -f "$ENV_FILE" ]; then
  cp "$ROOT/deploy/.env.example" "$ENV_FILE"
  say "created $ENV_FILE from deploy/.env.example"
fi
chmod 600 "$ENV_FILE"

made=0
for u in "${USERS[@]}" route; do   # route: the NATS cluster's nodes between themselves
  v="$(var_of "$u")"
  cur="$(get "$v")"
  if [ -z "$cur" ]; then
    pw="$(random_password)"
    if grep -q "^$v=" "$ENV_FILE"; then
      sed -i "s/^$v=.*/$v=$pw/" "$ENV_FILE"
    else
      echo "$v=$pw" >>"$ENV_FILE"
    fi
    made=$((made + 1))
  elif ! [[ "$cur" =~ ^[A-Za-z0-9]+$ ]]; then
    die "$v in $ENV_FILE must be letters and digits only (it goes into a nats:// URL)"
  fi
done
[ "$made" -eq 0 ] || say "generated $made password(s) in $ENV_FILE"

mkdir -p "$OUT"
chmod 700 "$OUT"
NATS_HOST="${MASSGEN_NATS_HOST:-nats}"       # the server's name on the compose network
SCHEME="${MASSGEN_NATS_SCHEME:-nats}"        # tls: with TLS enabled in nats.conf (deploy/README.md)
CLI_HOST="127.0.0.1:$(get NATS_PORT)"; [ "$CLI_HOST" != "127.0.0.1:" ] || CLI_HOST="127.0.0.1:4222"
{
  echo "# derived from deploy/.env by scripts/compose-secrets.sh: the NATS server's users"
  for u in "${USERS[@]}"; do v="$(var_of "$u")"; echo "$v=$(get "$v")"; done
  echo "# deploy/cluster.yml: the nodes' routes (deploy/nats/cluster.conf), with the route password"
  echo "NATS_ROUTE_PASSWORD=$(get NATS_ROUTE_PASSWORD)"
  for i in 1 2 3; do
    host=nats; [ "$i" = 1 ] || host="nats-$i"
    echo "NATS_ROUTE_$i=nats-route://route:$(get NATS_ROUTE_PASSWORD)@$host:6222"
  done
} >"$OUT/nats.env"
for u in orchestrator agent_worker mcp_broker executor; do
  {
    echo "# derived from deploy/.env by scripts/compose-secrets.sh: the $u service's credentials"
    echo "MASSGEN_NATS_URL=$SCHEME://$u:$(get "$(var_of "$u")")@$NATS_HOST:4222"
  } >"$OUT/$u.env"
done
# deploy/cluster.yml: every service lists the three nodes (nats, nats-2, nats-3), the CLI their
# loopback ports; these files come after the ones above in env_file, so their URL wins.
mkdir -p "$OUT/cluster"
chmod 700 "$OUT/cluster"
port_of() { p="$(get "$1")"; echo "${p:-$2}"; }
for u in orchestrator agent_worker mcp_broker executor; do
  pw="$(get "$(var_of "$u")")"
  echo "MASSGEN_NATS_URL=$SCHEME://$u:$pw@nats:4222,$SCHEME://$u:$pw@nats-2:4222,$SCHEME://$u:$pw@nats-3:4222" \
    >"$OUT/cluster/$u.env"
done
pw="$(get NATS_CLI_PASSWORD)"
{
  echo "# for massgen on the host with deploy/cluster.yml:  set -a; . deploy/build/env/cluster/cli.env; set +a"
  echo "MASSGEN_NATS_URL=$SCHEME://cli:$pw@127.0.0.1:$(port_of NATS_PORT 4222),$SCHEME://cli:$pw@127.0.0.1:$(port_of NATS_PORT_2 4223),$SCHEME://cli:$pw@127.0.0.1:$(port_of NATS_PORT_3 4224)"
} >"$OUT/cluster/cli.env"
chmod 600 "$OUT"/cluster/*.env
# Provider keys and other settings for the workers: every non-NATS, non-comment line of deploy/.env.
grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$ENV_FILE" | grep -v -E '^NATS_' >>"$OUT/agent_worker.env" || true
{
  echo "# for massgen on the host:  set -a; . deploy/build/env/cli.env; set +a"
  echo "MASSGEN_NATS_URL=$SCHEME://cli:$(get NATS_CLI_PASSWORD)@$CLI_HOST"
} >"$OUT/cli.env"
chmod 600 "$OUT"/*.env
say "credentials: $ENV_FILE -> $OUT/{nats,orchestrator,agent_worker,mcp_broker,executor,cli}.env"
