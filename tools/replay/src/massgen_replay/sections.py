"""Rich renderings of the debugging and analytics projections: the MCP and execution reports of
``massgen replay RUN --mcp`` / ``--exec``, the report's consensus section, and ``massgen runs --stats``.

Texts that come from events (arguments, reasons, errors) go in as :class:`Text`, never as markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from massgen_replay.analytics import RunAnalytics
from massgen_replay.views import preview


def _secs(v: float | None) -> str:
    return f"{v:.3f}" if v is not None else "-"


def mcp_report(rows: list[dict[str, Any]], start: float, console: Console) -> None:
    """Print :func:`massgen_replay.activity.mcp_rows`: the calls, then server changes and catalogs, each
    at ``+s`` seconds since ``start`` (the run's submission)."""
    calls = [r for r in rows if r["kind"] == "call"]
    table = Table(title=f"MCP calls ({len(calls)})", show_edge=False, expand=True)
    for col, just in (("+s", "right"), ("agent", "left"), ("server", "left"), ("tool", "left"),
                      ("arguments", "left"), ("seconds", "right"), ("result chars", "right"), ("error", "left")):
        table.add_column(col, justify=just, ratio=1 if col in ("arguments", "error") else None)  # type: ignore[arg-type]
    for r in calls:
        error = Text(preview(r["error"], 100), style="red") if r["error"] else Text("-")
        if r["replayed_from"]:
            error.append(f" (replayed from {r['replayed_from']})", style="dim")
        table.add_row(f"{r['ts'] - start:.2f}", r["agent"], r["server"], r["tool"], Text(preview(r["arguments"], 80)),
                      _secs(r["duration_s"]), str(r["result_chars"]) if r["result_chars"] is not None else "-", error)
    console.print(table)
    others = [r for r in rows if r["kind"] != "call"]
    if others:
        servers = Table(title="MCP servers and catalogs", show_edge=False, expand=True)
        servers.add_column("+s", justify="right")
        servers.add_column("server")
        servers.add_column("what")
        servers.add_column("detail", ratio=1)
        for r in others:
            if r["kind"] == "server":
                what = Text(f"{r['change']}: {r['state']}", style="yellow" if r["change"] != "start" else "")
                detail = r["reason"] + (f" ({r['failures']} failures)" if r["failures"] else "")
            else:
                what = Text(f"catalog v{r['version']}")
                detail = f"{r['tools']} tools for {r['agent']}" + (f"; {r['error']}" if r["error"] else "")
            servers.add_row(f"{r['ts'] - start:.2f}", r["server"], what, Text(preview(detail, 120)))
        console.print(servers)


def exec_report(rows: list[dict[str, Any]], start: float, console: Console) -> None:
    """Print :func:`massgen_replay.activity.exec_rows`: executions (command, mode, exit code, seconds,
    output size, error), then sandbox changes."""
    execs = [r for r in rows if r["kind"] == "exec"]
    table = Table(title=f"executions ({len(execs)})", show_edge=False, expand=True)
    for col, just in (("+s", "right"), ("agent", "left"), ("command", "left"), ("mode", "left"), ("exit", "right"),
                      ("seconds", "right"), ("output chars", "right"), ("error", "left")):
        table.add_column(col, justify=just, ratio=1 if col in ("command", "error") else None)  # type: ignore[arg-type]
    for r in execs:
        table.add_row(f"{r['ts'] - start:.2f}", r["agent"], Text(preview(r["command"], 80)), r["mode"] or "-",
                      str(r["exit_code"]) if r["exit_code"] is not None else "-", _secs(r["duration_s"]),
                      str(r["output_chars"]) if r["output_chars"] is not None else "-",
                      Text(preview(r["error"], 100), style="red") if r["error"] else Text("-"))
    console.print(table)
    boxes = [r for r in rows if r["kind"] == "sandbox"]
    if boxes:
        t = Table("+s", "agent", "container", "state", "reason", title="sandboxes", show_edge=False)
        for r in boxes:
            t.add_row(f"{r['ts'] - start:.2f}", r["agent"], r["container"], r["state"], Text(r["reason"]))
        console.print(t)


def consensus_section(a: RunAnalytics, console: Console) -> None:
    """The replay report's consensus section: time to consensus, flips, persuasion, and per agent its
    answers, votes, flips, cost and latency."""
    s = a.summary()
    head = Text.assemble(("consensus:", "bold"), f" time to consensus {_secs(s['time_to_consensus_s'])} s, "
                         f"first answer {_secs(s['time_to_first_answer_s'])} s, {len(s['flips'])} vote flips")
    console.print(head)
    if s["flips"] or s["persuasion"]:
        moves = Table("voter", "moved", "votes", title="who persuaded whom (voter → author) and vote flips",
                      show_edge=False)
        for p in s["persuasion"]:
            moves.add_row(p["voter"], f"→ {p['author']}", str(p["votes"]))
        for f in s["flips"]:
            moves.add_row(f["voter"], f"flip {f['from']} → {f['to']}", "")
        console.print(moves)
    per = Table(title="per agent", show_edge=False)
    for col in ("agent", "won", "answers", "votes", "flips", "LLM calls", "cost $", "mean call s", "mean TTFT s"):
        per.add_column(col, justify="left" if col in ("agent", "won") else "right")
    for aid, x in s["per_agent"].items():
        cost = f"{x['cost_usd']:.6f}" + ("+?" if x["unpriced_calls"] else "")
        per.add_row(aid, "yes" if aid == s["winner"] else "", str(x["answers"]), str(x["votes"]),
                    str(x["flips"]), str(x["llm_calls"]), cost, _secs(x["mean_call_s"]), _secs(x["mean_ttft_s"]))
    console.print(per)


def stats_report(stats: dict[str, Any], console: Console) -> None:
    """Print :func:`massgen_replay.analytics.across_runs` (``massgen runs --stats``)."""
    ttc = stats["time_to_consensus_s"]
    when = (f"time to consensus mean {ttc['mean']:.2f} s, median {ttc['median']:.2f} s, max {ttc['max']:.2f} s"
            if ttc else "no run reached consensus")
    console.print(f"[bold]{stats['runs']} runs[/bold], {stats['completed']} completed, "
                  f"{stats['with_consensus']} with consensus; {when}")
    per = Table(title="per agent, across runs", show_edge=False)
    for col in ("agent", "runs", "wins", "win rate", "answers", "votes", "flips", "LLM calls", "cost $",
                "mean call s"):
        per.add_column(col, justify="left" if col == "agent" else "right")
    for aid, x in stats["per_agent"].items():
        per.add_row(aid, str(x["runs"]), str(x["wins"]), f"{x['win_rate']:.0%}", str(x["answers"]), str(x["votes"]),
                    str(x["flips"]), str(x["llm_calls"]), f"{x['cost_usd']:.6f}", _secs(x["mean_call_s"]))
    console.print(per)
    if stats["persuasion"]:
        p = Table("voter", "author", "votes", title="who persuaded whom (voter → author)", show_edge=False)
        for row in stats["persuasion"]:
            p.add_row(row["voter"], row["author"], str(row["votes"]))
        console.print(p)
