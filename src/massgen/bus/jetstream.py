"""JetStream implementation of the event log, and the agent-turn work queue.

- Orchestrator decisions are appended as one atomic batch (ADR-50, nats-server >= 2.12) whose first
  message carries ``Nats-Expected-Last-Subject-Sequence``: all of a decision lands, or none of it.
- Every message carries ``Nats-Msg-Id`` = the event id, so a retried publish is dropped by the server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from massgen import subjects
from massgen.bus import Draft
from massgen.errors import BusError, BusUnavailable, ConcurrencyConflict, EventDecodeError
from massgen.events import Record, Source, UnknownEvent, decode, encode

DUPLICATE_WINDOW_S = 120.0
_ERR_WRONG_LAST_SEQ = 10071


async def connect(url: str, name: str) -> Client:
    """Connect to NATS, failing fast with a clear message.

    Raises:
        BusUnavailable: nothing answers at ``url``.
    """
    try:
        # nats-py keeps retrying a first connect that fails while reconnects are allowed: bound it.
        return await asyncio.wait_for(_connect(url, name), timeout=8)
    except Exception as exc:  # nats-py raises several unrelated types for "nobody there"
        raise BusUnavailable(
            f"cannot reach NATS at {url} ({exc.__class__.__name__}: {exc}); start a stack with `massgen up`, "
            "or fix/unset MASSGEN_NATS_URL"
        ) from None


async def _connect(url: str, name: str) -> Client:
    return await nats.connect(
        url,
        name=name,
        connect_timeout=3,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        reconnect_time_wait=0.5,
        error_cb=_quiet,
    )


async def _quiet(exc: Exception) -> None:
    # Reconnect noise is expected while a server restarts; failures surface on the next call instead.
    return None


async def ensure_streams(js: JetStreamContext) -> None:
    """Create (or update) the event stream and the turn work-queue stream. Idempotent."""
    configs = [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_WILDCARD],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            deny_delete=True,
            deny_purge=True,
            allow_atomic=True,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.TURNS_STREAM,
            subjects=[subjects.TURNS_WILDCARD],
            storage=StorageType.FILE,
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]
    for cfg in configs:
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)


def decode_lenient(data: bytes, seq: int, run_id: str) -> Record:
    """Decode a stored message; a malformed one becomes an ``UnknownEvent("invalid")`` record, not a crash."""
    try:
        return decode(data, seq)
    except EventDecodeError as exc:
        return Record(
            seq=seq,
            id=f"invalid:{seq}",
            run_id=run_id,
            ts=0.0,
            source=Source(service="unknown", instance="unknown"),
            causation_id=None,
            event=UnknownEvent(type="invalid", data={"error": str(exc)}),
        )


class JetStreamEventLog:
    """:class:`massgen.bus.EventLog` on the ``MASSGEN_EVENTS`` stream."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._batch_ids = itertools.count()
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def append(
        self,
        run_id: str,
        source: str,
        drafts: Sequence[Draft],
        *,
        origin: Source,
        expect_last_seq: int | None = None,
    ) -> list[int]:
        subject = subjects.run_subject(run_id, source)
        now = time.time()
        payloads = [
            encode(d.event, id=d.id, run_id=run_id, ts=now, source=origin, causation_id=d.causation_id)
            for d in drafts
        ]
        if not payloads:
            return []
        if len(payloads) == 1 and expect_last_seq is None:
            ack = await self.js.publish(subject, payloads[0], headers={"Nats-Msg-Id": drafts[0].id})
            return [ack.seq]
        return await self._atomic_batch(subject, drafts, payloads, expect_last_seq)

    async def _atomic_batch(
        self, subject: str, drafts: Sequence[Draft], payloads: list[bytes], expect_last_seq: int | None
    ) -> list[int]:
        batch_id = f"{self._prefix}-{next(self._batch_ids)}"
        last = len(payloads) - 1
        for i, (draft, payload) in enumerate(zip(drafts, payloads, strict=True)):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1), "Nats-Msg-Id": draft.id}
            if i == 0 and expect_last_seq is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last_seq)
            if i < last:
                await self.nc.publish(subject, payload, headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self.nc.request(subject, payload, headers=headers, timeout=5)
            resp = json.loads(reply.data)
            err = resp.get("error")
            if err:
                if err.get("err_code") == _ERR_WRONG_LAST_SEQ:
                    raise ConcurrencyConflict(f"{subject}: {err.get('description')}")
                raise BusError(f"atomic append to {subject} failed: {err}")
            end = int(resp["seq"])
            return list(range(end - last, end + 1))
        raise AssertionError("unreachable")

    async def last_seq(self, run_id: str, source: str) -> int:
        try:
            msg = await self.js.get_last_msg(subjects.EVENTS_STREAM, subjects.run_subject(run_id, source))
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def _count(self, filter_subject: str, after_seq: int) -> int:
        info = await self.js.stream_info(subjects.EVENTS_STREAM, subjects_filter=filter_subject)
        if after_seq == 0:
            return sum((info.state.subjects or {}).values())
        return -1 if info.state.last_seq > after_seq else 0

    async def _subscribe(self, filter_subject: str, after_seq: int) -> JetStreamContext.PushSubscription:
        cfg = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after_seq else DeliverPolicy.ALL,
            opt_start_seq=after_seq + 1 if after_seq else None,
        )
        return await self.js.subscribe(
            filter_subject,
            ordered_consumer=True,
            config=cfg,
            pending_msgs_limit=200_000,
            pending_bytes_limit=512 * 1024 * 1024,
        )

    async def read(self, run_id: str | None = None, after_seq: int = 0) -> list[Record]:
        filter_subject = subjects.run_filter(run_id) if run_id else subjects.EVENTS_WILDCARD
        if await self._count(filter_subject, after_seq) == 0:
            return []
        sub = await self._subscribe(filter_subject, after_seq)
        out: list[Record] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=5)
                except TimeoutError:
                    break  # nothing matched after after_seq
                meta = msg.metadata
                out.append(decode_lenient(msg.data, meta.sequence.stream, subjects.run_id_of(msg.subject)))
                if meta.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def follow(self, run_id: str | None = None, after_seq: int = 0) -> AsyncIterator[Record]:
        filter_subject = subjects.run_filter(run_id) if run_id else subjects.EVENTS_WILDCARD
        sub = await self._subscribe(filter_subject, after_seq)
        try:
            async for msg in sub.messages:
                yield decode_lenient(
                    msg.data, msg.metadata.sequence.stream, subjects.run_id_of(msg.subject)
                )
        finally:
            await asyncio.shield(sub.unsubscribe())


class TurnQueue:
    """The agent-turn work queue: the orchestrator pushes ``turn.requested`` events, workers pull them."""

    def __init__(self, nc: Client) -> None:
        self.js = nc.jetstream()

    async def push(self, record: Record) -> None:
        """Enqueue a ``turn.requested`` record; the event id dedupes re-pushes after a restart."""
        data = encode(
            record.event,  # type: ignore[arg-type]
            id=record.id,
            run_id=record.run_id,
            ts=record.ts,
            source=record.source,
            causation_id=record.causation_id,
        )
        await self.js.publish(subjects.turn_subject(record.run_id), data, headers={"Nats-Msg-Id": record.id})

    async def consumer(self, ack_wait_s: float, max_deliver: int) -> JetStreamContext.PullSubscription:
        """Bind to the shared durable pull consumer (created on first use).

        Args:
            ack_wait_s: seconds without ack or heartbeat after which a turn is redelivered.
            max_deliver: deliveries before JetStream gives up on a turn.
        """
        return await self.js.pull_subscribe(
            subjects.TURNS_WILDCARD,
            durable=subjects.WORKER_CONSUMER,
            stream=subjects.TURNS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_deliver=max_deliver,
                max_ack_pending=1000,
            ),
        )


def delivery_count(msg: Msg) -> int:
    """How many times JetStream has delivered this message (1 on first delivery)."""
    return int(msg.metadata.num_delivered or 1)
