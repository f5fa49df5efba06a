"""``claude``: the Anthropic Messages API through the official ``anthropic`` SDK (MassGen spec §2.2).

One streamed ``POST /v1/messages`` per call (``messages.create(stream=True)``, raw stream events):

- messages: ``system`` messages become the ``system`` parameter; an assistant's tool calls become
  ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks inside a ``user`` message;
  consecutive messages of one role are merged, since the API wants user and assistant to alternate
  (spec §2.5);
- tools: ``{"name", "description", "input_schema"}`` (names such as ``mcp__fs__read_file`` unchanged),
  plus the server tools ``web_search_20250305`` (``enable_web_search``) and ``code_execution_20250825``
  (``enable_code_execution``; generally available in SDK 2.12, so no beta header). Server tools run at
  Anthropic and never come back as tool calls (spec §2.6);
- ``thinking`` becomes ``{"type": "enabled", "budget_tokens": n}``; thinking text is streamed as
  progress only (``on_text("")``), never returned as content. The reply's ``thinking`` (text and
  ``signature``) and ``redacted_thinking`` (``data``) blocks come back as ``Completion.provider_blocks``
  (provider ``anthropic``), and an assistant message's blocks are sent first in its content, unchanged
  and in order: with thinking on, the API wants a tool loop's assistant turn to open with its thinking
  blocks exactly as they came (Anthropic docs, "Building with extended thinking": "Extended thinking
  with tool use" and "Preserving thinking blocks"; the SDK's ``ThinkingBlockParam`` says the same), and
  a tool loop keeps one thinking setting throughout. So thinking stays on across the tool rounds of a
  worker's turn; a request continuing a tool loop whose turn has no thinking blocks (the orchestrator's
  enforcement retry, whose assistant message comes from ``turn.responded``, which does not keep them)
  runs without thinking rather than being refused;
- usage follows the other adapters: ``input_tokens`` is the whole prompt (Anthropic's uncached
  ``input_tokens`` plus cache reads and cache writes), ``cached_tokens`` the cache reads, and
  ``reasoning_tokens`` the thinking tokens when the API reports them (spec §2.7).

SDK 2.12 no longer declares ``temperature`` / ``top_p`` as arguments, so they travel in the request
body (``extra_body``), under the configured ``extra_body``. Errors leave as :mod:`massgen_es.errors`
provider errors (:func:`map_anthropic_error`); the SDK never retries (``max_retries=0``).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anthropic
import httpx2  # the SDK's own HTTP transport: raised as-is while a stream is being read

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, loop_cached
from massgen_agent_worker.providers.chatcompletion import api_key, retry_after_s
from massgen_agent_worker.providers.streaming import StreamedReply
from massgen_es import backends
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderTimeout,
    provider_error_for_status,
)
from massgen_es.events import Message, ProviderBlock, ToolCall, ToolSpec, TurnRequested, Usage
from massgen_es.media import Attachment

DEFAULT_MAX_TOKENS = 4096
"""MassGen's ``max_tokens`` for Claude when the config sets none (spec §2.1)."""

PROVIDER = "anthropic"
"""``ProviderBlock.provider`` of the blocks this adapter keeps, and the only ones it sends back."""
THINKING_BLOCKS = ("thinking", "redacted_thinking")

WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
CODE_EXECUTION_TOOL = {"type": "code_execution_20250825", "name": "code_execution"}

# Anthropic's ``error.type`` → its HTTP status (docs "Errors"), for errors that arrive inside a
# stream whose HTTP status was already 200.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "conflict_error": 409,
    "memory_path_conflict_error": 409, "memory_precondition_failed_error": 412,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "timeout_error": 504,
    "overloaded_error": 529,
}
# Raised while opening or reading a stream; httpx2 (the SDK's transport) and ValueError (an undecodable
# event) reach us unwrapped from a stream being read.
_STREAM_ERRORS = (anthropic.APIError, httpx2.HTTPError, ValueError)


def map_anthropic_error(exc: Exception, label: str) -> ProviderError:
    """The :mod:`massgen_es.errors` provider error for an exception met during an Anthropic call.

    ``APIStatusError`` goes through ``provider_error_for_status`` (``retry_after_s`` from
    ``retry-after-ms`` / ``retry-after``; 529 overloaded is ≥ 500, so retryable). An ``error`` event
    inside a stream reaches us as an ``APIStatusError`` carrying the stream's status 200: its
    ``error.type`` gives the status instead (unknown types count as a server error). Timeouts give
    ``ProviderTimeout``; connection failures, including a transport error while reading the stream,
    ``ProviderConnectionError``; anything else (an undecodable stream event) ``ProviderServerError``.
    """
    if isinstance(exc, anthropic.APIStatusError):
        detail = exc.api_message or exc.message
        if exc.status_code >= 400:
            return provider_error_for_status(
                exc.status_code,
                f"{label} returned HTTP {exc.status_code} ({exc.type or 'error'}): {detail}",
                retry_after_s=retry_after_s(exc.response.headers),
            )
        status = _ERROR_TYPE_STATUS.get(exc.type or "", 500)
        return provider_error_for_status(status, f"{label} sent an error event mid-stream ({exc.type}): {detail}")
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return ProviderTimeout(f"{label} timed out: {exc}")
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return ProviderConnectionError(f"{label} unreachable or connection dropped: {exc!r}")
    return ProviderServerError(f"{label} sent an invalid stream: {exc!r}")


def _client(cfg: BackendConfig) -> anthropic.AsyncAnthropic:
    """The shared SDK client of this event loop for ``cfg``'s endpoint, key and timeouts.

    Raises:
        ConfigError: the API-key variable is not set.
    """
    url = backends.base_url(cfg.type, cfg.base_url) or "https://api.anthropic.com"
    key = api_key(cfg, url)
    return loop_cached(
        ("anthropic", url, key, cfg.request_timeout_seconds, cfg.connect_timeout_seconds),
        lambda: anthropic.AsyncAnthropic(
            base_url=url,
            api_key=key,
            max_retries=0,  # retries are the worker's decision, recorded as events
            timeout=anthropic.Timeout(cfg.request_timeout_seconds, connect=cfg.connect_timeout_seconds),
        ),
    )


def _tool_input(call: ToolCall) -> tuple[dict[str, Any], str | None]:
    """``tool_use.input`` for ``call``: its parsed arguments, or ``{}`` and a note when they are not
    a JSON object (the model then still sees what it wrote)."""
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value, None
    return {}, f"(The arguments of tool call {call.id} to {call.name} were not a JSON object: {call.arguments})"


def convert_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """Neutral messages → ``(system, messages)`` of the Messages API (spec §2.5).

    ``system`` joins the system messages (blank line between them; "" when none). Every message gets
    a list of content blocks: first an assistant message's ``provider_blocks`` (the ``anthropic`` ones,
    as they came: its signed thinking), then ``text`` (empty text is dropped, the API refuses it),
    ``tool_use`` (``input`` = the parsed ``ToolCall.arguments``; ``{}`` plus a text note if
    unparseable) and ``tool_result`` (in a ``user`` message). Consecutive messages of one role are merged, and in a user
    message the ``tool_result`` blocks come first, as the API requires. Messages left without blocks
    are dropped.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            if m.content:
                system.append(m.content)
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            role = "user"
            blocks.append({"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content})
        else:
            role = m.role
            texts = [m.content] if m.content else []
            uses = []
            for call in m.tool_calls if m.role == "assistant" else ():
                args, note = _tool_input(call)
                if note:
                    texts.append(note)
                uses.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
            kept = [dict(b.data) for b in m.provider_blocks if m.role == "assistant" and b.provider == PROVIDER]
            blocks = kept + [{"type": "text", "text": t} for t in texts] + uses
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for msg in out:
        if msg["role"] == "user":
            msg["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
    return "\n\n".join(system), out


def convert_tools(tools: tuple[ToolSpec, ...], cfg: BackendConfig) -> list[dict[str, Any]]:
    """Function tools as ``{"name", "description", "input_schema"}``, then the enabled server tools."""
    out: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
    ]
    if cfg.enable_web_search:
        out.append(dict(WEB_SEARCH_TOOL))
    if cfg.enable_code_execution:
        out.append(dict(CODE_EXECUTION_TOOL))
    return out


def _continues_tool_loop(messages: list[dict[str, Any]]) -> bool:
    """The request answers an assistant's ``tool_use`` (last message carries ``tool_result``s)."""
    return bool(messages) and messages[-1]["role"] == "user" and any(
        b["type"] == "tool_result" for b in messages[-1]["content"]
    )


def _turn_opens_with_thinking(messages: list[dict[str, Any]]) -> bool:
    """The assistant turn that ``messages`` end in (its messages after the last user message without a
    ``tool_result``) starts with a thinking block."""
    first: dict[str, Any] | None = None
    for msg in reversed(messages):
        if msg["role"] == "assistant":
            first = msg
        elif not any(b["type"] == "tool_result" for b in msg["content"]):
            break
    return first is not None and first["content"][0]["type"] in THINKING_BLOCKS


def content_block(a: Attachment) -> dict[str, Any]:
    """An uploaded file as a Messages API content block: ``image`` (base64 source), or ``document`` (a
    PDF as a base64 source, plain text as a text source)."""
    if a.kind == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": a.mime_type, "data": a.base64}}
    if a.kind == "file" and a.mime_type == "text/plain":
        return {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                               "data": a.data.decode("utf-8", "replace")}, "title": a.name}
    if a.kind == "file":
        return {"type": "document", "source": {"type": "base64", "media_type": a.mime_type, "data": a.base64},
                "title": a.name}
    raise ConfigError(f"the Messages API takes no {a.kind} uploads ({a.name}); remove it from `upload_files`")


def request_params(
    cfg: BackendConfig, request: TurnRequested, attachments: tuple[Attachment, ...] = ()
) -> dict[str, Any]:
    """The ``messages.create`` keyword arguments for ``request`` (without ``stream``); ``attachments``
    (the backend's ``upload_files``) go first in the first user message, as the docs advise for images.

    Extended thinking is sent, including on the calls that continue a tool loop whose assistant turn
    opens with the thinking blocks of its first reply (the worker's tool rounds keep them). A call that
    continues a tool loop without them runs without thinking: the API refuses thinking there ("a final
    assistant message must start with a thinking block"; docs, "Preserving thinking blocks").

    Raises:
        ConfigError: no ``backend.model``, or ``backend.thinking.budget_tokens`` is not below
            ``max_tokens``.
    """
    if not cfg.model:
        raise ConfigError(f"`backend.model` is required for backend type {cfg.type} (e.g. claude-sonnet-4-5)")
    max_tokens = cfg.max_tokens if cfg.max_tokens is not None else DEFAULT_MAX_TOKENS
    system, messages = convert_messages(request.messages)
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if first_user is not None and attachments:
        first_user["content"][:0] = [content_block(a) for a in attachments]
    params: dict[str, Any] = {"model": cfg.model, "max_tokens": max_tokens, "messages": messages}
    if system:
        params["system"] = system
    tools = convert_tools(request.tools, cfg)
    if tools:
        params["tools"] = tools
    thinking = cfg.thinking
    if thinking is not None and thinking.type == "enabled":
        if thinking.budget_tokens >= max_tokens:
            raise ConfigError(
                f"backend.thinking.budget_tokens ({thinking.budget_tokens}) must be below backend.max_tokens "
                f"({max_tokens}); Anthropic counts thinking inside max_tokens. Raise max_tokens or lower the budget"
            )
        if not _continues_tool_loop(messages) or _turn_opens_with_thinking(messages):
            params["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget_tokens}
    body = {k: getattr(cfg, k) for k in ("temperature", "top_p") if getattr(cfg, k) is not None}
    body.update(cfg.extra_body)
    if body:
        params["extra_body"] = body
    if cfg.betas:  # MassGen's `betas` (spec §5.2): Anthropic's beta features, named in one header
        params["extra_headers"] = {"anthropic-beta": ",".join(cfg.betas)}
    return params


class _ThinkingBlocks:
    """A reply's ``thinking`` / ``redacted_thinking`` blocks while they stream, by block index."""

    def __init__(self) -> None:
        self.by_index: dict[int, dict[str, Any]] = {}

    def start(self, index: int, block: Any) -> None:
        """Keep a starting content block if it is a thinking one, with only the fields the API sent."""
        if block.type in THINKING_BLOCKS:
            self.by_index[index] = block.to_dict()

    def delta(self, index: int, delta: Any) -> None:
        """Apply a content delta to a kept block: ``thinking_delta`` texts are joined, a
        ``signature_delta`` sets the signature (as the SDK's own stream accumulator does)."""
        block = self.by_index.get(index)
        if block is None:
            return
        if delta.type == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
        elif delta.type == "signature_delta":
            block["signature"] = delta.signature

    def blocks(self) -> tuple[ProviderBlock, ...]:
        """The kept blocks in stream order, as ``anthropic`` provider blocks."""
        return tuple(ProviderBlock(provider=PROVIDER, data=self.by_index[i]) for i in sorted(self.by_index))


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, attachments: tuple[Attachment, ...] = ()
) -> Completion:
    """One streamed Messages API call for ``request`` (with ``attachments``, :func:`request_params`):
    text deltas go to ``on_text``, every other
    content delta (tool input JSON, thinking, signature, citations) to ``on_text("")``.

    Returns the joined text, the ``tool_use`` blocks as neutral ``ToolCall(id, name, arguments)``
    (arguments: the streamed JSON exactly as written, ``"{}"`` when empty), ``finish_reason`` = the
    ``stop_reason`` (``end_turn``, ``tool_use``, ``max_tokens``, ``pause_turn``...), usage, model,
    the time to the first content delta, and the ``thinking`` / ``redacted_thinking`` blocks in stream
    order as ``provider_blocks`` (``thinking_delta`` texts joined, the ``signature_delta`` set, as the
    SDK's own accumulator does; never part of the text).

    Raises:
        ProviderError: a subclass per failure kind (:func:`map_anthropic_error`); also
            ``ProviderConnectionError`` when the stream ends before ``message_stop``.
        ConfigError: the API-key variable is not set, no model, or the thinking budget does not fit.
    """
    params = request_params(cfg, request, attachments)
    client = _client(cfg)
    label = f"{cfg.type} endpoint"
    reply = StreamedReply(on_text)
    usage_in: dict[str, int] = {}
    output_tokens = 0
    thinking_tokens = 0
    finish: str | None = None
    model = params["model"]
    stopped = False
    thinking = _ThinkingBlocks()
    opening = client.messages.create(stream=True, **params)
    async with reply.stream(opening, partial(map_anthropic_error, label=label), _STREAM_ERRORS) as events:
        async for event in events:
            kind = event.type
            if kind == "message_start":
                model = event.message.model or model
                u = event.message.usage
                for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                    usage_in[name] = getattr(u, name, None) or 0
                output_tokens = u.output_tokens or 0
            elif kind == "content_block_start":
                block = event.content_block
                if block.type == "tool_use":
                    reply.tool_call_delta(event.index, id=block.id, name=block.name)
                thinking.start(event.index, block)
            elif kind == "content_block_delta":
                reply.first_output()  # any content counts, not only text
                delta = event.delta
                if delta.type == "text_delta":
                    await reply.add_text(delta.text)
                    continue
                if delta.type == "input_json_delta" and event.index in reply.calls:  # not server tools'
                    reply.tool_call_delta(event.index, arguments=delta.partial_json)
                thinking.delta(event.index, delta)
                await reply.progress()
            elif kind == "message_delta":
                finish = event.delta.stop_reason or finish
                u = event.usage
                output_tokens = u.output_tokens or output_tokens
                for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                    if getattr(u, name, None) is not None:  # cumulative totals: overwrite
                        usage_in[name] = getattr(u, name)
                details = getattr(u, "output_tokens_details", None)
                if details is not None:
                    thinking_tokens = details.thinking_tokens or 0
            elif kind == "message_stop":
                stopped = True
    if not stopped:
        raise ProviderConnectionError(f"{label}: the stream ended before message_stop (truncated reply)")
    usage = Usage(
        input_tokens=sum(usage_in.values()),
        output_tokens=output_tokens,
        cached_tokens=usage_in.get("cache_read_input_tokens", 0),
        reasoning_tokens=thinking_tokens,
    )
    return Completion(
        reply.content, reply.tool_calls(empty_arguments="{}"), finish, usage, model, reply.ttft,
        provider_blocks=thinking.blocks(),
    )


adapter = FunctionAdapter(complete)
