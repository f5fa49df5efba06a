"""Observers of the events this process appends and of the work items it handles (issue 14 item 4).

Every event a service writes passes through ``JetStreamEventLog.append``, and every work item it takes
passes through ``WorkQueue.serve``: those two places call :func:`appended` and :func:`handled`, so a
projection such as the Prometheus metrics (``massgen_cli.metrics``) is derived from the events
themselves, with no counter sprinkled through the services. Observers are process-wide: in the
embedded stack one observer sees every in-process service, told apart by the writer's ``Source``.

An observer must be cheap and must not block; whatever it raises is logged and swallowed, so a broken
projection never costs an append or a work item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from massgen_es.events import Event, Record, Source

log = logging.getLogger("massgen.observe")


class Observer(Protocol):
    """Something told about the events this process appends and the work items it handles."""

    def appended(self, origin: Source, run_id: str, events: Sequence[Event]) -> None:
        """``events`` were stored in the log of ``run_id`` by ``origin``; a re-append the server
        dropped as a duplicate (same event id, after a redelivery or a retry) is not reported."""
        ...

    def handled(self, consumer: str, record: Record, delivery: int) -> None:
        """The durable ``consumer`` (a service name) took work item ``record``, for the ``delivery``-th
        time (1 on first delivery; more is a redelivery)."""
        ...


_observers: list[Observer] = []


def add(observer: Observer) -> None:
    """Start telling ``observer`` (idempotent)."""
    if observer not in _observers:
        _observers.append(observer)


def remove(observer: Observer) -> None:
    """Stop telling ``observer`` (a no-op if it was not added)."""
    if observer in _observers:
        _observers.remove(observer)


def appended(origin: Source, run_id: str, events: Sequence[Event]) -> None:
    """Tell every observer that ``events`` were stored (called by the event log after an append)."""
    for obs in tuple(_observers):
        try:
            obs.appended(origin, run_id, events)
        except Exception:  # a projection's bug must not fail an append
            log.exception("observer %r failed on appended events", obs)


def handled(consumer: str, record: Record, delivery: int) -> None:
    """Tell every observer that a work item was taken (called by the work queue before its handler)."""
    for obs in tuple(_observers):
        try:
            obs.handled(consumer, record, delivery)
        except Exception:  # a projection's bug must not fail a work item
            log.exception("observer %r failed on a handled item", obs)


__all__ = ["Observer", "add", "appended", "handled", "remove"]
