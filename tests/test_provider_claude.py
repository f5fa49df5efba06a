"""The ``claude`` adapter, driven through the real ``anthropic`` SDK over loopback HTTP.

Most tests talk to ``llmock`` (its Anthropic endpoint, scripted replies, faults and request journal).
Usage with cache and thinking counts, and ``error`` events inside a stream, which llmock does not
produce, come from a minimal SSE server of this file on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from llmock.scenarios import Reply
from llmock.scenarios import ToolCall as MockToolCall

import provider_kit
from massgen_agent_worker.providers import claude
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
)
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested, Usage
from provider_kit import Recorder

KEY_ENV = "MASSGEN_TEST_CLAUDE_KEY"
MODEL = "claude-sonnet-4-6"

NEW_ANSWER = ToolSpec(
    name="new_answer",
    description="Provide an improved answer to the ORIGINAL MESSAGE",
    parameters={"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]},
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


def backend(base_url: str, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> BackendConfig:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")
    raw = {
        "type": "claude", "model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV,
        "request_timeout_seconds": 10, "connect_timeout_seconds": 2, **extra,
    }
    return msgspec.convert(raw, BackendConfig)


def turn(messages: tuple[Message, ...] = PROMPT, tools: tuple[ToolSpec, ...] = ()) -> TurnRequested:
    return provider_kit.turn(messages, tools)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def sse_server(
    events: list[tuple[str, dict[str, Any]]], seen: list[dict[str, Any]] | None = None
) -> AsyncIterator[str]:
    """A one-shot Anthropic-shaped SSE endpoint on loopback; yields its base URL. Each request's
    lower-cased headers and JSON body are appended to ``seen``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(
            line.decode("latin-1").lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
        )
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        if seen is not None:
            seen.append({"headers": headers, "body": json.loads(raw)})
        body = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode() + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def message_start(**usage: int) -> tuple[str, dict[str, Any]]:
    return ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": MODEL,
        "stop_reason": None, "stop_sequence": None, "usage": {"output_tokens": 1, **usage},
    }})


def text_block(index: int, *pieces: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": {"type": "text", "text": ""}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": index,
                                   "delta": {"type": "text_delta", "text": p}}) for p in pieces),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


# -- streaming text -------------------------------------------------------------------------------


async def test_streamed_text_reaches_on_text_in_order_and_equals_content(llmock, monkeypatch):
    answer = "Six times seven is forty-two, which is the answer to the question you asked."
    llmock.reply(answer)
    on_text = Recorder()
    done = await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), on_text)
    assert len(on_text.text) > 1, "the reply should arrive as several deltas"
    assert "".join(on_text.text) == done.content == answer
    assert done.tool_calls == ()
    assert (done.finish_reason, done.model) == ("end_turn", MODEL)
    assert done.time_to_first_token_s is not None
    body = llmock.last_request.body
    assert body["stream"] is True and body["max_tokens"] == 4096
    assert body["system"] == "You are agent A.\n\nBe brief."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "What is 6 times 7?"}]}]
    assert "tools" not in body and "thinking" not in body


async def test_sdk_client_is_reused_within_a_loop(llmock, monkeypatch):
    cfg = backend(llmock.base_url("anthropic"), monkeypatch)
    assert claude._client(cfg) is claude._client(cfg)


# -- tool calls -----------------------------------------------------------------------------------


async def test_scripted_tool_calls_come_back_as_neutral_tool_calls_with_json_arguments(llmock, monkeypatch):
    llmock.add(Reply(tool_calls=(
        MockToolCall("mcp__fs__read_file", {"path": "notes/today.txt"}),
        MockToolCall("new_answer", {"content": "The answer is 42."}),
    )))
    on_text = Recorder()
    done = await claude.complete(
        backend(llmock.base_url("anthropic"), monkeypatch), turn(tools=(NEW_ANSWER, READ_FILE)), on_text
    )
    assert [c.name for c in done.tool_calls] == ["mcp__fs__read_file", "new_answer"]
    assert [json.loads(c.arguments) for c in done.tool_calls] == [
        {"path": "notes/today.txt"}, {"content": "The answer is 42."},
    ]
    assert all(c.id.startswith("toolu_") for c in done.tool_calls)
    assert len({c.id for c in done.tool_calls}) == 2
    assert done.finish_reason == "tool_use"
    assert done.content == "" and on_text.text == []
    assert "" in on_text.calls, "tool-input deltas must be reported as progress with on_text('')"
    assert llmock.last_request.body["tools"] == [
        {"name": "new_answer", "description": NEW_ANSWER.description, "input_schema": NEW_ANSWER.parameters},
        {"name": "mcp__fs__read_file", "description": READ_FILE.description, "input_schema": READ_FILE.parameters},
    ]


async def test_tool_result_round_trip_sends_tool_use_and_tool_result_blocks(llmock, monkeypatch):
    llmock.reply("The file says hello; the answer is 42.")
    history = PROMPT + (
        Message(role="assistant", content="Let me read both files.", tool_calls=(
            ToolCall(id="toolu_a", name="mcp__fs__read_file", arguments='{"path": "a.txt"}'),
            ToolCall(id="toolu_b", name="mcp__fs__read_file", arguments='{"path": "b.txt"}'),
        )),
        Message(role="tool", tool_call_id="toolu_a", content="hello"),
        Message(role="tool", tool_call_id="toolu_b", content="world"),
    )
    done = await claude.complete(
        backend(llmock.base_url("anthropic"), monkeypatch), turn(history, (NEW_ANSWER, READ_FILE)), Recorder()
    )
    assert done.content == "The file says hello; the answer is 42."
    assert done.finish_reason == "end_turn"
    assert llmock.last_request.status == 200
    assert llmock.last_request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is 6 times 7?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me read both files."},
            {"type": "tool_use", "id": "toolu_a", "name": "mcp__fs__read_file", "input": {"path": "a.txt"}},
            {"type": "tool_use", "id": "toolu_b", "name": "mcp__fs__read_file", "input": {"path": "b.txt"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "hello"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "world"},
        ]},
    ]


def test_unparseable_tool_arguments_become_empty_input_and_a_text_note():
    _, messages = claude.convert_messages((
        Message(role="user", content="go"),
        Message(role="assistant", tool_calls=(ToolCall(id="toolu_x", name="new_answer", arguments='{"content": "4'),)),
    ))
    blocks = messages[1]["content"]
    assert blocks[-1] == {"type": "tool_use", "id": "toolu_x", "name": "new_answer", "input": {}}
    assert blocks[0]["type"] == "text" and '{"content": "4' in blocks[0]["text"]


def test_consecutive_same_role_messages_are_merged_with_tool_results_first():
    system, messages = claude.convert_messages((
        Message(role="user", content="first"),
        Message(role="user", content="second"),
        Message(role="assistant", content="", tool_calls=(ToolCall(id="t1", name="x", arguments="{}"),)),
        Message(role="user", content="also this"),
        Message(role="tool", tool_call_id="t1", content="result"),
    ))
    assert system == ""
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["text"] for b in messages[0]["content"]] == ["first", "second"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text"]


# -- parameters -----------------------------------------------------------------------------------


async def test_thinking_sampling_extra_body_and_server_tools_reach_the_request(llmock, monkeypatch):
    llmock.reply("ok")
    cfg = backend(
        llmock.base_url("anthropic"), monkeypatch, max_tokens=2048, temperature=1.0, top_p=0.95,
        thinking={"type": "enabled", "budget_tokens": 1024}, extra_body={"top_k": 5},
        enable_web_search=True, enable_code_execution=True,
    )
    await claude.complete(cfg, turn(tools=(NEW_ANSWER,)), Recorder())
    body = llmock.last_request.body
    assert body["max_tokens"] == 2048
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert (body["temperature"], body["top_p"], body["top_k"]) == (1.0, 0.95, 5)
    assert body["tools"][1:] == [
        {"type": "web_search_20250305", "name": "web_search"},
        {"type": "code_execution_20250825", "name": "code_execution"},
    ]


async def test_code_execution_needs_no_beta_header(monkeypatch):
    seen: list[dict[str, Any]] = []
    events = [message_start(input_tokens=5), *text_block(0, "ok"),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 1}}),
              ("message_stop", {"type": "message_stop"})]
    async with sse_server(events, seen) as url:
        await claude.complete(backend(url, monkeypatch, enable_code_execution=True), turn(), Recorder())
    assert seen[0]["body"]["tools"] == [{"type": "code_execution_20250825", "name": "code_execution"}]
    assert seen[0]["headers"]["authorization"].endswith("sk-ant-test"), "the key comes from api_key_env"
    assert "anthropic-beta" not in seen[0]["headers"]


async def test_thinking_budget_not_below_max_tokens_is_a_config_error(llmock, monkeypatch):
    cfg = backend(llmock.base_url("anthropic"), monkeypatch, max_tokens=2000,
                  thinking={"type": "enabled", "budget_tokens": 2000})
    with pytest.raises(ConfigError, match=r"backend\.thinking\.budget_tokens"):
        await claude.complete(cfg, turn(), Recorder())
    assert llmock.requests == []


def test_thinking_is_left_out_when_continuing_a_tool_loop(monkeypatch):
    cfg = backend("http://127.0.0.1:9", monkeypatch, thinking={"type": "enabled", "budget_tokens": 1024})
    history = PROMPT + (
        Message(role="assistant", tool_calls=(ToolCall(id="t1", name="mcp__fs__read_file", arguments="{}"),)),
        Message(role="tool", tool_call_id="t1", content="data"),
    )
    assert "thinking" in claude.request_params(cfg, turn())
    assert "thinking" not in claude.request_params(cfg, turn(history))


async def test_missing_api_key_is_a_config_error(llmock, monkeypatch):
    cfg = backend(llmock.base_url("anthropic"), monkeypatch)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        await claude.complete(cfg, turn(), Recorder())


# -- usage ----------------------------------------------------------------------------------------


async def test_usage_is_mapped_from_the_stream(llmock, monkeypatch):
    llmock.reply("forty-two")
    done = await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert done.usage.cached_tokens == 0


async def test_usage_counts_cache_and_thinking_tokens_and_thinking_is_not_content(monkeypatch):
    events = [
        message_start(input_tokens=5, cache_read_input_tokens=100, cache_creation_input_tokens=20),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "secret reasoning"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *text_block(1, "Forty", "-two."),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 42, "output_tokens_details": {"thinking_tokens": 30}}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    on_text = Recorder()
    async with sse_server(events) as url:
        done = await claude.complete(backend(url, monkeypatch), turn(), on_text)
    assert done.content == "Forty-two." and "secret" not in done.content
    assert on_text.calls == ["", "", "Forty", "-two."]
    assert done.usage == Usage(input_tokens=125, output_tokens=42, cached_tokens=100, reasoning_tokens=30)


# -- errors ---------------------------------------------------------------------------------------


async def test_429_with_retry_after_is_rate_limited_with_retry_after_s(llmock, monkeypatch):
    llmock.rate_limit(retry_after=2.5)
    with pytest.raises(ProviderRateLimited) as caught:
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())
    assert caught.value.retryable and caught.value.status == 429
    assert caught.value.retry_after_s == 2.5
    assert len(llmock.requests) == 1, "the SDK must not retry on its own"


async def test_401_is_an_auth_error_and_not_retryable(llmock, monkeypatch):
    llmock.fail(401)
    with pytest.raises(ProviderAuthError) as caught:
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())
    assert not caught.value.retryable and caught.value.status == 401


@pytest.mark.parametrize("status", [500, 529])
async def test_5xx_and_overloaded_are_retryable_server_errors(llmock, monkeypatch, status):
    llmock.fail(status)
    with pytest.raises(ProviderServerError) as caught:
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())
    assert caught.value.retryable and caught.value.status == status
    assert len(llmock.requests) == 1, "the SDK must not retry on its own"


async def test_unreachable_port_is_a_connection_error(monkeypatch):
    cfg = backend(f"http://127.0.0.1:{free_port()}/anthropic", monkeypatch)
    with pytest.raises(ProviderConnectionError) as caught:
        await claude.complete(cfg, turn(), Recorder())
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("error_type", "expected", "status"),
    [
        ("overloaded_error", ProviderServerError, 529),
        ("rate_limit_error", ProviderRateLimited, 429),
        ("invalid_request_error", ProviderBadRequest, 400),
    ],
)
async def test_error_event_mid_stream_maps_by_its_error_type(monkeypatch, error_type, expected, status):
    events = [
        message_start(input_tokens=5),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Partial"}}),
        ("error", {"type": "error", "error": {"type": error_type, "message": "boom"}}),
    ]
    on_text = Recorder()
    async with sse_server(events) as url:
        with pytest.raises(expected) as caught:
            await claude.complete(backend(url, monkeypatch), turn(), on_text)
    assert type(caught.value) is expected and caught.value.status == status
    assert caught.value.retryable == (expected is not ProviderBadRequest)
    assert on_text.text == ["Partial"]


async def test_connection_dropped_mid_stream_is_a_connection_error(llmock, monkeypatch):
    llmock.reply("a reply long enough to be cut in the middle of its stream").disconnect(after_chunks=3)
    with pytest.raises(ProviderConnectionError):
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())


async def test_truncated_stream_is_not_taken_as_a_full_answer(llmock, monkeypatch):
    llmock.reply("a reply long enough to be cut in the middle of its stream").truncate(after_chunks=3)
    with pytest.raises(ProviderConnectionError, match="message_stop"):
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())


async def test_malformed_stream_event_is_a_retryable_server_error(llmock, monkeypatch):
    llmock.reply("a reply long enough to be cut in the middle of its stream").corrupt(after_chunks=3)
    with pytest.raises(ProviderServerError) as caught:
        await claude.complete(backend(llmock.base_url("anthropic"), monkeypatch), turn(), Recorder())
    assert caught.value.retryable
