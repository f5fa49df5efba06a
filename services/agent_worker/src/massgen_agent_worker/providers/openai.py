"""``openai``: OpenAI models on the **Responses API** (``client.responses.create(stream=True)``).

MassGen's ``ResponseBackend`` (MassGen spec §2.2, §2.3, §2.5): workflow and MCP tools are native
function tools, so a ``new_answer``/``vote`` decision comes back as ``function_call`` output items.

Request shape (neutral → Responses)::

    system messages before the first other one  → instructions="..." (joined by blank lines)
    a later system message                      → {"type": "message", "role": "system", "content": "..."}
    user / assistant text                       → {"type": "message", "role": ..., "content": "..."}
    assistant tool_calls                        → {"type": "function_call", "call_id", "name", "arguments"}
    tool result                                 → {"type": "function_call_output", "call_id", "output"}
    ToolSpec                                    → {"type": "function", "name", "description", "parameters",
                                                   "strict": False}   (names such as mcp__fs__read_file unchanged)
    enable_web_search                           → {"type": "web_search"}
    enable_code_execution                       → {"type": "code_interpreter", "container": {"type": "auto"}}
    max_tokens                                  → max_output_tokens
    reasoning {effort, summary}                 → reasoning={...};  text {verbosity} → text={"verbosity"}
    temperature, top_p                          → as is;  extra_body → merged into the JSON body

``seed`` and ``tool_mode`` are not used: the Responses API has no seed, and OpenAI models call tools
natively. ``function_call`` items are sent without their ``fc_...`` item id, so a reasoning model does
not ask for the (unstored) reasoning item that preceded them.

Stream (``openai.types.responses.ResponseStreamEvent``): ``response.output_text.delta`` (and
``response.refusal.delta``) is text for ``on_text``; function-call argument, reasoning, reasoning
summary and built-in tool progress events call ``on_text("")``. Function calls are assembled from
``response.output_item.added/done`` and ``response.function_call_arguments.delta/done``; the neutral
``ToolCall.id`` is the item's ``call_id``. ``response.completed``/``response.incomplete`` carry the usage
(input, output, cached and reasoning tokens) and the status, mapped to a Chat-style finish reason
(``stop``, ``tool_calls``, ``length``, ``content_filter``).

Errors: HTTP statuses through :func:`chatcompletion.map_openai_error` (429 → ``ProviderRateLimited``
with ``retry_after_s``, 401/403 → ``ProviderAuthError``, 5xx → ``ProviderServerError``, unreachable →
``ProviderConnectionError``, timeouts → ``ProviderTimeout``); a ``response.failed`` or ``error`` stream
event by its error code (:func:`stream_error`); a stream that ends without ``response.completed`` is a
dropped connection (``ProviderConnectionError``), a corrupt one a server error.

Built-in tools (web search, code interpreter) run at OpenAI and are only observed as progress; their
results are part of the model's text, never neutral tool calls (MassGen spec §2.6).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import openai

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, chatcompletion
from massgen_agent_worker.providers.chatcompletion import map_openai_error
from massgen_agent_worker.providers.streaming import StreamedReply
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
)
from massgen_es.events import Message, ToolSpec, TurnRequested, Usage
from massgen_es.media import Attachment

# Stream events that are progress without text: each calls on_text("") (first-token timeout, liveness).
_PROGRESS_EVENTS = frozenset(
    {
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_part.added",
        "response.code_interpreter_call_code.delta",
        "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta",
    }
)
_PROGRESS_PREFIXES = (
    "response.web_search_call.",
    "response.code_interpreter_call.",
    "response.file_search_call.",
)

# Error codes of a failed response (``ResponseError.code``) or ``error`` event that mean "try later".
_RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded"})
_SERVER_CODES = frozenset({"server_error", "vector_store_timeout"})


def input_items(messages: tuple[Message, ...]) -> tuple[str | None, list[dict[str, Any]]]:
    """Neutral messages as ``(instructions, input items)`` of the Responses API (see module docstring)."""
    leading: list[str] = []
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system" and not items:
            leading.append(m.content)
        elif m.role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": m.tool_call_id or "", "output": m.content}
            )
        elif m.role == "assistant" and m.tool_calls:
            if m.content:
                items.append({"type": "message", "role": "assistant", "content": m.content})
            items.extend(
                {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                for c in m.tool_calls
            )
        else:
            items.append({"type": "message", "role": m.role, "content": m.content})
    instructions = "\n\n".join(leading) if leading else None
    return instructions, items


def function_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """``ToolSpec`` as Responses function tools (flat shape; ``strict`` off, so any JSON schema works)."""
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
            "strict": False,
        }
        for t in tools
    ]


def input_part(a: Attachment) -> dict[str, Any]:
    """An uploaded file as a Responses input content part: ``input_image`` (a data URI) or
    ``input_file`` (a PDF as a data URI with its file name)."""
    if a.kind == "image":
        return {"type": "input_image", "image_url": a.data_uri, "detail": "auto"}
    if a.kind == "file":
        return {"type": "input_file", "filename": a.name, "file_data": a.data_uri}
    raise ConfigError(f"the Responses API takes no {a.kind} uploads ({a.name}); remove it from `upload_files`")


def attach(items: list[dict[str, Any]], attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    """``items`` with the first user message's text followed by ``attachments`` as input parts."""
    at = next((i for i, m in enumerate(items) if m.get("role") == "user"), None) if attachments else None
    if at is None:
        return items
    text = items[at]["content"]
    parts = ([{"type": "input_text", "text": text}] if text else []) + [input_part(a) for a in attachments]
    return [*items[:at], {"type": "message", "role": "user", "content": parts}, *items[at + 1 :]]


def request_params(
    cfg: BackendConfig, request: TurnRequested, attachments: tuple[Attachment, ...] = ()
) -> dict[str, Any]:
    """The keyword arguments of ``client.responses.create`` for ``request``, ``attachments`` (the
    backend's ``upload_files``) on the first user message."""
    instructions, items = input_items(request.messages)
    items = attach(items, attachments)
    params: dict[str, Any] = {"model": cfg.model or "gpt-4o-mini", "input": items, "stream": True}
    if instructions is not None:
        params["instructions"] = instructions
    if cfg.temperature is not None:
        params["temperature"] = cfg.temperature
    if cfg.top_p is not None:
        params["top_p"] = cfg.top_p
    if cfg.max_tokens is not None:
        params["max_output_tokens"] = cfg.max_tokens
    if cfg.reasoning is not None:
        reasoning = {
            k: v for k, v in (("effort", cfg.reasoning.effort), ("summary", cfg.reasoning.summary)) if v
        }
        if reasoning:
            params["reasoning"] = reasoning
    if cfg.text is not None and cfg.text.verbosity is not None:
        params["text"] = {"verbosity": cfg.text.verbosity}
    tools = function_tools(request.tools)
    if cfg.enable_web_search:
        tools.append({"type": "web_search"})
    if cfg.enable_code_execution:
        tools.append({"type": "code_interpreter", "container": {"type": "auto"}})
    if tools:
        params["tools"] = tools
    if cfg.extra_body:
        params["extra_body"] = dict(cfg.extra_body)
    return params


def usage_of(usage: Any) -> Usage:
    """A Responses ``ResponseUsage`` (or None) as neutral :class:`Usage`."""
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=getattr(usage, "input_tokens", 0) or 0,
        output_tokens=getattr(usage, "output_tokens", 0) or 0,
        cached_tokens=getattr(getattr(usage, "input_tokens_details", None), "cached_tokens", 0) or 0,
        reasoning_tokens=getattr(getattr(usage, "output_tokens_details", None), "reasoning_tokens", 0) or 0,
    )


def stream_error(code: str | None, message: str, label: str) -> ProviderError:
    """The provider error for a ``response.failed`` / ``error`` stream event with error ``code``.

    Rate-limit codes → :class:`ProviderRateLimited`; server codes and unknown or missing codes →
    :class:`ProviderServerError` (retryable: the HTTP call itself succeeded); anything else (invalid
    prompt, image or policy errors) → :class:`ProviderBadRequest`.
    """
    text = f"{label} failed mid-stream ({code or 'no code'}): {message}"
    if code in _RATE_LIMIT_CODES:
        return ProviderRateLimited(text)
    if code is None or code in _SERVER_CODES:
        return ProviderServerError(text)
    return ProviderBadRequest(text)


def _finish_reason(response: Any, has_calls: bool) -> str | None:
    status = getattr(response, "status", None)
    if status == "incomplete":
        reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
        return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            reason or "", reason or "length"
        )
    if status == "completed":
        return "tool_calls" if has_calls else "stop"
    return status


def map_error(exc: Exception, label: str) -> ProviderError:
    """The provider error for an exception met while opening or reading a Responses stream: HTTP
    statuses and connection failures through :func:`chatcompletion.map_openai_error`; a bare
    ``openai.APIError`` (the SDK's for a stream event carrying a top-level ``error``) by its code
    (:func:`stream_error`); anything else (an undecodable event) ``ProviderServerError``."""
    if isinstance(exc, (openai.APIStatusError, openai.APIConnectionError)):  # incl. APITimeoutError
        return map_openai_error(exc, label)
    if isinstance(exc, openai.APIError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return stream_error(body.get("code") or body.get("type"), exc.message, label)
    return ProviderServerError(f"{label} sent a malformed stream event: {exc}")


async def _output_item(reply: StreamedReply, event: Any, index_of: dict[str, int]) -> None:
    """An output item started or finished: a function call's id, name and (final) arguments, by index;
    any other item but a message counts as progress (reasoning, web search, code interpreter)."""
    item, added = event.item, event.type == "response.output_item.added"
    if getattr(item, "type", None) == "function_call":
        call = reply.tool_call(event.output_index)
        call.id = item.call_id or call.id
        call.name = item.name or call.name
        if not added or item.arguments:
            call.arguments = item.arguments or call.arguments
        if item.id:
            index_of[item.id] = event.output_index
        if added:
            await reply.progress()
    elif added and getattr(item, "type", None) != "message":
        await reply.progress()


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, attachments: tuple[Attachment, ...] = ()
) -> Completion:
    """One streamed Responses call for ``request`` (shapes in the module docstring), with ``attachments``.

    Raises:
        ProviderError: a subclass per failure kind (:func:`map_error`; a failed response or ``error``
            event by :func:`stream_error`; a stream ended before ``response.completed``).
        ConfigError: the API-key variable is not set.
    """
    label = f"{cfg.type} endpoint"
    params = request_params(cfg, request, attachments)
    client = chatcompletion.client(cfg)
    reply = StreamedReply(on_text)
    index_of: dict[str, int] = {}  # item id -> output_index, the index calls are assembled by
    final: Any = None
    model = params["model"]
    errors = (openai.APIError, json.JSONDecodeError)
    async with reply.stream(client.responses.create(**params), partial(map_error, label=label), errors) as events:
        async for event in events:
            kind = getattr(event, "type", "")
            if kind in ("response.output_text.delta", "response.refusal.delta"):
                await reply.add_text(event.delta)
            elif kind in ("response.output_item.added", "response.output_item.done"):
                await _output_item(reply, event, index_of)
            elif kind == "response.function_call_arguments.delta":
                reply.tool_call_delta(index_of.get(event.item_id, event.output_index or 0), arguments=event.delta)
                await reply.progress()
            elif kind == "response.function_call_arguments.done":
                reply.tool_call(index_of.get(event.item_id, event.output_index or 0)).arguments = event.arguments
            elif kind in ("response.completed", "response.incomplete"):
                final = event.response
                model = final.model or model
            elif kind == "response.failed":
                err = getattr(event.response, "error", None)
                raise stream_error(
                    getattr(err, "code", None), getattr(err, "message", None) or "response failed", label
                )
            elif kind == "error":
                raise stream_error(event.code, event.message, label)
            elif kind in _PROGRESS_EVENTS or kind.startswith(_PROGRESS_PREFIXES):
                await reply.progress()
    if final is None:
        raise ProviderConnectionError(f"{label} stream ended before response.completed")
    tool_calls = reply.tool_calls(default_id=lambda index, position: f"call_{request.attempt}_{position}")
    return Completion(
        content=reply.content,
        tool_calls=tool_calls,
        finish_reason=_finish_reason(final, bool(tool_calls)),
        usage=usage_of(final.usage),
        model=model,
        time_to_first_token_s=reply.ttft,
    )


adapter = FunctionAdapter(complete)
