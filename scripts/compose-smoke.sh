#!/usr/bin/env bash
# End-to-end checks against the running compose stack (after `make compose-up`):
#
#   1. NATS security: anonymous and wrong-password connections refused; per-user subject permissions
#      (the worker cannot append massgen.run.<run>.orch, the CLI cannot decide or push work, ...):
#      deploy/tests/nats_permissions.py --url
#   2. `massgen submit "What is 2+2?" --json` from the host as user `cli`, default team: completed,
#      and the answer came from the local-llm container (its request log grew)
#   3. the executor's Docker mode through the socket: a scripted model (deploy/tests/scripted_model.py,
#      in a container on the stack's network) runs a command in a sibling sandbox container; the
#      file it wrote is on the host under MASSGEN_DATA at the same path (the bind mount at an
#      identical path), written by the sandbox user (uid 1000). The MCP broker serves the agent's
#      filesystem server (node, from the image) on the way.
#   4. `massgen status`: the services' heartbeats
#
# Env: SMOKE_SKIP_EXEC=1 skips 3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
MASSGEN="$ROOT/.venv/bin/massgen"
say() { echo "compose-smoke: $*"; }
die() { echo "compose-smoke: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

docker compose --env-file deploy/.env ps --status running --services 2>/dev/null | grep -qx nats \
  || die "the stack is not running; run make compose-up"
set -a; . deploy/build/env/cli.env; set +a
port="$(echo "$MASSGEN_NATS_URL" | sed 's/.*:\([0-9]*\)$/\1/')"
DATA="${MASSGEN_DATA:-$(sed -n 's/^MASSGEN_DATA=//p' deploy/.env | tail -n1)}"; DATA="${DATA:-/var/lib/massgen}"

say "1. NATS security"
"$PY" deploy/tests/nats_permissions.py --url "nats://127.0.0.1:$port" --env-file deploy/.env | sed 's/^/  /'

say "2. massgen submit \"What is 2+2?\" --json (default team: three local agents)"
llm_requests() { docker compose --env-file deploy/.env logs local-llm 2>/dev/null | grep -c "stop processing" || true; }
before="$(llm_requests)"
t0="$(now)"
out="$("$MASSGEN" submit "What is 2+2?" --json)" || die "submit failed: $out"
after="$(llm_requests)"
echo "$out" | "$PY" deploy/tests/smoke_checks.py summary || die "the run did not complete: $out"
[ "$after" -gt "$before" ] || die "local-llm served no request ($before -> $after)"
say "  completed in $(secs "$t0")s; local-llm served $((after - before)) completions"

if [ "${SMOKE_SKIP_EXEC:-0}" != 1 ]; then
  say "3. executor Docker mode (sibling sandbox, workspace on $DATA)"
  net="$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(docker compose --env-file deploy/.env ps -q nats)" | awk '{print $1}')"
  name=massgen-smoke-model
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --rm --name "$name" --network "$net" --network-alias scripted-model --read-only \
    -v "$ROOT/deploy/tests/scripted_model.py:/opt/scripted_model.py:ro" --entrypoint python \
    "${MASSGEN_IMAGE_PREFIX:-massgen}/agent-worker:${MASSGEN_TAG:-latest}" /opt/scripted_model.py --port 8000 >/dev/null
  trap 'docker rm -f '"$name"' >/dev/null 2>&1 || true' EXIT
  cfg="$(mktemp "${TMPDIR:-/tmp}/massgen-smoke.XXXXXX.yaml")"
  cat >"$cfg" <<YAML
agents:
  - id: runner
    system_message: "RUN: echo hello-from-sandbox > note.txt && cat note.txt && id -u && pwd"
    backend:
      type: chatcompletion
      model: exec
      base_url: http://scripted-model:8000/v1
      cwd: workspace
      enable_mcp_command_line: true
      command_line_execution_mode: docker
      command_line_docker_image: massgen/sandbox-python:latest
timeout_settings: {orchestrator_timeout_seconds: 120, presentation_timeout_seconds: 60}
YAML
  sleep 1
  t0="$(now)"
  out="$("$MASSGEN" submit "run the command" --config "$cfg" --json)" || die "docker-mode run failed: $out"
  rm -f "$cfg"
  run="$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')"
  "$MASSGEN" replay "$run" --json | "$PY" deploy/tests/smoke_checks.py exec || die "docker-mode execution check failed"
  note="$DATA/runs/$run/workspaces/runner/note.txt"
  [ "$(cat "$note" 2>/dev/null)" = hello-from-sandbox ] || die "$note is not on the host"
  say "  $note on the host, owner uid $(stat -c %u "$note") ($(secs "$t0")s)"
fi

say "4. massgen status"
# Retried: a heartbeat key that expires between `keys()` and `get()` empties one reading (massgen_es.ops).
for i in 1 2 3 4 5; do
  if "$MASSGEN" status --json | "$PY" deploy/tests/smoke_checks.py status 2>/dev/null; then break; fi
  [ "$i" -lt 5 ] || die "massgen status does not list every service"
  sleep 2
done
say "all checks passed"
