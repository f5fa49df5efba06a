"""Planning mode, tool rules and human approval (issue 15 items 1-3): the rules of
``massgen_es.tool_safety``, then whole runs on a real nats-server with the services in-process, the
SDK-built MCP test server over stdio, scripted models through the real ``openai`` SDK, and ``massgen
approve``/``deny`` run as a second process while the run waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_mcp_broker import lines, mcp_team, script, tool_server

from harness import Stack, of, tool_names
from massgen_es import tool_safety
from massgen_es.errors import ConfigError
from massgen_es.events import (
    AnswerPosted,
    ApprovalDecided,
    ApprovalRequested,
    ExecutionFailed,
    RunCompleted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolClassified,
    ToolRule,
    TurnRequested,
)
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import Reply
from massgen_orchestrator.prompts import PLANNING_MODE_INSTRUCTION
from massgen_replay.views import RunView

MASSGEN = str(Path(sys.executable).parent / "massgen")

# ---------------------------------------------------------------- the rules


def test_the_first_matching_rule_decides_and_names_say_the_rest():
    rules = (ToolRule(tool="github.*", policy="ask", rationale="pushes code"),
             ToolRule(tool="*.delete_*", safety="reversible", rationale="a trash bin"),
             ToolRule(tool="github.create_issue", policy="deny"))
    assert tool_safety.policy(rules, "github", "create_issue") == ("ask", "pushes code")
    assert tool_safety.policy(rules, "slack", "post") == ("allow", "")
    assert tool_safety.classify(rules, "drive", "delete_file") == ("reversible", "a trash bin")
    assert tool_safety.classify((), "slack", "send_message")[0] == "irreversible"
    assert tool_safety.classify((), "search", "list_items")[0] == "reversible"
    assert tool_safety.classify((), "filesystem", "write_file")[0] == "reversible"  # the agent's own workspace


def test_override_files_come_workspace_first_then_user_and_a_bad_one_names_itself(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    (work / ".massgen").mkdir(parents=True)
    home.mkdir()
    (work / ".massgen" / "tool_safety.yaml").write_text("rules: [{tool: 'a.*', policy: deny}]")
    (home / "tool_safety.yaml").write_text("rules: [{tool: 'a.*', policy: allow}, {tool: 'b.x', policy: ask}]")
    rules = tool_safety.override_rules(home, work)
    assert [r.tool for r in rules] == ["a.*", "a.*", "b.x"]
    assert tool_safety.policy(rules, "a", "y")[0] == "deny"
    (home / "tool_safety.yaml").write_text("rules: [{tool: 'a.*', policy: maybe}]")
    with pytest.raises(ConfigError, match="tool_safety.yaml"):
        tool_safety.override_rules(home, work)


# ---------------------------------------------------------------- planning mode


async def test_planning_mode_runs_no_irreversible_call_before_the_presentation(fresh_nats, fake, tmp_path,
                                                                             massgen_home):
    send = lambda text: (("mcp__t__send_message", {"text": text}),)  # noqa: E731
    handlers = [script(send("coordinating"), present=(send("presented"),)), script()]  # different answers
    cfg = mcp_team(fake, 2, handlers, mcp_servers=[tool_server(tmp_path)])
    cfg["orchestrator"] = {"coordination": {"enable_planning_mode": True}}
    async with Stack(fresh_nats.url) as stack:
        run_id = await _serve(stack, massgen_home).submit(cfg)
        records = await stack.wait_done(run_id, 60)
    assert of(records, RunCompleted)
    assert lines(tmp_path / "calls") == ["send_message:presented"]  # the world saw only the winner's call
    blocked = of(records, ToolCallFailed)
    assert len(blocked) == 1 and blocked[0].failure.type == "PlanningModeBlocked"
    assert "blocked during coordination (planning mode active" in blocked[0].failure.message
    [ran] = of(records, ToolCallCompleted)
    requested = {r.id: r.event for r in records if r.type == "tool.call_requested"}
    by_call = {e.call_id: e for e in requested.values()}
    assert by_call[ran.call_id].kind == "presentation"
    turns = of(records, TurnRequested)
    assert all(t.planning_mode and PLANNING_MODE_INSTRUCTION in t.messages[0].content
               for t in turns if t.kind == "coordination")
    assert not any(t.planning_mode for t in turns if t.kind == "presentation")


async def test_planning_mode_holds_back_commands_during_coordination(fresh_nats, fake, tmp_path, massgen_home):
    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if "vote" in tools:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "r"}),))
        if "new_answer" in tools and not results:
            return Reply(tool_calls=(("mcp__command_line__execute_command", {"command": "touch made-it"}),))
        if "new_answer" in tools:
            return Reply(tool_calls=(("new_answer", {"content": "plan: " + results[-1]}),))
        return Reply(text="FINAL")

    cfg = mcp_team(fake, 1, [handle], cwd="ws", enable_mcp_command_line=True,
                   command_line_execution_mode="local_unisolated")
    cfg["orchestrator"] = {"coordination": {"enable_planning_mode": True}}
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        stack.broker(massgen_home)
        stack.executor(massgen_home)
        run_id = await stack.submit(cfg)
        records = await stack.wait_done(run_id, 60)
    [refused] = of(records, ExecutionFailed)
    assert refused.failure.type == "PlanningModeBlocked"
    assert not list(massgen_home.rglob("made-it"))
    assert "execute_command is not run during coordination" in of(records, AnswerPosted)[0].content


# ---------------------------------------------------------------- approval


def _ask_team(fake, tmp_path: Path, **safety) -> dict:
    """Agent a calls t.send_message (marked ask) while agent b answers at once; b's answer wins."""
    handlers = [script((("mcp__t__send_message", {"text": "hello"}),)), script()]
    cfg = mcp_team(fake, 2, handlers, mcp_servers=[tool_server(tmp_path)])
    cfg["tool_safety"] = {"rules": [{"tool": "t.send_message", "policy": "ask", "rationale": "posts publicly"}],
                          **safety}
    return cfg


async def _waiting(stack: Stack, run_id: str) -> ApprovalRequested:
    found: list[ApprovalRequested] = []

    async def asked() -> bool:
        found[:] = of(await stack.log.read(run_id), ApprovalRequested)
        return bool(found)

    await eventually(asked, 60, "an approval request")
    return found[0]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASSGEN_NATS_URL": stack.url, "COLUMNS": "400"}  # the report's lines unwrapped
    return subprocess.run([MASSGEN, *args], capture_output=True, text=True, timeout=60, env=env)


def _serve(stack: Stack, home: Path) -> Stack:
    stack.orchestrator()
    stack.worker()
    stack.broker(home)
    return stack


async def test_a_call_marked_ask_runs_once_a_second_process_approves_it(fresh_nats, fake, tmp_path, massgen_home):
    async with Stack(fresh_nats.url) as stack:
        run_id = await _serve(stack, massgen_home).submit(_ask_team(fake, tmp_path))
        asked = await _waiting(stack, run_id)
        assert asked.rationale == "posts publicly" and json.loads(asked.arguments) == {"text": "hello"}
        await eventually(lambda: _answered(stack, run_id), 60, "the other agent's answer while one waits")
        assert lines(tmp_path / "calls") == []  # nothing sent before the decision
        listed = await asyncio.to_thread(_cli, stack, "approve", run_id)
        assert asked.call_id in listed.stdout and "t.send_message" in listed.stdout
        done = await asyncio.to_thread(_cli, stack, "approve", run_id, asked.call_id)
        assert done.returncode == 0, done.stderr
        records = await stack.wait_done(run_id, 60)
    [decided] = of(records, ApprovalDecided)
    assert decided.approved and decided.by.startswith("massgen approve by ")
    assert lines(tmp_path / "calls") == ["send_message:hello"]
    assert of(records, ToolCallCompleted) and of(records, RunCompleted)
    again = await asyncio.to_thread(_cli, stack, "deny", run_id, asked.call_id)
    assert again.returncode == 1 and "already been decided" in again.stderr
    shown = await asyncio.to_thread(_cli, stack, "replay", run_id)
    assert "approved by massgen approve by" in shown.stdout, shown.stdout


async def _answered(stack: Stack, run_id: str) -> bool:
    return bool(of(await stack.log.read(run_id), AnswerPosted))


async def test_a_denied_call_is_not_made_and_the_agent_reads_the_reason(fresh_nats, fake, tmp_path, massgen_home):
    async with Stack(fresh_nats.url) as stack:
        run_id = await _serve(stack, massgen_home).submit(_ask_team(fake, tmp_path))
        asked = await _waiting(stack, run_id)
        denied = await asyncio.to_thread(_cli, stack, "deny", run_id, asked.call_id, "--reason", "not in public")
        assert denied.returncode == 0, denied.stderr
        records = await stack.wait_done(run_id, 60)
    [failed] = of(records, ToolCallFailed)
    assert failed.failure.type == "ApprovalDenied" and "not in public" in failed.failure.message
    assert lines(tmp_path / "calls") == []
    assert any("not in public" in a.content for a in of(records, AnswerPosted))


async def test_nobody_answering_in_time_denies_the_call(fresh_nats, fake, tmp_path, massgen_home):
    async with Stack(fresh_nats.url) as stack:
        run_id = await _serve(stack, massgen_home).submit(_ask_team(fake, tmp_path, approval_timeout_seconds=1))
        records = await stack.wait_done(run_id, 60)
    [decided] = of(records, ApprovalDecided)
    assert not decided.approved and decided.by == "timeout after 1 s"
    assert of(records, ToolCallFailed)[0].failure.type == "ApprovalDenied"
    assert lines(tmp_path / "calls") == []


# ---------------------------------------------------------------- review


def test_review_lists_each_tool_and_a_decision_set_is_stored_and_reused(tmp_path, massgen_home):
    cfg = tmp_path / "team.yaml"
    cfg.write_text(json.dumps({"agents": [{"id": "a", "backend": {
        "type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1", "enable_mcp_command_line": True,
        "cwd": "ws", "mcp_servers": [tool_server(tmp_path)]}}]}))
    env = {**os.environ, "COLUMNS": "400"}
    stored = subprocess.run([MASSGEN, "tools", "set", "t.echo", "--safety", "irreversible", "--policy", "ask",
                             "--rationale", "echoes to a channel"], capture_output=True, text=True, timeout=60, env=env)
    assert stored.returncode == 0, stored.stderr
    assert (massgen_home / "tool_safety.yaml").exists()
    shown = subprocess.run([MASSGEN, "tools", "review", "--config", str(cfg), "--json"], capture_output=True,
                           text=True, timeout=180, env=env)
    assert shown.returncode == 0, shown.stderr
    rows = {r["tool"]: r for r in map(json.loads, shown.stdout.splitlines())}
    assert rows["t.echo"] == {"tool": "t.echo", "safety": "irreversible", "rationale": "echoes to a channel",
                              "source": "rule", "policy": "ask"}
    assert (rows["t.send_message"]["safety"], rows["t.send_message"]["source"]) == ("irreversible", "name")
    assert rows["filesystem.write_file"]["safety"] == "reversible"
    assert rows["execute_command"]["safety"] == "irreversible"
    # The stored decision is what the next run records, after the config's own rules.
    from massgen_es.config import parse_config, run_submitted

    submitted = run_submitted("q", parse_config(json.loads(cfg.read_text())),
                              overrides=tool_safety.override_rules(massgen_home, tmp_path))
    assert tool_safety.policy(submitted.settings.tool_rules, "t", "echo") == ("ask", "echoes to a channel")


# ---------------------------------------------------------------- LLM classification


async def test_a_planning_run_has_the_agents_model_classify_each_tool_once(fresh_nats, fake, tmp_path, massgen_home):
    """echo's name says nothing irreversible; the model says it broadcasts: planning mode holds it back,
    the classification is recorded and stored, and the next run asks the model no more."""
    asked: list[str] = []

    def classifying(inner):
        def handle(body: dict) -> Reply:
            if tool_names(body) == ["classify_tool"]:
                tool = body["messages"][-1]["content"].split("`")[1]
                asked.append(tool)
                return Reply(tool_calls=(("classify_tool", {"irreversible": tool == "echo",
                                                            "rationale": f"{tool}: the model's view"}),))
            return inner(body)
        return handle

    echo = (("mcp__t__echo", {"text": "hi"}),)
    cfg = mcp_team(fake, 1, [classifying(script(echo, present=(echo,)))], mcp_servers=[tool_server(tmp_path)])
    cfg["orchestrator"] = {"coordination": {"enable_planning_mode": True}}
    async with Stack(fresh_nats.url) as stack:
        _serve(stack, massgen_home)
        first = await stack.wait_done(await stack.submit(cfg), 60)
        tools_asked = sorted(asked)
        second = await stack.wait_done(await stack.submit(cfg), 60)
    classified = {(e.tool, e.safety) for e in of(first, ToolClassified)}
    assert ("echo", "irreversible") in classified and ("slow", "reversible") in classified
    assert tools_asked == sorted({t for t, _ in classified}) and "echo" in tools_asked
    [blocked] = of(first, ToolCallFailed)
    assert blocked.failure.type == "PlanningModeBlocked" and "echo: the model's view" in blocked.failure.message
    assert lines(tmp_path / "calls") == ["echo", "echo"]  # only the two presentations called it
    assert sorted(asked) == tools_asked and not of(second, ToolClassified)  # stored: asked once
    view = RunView(first[0].run_id)
    for r in first:
        view.apply(r)
    assert any(e.kind == "classified" and "t.echo: irreversible" in e.text for e in view.timeline)


def test_the_live_view_of_submit_asks_inline_on_a_terminal(fake, tmp_path, massgen_home):
    """submit on a terminal (a pseudo-terminal here) prints the waiting call and asks `run it?`; the
    answer typed there is the decision."""
    cfg = _ask_team(fake, tmp_path)
    path = tmp_path / "team.yaml"
    path.write_text(json.dumps(cfg))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([MASSGEN, "submit", "Capital of France?", "--config", str(path)], stdin=secondary,
                            stdout=secondary, stderr=secondary, env={**os.environ, "COLUMNS": "200"})
    os.close(secondary)
    seen, answered = b"", False
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.2)[0]:
                try:
                    seen += os.read(primary, 65536)
                except OSError:
                    break
            if not answered and b"run it?" in seen:
                os.write(primary, b"y\n")
                answered = True
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    text = seen.decode(errors="replace")
    assert answered and "approval needed" in text and "t.send_message" in text, text[-3000:]
    assert proc.returncode == 0, text[-3000:]
    assert lines(tmp_path / "calls") == ["send_message:hello"]
