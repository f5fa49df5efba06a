"""The ``openai`` (Responses API) and ``azure_openai`` adapters, through the real ``openai`` SDK over
loopback HTTP against llmock (the ``llmock`` fixture; its request journal shows what was sent).

llmock limits (0.2.2): it reports ``cached_tokens`` and ``reasoning_tokens`` as 0 and never emits
``response.failed``/``error`` stream events, so those mappings are checked on the SDK's own types
without HTTP. Streamed Azure replies (text, a native tool call, usage) and Azure's own refusals (wrong
``api-key``, unknown deployment) come from the Azure route of ``massgen_es.testing.fake_openai`` (the
``fake`` fixture), reached by ``AsyncAzureOpenAI``, which also records the ``api-version`` query and
the ``api-key`` header it received; llmock's Azure path still serves the rate-limit and fallback tests.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import msgspec
import pytest
from openai.types.responses import ResponseUsage

from massgen_agent_worker import providers
from massgen_agent_worker.providers import azure_openai
from massgen_agent_worker.providers import openai as responses
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
)
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested
from massgen_es.testing.fake_openai import AZURE_API_KEY, Reply

NEW_ANSWER = ToolSpec(
    name="new_answer",
    description="Provide an improved answer to the ORIGINAL MESSAGE",
    parameters={
        "type": "object",
        "properties": {"content": {"type": "string", "description": "Your answer"}},
        "required": ["content"],
    },
)
READ_FILE = ToolSpec(
    name="mcp__fs__read_file",
    description="Read a file of the workspace",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
QUESTION = (
    Message(role="system", content="You are a careful agent."),
    Message(role="user", content="What is 2+2?"),
)


def backend(llmock: Any, **extra: Any) -> BackendConfig:
    return msgspec.convert(
        {"type": "openai", "model": "gpt-5-nano", "base_url": llmock.base_url("openai"), **extra},
        BackendConfig,
    )


def turn(messages: tuple[Message, ...] = QUESTION, tools: tuple[ToolSpec, ...] = ()) -> TurnRequested:
    return TurnRequested(
        turn_id="t",
        agent_id="a",
        attempt=1,
        kind="coordination",
        messages=messages,
        tools=tools,
        backend={},
        answers_version=0,
    )


class Sink:
    """The ``on_text`` callback: records every call, text or progress ("")."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, text: str) -> None:
        self.calls.append(text)

    @property
    def text(self) -> str:
        return "".join(self.calls)


def responses_bodies(llmock: Any) -> list[dict[str, Any]]:
    return [r.body for r in llmock.requests if r.path == "/v1/responses"]


# ---------------------------------------------------------------- Responses API: text and tools


async def test_streamed_text_reaches_on_text_in_several_deltas_and_is_the_content(llmock):
    reply = "Two plus two is four, and that is the whole answer."
    llmock.reply(reply)
    sink = Sink()
    result = await responses.complete(backend(llmock), turn(), sink)
    assert result.content == reply
    assert sink.text == reply
    assert len([c for c in sink.calls if c]) > 1, "text should stream in several deltas"
    assert result.tool_calls == ()
    assert result.finish_reason == "stop"
    assert result.model == "gpt-5-nano"
    assert result.time_to_first_token_s is not None
    body = responses_bodies(llmock)[-1]
    assert body["stream"] is True
    assert body["instructions"] == "You are a careful agent."
    assert body["input"] == [{"type": "message", "role": "user", "content": "What is 2+2?"}]


async def test_scripted_new_answer_call_becomes_a_neutral_tool_call(llmock):
    llmock.call_tool("new_answer", {"content": "4"})
    sink = Sink()
    result = await responses.complete(backend(llmock), turn(tools=(NEW_ANSWER, READ_FILE)), sink)
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "new_answer"
    assert json.loads(call.arguments) == {"content": "4"}
    assert call.id.startswith("call_")
    assert result.finish_reason == "tool_calls"
    assert result.content == ""
    assert sink.calls and all(c == "" for c in sink.calls), "tool-call deltas are progress, not text"
    tools = responses_bodies(llmock)[-1]["tools"]
    assert tools == [
        {
            "type": "function",
            "name": "new_answer",
            "description": NEW_ANSWER.description,
            "parameters": NEW_ANSWER.parameters,
            "strict": False,
        },
        {
            "type": "function",
            "name": "mcp__fs__read_file",
            "description": READ_FILE.description,
            "parameters": READ_FILE.parameters,
            "strict": False,
        },
    ]


async def test_scripted_mcp_tool_call_keeps_its_prefixed_name(llmock):
    llmock.call_tool("mcp__fs__read_file", {"path": "notes.txt"})
    result = await responses.complete(backend(llmock), turn(tools=(NEW_ANSWER, READ_FILE)), Sink())
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("mcp__fs__read_file", {"path": "notes.txt"})
    ]


async def test_function_call_output_round_trip_is_sent_as_responses_items(llmock):
    llmock.call_tool("mcp__fs__read_file", {"path": "notes.txt"})
    cfg = backend(llmock)
    first = await responses.complete(cfg, turn(tools=(NEW_ANSWER, READ_FILE)), Sink())
    call = first.tool_calls[0]
    history = (
        *QUESTION,
        Message(role="assistant", content="", tool_calls=first.tool_calls),
        Message(role="tool", content="the file says 4", tool_call_id=call.id),
    )
    second = await responses.complete(cfg, turn(history, (NEW_ANSWER, READ_FILE)), Sink())
    # llmock in tool_mode=auto answers in text once the last input item is a function_call_output
    assert second.tool_calls == ()
    assert second.content
    sent = responses_bodies(llmock)[-1]["input"]
    assert sent[-2:] == [
        {
            "type": "function_call",
            "call_id": call.id,
            "name": "mcp__fs__read_file",
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.id, "output": "the file says 4"},
    ]


async def test_assistant_text_and_later_system_messages_are_message_items(llmock):
    history = (
        *QUESTION,
        Message(
            role="assistant",
            content="Let me think.",
            tool_calls=(ToolCall(id="c1", name="x", arguments="{}"),),
        ),
        Message(role="tool", content="ok", tool_call_id="c1"),
        Message(role="system", content="Now decide."),
    )
    await responses.complete(backend(llmock), turn(history), Sink())
    sent = responses_bodies(llmock)[-1]["input"]
    assert sent[1] == {"type": "message", "role": "assistant", "content": "Let me think."}
    assert sent[-1] == {"type": "message", "role": "system", "content": "Now decide."}


async def test_reasoning_verbosity_limits_and_builtin_tools_are_sent(llmock):
    cfg = backend(
        llmock,
        reasoning={"effort": "low", "summary": "auto"},
        text={"verbosity": "low"},
        max_tokens=321,
        temperature=0.3,
        top_p=0.9,
        enable_web_search=True,
        enable_code_execution=True,
        extra_body={"store": False},
    )
    await responses.complete(cfg, turn(), Sink())
    body = responses_bodies(llmock)[-1]
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["text"] == {"verbosity": "low"}
    assert body["max_output_tokens"] == 321
    assert "max_tokens" not in body
    assert (body["temperature"], body["top_p"], body["store"]) == (0.3, 0.9, False)
    assert body["tools"] == [
        {"type": "web_search"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
    ]


async def test_unset_options_are_not_sent(llmock):
    await responses.complete(backend(llmock), turn(), Sink())
    body = responses_bodies(llmock)[-1]
    for key in ("reasoning", "text", "max_output_tokens", "temperature", "top_p", "tools"):
        assert key not in body, key


# ---------------------------------------------------------------- usage


async def test_usage_input_and_output_tokens_come_from_response_completed(llmock):
    llmock.reply("one two three four five six")
    result = await responses.complete(backend(llmock), turn(), Sink())
    # llmock estimates tokens from the text; what matters is that the reported numbers arrive
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert (result.usage.cached_tokens, result.usage.reasoning_tokens) == (0, 0)  # llmock reports 0


def test_usage_maps_cached_and_reasoning_tokens_from_the_sdk_usage_type():
    usage = ResponseUsage.model_validate(
        {
            "input_tokens": 120,
            "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 32},
            "total_tokens": 170,
        }
    )
    u = responses.usage_of(usage)
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (120, 50, 64, 32)


# ---------------------------------------------------------------- errors


async def test_429_is_rate_limited_with_retry_after(llmock):
    llmock.rate_limit(retry_after=2.5)
    with pytest.raises(ProviderRateLimited) as info:
        await responses.complete(backend(llmock), turn(), Sink())
    assert info.value.retry_after_s == 2.5
    assert info.value.status == 429
    assert info.value.retryable


async def test_401_is_an_auth_error(llmock):
    llmock.fail(401)
    with pytest.raises(ProviderAuthError) as info:
        await responses.complete(backend(llmock), turn(), Sink())
    assert not info.value.retryable


async def test_500_is_a_retryable_server_error(llmock):
    llmock.fail(500)
    with pytest.raises(ProviderServerError) as info:
        await responses.complete(backend(llmock), turn(), Sink())
    assert info.value.status == 500
    assert info.value.retryable


async def test_unreachable_endpoint_is_a_connection_error(llmock):
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = backend(llmock, base_url=f"http://127.0.0.1:{port}/v1", connect_timeout_seconds=2.0)
    with pytest.raises(ProviderConnectionError):
        await responses.complete(cfg, turn(), Sink())


async def test_stream_cut_before_response_completed_is_a_connection_error(llmock):
    llmock.reply("a long enough answer to be cut in the middle of the stream")
    llmock.truncate(after_chunks=3)
    with pytest.raises(ProviderConnectionError, match="response.completed"):
        await responses.complete(backend(llmock), turn(), Sink())


async def test_dropped_stream_is_a_connection_error(llmock):
    llmock.disconnect(after_chunks=2)
    with pytest.raises(ProviderConnectionError):
        await responses.complete(backend(llmock), turn(), Sink())


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("rate_limit_exceeded", ProviderRateLimited),
        ("server_error", ProviderServerError),
        (None, ProviderServerError),
        ("invalid_prompt", ProviderBadRequest),
    ],
)
def test_failed_response_codes_map_to_provider_errors(code, expected):
    err = responses.stream_error(code, "boom", "openai endpoint")
    assert type(err) is expected
    assert "boom" in str(err)


# ---------------------------------------------------------------- azure_openai


def azure_backend(llmock: Any, **extra: Any) -> BackendConfig:
    return msgspec.convert(
        {"type": "azure_openai", "model": "my-gpt4o-deployment", "azure_endpoint": llmock.url, **extra},
        BackendConfig,
    )


async def test_azure_missing_endpoint_names_the_config_key(monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    cfg = msgspec.convert({"type": "azure_openai", "model": "dep"}, BackendConfig)
    with pytest.raises(ConfigError, match=r"backend\.azure_endpoint"):
        await azure_openai.complete(cfg, turn(), Sink())


async def test_azure_call_goes_to_the_deployment_with_native_tools_and_maps_errors(llmock, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key")
    llmock.rate_limit(retry_after=1.5)
    with pytest.raises(ProviderRateLimited) as info:
        await azure_openai.complete(azure_backend(llmock), turn(tools=(NEW_ANSWER,)), Sink())
    assert info.value.retry_after_s == 1.5
    record = llmock.last_request
    assert record.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert record.body["stream"] is True
    assert record.body["messages"][0] == {"role": "system", "content": "You are a careful agent."}
    assert record.body["tools"][0]["function"]["name"] == "new_answer"


async def test_azure_endpoint_falls_back_to_the_environment(llmock, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", llmock.url)
    llmock.fail(401)
    cfg = msgspec.convert({"type": "azure_openai", "model": "dep-from-env"}, BackendConfig)
    with pytest.raises(ProviderAuthError):
        await azure_openai.complete(cfg, turn(), Sink())
    assert llmock.last_request.path == "/openai/deployments/dep-from-env/chat/completions"


async def test_azure_missing_key_is_a_config_error(llmock, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="AZURE_OPENAI_API_KEY"):
        await azure_openai.complete(azure_backend(llmock), turn(), Sink())


DEPLOYMENT = "my-gpt4o-deployment"
AZURE_API_VERSION = "2024-10-21"


def azure_fake_backend(fake: Any, **extra: Any) -> BackendConfig:
    """An ``azure_openai`` backend on the fake's Azure route, deployment :data:`DEPLOYMENT`."""
    return msgspec.convert(
        {"type": "azure_openai", "model": DEPLOYMENT, "azure_endpoint": fake.azure_endpoint,
         "api_version": AZURE_API_VERSION, **extra},
        BackendConfig,
    )


async def test_azure_streams_text_and_usage_from_the_deployment_route(fake, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_API_KEY)
    answer = "Two plus two is four, and that is all."
    fake.script(DEPLOYMENT, Reply(text=answer, prompt_tokens=12, completion_tokens=8))
    sink = Sink()
    result = await azure_openai.complete(azure_fake_backend(fake), turn(), sink)
    assert result.content == sink.text == answer
    assert len([c for c in sink.calls if c]) > 1, "the reply should arrive as several deltas"
    assert (result.finish_reason, result.tool_calls) == ("stop", ())
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 8)
    [got] = fake.received()
    assert got.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert got.query == {"api-version": AZURE_API_VERSION}
    assert got.headers["api-key"] == AZURE_API_KEY and "authorization" not in got.headers
    assert got.body["stream"] is True and got.body["stream_options"] == {"include_usage": True}


async def test_azure_streams_a_native_tool_call(fake, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_API_KEY)
    fake.script(DEPLOYMENT, Reply(tool_calls=(("new_answer", {"content": "The answer is 4."}),)))
    sink = Sink()
    result = await azure_openai.complete(azure_fake_backend(fake), turn(tools=(NEW_ANSWER, READ_FILE)), sink)
    [call] = result.tool_calls
    assert call.name == "new_answer" and call.id.startswith("call_")
    assert json.loads(call.arguments) == {"content": "The answer is 4."}
    assert (result.finish_reason, result.content) == ("tool_calls", "")
    assert sink.text == "", "a tool call is not content"
    [got] = fake.received()
    assert [t["function"]["name"] for t in got.body["tools"]] == ["new_answer", "mcp__fs__read_file"]
    assert got.query == {"api-version": AZURE_API_VERSION}


async def test_azure_wrong_key_and_unknown_deployment_fail_as_azure_answers(fake, monkeypatch):
    fake.script(DEPLOYMENT, Reply(text="still here"))
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "not-the-key")
    with pytest.raises(ProviderAuthError) as denied:
        await azure_openai.complete(azure_fake_backend(fake), turn(), Sink())
    assert denied.value.status == 401 and not denied.value.retryable
    assert "Access denied" in str(denied.value)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_API_KEY)
    with pytest.raises(ProviderBadRequest) as missing:
        await azure_openai.complete(azure_fake_backend(fake, model="no-such-deployment"), turn(), Sink())
    assert missing.value.status == 404 and not missing.value.retryable
    assert "deployment for this resource does not exist" in str(missing.value)
    # Neither refusal used the deployment's scripted reply.
    result = await azure_openai.complete(azure_fake_backend(fake), turn(), Sink())
    assert result.content == "still here"
    assert [r.path.split("/")[3] for r in fake.received()] == [DEPLOYMENT, "no-such-deployment", DEPLOYMENT]


async def test_backend_type_openai_dispatches_to_the_responses_adapter(llmock):
    llmock.reply("dispatched")
    req = msgspec.structs.replace(
        turn(), backend={"type": "openai", "model": "gpt-5-nano", "base_url": llmock.base_url("openai")}
    )
    result = await providers.complete(req, Sink())
    assert result.content == "dispatched"
    assert [r.path for r in llmock.requests] == ["/v1/responses"]


async def test_adapters_load_whether_or_not_a_shared_module_is_installed(monkeypatch):
    """``providers._SHARED_MODULES`` are imported before an adapter when installed; an image without one
    (the worker image has no legacy ``httpx``) still loads its adapters."""
    from massgen_agent_worker import providers

    monkeypatch.setattr(providers, "_SHARED_MODULES", ("json", "massgen_no_such_module"))
    monkeypatch.setattr(providers, "_loaded", {})
    adapter = await providers.adapter_for(msgspec.convert({"type": "vllm", "model": "m"}, BackendConfig))
    assert adapter is providers.ADAPTERS["chatcompletion"]()
