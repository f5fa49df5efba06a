"""The Textual terminal UI (``massgen_replay.tui``), driven by Textual's Pilot on the records of a real run:
the services on a real nats-server, the executor in local mode, scripted models on the wire-level
OpenAI fake. Also the command's wiring: ``replay --tui`` and a live ``submit`` on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from test_cli import MASSGEN, massgen

from harness import Stack, of, team, tool_names, vote
from massgen_es.bus.server import NatsServer
from massgen_es.events import ExecutionCompleted, Record, TextDelta, VoteCast
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member
from massgen_replay.tui import RunApp, stage_progress

EXEC_TOOL = "mcp__command_line__execute_command"
MCP_TOOL = "mcp__filesystem__list_allowed_directories"
LONG = "\n".join(f"line {i:03d} of alpha's presentation, long enough to need scrolling" for i in range(150))
LONG += "\nEND-OF-ALPHA"
REASON_A = "alpha votes agent1: the shortest right answer, with its source checked"
REASON_B = "beta votes agent1 too, because its answer names the city and the country"


def _alpha(body: dict) -> Reply:
    """Runs one command, calls one MCP tool, thinks aloud while answering, votes agent1, presents LONG."""
    tools = tool_names(body)
    if "vote" in tools:
        return vote("agent1", REASON_A)
    if "new_answer" not in tools:  # the presentation (the command-line tools are still offered)
        return Reply(text=LONG)
    results = sum(m["role"] == "tool" for m in body["messages"])
    if results == 0:
        return Reply(tool_calls=((EXEC_TOOL, {"command": "echo tui-exec-ran"}),))
    if results == 1:
        return Reply(tool_calls=((MCP_TOOL, {}),))
    return Reply(text="Thinking: the capital is Paris.", tool_calls=(("new_answer", {"content": "Paris"}),))


def _beta(body: dict) -> Reply:
    return vote("agent1", REASON_B) if "vote" in tool_names(body) else \
        Reply(tool_calls=(("new_answer", {"content": "Paris, France"}),))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Record]]:
    """One real run's records: alpha runs a command, both answer, both vote agent1 (alpha), alpha presents."""
    home = tmp_path_factory.mktemp("tui-home")

    async def go(url: str, fake: FakeOpenAI) -> tuple[str, list[Record]]:
        cfg, (ma, mb) = team(fake, 2)
        cfg["agents"][0]["backend"].update({"cwd": "ws", "enable_mcp_command_line": True})
        fake.default(ma, _alpha)
        fake.default(mb, _beta)
        async with Stack(url) as stack:
            stack.orchestrator()
            stack.worker()
            stack.broker(home)
            stack.executor(home)
            run_id = await stack.submit(cfg)
            return run_id, await stack.wait_done(run_id, 90)

    with pytest.MonkeyPatch.context() as mp, NatsServer(home / "nats") as server, FakeOpenAI() as fake:
        mp.setenv("MASSGEN_HOME", str(home))
        return asyncio.run(go(server.url, fake))


async def drawn(app: RunApp, pilot, n: int) -> None:
    """Wait until the app has folded and drawn ``n`` records (a loaded machine may take a while)."""
    deadline = time.monotonic() + 30
    while app.drawn < n:
        assert time.monotonic() < deadline, f"drew {app.drawn} of {n} records"
        await pilot.pause(0.05)
    await pilot.pause()


async def scroll(pilot, key: str) -> None:
    """Press a scrolling key and wait for its scroll to finish (Textual animates it)."""
    await pilot.press(key)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def visible(app: RunApp, widget) -> str:
    """The text of ``widget``'s region on the app's screen, as a terminal would show it."""
    strips = app.screen._compositor.render_strips()
    r = widget.region
    return "\n".join(strips[y].crop(r.x, r.right).text for y in range(r.y, r.bottom))


def streamed(records: list[Record], agent_id: str) -> list[str]:
    """The text ``agent_id`` streamed in each of its attempts, in log order."""
    attempts: dict[tuple[str, int], str] = {}
    for r in records:
        ev = r.event
        if isinstance(ev, TextDelta) and ev.agent_id == agent_id:
            attempts[ev.turn_id, ev.attempt] = attempts.get((ev.turn_id, ev.attempt), "") + ev.text
    return list(attempts.values())


async def test_each_agent_has_a_pane_with_its_full_streamed_text_and_scrolling_reaches_the_end(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(120, 40)) as pilot:
        await drawn(app, pilot, len(records))
        assert set(app.panes) == {"agent-a", "agent-b"}
        alpha = app.pane("agent-a")
        # Every attempt's streamed text is in the pane whole, in order, under its own header.
        attempts = streamed(records, "agent-a")
        assert len(attempts) >= 2 and attempts[-1] == LONG
        at = 0
        for text in attempts:
            at = alpha.text.index(text, at) + len(text)
        assert alpha.text.count("── presentation, attempt 1 ──") == 1
        assert alpha.max_scroll_y > 0  # longer than the pane
        alpha.focus()
        await scroll(pilot, "home")
        assert alpha.scroll_y == 0
        assert "END-OF-ALPHA" not in visible(app, alpha)
        await scroll(pilot, "pagedown")
        assert 0 < alpha.scroll_y < alpha.max_scroll_y
        await scroll(pilot, "end")
        assert alpha.scroll_y == alpha.max_scroll_y
        assert "END-OF-ALPHA" in visible(app, alpha)
        assert "agent1 (agent-a)" in visible(app, alpha)  # its title
        beta_turns = [r.event.turn_id for r in records if r.type == "turn.started" and r.event.agent_id == "agent-b"]
        assert len(beta_turns) >= 2  # beta streamed no text (tool calls only): its turns' headers still show
        assert all(f"── turn {t}, attempt 1 ──" in app.pane("agent-b").text for t in beta_turns)


def rendered(renderable, width: int = 160) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_the_votes_table_shows_who_answered_and_who_voted_for_whom_with_reasons(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(160, 50)) as pilot:
        await drawn(app, pilot, len(records))
        table = " ".join(rendered(app.query_one("#votes-table").content).replace("│", " ").split())
        assert "agent1 (agent-a) agent1.1 agent1 (agent-a)" in table  # alpha answered agent1.1, voted agent1
        assert "agent2 (agent-b) agent2.1 agent1 (agent-a)" in table
        assert REASON_A in table and REASON_B in table  # reasons in full, not previews
        assert "tally agent1: 2" in table
        assert {(v.voter_id, v.reason) for v in of(records, VoteCast)} == {("agent-b", REASON_B), ("agent-a", REASON_A)}
        assert "alpha votes agent1" in visible(app, app.query_one("#votes"))


async def test_tool_calls_and_executions_appear_in_the_tools_pane(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(160, 50)) as pilot:
        await drawn(app, pilot, len(records))
        lines = app.query_one("#tools").text.splitlines()
        [done, *_] = of(records, ExecutionCompleted)
        assert done.stdout == "tui-exec-ran\n"
        assert any("agent1 exec $ echo tui-exec-ran" in line for line in lines), lines
        assert any("agent1 exec_result exit 0" in line and "tui-exec-ran" in line for line in lines), lines
        assert any("agent1 tools filesystem: " in line and " tools (v1)" in line for line in lines), lines
        assert any("agent1 tool_call filesystem.list_allowed_directories({})" in line for line in lines), lines
        assert any("agent1 tool_result filesystem.list_allowed_directories in " in line for line in lines), lines
        assert "echo tui-exec-ran" in visible(app, app.query_one("#tools"))


async def test_stage_progress_shows_each_stage_with_its_seconds(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(160, 50)) as pilot:
        await drawn(app, pilot, len(records))
        stages = stage_progress(app.fold.view, time.time())
        assert [(name, state) for name, state, _ in stages] == [
            ("initialisation", "done"), ("coordination", "done"), ("presentation", "done")]
        view = app.fold.view
        assert sum(secs for _, _, secs in stages) == pytest.approx(view.stages["ended"] - view.stages["submitted"])
        header = visible(app, app.query_one("#stages"))
        for name, _, secs in stages:
            assert f"✓ {name} {secs:.1f}s" in header
        assert "What is the capital of France?" in header
        assert f"massgen · run {run_id} — completed: q quits" in visible(app, app.query_one("Header"))


async def test_the_final_answer_shows_whole_with_its_presenter(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(160, 50)) as pilot:
        await drawn(app, pilot, len(records))
        final = app.query_one("#final")
        assert app.query_one("#final-text").content.plain == LONG
        assert "final answer · completed · presented by agent1 (agent-a)" in visible(app, final)
        final.focus()
        await scroll(pilot, "end")
        assert "END-OF-ALPHA" in visible(app, final)


async def test_records_arriving_one_by_one_update_the_panes_live(recorded):
    run_id, records = recorded
    queue: asyncio.Queue[Record] = asyncio.Queue()
    app = RunApp(run_id, queue, live=True)
    first_answer = next(i for i, r in enumerate(records) if r.type == "answer.posted")
    first_delta = next(i for i, r in enumerate(records) if isinstance(r.event, TextDelta))
    answers = [r.event for r in records if r.type == "answer.posted"]

    def at_first_answer() -> None:
        assert set(app.panes) == {"agent-a", "agent-b"} and app.sub_title == "running"
        table = rendered(app.query_one("#votes-table").content)
        assert answers[0].label in table and answers[1].label not in table
        header = visible(app, app.query_one("#stages"))
        assert "✓ initialisation" in header and "● coordination" in header and "○ presentation" in header
        assert app.query_one("#final-text").content.plain == "(no final answer yet)"

    def at_first_delta() -> None:
        delta = records[first_delta].event
        assert app.pane(delta.agent_id).text.endswith(delta.text)  # mid-turn: the text so far, on screen
        assert delta.text in visible(app, app.pane(delta.agent_id))

    checks = {first_answer: at_first_answer, first_delta: at_first_delta}
    async with app.run_test(size=(160, 50)) as pilot:
        for i, r in enumerate(records):
            queue.put_nowait(r)
            await drawn(app, pilot, i + 1)
            if i in checks:
                checks.pop(i)()
        assert not checks
        assert app.pane("agent-a").text.endswith(LONG)
        assert app.query_one("#final-text").content.plain == LONG
        assert app.sub_title == "completed: q quits"
        await pilot.press("q")
    assert app.return_code == 0


async def test_tab_and_arrows_move_between_the_panes(recorded):
    run_id, records = recorded
    app = RunApp.replay(run_id, records)
    async with app.run_test(size=(160, 50)) as pilot:
        await drawn(app, pilot, len(records))
        alpha, beta = app.pane("agent-a"), app.pane("agent-b")
        alpha.focus()
        await pilot.press("right")
        assert app.focused is beta
        await pilot.press("right")
        assert app.focused is app.query_one("#votes")
        await pilot.press("left", "left")
        assert app.focused is alpha
        await pilot.press("tab")
        assert app.focused is beta
        await pilot.press("shift+tab")
        assert app.focused is alpha


# ---------------------------------------------------------------- the command, on a pseudo-terminal

ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[@-Z\\-_])")


class Terminal:
    """``massgen ARGS`` on a 140x45 pseudo-terminal (a TTY on stdin, stdout and stderr, as a user's)."""

    def __init__(self, *args: str, **env: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 140, 0, 0))
        self.fd, self.shown = master, b""
        self.proc = subprocess.Popen([MASSGEN, *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm-256color", **env})
        os.close(slave)

    def text(self) -> str:
        """Everything shown so far, escape sequences left out."""
        return ANSI.sub(b"", self.shown).decode(errors="replace")

    def read(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if ready:
            try:
                self.shown += os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                time.sleep(timeout_s)

    def wait_for(self, *texts: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(t in self.text() for t in texts):
            assert time.monotonic() < deadline and self.proc.poll() is None, \
                f"never shown: {[t for t in texts if t not in self.text()]}\n{self.text()[-3000:]}"
            self.read(0.2)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.2)
        self.read(0.2)
        return self.proc.wait(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


def tui_team(tmp_path: Path, fake: FakeOpenAI, delay_s: float = 0.0) -> Path:
    """Two agents on the fake, shown by the Textual app."""
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump({"ui": {"display_type": "textual_terminal"}, "agents": [
        {"id": aid, "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
        for aid, m in (("alpha", "ma"), ("beta", "mb"))]}))

    def slow(text: str):
        member = team_member(text)
        return lambda body: dataclasses.replace(member(body), delay_s=delay_s)

    fake.default("ma", slow("Paris"))
    fake.default("mb", slow("Paris, France"))
    return cfg


def test_submit_shows_the_textual_app_live_then_prints_the_final_answer_on_q(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        term = Terminal("submit", "Capital of France?", "--config", str(tui_team(tmp_path, fake)))
        try:
            term.wait_for("agent1 (alpha)", "agent2 (beta)", "answers and votes", "FINAL Paris", "completed: q quits")
            term.type(b"q")
            code = term.exit_code()
        finally:
            term.close()
    assert code == 0, term.text()[-3000:]
    after = term.text().rsplit("completed: q quits", 1)[-1]  # printed once the app gave the terminal back
    assert "final answer · completed · presented by agent1 (alpha)" in after and "FINAL Paris" in after


def test_q_closes_the_live_view_and_the_run_goes_on_to_its_end(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        term = Terminal("submit", "Capital of France?", "--config", str(tui_team(tmp_path, fake, delay_s=1.5)))
        try:
            term.wait_for("agent1 (alpha)", "thinking")
            term.type(b"q")
            term.wait_for("view closed; run ", "goes on in the embedded stack")
            code = term.exit_code()
        finally:
            term.close()
    assert code == 0, term.text()[-3000:]
    assert "final answer · completed · presented by agent1 (alpha)" in term.text()


def test_submit_on_a_pipe_keeps_the_rich_view(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        result = massgen("submit", "Capital of France?", "--config", str(tui_team(tmp_path, fake)))
    assert result.returncode == 0, result.stderr
    assert "new_answer" in result.stderr and "consensus" in result.stderr  # the Rich progress lines
    assert "\x1b[?1049h" not in result.stdout + result.stderr  # no full-screen app took the terminal
    assert "final answer · completed · presented by agent1 (alpha)" in result.stdout


def test_replay_tui_builds_the_app_from_the_log_and_a_pipe_gets_the_report(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        result = massgen("submit", "Capital of France?", "--config", str(tui_team(tmp_path, fake)), "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    term = Terminal("replay", run_id, "--tui")
    try:
        term.wait_for(f"massgen · run {run_id}", "agent1 (alpha)", "agent2 (beta)", "FINAL Paris", "✓ presentation")
        term.type(b"q")
        code = term.exit_code()
    finally:
        term.close()
    assert code == 0 and b"\x1b[?1049h" in term.shown  # the app took the whole screen
    piped = massgen("replay", run_id, "--tui")
    assert piped.returncode == 0
    assert "--tui needs a terminal on stdin and stdout; printing the report instead" in piped.stderr
    assert "final votes" in piped.stdout and "FINAL Paris" in piped.stdout


def test_log_lines_are_held_while_the_app_owns_the_terminal_then_written(capsys) -> None:
    import logging

    from massgen_replay.tui import _logs_held

    handler = logging.StreamHandler(sys.stderr)  # as `massgen`'s main sets it up (sys.stderr is captured here)
    logging.getLogger().addHandler(handler)
    try:
        with _logs_held():
            logging.getLogger("massgen.test").warning("held back while the app draws")
            assert "held back" not in capsys.readouterr().err
        assert "held back while the app draws" in capsys.readouterr().err
    finally:
        logging.getLogger().removeHandler(handler)


def test_the_config_accepts_textual_terminal_and_names_the_allowed_displays_otherwise() -> None:
    from massgen_es.config import parse_config
    from massgen_es.errors import ConfigError

    agents = [{"id": "a", "backend": {"type": "local"}}]
    assert parse_config({"ui": {"display_type": "textual_terminal"}, "agents": agents}).ui.display_type == \
        "textual_terminal"
    with pytest.raises(ConfigError, match="allowed: rich_terminal, textual_terminal, simple, silent"):
        parse_config({"ui": {"display_type": "textual"}, "agents": agents})
