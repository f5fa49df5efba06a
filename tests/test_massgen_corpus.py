"""MassGen's own example configs (``massgen_configs/corpus``: v0.1.12's 214, see its README) as the
compatibility corpus (issue 16 item 1): every file loads or is refused by name, and every file that loads
runs to a final answer against wire-level fakes of its providers.

MassGen runs its examples from its repository root, so the relative context paths, ``upload_files`` and
Docker ``env_file`` they name (``massgen/configs/resources/...``, ``docs/``, ``.env``) are created empty
under a temporary directory used as the working directory (files where the name ends in an extension or
starts with a dot, directories otherwise).

The run walk (``test_every_config_that_loads_runs_to_a_final_answer``) rewrites each config that loads
only where it would leave the machine, and keeps the rest of its meaning (agents, system messages,
orchestrator and timeout keys, tools, MCP servers):

- each agent's backend points at a loopback fake of its own provider type (``tests/corpus_fakes.py``; an
  ``ag2`` backend's every ``llm_config`` entry at the fake of its ``api_type``):
  :class:`~massgen_es.testing.fake_openai.FakeOpenAI` serves Chat Completions (``chatcompletion`` and
  its presets, ``local``; ``azure_openai`` on its deployment route) and the Responses API (``openai``);
  a real llmock server serves Anthropic (``claude``, and the real Claude Code CLI of ``claude_code``)
  and Gemini (``gemini``). Every fake plays the team the same way: each agent answers, votes for
  ``agent1``, and the winner presents; no fake calls an MCP tool (the servers are started and their
  tools offered to the model). API-key variables hold a dummy key. Claude Code refuses
  ``permission_mode: bypassPermissions`` as root outside a sandbox it is told about, so when the tests
  run as root (CI's containers) ``IS_SANDBOX=1`` tells it this machine is one;
- an ``upload_files`` entry that names a URL (``https://cdn.openai.com/API/docs/audio/alloy.wav``) is
  pointed at a loopback :class:`~corpus_fakes.UploadServer` (``http://127.0.0.1:PORT/cdn.openai.com/API/...``),
  which answers a small file of the type the path says: the run downloads it at submit and attaches it
  as MassGen's would;
- a Docker sandbox gets no network (``command_line_docker_network_mode: none``) and no
  ``command_line_docker_packages`` (their preinstall would download from an index); its credential mounts
  and environment are kept;
- MCP servers run for real when they can without the network: a stdio server whose command is installed
  is started as written (the corpus's ``python -m massgen.tests.…`` servers then fail to start, since
  MassGen is not installed here, and the run must go on without their tools, as MassGen's does), and a
  ``streamable-http`` server on a loopback URL is kept (nothing of ours listens there: the same failure
  path). The table lists every server that failed to start while its run went on.
  A server that would reach the network is removed from the rewritten config and counted in the table:
  one run by a package runner (``npx``, ``uvx``, ``pipx``, ``bunx``: none of the corpus's packages is
  installed here, so they would be downloaded), one whose command is not installed, and one at a
  non-loopback URL.
- the ``memory`` block (MassGen spec §5.4) keeps its meaning (persistent memory with mem0, compression,
  retrieval), but the store and the memory models stay on the machine: ``qdrant.mode: server`` (a Qdrant
  at localhost:6333, which nobody runs here) becomes ``local`` (Qdrant in-process, in the checkout's
  ``.massgen/qdrant``), and mem0's LLM and embedder (``persistent_memory.llm``/``embedding``) point at
  FakeOpenAI (:func:`corpus_fakes.memory_llm` extracts the facts; embeddings are word hashes).

All runs share one stack: a nats-server of their own and the services in-process (orchestrator, agent
workers, MCP broker, executor), a few runs at a time.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from corpus_fakes import ScriptedLLMock, UploadServer, memory_llm, openai_member
from harness import Stack, of
from massgen_es import ag2, backends, models
from massgen_es.config import Config, load_config
from massgen_es.errors import ConfigError
from massgen_es.events import (
    MemoryRetrieved,
    MemoryStored,
    QuestionParaphrased,
    RunCompleted,
    RunFailed,
    RunSubmitted,
    ToolsListed,
)
from massgen_es.testing.fake_openai import FakeOpenAI

CORPUS = Path(__file__).parent / "massgen_configs" / "corpus"
FILES = sorted(CORPUS.rglob("*.yaml"))
LOADING_FLOOR = 212
"""Configs of the corpus that load today; raise it whenever more load (never lower it)."""
RUNS_AT_ONCE = 4
"""Runs in flight at once: the walk is CPU-bound on 2 cores (4 and 6 both took 137 s for 78 configs;
112 took 140 s at 4)."""
RUN_TIMEOUT_S = 120.0
FAKE_KEY = "corpus-fake-key"

LLMOCK_PROVIDER = {"claude": "anthropic", "claude_code": "anthropic", "gemini": "gemini"}
"""Backend types served by llmock, with llmock's provider path; every other type is served by FakeOpenAI
(``openai`` on its Responses route, the rest on Chat Completions)."""
PACKAGE_RUNNERS = frozenset({"npx", "uvx", "pipx", "bunx"})
CLAUDE_CODE_QUIET = ("DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "DISABLE_AUTOUPDATER",
                     "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC")


def rel(path: Path) -> str:
    return str(path.relative_to(CORPUS))


UPLOAD_KEYS = ("image_path", "audio_path", "video_path", "file_path")


def _resource_paths(node: Any) -> Iterator[str]:
    """The paths a config names as ``context_paths`` or ``upload_files`` entries, or as a Docker sandbox's
    ``env_file``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env_file" and isinstance(value, str):
                yield value
            elif key in ("context_paths", "upload_files") and isinstance(value, list):
                for e in (e for e in value if isinstance(e, dict)):
                    yield from (v for k, v in e.items() if k in ("path", *UPLOAD_KEYS) and isinstance(v, str)
                                and "://" not in v)
            else:
                yield from _resource_paths(value)
    elif isinstance(node, list):
        for item in node:
            yield from _resource_paths(item)


def _upload_urls(node: Any) -> Iterator[str]:
    """The URLs a config names as ``upload_files`` entries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "upload_files" and isinstance(value, list):
                yield from (v for e in value if isinstance(e, dict) for k, v in e.items()
                            if k in UPLOAD_KEYS and isinstance(v, str) and "://" in v)
            else:
                yield from _upload_urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _upload_urls(item)


@pytest.fixture(scope="module")
def massgen_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory that looks like a MassGen checkout: every relative context path and uploaded
    file the corpus names exists (empty), and its default skills directory holds one skill."""
    root = tmp_path_factory.mktemp("massgen-checkout")
    names = {n for f in FILES for n in _resource_paths(yaml.safe_load(f.read_text()))}
    for name in sorted(n for n in names if not (Path(n).is_absolute() or n.startswith("~"))):
        target = root / name
        if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,4}", target.suffix) or target.name.startswith("."):  # a file
            # (`v0.0.21-example` is not; `.env` is)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        else:
            target.mkdir(parents=True, exist_ok=True)
    skill = root / ".agent" / "skills" / "corpus-notes" / "SKILL.md"  # MassGen's default skills_directory
    skill.parent.mkdir(parents=True)
    skill.write_text("---\nname: corpus-notes\ndescription: How to take notes\n---\nWrite them down.\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        yield root


@dataclass
class Census:
    loaded: dict[str, Config]
    refused: dict[str, str]
    """File -> the ConfigError's message (without the file name it starts with)."""
    crashed: dict[str, str]


@pytest.fixture(scope="module")
def census(massgen_root: Path) -> Census:
    out = Census({}, {}, {})
    for f in FILES:
        try:
            out.loaded[rel(f)] = load_config(f)
        except ConfigError as exc:
            out.refused[rel(f)] = str(exc).removeprefix(f"{f}: ")
        except Exception:  # noqa: BLE001 - the census reports every crash, not just the first
            out.crashed[rel(f)] = traceback.format_exc(limit=3)
    return out


def _grouped(refused: dict[str, str]) -> list[tuple[int, str]]:
    groups = collections.Counter(re.sub(r"\[\d+\]", "[i]", m) for m in refused.values())
    return sorted(((n, m) for m, n in groups.items()), reverse=True)


def test_the_corpus_is_massgens_whole_example_set():
    assert len(FILES) == 214
    assert (CORPUS / "README.md").exists()


def test_loading_census(census: Census, capsys: pytest.CaptureFixture[str]):
    """Every file loads or is refused with a ConfigError (nothing crashes); the share that loads never
    drops below :data:`LOADING_FLOOR`."""
    with capsys.disabled():
        print(f"\ncorpus census: {len(census.loaded)} of {len(FILES)} load "
              f"({len(census.loaded) / len(FILES):.0%}); {len(census.refused)} refused; {len(census.crashed)} crashed")
        for n, message in _grouped(census.refused):
            print(f"  {n:3d}  {message}")
    assert not census.crashed, "\n".join(f"{k}:\n{v}" for k, v in census.crashed.items())
    assert len(census.loaded) >= LOADING_FLOOR, f"only {len(census.loaded)} load; the floor is {LOADING_FLOOR}"


def test_every_refusal_names_its_key(census: Census):
    """A refusal quotes the key it refuses (a path like ``agents[0].backend.custom_tools``) in backticks."""
    unnamed = {f: m for f, m in census.refused.items() if not re.search(r"`[A-Za-z_][\w.\[\]-]*`", m)}
    assert not unnamed, unnamed


def test_no_refusal_calls_a_massgen_key_a_typo(census: Census):
    """Every key of the corpus is one MassGen documents (these are its own examples), so no refusal may
    suggest it is misspelt: it is renamed, ignored with a warning, or refused as a feature we lack."""
    typos = {f: m for f, m in census.refused.items() if "check its spelling" in m}
    assert not typos, "\n".join(f"{n:3d}  {m}" for n, m in _grouped(typos))


# ---------------------------------------------------------------- the run walk


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def network_reason(server: dict[str, Any]) -> str | None:
    """Why starting ``server`` (an ``mcp_servers`` entry) would reach the network, or None."""
    if server.get("type", "stdio") != "stdio":
        url = str(server.get("url") or "")
        return None if _loopback(url) else f"non-loopback URL {url}"
    command = server.get("command")
    name = command[0] if isinstance(command, list) and command else command
    if not isinstance(name, str):
        return None  # invalid; the config would not have loaded
    base = Path(name.split()[0]).name
    if base in PACKAGE_RUNNERS:
        package = next((a for a in server.get("args") or () if not str(a).startswith("-")), "?")
        return f"{base} would download {package}"
    if shutil.which(name.split()[0]) is None:
        return f"command {name!r} is not installed"
    return None


def _servers(backend: dict[str, Any]) -> list[dict[str, Any]]:
    servers = backend.get("mcp_servers") or []
    if isinstance(servers, dict):  # MassGen's mapping form, keyed by name
        return [{"name": k, **v} for k, v in servers.items()]
    return list(servers)


def rewrite(
    data: dict[str, Any], fake: FakeOpenAI, llm: ScriptedLLMock, uploads: str = "http://127.0.0.1:9"
) -> tuple[dict[str, Any], list[str]]:
    """The config with every backend on a loopback fake, every ``upload_files`` URL on the loopback
    ``uploads`` server (``https://host/path`` becomes ``<uploads>/host/path``), Docker sandboxes without
    network or package preinstall, and the MCP servers that would reach the network removed (returned as
    ``"<agent>/<server>: <why>"``)."""
    data = copy.deepcopy(data)
    agents = data["agents"] if isinstance(data.get("agents"), list) else [data["agent"]]
    dropped: list[str] = []
    for block in (data.get("memory"), *(a.get("memory") for a in agents)):
        persistent = block.get("persistent_memory") if isinstance(block, dict) else None
        if isinstance(persistent, dict):
            persistent["qdrant"] = {**(persistent.get("qdrant") or {}), "mode": "local"}
            for key, model in (("llm", "gpt-4.1-nano-2025-04-14"), ("embedding", "text-embedding-3-small")):
                persistent[key] = {**(persistent.get(key) or {"model": model}), "base_url": fake.base_url}
                if key == "llm":
                    fake.default(persistent[key]["model"], memory_llm)
    dspy = (data.get("orchestrator") or {}).get("dspy")
    if isinstance(dspy, dict) and isinstance(dspy.get("backend"), dict):  # the paraphrasing backend too
        _on_fakes(dspy["backend"], fake, llm)
    for agent in agents:
        b = agent["backend"]
        _on_fakes(b, fake, llm)
        if b.get("command_line_execution_mode") == "docker":
            b["command_line_docker_network_mode"] = "none"
            b.pop("command_line_docker_packages", None)
        for entry in b.get("upload_files") or ():
            for key, value in list(entry.items()):
                if key in UPLOAD_KEYS and isinstance(value, str) and "://" in value:
                    entry[key] = f"{uploads}/{value.split('://', 1)[1]}"
        if "mcp_servers" in b:
            kept = []
            for server in _servers(b):
                why = network_reason(server)
                if why is None:
                    kept.append(server)
                else:
                    dropped.append(f"{agent.get('id')}/{server.get('name')}: {why}")
            b["mcp_servers"] = kept
    return data, dropped


def _persistent_memory(data: dict[str, Any]) -> bool:
    """Whether a config turns persistent memory on (top level; MassGen spec §5.4)."""
    block = data.get("memory")
    p = block.get("persistent_memory") if isinstance(block, dict) and block.get("enabled", True) else None
    return isinstance(p, dict) and p.get("enabled", True) is not False


def _on_fakes(b: dict[str, Any], fake: FakeOpenAI, llm: ScriptedLLMock) -> None:
    """Point one backend block at its loopback fake."""
    kind = b["type"]
    if kind in ag2.TYPES:
        for entry in _ag2_entries(b):
            ours = ag2.API_TYPES[entry.get("api_type", "openai")]
            if ours in LLMOCK_PROVIDER:
                entry["base_url"] = llm.base_url(LLMOCK_PROVIDER[ours])
            else:
                entry["base_url"] = fake.base_url
                fake.default(entry["model"], openai_member)
    elif kind in LLMOCK_PROVIDER:
        b["base_url"] = llm.base_url(LLMOCK_PROVIDER[kind])
    elif kind == "azure_openai":
        b.pop("base_url", None)
        b["azure_endpoint"] = fake.azure_endpoint
        fake.default(b["model"], openai_member)  # the deployment
    else:
        b["base_url"] = fake.base_url
        model = b.get("model") or models.get(None).name
        fake.default(model, openai_member)


def _ag2_entries(backend: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every ``llm_config`` entry of an ``ag2`` backend (its agents', the group's default and its manager's)."""
    group = backend.get("group_config") or {}
    blocks = [*ag2.agent_configs(backend), group, (group.get("pattern") or {}).get("group_manager_args") or {}]
    for block in blocks:
        yield from ag2.llm_entries(block.get("llm_config"))  # type: ignore[misc]


def _key_variables(data: dict[str, Any]) -> set[str]:
    names = set(backends.key_variables())
    agents = data["agents"] if isinstance(data.get("agents"), list) else [data["agent"]]
    for agent in agents:
        b = agent["backend"]
        if b.get("api_key_env"):
            names.add(b["api_key_env"])
        ref = re.fullmatch(r"\$\{(\w+)\}", str(b.get("api_key") or ""))
        if ref:
            names.add(ref.group(1))
    return names


@pytest.mark.parametrize(("server", "dropped"), [
    ({"name": "w", "command": "npx", "args": ["-y", "@fak111/weather-mcp"]}, "npx would download @fak111/weather-mcp"),
    ({"name": "u", "command": "uvx", "args": ["mcp-server-fetch"]}, "uvx would download mcp-server-fetch"),
    ({"name": "g", "command": "no-such-mcp-command-here"}, "command 'no-such-mcp-command-here' is not installed"),
    ({"name": "h", "type": "streamable-http", "url": "https://mcp.example.com/mcp"},
     "non-loopback URL https://mcp.example.com/mcp"),
    ({"name": "p", "command": sys.executable, "args": ["-m", "massgen.tests.mcp_test_server"]}, None),
    ({"name": "l", "type": "streamable-http", "url": "http://localhost:8000/mcp"}, None),
])
def test_the_walk_drops_only_servers_that_would_reach_the_network(server, dropped):
    assert network_reason(server) == dropped


@dataclass
class Outcome:
    name: str
    ok: bool
    seconds: float
    why: str = ""
    dropped: tuple[str, ...] = ()
    unstarted: tuple[str, ...] = ()
    """``<agent>/<server>: <failure>`` of each MCP server that failed to start (the run went on without it)."""


@pytest.mark.timeout(1200)
async def test_every_config_that_loads_runs_to_a_final_answer(
    census: Census, fresh_nats, massgen_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    only = os.environ.get("MASSGEN_CORPUS_ONLY", "")  # a path prefix: walk part of the corpus (debugging)
    raw = {name: yaml.safe_load((CORPUS / name).read_text()) for name in census.loaded if name.startswith(only)}
    for var in set().union(*map(_key_variables, raw.values())):
        monkeypatch.setenv(var, FAKE_KEY)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    for var in CLAUDE_CODE_QUIET:
        monkeypatch.setenv(var, "1")
    if os.geteuid() == 0:
        monkeypatch.setenv("IS_SANDBOX", "1")
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with FakeOpenAI(azure_api_key=FAKE_KEY) as fake, ScriptedLLMock() as llm, UploadServer() as files:
        async with Stack(fresh_nats.url) as stack:
            stack.orchestrator()
            stack.worker(concurrency=8)
            stack.broker(massgen_home)
            stack.executor(massgen_home)
            gate = asyncio.Semaphore(RUNS_AT_ONCE)

            async def walk(name: str) -> None:
                async with gate:
                    t0 = time.monotonic()
                    dropped: list[str] = []
                    try:
                        cfg, dropped = rewrite(raw[name], fake, llm, files.base_url)
                        records = await stack.wait_done(await stack.submit(cfg), RUN_TIMEOUT_S)
                    except Exception as exc:  # noqa: BLE001 - every failure goes in the table
                        why = f"{type(exc).__name__}: {exc}"
                        outcomes.append(Outcome(name, False, time.monotonic() - t0, why, tuple(dropped)))
                        return
                    completed, failed = of(records, RunCompleted), of(records, RunFailed)
                    ok = bool(completed) and bool(completed[0].final_answer.strip())
                    if ok and _persistent_memory(raw[name]):  # its memory worked: facts stored, no failure
                        stored = of(records, MemoryStored)
                        broken = [e.failure.message for e in (*stored, *of(records, MemoryRetrieved)) if e.failure]
                        if not stored or broken:
                            outcomes.append(Outcome(name, False, time.monotonic() - t0,
                                                    f"memory: {broken[:1] or 'nothing stored'}", tuple(dropped)))
                            return
                    why = "" if ok else "empty final answer" if completed else (
                        f"run.failed: {failed[0].reason}: {failed[0].failure.message if failed[0].failure else ''}"
                        if failed else "ended without a final answer: " + ", ".join(
                            f"{r.type}({getattr(r.event, 'agent_id', '')})" for r in records[-6:]))
                    if ok and ((cfg.get("orchestrator") or {}).get("dspy") or {}).get("enabled") and not any(
                            any(e.variants) for e in of(records, QuestionParaphrased)):
                        ok, why = False, "orchestrator.dspy is enabled but no paraphrase was made"
                    coordination = ((cfg.get("orchestrator") or {}).get("coordination") or {})
                    agents = [a for e in of(records, RunSubmitted) for a in e.agents]
                    if ok and coordination.get("use_skills") and not (agents and all(
                            "- corpus-notes: How to take notes" in a.system_message for a in agents)):
                        ok, why = False, "use_skills is on but the agents were offered no skill"
                    unstarted = sorted({f"{e.agent_id}/{e.server}: {e.failure.message}"
                                        for e in of(records, ToolsListed) if e.failure is not None})
                    outcomes.append(Outcome(name, ok, time.monotonic() - t0, why, tuple(dropped), tuple(unstarted)))

            await asyncio.gather(*(walk(name) for name in sorted(raw)))
    wall = time.monotonic() - started
    bad = [o for o in outcomes if not o.ok]
    with capsys.disabled():
        print(f"\ncorpus run walk: {len(raw)} loaded, {len(outcomes) - len(bad)} ran to a final answer, "
              f"{len(bad)} failed; {wall:.0f} s wall ({RUNS_AT_ONCE} at a time); LLM requests: "
              f"{len(fake.received())} to FakeOpenAI, {llm.requests('anthropic')} Anthropic and "
              f"{llm.requests('gemini')} Gemini to llmock")
        for o in sorted(outcomes, key=lambda o: o.name):
            print(f"  {'ok  ' if o.ok else 'FAIL'} {o.seconds:6.1f} s  {o.name}" + (f"  -- {o.why}" if o.why else ""))
            for d in o.dropped:
                print(f"           dropped MCP server {d}")
            for u in o.unstarted:
                print(f"           MCP server failed to start, run went on: {u[:160]}")
        print(f"  MCP servers dropped: {sum(len(o.dropped) for o in outcomes)}; failed to start: "
              f"{sum(len(o.unstarted) for o in outcomes)}")
    assert len(outcomes) == len(raw)
    url_uploads = [v for data in raw.values() for v in _upload_urls(data)]
    assert len(files.requests) >= len(url_uploads), (files.requests, url_uploads)  # each URL was downloaded
    assert not bad, "configs that load but did not run to a final answer:\n" + "\n".join(
        f"{o.name}: {o.why}" for o in bad)
