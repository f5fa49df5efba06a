"""Each effect once on at-least-once work queues (docs/architecture principle 3; issue 13 item 3).

A work queue redelivers an item whose handler stopped without acking it (a killed service), after the
consumer's ack wait. Before a service runs a request whose effect lives outside the log (a command, an
MCP tool call), it asks :func:`prior` what the log already says about it, and then:

- the run has ended (a ``TERMINAL_EVENTS`` record): ack, run nothing and append nothing (no event may
  follow a run's end), and say so in the service's own log (:func:`log_skipped`);
- the request has its outcome (``<request id>:result``): ack, run nothing, append nothing;
- the request was started (``<request id>:started``) but has no outcome: the service stopped while the
  effect ran, which may have had effects already; answer with an ``Interrupted`` failure as its outcome,
  never run it again;
- else: append the started marker, run, append the outcome, ack.

The marker and the outcome go through :func:`append_unless_ended`: appended only while the run's
``orchestrator`` subject still ends where the check saw it, so a run that ends between the check and the
append gets nothing after its end.

The check costs two small reads, made at once, never a whole run: the last event of the run's
``orchestrator`` subject (the orchestrator decides nothing after a terminal event, so on an ended run
that is the terminal event) and the service's own subject of the run. The first read is also the
:class:`Fence` the appends then expect: they read the orchestrator's subject again only when it moved
(issue 14 item 1: a tool call's log work is three round trips, not six).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import NamedTuple

from massgen_es.bus import Draft, EventLog
from massgen_es.errors import ConcurrencyConflict
from massgen_es.events import TERMINAL_EVENTS, Record, Source
from massgen_es.subjects import Writer


class Fence:
    """The sequence the run's ``orchestrator`` subject was last seen to end at (0: no event yet), which
    :func:`append_unless_ended` expects; it moves when an append finds the subject moved on."""

    __slots__ = ("seq",)

    def __init__(self, seq: int | None = None) -> None:
        self.seq = seq


class Prior(NamedTuple):
    """What the log holds about one request before it runs.

    Attributes:
        ended: the run's terminal record, if the run has ended (then ``outcome`` and ``started`` are
            None: nothing is to be done either way).
        outcome: the request's ``<request id>:result`` record.
        started: the request's ``<request id>:started`` marker.
        fence: where the run's ``orchestrator`` subject ended at the check, for the appends that follow.
    """

    ended: Record | None
    outcome: Record | None
    started: Record | None
    fence: Fence


def started_id(request_id: str) -> str:
    """Event id of the marker a service appends just before it runs the effect of ``request_id``."""
    return f"{request_id}:started"


def result_id(request_id: str) -> str:
    """Event id of the outcome of ``request_id`` (whoever records it: the service, or the worker that
    gave up waiting)."""
    return f"{request_id}:result"


async def run_end(log: EventLog, run_id: str) -> Record | None:
    """The run's terminal record (``run.completed``, ``run.timed_out``, ``run.failed``), None while it
    runs. One direct get.

    Raises:
        BusError: the server refused the read.
    """
    last = await log.last(run_id, "orchestrator")
    return last if last is not None and isinstance(last.event, TERMINAL_EVENTS) else None


async def prior(log: EventLog, run_id: str, writer: Writer, request_id: str, after_seq: int = 0) -> Prior:
    """What the log holds about ``request_id``: the run's end, else its outcome and started marker on
    ``writer``'s subject of the run. ``after_seq``: the request's own sequence in the log when known
    (its marker and outcome come after it), so a long run's earlier events are not read again (issue
    14 item 1: the read grew with every call of the run).

    Raises:
        BusError: the server refused a read.
    """
    last, records = await asyncio.gather(log.last(run_id, "orchestrator"),
                                         log.read(run_id, after_seq=after_seq, source=writer))
    fence = Fence(last.seq if last is not None else 0)
    if last is not None and isinstance(last.event, TERMINAL_EVENTS):
        return Prior(last, None, None, fence)
    mine = {r.id: r for r in records}
    return Prior(None, mine.get(result_id(request_id)), mine.get(started_id(request_id)), fence)


async def append_unless_ended(
    log: EventLog, run_id: str, writer: Writer, drafts: Sequence[Draft], *, origin: Source,
    fence: Fence | None = None,
) -> Record | None:
    """Append ``drafts`` on ``writer``'s subject of the run unless the run has ended, atomically: the append
    expects the run's ``orchestrator`` subject to end where it was last seen (the orchestrator writes
    the terminal event there), and looks again when the orchestrator wrote meanwhile.

    ``fence``: where that subject was last seen to end (:attr:`Prior.fence`); the first try expects it
    without reading, and the fence follows the subject when it moved. Without one, the subject is read
    first.

    Returns:
        None when appended; the run's terminal record when it had ended (nothing appended).

    Raises:
        BusError: the server refused a read or the append.
    """
    fence = fence if fence is not None else Fence()
    while True:
        if fence.seq is None:
            last = await log.last(run_id, "orchestrator")
            if last is not None and isinstance(last.event, TERMINAL_EVENTS):
                return last
            fence.seq = last.seq if last is not None else 0
        try:
            await log.append(run_id, writer, drafts, origin=origin, expect_last_seq=fence.seq,
                             expect_of="orchestrator")
            return None
        except ConcurrencyConflict:
            fence.seq = None  # the orchestrator decided something meanwhile: look again


def log_skipped(logger: logging.Logger, request: Record, ended: Record, what: str = "not run") -> None:
    """Record in the service's log (a WARNING) that ``request`` met its run's end and is acknowledged
    without a trace in the event log, which takes nothing after a run's end."""
    logger.warning(
        "run %s has ended (%s): request %s (%s) is acknowledged and %s; nothing is recorded after the run's end",
        request.run_id, ended.type, request.id, request.type, what,
    )


__all__ = ["Fence", "Prior", "append_unless_ended", "log_skipped", "prior", "result_id", "run_end", "started_id"]
