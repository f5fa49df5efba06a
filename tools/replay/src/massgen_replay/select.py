"""Choosing which of a run's records a view shows: by agent, by event type, or one activity (MCP, execution).

One pure function, :func:`select`, serves every view (the replay report, ``--json``, the HTML timeline,
the TUI), so ``--agent``, ``--type``, ``--mcp`` and ``--exec`` mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from massgen_es.errors import ReplayError
from massgen_es.events import EVENT_CLASSES, Record, RunSubmitted, UnknownEvent
from massgen_replay.views import RunView

Activity = Literal["mcp", "exec"]

MCP_TYPES: frozenset[str] = frozenset({
    "tools.list_requested", "tools.listed", "tool.call_requested", "tool.call_started", "tool.call_completed",
    "tool.call_failed", "mcp.server_state",
})
"""Event tags of MCP activity: catalogs, calls and their outcomes, server states and breaker changes."""
EXEC_TYPES: frozenset[str] = frozenset({
    "execution.requested", "execution.started", "execution.completed", "execution.failed", "sandbox.changed",
})
"""Event tags of command executions and their sandboxes."""
ACTIVITY_TYPES: dict[Activity, frozenset[str]] = {"mcp": MCP_TYPES, "exec": EXEC_TYPES}

KNOWN_TYPES: frozenset[str] = frozenset(str(c.__struct_config__.tag) for c in EVENT_CLASSES)

_AGENT_FIELDS = ("agent_id", "voter_id", "presenter_id")
"""Fields naming the agent an event is about (a vote is its voter's, a presentation its presenter's)."""


def agent_of(record: Record) -> str | None:
    """The agent a record is about (its ``agent_id``, ``voter_id`` or ``presenter_id``), or None for a
    run-level event (submission, consensus, the run's end, a timer, an MCP server's state)."""
    ev = record.event
    if isinstance(ev, UnknownEvent):
        value = next((ev.data.get(f) for f in _AGENT_FIELDS if isinstance(ev.data.get(f), str)), None)
        return value
    for f in _AGENT_FIELDS:
        value = getattr(ev, f, None)
        if isinstance(value, str):
            return value
    return None


def type_matches(tag: str, patterns: Iterable[str]) -> bool:
    """Whether ``tag`` is one of ``patterns``: a whole tag (``tool.call_completed``) or a prefix ending in a
    dot (``tool.``, or ``tool`` which means the same); no patterns match everything."""
    pats = list(patterns)
    if not pats:
        return True
    for p in pats:
        if tag == p or tag.startswith(p if p.endswith(".") else p + "."):
            return True
    return False


def check_types(patterns: Iterable[str]) -> None:
    """Refuse a ``--type`` pattern that matches no known event type.

    Raises:
        ReplayError: naming the pattern and the known tags' families.
    """
    for p in patterns:
        if not any(type_matches(t, [p]) for t in KNOWN_TYPES):
            families = sorted({t.split(".")[0] + "." for t in KNOWN_TYPES})
            raise ReplayError(f"--type {p!r} matches no event type; give a tag such as tool.call_completed "
                              f"or a prefix: {', '.join(families)}")


def select(
    records: Sequence[Record],
    *,
    agents: Iterable[str] = (),
    types: Iterable[str] = (),
    activity: Activity | None = None,
) -> list[Record]:
    """The records of ``records`` (in their order) that pass every filter given.

    Args:
        records: a run's records, as :func:`massgen_replay.read.run_records` returns them.
        agents: agent ids (config ids); a record passes when it is about one of them (:func:`agent_of`).
            Run-level records (no agent) do not pass an agent filter.
        types: event tags or tag prefixes (:func:`type_matches`); a record passes when it matches one.
        activity: ``mcp`` keeps :data:`MCP_TYPES`, ``exec`` keeps :data:`EXEC_TYPES`.

    Pure: no I/O, the input is not changed. No filter at all returns every record.
    """
    wanted_agents = set(agents)
    patterns = list(types)
    kinds = ACTIVITY_TYPES[activity] if activity else None
    out = []
    for r in records:
        if kinds is not None and r.type not in kinds:
            continue
        if patterns and not type_matches(r.type, patterns):
            continue
        if wanted_agents and agent_of(r) not in wanted_agents:
            continue
        out.append(r)
    return out


def selected_view(run_id: str, records: Sequence[Record], selected: Sequence[Record]) -> RunView:
    """A :class:`RunView` whose timeline, votes and usage come from ``selected`` only, and whose header
    (question, agents, status, winner, final answer, stage times) comes from all of ``records``: a
    filtered report still says what the run was and how it ended."""
    full = RunView(run_id)
    for r in records:
        full.apply(r)
    view = RunView(run_id)
    chosen = {r.seq for r in selected}
    for r in records:  # the agents, so their events are shown, without the submission in the timeline
        if isinstance(r.event, RunSubmitted) and r.seq not in chosen:
            view.apply(r)
            view.timeline.clear()
            view.events = 0
    for r in selected:
        view.apply(r)
    view.question, view.status, view.phase, view.winner = full.question, full.status, full.phase, full.winner
    view.final_answer, view.failure, view.stages = full.final_answer, full.failure, full.stages
    return view
