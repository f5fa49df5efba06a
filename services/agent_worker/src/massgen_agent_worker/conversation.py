"""One attempt of an agent turn: the LLM calls, their retries and timeouts, and the MCP tool rounds.

- **Tool rounds** (MassGen spec §2.6, bounded): MCP calls go to the broker and their results back to
  the model until it answers or takes a workflow decision. Workflow calls (``new_answer``, ``vote``)
  end the loop and go to the orchestrator; MCP calls in the same batch are then not executed, as in
  MassGen. After ``max_tool_rounds`` rounds only the workflow tools are offered. Each assistant message
  of a round keeps the reply's ``provider_blocks`` (Claude's signed thinking), which the provider
  wants back unchanged with the tool results.
- **Retries**: a retryable provider error (rate limit, 5xx, connection, timeout) is retried up to
  ``max_retries`` times after ``Retry-After`` or an exponential backoff (tenacity); each retry is a
  ``provider.retried`` event, so replay shows it.
- **Generation tools** (``enable_image_generation``, ``_audio_``, ``_video_``, ``_file_generation``): offered
  with the MCP tools and run here, through the provider's API (:mod:`.generation`), not at the broker; so are
  MassGen's bundled multimodal custom tools (:mod:`.multimodal`). A failed generation is a tool result the
  model reads (``Error: ...``), not a failed turn.
- **Computer-use tools** (MassGen's bundled ``computer_use``, ``claude_computer_use``, ``gemini_computer_use``,
  ``browser_automation``): run here too (:mod:`.automation`), not at the executor.
- **Uploads**: the backend's ``upload_files`` are fetched from the Object Store once per attempt and
  handed to the adapter, which attaches them to the first user message (``massgen_es.media``).
- **Memory** (the config's ``memory`` block, MassGen spec §5.4; :mod:`.memory`): facts of the agent's
  persistent memory go into the system message at the start, a call's messages are compressed when they
  pass the trigger, and the answer is stored after the attempt (:meth:`Conversation.remember`).
- **Timeouts**: ``first_token_timeout_seconds`` until the first streamed chunk of any kind, and
  ``request_timeout_seconds`` for the whole call (connect timeouts are the SDK clients').
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
import openai
import tenacity

from massgen_agent_worker import automation, decisions, generation, multimodal, providers
from massgen_agent_worker import memory as mem
from massgen_agent_worker.providers import chatcompletion
from massgen_agent_worker.tools import ToolClient
from massgen_es import ag2, backends, media, pricing
from massgen_es import memory as memory_block
from massgen_es.bus import Draft
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig
from massgen_es.errors import MassgenError, ProviderError, ProviderTimeout
from massgen_es.events import (
    ContextCompressed,
    Event,
    MediaGenerated,
    MemoryRetrieved,
    MemoryStored,
    Message,
    ProviderRetried,
    Record,
    ToolCall,
    ToolSpec,
    TurnRequested,
    UsageRecorded,
)
from massgen_es.failures import failure_of

Emit = Callable[[str, Event], Awaitable[None]]
MAX_BACKOFF_S = 30.0


class Conversation:
    """Runs one attempt of ``req``.

    Args:
        key: event-id prefix unique to this attempt and delivery (``<run>:w:<turn>:<attempt>:d<n>``).
        on_text: where streamed text goes (the coalescer).
        emit: appends an event under ``<turn key>:<suffix>``.
    """

    def __init__(
        self, req: TurnRequested, record: Record, key: str, deltas, emit: Emit, tools: ToolClient,
        objects: ObjectStore | None = None, memory: mem.AgentMemory | None = None,
    ) -> None:
        self.req, self.record, self.key, self.deltas, self.emit, self.tools = req, record, key, deltas, emit, tools
        self.backend: BackendConfig = providers.backend_config(req.backend)
        self.calls = 0
        self.objects = objects
        self.memory = memory
        """The agent's persistent memory (None: no ``persistent_memory``); compression needs only the config."""
        self.rounds: list[Message] = []
        """The attempt's tool rounds (assistant calls and tool results), for ``record_all_tool_calls``."""
        self.compressions = 0
        self.task = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=0)
        """Index of the turn's task (its last user message) in the request's messages: never compressed."""
        self.attachments: tuple[media.Attachment, ...] = ()
        """The backend's ``upload_files``, fetched from the Object Store once per attempt."""

    async def run(self) -> providers.Completion:
        """The attempt's final completion.

        Raises:
            ProviderError: a call failed for good (not retryable, or retries exhausted).
            MassgenError: misconfiguration (missing key, missing SDK ...).
        """
        req, backend = self.req, self.backend
        if backend.upload_files and self.objects is not None:
            self.attachments = await media.fetch_uploads(self.objects, backend.upload_files)
        if self.memory is not None:
            req = msgspec.structs.replace(req, messages=tuple(await self.recall(list(req.messages), "turn")))
        catalog = await self.tools.catalog(req, self.record.run_id, self.record.id, backend)
        media_tools = generation.tools(backend)
        if not catalog.servers and not media_tools:
            squeezed = await self.compress(list(req.messages))
            return await self.decide(msgspec.structs.replace(req, messages=tuple(squeezed)))
        if req.planning_mode:  # what planning mode holds back: tools an LLM (or a person) says irreversible
            await self.tools.classify(req, self.record.run_id, self.record.id, catalog)
        workflow = {t.name for t in req.tools}
        mcp_tools: tuple[ToolSpec, ...] = catalog.tools
        messages = list(req.messages)
        notes = catalog.notes()
        if notes and messages and messages[0].role == "system":
            messages[0] = Message(role="system", content=f"{messages[0].content}\n\n{notes}")
        for round_ in range(backend.max_tool_rounds + 1):
            if round_ > 0:  # a server may have changed its tools (list_changed) during the last round
                mcp_tools = (await self.tools.catalog(req, self.record.run_id, self.record.id, backend)).tools
            mcp_tools = (*mcp_tools, *media_tools)
            offered = {t.name for t in mcp_tools}
            tools = req.tools + (mcp_tools if round_ < backend.max_tool_rounds else ())
            messages = await self.compress(messages)
            result = await self.decide(msgspec.structs.replace(req, messages=tuple(messages), tools=tools))
            calls = [c for c in result.tool_calls if c.name in offered]
            if not calls or any(c.name in workflow for c in result.tool_calls):
                break
            await self.deltas.close()
            answers = await self.run_tools(calls, f"r{round_}")
            unknown = [c for c in result.tool_calls if c.name not in offered]
            answers.update({c.id: f"Error: unknown tool {c.name!r}" for c in unknown})
            round_messages = [Message(
                role="assistant", content=result.content, tool_calls=result.tool_calls,
                provider_blocks=result.provider_blocks,  # Claude's signed thinking, wanted back as it came
            ), *(Message(role="tool", content=answers[c.id], tool_call_id=c.id) for c in result.tool_calls)]
            messages.extend(round_messages)
            self.rounds.extend(round_messages)
        if backend.cwd is not None and any(c.name == "new_answer" for c in result.tool_calls):
            await self.tools.snapshot(req, self.record.run_id, self.record.id)
        return result

    async def recall(self, messages: list[Message], reason: Literal["turn", "compression"]) -> list[Message]:
        """``messages`` with the facts of the agent's memory closest to the task in the system message,
        recorded as ``memory.retrieved`` (a failure too: the turn goes on without them)."""
        if self.memory is None:
            return messages
        query = self.req.messages[self.task].content if self.req.messages else ""
        facts, excluded, failure = (), 0, None
        try:
            facts, excluded = await self.memory.search(
                query, exclude_recent=reason == "turn" and self.memory.cfg.retrieval.exclude_recent)
        except MassgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - mem0 or its provider failed: recorded, the turn goes on
            failure = failure_of(exc)
        await self.emit(f"{self._delivery}:memory.retrieved:{self.compressions}", MemoryRetrieved(
            turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt,
            session=self.memory.session, query=query[:500], reason=reason, facts=facts, excluded_recent=excluded,
            failure=failure))
        return mem.with_system_note(messages, mem.facts_note(facts)) if facts else messages

    async def compress(self, messages: list[Message]) -> list[Message]:
        """``messages``, compressed when they pass ``compression.trigger_threshold`` of the context window
        (:func:`.memory.plan`): the older ones summarised into the system message, recorded as
        ``context.compressed``, then the memory searched again (MassGen retrieves after compressing).

        Raises:
            ProviderError: the summary call failed.
        """
        cfg = self.backend.resolved_memory
        c = cfg.compression if cfg is not None else None
        if cfg is None or c is None or not self.req.messages:
            return messages
        window = c.context_window or memory_block.context_window(self.backend.model)
        task = messages.index(self.req.messages[self.task]) if self.req.messages[self.task] in messages else 0
        todo = mem.plan(messages, task, window, c.trigger_threshold, c.target_ratio)
        if todo is None:
            return messages
        removed = set(todo.removed)
        gone = [messages[i] for i in todo.removed]
        summariser = self.memory or mem.AgentMemory(cfg, self.req.agent_id, "", self.record.run_id)
        try:
            summary = await summariser.summarise(gone)
        except openai.APIError as exc:
            raise chatcompletion.map_openai_error(exc, "memory LLM endpoint") from exc
        kept = [m for i, m in enumerate(messages) if i not in removed]
        out = mem.with_system_note(kept, f"Summary of the earlier conversation:\n{summary}")
        self.compressions += 1
        await self.emit(f"{self._delivery}:compressed:{self.compressions}", ContextCompressed(
            turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt, context_window=window,
            trigger_threshold=c.trigger_threshold, target_ratio=c.target_ratio, tokens_before=todo.tokens_before,
            tokens_after=mem.tokens(out), messages_removed=len(gone), summary=summary,
            summary_model=cfg.persistent_memory.llm.model or ""))
        return await self.recall(out, "compression")

    async def remember(self, result: providers.Completion) -> None:
        """Store the attempt's task and answer in the agent's persistent memory (MassGen records every
        turn), recorded as ``memory.stored`` under ``memory:result``; nothing when there is no answer."""
        if self.memory is None:
            return
        answer = mem.answer_of(result.content, result.tool_calls)
        if not answer.strip():
            return
        task = self.req.messages[self.task].content if self.req.messages else ""
        messages = mem.record_messages(task, answer, self.rounds, self.memory.cfg.recording.record_all_tool_calls)
        facts, failure = (), None
        try:
            facts = await self.memory.store(messages)
        except MassgenError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed store is recorded; the answer still counts
            failure = failure_of(exc)
        await self.emit("memory:result", MemoryStored(
            turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt,
            session=self.memory.session, facts=facts, messages=len(messages), failure=failure))

    @property
    def _delivery(self) -> str:
        return self.key.rsplit(":", 1)[-1]

    async def decide(self, call_req: TurnRequested) -> providers.Completion:
        """The model's next step: one call, or for ``json_schema`` backends the two-step protocol of
        :mod:`massgen_agent_worker.decisions` (a constrained choice, then the answer as free text)."""
        if call_req.kind == "coordination" and backends.tool_mode(call_req.backend) == "json_schema":
            return await decisions.decide(self.call, call_req)
        return await self.call(call_req)

    async def run_tools(self, calls: list[ToolCall], tag: str) -> dict[str, str]:
        """Execute MCP calls through the broker, generation calls, MassGen's bundled multimodal tools and the
        computer-use tools here; ``{call id: text for the model}``."""
        automated = automation.worker_tools(self.backend)
        bundled = {n: t for n, t in multimodal.worker_tools(self.backend).items() if n not in automated}
        made = [c for c in calls if c.name in generation.NAMES]
        ours = [c for c in calls if c.name in bundled]
        used = [c for c in calls if c.name in automated]
        rest = [c for c in calls if c.name not in {*generation.NAMES, *bundled, *automated}]
        answers = await self.tools.call_all(
            self.req, self.record.run_id, self.record.id, f"{self.key}:{tag}", rest, self.backend
        ) if rest else {}
        for call in made:
            answers[call.id] = await self.generate(call, f"{self.key}:{tag}:media:{call.id}")
        for call in ours:
            answers[call.id] = await multimodal.run(
                self.tools, self.objects, self.req, self.record.run_id, self.record.id,
                f"{self.key}:{tag}:mm:{call.id}", self.backend, bundled[call.name], call)
        for call in used:  # computer use: the loop and its browser run here (massgen_agent_worker.automation)
            answers[call.id] = await automation.run_call(
                automated[call.name], call, self.req, self.backend, self.tools, self.objects, self.record.run_id,
                self.record.id, f"{self.key}:{tag}:cu:{call.id}")
        return answers

    async def generate(self, call: ToolCall, request_id: str) -> str:
        """Run a generation call (:mod:`.generation`): the file goes to the Object Store and
        ``media.generated``, and into the workspace when the agent has one; a model call made for it
        (``generate_file``'s content) is ``usage.recorded``. Returns the short text the model reads back
        (``Error: ...`` when it failed)."""
        started = time.monotonic()
        try:
            made = await generation.generate(self.backend, call)
        except (ProviderError, MassgenError) as exc:
            return f"Error: {exc}"
        if made.usage is not None:
            await self.emit(f"usage:{request_id}", UsageRecorded(
                turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt, model=made.model,
                usage=made.usage, duration_s=round(time.monotonic() - started, 4),
                cost_usd=pricing.cost_usd(self.backend.type, made.model, made.usage)))
        if self.objects is None:
            return "Error: this worker has no Object Store to keep the file in"
        ref = await self.objects.put(made.data, made.file_name, exact=True)
        event = MediaGenerated(
            call_id=call.id, turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt,
            kind=made.kind, file_name=made.file_name, mime_type=made.mime_type, object=ref, prompt=made.prompt,
            model=made.model,
        )
        text = f"Generated {made.kind} {made.file_name} ({ref.size} bytes, {made.mime_type})"
        preview = f"\nIt begins:\n{made.preview}" if made.preview else ""
        if self.backend.cwd is None:
            await self.tools.record(self.record.run_id, Draft(request_id, event, self.record.id))
            return text + "." + preview
        saved = await self.tools.save_media(self.record.run_id, self.record.id, request_id, event)
        if saved is None:
            return text + ", but saving it in your workspace failed (no answer from the MCP broker)." + preview
        return text + f", saved in your workspace as {made.file_name}." + preview

    async def call(self, call_req: TurnRequested) -> providers.Completion:
        """One LLM call with retries; records ``usage.recorded`` (with its cost) for the call that worked.

        A retryable :class:`ProviderError` is tried again, ``max_retries`` times at most, after its
        ``retry_after_s`` or else :func:`backoff_s`; each retry is recorded as ``provider.retried``.

        Raises:
            ProviderError: not retryable, or still failing after the last retry (the last error itself).
            MassgenError: misconfiguration (missing key, missing SDK ...).
        """
        n = self.calls
        self.calls += 1

        async def retried(state: tenacity.RetryCallState) -> None:
            # tenacity sets both before it calls before_sleep
            assert state.outcome is not None and state.next_action is not None
            exc = state.outcome.exception()
            assert exc is not None
            await self.emit(f"retry:{self.key}:c{n}:{state.attempt_number}", ProviderRetried(
                turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt,
                retry=state.attempt_number, delay_s=round(state.next_action.sleep, 3), failure=failure_of(exc),
            ))

        async def attempt() -> tuple[providers.Completion, float]:
            started = time.monotonic()
            result = await self._timed(call_req)
            return result, time.monotonic() - started

        result, duration = await tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            stop=tenacity.stop_after_attempt(self.backend.max_retries + 1),
            wait=_retry_delay,
            before_sleep=retried,
            reraise=True,  # the last ProviderError, not tenacity's RetryError
        )(attempt)
        await self.emit("usage" if n == 0 else f"usage:{self.key}:c{n}", UsageRecorded(
            turn_id=self.req.turn_id,
            agent_id=self.req.agent_id,
            attempt=self.req.attempt,
            model=result.model,
            usage=result.usage,
            duration_s=round(duration, 4),
            time_to_first_token_s=result.time_to_first_token_s,
            cost_usd=result.cost_usd if result.cost_usd is not None else pricing.cost_usd(
                self.backend.type, result.model, result.usage),
        ))
        return result

    async def _timed(self, call_req: TurnRequested) -> providers.Completion:
        first = asyncio.Event()

        async def on_chunk(text: str) -> None:
            first.set()
            if text:
                await self.deltas.add(text)

        kwargs = {}
        if self.backend.type in ("claude_code", *ag2.TYPES):  # run their own tool loops: tools go through us
            kwargs["run_tool"] = self._run_one_tool
        if self.attachments:  # config validation let only adapters that take them have uploads
            kwargs["attachments"] = self.attachments
        task = asyncio.ensure_future(providers.complete(call_req, on_chunk, **kwargs))
        limit = self.backend.first_token_timeout_seconds
        try:
            if limit is not None:
                waiter = asyncio.ensure_future(first.wait())
                done, _ = await asyncio.wait({task, waiter}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not done:
                    raise ProviderTimeout(
                        f"{self.backend.type}: no streamed output within {limit:g} s (first_token_timeout_seconds)")
            return await asyncio.wait_for(asyncio.shield(task), self.backend.request_timeout_seconds)
        except TimeoutError:
            raise ProviderTimeout(
                f"{self.backend.type}: the call took longer than {self.backend.request_timeout_seconds:g} s "
                "(request_timeout_seconds)"
            ) from None
        finally:
            if not task.done():
                task.cancel()

    async def _run_one_tool(self, call: ToolCall) -> str:
        answers = await self.run_tools([call], f"cc{self.calls}:{call.id}")
        return answers[call.id]


def backoff_s(retry: int) -> float:
    """Seconds before retry number ``retry + 1`` when the provider names no delay: 0.5, 1, 2 ... up to
    :data:`MAX_BACKOFF_S`."""
    return min(0.5 * 2**retry, MAX_BACKOFF_S)


def _retry_delay(state: tenacity.RetryCallState) -> float:
    """The wait before a retry of :meth:`Conversation.call`: the failed attempt's ``retry_after_s``
    (Retry-After), else :func:`backoff_s`."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return backoff_s(state.attempt_number - 1)
