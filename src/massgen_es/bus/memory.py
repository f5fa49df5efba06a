"""In-memory event log, for unit tests only. Trusted because it passes the same contract suite as JetStream."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, Sequence

from massgen_es import subjects
from massgen_es.bus import Draft
from massgen_es.errors import ConcurrencyConflict
from massgen_es.events import Record, Source, decode, encode
from massgen_es.subjects import Writer


class InMemoryEventLog:
    """:class:`massgen_es.bus.EventLog` kept in a list; events go through the real codec."""

    def __init__(self) -> None:
        self._records: list[tuple[str, Record]] = []  # (subject, record)
        self._ids: dict[str, int] = {}
        self._last_by_subject: dict[str, int] = {}
        self._changed = asyncio.Condition()

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
        """Append ``drafts`` all or nothing (see :meth:`massgen_es.bus.EventLog.append`).

        Raises:
            ConcurrencyConflict: ``expect_last_seq`` did not match; nothing was written.
        """
        subject = subjects.run_subject(run_id, source)
        if drafts and all(d.id in self._ids for d in drafts):
            return [self._ids[d.id] for d in drafts]  # a retried append that already landed
        fenced = subjects.run_subject(run_id, expect_of) if expect_of is not None else subject
        if expect_last_seq is not None and self._last_by_subject.get(fenced, 0) != expect_last_seq:
            raise ConcurrencyConflict(
                f"{fenced}: expected last sequence {expect_last_seq}, found {self._last_by_subject.get(fenced, 0)}"
            )
        seqs: list[int] = []
        now = time.time()
        for d in drafts:
            if d.id in self._ids:
                seqs.append(self._ids[d.id])
                continue
            seq = len(self._records) + 1
            data = encode(d.event, id=d.id, run_id=run_id, ts=now if d.ts is None else d.ts, source=origin,
                          causation_id=d.causation_id)
            self._records.append((subject, decode(data, seq)))
            self._ids[d.id] = seq
            self._last_by_subject[subject] = seq
            seqs.append(seq)
        async with self._changed:
            self._changed.notify_all()
        return seqs

    def _select(self, run_id: str | None, after_seq: int, source: Writer | None = None) -> list[Record]:
        return [
            r
            for subject, r in self._records[after_seq:]
            if (run_id is None or r.run_id == run_id) and (source is None or subjects.source_of(subject) == source)
        ]

    async def read(self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None) -> list[Record]:
        """Every stored event (of one run, or of all runs; of one writer with ``source``) with sequence >
        ``after_seq``, in order."""
        return self._select(run_id, after_seq, source)

    async def follow(
        self, run_id: str | None = None, after_seq: int = 0, source: Writer | None = None
    ) -> AsyncGenerator[Record, None]:
        """Like :meth:`read`, then keeps yielding new events as they are appended (never ends)."""
        pos = after_seq
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._has_after, pos))
            batch = self._select(run_id, pos, source)
            pos = len(self._records)
            for r in batch:
                yield r

    def _has_after(self, pos: int) -> bool:
        return len(self._records) > pos

    async def last_seq(self, run_id: str, source: Writer) -> int:
        """Stream sequence of the last event on a run's ``source`` subject, 0 if none."""
        return self._last_by_subject.get(subjects.run_subject(run_id, source), 0)

    async def last(self, run_id: str, source: Writer) -> Record | None:
        """The last event on a run's ``source`` subject, None if none."""
        seq = await self.last_seq(run_id, source)
        return self._records[seq - 1][1] if seq else None
