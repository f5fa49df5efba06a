"""The Textual terminal UI of a run: ``ui.display_type: textual_terminal`` live, ``massgen replay RUN --tui``.

MassGen's terminal display (spec §6.2) shows one panel per agent with its streamed text, the vote
results, tool statuses, the orchestrator's progress and the final presentation. This app shows the
same, folded from the run's records by the pure projection :class:`RunView` (the one ``massgen replay``
and the Rich view use): the app reads records from an :class:`asyncio.Queue`, so the live run (fed by
``massgen submit``'s follow loop) and a recorded one (every record put at once) take the same path.

An agent's pane holds everything it streamed, every turn and attempt under its own header, in a
scrolling container: nothing is cut to a preview. Keys: tab / shift+tab and right / left move between
the panes (agents, votes, tools, final answer); up, down, page up, page down, home and end scroll the
focused one; q closes the app (a live run is not stopped by that: it goes on in the stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Static

from massgen_es import ids
from massgen_es.events import Record, RunRestarted, TextDelta, TurnStarted, VoteCast, VoteInvalidated
from massgen_replay.views import RunView, preview

STAGES = ("initialisation", "coordination", "presentation")
"""MassGen's stages of a run (spec §6.2: the orchestrator status footer), in order."""

TOOL_KINDS = frozenset({
    "tools", "tool_call", "tool_result", "tool_failed", "exec", "exec_result", "exec_failed", "snapshot", "approval",
    "classified",
    "mcp_server", "sandbox", "media", "computer",
})
"""Timeline entries (``RunView.timeline`` kinds) shown in the tools pane."""


def stage_progress(view: RunView, now: float) -> list[tuple[str, str, float | None]]:
    """``(stage, state, seconds)`` for each of :data:`STAGES`; state is ``pending``, ``running`` or
    ``done``, seconds the stage's duration (up to ``now``, a Unix time, while it runs; None if pending).

    Initialisation runs from submission to the first turn starting, coordination from there to the
    presentation (or the run's end), presentation from there to the end.
    """
    s = view.stages
    first_turn = next((e.ts for e in view.timeline if e.kind == "started"), None)
    end = s.get("ended")
    bounds = {
        "initialisation": (s.get("submitted"), first_turn or end),
        "coordination": (first_turn, s.get("presentation") or end),
        "presentation": (s.get("presentation"), end),
    }
    out: list[tuple[str, str, float | None]] = []
    for name in STAGES:
        start, stop = bounds[name]
        if start is None:
            out.append((name, "pending", None))
        elif stop is None:
            out.append((name, "running", max(0.0, now - start)))
        else:
            out.append((name, "done", stop - start))
    return out


@dataclass
class Ballot:
    """One agent's current vote: the anonymous and real ids it voted for and its reason, in full."""

    target_anon: str
    target_id: str
    reason: str
    invalidated_by: str | None = None


class Fold:
    """What the app shows beyond :class:`RunView`: every agent's full transcript (``RunView`` keeps only
    the current attempt's text) and every vote's full reason. Fed the same records, in order."""

    def __init__(self, run_id: str) -> None:
        self.view = RunView(run_id)
        self.transcripts: dict[str, str] = {}
        self.ballots: dict[str, Ballot] = {}
        self.last_ts: float | None = None

    def apply(self, r: Record) -> None:
        """Fold one record into the view, the transcripts and the ballots."""
        self.view.apply(r)
        self.last_ts = r.ts
        ev = r.event
        if isinstance(ev, TurnStarted) and ev.agent_id in self.view.agents:
            what = ("presentation" if ids.is_presentation(ev.turn_id) else "post-evaluation"
                    if ids.is_post_evaluation(ev.turn_id) else f"turn {ev.turn_id}")
            sep = "\n\n" if self.transcripts.get(ev.agent_id) else ""
            self.transcripts[ev.agent_id] = self.transcripts.get(ev.agent_id, "") + \
                f"{sep}── {what}, attempt {ev.attempt} ──\n"
        elif isinstance(ev, TextDelta) and ev.agent_id in self.view.agents:
            self.transcripts[ev.agent_id] = self.transcripts.get(ev.agent_id, "") + ev.text
        elif isinstance(ev, VoteCast):
            self.ballots[ev.voter_id] = Ballot(ev.target_anon, ev.target_id, ev.reason)
        elif isinstance(ev, VoteInvalidated) and ev.voter_id in self.ballots:
            self.ballots[ev.voter_id].invalidated_by = ev.by_label
        elif isinstance(ev, RunRestarted):
            self.ballots.clear()  # the restarted attempt's votes are the ones that count


def votes_table(fold: Fold) -> Table:
    """One row per agent: its answers' labels, whom it voted for and why (the reason in full)."""
    view = fold.view
    tally = ", ".join(f"{k}: {n}" for k, n in view.tally.items())
    table = Table(expand=True, show_edge=False, title=f"tally {tally}" if tally else None)
    table.add_column("agent")
    table.add_column("answers")
    table.add_column("voted for")
    table.add_column("reason", ratio=1, min_width=24)
    for a in view.agents.values():
        b = fold.ballots.get(a.id)
        if b is None:
            vote, reason = Text("-"), Text("")
        else:
            gone = f" (invalidated by {b.invalidated_by})" if b.invalidated_by else ""
            vote = Text(f"{b.target_anon} ({b.target_id}){gone}", style="dim" if gone else "bold cyan")
            reason = Text(b.reason)
        table.add_row(f"{a.anon_id} ({a.id})", ", ".join(a.answers) or "-", vote, reason)
    return table


def stages_line(fold: Fold, now: float) -> Text:
    """The stages with their seconds, then the question."""
    view = fold.view
    line = Text(f"{view.events} events   ", style="bold")
    marks = {"pending": ("○", "dim"), "running": ("●", "bold yellow"), "done": ("✓", "green")}
    for i, (name, state, secs) in enumerate(stage_progress(view, now)):
        mark, style = marks[state]
        line.append(" │ " if i else "")
        line.append(f"{mark} {name}" + (f" {secs:.1f}s" if secs is not None else ""), style=style)
    return line.append("\n").append(Text(preview(view.question, 200), style="italic"))


class TextPane(VerticalScroll):
    """Scrolling text, wrapped to the pane's width (again on a resize: nothing is cut off), that follows
    its end as it grows until the user scrolls up (and again once scrolled back to the end)."""

    def __init__(self, *, id: str | None = None, classes: str = "") -> None:
        super().__init__(id=id, classes=classes)
        self.text = ""
        """The plain text shown."""

    def compose(self) -> ComposeResult:
        """The text, in one wrapping Static."""
        yield Static(Text(""), classes="text")

    def on_mount(self) -> None:
        """Follow the end."""
        self.anchor()

    def show_text(self, text: Text) -> None:
        """Show ``text`` (a rich Text: what a model wrote is never read as markup)."""
        if text.plain != self.text:
            self.text = text.plain
            self.query_one(".text", Static).update(text)


class AgentPane(TextPane):
    """One agent's full transcript."""

    DEFAULT_CSS = "AgentPane { width: 1fr; height: 1fr; border: round $secondary; } " \
                  "AgentPane:focus { border: round $accent; }"

    def __init__(self, agent_id: str, index: int) -> None:
        super().__init__(id=f"pane-{index}", classes="pane")  # an agent id may not be a valid CSS id
        self.agent_id = agent_id

    def show(self, title: str, status: str, transcript: str) -> None:
        """Set the title, the status and the transcript."""
        self.border_title, self.border_subtitle = title, status
        self.show_text(Text(transcript))


class RunApp(App[None]):
    """The terminal UI of one run, folding records from ``records`` as they arrive.

    Args:
        run_id: The run shown.
        records: Its records in log order; the app consumes them until it closes.
        live: The run is going on: the running stage's seconds count on the wall clock (otherwise up to
            the last record's time).
    """

    CSS = """
    #stages { height: auto; padding: 0 1; background: $boost; }
    #agents { height: 1fr; min-height: 8; }
    #lower { height: 14; }
    #votes { width: 3fr; border: round $secondary; }
    #tools { width: 2fr; border: round $secondary; }
    #final { height: auto; max-height: 12; border: round $success; }
    #votes:focus, #tools:focus, #final:focus { border: round $accent; }
    """
    ENABLE_COMMAND_PALETTE = False  # nothing to command: the keys below are all there is
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit (a live run goes on in the stack)"),
        Binding("right", "app.focus_next", "next pane", priority=True),
        Binding("left", "app.focus_previous", "previous pane", priority=True),
    ]

    def __init__(self, run_id: str, records: asyncio.Queue[Record], *, live: bool = False) -> None:
        super().__init__()
        self.records = records
        self.live = live
        self.fold = Fold(run_id)
        self.panes: dict[str, AgentPane] = {}
        self.tool_lines: list[Text] = []
        self.drawn = 0
        """Records folded and drawn so far."""

    @classmethod
    def replay(cls, run_id: str, records: Iterable[Record]) -> RunApp:
        """The app of a recorded run: every record queued before it starts."""
        queue: asyncio.Queue[Record] = asyncio.Queue()
        for r in records:
            queue.put_nowait(r)
        return cls(run_id, queue)

    def compose(self) -> ComposeResult:
        """Header, stages, the agents' panes (mounted as the run names its agents), votes, tools, final answer."""
        yield Header()
        yield Static(id="stages")
        yield Horizontal(id="agents")
        with Horizontal(id="lower"):
            yield VerticalScroll(Static(id="votes-table"), id="votes")
            yield TextPane(id="tools")
        yield VerticalScroll(Static(Text("(no final answer yet)"), id="final-text"), id="final")
        yield Footer()

    def on_mount(self) -> None:
        """Title the panes, start folding the queue, tick the running stage's seconds."""
        self.title, self.sub_title = f"massgen · run {self.fold.view.run_id}", "running"
        self.query_one("#votes").border_title = "answers and votes"
        self.query_one("#tools").border_title = "tool calls and executions"
        self.query_one("#final").border_title = "final answer"
        self.run_worker(self._consume(), exclusive=True, group="records")
        self.set_interval(0.5, self._show_stages)

    def pane(self, agent_id: str) -> AgentPane:
        """The pane of ``agent_id``. Raises KeyError for an agent not (yet) in the run."""
        return self.panes[agent_id]

    async def _consume(self) -> None:
        """Fold what is queued in one batch, then redraw: a recorded run's thousands of deltas cost one
        redraw, not one each."""
        while True:
            batch = [await self.records.get()]
            while not self.records.empty():
                batch.append(self.records.get_nowait())
            for r in batch:
                seen = len(self.fold.view.timeline)
                self.fold.apply(r)
                for e in self.fold.view.timeline[seen:]:
                    if e.kind in TOOL_KINDS:
                        self.tool_lines.append(self._tool_line(e.ts, e.agent_id, e.kind, e.text))
            try:
                await self._show()
            except NoMatches:  # the app is closing (q): its widgets are gone
                return

    def _tool_line(self, ts: float, agent_id: str | None, kind: str, text: str) -> Text:
        view = self.fold.view
        start = view.stages.get("submitted", ts)
        who = view.agents[agent_id].anon_id if agent_id in view.agents else "run"
        style = "red" if kind.endswith("failed") else "cyan" if kind in ("tool_call", "exec") else "green"
        return Text.assemble(f"+{ts - start:.1f}s {who} ", (kind, style), f" {text}")

    async def _show(self) -> None:
        view = self.fold.view
        agents = self.query_one("#agents", Horizontal)
        for a in view.agents.values():
            if a.id not in self.panes:
                self.panes[a.id] = AgentPane(a.id, len(self.panes))
                await agents.mount(self.panes[a.id])
            self.panes[a.id].show(f"{a.anon_id} ({a.id})", a.status, self.fold.transcripts.get(a.id, ""))
        self.query_one("#votes-table", Static).update(votes_table(self.fold))
        self.query_one("#tools", TextPane).show_text(Text("\n").join(self.tool_lines))
        body = view.final_answer or view.failure
        if body is not None:
            who = f"{view.agents[view.winner].anon_id} ({view.winner})" if view.winner in view.agents else "-"
            self.query_one("#final").border_title = f"final answer · {view.status} · presented by {who}"
            self.query_one("#final-text", Static).update(Text(body))
        self._show_stages()
        self.drawn = view.events

    def _show_stages(self) -> None:
        running = self.live and "ended" not in self.fold.view.stages
        now = time.time() if running else (self.fold.last_ts or time.time())
        try:
            stages = self.query_one("#stages", Static)
        except NoMatches:  # the timer fired while the app closes
            return
        stages.update(stages_line(self.fold, now))
        self.sub_title = self.fold.view.status + (": q quits" if "ended" in self.fold.view.stages else "")


async def run_live(app: RunApp, follow: Coroutine[Any, Any, None], on_early_quit: Callable[[], None]) -> None:
    """Run ``app`` while ``follow`` (the loop feeding its queue) runs; return when both are done.

    Closing the app (q) before the run ends stops only the view: ``on_early_quit`` is called (to say
    so) and ``follow`` goes on to the run's end. Cancelled (a service crashed), the app is closed first
    so the terminal is given back.
    """
    with _logs_held():
        await _run_both(app, follow, on_early_quit)


async def _run_both(app: RunApp, follow: Coroutine[Any, Any, None], on_early_quit: Callable[[], None]) -> None:
    job = asyncio.ensure_future(follow)
    # A follow that fails closes the app, so its error reaches the terminal instead of a frozen view.
    job.add_done_callback(lambda j: app.exit() if not j.cancelled() and j.exception() else None)
    ui = asyncio.ensure_future(app.run_async())
    try:
        await asyncio.shield(ui)
    except BaseException:
        if not ui.done():
            app.exit()
            await asyncio.wait([ui], timeout=5)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        raise
    if not job.done():
        on_early_quit()
    await job


@contextlib.contextmanager
def _logs_held() -> Iterator[None]:
    """Hold back the log lines bound for the terminal while the app owns it (they would be drawn over
    its screen), and write them once it has given the terminal back."""
    root = logging.getLogger()
    terminal = (sys.stderr, sys.__stderr__)
    tty = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and h.stream in terminal]
    held = logging.handlers.BufferingHandler(capacity=100_000)
    for h in tty:
        root.removeHandler(h)
    root.addHandler(held)
    try:
        yield
    finally:
        root.removeHandler(held)
        for h in tty:
            root.addHandler(h)
            for record in held.buffer:
                if record.levelno >= h.level:
                    h.handle(record)
