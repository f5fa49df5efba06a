"""Rich renderings of a :class:`RunView`: the live panel of ``massgen submit`` and the replay report.

What a model or a user wrote goes in as :class:`Text`, never as a markup string: rich would read
``\\[`` in a LaTeX answer, or ``[/bold]``, as its own markup (and drop or choke on it).
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from massgen_replay import sections
from massgen_replay.views import Entry, RunView, preview

_KIND_STYLE = {
    "new_answer": "bold green",
    "vote": "bold cyan",
    "invalidated": "yellow",
    "update": "magenta",
    "rejected": "yellow",
    "failed": "red",
    "dropped": "bold red",
    "consensus": "bold blue",
    "presenting": "blue",
    "presented": "blue",
    "evaluating": "blue",
    "evaluated": "blue",
    "restarted": "bold magenta",
    "completed": "bold green",
    "timed_out": "bold yellow",
    "failed_run": "bold red",
}


def live(view: RunView) -> Panel:
    """One row per agent: status, answers, vote, and the tail of what it is streaming."""
    table = Table(expand=True, show_edge=False)
    table.add_column("agent", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("answers")
    table.add_column("vote")
    table.add_column("streaming", ratio=1, overflow="ellipsis", no_wrap=True)
    for a in view.agents.values():
        tail = " ".join(a.text.split())[-120:]
        table.add_row(f"{a.anon_id} ({a.id})", a.status, ", ".join(a.answers) or "-", a.vote or "-", Text(tail))
    title = f"run {view.run_id} · {view.phase} · {view.events} events"
    return Panel(table, title=title, subtitle=Text(preview(view.question, 80)))


PROGRESS_KINDS = frozenset({
    "started", "new_answer", "vote", "rejected", "update", "invalidated", "retry", "failed", "dropped", "consensus",
    "presenting", "tool_call", "exec", "budget", "forked", "approval", "cancel", "resume", "evaluating",
    "evaluated", "restarted", "media", "computer",
})
"""Timeline entries that ``massgen submit`` prints as they land (the live table shows the rest)."""


def progress(view: RunView, entry: Entry) -> Text | None:
    """One line of ``massgen submit``'s progress (seconds since submission, who, what), or None for
    entries the live table already covers; printed above the live table, so it also shows without a
    terminal (a CI log, a pipe)."""
    if entry.kind not in PROGRESS_KINDS:
        return None
    start = view.stages.get("submitted", entry.ts)
    who = f"{view.agents[entry.agent_id].anon_id} ({entry.agent_id})" if entry.agent_id in view.agents else "run"
    line = Text(f"{entry.ts - start:6.1f}s  {who:<22} ")
    if entry.kind == "started":  # a turn (or an attempt of it) began: the agent is thinking
        return line.append("thinking", style="dim")
    line.append(entry.kind, style=_KIND_STYLE.get(entry.kind, "dim"))
    return line.append(f"  {preview(entry.text, 110)}")


def report(view: RunView, console: Console) -> None:
    """Print the full replay report: stages, per-agent timeline, votes, usage, final answer."""
    start = view.stages.get("submitted", view.timeline[0].ts if view.timeline else 0.0)
    when = datetime.fromtimestamp(start).isoformat(sep=" ", timespec="seconds") if start else "?"
    console.print(f"[bold]run {view.run_id}[/bold] · {view.status} · submitted {when} · {view.events} events")
    console.print(Text.assemble(("question:", "bold"), " ", view.question))
    if view.forked_from:
        console.print(f"[bold]fork of[/bold] {view.forked_from[0]} at seq {view.forked_from[1]} (events before "
                      "`forked` are copies of the parent's, with their original times)")
    if view.session_id:
        console.print(f"[bold]session[/bold] {view.session_id} (`massgen replay --session {view.session_id}` "
                      "shows every turn)", highlight=False)
    if view.winner:
        anon = view.agents[view.winner].anon_id if view.winner in view.agents else "?"
        console.print(f"[bold]winner:[/bold] {anon} ({view.winner})")

    stages = Table(title="stages", show_edge=False)
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for name, secs in view.stage_durations().items():
        stages.add_row(name, f"{secs:.2f}")
    console.print(stages)

    timeline = Table(title="timeline", show_edge=False, expand=True)
    timeline.add_column("+s", justify="right", no_wrap=True)
    timeline.add_column("agent", no_wrap=True)
    timeline.add_column("event", no_wrap=True)
    timeline.add_column("detail", ratio=1)
    for e in view.timeline:
        who = f"{view.agents[e.agent_id].anon_id} ({e.agent_id})" if e.agent_id in view.agents else "-"
        style = _KIND_STYLE.get(e.kind, "")
        timeline.add_row(f"{e.ts - start:.2f}", who, Text(e.kind, style=style), Text(e.text))
    console.print(timeline)

    if view.votes:
        votes = Table(title="final votes", show_edge=False, expand=True)
        votes.add_column("voter")
        votes.add_column("for")
        votes.add_column("reason", ratio=1)
        for v in view.votes:
            votes.add_row(v["voter"], f"{v['target_anon']} ({v['target']})", Text(v["reason"]))
        console.print(votes)

    usage = Table(title="token usage", show_edge=False)
    columns = ("agent", "LLM calls", "input", "output", "cost $", "LLM seconds", "tool calls (errors)", "tool seconds")
    for col in columns:
        usage.add_column(col, justify="right" if col != "agent" else "left")
    for a in view.agents.values():
        cost = f"{a.cost_usd:.6f}" + ("+?" if a.unpriced_calls else "")
        usage.add_row(a.id, str(a.calls), str(a.input_tokens), str(a.output_tokens), cost, f"{a.llm_seconds:.2f}",
                      f"{a.tool_calls} ({a.tool_errors})", f"{a.tool_seconds:.2f}")
    u = view.usage()
    usage.add_row("total", str(u["llm_calls"]), str(u["input_tokens"]), str(u["output_tokens"]),
                  f"{u['cost_usd']:.6f}" + ("+?" if u["unpriced_calls"] else ""), "",
                  str(u["tool_calls"]), "")
    console.print(usage)
    if any(a.answers or a.votes for a in view.analytics.agents.values()):
        sections.consensus_section(view.analytics, console)

    body = view.final_answer or view.failure or "(no final answer)"
    console.print(Panel(Text(body), title="final answer" if view.final_answer else view.status))


def final(view: RunView) -> Group:
    """The closing panel of ``massgen submit``."""
    body = view.final_answer or view.failure or "(no final answer)"
    who = f"{view.agents[view.winner].anon_id} ({view.winner})" if view.winner in view.agents else "-"
    title = f"final answer · {view.status} · presented by {who} · {view.duration_s or 0:.1f}s"
    return Group(Panel(Text(body), title=title), Text(f"replay it: massgen replay {view.run_id}", style="dim"))
