"""``ag2``: AG2 (AutoGen) agents as a backend, with the real ``ag2`` package (``import autogen``), as
MassGen's ``ExternalAgentBackend`` + ``adapters/ag2_adapter.py`` do (MassGen spec §2.1/§2.2). Config shape
and checks: ``massgen_es.ag2``.

- **Single agent** (``agent_config``): an ``AssistantAgent``/``ConversableAgent`` with the request's tools
  (the workflow tools ``new_answer``/``vote``...) as tool *signatures* (``update_tool_signature``), so a
  call comes back as a tool call for the orchestrator and is never executed inside AG2, as in MassGen.
  With a code executor, code blocks of a reply that takes no workflow decision are run and their result
  goes back to the agent as the next message, AG2's own assistant/executor loop, up to
  ``max_tool_rounds`` rounds.
- **Group chat** (``group_config``): the agents, a ``User`` agent holding the workflow tools (MassGen's
  default user agent, or ``user_agent``), and AG2's ``AutoPattern``/``RoundRobinPattern``
  (``initiate_group_chat``); the chat ends when ``User`` takes a workflow decision (or, on a turn
  without workflow tools, speaks), or after ``max_rounds``.
- **LLM calls**: an ``openai`` ``llm_config`` entry goes through AG2's own OpenAI client, on the endpoint
  and key our ``openai`` backend uses unless the entry sets ``base_url`` / ``api_key: ${NAME}``;
  ``anthropic`` and ``google`` entries go through our ``claude`` / ``gemini`` adapters
  (:class:`ProviderClient`), with their endpoint and key defaults. AG2's reply cache (``cache_seed``) is
  off: every reply is a real call.
- **Code execution** never happens in the worker: :class:`ExecutorCodeExecutor` (AG2's ``CodeExecutor``
  protocol) sends each block to the executor service through ``run_tool`` as an ``execute_command``
  call (``execution.requested`` / ``execution.completed`` events, the agent's local or Docker sandbox).
- **Events**: AG2 runs synchronously in a thread of its own; every message an AG2 agent sends is streamed
  to ``on_text`` as it is sent (AG2 gives whole messages, not tokens), prefixed with the speaker's name
  in a group chat; usage is AG2's usage summary over all agents (``gather_usage_summary``), priced by our
  table. AG2's console output is silenced.
- **Errors**: AG2 passes the ``openai`` SDK's exceptions through; they map as the ``chatcompletion``
  adapter maps them (our adapters behind :class:`ProviderClient` raise ours already).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
from autogen import Agent, AssistantAgent, ConversableAgent, LLMConfig, gather_usage_summary
from autogen.agentchat import initiate_group_chat
from autogen.agentchat.group.patterns import AutoPattern, RoundRobinPattern
from autogen.coding import CodeBlock, CodeResult, MarkdownCodeExtractor
from autogen.io import IOStream
from autogen.oai import client as ag2_client
from autogen.oai.client import OpenAIClient
from openai.types.chat import ChatCompletion

from massgen_agent_worker import providers
from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText
from massgen_agent_worker.tools import EXECUTE_COMMAND
from massgen_es import ag2, backends, pricing
from massgen_es.config import BackendConfig
from massgen_es.errors import ConfigError, MassgenError, ProviderError
from massgen_es.events import Message, ToolCall, ToolSpec, TurnRequested, Usage

RunTool = Callable[[ToolCall], Awaitable[str]]
T = TypeVar("T")


USER = "User"
WORKFLOW_TOOLS = frozenset({"new_answer", "vote", "submit", "restart"})
"""Tools that are a decision for the orchestrator (in a group chat only ``User`` holds them)."""
PYTHON = ("python", "py", "python3")
SHELL = ("bash", "sh", "shell", "console")
_HEREDOC = "MASSGEN_AG2_CODE_EOF"


class _Abandoned(Exception):
    """The call was cancelled (a timeout, the worker stopping): raised in AG2's thread to end its chat."""


_POLL_S = 0.25


def _on_loop(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T], cancelled: threading.Event) -> T:
    """Await ``awaitable`` on the worker's ``loop`` from AG2's thread and return its result; once the call
    is ``cancelled``, give up (:class:`_Abandoned`) instead of waiting on a loop that may be gone."""

    async def wait() -> T:
        return await awaitable

    future = asyncio.run_coroutine_threadsafe(wait(), loop)
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except concurrent.futures.TimeoutError:
            if cancelled.is_set():
                future.cancel()
                raise _Abandoned("the AG2 call was cancelled") from None


class _Silent:
    """AG2's IOStream with the console output dropped (what matters goes out as events)."""

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        """Drop printed text."""

    def send(self, message: Any) -> None:
        """Drop AG2's structured events."""

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        """No human input (agents run with ``human_input_mode=NEVER``)."""
        return ""


def command_for(block: CodeBlock) -> str | None:
    """The shell command that runs one code block in the sandbox: Python through ``python3`` reading the
    code from a quoted here-document, shell code as it is; None for another language."""
    language = (block.language or "python").lower()
    if language in PYTHON:
        return f"python3 - <<'{_HEREDOC}'\n{block.code}\n{_HEREDOC}"
    if language in SHELL:
        return block.code
    return None


class ExecutorCodeExecutor:
    """An AG2 ``CodeExecutor`` that runs code blocks at the executor service, never in the worker.

    Args:
        run_tool: the turn's tool runner (coroutine function; records the call as events).
        loop: the event loop ``run_tool`` belongs to (AG2 calls this executor from its own thread).
        timeout_s: each block's time limit (the AG2 executor's ``timeout``); None: the agent's default.
        cancelled: set when the call is cancelled (a waiting block is then abandoned).
    """

    def __init__(self, run_tool: RunTool, loop: asyncio.AbstractEventLoop, timeout_s: float | None,
                 cancelled: threading.Event) -> None:
        self.run_tool, self.loop, self.timeout_s, self.cancelled = run_tool, loop, timeout_s, cancelled
        self._ids = itertools.count(1)
        self._extractor = MarkdownCodeExtractor()

    @property
    def code_extractor(self) -> MarkdownCodeExtractor:
        """AG2's Markdown code-block extractor (```` ```python ```` fences)."""
        return self._extractor

    def execute_code_blocks(self, code_blocks: list[CodeBlock]) -> CodeResult:
        """Run the blocks in order, stopping at the first that fails (as AG2's command-line executors do);
        returns the last exit code and all output."""
        outputs: list[str] = []
        exit_code = 0
        for block in code_blocks:
            command = command_for(block)
            if command is None:
                return CodeResult(exit_code=1, output="\n".join([*outputs, f"unknown language {block.language}"]))
            args: dict[str, Any] = {"command": command}
            if self.timeout_s is not None:
                args["timeout"] = self.timeout_s
            call = ToolCall(id=f"ag2_code_{next(self._ids)}", name=EXECUTE_COMMAND.name, arguments=json.dumps(args))
            text = _on_loop(self.loop, self.run_tool(call), self.cancelled)
            exit_code, output = _result(text)
            outputs.append(output)
            if exit_code != 0:
                break
        return CodeResult(exit_code=exit_code, output="\n".join(o for o in outputs if o))

    def restart(self) -> None:
        """Nothing to restart: each block is a fresh command in the sandbox."""


def _result(text: str) -> tuple[int, str]:
    """``(exit code, output)`` of an ``execute_command`` result as the tool runner returns it (MassGen's
    JSON, or ``Error: ...``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return 1, text
    if not isinstance(data, dict):
        return 1, text
    output = "".join(str(data.get(k) or "") for k in ("stdout", "stderr"))
    if data.get("timed_out"):
        output += "\n[timed out]"
    return (0 if data.get("success") else int(data.get("exit_code") or 1)), output


def llm_config(raw: object) -> LLMConfig:
    """AG2's ``LLMConfig`` for a config's ``llm_config`` (entries checked by ``massgen_es.ag2.check``), AG2's
    reply cache off. An ``openai`` entry gets its endpoint and key here (AG2's own OpenAI client calls
    it); an ``anthropic`` or ``google`` entry keeps its ``base_url`` / ``api_key: ${NAME}`` for
    :class:`ProviderClient`, which resolves them as our ``claude`` / ``gemini`` backend does.

    Raises:
        ConfigError: the API-key variable of an ``openai`` entry is not set.
    """
    entries: list[dict[str, Any]] = []
    for raw_entry in ag2.llm_entries(raw):
        entry = dict(raw_entry)
        api_type = str(entry.setdefault("api_type", "openai"))
        entry["cache_seed"] = None
        if api_type != "openai":  # ProviderClient: the key stays a reference, resolved by our adapter
            entries.append(entry)
            continue
        url = entry.get("base_url") or backends.base_url("openai", None)
        env = ag2.key_reference(raw_entry) or backends.key_env("openai", None, url) or ""
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"backend ag2: set the environment variable {env} (the key of llm_config api_type "
                              "openai, or name another with `api_key: ${NAME}`)")
        entry.update(api_key=key, base_url=url)
        entries.append(entry)
    return LLMConfig(*entries)


class ProviderClient(OpenAIClient):
    """AG2's model client for ``api_type`` ``anthropic`` and ``google``: the call goes through our own
    ``claude`` / ``gemini`` adapter (same endpoint and key defaults, error mapping and usage), since
    AG2 0.14's Anthropic client passes arguments our pinned ``anthropic`` SDK no longer takes and its
    Gemini client needs Vertex AI's SDK. Installed in place of AG2's own two by :func:`_use_our_clients`;
    answers as AG2's OpenAI client does (an OpenAI ``ChatCompletion``)."""

    backend_type = ""

    def __init__(self, response_format: Any = None, **config: Any) -> None:
        # not OpenAIClient.__init__, which inspects an openai client; these are the attributes it sets
        self._oai_client = None
        self.response_format = response_format
        self.config = config

    def create(self, params: dict[str, Any]) -> ChatCompletion:
        """One call of the agent's model through our adapter, in the running call's context."""
        return _current.get().provider_call(self.backend_type, self.config, params)


class _ClaudeClient(ProviderClient):
    backend_type = "claude"


class _GeminiClient(ProviderClient):
    backend_type = "gemini"


def _use_our_clients() -> None:
    """Make AG2 build :class:`ProviderClient` s for ``anthropic`` and ``google`` entries (AG2 picks the class
    by ``api_type`` from its ``autogen.oai.client`` module)."""
    ag2_client.AnthropicClient = _ClaudeClient  # type: ignore[misc, assignment]
    ag2_client.GeminiClient = _GeminiClient  # type: ignore[misc, assignment]
    ag2_client.anthropic_import_exception = None
    ag2_client.gemini_import_exception = None


_use_our_clients()
_current: contextvars.ContextVar[_Run] = contextvars.ContextVar("ag2_run")


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return "" if content is None else str(content)


def neutral_messages(messages: list[dict[str, Any]]) -> tuple[Message, ...]:
    """AG2's OpenAI-format messages as our neutral ones (a message's ``name`` is dropped)."""
    out: list[Message] = []
    for m in messages:
        role, content = m.get("role"), _text_of(m.get("content"))
        if role == "tool":
            out.append(Message(role="tool", content=content, tool_call_id=str(m.get("tool_call_id") or "")))
        elif role == "assistant":
            calls = tuple(ToolCall(id=str(c.get("id")), name=str(c["function"]["name"]),
                                   arguments=str(c["function"].get("arguments") or "{}"))
                          for c in m.get("tool_calls") or () if isinstance(c, dict))
            out.append(Message(role="assistant", content=content, tool_calls=calls))
        else:
            out.append(Message(role="system" if role == "system" else "user", content=content))
    return tuple(out)


def _function(spec: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": spec.name, "description": spec.description,
                                             "parameters": spec.parameters}}


def _openai_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": m.content or None, "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls]})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


class _Run:
    """One call: the AG2 agents built from the config, what they streamed, and how to finish."""

    def __init__(self, cfg: BackendConfig, request: TurnRequested, on_text: OnText, run_tool: RunTool | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg, self.request, self.on_text, self.run_tool, self.loop = cfg, request, on_text, run_tool, loop
        self.agents: list[ConversableAgent] = []
        self.group = cfg.group_config is not None
        self.sent_any = False
        self.cancelled = threading.Event()

    def emit(self, text: str) -> None:
        """Stream ``text`` from AG2's thread (``""``: progress without text); pieces joined by blank lines."""
        chunk = ("\n\n" if text and self.sent_any else "") + text
        self.sent_any = self.sent_any or bool(text)
        _on_loop(self.loop, self.on_text(chunk), self.cancelled)

    def _stream(self, sender: ConversableAgent, message: dict[str, Any] | str, recipient: Any, silent: bool) -> Any:
        """AG2 hook on every message an agent sends (a group chat's turns): streamed with the speaker's name."""
        text = message if isinstance(message, str) else str(message.get("content") or "")
        self.emit(f"[{sender.name}] {text}" if text else "")
        return message

    def provider_call(self, backend_type: str, config: Mapping[str, Any], params: dict[str, Any]) -> ChatCompletion:
        """One LLM call of an AG2 agent through our adapter of ``backend_type`` (see :class:`ProviderClient`),
        run on the worker's event loop; the reply as an OpenAI ``ChatCompletion``."""
        backend: dict[str, Any] = {"type": backend_type, "model": params.get("model") or config.get("model"),
                                   "max_retries": 0, "request_timeout_seconds": self.cfg.request_timeout_seconds}
        for key in ("base_url", "temperature", "top_p", "max_tokens"):
            value = params.get(key, config.get(key))
            if value is not None:
                backend[key] = value
        if ag2.key_reference(config):
            backend["api_key_env"] = ag2.key_reference(config)
        tools = tuple(ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                               parameters=t["function"].get("parameters") or {"type": "object", "properties": {}})
                      for t in params.get("tools") or () if isinstance(t, dict) and "function" in t)
        turn = msgspec.structs.replace(self.request, messages=neutral_messages(params.get("messages") or []),
                                       tools=tools, backend=backend)

        async def progress(_text: str) -> None:
            await self.on_text("")  # the whole message is streamed when AG2 sends it

        done = _on_loop(self.loop, providers.complete(turn, progress), self.cancelled)
        calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                 for c in done.tool_calls]
        return ChatCompletion.model_validate({
            "id": f"ag2-{backend_type}", "object": "chat.completion", "created": int(time.time()), "model": done.model,
            "choices": [{"index": 0, "finish_reason": "tool_calls" if calls else "stop", "message": {
                "role": "assistant", "content": done.content or None, "tool_calls": calls or None}}],
            "usage": {"prompt_tokens": done.usage.input_tokens, "completion_tokens": done.usage.output_tokens,
                      "total_tokens": done.usage.input_tokens + done.usage.output_tokens},
        })

    def agent(self, block: Mapping[str, Any], default_llm: object) -> ConversableAgent:
        """An AG2 agent from one agent block (MassGen's ``setup_agent_from_config``)."""
        kwargs: dict[str, Any] = {
            "name": block["name"],
            "system_message": block.get("system_message", "You are a helpful AI assistant."),
            "human_input_mode": "NEVER",
            "llm_config": llm_config(block.get("llm_config", default_llm)),
            "code_execution_config": self.code_execution(block),
        }
        if block.get("description"):
            kwargs["description"] = block["description"]
        cls = AssistantAgent if block.get("type", "conversable") == "assistant" else ConversableAgent
        made = cls(**kwargs)
        made.register_hook("process_message_before_send", self._stream)
        self.agents.append(made)
        return made

    def code_execution(self, block: Mapping[str, Any]) -> dict[str, Any] | Literal[False]:
        """``{"executor": ExecutorCodeExecutor}`` for an agent with a code executor, else False."""
        executor = ag2.executor_of(block)
        if executor is None:
            return False
        if self.run_tool is None:
            raise ConfigError("backend ag2: code execution needs the worker's tool runner, which this call lacks")
        timeout = executor.get("timeout")
        return {"executor": ExecutorCodeExecutor(self.run_tool, self.loop,
                                                 float(timeout) if timeout is not None else None, self.cancelled)}

    def single(self) -> tuple[str, list[dict[str, Any]]]:
        """Run ``agent_config``: ``(content, tool calls)`` of its last reply."""
        assert self.cfg.agent_config is not None
        agent = self.agent(self.cfg.agent_config, None)
        for spec in self.request.tools:
            agent.update_tool_signature(_function(spec), is_remove=False, silent_override=True)
        history = _openai_messages(self.request.messages)
        runner = None
        if ag2.executor_of(self.cfg.agent_config) is not None:
            runner = ConversableAgent("code_runner", llm_config=False, human_input_mode="NEVER",
                                      code_execution_config=self.code_execution(self.cfg.agent_config))
        for _ in range(self.cfg.max_tool_rounds + 1):
            reply = agent.generate_reply(messages=history)
            content, calls = _content_and_calls(reply)
            self.emit(content)
            if calls or runner is None:
                return content, calls
            executed = runner.generate_reply(messages=[{"role": "user", "content": content}])
            if executed is None:
                return content, calls
            result = executed if isinstance(executed, str) else str(executed.get("content") or "")
            self.emit(result)
            history += [{"role": "assistant", "content": content}, {"role": "user", "content": result}]
        return content, calls

    def group_chat(self) -> tuple[str, list[dict[str, Any]]]:
        """Run ``group_config`` (MassGen's ``_setup_group_chat`` + ``_execute_group_chat``)."""
        group = self.cfg.group_config
        assert group is not None
        default_llm = group["llm_config"]
        experts = [self.agent(block, default_llm) for block in group["agents"]]
        workflow = [t for t in self.request.tools if t.name in WORKFLOW_TOOLS]
        if group.get("user_agent"):
            user = self.agent(group["user_agent"], default_llm)
        else:
            user = ConversableAgent(
                name=USER, human_input_mode="NEVER", code_execution_config=False,
                description="Makes final decision after reviewing expert discussions. Calls workflow tools to "
                            "provide the final answer.",
                llm_config=llm_config(default_llm))
            user.register_hook("process_message_before_send", self._stream)
            self.agents.append(user)
        for spec in workflow:
            user.update_tool_signature(_function(spec), is_remove=False, silent_override=True)
        for expert in experts:
            for spec in self.request.tools:
                if spec.name not in WORKFLOW_TOOLS:
                    expert.update_tool_signature(_function(spec), is_remove=False, silent_override=True)
        pattern_cfg = group["pattern"]
        manager_llm = (pattern_cfg.get("group_manager_args") or {}).get("llm_config", default_llm)

        def ends(message: dict[str, Any]) -> bool:
            return message.get("name") == USER and ("tool_calls" in message or not workflow)

        pattern_type = AutoPattern if pattern_cfg["type"] == "auto" else RoundRobinPattern
        initial = next(a for a in experts if a.name == pattern_cfg["initial_agent"])
        pattern = pattern_type(initial_agent=initial, agents=experts, user_agent=user,
                               group_manager_args={"llm_config": llm_config(manager_llm), "is_termination_msg": ends})
        messages = [{**m, "name": USER} for m in _openai_messages(self.request.messages) if m["role"] != "tool"]
        result, _context, _last = initiate_group_chat(
            pattern=pattern, messages=messages, max_rounds=int(group.get("max_rounds", ag2.DEFAULT_MAX_ROUNDS)))
        self.usage_summary = result.cost
        history = result.chat_history
        from_user = [m for m in history[len(messages):] if m.get("name") == USER]
        last = from_user[-1] if from_user else (history[-1] if history else {})
        return str(last.get("content") or ""), list(last.get("tool_calls") or [])

    def run(self) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
        """The call, in AG2's synchronous API (this runs in a thread): content, tool calls, usage summary."""
        _current.set(self)  # this thread's context: ProviderClient finds its call here
        with IOStream.set_default(_Silent()):
            if self.group:
                content, calls = self.group_chat()
                return content, calls, dict(self.usage_summary or {})
            content, calls = self.single()
            return content, calls, dict(gather_usage_summary(list[Agent](self.agents)))


def _content_and_calls(reply: Any) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(reply, dict):
        return str(reply.get("content") or ""), list(reply.get("tool_calls") or [])  # pyright: ignore[reportUnknownArgumentType]
    return ("" if reply is None else str(reply)), []


def usage_of(summary: Mapping[str, Any]) -> tuple[Usage, float | None, str]:
    """Summed usage, its cost by our price table (None when a model has no price) and the main model,
    from AG2's ``gather_usage_summary`` (``usage_including_cached_inference``: ``{model: {prompt_tokens,
    completion_tokens, ...}}``)."""
    per_model = {k: v for k, v in (summary.get("usage_including_cached_inference") or {}).items()
                 if k != "total_cost" and isinstance(v, dict)}
    total = Usage(input_tokens=0, output_tokens=0)
    cost: float | None = 0.0
    for model, u in per_model.items():
        one = Usage(input_tokens=int(u.get("prompt_tokens") or 0), output_tokens=int(u.get("completion_tokens") or 0))
        total = Usage(input_tokens=total.input_tokens + one.input_tokens,
                      output_tokens=total.output_tokens + one.output_tokens)
        price = pricing.cost_usd("ag2", model, one)
        cost = None if cost is None or price is None else cost + price
    main = max(per_model, key=lambda m: per_model[m].get("total_tokens") or 0) if per_model else "ag2"
    return total, (round(cost, 8) if cost is not None else None), main


def _provider_error(exc: Exception) -> ProviderError:
    """AG2 passes the ``openai`` SDK's exceptions through: map them as the ``chatcompletion`` adapter does."""
    import openai

    if isinstance(exc, openai.APIError):
        from massgen_agent_worker.providers.chatcompletion import map_openai_error

        return map_openai_error(exc, "ag2 (openai)")
    return ProviderError(f"ag2: {type(exc).__name__}: {exc}")


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, run_tool: RunTool | None = None
) -> Completion:
    """Run the AG2 agent or group chat once for ``request`` (see the module docstring).

    Raises:
        ConfigError: an API-key variable is not set, or the block is invalid.
        ProviderError: a provider call failed (a subclass per failure kind).
    """
    run = _Run(cfg, request, on_text, run_tool, asyncio.get_running_loop())
    try:
        content, raw_calls, summary = await asyncio.to_thread(run.run)
    except asyncio.CancelledError:
        run.cancelled.set()  # AG2's thread stops at its next wait on this loop (an LLM call ends by its timeout)
        raise
    except MassgenError:
        raise
    except Exception as exc:  # AG2 lets the SDK's exceptions through
        raise _provider_error(exc) from exc
    calls = tuple(
        ToolCall(id=str(c.get("id") or f"ag2_call_{i}"), name=str(c["function"]["name"]),
                 arguments=str(c["function"].get("arguments") or "{}"))
        for i, c in enumerate(raw_calls) if isinstance(c, dict) and isinstance(c.get("function"), dict)
    )
    usage, cost, model = usage_of(summary)
    return Completion(content=content, tool_calls=calls, finish_reason="tool_calls" if calls else "stop",
                      usage=usage, model=model, cost_usd=cost)


adapter = FunctionAdapter(complete)
