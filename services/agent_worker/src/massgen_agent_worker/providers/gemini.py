"""``gemini``: Google's Gemini API through the official ``google-genai`` SDK (MassGen spec §2.2-2.7).

One streamed ``generateContent`` call per turn attempt, under API version ``v1beta`` (the Gemini API's
full surface; google-genai 3.x defaults to ``v1``). Two ways to take the workflow decision:

- ``native`` (default): the offered tools (workflow and ``mcp__server__tool`` alike, names unchanged)
  become ``FunctionDeclaration``\\ s with their raw JSON schema, automatic function calling disabled;
  the model's ``functionCall`` parts map to neutral tool calls. Earlier calls and results in the
  history go back as ``functionCall`` / ``functionResponse`` parts.
- ``json_schema`` (``tool_mode: json_schema``, or unset ``tool_mode`` with ``enable_web_search`` /
  ``enable_code_execution``, whose built-in tools the API only combines with function declarations
  under extra flags): the tools become one ``response_json_schema`` (``chatcompletion.decision_schema``)
  and the JSON reply is mapped back with ``chatcompletion.parse_decision``, like MassGen's structured
  coordination output (spec §1.5, §2.3). The history is rewritten as plain text.

The neutral :class:`ToolCall` has no field for Gemini's thought signatures, so replayed function calls
carry Google's documented placeholder signature instead (Gemini 3 rejects unsigned ones).
"""

from __future__ import annotations

import json
import os
import re
from functools import partial
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, loop_cached
from massgen_agent_worker.providers.chatcompletion import (
    _json_messages,
    decision_schema,
    parse_decision,
    retry_after_s,
)
from massgen_agent_worker.providers.streaming import StreamedReply
from massgen_es import backends, scrub
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderTimeout,
    provider_error_for_status,
)
from massgen_es.events import Message, ToolSpec, TurnRequested, Usage
from massgen_es.media import Attachment

try:  # google-genai prefers httpx2 when it is installed, else httpx
    import httpx2

    _TIMEOUTS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    _TRANSPORT: tuple[type[Exception], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - depends on the installed SDK extras
    _TIMEOUTS, _TRANSPORT = (httpx.TimeoutException,), (httpx.TransportError,)

API_VERSION = "v1beta"
DEFAULT_MODEL = "gemini-2.5-flash"
SKIP_SIGNATURE = b"skip_thought_signature_validator"
"""Google's placeholder thought signature for function calls whose real signature was not kept."""

_SYNTHETIC_ID = re.compile(r"^call_\d+$")
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter"}


def api_key(cfg: BackendConfig) -> str:
    """The key from ``api_key_env``, else ``GEMINI_API_KEY``, else (only when no ``api_key_env`` is
    configured) ``GOOGLE_API_KEY``, the SDK's other variable (MassGen spec §2.1).

    Raises:
        ConfigError: the variable is not set.
    """
    env = backends.key_env(cfg.type, cfg.api_key_env, cfg.base_url) or "GEMINI_API_KEY"
    key = os.environ.get(env)
    if not key and not cfg.api_key_env:
        key = os.environ.get("GOOGLE_API_KEY")
    if not key:
        also = "" if cfg.api_key_env else " (or GOOGLE_API_KEY)"
        raise ConfigError(
            f"environment variable {env}{also} is not set; export it with the API key for backend {cfg.type}"
        )
    scrub.remember([key])
    return key


def _client(cfg: BackendConfig) -> genai.Client:
    """The shared SDK client of this event loop, endpoint, key and timeout (it keeps a connection pool)."""
    key = api_key(cfg)
    options = types.HttpOptions(
        api_version=API_VERSION,
        timeout=int(cfg.request_timeout_seconds * 1000),  # milliseconds, per HTTP operation
        retry_options=types.HttpRetryOptions(attempts=1),  # retries are the worker's, recorded as events
    )
    if cfg.base_url:
        options.base_url = cfg.base_url
    return loop_cached(
        ("gemini", cfg.base_url, key, cfg.request_timeout_seconds),
        lambda: genai.Client(api_key=key, http_options=options),
    )


def _retry_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` ``retryDelay`` (e.g. ``"37s"``) in an error body."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", ()) if isinstance(error, dict) else ():
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def map_genai_error(exc: Exception, label: str) -> ProviderError:
    """The :mod:`massgen_es.errors` provider error for an exception of ``google-genai`` or its HTTP client:
    an HTTP status through ``provider_error_for_status`` (``Retry-After`` header, else the body's
    ``RetryInfo``), an unparseable stream chunk as ``ProviderServerError``, timeouts as
    ``ProviderTimeout``, other transport failures as ``ProviderConnectionError``."""
    if isinstance(exc, genai_errors.APIError):
        status = exc.code if isinstance(exc.code, int) else 500
        headers = getattr(exc.response, "headers", None)
        reason = f" {exc.status}" if exc.status else ""
        return provider_error_for_status(
            status,
            f"{label} returned HTTP {status}{reason}: {exc.message or exc}",
            retry_after_s=retry_after_s(headers) or _retry_delay(exc.details),
        )
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return ProviderServerError(f"{label} sent an unreadable stream chunk: {exc}")
    if isinstance(exc, _TIMEOUTS):
        return ProviderTimeout(f"{label} timed out: {exc!r}")
    return ProviderConnectionError(f"{label}: connection failed: {exc!r}")


def _usage(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    return Usage(
        input_tokens=meta.prompt_token_count or 0,
        output_tokens=meta.candidates_token_count or 0,  # thoughts are counted apart, as reasoning_tokens
        cached_tokens=meta.cached_content_token_count or 0,
        reasoning_tokens=meta.thoughts_token_count or 0,
    )


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def native_contents(messages: tuple[Message, ...]) -> tuple[str | None, list[types.Content]]:
    """``(system_instruction, contents)`` for neutral messages: system messages joined into the system
    instruction; assistant → ``model`` with ``functionCall`` parts; tool results → ``functionResponse``
    parts of one ``user`` turn, named after the call they answer (Gemini matches results by name)."""
    system: list[str] = []
    contents: list[types.Content] = []
    names: dict[str, str] = {}
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        elif m.role == "tool":
            call_id = m.tool_call_id or ""
            part = types.Part(function_response=types.FunctionResponse(
                id=None if _SYNTHETIC_ID.match(call_id) else call_id or None,
                name=names.get(call_id, call_id or "unknown"),
                response={"output": m.content},
            ))
            last = contents[-1] if contents else None
            if last is not None and last.role == "user" and last.parts and last.parts[-1].function_response:
                last.parts.append(part)
            else:
                contents.append(types.Content(role="user", parts=[part]))
        elif m.role == "assistant":
            parts = [types.Part(text=m.content)] if m.content else []
            for i, c in enumerate(m.tool_calls):
                names[c.id] = c.name
                parts.append(types.Part(
                    function_call=types.FunctionCall(
                        id=None if _SYNTHETIC_ID.match(c.id) else c.id, name=c.name, args=_args(c.arguments)),
                    thought_signature=SKIP_SIGNATURE if i == 0 else None,  # parallel calls: first one signed
                ))
            if parts:
                contents.append(types.Content(role="model", parts=parts))
        else:
            contents.append(types.Content(role="user", parts=[types.Part(text=m.content)]))
    return ("\n\n".join(system) if system else None), contents


def _json_contents(
    messages: tuple[Message, ...], tools: tuple[ToolSpec, ...]
) -> tuple[str | None, list[types.Content]]:
    plain = _json_messages(messages, tools)  # tool calls and results as text, instructions at the end
    system = [m["content"] for m in plain if m["role"] == "system"]
    contents = [
        types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
        for m in plain
        if m["role"] != "system"
    ]
    return ("\n\n".join(system) if system else None), contents


def build_config(
    cfg: BackendConfig, request: TurnRequested, json_mode: bool, system: str | None
) -> types.GenerateContentConfig:
    """The ``GenerateContentConfig``: sampling parameters, thinking budget, tools or JSON schema."""
    config = types.GenerateContentConfig(
        system_instruction=system,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_output_tokens=cfg.max_tokens,
        seed=cfg.seed,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    if cfg.thinking is not None:
        enabled = cfg.thinking.type == "enabled"
        config.thinking_config = types.ThinkingConfig(
            thinking_budget=cfg.thinking.budget_tokens if enabled else 0, include_thoughts=enabled or None
        )
    tools: list[types.Tool] = []
    if cfg.enable_web_search:
        tools.append(types.Tool(google_search=types.GoogleSearch()))
    if cfg.enable_code_execution:
        tools.append(types.Tool(code_execution=types.ToolCodeExecution()))
    if json_mode:
        config.response_mime_type = "application/json"
        config.response_json_schema = decision_schema(request.tools)
    elif request.tools:
        if tools:  # built-in and function tools together (Gemini 3 "tool combination")
            config.tool_config = types.ToolConfig(include_server_side_tool_invocations=True)
        tools.append(types.Tool(function_declarations=[
            types.FunctionDeclaration(name=t.name, description=t.description, parameters_json_schema=t.parameters)
            for t in request.tools
        ]))
    config.tools = list(tools) or None
    if cfg.extra_body:
        config.http_options = types.HttpOptions(extra_body=dict(cfg.extra_body))
    return config


def attach(contents: list[types.Content], attachments: tuple[Attachment, ...]) -> None:
    """Add ``attachments`` (the backend's ``upload_files``) as inline data parts to the first user turn."""
    first = next((c for c in contents if c.role == "user"), None)
    if first is not None and attachments:
        first.parts = [*(first.parts or ()), *(types.Part.from_bytes(data=a.data, mime_type=a.mime_type)
                                             for a in attachments)]


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, attachments: tuple[Attachment, ...] = ()
) -> Completion:
    """One streamed ``generateContent`` call for ``request`` (see the module docstring for the modes),
    ``attachments`` as inline data parts of the first user turn.

    Text parts go to ``on_text``; thought, function-call and code-execution parts call ``on_text("")``.
    ``time_to_first_token_s`` is the time to the first streamed part of any kind.

    Raises:
        ProviderError: a subclass per failure kind (:func:`map_genai_error`); also
            ``ProviderConnectionError`` when the stream ends without a finish reason.
        ConfigError: the API-key variable is not set.
    """
    label = f"{cfg.type} endpoint"
    json_mode = backends.tool_mode(cfg) == "json_schema" and bool(request.tools)
    system, contents = (
        _json_contents(request.messages, request.tools) if json_mode else native_contents(request.messages)
    )
    attach(contents, attachments)
    config = build_config(cfg, request, json_mode, system)
    model = cfg.model or DEFAULT_MODEL
    client = _client(cfg)
    reply = StreamedReply(on_text)
    finish: str | None = None
    blocked: str | None = None
    usage = Usage()
    opening = client.aio.models.generate_content_stream(model=model, contents=contents, config=config)
    errors = (genai_errors.APIError, genai_errors.UnknownApiResponseError, *_TRANSPORT)
    async with reply.stream(opening, partial(map_genai_error, label=label), errors) as chunks:
        async for chunk in chunks:
            model = chunk.model_version or model
            if chunk.usage_metadata is not None:
                usage = _usage(chunk.usage_metadata)
            if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
                blocked = "content_filter"
            if not chunk.candidates:
                continue
            candidate = chunk.candidates[0]
            for part in (candidate.content.parts if candidate.content else None) or ():
                reply.first_output()  # a part of any kind counts
                if part.function_call is not None:  # arrives whole, one part per call
                    fc = part.function_call
                    reply.tool_call_delta(
                        len(reply.calls), id=fc.id, name=fc.name, arguments=json.dumps(fc.args or {})
                    )
                    await reply.progress()
                elif part.text and not part.thought:
                    await reply.add_text(part.text)
                elif part.thought or part.executable_code or part.code_execution_result or part.tool_call:
                    await reply.progress()  # thinking, built-in code execution or a server-side tool call
            if candidate.finish_reason is not None:
                value = getattr(candidate.finish_reason, "value", str(candidate.finish_reason))
                finish = _FINISH.get(value, value.lower())
    if finish is None and blocked is None:
        raise ProviderConnectionError(f"{label}: the stream ended without a finish reason (truncated)")
    tool_calls = parse_decision(reply.content, request.attempt) if json_mode else reply.tool_calls()
    if tool_calls and finish == "stop":
        finish = "tool_calls"
    return Completion(reply.content, tool_calls, finish or blocked, usage, model, reply.ttft)


adapter = FunctionAdapter(complete)
