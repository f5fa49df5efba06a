"""Copy recorded events of one run into another run: the history a fork (``massgen fork``) starts from,
and what an import of a run's records needs.

A copy keeps each event's content, timestamp (``ts``) and writer (``source``), and lands on the same
writer's subject of the target run, in the same order, so every reader of the target run (the
orchestrator's rebuild, the once-checks of ``massgen_es.bus.once``, replay) sees it as that run's own
history. Only the ids change, because ids are ``Nats-Msg-Id`` and must be unique in the stream:

- an orchestrator decision gets the decision id it would have had in the target run,
  ``<target>:o<seq of its cause in the target>:<i>`` (``massgen_es.ids``): the orchestrator reads the
  cause's sequence back from it to know where it stopped deciding;
- any other event gets ``<target>:c:<original id>``, which keeps the suffix relations ids carry
  (``<request id>:started`` / ``:result``) and can never collide with an id the target's own services
  make later (theirs start ``<target>:`` followed by their own tokens, never ``c:``);
- causation ids are mapped the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from massgen_es import ids
from massgen_es.bus import Draft, EventLog
from massgen_es.bus.history import writer_of
from massgen_es.events import Record, UnknownEvent

BATCH = 100
"""Events per append: consecutive events of one writer go in one atomic batch, at most this many."""


def copied_id(run_id: str, original: str) -> str:
    """Id of the copy, in run ``run_id``, of a non-decision event whose id was ``original``."""
    return f"{run_id}:c:{original}"


async def copy_records(log: EventLog, run_id: str, records: Sequence[Record]) -> dict[str, int]:
    """Append ``records`` (another run's, in stream order) to run ``run_id`` as described above.

    Args:
        log: the event log to append to (it may be the one the records come from).
        run_id: the target run; it should have no events yet.
        records: the events to copy, in stream order, each of a known type (``UnknownEvent`` records,
            written by a newer version or malformed, cannot be re-encoded) from one of ``subjects.WRITERS``.

    Returns:
        ``{original id: sequence of its copy}``.

    Raises:
        ValueError: a record is an ``UnknownEvent`` or has a writer outside ``WRITERS``.
        BusError: an append failed (what was appended before stays; the target run is then incomplete).
    """
    for r in records:
        writer_of(r)  # a writer's subject to go back to, else ValueError naming the event
        if isinstance(r.event, UnknownEvent):
            raise ValueError(f"cannot copy event {r.id} (seq {r.seq}, {r.type}): unknown to this version")
    new_seq: dict[str, int] = {}
    new_id: dict[str, str] = {}
    per_cause: dict[str, int] = {}
    groups: list[list[Record]] = []
    for r in records:
        g = groups[-1] if groups else None
        if g is not None and len(g) < BATCH and g[0].source == r.source:
            g.append(r)
        else:
            groups.append([r])
    for group in groups:
        drafts: list[Draft] = []
        for r in group:
            cause = new_id.get(r.causation_id, copied_id(run_id, r.causation_id)) if r.causation_id else None
            if r.is_decision and r.causation_id in new_seq:
                # Its cause is not a decision, so it was appended in an earlier group: its sequence is known.
                i = per_cause.get(r.causation_id, 0)
                per_cause[r.causation_id] = i + 1
                new_id[r.id] = ids.decision_id(run_id, new_seq[r.causation_id], i)
            else:
                new_id[r.id] = copied_id(run_id, r.id)
            assert not isinstance(r.event, UnknownEvent)
            drafts.append(Draft(new_id[r.id], r.event, cause, r.ts))
        seqs = await log.append(run_id, writer_of(group[0]), drafts, origin=group[0].source)
        new_seq.update({r.id: s for r, s in zip(group, seqs, strict=True)})
    return new_seq

