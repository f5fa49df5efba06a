"""Writing a recorded history into an event log under a run id: what ``massgen import bundle`` does with a
bundle's events, and what a fork (a run's history copied under a new id) can reuse.

Records keep what they were stored with (event id, timestamp, source, cause); only their run id may
change. They are written in their order, in atomic batches (ADR-50) of at most :data:`MAX_BATCH`
messages, each message with ``Nats-Msg-Id`` = its event id, on the subject of its writer
(``Source.service``). A history of up to :data:`MAX_BATCH` events therefore lands all at once or not at
all, and a longer one that was cut short is completed by writing it again (:func:`write_history`
compares with what is stored and writes only the rest).

Write a history while no orchestrator runs on the stack: one that follows the log takes the history's
``run.submitted`` for a new submission, and a history longer than one batch would be decided on while it
is half written. An orchestrator that starts afterwards rebuilds from the log and leaves finished runs
alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client

from massgen_es import scrub, subjects
from massgen_es.bus.jetstream import JetStreamEventLog
from massgen_es.errors import BusError, HistoryConflict
from massgen_es.events import SCHEMA_VERSION, Envelope, Record, UnknownEvent, encode
from massgen_es.subjects import WRITERS, Writer

MAX_BATCH = 1000
"""Messages per atomic batch: nats-server refuses bigger batches ("atomic publish batch is too large")."""
_ERR_BATCH_DUPLICATE_ID = 10201




@dataclass(frozen=True)
class Written:
    """What :func:`write_history` did: ``already`` events were stored before (a repeated or resumed
    write), ``written`` were appended now, in ``batches`` atomic batches."""

    already: int
    written: int
    batches: int


def writer_of(record: Record) -> Writer:
    """The subject token a record goes to: its ``source.service``.

    Raises:
        ValueError: the source is not one of ``subjects.WRITERS`` (say ``unknown``, a message that
            could not be decoded), so the record has no subject to go back to.
    """
    service = record.source.service
    if service not in WRITERS:
        raise ValueError(
            f"event {record.id} (seq {record.seq}, {record.type}) was written by {service!r}, not one of "
            f"{', '.join(WRITERS)}: it cannot be written back to a run's subject"
        )
    return service


def envelope(record: Record, run_id: str | None = None) -> bytes:
    """The stored form (envelope JSON) of ``record``, unchanged but for the run id when given: the same
    id, timestamp, source and cause. An event of a tag this version does not know keeps its fields."""
    rid = run_id or record.run_id
    event = record.event
    if not isinstance(event, UnknownEvent):
        return encode(event, id=record.id, run_id=rid, ts=record.ts, source=record.source,
                      causation_id=record.causation_id)
    raw = msgspec.Raw(scrub.data(json.dumps(event.data, ensure_ascii=False).encode()))
    env = Envelope(id=record.id, run_id=rid, type=event.type, ts=record.ts, source=record.source,
                   causation_id=record.causation_id, data=raw, v=SCHEMA_VERSION)
    return msgspec.json.encode(env)


async def write_history(nc: Client, run_id: str, records: Sequence[Record]) -> Written:
    """Write ``records`` (in this order) as the history of ``run_id``.

    If the run already holds exactly the first k of these events (same ids, same order), only the rest
    is written: writing the same history twice is a no-op, and a write cut short is completed.

    Args:
        nc: a connection to the stack (the event stream must exist: ``ensure_streams``).
        run_id: the run the records are written under (each record's own ``run_id`` is replaced).
        records: the history, oldest first; ids must be unique within it.

    Raises:
        HistoryConflict: the run holds other events (another run of this id): nothing written.
        ValueError: a record has no writer subject (:func:`writer_of`) or ids repeat: nothing written.
        BusError: the server refused a batch (for instance an id already stored, within the stream's
            duplicate window, under another run: a fork must give its events new ids).
    """
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the history of {run_id} repeats event ids; each event must appear once")
    writers: list[Writer] = [writer_of(r) for r in records]
    n_stored = await stored_prefix(nc, run_id, ids)
    todo = list(range(n_stored, len(records)))
    batches = 0
    for start in range(0, len(todo), MAX_BATCH):
        chunk = todo[start : start + MAX_BATCH]
        await _batch(nc, [(subjects.run_subject(run_id, writers[i]), records[i].id, envelope(records[i], run_id))
                          for i in chunk], f"{run_id}-{uuid.uuid4().hex[:8]}-{start}")
        batches += 1
    return Written(already=n_stored, written=len(todo), batches=batches)


async def stored_prefix(nc: Client, run_id: str, ids: Sequence[str]) -> int:
    """How many of the history ``ids`` (in order) ``run_id`` already holds: 0 for a free run id.

    Raises:
        HistoryConflict: the run holds events that are not the start of this history.
    """
    stored = [r.id for r in await JetStreamEventLog(nc).read(run_id)]
    if stored != list(ids[: len(stored)]):
        first = next((i for i, (a, b) in enumerate(zip(stored, ids, strict=False)) if a != b),
                     min(len(stored), len(ids)))
        raise HistoryConflict(
            f"run {run_id} already exists in this stack with {len(stored)} events that are not this history "
            f"(they differ from event {first + 1} on); import it into another stack, or remove that run's "
            "stack data first"
        )
    return len(stored)


async def _batch(nc: Client, messages: list[tuple[str, str, bytes]], batch_id: str) -> None:
    """One atomic batch of ``(subject, msg id, payload)``.

    Raises:
        BusError: the server refused it, naming why.
    """
    last = len(messages) - 1
    for i, (subject, msg_id, payload) in enumerate(messages):
        headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1), "Nats-Msg-Id": msg_id}
        if i < last:
            await nc.publish(subject, payload, headers=headers)
            continue
        headers["Nats-Batch-Commit"] = "1"
        try:
            reply = await nc.request(subject, payload, headers=headers, timeout=10)
        except TimeoutError:
            # A publish the user may not make is dropped by the server with no reply to the batch.
            raise BusError(
                f"writing {len(messages)} events to {subject}: no confirmation from the server in 10 s. Is this "
                "NATS user allowed to publish on every writer's subject (massgen.run.*.>)? The compose stack's "
                "`cli` user is not: import with a user that is, or into the embedded stack"
            ) from None
        err = json.loads(reply.data).get("error")
        if err:
            why = ("an event id of this batch is already stored in the stream (a fork or a second import "
                   "within the duplicate window must use new event ids)"
                   if err.get("err_code") == _ERR_BATCH_DUPLICATE_ID else err.get("description"))
            raise BusError(f"writing {len(messages)} events to {subject}: the server refused the batch: {why}")


__all__ = ["MAX_BATCH", "HistoryConflict", "Written", "envelope", "stored_prefix", "write_history", "writer_of"]
