#!/usr/bin/env bash
# Build the executor's sandbox images (idempotent; works with no container registry).
#
#   massgen/sandbox-python:latest   images/sandbox-python/Dockerfile
#   massgen/sandbox-node:latest     images/sandbox-node/Dockerfile
#
# With a registry the Dockerfiles' defaults are used (python:3.11-slim, node:20-slim). Without one
# (MASSGEN_OFFLINE=1, or `docker pull` of the default base fails), they are built FROM a local Debian
# bookworm base made with debootstrap from the Debian mirror apt is configured with:
#   massgen/base-python:bookworm    debootstrap minbase + python3-minimal + python3-venv, `docker import`ed
#   massgen/node-dist:20            FROM scratch, the host's node 20 + npm (images/node-dist/Dockerfile)
# The base is built only when missing (MASSGEN_REBUILD_BASE=1 forces it); the sandbox images are
# rebuilt every run, which the build cache makes a no-op when nothing changed.
# Ends by running a command in each image as uid 1000 with --network none.
#
# Needs a running engine (scripts/docker-engine.sh) and, for the offline base, root (debootstrap).
#
# Env:
#   MASSGEN_OFFLINE=1|0              force offline / registry mode (default: detect)
#   MASSGEN_SANDBOX_PYTHON_IMAGE     default massgen/sandbox-python:latest
#   MASSGEN_SANDBOX_NODE_IMAGE       default massgen/sandbox-node:latest
#   MASSGEN_BASE_IMAGE               local Debian base, default massgen/base-python:bookworm
#   MASSGEN_NODE_DIST_IMAGE          local node payload image, default massgen/node-dist:20
#   MASSGEN_PYTHON_BASE              registry base for python, default python:3.11-slim
#   MASSGEN_NODE_BASE                registry base for node, default node:20-slim
#   MASSGEN_DEBIAN_MIRROR            override the mirror debootstrap uses
#   MASSGEN_HOST_NODE                node binary to package offline (default: `command -v node`)
#   MASSGEN_REBUILD_BASE=1           rebuild the local base even if it exists
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES="$ROOT/images"

PY_IMAGE="${MASSGEN_SANDBOX_PYTHON_IMAGE:-massgen/sandbox-python:latest}"
NODE_IMAGE="${MASSGEN_SANDBOX_NODE_IMAGE:-massgen/sandbox-node:latest}"
BASE_IMAGE="${MASSGEN_BASE_IMAGE:-massgen/base-python:bookworm}"
NODE_DIST_IMAGE="${MASSGEN_NODE_DIST_IMAGE:-massgen/node-dist:20}"
PY_REGISTRY_BASE="${MASSGEN_PYTHON_BASE:-python:3.11-slim}"
NODE_REGISTRY_BASE="${MASSGEN_NODE_BASE:-node:20-slim}"
SUITE=bookworm

say() { echo "sandbox-images: $*"; }
die() { echo "sandbox-images: ERROR: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh first"

# One build at a time per machine (two concurrent runs would race on the base image).
LOCK="${TMPDIR:-/tmp}/massgen-sandbox-images.lock"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then flock 9; fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Is a registry base usable? Present locally, or a pull succeeds (fails in well under a second when
# no registry resolves; bounded by a timeout when one hangs).
registry_base_ok() {
  local img="$1"
  case "${MASSGEN_OFFLINE:-}" in
    1|true|yes) return 1 ;;
  esac
  have_image "$img" && return 0
  say "trying: docker pull $img"
  if timeout 120 docker pull -q "$img" >/dev/null 2>&1; then return 0; fi
  case "${MASSGEN_OFFLINE:-}" in
    0|false|no) die "MASSGEN_OFFLINE=0 but 'docker pull $img' failed" ;;
  esac
  say "no registry for $img: building offline from the local Debian base"
  return 1
}

# The Debian mirror apt uses for the bookworm suite (deb822 *.sources or one-line *.list).
debian_mirror() {
  if [ -n "${MASSGEN_DEBIAN_MIRROR:-}" ]; then echo "$MASSGEN_DEBIAN_MIRROR"; return; fi
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # Each stanza: pick URIs whose Suites list has the bare suite (not -security/-updates).
    uri="$(awk -v s="$SUITE" '
      BEGIN { RS=""; FS="\n" }
      {
        u=""; ok=0; en=1
        for (i=1; i<=NF; i++) {
          if ($i ~ /^URIs:/)    { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u=a[1] }
          if ($i ~ /^Suites:/)  { n=split($i, b, /[ \t]+/); for (j=2; j<=n; j++) if (b[j]==s) ok=1 }
          if ($i ~ /^Enabled:[ \t]*no/) en=0
          if ($i ~ /^Types:/ && $i !~ /(^|[ \t])deb([ \t]|$)/) en=0
        }
        if (u!="" && ok && en) { print u; exit }
      }' "$f")"
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -r "$f" ] || continue
      uri="$(awk -v s="$SUITE" '
        $1=="deb" {
          i=2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
          if ($(i+1)==s) { print $i; exit }
        }' "$f")"
      [ -n "$uri" ] && break
    done
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_local_base() {
  if have_image "$BASE_IMAGE" && [ "${MASSGEN_REBUILD_BASE:-0}" != 1 ]; then
    say "local base $BASE_IMAGE exists (MASSGEN_REBUILD_BASE=1 to rebuild)"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "building $BASE_IMAGE with debootstrap needs root"
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap </dev/null >/dev/null
  fi
  local mirror rootfs
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/massgen-rootfs.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" EXIT
  say "debootstrap --variant=minbase --include=python3-minimal,python3-venv $SUITE <rootfs> $mirror"
  if ! debootstrap --variant=minbase --include=python3-minimal,python3-venv \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -n 20 "$rootfs.log" >&2
    die "debootstrap failed (full log: $rootfs.log)"
  fi
  rm -f "$rootfs.log"
  # Slim it the way the official slim images are: no package caches, lists, docs or man pages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
         "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
  find "$rootfs"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  say "docker import -> $BASE_IMAGE"
  tar -C "$rootfs" -c . | docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      -m "debootstrap minbase $SUITE + python3-minimal python3-venv from $mirror" \
      - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

build_node_dist() {
  local node npm_dir ctx
  node="${MASSGEN_HOST_NODE:-$(command -v node || true)}"
  [ -n "$node" ] && [ -x "$node" ] || die "offline node image needs node 20 on the host (set MASSGEN_HOST_NODE)"
  node="$(readlink -f "$node")"
  case "$("$node" --version)" in
    v20.*) ;;
    *) say "warning: host node is $("$node" --version), not 20.x" ;;
  esac
  npm_dir=""
  if command -v npm >/dev/null 2>&1; then
    npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  fi
  # Skip when the image already holds this very node binary and npm (saves sending ~110 MB).
  local stamp
  stamp="$("$node" --version):$(stat -c %s:%Y "$node"):${npm_dir:+$(stat -c %Y "$npm_dir/package.json" 2>/dev/null)}"
  if [ "$(docker image inspect -f '{{index .Config.Labels "massgen.host-node"}}' "$NODE_DIST_IMAGE" 2>/dev/null)" = "$stamp" ]; then
    say "$NODE_DIST_IMAGE is up to date with $node"
    return
  fi
  ctx="$(mktemp -d "${TMPDIR:-/var/tmp}/massgen-node-dist.XXXXXX")"
  cp "$IMAGES/node-dist/Dockerfile" "$ctx/"
  # Hard link when possible (same filesystem), so staging ~100 MB costs nothing.
  ln "$node" "$ctx/node" 2>/dev/null || cp "$node" "$ctx/node"
  if [ -n "$npm_dir" ] && [ -f "$npm_dir/bin/npm-cli.js" ]; then
    cp -a "$npm_dir" "$ctx/npm"
  else
    say "warning: no npm on the host; $NODE_IMAGE will have node only"
    mkdir -p "$ctx/npm/bin"
  fi
  say "building $NODE_DIST_IMAGE from $node ($("$node" --version))"
  local errs
  if ! errs="$(docker build -q -t "$NODE_DIST_IMAGE" --label "massgen.host-node=$stamp" "$ctx" 2>&1 >/dev/null)"; then
    echo "$errs" >&2; rm -rf "$ctx"; die "building $NODE_DIST_IMAGE failed"
  fi
  rm -rf "$ctx"
}

build() {  # build IMAGE DIR [--build-arg ...]
  local image="$1" dir="$2"; shift 2
  say "docker build -t $image $* $dir"
  local errs
  # Keep stderr quiet unless the build fails (the 28.x client warns that the legacy builder is deprecated).
  if ! errs="$(docker build -q -t "$image" "$@" "$dir" 2>&1 >/dev/null)"; then
    echo "$errs" >&2
    die "building $image failed"
  fi
}

# --- Python sandbox -----------------------------------------------------------------------------
if registry_base_ok "$PY_REGISTRY_BASE"; then
  build "$PY_IMAGE" "$IMAGES/sandbox-python" --build-arg "BASE=$PY_REGISTRY_BASE"
else
  build_local_base
  build "$PY_IMAGE" "$IMAGES/sandbox-python" --build-arg "BASE=$BASE_IMAGE"
fi

# --- Node sandbox -------------------------------------------------------------------------------
if registry_base_ok "$NODE_REGISTRY_BASE"; then
  build "$NODE_IMAGE" "$IMAGES/sandbox-node" --build-arg "BASE=$NODE_REGISTRY_BASE" \
      --build-arg "NODE_DIST=$NODE_REGISTRY_BASE"
else
  build_local_base
  build_node_dist
  build "$NODE_IMAGE" "$IMAGES/sandbox-node" --build-arg "BASE=$BASE_IMAGE" \
      --build-arg "NODE_DIST=$NODE_DIST_IMAGE"
fi

# --- Verify -------------------------------------------------------------------------------------
out="$(docker run --rm --network none --user 1000 "$PY_IMAGE" python3 -c 'print(1)')" \
  && [ "$out" = 1 ] || die "$PY_IMAGE: python3 -c 'print(1)' printed '$out'"
out="$(docker run --rm --network none --user 1000 "$NODE_IMAGE" node -e 'console.log(1)')" \
  && [ "$out" = 1 ] || die "$NODE_IMAGE: node -e 'console.log(1)' printed '$out'"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
  | grep -F -e "$PY_IMAGE" -e "$NODE_IMAGE" -e "$BASE_IMAGE" | sed 's/^/sandbox-images: /' || true
say "ok: $PY_IMAGE and $NODE_IMAGE run as uid 1000 with --network none"
