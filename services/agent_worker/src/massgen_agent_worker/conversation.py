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
- **Generation tools** (``enable_image_generation`` / ``enable_audio_generation``): offered with the MCP
  tools and run here, through the provider's API (:mod:`.generation`), not at the broker.
- **Computer-use tools** (MassGen's bundled ``computer_use``, ``claude_computer_use``, ``gemini_computer_use``,
  ``browser_automation``): custom tools the worker runs itself (:mod:`.automation`), not the executor.
- **Uploads**: the backend's ``upload_files`` are fetched from the Object Store once per attempt and
  handed to the adapter, which attaches them to the first user message (``massgen_es.media``).
- **Timeouts**: ``first_token_timeout_seconds`` until the first streamed chunk of any kind, and
  ``request_timeout_seconds`` for the whole call (connect timeouts are the SDK clients').
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import tenacity

from massgen_agent_worker import automation, decisions, generation, providers
from massgen_agent_worker.tools import ToolClient
from massgen_es import backends, media, pricing
from massgen_es.bus import Draft
from massgen_es.bus.objects import ObjectStore
from massgen_es.config import BackendConfig
from massgen_es.errors import MassgenError, ProviderError, ProviderTimeout
from massgen_es.events import (
    Event,
    MediaGenerated,
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
        objects: ObjectStore | None = None,
    ) -> None:
        self.req, self.record, self.key, self.deltas, self.emit, self.tools = req, record, key, deltas, emit, tools
        self.backend: BackendConfig = providers.backend_config(req.backend)
        self.calls = 0
        self.objects = objects
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
        catalog = await self.tools.catalog(req, self.record.run_id, self.record.id, backend)
        media_tools = generation.tools(backend)
        if not catalog.servers and not media_tools:
            return await self.decide(req)
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
            result = await self.decide(msgspec.structs.replace(req, messages=tuple(messages), tools=tools))
            calls = [c for c in result.tool_calls if c.name in offered]
            if not calls or any(c.name in workflow for c in result.tool_calls):
                break
            await self.deltas.close()
            answers = await self.run_tools(calls, f"r{round_}")
            unknown = [c for c in result.tool_calls if c.name not in offered]
            answers.update({c.id: f"Error: unknown tool {c.name!r}" for c in unknown})
            messages.append(Message(
                role="assistant", content=result.content, tool_calls=result.tool_calls,
                provider_blocks=result.provider_blocks,  # Claude's signed thinking, wanted back as it came
            ))
            messages.extend(Message(role="tool", content=answers[c.id], tool_call_id=c.id) for c in result.tool_calls)
        if backend.cwd is not None and any(c.name == "new_answer" for c in result.tool_calls):
            await self.tools.snapshot(req, self.record.run_id, self.record.id)
        return result

    async def decide(self, call_req: TurnRequested) -> providers.Completion:
        """The model's next step: one call, or for ``json_schema`` backends the two-step protocol of
        :mod:`massgen_agent_worker.decisions` (a constrained choice, then the answer as free text)."""
        if call_req.kind == "coordination" and backends.tool_mode(call_req.backend) == "json_schema":
            return await decisions.decide(self.call, call_req)
        return await self.call(call_req)

    async def run_tools(self, calls: list[ToolCall], tag: str) -> dict[str, str]:
        """Execute MCP calls through the broker, generation calls here; ``{call id: text for the model}``."""
        here = automation.worker_tools(self.backend)
        made = [c for c in calls if c.name in generation.NAMES]
        used = [c for c in calls if c.name in here]
        rest = [c for c in calls if c.name not in generation.NAMES and c.name not in here]
        answers = await self.tools.call_all(
            self.req, self.record.run_id, self.record.id, f"{self.key}:{tag}", rest, self.backend
        ) if rest else {}
        for call in made:
            answers[call.id] = await self.generate(call, f"{self.key}:{tag}:media:{call.id}")
        for call in used:  # computer use: the loop and its browser run here (massgen_agent_worker.automation)
            answers[call.id] = await automation.run_call(
                here[call.name], call, self.req, self.backend, self.tools, self.objects, self.record.run_id,
                self.record.id, f"{self.key}:{tag}:cu:{call.id}")
        return answers

    async def generate(self, call: ToolCall, request_id: str) -> str:
        """Run a ``generate_image`` / ``generate_audio`` call (:mod:`.generation`): the file goes to the
        Object Store and ``media.generated``, and into the workspace when the agent has one. Returns the
        short text the model reads back (``Error: ...`` when it failed)."""
        try:
            made = await generation.generate(self.backend, call)
        except (ProviderError, MassgenError) as exc:
            return f"Error: {exc}"
        if self.objects is None:
            return "Error: this worker has no Object Store to keep the file in"
        ref = await self.objects.put(made.data, made.file_name, exact=True)
        event = MediaGenerated(
            call_id=call.id, turn_id=self.req.turn_id, agent_id=self.req.agent_id, attempt=self.req.attempt,
            kind=made.kind, file_name=made.file_name, mime_type=made.mime_type, object=ref, prompt=made.prompt,
            model=made.model,
        )
        text = f"Generated {made.kind} {made.file_name} ({ref.size} bytes, {made.mime_type})"
        if self.backend.cwd is None:
            await self.tools.record(self.record.run_id, Draft(request_id, event, self.record.id))
            return text + "."
        saved = await self.tools.save_media(self.record.run_id, self.record.id, request_id, event)
        if saved is None:
            return text + ", but saving it in your workspace failed (no answer from the MCP broker)."
        return text + f", saved in your workspace as {made.file_name}."

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
        if self.backend.type == "claude_code":  # runs its own tool loop: MCP calls go through us
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
