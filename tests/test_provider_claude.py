"""The ``claude`` adapter, driven through the real ``anthropic`` SDK over loopback HTTP.

Most tests talk to ``llmock`` (its Anthropic endpoint, scripted replies, faults and request journal).
Usage with cache and thinking counts, ``error`` events inside a stream, and ``thinking`` /
``redacted_thinking`` blocks with their signatures, which llmock does not produce, come from a minimal
SSE server of this file on 127.0.0.1 (one scripted reply per request), which also drives a whole run
through the services on a real nats-server to check the worker's tool rounds keep thinking on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from llmock.scenarios import Reply
from llmock.scenarios import ToolCall as MockToolCall

import provider_kit
from harness import Stack, of
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
from massgen_es.events import (
    Message,
    ProviderBlock,
    RunCompleted,
    ToolCall,
    ToolCallCompleted,
    ToolSpec,
    TurnRequested,
    Usage,
)
from provider_kit import Recorder

KEY_ENV = "MASSGEN_TEST_CLAUDE_KEY"
TOOL_SERVER = str(Path(__file__).parent / "mcp_servers" / "tool_server.py")
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


Events = list[tuple[str, dict[str, Any]]]
"""A streamed reply: ``(event name, data)`` pairs."""


@asynccontextmanager
async def sse_server(
    *replies: Events | Callable[[dict[str, Any]], Events], seen: list[dict[str, Any]] | None = None
) -> AsyncIterator[str]:
    """An Anthropic-shaped SSE endpoint on loopback; yields its base URL. Request ``n`` is answered with
    ``replies[n]`` (the last one once they run out), or with what a callable reply returns for the
    request's JSON body. Each request's lower-cased headers and JSON body are appended to ``seen``."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(
            line.decode("latin-1").lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
        )
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        request = json.loads(raw)
        if seen is not None:
            seen.append({"headers": headers, "body": request})
        reply = replies[min(served, len(replies) - 1)]
        served += 1
        events = reply(request) if callable(reply) else reply
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


def thinking_block(index: int, *pieces: str, signature: str) -> Events:
    """A ``thinking`` block as the API streams it: empty start, ``thinking_delta``s, one ``signature_delta``."""
    return [
        ("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": index,
                                   "delta": {"type": "thinking_delta", "thinking": p}}) for p in pieces),
        ("content_block_delta", {"type": "content_block_delta", "index": index,
                                 "delta": {"type": "signature_delta", "signature": signature}}),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def redacted_thinking_block(index: int, data: str) -> Events:
    """A ``redacted_thinking`` block: all of it in its start event, no deltas."""
    return [
        ("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": {"type": "redacted_thinking", "data": data}}),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def tool_use_block(index: int, call_id: str, name: str, *json_pieces: str) -> Events:
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": call_id, "name": name, "input": {}}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": index,
                                   "delta": {"type": "input_json_delta", "partial_json": p}}) for p in json_pieces),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def stop(reason: str, output_tokens: int = 10) -> Events:
    return [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                           "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
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


_OK_REPLY = [message_start(input_tokens=5), *text_block(0, "ok"),
             ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                "usage": {"output_tokens": 1}}),
             ("message_stop", {"type": "message_stop"})]
"""A streamed one-word text reply, for the tests that look at the request only."""


async def test_code_execution_needs_no_beta_header(monkeypatch):
    seen: list[dict[str, Any]] = []
    async with sse_server(_OK_REPLY, seen=seen) as url:
        await claude.complete(backend(url, monkeypatch, enable_code_execution=True), turn(), Recorder())
    assert seen[0]["body"]["tools"] == [{"type": "code_execution_20250825", "name": "code_execution"}]
    assert seen[0]["headers"]["authorization"].endswith("sk-ant-test"), "the key comes from api_key_env"
    assert "anthropic-beta" not in seen[0]["headers"]


async def test_massgen_betas_are_sent_as_the_anthropic_beta_header(monkeypatch):
    """MassGen's ``betas`` list (spec §5.2), on the wire as one comma-separated ``anthropic-beta`` header."""
    seen: list[dict[str, Any]] = []
    async with sse_server(_OK_REPLY, seen=seen) as url:
        cfg = backend(url, monkeypatch, betas=["computer-use-2025-01-24", "context-1m-2025-08-07"])
        await claude.complete(cfg, turn(), Recorder())
    assert seen[0]["headers"]["anthropic-beta"] == "computer-use-2025-01-24,context-1m-2025-08-07"


async def test_thinking_budget_not_below_max_tokens_is_a_config_error(llmock, monkeypatch):
    cfg = backend(llmock.base_url("anthropic"), monkeypatch, max_tokens=2000,
                  thinking={"type": "enabled", "budget_tokens": 2000})
    with pytest.raises(ConfigError, match=r"backend\.thinking\.budget_tokens"):
        await claude.complete(cfg, turn(), Recorder())
    assert llmock.requests == []


def test_thinking_is_left_out_when_continuing_a_tool_loop_without_its_thinking_blocks(monkeypatch):
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


# -- thinking in tool loops -----------------------------------------------------------------------

SIGNATURE = "EqQBCkgIARABGAIiQHc0nGnpVEr8ZUr9Xm3ZxQ2cvDzJbWm0lq+signed/by=="
THINKING = {"type": "enabled", "budget_tokens": 1024}


async def tool_loop(first: Events, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Recorder, list[dict[str, Any]]]:
    """A tool loop of two calls with thinking on: ``first`` is streamed for the first call; its reply
    goes back with the tool result, as the worker's tool rounds send it. Returns the first completion,
    its ``on_text`` and the two requests the server received."""
    second = [message_start(input_tokens=40), *text_block(0, "The file says hello."), *stop("end_turn")]
    seen: list[dict[str, Any]] = []
    on_text = Recorder()
    async with sse_server(first, second, seen=seen) as url:
        cfg = backend(url, monkeypatch, max_tokens=2048, thinking=THINKING)
        done = await claude.complete(cfg, turn(tools=(NEW_ANSWER, READ_FILE)), on_text)
        history = PROMPT + (
            Message(role="assistant", content=done.content, tool_calls=done.tool_calls,
                    provider_blocks=done.provider_blocks),
            *(Message(role="tool", tool_call_id=c.id, content="hello") for c in done.tool_calls),
        )
        final = await claude.complete(cfg, turn(history, (NEW_ANSWER, READ_FILE)), Recorder())
    assert final.content == "The file says hello." and final.provider_blocks == ()
    return done, on_text, seen


async def test_signed_thinking_goes_back_first_in_the_assistant_message_and_thinking_stays_on(monkeypatch):
    first = [
        message_start(input_tokens=20),
        *thinking_block(0, "The user wants ", "the file read.", signature=SIGNATURE),
        *tool_use_block(1, "toolu_01", "mcp__fs__read_file", '{"path": ', '"a.txt"}'),
        *stop("tool_use"),
    ]
    done, on_text, seen = await tool_loop(first, monkeypatch)
    thought = {"type": "thinking", "thinking": "The user wants the file read.", "signature": SIGNATURE}
    assert done.provider_blocks == (ProviderBlock(provider="anthropic", data=thought),)
    assert done.tool_calls == (ToolCall(id="toolu_01", name="mcp__fs__read_file", arguments='{"path": "a.txt"}'),)
    assert done.content == "" and on_text.text == [], "thinking text is never answer text"
    assert seen[0]["body"]["thinking"] == THINKING
    again = seen[1]["body"]
    assert again["thinking"] == THINKING, "thinking stays on for the call after the tool result"
    assert again["messages"][1:] == [
        {"role": "assistant", "content": [
            thought,
            {"type": "tool_use", "id": "toolu_01", "name": "mcp__fs__read_file", "input": {"path": "a.txt"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "hello"}]},
    ]


async def test_redacted_thinking_goes_back_unchanged_and_in_order(monkeypatch):
    redacted = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB9URj"
    first = [
        message_start(input_tokens=20),
        *thinking_block(0, "Part of this is fine.", signature=SIGNATURE),
        *redacted_thinking_block(1, redacted),
        *text_block(2, "Reading it."),
        *tool_use_block(3, "toolu_02", "mcp__fs__read_file", '{"path": "b.txt"}'),
        *stop("tool_use"),
    ]
    done, on_text, seen = await tool_loop(first, monkeypatch)
    thought = {"type": "thinking", "thinking": "Part of this is fine.", "signature": SIGNATURE}
    hidden = {"type": "redacted_thinking", "data": redacted}
    assert [b.data for b in done.provider_blocks] == [thought, hidden]
    assert done.content == "Reading it." and on_text.text == ["Reading it."]
    again = seen[1]["body"]
    assert again["thinking"] == THINKING
    assert again["messages"][1]["content"] == [
        thought, hidden,
        {"type": "text", "text": "Reading it."},
        {"type": "tool_use", "id": "toolu_02", "name": "mcp__fs__read_file", "input": {"path": "b.txt"}},
    ]


def test_thinking_stays_on_in_later_rounds_whose_replies_have_no_thinking(monkeypatch):
    """Without interleaved thinking, only the first reply of a tool loop thinks: the turn opens with it."""
    cfg = backend("http://127.0.0.1:9", monkeypatch, thinking=THINKING)
    thought = ProviderBlock(provider="anthropic", data={"type": "thinking", "thinking": "t", "signature": "s"})
    history = PROMPT + (
        Message(role="assistant", tool_calls=(ToolCall(id="t1", name="mcp__fs__read_file", arguments="{}"),),
                provider_blocks=(thought,)),
        Message(role="tool", tool_call_id="t1", content="data"),
        Message(role="assistant", tool_calls=(ToolCall(id="t2", name="mcp__fs__read_file", arguments="{}"),)),
        Message(role="tool", tool_call_id="t2", content="more"),
    )
    assert claude.request_params(cfg, turn(history))["thinking"] == THINKING


def test_blocks_of_another_provider_are_not_sent_and_other_adapters_ignore_anthropic_blocks(monkeypatch):
    from massgen_agent_worker.providers import chatcompletion, gemini
    from massgen_agent_worker.providers import openai as responses

    call = ToolCall(id="t1", name="mcp__fs__read_file", arguments="{}")
    thought = ProviderBlock(provider="anthropic", data={"type": "thinking", "thinking": "t", "signature": "s"})
    foreign = ProviderBlock(provider="gemini", data={"thought_signature": "c2ln"})
    plain = PROMPT + (Message(role="assistant", content="Reading.", tool_calls=(call,)),
                      Message(role="tool", tool_call_id="t1", content="data"))
    kept = PROMPT + (Message(role="assistant", content="Reading.", tool_calls=(call,), provider_blocks=(thought,)),
                     plain[-1])
    mixed = PROMPT + (Message(role="assistant", content="Reading.", tool_calls=(call,),
                              provider_blocks=(foreign, thought)), plain[-1])
    assert claude.convert_messages(mixed) == claude.convert_messages(kept)
    assert claude.convert_messages(kept)[1][1]["content"][0] == thought.data
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for kind, params in (("chatcompletion", chatcompletion.request_params), ("openai", responses.request_params)):
        cfg = msgspec.convert({"type": kind, "model": "m", "base_url": "http://127.0.0.1:9/v1"}, BackendConfig)
        assert params(cfg, turn(kept)) == params(cfg, turn(plain)), kind
    assert gemini.native_contents(kept) == gemini.native_contents(plain)


async def test_a_worker_tool_round_keeps_thinking_on_and_thinking_out_of_the_log(
    fresh_nats, massgen_home, monkeypatch
):
    """The whole system: an MCP tool round of the agent worker sends the signed thinking back, and no
    thinking text reaches an answer or any event."""
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")

    def model(body: dict[str, Any]) -> Events:
        names = [t["name"] for t in body.get("tools", [])]
        last = body["messages"][-1]["content"]
        if "new_answer" not in names:  # the final presentation (MCP tools only)
            return [message_start(input_tokens=30), *thinking_block(0, "Present it.", signature=SIGNATURE),
                    *text_block(1, "FINAL: ", "the answer"), *stop("end_turn")]
        if "vote" in names:
            call = tool_use_block(1, "toolu_v", "vote", '{"agent_id": "agent1", "reason": "only answer"}')
            return [message_start(input_tokens=30), *thinking_block(0, "Vote.", signature=SIGNATURE),
                    *call, *stop("tool_use")]
        if any(b["type"] == "tool_result" for b in last):  # the tool round's second call: no new thinking
            call = tool_use_block(0, "toolu_n", "new_answer", '{"content": "the answer"}')
            return [message_start(input_tokens=30), *call, *stop("tool_use")]
        call = tool_use_block(1, "toolu_e", "mcp__t__echo", '{"text": "hi"}')
        return [message_start(input_tokens=30), *thinking_block(0, "Echo first, privately.", signature=SIGNATURE),
                *call, *stop("tool_use")]

    seen: list[dict[str, Any]] = []
    async with sse_server(model, seen=seen) as url:
        cfg = {"agents": [{"id": "solo", "backend": {
            "type": "claude", "model": MODEL, "base_url": url, "api_key_env": KEY_ENV, "max_tokens": 2048,
            "thinking": THINKING, "mcp_servers": [{"name": "t", "command": sys.executable, "args": [TOOL_SERVER]}],
        }}]}
        async with Stack(fresh_nats.url) as stack:
            stack.orchestrator()
            stack.worker()
            stack.broker(massgen_home)
            records = await stack.wait_done(await stack.submit(cfg), 60)
    [completed] = of(records, RunCompleted)
    assert completed.final_answer == "FINAL: the answer"
    [echoed] = of(records, ToolCallCompleted)
    assert echoed.content == "echo: hi"
    after_tool = [r["body"] for r in seen if r["body"]["messages"][-1]["content"][0]["type"] == "tool_result"]
    assert after_tool and all(b["thinking"] == THINKING for b in after_tool)
    assert after_tool[0]["messages"][-2]["content"][0] == {
        "type": "thinking", "thinking": "Echo first, privately.", "signature": SIGNATURE,
    }
    assert all(b.get("thinking") == THINKING for b in (r["body"] for r in seen))
    assert not [r for r in records if "privately" in json.dumps(msgspec.to_builtins(r.event))]


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
