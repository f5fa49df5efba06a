"""What ``massgen replay`` prints for a run's records, with its filters (``--mcp``, ``--exec``, ``--agent``,
``--type``) and outputs (the report, ``--json`` event lines, ``--summary``), and ``massgen runs --stats``.

The filtering itself is :func:`massgen_replay.select.select`, shared with every other view.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from massgen_cli.console import fail, out
from massgen_es.errors import ReplayError
from massgen_es.events import Record, to_builtins
from massgen_replay import activity as activity_mod
from massgen_replay import analytics, read, render, sections
from massgen_replay.select import Activity, check_types, select, selected_view
from massgen_replay.views import RunView


def choose(
    run_id: str,
    records: list[Record],
    *,
    mcp: bool = False,
    exec_: bool = False,
    agents: Sequence[str] = (),
    types: Sequence[str] = (),
) -> tuple[list[Record], RunView, RunView, Activity | None]:
    """The records the filters select, with the view of them, the run's whole view and the activity
    asked for: what every output of ``massgen replay`` (report, ``--json``, ``--summary``, ``--html``,
    ``--tui``) is built from. Exits 1 naming the fix for a filter that cannot match (an agent not in the
    run, an unknown event type, ``--mcp`` with ``--exec``)."""
    try:
        check_types(types)
    except ReplayError as exc:
        fail(str(exc), 1)
    if mcp and exec_:
        fail("--mcp and --exec each show one activity; pick one, or use --type tool. --type execution.", 1)
    full = read.project(run_id, records)
    unknown = [a for a in agents if a not in full.agents]
    if unknown:
        fail(f"--agent {unknown[0]!r} is not an agent of run {run_id}; its agents: {', '.join(full.agents) or 'none'}",
             1)
    kind: Activity | None = "mcp" if mcp else "exec" if exec_ else None
    if not (kind or agents or types):
        return records, full, full, None
    chosen = select(records, agents=agents, types=types, activity=kind)
    return chosen, selected_view(run_id, records, chosen), full, kind


def show(
    run_id: str,
    records: list[Record],
    *,
    as_json: bool = False,
    summary: bool = False,
    mcp: bool = False,
    exec_: bool = False,
    agents: Sequence[str] = (),
    types: Sequence[str] = (),
) -> None:
    """Print a run: the report (or the MCP / execution report), its events as JSON lines, or its summary
    object, each limited to the records the filters select (:func:`choose`, whose errors it shares)."""
    chosen, view, full, kind = choose(run_id, records, mcp=mcp, exec_=exec_, agents=agents, types=types)
    if as_json:
        for r in chosen:
            print(json.dumps(to_builtins(r), ensure_ascii=False))
    elif summary:
        print(json.dumps(view.summary(), ensure_ascii=False))
    elif kind is not None:
        start = full.stages.get("submitted", records[0].ts)
        out.print(f"[bold]run {run_id}[/bold] · {full.status} · {kind} activity"
                  + (f" of {', '.join(agents)}" if agents else ""), highlight=False)
        if kind == "mcp":
            sections.mcp_report(activity_mod.mcp_rows(chosen), start, out)
        else:
            sections.exec_report(activity_mod.exec_rows(chosen), start, out)
    else:
        render.report(view, out)


def stats(views: list[RunView], as_json: bool) -> None:
    """``massgen runs --stats``: consensus analytics across every run (wins, flips, persuasion, time to
    consensus, per-agent cost and latency)."""
    figures = analytics.across_runs((v.status, v.analytics) for v in views)
    if as_json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        sections.stats_report(figures, out)
