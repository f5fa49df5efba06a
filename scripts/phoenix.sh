#!/usr/bin/env bash
# Make sure Arize Phoenix (an OpenTelemetry backend) is installed in its own venv, .venv/phoenix, for the
# `massgen export otel` tests (tests/test_otel_export.py start `phoenix serve` from it on loopback).
#
#   1. .venv/phoenix/bin/phoenix exists and reports the pinned version -> nothing to do.
#   2. otherwise -> create the venv and pip install the pinned arize-phoenix (~85 s, ~850 MB).
#
# Its own venv because Phoenix pins many libraries (sqlalchemy, grpc, pandas...) the project need not
# share. Safe to run twice in a row; needs python3.11 and PyPI.
set -euo pipefail

PHOENIX_VERSION="${PHOENIX_VERSION:-20.26.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv/phoenix"
PY="${PY:-python3.11}"

say() { echo "phoenix: $*"; }
die() { echo "phoenix: ERROR: $*" >&2; exit 1; }

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("arize-phoenix"))' 2>/dev/null || true
}

if [ -x "$VENV/bin/phoenix" ] && [ "$(installed_version)" = "$PHOENIX_VERSION" ]; then
  say "arize-phoenix $PHOENIX_VERSION already in $VENV"
  exit 0
fi

command -v "$PY" >/dev/null 2>&1 || die "need $PY on PATH to create $VENV"
say "installing arize-phoenix $PHOENIX_VERSION into $VENV (about 85 s, 850 MB)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "arize-phoenix==$PHOENIX_VERSION" 2>&1 | { grep -v "^WARNING: Location" || true; }
[ "$(installed_version)" = "$PHOENIX_VERSION" ] || die "arize-phoenix $PHOENIX_VERSION did not install into $VENV"
say "arize-phoenix $(installed_version) ready: $VENV/bin/phoenix"
