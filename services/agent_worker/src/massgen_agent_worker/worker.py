"""The agent_worker service: a pull consumer on the agent-turn work queue.

Any number of worker processes share the durable consumer. For each ``turn.requested`` it records
``turn.started``, streams coalesced ``text.delta`` events, then ``usage.recorded`` and
``turn.responded`` (or ``turn.failed``), and only then acks. While the LLM call runs it sends
in-progress heartbeats so JetStream does not redeliver live work; a worker killed mid-turn stops
heartbeating, the turn is redelivered, and the response's deterministic ``Nats-Msg-Id`` (plus the
core ignoring answers to settled attempts) keeps the answer from being written twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from massgen_agent_worker import providers
from massgen_agent_worker.conversation import Conversation
from massgen_agent_worker.tools import ToolClient
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import ACK_WAIT_S, JetStreamEventLog, TurnQueue, delivery_count
from massgen_es.errors import MassgenError, ProviderError
from massgen_es.events import (
    Event,
    Record,
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
        self.handled = 0

    async def run(self) -> None:
        """Pull and execute turns until cancelled; in-flight turns are cancelled and get redelivered."""
        try:
            await self.queue.serve(
                self._handle, concurrency=self.concurrency, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver
            )
        finally:
            providers.shutdown()  # model servers this process started (the local backend's)

    async def _publish(self, run_id: str, cause: str, key: str, event: Event) -> None:
        await self.log.append(run_id, "agent_worker", [Draft(key, event, cause)], origin=self.source)

    async def _handle(self, record: Record, msg: Msg) -> None:
        req = record.event
        if not isinstance(req, TurnRequested):
            log.error("dropping work item of type %s: expected turn.requested", record.type)
            await msg.term()
            return
        delivery = delivery_count(msg)
        key = f"{record.run_id}:w:{req.turn_id}:{req.attempt}"

        async def emit(suffix: str, event: Event) -> None:
            await self._publish(record.run_id, record.id, f"{key}:{suffix}", event)

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
        talk = Conversation(req, record, f"{key}:d{delivery}", deltas, emit, self.tools)
        try:
            result = await talk.run()
        except (ProviderError, MassgenError) as exc:
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
        await msg.ack()
        self.handled += 1
