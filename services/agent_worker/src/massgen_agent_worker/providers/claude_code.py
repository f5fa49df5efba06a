"""``claude_code``: Claude Code itself, driven through the Claude Agent SDK (MassGen spec §2.2).

Each call starts the Claude Code CLI (``ClaudeSDKClient`` of ``claude-agent-sdk``) for one prompt,
lets it run its own agent loop to the end, and stops it (leaving the client closes its stdin and
waits for it to exit, also when the call is cancelled):

- **CLI**: ``$MASSGEN_CLAUDE_CODE_CLI``, else ``<sys.prefix>/claude-code/node_modules/.bin/claude``
  (installed by ``npm install --prefix .venv/claude-code @anthropic-ai/claude-code@2.1.330``);
  missing → ``ConfigError`` with that command.
- **Prompt**: the ``system`` messages become the system prompt (replacing Claude Code's own); the
  other messages become the user prompt. A single user message is sent as it is; a longer history
  is rendered as a tagged transcript (:func:`render_prompt`), since Claude Code starts every call
  as a fresh session (never saved: ``--no-session-persistence``). It is delivered verbatim
  (``verbatim_prompts``: no ``@file`` expansion). ``cwd`` is ``backend.cwd`` when that directory
  exists, else a temporary directory for the call.
- **Tools**: every :class:`ToolSpec` of the request (the workflow tools and the MCP tools, already
  prefixed ``mcp__<server>__``) is a tool of one in-process SDK MCP server named ``massgen``, so
  Claude Code offers it as ``mcp__massgen__<name>`` (``mcp__fs__read_file`` is registered as
  ``fs__read_file``, hence ``mcp__massgen__fs__read_file``: five characters fewer under the API's
  64-character limit). The handlers map back to our names. A workflow tool (any name not starting
  with ``mcp__``) is only recorded, as a neutral :class:`ToolCall` of the result, and answers
  "recorded; end your turn"; an MCP tool goes to ``run_tool`` (the worker's broker) and its text
  is what the model reads (``run_tool`` None: an error result). Call ids are Claude Code's
  ``tool_use`` ids, learnt from a ``PreToolUse`` hook that runs before each handler. The whole
  ``massgen`` server is in ``allowed_tools`` (no permission prompt); the configured
  ``allowed_tools`` (minus ``mcp__*`` names) and ``disallowed_tools`` apply to Claude Code's own
  tools, under ``permission_mode`` (default ``acceptEdits``).
- **Isolation**: no settings files are loaded (``setting_sources=[]``) and no MCP servers other
  than ``massgen`` (``strict_mcp_config``); ``ENABLE_TOOL_SEARCH=false`` so our tools are sent
  with their schemas instead of being deferred behind ``ToolSearch``; ``CLAUDE_CODE_MAX_RETRIES=0``
  since retries are the worker's; telemetry, error reporting, the auto-updater and other
  non-essential traffic are off. Each of these variables can be overridden from the environment.
- **Output**: assistant text is streamed to ``on_text`` token by token (partial messages), every
  other message or stream event gives ``on_text("")``. ``content`` is the text of all top-level
  assistant messages, joined by blank lines; ``tool_calls`` the recorded workflow calls; usage
  and ``cost_usd`` come from the ``ResultMessage`` (Claude Code's own cost estimate).
- **Errors**: an error result maps by its HTTP status (``provider_error_for_status``); without a
  status, ``authentication_failed`` → ``ProviderAuthError``, ``rate_limit`` →
  ``ProviderRateLimited``, anything else → ``ProviderConnectionError`` (no HTTP answer at all).
  A CLI that cannot start → ``ProviderConnectionError``; one that dies → ``ProviderError`` with its
  stderr; ``request_timeout_seconds`` → ``ProviderTimeout`` (the turn is interrupted first, so the
  CLI exits at once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLINotFoundError,
    HookMatcher,
    ProcessError,
    ResultError,
    ResultMessage,
    StreamEvent,
    TextBlock,
    create_sdk_mcp_server,
    tool,
)
from claude_agent_sdk.types import HookContext, HookInput, HookJSONOutput

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText
from massgen_agent_worker.providers.chatcompletion import api_key
from massgen_es import backends
from massgen_es.config import BackendConfig
from massgen_es.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    provider_error_for_status,
)
from massgen_es.events import Message, ToolCall, TurnRequested, Usage

RunTool = Callable[[ToolCall], Awaitable[str]]

CLI_VERSION = "2.1.330"
CLI_ENV = "MASSGEN_CLAUDE_CODE_CLI"
INSTALL_COMMAND = (
    "npm install -q --no-fund --no-audit --prefix .venv/claude-code "
    f"@anthropic-ai/claude-code@{CLI_VERSION}"
)
SERVER = "massgen"
"""Name of the in-process MCP server carrying our tools (Claude Code sees ``mcp__massgen__*``)."""
RECORDED = "recorded; end your turn"
DEFAULT_PERMISSION_MODE = "acceptEdits"

# Defaults for the CLI's environment; the worker's own environment wins where it sets one.
CLI_ENV_DEFAULTS = {
    "ENABLE_TOOL_SEARCH": "false",
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}

_STDERR_LINES = 20
_INTERRUPT_WAIT_S = 2.0


def cli_path() -> Path:
    """The Claude Code executable: ``$MASSGEN_CLAUDE_CODE_CLI``, else the one in the venv.

    Raises:
        ConfigError: it does not exist (with the install command).
    """
    configured = os.environ.get(CLI_ENV)
    path = Path(configured) if configured else Path(sys.prefix) / "claude-code" / "node_modules" / ".bin" / "claude"
    if not path.is_file() or not os.access(path, os.X_OK):
        where = f"{CLI_ENV}={configured}" if configured else str(path)
        raise ConfigError(
            f"backend claude_code: the Claude Code CLI is not installed ({where} is not an executable file); "
            f"run `{INSTALL_COMMAND}` or set {CLI_ENV} to a `claude` executable"
        )
    return path


def sdk_tool_name(name: str) -> str:
    """The name a tool of ours gets on the ``massgen`` server (``mcp__fs__x`` → ``fs__x``)."""
    return name[len("mcp__"):] if is_mcp_tool(name) else name


def is_mcp_tool(name: str) -> bool:
    """Whether ``name`` (as Claude Code reports it) is an MCP tool (``mcp__<server>__<tool>``)."""
    return name.startswith("mcp__")


def render_prompt(messages: tuple[Message, ...]) -> tuple[str, str]:
    """``(system prompt, user prompt)`` for a neutral history.

    System messages are joined by blank lines. One user message alone is the prompt as it is. A
    longer history becomes a transcript: each message in ``<user>``, ``<assistant>`` or
    ``<tool_result name=...>`` tags, assistant tool calls as ``[called NAME with ARGS]`` lines,
    followed by an instruction to continue as the assistant.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    rest = [m for m in messages if m.role != "system"]
    if len(rest) == 1 and rest[0].role == "user":
        return system, rest[0].content
    names: dict[str, str] = {}
    parts = ["The conversation so far, oldest first:", ""]
    for m in rest:
        if m.role == "tool":
            name = names.get(m.tool_call_id or "", "tool")
            parts.append(f'<tool_result name="{name}">\n{m.content}\n</tool_result>')
        elif m.role == "assistant":
            lines = [m.content] if m.content else []
            for c in m.tool_calls:
                names[c.id] = c.name
                lines.append(f"[called {c.name} with {c.arguments}]")
            parts.append("<assistant>\n" + "\n".join(lines) + "\n</assistant>")
        else:
            parts.append(f"<user>\n{m.content}\n</user>")
    parts += ["", "Continue as the assistant: respond to the conversation above."]
    return system, "\n".join(parts)


def _schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool's JSON schema as the SDK passes it through unchanged (it needs ``type`` and
    ``properties``; without them it would read the dict as a ``{name: python type}`` map)."""
    schema = dict(parameters) if isinstance(parameters, dict) else {}
    if not isinstance(schema.get("type"), str):
        schema["type"] = "object"
    schema.setdefault("properties", {})
    return schema


def _text(result: str, is_error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": result}], "is_error": is_error}


class _Tools:
    """The ``massgen`` SDK MCP server for one call, and what its handlers recorded."""

    def __init__(self, request: TurnRequested, run_tool: RunTool | None) -> None:
        self.run_tool = run_tool
        self.workflow_calls: list[ToolCall] = []
        self.ids: dict[tuple[str, str], collections.deque[str]] = collections.defaultdict(collections.deque)
        self.counter = 0
        self.visible: dict[str, str] = {}  # name Claude Code sees → our name
        sdk_tools = []
        for spec in request.tools:
            local = sdk_tool_name(spec.name)
            self.visible[f"mcp__{SERVER}__{local}"] = spec.name
            sdk_tools.append(tool(local, spec.description, _schema(spec.parameters))(self._handler(spec.name)))
        self.server = create_sdk_mcp_server(SERVER, tools=sdk_tools) if sdk_tools else None

    @staticmethod
    def _key(name: str, args: Any) -> tuple[str, str]:
        return name, json.dumps(args, sort_keys=True, default=str)

    async def pre_tool_use(self, data: HookInput, tool_use_id: str | None, _context: HookContext) -> HookJSONOutput:
        """``PreToolUse`` hook: remember the ``tool_use`` id of each call of one of our tools."""
        fields: dict[str, Any] = dict(data)
        ours = self.visible.get(fields.get("tool_name", ""))
        use_id = tool_use_id or fields.get("tool_use_id")
        if ours is not None and use_id:
            self.ids[self._key(ours, fields.get("tool_input") or {})].append(use_id)
        return {}

    def _call_id(self, name: str, args: Any) -> str:
        queue = self.ids.get(self._key(name, args))
        if queue:
            return queue.popleft()
        self.counter += 1
        return f"cc_call_{self.counter}"

    def _handler(self, name: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def handle(args: dict[str, Any]) -> dict[str, Any]:
            call = ToolCall(id=self._call_id(name, args), name=name, arguments=json.dumps(args))
            if not is_mcp_tool(name):
                self.workflow_calls.append(call)
                return _text(RECORDED)
            if self.run_tool is None:
                return _text(f"Error: tool {name} cannot be executed here (no MCP broker for this call)", True)
            return _text(await self.run_tool(call))

        return handle


def _cwd(cfg: BackendConfig, stack: contextlib.ExitStack) -> str:
    if cfg.cwd and Path(cfg.cwd).is_dir():
        return str(Path(cfg.cwd).resolve())
    return stack.enter_context(tempfile.TemporaryDirectory(prefix="massgen-claude-code-"))


def _env(cfg: BackendConfig) -> dict[str, str]:
    env = {k: os.environ.get(k, v) for k, v in CLI_ENV_DEFAULTS.items()}
    url = backends.base_url(cfg.type, cfg.base_url)
    if url:
        env["ANTHROPIC_BASE_URL"] = url
    env["ANTHROPIC_API_KEY"] = api_key(cfg, url)
    return env


def _usage(raw: dict[str, Any] | None) -> Usage:
    u = raw or {}
    cache_read = int(u.get("cache_read_input_tokens") or 0)
    details = u.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(u.get("input_tokens") or 0) + cache_read + int(u.get("cache_creation_input_tokens") or 0),
        output_tokens=int(u.get("output_tokens") or 0),
        cached_tokens=cache_read,
        reasoning_tokens=int(details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0,
    )


_NO_STATUS_ERRORS: dict[str, type[ProviderError]] = {
    "authentication_failed": ProviderAuthError,
    "billing_error": ProviderAuthError,
    "rate_limit": ProviderRateLimited,
    "invalid_request": ProviderBadRequest,
}


def result_error(status: int | None, kind: str | None, text: str) -> ProviderError:
    """The provider error for a failed Claude Code run: by HTTP status when the API answered,
    else by Claude Code's error kind (no HTTP answer: a connection error)."""
    message = f"claude_code: {text.strip() or 'Claude Code reported an error'}"
    if status is not None:
        return provider_error_for_status(status, message)
    return _NO_STATUS_ERRORS.get(kind or "", ProviderConnectionError)(message)


class _Stream:
    """Turns the SDK's messages into ``on_text`` calls and collects what the result needs."""

    def __init__(self, on_text: OnText, model: str) -> None:
        self.on_text = on_text
        self.started = time.monotonic()
        self.ttft: float | None = None
        self.texts: list[str] = []  # text blocks of the top-level assistant messages
        self.streamed: set[str] = set()  # API message ids whose text already went out as deltas
        self.message_id = ""
        self.text_block_open = False  # a text block started and none of its text went out yet
        self.emitted = False
        self.model = model
        self.api_error: str | None = None  # Claude Code's error kind on a synthetic assistant message
        self.result: ResultMessage | None = None

    async def _text(self, text: str, first_of_block: bool) -> None:
        if first_of_block and self.emitted:
            await self.on_text("\n\n")  # blocks are joined by blank lines in ``content`` too
        self.emitted = True
        await self.on_text(text)

    def _first_output(self) -> None:
        if self.ttft is None:
            self.ttft = time.monotonic() - self.started

    async def handle(self, message: Any) -> None:
        if isinstance(message, StreamEvent):
            await self._event(message)
        elif isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
            self._first_output()
            if message.error is not None:
                self.api_error = message.error
            elif message.model and message.model != "<synthetic>":
                self.model = message.model
            texts = [b.text for b in message.content if isinstance(b, TextBlock) and b.text]
            self.texts.extend(texts)
            if texts and (message.message_id is None or message.message_id not in self.streamed):
                for text in texts:  # not streamed as deltas (a synthetic error message, say)
                    await self._text(text, True)
            else:
                await self.on_text("")
        elif isinstance(message, ResultMessage):
            self.result = message
        else:
            await self.on_text("")

    async def _event(self, message: StreamEvent) -> None:
        event = message.event
        kind = event.get("type")
        top = message.parent_tool_use_id is None  # else a subagent's: progress only
        if kind == "content_block_delta":
            self._first_output()
        if top and kind == "message_start":
            self.message_id = (event.get("message") or {}).get("id") or ""
        elif top and kind == "content_block_start":
            self.text_block_open = (event.get("content_block") or {}).get("type") == "text"
        delta = event.get("delta") or {}
        if top and kind == "content_block_delta" and delta.get("type") == "text_delta" and delta.get("text"):
            self.streamed.add(self.message_id)
            first, self.text_block_open = self.text_block_open, False
            await self._text(delta["text"], first)
        else:
            await self.on_text("")


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, run_tool: RunTool | None = None
) -> Completion:
    """Run Claude Code once for ``request`` (see the module docstring).

    Raises:
        ConfigError: the CLI is not installed, or the API-key variable is not set.
        ProviderError: the run failed (a subclass per failure kind).
    """
    cli = cli_path()
    env = _env(cfg)
    system, prompt = render_prompt(request.messages)
    tools = _Tools(request, run_tool)
    stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
    allowed = [t for t in (cfg.allowed_tools or ()) if not is_mcp_tool(t)]
    if tools.server is not None:
        allowed.append(f"mcp__{SERVER}")  # every tool of our server, without a permission prompt
    stream = _Stream(on_text, cfg.model or "claude-code")
    with contextlib.ExitStack() as stack:
        options = ClaudeAgentOptions(
            cli_path=str(cli),
            cwd=_cwd(cfg, stack),
            system_prompt=system,
            model=cfg.model,
            permission_mode=cfg.permission_mode or DEFAULT_PERMISSION_MODE,
            allowed_tools=allowed,
            disallowed_tools=list(cfg.disallowed_tools),
            max_thinking_tokens=cfg.max_thinking_tokens,
            mcp_servers={SERVER: tools.server} if tools.server is not None else {},
            strict_mcp_config=True,
            setting_sources=[],
            hooks={"PreToolUse": [HookMatcher(matcher=f"mcp__{SERVER}__.*", hooks=[tools.pre_tool_use])]}
            if tools.server is not None else None,
            include_partial_messages=True,
            verbatim_prompts=True,
            extra_args={"no-session-persistence": None},  # a fresh session per call, never resumed
            env=env,
            stderr=stderr.append,
        )
        try:
            async with ClaudeSDKClient(options) as client:  # leaving it stops the CLI, on cancel too
                try:
                    async with asyncio.timeout(cfg.request_timeout_seconds):
                        await client.query(prompt or "Continue.")
                        async for message in client.receive_response():
                            await stream.handle(message)
                except TimeoutError:
                    # interrupt the turn first: the CLI then exits as soon as its stdin closes,
                    # instead of after the SDK's 5 s grace period
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.interrupt(), _INTERRUPT_WAIT_S)
                    raise ProviderTimeout(
                        f"claude_code: the call took longer than {cfg.request_timeout_seconds:g} s "
                        "(request_timeout_seconds)"
                    ) from None
        except ResultError as exc:
            text = exc.result or "; ".join(exc.errors) or str(exc)
            raise result_error(exc.api_error_status, stream.api_error, text) from None
        except CLINotFoundError as exc:
            raise ConfigError(f"backend claude_code: {exc}; run `{INSTALL_COMMAND}`") from None
        except CLIConnectionError as exc:
            raise ProviderConnectionError(f"claude_code: could not run the Claude Code CLI {cli}: {exc}") from None
        except ProcessError as exc:
            tail = "\n".join(stderr)
            raise ProviderError(
                f"claude_code: the Claude Code CLI failed (exit code {exc.exit_code})" + (f": {tail}" if tail else "")
            ) from None
        except ClaudeSDKError as exc:
            raise ProviderError(f"claude_code: unexpected output from the Claude Code CLI: {exc}") from None
    result = stream.result
    if result is None:
        tail = "\n".join(stderr)
        raise ProviderConnectionError(
            "claude_code: the Claude Code CLI ended without a result" + (f": {tail}" if tail else "")
        )
    if result.is_error:
        text = result.result or "; ".join(result.errors or ()) or result.subtype
        if result.subtype != "success" and result.api_error_status is None and stream.api_error is None:
            raise ProviderError(f"claude_code: the run ended with {result.subtype}: {text}")
        raise result_error(result.api_error_status, stream.api_error, text)
    return Completion(
        content="\n\n".join(stream.texts),
        tool_calls=tuple(tools.workflow_calls),
        finish_reason=result.stop_reason or result.subtype,
        usage=_usage(result.usage),
        model=stream.model,
        time_to_first_token_s=stream.ttft,
        cost_usd=result.total_cost_usd,
    )


adapter = FunctionAdapter(complete)
