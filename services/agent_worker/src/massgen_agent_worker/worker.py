"""The agent_worker service: a pull consumer on the agent-turn work queue.

Any number of worker processes share the durable consumer. For each ``turn.requested`` it records
``turn.started``, streams coalesced ``text.delta`` events, then ``usage.recorded`` and
``turn.responded`` (or ``turn.failed``), and only then acks. While the LLM call runs it sends
in-progress heartbeats so JetStream does not redeliver live work; a worker killed mid-turn stops
heartbeating, the turn is redelivered, and the response's deterministic ``Nats-Msg-Id`` (plus the
core ignoring answers to settled attempts) keeps the answer from being written twice.

A turn of a run that has ended (completed, timed out, failed, cancelled) is acknowledged and not run.
While a turn runs, the worker follows the run's ``orchestrator`` subject: when the run ends (a
``run.cancelled`` above all), the turn is abandoned at once (its LLM call and tool calls cancelled),
and every event of the turn is appended fenced on that subject, so none lands after the run's end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from massgen_agent_worker import memory, providers
from massgen_agent_worker.conversation import Conversation
from massgen_agent_worker.tools import ToolClient
from massgen_es.bus import Draft, once
from massgen_es.bus.jetstream import ACK_WAIT_S, JetStreamEventLog, TurnQueue, delivery_count
from massgen_es.bus.objects import ObjectStore
from massgen_es.errors import MassgenError, ProviderError
from massgen_es.events import (
    TERMINAL_EVENTS,
    Event,
    Record,
    RunSubmitted,
    Source,
    TextDelta,
    TurnFailed,
    TurnRequested,
    TurnResponded,
    TurnStarted,
)
from massgen_es.failures import failure_of

log = logging.getLogger("massgen.agent_worker")


class Coalescer:
    """Buffers streamed text and flushes it as one delta every ``interval_s`` or ``max_chars``.

    Flushes happen on the stream's own pace (when a chunk arrives) and once at the end, so deltas stay
    in order without a timer task.
    """

    def __init__(self, flush: Callable[[str], object], interval_s: float = 0.05, max_chars: int = 200) -> None:
        self._flush = flush
        self.interval_s = interval_s
        self.max_chars = max_chars
        self._buf: list[str] = []
        self._size = 0
        self._last = time.monotonic()

    async def add(self, text: str) -> None:
        """Add streamed text; flush if the buffer is big or old enough."""
        self._buf.append(text)
        self._size += len(text)
        if self._size >= self.max_chars or time.monotonic() - self._last >= self.interval_s:
            await self.close()

    async def close(self) -> None:
        """Flush whatever is buffered."""
        if self._buf:
            text, self._buf, self._size = "".join(self._buf), [], 0
            self._last = time.monotonic()
            await self._flush(text)  # type: ignore[misc]


class _RunEnded(Exception):
    """The run ended (completed, timed out, failed, cancelled) while one of its turns ran."""

    def __init__(self, ended: Record) -> None:
        super().__init__(ended.type)
        self.ended = ended


class AgentWorker:
    """Executes agent turns.

    Args:
        nc: a connected NATS client.
        concurrency: turns handled at once by this process.
        ack_wait_s: seconds of silence before JetStream redelivers a turn; heartbeats come at a third of it.
        max_deliver: deliveries of one turn before JetStream gives up on it.
    """

    def __init__(
        self,
        nc: Client,
        *,
        concurrency: int = 4,
        ack_wait_s: float = ACK_WAIT_S,
        max_deliver: int = 5,
        instance: str | None = None,
    ) -> None:
        self.log = JetStreamEventLog(nc)
        self.queue = TurnQueue(nc)
        self.concurrency = concurrency
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.source = Source(service="agent_worker", instance=instance or Source.instance_id())
        self.tools = ToolClient(nc, self.source)
        self.objects = ObjectStore(nc)
        self.handled = 0
        self._sessions: dict[str, str] = {}
        """Run id -> its session (``run.submitted``'s ``session_id``, else the run id), for memory."""

    async def run(self) -> None:
        """Pull and execute turns until cancelled; in-flight turns are cancelled and get redelivered."""
        try:
            await self.queue.serve(
                self._handle, concurrency=self.concurrency, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver
            )
        finally:
            providers.shutdown()  # model servers this process started (the local backend's)

    async def _handle(self, record: Record, msg: Msg) -> None:
        req = record.event
        if not isinstance(req, TurnRequested):
            log.error("dropping work item of type %s: expected turn.requested", record.type)
            await msg.term()
            return
        last = await self.log.last(record.run_id, "orchestrator")
        if last is not None and isinstance(last.event, TERMINAL_EVENTS):  # a cancelled or ended run's turn
            once.log_skipped(log, record, last)
            await msg.ack()
            return
        fence = once.Fence(last.seq if last is not None else 0)
        turn = asyncio.ensure_future(self._turn(record, req, delivery_count(msg), fence))
        watch = asyncio.ensure_future(self._run_end(record.run_id, fence.seq or 0))
        try:
            await asyncio.wait({turn, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and watch.exception() is not None:  # watching failed, not the run: finish the turn
                log.warning("run %s: following the run's end failed (%s); the turn goes on, its events still "
                            "fenced", record.run_id, watch.exception())
                await asyncio.wait({turn})
        finally:
            for task in (turn, watch):
                task.cancel()
            await asyncio.gather(turn, watch, return_exceptions=True)
        failure = None if turn.cancelled() else turn.exception()
        watched = watch.done() and not watch.cancelled() and watch.exception() is None
        ended = watch.result() if watched else getattr(failure, "ended", None)
        if ended is not None:  # issue 15 item 6: a cancelled run's turn is abandoned, not finished
            once.log_skipped(log, record, ended, "abandoned; its late results are not recorded")
        elif failure is not None:
            raise failure
        await msg.ack()
        self.handled += 1

    async def _memory(self, record: Record, req: TurnRequested, key: str) -> tuple[memory.AgentMemory | None, bool]:
        """The agent's persistent memory for this turn (None without ``persistent_memory``), and whether
        this attempt already stored its answer (its ``memory:result`` is in the log: a redelivery).

        Raises:
            ConfigError: the backend block in the request is invalid.
        """
        cfg = providers.backend_config(req.backend).resolved_memory
        if cfg is None or not cfg.persistent_memory.enabled:
            return None, False
        run_id = record.run_id
        if run_id not in self._sessions:
            if len(self._sessions) >= 1024:  # a long-lived worker: forget the oldest runs
                self._sessions.pop(next(iter(self._sessions)))
            first = next((r.event for r in await self.log.read(run_id, source="cli")
                          if isinstance(r.event, RunSubmitted)), None)
            self._sessions[run_id] = (first.session_id if first is not None else None) or run_id
        p = cfg.persistent_memory
        agent = memory.AgentMemory(cfg, p.agent_name or req.agent_id, p.session_name or self._sessions[run_id], run_id)
        prior = await once.prior(self.log, run_id, "agent_worker", f"{key}:memory", after_seq=record.seq)
        return agent, prior.outcome is not None

    async def _run_end(self, run_id: str, after_seq: int) -> Record:
        """The run's terminal record, once the orchestrator writes one after ``after_seq``."""
        async for r in self.log.follow(run_id, after_seq, source="orchestrator"):
            if isinstance(r.event, TERMINAL_EVENTS):
                return r
        raise AssertionError("the log's follow never ends")

    async def _turn(self, record: Record, req: TurnRequested, delivery: int, fence: once.Fence) -> None:
        """One attempt of a turn, every event appended only while the run goes on (``once.Fence``).

        Raises:
            _RunEnded: the run ended meanwhile; what the turn still had to record is dropped.
        """
        key = f"{record.run_id}:w:{req.turn_id}:{req.attempt}"

        async def emit(suffix: str, event: Event) -> None:
            ended = await once.append_unless_ended(
                self.log, record.run_id, "agent_worker", [Draft(f"{key}:{suffix}", event, record.id)],
                origin=self.source, fence=fence)
            if ended is not None:
                raise _RunEnded(ended)

        await emit(
            f"started:{delivery}",
            TurnStarted(
                turn_id=req.turn_id,
                agent_id=req.agent_id,
                attempt=req.attempt,
                worker=self.source.instance,
                delivery=delivery,
            ),
        )
        seq = 0

        async def flush(text: str) -> None:
            nonlocal seq
            seq += 1
            await emit(
                f"d{delivery}:{seq}",
                TextDelta(
                    turn_id=req.turn_id,
                    agent_id=req.agent_id,
                    attempt=req.attempt,
                    seq=seq,
                    text=text,
                    delivery=delivery,
                ),
            )

        deltas = Coalescer(flush)
        try:
            agent_memory, stored = await self._memory(record, req, key)
            talk = Conversation(req, record, f"{key}:d{delivery}", deltas, emit, self.tools, self.objects,
                                agent_memory)
            result = await talk.run()
            if not stored:
                await talk.remember(result)
        except _RunEnded:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug (ours or an SDK's) costs this turn, recorded, not the run
            if not isinstance(exc, ProviderError | MassgenError):
                log.exception("run %s: turn %s failed unexpectedly", record.run_id, req.turn_id)
            await deltas.close()
            await emit("failed", TurnFailed(
                turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, failure=failure_of(exc)
            ))
        else:
            await deltas.close()
            await emit(
                "responded",
                TurnResponded(
                    turn_id=req.turn_id,
                    agent_id=req.agent_id,
                    attempt=req.attempt,
                    content=result.content,
                    tool_calls=result.tool_calls,
                    finish_reason=result.finish_reason,
                ),
            )

