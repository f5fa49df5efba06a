"""The ``claude_code`` adapter, driving the real Claude Code CLI (2.1.330) through ``claude-agent-sdk``.

The CLI is pointed at ``llmock``'s Anthropic endpoint on 127.0.0.1 (``ANTHROPIC_BASE_URL`` from
``backend.base_url``): llmock plays the model (scripted ``tool_use`` and text replies, HTTP faults)
and its journal shows what Claude Code sent it. Claude Code runs its own tool loop, so a scripted
``mcp__massgen__*`` call really goes CLI → SDK MCP server → our handler → back to the model.

Every test runs the CLI with its own ``CLAUDE_CONFIG_DIR`` and with telemetry, error reporting,
auto-update and other non-essential traffic disabled, so nothing leaves the loopback interface.
The CLI must be installed: ``npm install -q --no-fund --no-audit --prefix .venv/claude-code
@anthropic-ai/claude-code@2.1.330`` (part of the project setup).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from llmock.scenarios import Delay, Match, Reply
from llmock.scenarios import ToolCall as MockToolCall

import provider_kit
from massgen_agent_worker.providers import claude_code
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeout,
)
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested
from provider_kit import Recorder

KEY_ENV = "MASSGEN_TEST_CLAUDE_CODE_KEY"
MODEL = "claude-sonnet-4-5"

NEW_ANSWER = ToolSpec(
    name="new_answer",
    description="Provide an improved answer to the ORIGINAL MESSAGE",
    parameters={"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]},
)
VOTE = ToolSpec(
    name="vote",
    description="Vote for the best agent",
    parameters={
        "type": "object",
        "properties": {"agent_id": {"type": "string", "enum": ["agent1"]}, "reason": {"type": "string"}},
        "required": ["agent_id", "reason"],
    },
)
READ_FILE = ToolSpec(
    name="mcp__fs__read_file",
    description="Read a file of the workspace",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
PROMPT = (
    Message(role="system", content="You are agent A."),
    Message(role="system", content="Be brief."),
    Message(role="user", content="What is 6 times 7?"),
)
# Only the agent loop's requests offer tools; scripted replies wait for one of those.
MAIN_LOOP = Match(provider="anthropic", tools=True)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llmock) -> Any:
    """An isolated, quiet CLI environment, and llmock answering in plain text unless scripted."""
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
    for name in ("DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "DISABLE_AUTOUPDATER",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")
    monkeypatch.delenv(claude_code.CLI_ENV, raising=False)
    llmock.tool_mode("off")
    return llmock


def backend(base_url: str, tmp_path: Path, **extra: Any) -> BackendConfig:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    raw = {
        "type": "claude_code", "model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV,
        "cwd": str(workspace), "request_timeout_seconds": 60, **extra,
    }
    return msgspec.convert(raw, BackendConfig)


def turn(messages: tuple[Message, ...] = PROMPT, tools: tuple[ToolSpec, ...] = (NEW_ANSWER, VOTE)) -> TurnRequested:
    return provider_kit.turn(messages, tools)


def message_requests(llmock) -> list[dict[str, Any]]:
    """Bodies of the ``/v1/messages`` requests Claude Code made, in order."""
    return [r.body for r in llmock.requests if r.path.endswith("/v1/messages") and isinstance(r.body, dict)]


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for m in body["messages"] if isinstance(m["content"], list)
        for block in m["content"] if block.get("type") == "tool_result"
    ]


def result_text(block: dict[str, Any]) -> str:
    """A ``tool_result``'s text, without the ``<system-reminder>`` Claude Code appends to it."""
    content = block.get("content")
    text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content or ())
    return text.split("\n<system-reminder>")[0]


def cli_children() -> list[int]:
    """Pids of live child processes of this test process that run the Claude Code CLI."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"claude" in cmdline:
            pids.append(int(entry.name))
    return pids


async def test_workflow_decision_comes_back_as_a_neutral_new_answer_call(cli_env, tmp_path: Path) -> None:
    cli_env.add(
        Reply(tool_calls=(MockToolCall("mcp__massgen__new_answer", {"content": "42"}),), match=MAIN_LOOP),
        Reply(text="Submitted.", match=MAIN_LOOP),
    )
    on_text = Recorder()

    result = await claude_code.complete(backend(cli_env.base_url("anthropic"), tmp_path), turn(), on_text)

    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("new_answer", {"content": "42"})]
    first, second = message_requests(cli_env)
    assert result.tool_calls[0].id.startswith("toolu_")  # Claude Code's own tool_use id, not a made-up one
    assert [b["tool_use_id"] for b in tool_results(second)] == [result.tool_calls[0].id]
    assert [result_text(b) for b in tool_results(second)] == [claude_code.RECORDED]
    # what Claude Code was given: our system prompt, the question, our tools with their schemas
    assert "You are agent A.\n\nBe brief." in [block["text"] for block in first["system"]]
    assert "What is 6 times 7?" in json.dumps(first["messages"][-1])
    offered = {t["name"]: t for t in first["tools"]}
    assert offered["mcp__massgen__new_answer"]["input_schema"] == NEW_ANSWER.parameters
    assert offered["mcp__massgen__vote"]["input_schema"] == VOTE.parameters
    assert result.content == "Submitted."
    assert result.finish_reason == "end_turn"
    assert result.model == MODEL
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0


async def test_mcp_tool_call_goes_through_run_tool_and_its_result_reaches_the_model(cli_env, tmp_path: Path) -> None:
    cli_env.add(
        Reply(tool_calls=(MockToolCall("mcp__massgen__fs__read_file", {"path": "notes.txt"}),), match=MAIN_LOOP),
        Reply(tool_calls=(MockToolCall("mcp__massgen__new_answer", {"content": "the notes say 1234"}),),
              match=MAIN_LOOP),
        Reply(text="Done.", match=MAIN_LOOP),
    )
    executed: list[ToolCall] = []

    async def run_tool(call: ToolCall) -> str:
        executed.append(call)
        return "notes.txt contains: secret-1234"

    result = await claude_code.complete(
        backend(cli_env.base_url("anthropic"), tmp_path), turn(tools=(NEW_ANSWER, READ_FILE)), Recorder(), run_tool
    )

    assert [(c.name, json.loads(c.arguments)) for c in executed] == [("mcp__fs__read_file", {"path": "notes.txt"})]
    assert executed[0].id.startswith("toolu_")
    requests = message_requests(cli_env)
    assert len(requests) == 3
    assert "mcp__massgen__fs__read_file" in {t["name"] for t in requests[0]["tools"]}
    seen = {b["tool_use_id"]: result_text(b) for b in tool_results(requests[1])}
    assert seen == {executed[0].id: "notes.txt contains: secret-1234"}
    # the MCP call was Claude Code's business; only the workflow decision comes back
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("new_answer", {"content": "the notes say 1234"})
    ]


async def test_mcp_tool_without_a_broker_answers_the_model_with_an_error(cli_env, tmp_path: Path) -> None:
    cli_env.add(
        Reply(tool_calls=(MockToolCall("mcp__massgen__fs__read_file", {"path": "a"}),), match=MAIN_LOOP),
        Reply(text="I could not read it.", match=MAIN_LOOP),
    )

    result = await claude_code.complete(
        backend(cli_env.base_url("anthropic"), tmp_path), turn(tools=(NEW_ANSWER, READ_FILE)), Recorder()
    )

    (block,) = tool_results(message_requests(cli_env)[1])
    assert block.get("is_error") is True
    assert "cannot be executed" in result_text(block)
    assert result.tool_calls == ()
    assert result.content == "I could not read it."


async def test_assistant_text_streams_to_on_text_in_pieces(cli_env, tmp_path: Path) -> None:
    reply = "Six times seven is forty-two, which is the answer you were looking for."
    cli_env.add(Reply(text=reply, match=MAIN_LOOP))
    on_text = Recorder()

    result = await claude_code.complete(backend(cli_env.base_url("anthropic"), tmp_path), turn(), on_text)

    assert result.content == reply
    assert "".join(on_text.text) == reply
    assert len(on_text.text) > 1  # token deltas, not one block at the end
    assert "" in on_text.calls  # the other messages and stream events are reported as progress
    assert result.tool_calls == ()
    assert result.time_to_first_token_s is not None and result.time_to_first_token_s > 0


async def test_history_reaches_claude_code_as_a_transcript(cli_env, tmp_path: Path) -> None:
    history = (
        Message(role="system", content="You are agent A."),
        Message(role="user", content="Read notes.txt"),
        Message(role="assistant", content="Reading.", tool_calls=(
            ToolCall(id="c1", name="mcp__fs__read_file", arguments='{"path": "notes.txt"}'),
        )),
        Message(role="tool", content="hello from the file", tool_call_id="c1"),
        Message(role="user", content="Now answer."),
    )
    cli_env.add(Reply(text="ok", match=MAIN_LOOP))

    await claude_code.complete(backend(cli_env.base_url("anthropic"), tmp_path), turn(messages=history), Recorder())

    sent = json.dumps(message_requests(cli_env)[0]["messages"][-1])
    prompt = claude_code.render_prompt(history)[1]
    assert json.dumps(prompt)[1:-1] in sent
    called = '[called mcp__fs__read_file with {"path": "notes.txt"}]'
    assert prompt.index("<user>\nRead notes.txt") < prompt.index(called)
    assert prompt.index("Reading.") < prompt.index('<tool_result name="mcp__fs__read_file">\nhello from the file')
    assert prompt.index("hello from the file") < prompt.index("<user>\nNow answer.\n</user>")


async def test_missing_cli_is_a_config_error_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(claude_code.CLI_ENV, str(tmp_path / "no-such-claude"))
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")

    with pytest.raises(ConfigError, match=r"npm install .*@anthropic-ai/claude-code@2\.1\.330"):
        await claude_code.complete(backend("http://127.0.0.1:9", tmp_path), turn(), Recorder())


async def test_rejected_key_is_an_auth_error(cli_env, tmp_path: Path) -> None:
    cli_env.fail(401, times=None, message="invalid x-api-key")

    with pytest.raises(ProviderAuthError):
        await claude_code.complete(backend(cli_env.base_url("anthropic"), tmp_path), turn(), Recorder())


async def test_server_error_is_retryable_and_not_retried_inside_the_cli(cli_env, tmp_path: Path) -> None:
    cli_env.fail(500, times=None)

    with pytest.raises(ProviderServerError) as info:
        await claude_code.complete(backend(cli_env.base_url("anthropic"), tmp_path), turn(), Recorder())

    assert info.value.retryable and info.value.status == 500
    assert len(message_requests(cli_env)) == 1  # retries are the worker's (CLAUDE_CODE_MAX_RETRIES=0)


async def test_unreachable_endpoint_is_a_connection_error(cli_env, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the CLI connects: refused

    with pytest.raises(ProviderConnectionError):
        await claude_code.complete(backend(f"http://127.0.0.1:{port}", tmp_path), turn(), Recorder())


async def test_request_timeout_stops_the_cli(cli_env, tmp_path: Path) -> None:
    cli_env.add(Delay(4, match=MAIN_LOOP))
    started = time.monotonic()

    with pytest.raises(ProviderTimeout, match="request_timeout_seconds"):
        await claude_code.complete(
            backend(cli_env.base_url("anthropic"), tmp_path, request_timeout_seconds=2), turn(), Recorder()
        )

    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while cli_children() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert cli_children() == []
