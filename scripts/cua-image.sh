#!/usr/bin/env bash
# Build the Linux desktop image of the computer-use tools' `linux` environment (idempotent; no registry):
#
#   massgen/cua-desktop:latest   images/cua-desktop/Dockerfile (Xvfb on :99, xdotool, scrot, xterm)
#
# FROM the local Debian base that scripts/sandbox-images.sh makes (massgen/base-python:bookworm; run it
# first), packages from the Debian mirror apt is configured with. The build cache makes a rerun a no-op.
# MassGen's examples drive a container named `cua-container`; start one with
#   docker run -d --name cua-container massgen/cua-desktop:latest
#
# Env: MASSGEN_CUA_IMAGE (default massgen/cua-desktop:latest), MASSGEN_BASE_IMAGE (the base).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${MASSGEN_CUA_IMAGE:-massgen/cua-desktop:latest}"
BASE="${MASSGEN_BASE_IMAGE:-massgen/base-python:bookworm}"
die() { echo "cua-image: ERROR: $*" >&2; exit 1; }
docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh first"
docker image inspect "$BASE" >/dev/null 2>&1 || die "no base image $BASE; run scripts/sandbox-images.sh first"
docker build -q --build-arg "BASE=$BASE" -t "$IMAGE" "$ROOT/images/cua-desktop" >/dev/null
echo "cua-image: ready: $IMAGE"
