"""The ``gemini`` adapter, driven through the real ``google-genai`` SDK over HTTP against ``llmock``.

llmock scripts replies, function calls and faults and keeps a journal of every request body, so each
test checks both what the adapter returns and what it put on the wire. One test uses a tiny loopback
SSE server instead, for the usage fields and thought parts llmock never sends.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from llmock.simulation import estimate_tokens

from massgen_agent_worker import providers
from massgen_agent_worker.providers import gemini
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested

KEY_ENV = "MASSGEN_TEST_GEMINI_KEY"
MODEL = "gemini-2.5-flash"

NEW_ANSWER = ToolSpec(
    name="new_answer",
    description="Submit a new and improved answer",
    parameters={"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]},
)
VOTE = ToolSpec(
    name="vote",
    description="Vote for the best agent to present final answer",
    parameters={
        "type": "object",
        "properties": {
            "agent_id": {"type": "string", "enum": ["agent1", "agent2"]},
            "reason": {"type": "string"},
        },
        "required": ["agent_id", "reason"],
    },
)
READ_FILE = ToolSpec(
    name="mcp__fs__read_file",
    description="Read a file of the workspace",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
PROMPT = (
    Message(role="system", content="You are agent1 of a team; answer precisely."),
    Message(role="user", content="What is the capital of France? Answer with one word, then explain briefly."),
)


def request(messages: tuple[Message, ...] = PROMPT, tools: tuple[ToolSpec, ...] = ()) -> TurnRequested:
    return TurnRequested(
        turn_id="t", agent_id="a", attempt=1, kind="coordination", messages=messages, tools=tools,
        backend={}, answers_version=0,
    )


@pytest.fixture
def backend(llmock, monkeypatch: pytest.MonkeyPatch):
    """``backend(**keys)``: a gemini BackendConfig aimed at llmock, its key in ``KEY_ENV``."""
    monkeypatch.setenv(KEY_ENV, "test-key")

    def make(**keys: Any) -> BackendConfig:
        block = {"type": "gemini", "model": MODEL, "base_url": llmock.base_url("gemini"), "api_key_env": KEY_ENV}
        return msgspec.convert({**block, **keys}, BackendConfig)

    return make


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    async def __call__(self, text: str) -> None:
        self.chunks.append(text)


def body(llmock) -> dict[str, Any]:
    """The JSON body of the one request this test made."""
    records = llmock.requests
    assert len(records) == 1, [r.path for r in records]
    assert records[0].path == f"/gemini/v1beta/models/{MODEL}:streamGenerateContent"
    return records[0].body


def camel(d: dict[str, Any]) -> dict[str, Any]:
    """Keys in the API's camelCase. google-genai 3.4.0 passes some nested config through in snake_case
    (``thinking_config``, ``parameters_json_schema``); the API's JSON parser accepts both spellings."""
    return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): v for k, v in d.items()}


def declared_schema(declaration: dict[str, Any]) -> Any:
    """The raw JSON schema of a function declaration, whatever the spelling of its field."""
    return camel(declaration)["parametersJsonSchema"]


async def test_streams_text_deltas_and_returns_the_whole_text(llmock, backend):
    llmock.reply("Paris is the capital of France.")
    on_text = Recorder()
    result = await gemini.complete(backend(), request(), on_text)
    assert result.content == "Paris is the capital of France."
    assert len(on_text.chunks) > 1 and "".join(on_text.chunks) == result.content
    assert result.tool_calls == () and result.finish_reason == "stop"
    assert result.model == MODEL and result.time_to_first_token_s is not None
    sent = body(llmock)
    assert sent["systemInstruction"]["parts"] == [{"text": PROMPT[0].content}]
    assert sent["contents"] == [{"role": "user", "parts": [{"text": PROMPT[1].content}]}]
    assert "tools" not in sent


async def test_dispatcher_routes_the_gemini_type_to_this_adapter(llmock, backend):
    llmock.reply("routed")
    req = msgspec.structs.replace(request(), backend=msgspec.to_builtins(backend()))
    result = await providers.complete(req, Recorder())
    assert result.content == "routed"


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [(NEW_ANSWER, {"content": "Paris."}), (READ_FILE, {"path": "notes/plan.md"})],
    ids=["workflow_new_answer", "mcp_read_file"],
)
async def test_function_call_becomes_a_neutral_tool_call(llmock, backend, tool, arguments):
    llmock.call_tool(tool.name, arguments)
    on_text = Recorder()
    result = await gemini.complete(backend(), request(tools=(NEW_ANSWER, VOTE, READ_FILE)), on_text)
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == tool.name and call.id == "call_0"
    assert json.loads(call.arguments) == arguments
    assert result.finish_reason == "tool_calls" and result.content == ""
    assert "" in on_text.chunks  # the function-call chunk was signalled without text
    (declared,) = body(llmock)["tools"]
    by_name = {d["name"]: d for d in declared["functionDeclarations"]}
    assert list(by_name) == ["new_answer", "vote", "mcp__fs__read_file"]  # MCP names pass unchanged
    # the raw JSON schema, not converted to the SDK's Schema type
    assert declared_schema(by_name[tool.name]) == tool.parameters


async def test_function_responses_go_back_by_name_in_one_user_turn(llmock, backend):
    history = PROMPT + (
        Message(role="assistant", content="Reading both.", tool_calls=(
            ToolCall(id="call_0", name="mcp__fs__read_file", arguments='{"path": "a.md"}'),
            ToolCall(id="fc-model-7", name="mcp__fs__read_file", arguments='{"path": "b.md"}'),
        )),
        Message(role="tool", content="contents of a", tool_call_id="call_0"),
        Message(role="tool", content="contents of b", tool_call_id="fc-model-7"),
    )
    llmock.reply("Both files say hello.")
    result = await gemini.complete(backend(), request(history, (NEW_ANSWER, READ_FILE)), Recorder())
    assert result.content == "Both files say hello."
    contents = body(llmock)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    text, first, second = contents[1]["parts"]
    assert text == {"text": "Reading both."}
    assert first["functionCall"] == {"name": "mcp__fs__read_file", "args": {"path": "a.md"}}  # synthetic id dropped
    assert first["thoughtSignature"]  # placeholder: the real signature is not kept in neutral messages
    assert second["functionCall"]["id"] == "fc-model-7" and "thoughtSignature" not in second
    responses = [p["functionResponse"] for p in contents[2]["parts"]]
    assert responses == [
        {"name": "mcp__fs__read_file", "response": {"output": "contents of a"}},
        {"id": "fc-model-7", "name": "mcp__fs__read_file", "response": {"output": "contents of b"}},
    ]


async def test_json_schema_mode_returns_the_neutral_decision(llmock, backend):
    llmock.reply(json.dumps({"tool": "vote", "arguments": {"agent_id": "agent2", "reason": "more complete"}}))
    result = await gemini.complete(backend(tool_mode="json_schema"), request(tools=(NEW_ANSWER, VOTE)), Recorder())
    (call,) = result.tool_calls
    assert call.name == "vote"
    assert json.loads(call.arguments) == {"agent_id": "agent2", "reason": "more complete"}
    assert result.finish_reason == "tool_calls"
    sent = body(llmock)
    assert "tools" not in sent
    generation = sent["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    branches = generation["responseJsonSchema"]["anyOf"]
    assert [b["properties"]["tool"]["enum"] for b in branches] == [["new_answer"], ["vote"]]
    assert "Reply with one JSON object" not in sent["systemInstruction"]["parts"][0]["text"]
    assert "Reply with one JSON object" in sent["contents"][-1]["parts"][-1]["text"]  # last, where small models heed it


async def test_json_schema_mode_unscripted_reply_follows_the_schema(llmock, backend):
    result = await gemini.complete(backend(tool_mode="json_schema"), request(tools=(VOTE,)), Recorder())
    (call,) = result.tool_calls  # llmock answers with JSON valid against responseJsonSchema
    assert call.name == "vote" and json.loads(call.arguments)["agent_id"] in ("agent1", "agent2")


async def test_web_search_without_tool_mode_uses_the_json_decision(llmock, backend):
    llmock.reply(json.dumps({"tool": "new_answer", "arguments": {"content": "Paris"}}))
    result = await gemini.complete(backend(enable_web_search=True), request(tools=(NEW_ANSWER,)), Recorder())
    assert [c.name for c in result.tool_calls] == ["new_answer"]
    sent = body(llmock)
    assert sent["tools"] == [{"googleSearch": {}}]
    assert sent["generationConfig"]["responseJsonSchema"]["properties"]["tool"]["enum"] == ["new_answer"]


async def test_code_execution_with_native_tools_declares_both(llmock, backend):
    llmock.call_tool("new_answer", {"content": "42"})
    cfg = backend(enable_code_execution=True, tool_mode="native")
    result = await gemini.complete(cfg, request(tools=(NEW_ANSWER,)), Recorder())
    assert [c.name for c in result.tool_calls] == ["new_answer"]
    sent = body(llmock)
    code, functions = sent["tools"]
    assert code == {"codeExecution": {}}
    (declared,) = functions["functionDeclarations"]
    assert declared["name"] == "new_answer" and declared_schema(declared) == NEW_ANSWER.parameters
    assert sent["toolConfig"] == {"includeServerSideToolInvocations": True}


async def test_sampling_and_thinking_parameters_reach_generation_config(llmock, backend):
    llmock.reply("ok")
    cfg = backend(temperature=0.3, top_p=0.9, max_tokens=256, seed=7, thinking={"budget_tokens": 2048},
                  extra_body={"generationConfig": {"topK": 5}})
    await gemini.complete(cfg, request(), Recorder())
    generation = body(llmock)["generationConfig"]
    assert generation["temperature"] == 0.3 and generation["topP"] == 0.9
    assert generation["maxOutputTokens"] == 256 and generation["seed"] == 7
    thinking = generation.get("thinkingConfig") or generation["thinking_config"]
    assert camel(thinking) == {"thinkingBudget": 2048, "includeThoughts": True}
    assert generation["topK"] == 5  # extra_body merged into the request


async def test_usage_is_mapped_from_usage_metadata(llmock, backend):
    text = "Paris. It has been the capital of France for centuries."
    llmock.reply(text)
    result = await gemini.complete(backend(), request(), Recorder())
    sent = body(llmock)
    prompt_parts = [p for c in sent["contents"] for p in c["parts"]] + sent["systemInstruction"]["parts"]
    assert result.usage.input_tokens == estimate_tokens(*prompt_parts) > 0  # llmock's promptTokenCount
    assert result.usage.output_tokens == estimate_tokens(text) > 0  # its candidatesTokenCount
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (0, 0)  # absent counts → 0


@pytest.fixture
def sse_server() -> Iterator[str]:
    """A loopback server answering every streamGenerateContent with a thought, text and a function call
    carrying an id, and a full usageMetadata: the fields llmock does not send."""
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Weighing both.", "thought": True}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Voting."}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"id": "fc-1", "name": "vote", "args": {"agent_id": "agent1", "reason": "best"}}}]},
            "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 9, "cachedContentTokenCount": 64,
                           "thoughtsTokenCount": 33, "totalTokenCount": 162},
         "modelVersion": "gemini-2.5-pro-001"},
    ]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            payload = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_thoughts_cached_tokens_and_call_ids_are_mapped(sse_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "test-key")
    cfg = msgspec.convert(
        {"type": "gemini", "model": MODEL, "base_url": sse_server, "api_key_env": KEY_ENV,
         "thinking": {"budget_tokens": 512}},
        BackendConfig,
    )
    on_text = Recorder()
    result = await gemini.complete(cfg, request(tools=(VOTE,)), on_text)
    assert result.content == "Voting."  # thought text is not part of the answer
    assert on_text.chunks == ["", "Voting.", ""]  # thought and function-call chunks signalled as ""
    vote = ToolCall(id="fc-1", name="vote", arguments='{"agent_id": "agent1", "reason": "best"}')
    assert result.tool_calls == (vote,)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 9)
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (64, 33)
    assert result.model == "gemini-2.5-pro-001"


async def test_429_is_rate_limited_with_retry_after_and_no_sdk_retry(llmock, backend):
    llmock.rate_limit(retry_after=3)
    with pytest.raises(ProviderRateLimited) as info:
        await gemini.complete(backend(), request(), Recorder())
    assert info.value.retryable and info.value.status == 429 and info.value.retry_after_s == 3
    assert len(llmock.requests) == 1  # retries are the worker's, recorded as events


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors(llmock, backend, status):
    llmock.fail(status)
    with pytest.raises(ProviderAuthError) as info:
        await gemini.complete(backend(), request(), Recorder())
    assert not info.value.retryable and info.value.status == status


async def test_500_is_a_retryable_server_error(llmock, backend):
    llmock.fail(500)
    with pytest.raises(ProviderServerError) as info:
        await gemini.complete(backend(), request(), Recorder())
    assert info.value.retryable and info.value.status == 500


async def test_unreachable_port_is_a_connection_error(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "test-key")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = msgspec.convert(
        {"type": "gemini", "model": MODEL, "base_url": f"http://127.0.0.1:{port}", "api_key_env": KEY_ENV},
        BackendConfig,
    )
    with pytest.raises(ProviderConnectionError) as info:
        await gemini.complete(cfg, request(), Recorder())
    assert info.value.retryable


async def test_stalled_stream_is_a_timeout(llmock, backend):
    llmock.reply("one two three four five six seven").stall(after_chunks=1, seconds=3)
    with pytest.raises(ProviderTimeout) as info:
        await gemini.complete(backend(request_timeout_seconds=0.5), request(), Recorder())
    assert info.value.retryable


async def test_dropped_stream_is_a_connection_error(llmock, backend):
    llmock.reply("one two three four five six seven").disconnect(after_chunks=1)
    with pytest.raises(ProviderConnectionError):
        await gemini.complete(backend(), request(), Recorder())


async def test_stream_without_finish_reason_is_not_taken_as_an_answer(llmock, backend):
    llmock.reply("one two three four five six seven").truncate(after_chunks=1)
    with pytest.raises(ProviderConnectionError, match="without a finish reason"):
        await gemini.complete(backend(), request(), Recorder())


async def test_corrupt_stream_chunk_is_a_server_error(llmock, backend):
    llmock.reply("one two three four five six seven").corrupt(after_chunks=1)
    with pytest.raises(ProviderServerError):
        await gemini.complete(backend(), request(), Recorder())


async def test_missing_configured_key_is_a_config_error(llmock, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)  # GOOGLE_API_KEY (set by llmock) must not stand in for it
    block = {"type": "gemini", "base_url": llmock.base_url("gemini"), "api_key_env": KEY_ENV}
    cfg = msgspec.convert(block, BackendConfig)
    with pytest.raises(ConfigError, match=KEY_ENV):
        await gemini.complete(cfg, request(), Recorder())
    assert llmock.requests == []


async def test_google_api_key_is_used_when_gemini_api_key_is_unset(llmock, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    cfg = msgspec.convert({"type": "gemini", "model": MODEL, "base_url": llmock.base_url("gemini")}, BackendConfig)
    assert gemini.api_key(cfg) == "google-key"
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    assert gemini.api_key(cfg) == "gemini-key"
    llmock.reply("keyed")
    assert (await gemini.complete(cfg, request(), Recorder())).content == "keyed"
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        gemini.api_key(cfg)
