"""The event-log / bus layer.

:class:`EventLog` is the contract both implementations pass (``tests/test_event_log_contract.py``):
``JetStreamEventLog`` for every service, ``InMemoryEventLog`` for unit tests only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import NamedTuple, Protocol

from massgen_es.events import Event, Record, Source
from massgen_es.subjects import Writer


class Draft(NamedTuple):
    """An event about to be appended: its deterministic id (the ``Nats-Msg-Id``), its cause, and its
    ``ts`` (Unix seconds) when it keeps one it already had (a copied event); None: the time of the append."""

    id: str
    event: Event
    causation_id: str | None = None
    ts: float | None = None


class EventLog(Protocol):
    """Append-only, per-run event log."""

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
        """Append ``drafts`` to subject ``massgen.run.<run_id>.<source>``, all or nothing.

        A draft whose id was already appended is not written again (its first sequence is returned).
        With ``expect_last_seq``, the append succeeds only if the last event on that subject (on the
        run's ``expect_of`` subject, when given: another writer's) has that stream sequence (0: none yet).

        Returns:
            The stream sequence of each draft.

        Raises:
            ConcurrencyConflict: ``expect_last_seq`` did not match; nothing was written.
        """
        ...

    async def read(self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None) -> list[Record]:
        """Every stored event (of one run, or of all runs) with sequence > ``after_seq``, in order;
        ``source`` narrows it to what one writer appended."""
        ...

    def follow(
        self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None
    ) -> AsyncGenerator[Record, None]:
        """Like :meth:`read`, then keeps yielding new events as they are appended (never ends).
        ``source`` narrows it to what one writer (``subjects.SOURCES``) appended; ``aclose()`` stops it."""
        ...

    async def last_seq(self, run_id: str, source: Writer) -> int:
        """Stream sequence of the last event on a run's ``source`` subject, 0 if none."""
        ...

    async def last(self, run_id: str, source: Writer) -> Record | None:
        """The last event on a run's ``source`` subject, None if none."""
        ...


__all__ = ["Draft", "EventLog"]
