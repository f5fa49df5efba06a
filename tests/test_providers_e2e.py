"""Every provider family through the whole system: the services in-process on a real nats-server, each
adapter's official SDK over HTTP against ``llmock``, and an MCP tool from the broker (the seeds' "MCP
for all backends"). Also: the example configs validate, and keys a backend cannot honour are refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from harness import Stack, of
from massgen_es.config import load_config, parse_config
from massgen_es.errors import ConfigError
from massgen_es.events import RunCompleted, ToolCallCompleted, UsageRecorded

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
TOOL_SERVER = str(Path(__file__).parent / "mcp_servers" / "tool_server.py")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_validates(path: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # context paths in examples are relative to where massgen runs
    cfg = load_config(path)
    assert cfg.team, path


def test_every_provider_family_has_an_example():
    types = {a["backend"]["type"] for p in EXAMPLES for a in yaml.safe_load(p.read_text())["agents"]}
    assert {"openai", "claude", "gemini", "azure_openai", "claude_code", "grok", "groq", "vllm", "local"} <= types


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ({"type": "groq", "model": "m", "enable_web_search": True}, "enable_web_search"),
        ({"type": "openai", "model": "m", "thinking": {"budget_tokens": 512}}, "thinking"),
        ({"type": "claude", "model": "m", "reasoning": {"effort": "high"}}, "reasoning"),
        ({"type": "gemini", "model": "m", "api_version": "2024-01-01"}, "api_version"),
    ],
)
def test_keys_a_backend_cannot_honour_are_refused_by_name(backend, key):
    with pytest.raises(ConfigError, match=rf"`agents\[0\]\.backend\.{key}`"):
        parse_config({"agents": [{"id": "a", "backend": backend}]})


BACKENDS = {
    "openai": lambda mock: {"type": "openai", "model": "gpt-4o-mini", "base_url": mock.base_url("openai")},
    "claude": lambda mock: {"type": "claude", "model": "claude-haiku-4-5", "base_url": mock.base_url("anthropic")},
    "gemini": lambda mock: {"type": "gemini", "model": "gemini-2.5-flash", "base_url": mock.base_url("gemini")},
    "chatcompletion": lambda mock: {"type": "chatcompletion", "model": "gpt-4o", "base_url": mock.base_url("openai"),
                                    "api_key_env": "OPENAI_API_KEY"},
}


@pytest.mark.parametrize("kind", sorted(BACKENDS))
async def test_backend_runs_a_round_with_an_mcp_tool(kind, llmock, fresh_nats, tmp_path, massgen_home):
    backend = BACKENDS[kind](llmock)
    backend["mcp_servers"] = [{"name": "t", "command": sys.executable, "args": [TOOL_SERVER]}]
    cfg = {"agents": [{"id": "solo", "backend": backend}]}
    (llmock.call_tool("mcp__t__echo", {"text": f"hello from {kind}"})
        .call_tool("new_answer", {"content": "the answer"})
        .call_tool("vote", {"agent_id": "agent1", "reason": "only answer"})
        .reply("FINAL: the answer"))
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        records = await stack.wait_done(await stack.submit(cfg), 60)
    [done] = of(records, ToolCallCompleted)
    assert done.content == f"echo: hello from {kind}"
    [completed] = of(records, RunCompleted)
    assert completed.final_answer.startswith("FINAL")
    # The tool result went back to the model in the provider's own shape.
    bodies = [str(r.body) for r in llmock.requests]
    assert any(f"echo: hello from {kind}" in b for b in bodies)
    usage = of(records, UsageRecorded)
    assert len(usage) == 4 and all(u.cost_usd is not None and u.cost_usd >= 0 for u in usage)


async def test_claude_code_runs_a_round_with_an_mcp_tool(llmock, fresh_nats, tmp_path, massgen_home, monkeypatch):
    from llmock.scenarios import Match, Reply, ToolCall

    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    for name in ("DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "DISABLE_AUTOUPDATER",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"):
        monkeypatch.setenv(name, "1")
    llmock.tool_mode("off")
    backend = {"type": "claude_code", "model": "claude-haiku-4-5", "base_url": llmock.base_url("anthropic"),
               "mcp_servers": [{"name": "t", "command": sys.executable, "args": [TOOL_SERVER]}]}
    main_loop = Match(provider="anthropic", tools=True)  # Claude Code's side requests offer no tools

    def call(name: str, args: dict) -> Reply:
        return Reply(tool_calls=(ToolCall(name, args),), times=1, match=main_loop)

    llmock.add(
        call("mcp__massgen__t__echo", {"text": "hello from claude code"}),
        call("mcp__massgen__new_answer", {"content": "the answer"}),
        Reply(text="done", times=1, match=main_loop),
        call("mcp__massgen__vote", {"agent_id": "agent1", "reason": "only answer"}),
        Reply(text="done", times=1, match=main_loop),
    )
    llmock.reply("FINAL: the answer")
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        records = await stack.wait_done(await stack.submit({"agents": [{"id": "cc", "backend": backend}]}), 90)
    [done] = of(records, ToolCallCompleted)
    assert done.content == "echo: hello from claude code"
    [completed] = of(records, RunCompleted)
    assert "the answer" in completed.final_answer
