"""``chatcompletion``: any OpenAI-compatible endpoint through the official ``openai`` SDK.

Two ways to take the workflow decision (``backend.tool_mode``):

- ``native``: the tools go in ``tools=``; streamed ``tool_calls`` deltas are reassembled;
- ``json_schema``: for models without tool calling (the local models). The offered tools become one
  ``response_format: json_schema`` whose branches are ``{"tool": NAME, "arguments": {...}}``; the
  server's grammar guarantees valid JSON, mapped back to the same neutral tool calls. Earlier tool
  calls and results in the history are rewritten as plain text, since such chat templates know no
  tool role, and the instructions go at the end of the last user message. The worker uses this mode
  only for the short choice of its decision protocol (``massgen_agent_worker.decisions``): answers are
  asked for as free text.
"""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any

import openai

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, loop_cached
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
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested, Usage
from massgen_es.media import Attachment


def retry_after_s(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header, if present and numeric."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def map_openai_error(exc: Exception, label: str) -> ProviderError:
    """The :mod:`massgen_es.errors` provider error for an exception of the ``openai`` SDK."""
    if isinstance(exc, openai.APIStatusError):
        return provider_error_for_status(
            exc.status_code,
            f"{label} returned HTTP {exc.status_code}: {exc.message}",
            retry_after_s=retry_after_s(exc.response.headers),
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{label} timed out: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(f"{label} unreachable: {exc}")
    return ProviderServerError(f"{label} sent an error in the stream: {exc}")


def api_key(cfg: BackendConfig, url: str | None) -> str:
    """The API key for ``cfg``: from the variable named by ``api_key_env``, else the type's default
    variable (``massgen_es.backends``); a self-hosted endpoint with neither gets a placeholder.

    Raises:
        ConfigError: the variable is not set.
    """
    env = backends.key_env(cfg.type, cfg.api_key_env, url)
    if env is None:
        return "not-needed"
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"environment variable {env} is not set; export it with the API key for backend {cfg.type}")
    scrub.remember([key])  # whatever its variable is named, it never reaches the log
    return key


def timeout(cfg: BackendConfig) -> openai.Timeout:
    """SDK timeout: ``request_timeout_seconds`` in total, ``connect_timeout_seconds`` to connect."""
    return openai.Timeout(cfg.request_timeout_seconds, connect=cfg.connect_timeout_seconds)


def client(cfg: BackendConfig, base_url: str | None = None) -> openai.AsyncOpenAI:
    """The shared SDK client for this endpoint (see :func:`api_key`).

    Raises:
        ConfigError: the API-key variable is not set, or no endpoint is configured.
    """
    url = base_url or backends.base_url(cfg.type, cfg.base_url)
    if url is None:
        raise ConfigError(f"backend {cfg.type} has no base_url; set `backend.base_url`")
    key = api_key(cfg, url)
    return loop_cached(
        ("openai", url, key, cfg.request_timeout_seconds, cfg.connect_timeout_seconds),
        lambda: openai.AsyncOpenAI(
            base_url=url,
            api_key=key,
            max_retries=0,  # retries are the worker's decision, recorded as events
            timeout=timeout(cfg),
        ),
    )


def _native_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content or None,
                    "tool_calls": [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c in m.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _native_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def decision_schema(tools: tuple[ToolSpec, ...]) -> dict[str, Any]:
    """JSON schema accepting exactly one call of one of ``tools``."""
    branches = [
        {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": [t.name]}, "arguments": t.parameters},
            "required": ["tool", "arguments"],
        }
        for t in tools
    ]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _json_instructions(tools: tuple[ToolSpec, ...]) -> str:
    lines = ["Reply with one JSON object that calls exactly one of these tools:"]
    for t in tools:
        props = t.parameters.get("properties", {})
        example = {k: (v.get("enum", ["..."])[0] if "enum" in v else "...") for k, v in props.items()}
        lines.append(f'- {t.name}: {t.description}. Format: {json.dumps({"tool": t.name, "arguments": example})}')
    return "\n".join(lines)


def _as_text(call: ToolCall) -> str:
    """An earlier tool call as the model wrote it: ``new_answer``'s answer as its text, others as JSON."""
    try:
        args = json.loads(call.arguments)
    except json.JSONDecodeError:
        args = call.arguments
    if call.name == "new_answer" and isinstance(args, dict) and isinstance(args.get("content"), str):
        return args["content"]
    return json.dumps({"tool": call.name, "arguments": args}, ensure_ascii=False)


def _json_messages(messages: tuple[Message, ...], tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """The history for a model without a tool role (calls and results as text), with the JSON
    instructions at the end of the last user message, where a small model heeds them best."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            names.update((c.id, c.name) for c in m.tool_calls)
            out.append({"role": "assistant", "content": "\n".join(_as_text(c) for c in m.tool_calls)})
        elif m.role == "tool":
            tool = names.get(m.tool_call_id or "", "tool")
            out.append({"role": "user", "content": f"Result of your {tool} call: {m.content}"})
        else:
            out.append({"role": m.role, "content": m.content})
    if out and out[-1]["role"] == "user":
        out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{_json_instructions(tools)}"}
    else:
        out.append({"role": "user", "content": _json_instructions(tools)})
    return out


def parse_decision(text: str, attempt: int) -> tuple[ToolCall, ...]:
    """Map a JSON-mode reply back to neutral tool calls (none if it is not a valid call)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return ()
    if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
        return ()
    return (ToolCall(id=f"call_{attempt}_0", name=data["tool"], arguments=json.dumps(data.get("arguments", {}))),)


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, base_url: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> Completion:
    """One streamed chat completion for ``request`` (see module docstring for the two tool modes), with
    ``attachments`` (the backend's ``upload_files``) on the first user message (:func:`attach`).

    Raises:
        ProviderError: a subclass per failure kind (:func:`map_openai_error`).
        ConfigError: the API-key variable is not set.
    """
    return await stream_chat(client(cfg, base_url), cfg, request, on_text, attachments)


def content_part(a: Attachment) -> dict[str, Any]:
    """An uploaded file as a Chat Completions content part: an image as an ``image_url`` data URI, audio
    as ``input_audio`` (``wav`` or ``mp3``)."""
    if a.kind == "image":
        return {"type": "image_url", "image_url": {"url": a.data_uri}}
    if a.kind == "audio":
        fmt = {"audio/wav": "wav", "audio/mpeg": "mp3"}.get(a.mime_type)
        if fmt is not None:
            return {"type": "input_audio", "input_audio": {"data": a.base64, "format": fmt}}
    raise ConfigError(f"Chat Completions takes no {a.kind} upload of type {a.mime_type} ({a.name}); remove it "
                      "from `upload_files`")


def attach(messages: list[dict[str, Any]], attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    """``messages`` with the first user message's text followed by ``attachments`` as content parts."""
    if not attachments:
        return messages
    at = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if at is None:
        return messages
    text = messages[at]["content"]
    parts = ([{"type": "text", "text": text}] if text else []) + [content_part(a) for a in attachments]
    return [*messages[:at], {"role": "user", "content": parts}, *messages[at + 1 :]]


def request_params(
    cfg: BackendConfig, request: TurnRequested, attachments: tuple[Attachment, ...] = ()
) -> tuple[dict[str, Any], bool]:
    """The ``chat.completions.create`` keyword arguments for ``request``, and whether the JSON-schema
    decision mode is on (``tool_mode: json_schema`` with tools offered; see the module docstring)."""
    json_mode = backends.tool_mode(cfg) == "json_schema" and bool(request.tools)
    params: dict[str, Any] = {
        "model": cfg.model or "default",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for key in ("temperature", "max_tokens", "top_p", "seed"):
        if getattr(cfg, key) is not None:
            params[key] = getattr(cfg, key)
    if cfg.extra_body:
        params["extra_body"] = dict(cfg.extra_body)
    if json_mode:
        params["messages"] = _json_messages(request.messages, request.tools)
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "workflow_decision", "schema": decision_schema(request.tools), "strict": True},
        }
    else:
        params["messages"] = _native_messages(request.messages)
        if request.tools:
            params["tools"] = _native_tools(request.tools)
    params["messages"] = attach(params["messages"], attachments)
    return params, json_mode


async def stream_chat(
    client: openai.AsyncOpenAI, cfg: BackendConfig, request: TurnRequested, on_text: OnText,
    attachments: tuple[Attachment, ...] = (),
) -> Completion:
    """The Chat Completions call of :func:`complete` on a given client (Azure brings its own).

    Raises:
        ProviderError: a subclass per failure kind (:func:`map_openai_error`).
    """
    params, json_mode = request_params(cfg, request, attachments)
    reply = StreamedReply(on_text)
    finish: str | None = None
    usage = Usage()
    model = params["model"]
    map_error = partial(map_openai_error, label=f"{cfg.type} endpoint")
    # openai.APIError: status, connection, and errors sent inside the stream
    async with reply.stream(client.chat.completions.create(**params), map_error, (openai.APIError,)) as chunks:
        async for chunk in chunks:
            model = chunk.model or model
            if chunk.usage is not None:
                cached = getattr(chunk.usage.prompt_tokens_details, "cached_tokens", None) or 0
                usage = Usage(
                    input_tokens=chunk.usage.prompt_tokens or 0,
                    output_tokens=chunk.usage.completion_tokens or 0,
                    cached_tokens=cached,
                )
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                await reply.add_text(choice.delta.content)
            for tc in choice.delta.tool_calls or ():
                function = tc.function
                reply.tool_call_delta(
                    tc.index,
                    id=tc.id,
                    name=function.name if function is not None else None,
                    arguments=function.arguments if function is not None else None,
                )
            finish = choice.finish_reason or finish
    if json_mode:
        tool_calls = parse_decision(reply.content, request.attempt)
    else:
        tool_calls = reply.tool_calls()
    return Completion(reply.content, tool_calls, finish, usage, model, reply.ttft)


adapter = FunctionAdapter(complete)
