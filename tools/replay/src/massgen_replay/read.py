"""Reading runs back from the log: one run's records, or a summary of every run."""

from __future__ import annotations

from massgen_es.bus import EventLog
from massgen_es.errors import ReplayError
from massgen_es.events import Record
from massgen_replay.views import RunView


async def run_records(log: EventLog, run_id: str) -> list[Record]:
    """Every event of ``run_id`` in stream order.

    Raises:
        ReplayError: the run has no events (with a pointer to ``massgen runs``).
    """
    records = await log.read(run_id)
    if not records:
        raise ReplayError(f"no events for run {run_id!r}; `massgen runs` lists the runs in this stack")
    return records


def project(run_id: str, records: list[Record]) -> RunView:
    """Fold records into a :class:`RunView`."""
    view = RunView(run_id)
    for r in records:
        view.apply(r)
    return view


async def all_runs(log: EventLog) -> list[RunView]:
    """A view of every run in the log, oldest first."""
    views: dict[str, RunView] = {}
    for r in await log.read():
        views.setdefault(r.run_id, RunView(r.run_id)).apply(r)
    return sorted(views.values(), key=lambda v: v.stages.get("submitted", 0.0))
