"""The Textual terminal UI (``massgen_replay.tui``), driven by Textual's Pilot on the records of a real run:
the services on a real nats-server, the executor in local mode, scripted models on the wire-level
OpenAI fake. Also the command's wiring: ``replay --tui`` and a live ``submit`` on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import Stack, of, team, tool_names, vote
from massgen_es.bus.server import NatsServer
from massgen_es.events import ExecutionCompleted, Record, TextDelta, VoteCast
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member
from massgen_replay.tui import RunApp, stage_progress
from test_cli import MASSGEN, massgen

EXEC_TOOL = "mcp__command_line__execute_command"
LONG = "\n".join(f"line {i:03d} of alpha's presentation, long enough to need scrolling" for i in range(150))
LONG += "\nEND-OF-ALPHA"
REASON_A = "alpha votes agent1: the shortest right answer, with its source checked"
REASON_B = "beta votes agent1 too, because its answer names the city and the country"


def _alpha(body: dict) -> Reply:
    """Runs one command, thinks aloud while answering, votes agent1, presents LONG."""
    tools = tool_names(body)
    if "vote" in tools:
        return vote("agent1", REASON_A)
    if "new_answer" not in tools:  # the presentation (the command-line tools are still offered)
        return Reply(text=LONG)
    if not any(m["role"] == "tool" for m in body["messages"]):
        return Reply(tool_calls=((EXEC_TOOL, {"command": "echo tui-exec-ran"}),))
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
        await pilot.pause()
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
        await pilot.press("home")
        await pilot.pause()
        assert alpha.scroll_y == 0
        assert "END-OF-ALPHA" not in visible(app, alpha)
        await pilot.press("pagedown")
        await pilot.pause()
        assert 0 < alpha.scroll_y < alpha.max_scroll_y
        await pilot.press("end")
        await pilot.pause()
        assert alpha.scroll_y == alpha.max_scroll_y
        assert "END-OF-ALPHA" in visible(app, alpha)
        assert "agent1 (agent-a)" in visible(app, alpha)  # its title
