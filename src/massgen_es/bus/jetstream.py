"""JetStream implementation of the event log, and the agent-turn work queue.

- Orchestrator decisions are appended as one atomic batch (ADR-50, nats-server >= 2.12) whose first
  message carries ``Nats-Expected-Last-Subject-Sequence``: all of a decision lands, or none of it.
- Every message carries ``Nats-Msg-Id`` = the event id, so a retried publish is dropped by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

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
from nats.js.errors import APIError, BadRequestError, NotFoundError

from massgen_es import observe, subjects
from massgen_es.bus import Draft, cluster, natsapi
from massgen_es.errors import BusError, BusUnavailable, ConcurrencyConflict, EventDecodeError
from massgen_es.events import Record, Source, UnknownEvent, decode, encode
from massgen_es.subjects import Writer

_log = logging.getLogger("massgen.bus")
_CONSUMER_NOT_UNIQUE = 10100  # JetStream: "filtered consumer not unique on workqueue stream"
DUPLICATE_WINDOW_S = 120.0
ACK_WAIT_S = 15.0
"""Default ack wait of every work queue (seconds), for ``massgen serve``, the embedded stack and the
services alike: an item whose handler neither acks nor sends its in-progress heartbeat (every third of
it) for this long, say because its service was killed, is redelivered (issue 13 item 3)."""
LOG_SEQ_HEADER = "Massgen-Log-Seq"
"""Header of a work-queue item: the event-log sequence of the record it carries, so the pulled
``Record.seq`` is the log's (``once.prior`` then reads only what came after the request)."""
_WRONG_LAST_SEQ = frozenset({10071, 10164})
"""A failed expectation (``Nats-Expected-Last-*``): 10071 on one server; 10164, "wrong last sequence"
without the number, on a replicated stream, also when another message with an expectation on the same
subject is in flight (nats-server's JSStreamWrongLastSequenceConstantErr). Either way: read and try again."""
_ERR_BATCH_DUPLICATE_ID = 10201
_READ_STALL_S = 10.0
_READ_BATCH = 10_000


async def connect(url: str, name: str) -> Client:
    """Connect to NATS, failing fast with a clear message. Replies arrive on the URL user's own inbox
    prefix (``subjects.inbox_prefix``).

    Args:
        url: one server, or the nodes of a cluster separated by commas (each with its credentials;
            issue 13 item 6). The client reconnects to another node when its node goes away, forever,
            buffering publishes meanwhile; the servers' own gossip of node addresses is off
            (``no_advertise``), so only these URLs are used, as they are reachable from here.
        name: the connection's name, as the server's monitoring shows it.

    Raises:
        BusUnavailable: no node answers at ``url``.
        ConfigError: the URL's user name cannot name an inbox, or the list has an empty entry.
    """
    servers = cluster.server_urls(url)
    prefix = subjects.inbox_prefix(url)  # a bad user name is a config error, not an unreachable server
    try:
        # nats-py keeps retrying a first connect that fails while reconnects are allowed: bound it.
        return await asyncio.wait_for(_connect(servers, name, prefix), timeout=8)
    except Exception as exc:  # nats-py raises several unrelated types for "nobody there"
        raise BusUnavailable(
            f"cannot reach NATS at {cluster.redact(url)} ({exc.__class__.__name__}: {exc}); start a stack "
            "with `massgen up`, or fix/unset MASSGEN_NATS_URL"
        ) from None


async def _connect(servers: list[str], name: str, inbox_prefix: str) -> Client:
    # nats.connect leaves its **options unannotated, and Client.connect (fully typed) declares
    # reconnect_time_wait an int although nats-py sleeps it as a float: the call is right as it is.
    return await nats.connect(  # pyright: ignore[reportUnknownMemberType]
        servers,
        name=name,
        inbox_prefix=inbox_prefix,
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
    """Create (or update) the event stream and the work-queue streams, with :func:`cluster.replicas`
    replicas each (an existing stream of another replica count is updated to it). Idempotent. On a
    cluster that is still electing its JetStream leader, waits for it (up to ``cluster.RETRY_FOR_S``).

    Raises:
        BusError: JetStream did not answer in time.
    """
    n = cluster.replicas(natsapi.client_of(js))
    configs = [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[subjects.EVENTS_WILDCARD],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            deny_delete=True,
            deny_purge=True,
            allow_atomic=True,
            allow_direct=True,  # reads are batched direct gets, not consumers
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=n,
        ),
        *(
            StreamConfig(
                name=name,
                subjects=[wildcard],
                storage=StorageType.FILE,
                retention=RetentionPolicy.WORK_QUEUE,
                duplicate_window=DUPLICATE_WINDOW_S,
                num_replicas=n,
            )
            for name, wildcard in (
                (subjects.TURNS_STREAM, subjects.TURNS_WILDCARD),
                (subjects.TOOLS_STREAM, subjects.TOOLS_WILDCARD),
                (subjects.EXEC_STREAM, subjects.EXEC_WILDCARD),
            )
        ),
    ]
    admin = natsapi.admin(js)
    for cfg in configs:

        async def put(cfg: StreamConfig = cfg) -> None:
            try:
                await admin.add_stream(cfg)
            except BadRequestError:
                await admin.update_stream(cfg)

        await cluster.retrying(put, f"creating stream {cfg.name}")


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


class _DuplicateInBatch(Exception):
    """The server refused an atomic batch because one of its message ids is already stored."""


class JetStreamEventLog:
    """:class:`massgen_es.bus.EventLog` on the ``MASSGEN_EVENTS`` stream."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = natsapi.jetstream(nc)
        self._batch_ids = itertools.count()
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def append(
        self,
        run_id: str,
        source: Writer,
        drafts: Sequence[Draft],
        *,
        origin: Source,
        expect_last_seq: int | None = None,
        expect_of: Writer | None = None,
    ) -> list[int]:
        """Append ``drafts`` all or nothing (see :meth:`massgen_es.bus.EventLog.append`): one publish for a
        single draft, an atomic batch otherwise or when ``expect_last_seq`` is given (checked on the run's
        ``expect_of`` subject with ``Nats-Expected-Last-Subject-Sequence-Subject``, nats-server >= 2.11).

        Raises:
            ConcurrencyConflict: ``expect_last_seq`` did not match; nothing was written.
            BusError: the server refused the batch, or part of a retried batch is missing.
        """
        subject = subjects.run_subject(run_id, source)
        now = time.time()
        payloads = [
            encode(d.event, id=d.id, run_id=run_id, ts=now if d.ts is None else d.ts, source=origin,
                   causation_id=d.causation_id)
            for d in drafts
        ]
        if not payloads:
            return []
        if len(payloads) == 1 and expect_last_seq is None:
            # A repeat after a lost ack (leader election) carries the same Nats-Msg-Id: stored once.
            ack = await cluster.retrying(
                lambda: self.js.publish(subject, payloads[0], headers={"Nats-Msg-Id": drafts[0].id}),
                f"append to {subject}",
            )
            if not ack.duplicate:
                observe.appended(origin, run_id, [drafts[0].event])
            return [ack.seq]
        attempts = 0

        async def batch() -> list[int]:
            nonlocal attempts
            attempts += 1
            try:
                fenced = subjects.run_subject(run_id, expect_of) if expect_of is not None else None
                if len(payloads) == 1 and expect_last_seq is not None:
                    return await self._fenced_publish(subject, drafts[0], payloads[0], expect_last_seq, fenced)
                return await self._atomic_batch(subject, drafts, payloads, expect_last_seq, fenced)
            except ConcurrencyConflict:
                # A repeat of a batch that landed, its ack lost, finds its own events past the expected
                # sequence: that is this append's success, not a conflict.
                if attempts > 1 and (seqs := await self._stored(run_id, drafts)) is not None:
                    return seqs
                raise

        try:
            seqs = await cluster.retrying(batch, f"atomic append to {subject}")
        except _DuplicateInBatch:
            # A retried batch: the server refuses a batch holding a stored Nats-Msg-Id (10201) instead of
            # skipping it. A batch lands whole or not at all, so all of it must be stored already.
            seqs = await self._stored(run_id, drafts)
            if seqs is None:
                raise BusError(
                    f"append to {subject}: some events of this batch are already stored, not all; a batch "
                    "must be retried whole, with the same event ids"
                ) from None
            return seqs  # stored before: by an earlier append, whose observers were told (not recounted)
        observe.appended(origin, run_id, [d.event for d in drafts])
        return seqs

    async def _stored(self, run_id: str, drafts: Sequence[Draft]) -> list[int] | None:
        """The sequences of ``drafts`` if all of them are stored, else None."""
        ids = {d.id for d in drafts}
        stored = {r.id: r.seq for r in await self.read(run_id) if r.id in ids}
        return [stored[d.id] for d in drafts] if len(stored) == len(drafts) else None

    async def _fenced_publish(
        self, subject: str, draft: Draft, payload: bytes, expect_last_seq: int, fenced: str | None
    ) -> list[int]:
        """One event with an expectation, as a plain publish: one message is all or nothing without a batch,
        and a batch commit costs ~19 ms on nats-server 2.12 against ~0.4 ms for this (issue 14 item 1:
        it was most of what the MCP broker added to a call, bench/mcp_bench.py). A repeat after a lost ack
        is deduplicated by ``Nats-Msg-Id`` before the expectation is checked, so it returns the stored
        sequence.

        Raises:
            ConcurrencyConflict: the expected subject does not end at ``expect_last_seq``; nothing written.
        """
        headers = {"Nats-Msg-Id": draft.id, "Nats-Expected-Last-Subject-Sequence": str(expect_last_seq)}
        if fenced is not None:
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = fenced
        try:
            ack = await self.js.publish(subject, payload, headers=headers)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQ:
                raise ConcurrencyConflict(f"{subject}: {exc.description}") from None
            raise
        return [int(ack.seq)]

    async def _atomic_batch(
        self, subject: str, drafts: Sequence[Draft], payloads: list[bytes], expect_last_seq: int | None,
        fenced: str | None = None,
    ) -> list[int]:
        batch_id = f"{self._prefix}-{next(self._batch_ids)}"
        last = len(payloads) - 1
        for i, (draft, payload) in enumerate(zip(drafts, payloads, strict=True)):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1), "Nats-Msg-Id": draft.id}
            if i == 0 and expect_last_seq is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last_seq)
                if fenced is not None:
                    headers["Nats-Expected-Last-Subject-Sequence-Subject"] = fenced
            if i < last:
                await self.nc.publish(subject, payload, headers=headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self.nc.request(subject, payload, headers=headers, timeout=5)
            resp = json.loads(reply.data)
            err = resp.get("error")
            if err:
                if err.get("err_code") in _WRONG_LAST_SEQ:
                    raise ConcurrencyConflict(f"{subject}: {err.get('description')}")
                if err.get("err_code") == _ERR_BATCH_DUPLICATE_ID:
                    raise _DuplicateInBatch
                if err.get("code") == 503:  # no leader right now: cluster.retrying repeats the batch
                    APIError.from_error(err)
                raise BusError(f"atomic append to {subject} failed: {err}")
            end = int(resp["seq"])
            return list(range(end - last, end + 1))
        raise AssertionError("unreachable")

    async def last_seq(self, run_id: str, source: Writer) -> int:
        """Stream sequence of the last event on a run's ``source`` subject, 0 if none."""
        try:
            msg = await self.js.get_last_msg(subjects.EVENTS_STREAM, subjects.run_subject(run_id, source))
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def last(self, run_id: str, source: Writer) -> Record | None:
        """The last event on a run's ``source`` subject (one direct get, on the subject every reader may
        use), None if none. Repeated while no replica answers (a leader election: ``cluster.retrying``).

        Raises:
            BusError: the server refused the request, or no replica answered for ``cluster.RETRY_FOR_S``.
        """
        request = {"last_by_subj": subjects.run_subject(run_id, source)}
        body = json.dumps(request).encode()
        msg = await cluster.retrying(lambda: self.nc.request(subjects.EVENTS_DIRECT_GET, body, timeout=5),
                                     f"direct get of the last event of {request['last_by_subj']}")
        h = msg.headers or {}
        status = h.get("Status")
        if status == "404":
            return None
        if status is not None:
            raise BusError(f"direct get of the last event of {request['last_by_subj']} failed: {status} {h}")
        return decode_lenient(msg.data, int(h["Nats-Sequence"]), run_id)

    def _subscribe(self, filter_subject: str, after_seq: int) -> Awaitable[JetStreamContext.PushSubscription]:
        cfg = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after_seq else DeliverPolicy.ALL,
            opt_start_seq=after_seq + 1 if after_seq else None,
        )
        return self.js.subscribe(
            filter_subject,
            ordered_consumer=True,
            config=cfg,
            pending_msgs_limit=200_000,
            pending_bytes_limit=512 * 1024 * 1024,
        )

    async def read(self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None) -> list[Record]:
        """Every matching event after ``after_seq`` (``source`` narrows it to one writer's subject), by
        batched direct gets (ADR-31, nats-server >= 2.11).

        No consumer is created: one request returns up to ``_READ_BATCH`` messages and an end-of-batch
        status telling how many remain, so a whole run costs one round trip.

        Raises:
            BusError: the server refused the request or stopped answering.
        """
        filter_subject = subjects.run_filter(run_id) if run_id else subjects.EVENTS_WILDCARD
        if source is not None:
            filter_subject = subjects.source_filter(run_id, source)
        out: list[Record] = []
        start = after_seq + 1
        while await self._direct_batch(filter_subject, start, out):
            start = out[-1].seq + 1
        return out

    async def _direct_batch(self, filter_subject: str, start: int, out: list[Record]) -> int:
        """Append one batch to ``out``; return how many matching messages remain after it."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        n_before = len(out)

        async def collect(msg: Msg) -> None:
            h = msg.headers or {}
            status = h.get("Status")
            if status is None:
                seq = int(h["Nats-Sequence"])
                out.append(decode_lenient(msg.data, seq, subjects.run_id_of(h["Nats-Subject"])))
            elif not done.done():
                if status == "204":  # end of batch
                    done.set_result(int(h.get("Nats-Num-Pending", "0")))
                elif status == "404":  # nothing matches from `start` on
                    done.set_result(0)
                else:
                    done.set_exception(BusError(f"direct get on {filter_subject} failed: {status} {h}"))

        inbox = self.nc.new_inbox()
        sub = await natsapi.connection(self.nc).subscribe(inbox, cb=collect)
        try:
            request = {"seq": start, "next_by_subj": filter_subject, "batch": _READ_BATCH}
            await self.nc.publish(subjects.EVENTS_DIRECT_GET, json.dumps(request).encode(), reply=inbox)
            seen = -1
            while seen < len(out):  # give up only when a whole interval brings nothing
                seen = len(out)
                try:
                    return await asyncio.wait_for(asyncio.shield(done), timeout=_READ_STALL_S)
                except TimeoutError:
                    cluster.raise_if_cancelled()
                    continue
            raise BusError(
                f"reading {filter_subject} from seq {start} stalled after {len(out) - n_before} events; "
                "is the NATS server healthy?"
            )
        finally:
            await sub.unsubscribe()

    async def follow(
        self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None
    ) -> AsyncGenerator[Record, None]:
        """Every matching event after ``after_seq``, then new ones as they are stored (never ends), through
        an ordered push consumer; ``source`` narrows it to one writer's subject."""
        filter_subject = subjects.run_filter(run_id) if run_id else subjects.EVENTS_WILDCARD
        if source is not None:
            filter_subject = subjects.source_filter(run_id, source)
        sub = await self._subscribe(filter_subject, after_seq)
        try:
            async for msg in sub.messages:
                yield decode_lenient(
                    msg.data, msg.metadata.sequence.stream, subjects.run_id_of(msg.subject)
                )
                # The consumer's work on that record (an append, a request) may have swallowed its
                # task's cancel (cluster.raise_if_cancelled); waiting for the next one would be forever.
                cluster.raise_if_cancelled()
        finally:
            await asyncio.shield(sub.unsubscribe())


class WorkQueue:
    """A work-queue stream shared by the replicas of one service: producers push event records, the
    replicas pull them through one durable consumer. Used for agent turns and for MCP broker requests."""

    def __init__(self, nc: Client, stream: str, wildcard: str, durable: str, subject_of: Callable[[str], str]) -> None:
        self.js = natsapi.jetstream(nc)
        self.stream, self.wildcard, self.durable, self.subject_of = stream, wildcard, durable, subject_of

    async def push(self, record: Record) -> None:
        """Enqueue a record; its event id dedupes re-pushes (after a restart or a redelivery)."""
        data = encode(
            record.event,  # type: ignore[arg-type]
            id=record.id,
            run_id=record.run_id,
            ts=record.ts,
            source=record.source,
            causation_id=record.causation_id,
        )
        subject = self.subject_of(record.run_id)
        headers = {"Nats-Msg-Id": record.id}
        if record.seq:  # where the request sits in the event log: its outcome can only come after it
            headers[LOG_SEQ_HEADER] = str(record.seq)
        await cluster.retrying(lambda: self.js.publish(subject, data, headers=headers), f"push to {subject}")

    async def consumer(self, ack_wait_s: float, max_deliver: int) -> JetStreamContext.PullSubscription:
        """Bind to the shared durable pull consumer (created on first use).

        Args:
            ack_wait_s: seconds without ack or heartbeat after which an item is redelivered.
            max_deliver: deliveries before JetStream gives up on an item.
        """
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s, max_deliver=max_deliver, max_ack_pending=1000
        )

        async def bind() -> JetStreamContext.PullSubscription:
            sub = await self.js.pull_subscribe(self.wildcard, durable=self.durable, stream=self.stream, config=config)
            await self._set_ack_wait(ack_wait_s)
            return sub

        try:
            return await bind()
        except BadRequestError as exc:
            if exc.err_code != _CONSUMER_NOT_UNIQUE:
                raise
        for old, new in subjects.RENAMED_CONSUMERS.items():
            if new == self.durable:
                with contextlib.suppress(NotFoundError):
                    await self.js.delete_consumer(self.stream, old)
                    _log.warning("deleted consumer %s of stream %s, left by an earlier version", old, self.stream)
        try:
            return await bind()
        except BadRequestError as exc:
            if exc.err_code != _CONSUMER_NOT_UNIQUE:
                raise
            raise BusError(
                f"stream {self.stream} already has a consumer for {self.wildcard}, so consumer {self.durable} "
                "cannot take its items (a work queue has one consumer per subject). Remove the other one "
                f"(`nats consumer ls {self.stream}`, then `nats consumer rm {self.stream} NAME`), or, for the "
                "embedded stack, start from an empty store (delete the `nats` folder of MASSGEN_HOME, "
                "default ~/.massgen)"
            ) from exc

    async def _set_ack_wait(self, ack_wait_s: float) -> None:
        """Give the existing durable consumer this ack wait: binding to a consumer keeps its config, so a
        store made with another ``--ack-wait`` (or an earlier version's 60 s) would keep that one. The
        replica that starts last sets it for all."""
        info = await self.js.consumer_info(self.stream, self.durable)
        if info.config.ack_wait is not None and abs(info.config.ack_wait - ack_wait_s) < 1e-3:
            return
        await natsapi.admin(self.js).add_consumer(self.stream, dataclasses.replace(info.config, ack_wait=ack_wait_s))
        _log.info("work queue %s: ack wait of consumer %s set from %s s to %s s", self.stream, self.durable,
                  info.config.ack_wait, ack_wait_s)

    async def serve(
        self,
        handle: Callable[[Record, Msg], Awaitable[None]],
        *,
        concurrency: int,
        ack_wait_s: float,
        max_deliver: int,
    ) -> None:
        """Pull items until cancelled and run ``handle(record, msg)`` on each, ``concurrency`` at a time.

        While ``handle`` runs, an in-progress heartbeat every ``ack_wait_s / 3`` keeps JetStream from
        redelivering live work; ``handle`` acks (or terms) the message itself. A malformed item is termed
        and logged, never retried. Cancelling (a service's SIGTERM) cancels in-flight items and naks
        them, so another replica gets them at once.
        """
        sub = await self.consumer(ack_wait_s, max_deliver)
        slots = asyncio.Semaphore(concurrency)

        async def one(msg: Msg) -> None:
            try:
                record = decode(msg.data, _log_seq(msg))
            except EventDecodeError as exc:
                _log.error("dropping malformed item on %s: %s", self.stream, exc)
                await msg.term()
                return
            observe.handled(self.durable, record, delivery_count(msg))
            beat = asyncio.create_task(_heartbeat(msg, ack_wait_s / 3))
            try:
                await handle(record, msg)
            except asyncio.CancelledError:
                # Shutting down (SIGTERM): hand the item back now, not after the ack wait. A nak after
                # the handler's own ack is ignored by the server.
                try:
                    await asyncio.shield(msg.nak())
                except Exception as exc:  # noqa: BLE001 - it comes back after the ack wait anyway
                    _log.warning("could not hand %s %s back on %s: %s", record.type, record.id, self.stream,
                                 exc)
                else:
                    _log.info("handed %s %s back on %s", record.type, record.id, self.stream)
                raise
            except Exception:  # a bug must cost one item, never the service
                _log.exception("handling %s %s on %s failed; the item is dropped", record.type, record.id, self.stream)
                await msg.term()
            finally:
                beat.cancel()

        in_flight: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slots.release()

        try:
            while True:
                await slots.acquire()
                cluster.raise_if_cancelled()
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except TimeoutError:
                    slots.release()
                    continue
                except Exception as exc:
                    slots.release()
                    if not cluster.transient(exc):
                        raise
                    # the consumer's node went away: its new leader answers once elected
                    _log.info("pulling from %s: %s; retrying", self.stream, type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(one(msg))
                    in_flight.add(task)
                    task.add_done_callback(done)
        finally:
            # Withdraw our pending pull requests first: otherwise the server hands what we nak below
            # straight back to this leaving replica, and it waits out the ack wait.
            with contextlib.suppress(Exception):
                await asyncio.shield(sub.unsubscribe())
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)


def _log_seq(msg: Msg) -> int:
    """The event-log sequence a pushed item carries (:data:`LOG_SEQ_HEADER`), 0 when it has none."""
    value = (msg.headers or {}).get(LOG_SEQ_HEADER, "0")
    return int(value) if value.isdigit() else 0


async def _heartbeat(msg: Msg, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await msg.in_progress()
        except Exception as exc:  # a lost connection shows up on the next publish; keep the work going
            _log.debug("heartbeat failed: %s", exc)


def TurnQueue(nc: Client) -> WorkQueue:  # noqa: N802 - reads as the class it stands for
    """The agent-turn work queue: the orchestrator pushes ``turn.requested``, workers pull."""
    return WorkQueue(
        nc, subjects.TURNS_STREAM, subjects.TURNS_WILDCARD, subjects.WORKER_CONSUMER, subjects.turn_subject
    )


def ToolQueue(nc: Client) -> WorkQueue:  # noqa: N802
    """The MCP broker's work queue: workers push tool-list, tool-call and snapshot requests."""
    return WorkQueue(
        nc, subjects.TOOLS_STREAM, subjects.TOOLS_WILDCARD, subjects.BROKER_CONSUMER, subjects.tool_subject
    )


def ExecQueue(nc: Client) -> WorkQueue:  # noqa: N802
    """The executor's work queue: workers push ``execution.requested``, executors pull."""
    return WorkQueue(
        nc, subjects.EXEC_STREAM, subjects.EXEC_WILDCARD, subjects.EXECUTOR_CONSUMER, subjects.exec_subject
    )


def delivery_count(msg: Msg) -> int:
    """How many times JetStream has delivered this message (1 on first delivery)."""
    return int(msg.metadata.num_delivered or 1)
