"""Multi-turn sessions (issue 15 item 5; MassGen spec §1.13), through the whole stack: the ``massgen``
command as a user runs it (``submit --session``, ``chat`` on a pipe, ``runs``/``replay --session``), a
real nats-server, the filesystem MCP server, the official ``openai`` SDK against the wire-level fake.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from massgen_cli.sessions import next_turn
from massgen_es.events import Message, RunSettings, RunSubmitted
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member
from massgen_orchestrator import prompts
from massgen_replay.views import RunView

MASSGEN = str(Path(sys.executable).parent / "massgen")
SESSION_ID = re.compile(r"s-\d{8}-\d{6}-[0-9a-f]{6}")


def massgen(*args: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([MASSGEN, *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def _config(tmp_path: Path, fake: FakeOpenAI, model: str, **backend: object) -> str:
    cfg = tmp_path / f"{model}.yaml"
    cfg.write_text(yaml.safe_dump({"agents": [{"id": "solo", "backend": {
        "type": "chatcompletion", "model": model, "base_url": fake.base_url, **backend}}]}))
    return str(cfg)


def _text(body: dict) -> str:
    return json.dumps(body["messages"])


def _tool_results(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def _planner(body: dict) -> Reply:
    """Turn 1 writes plan.txt into its workspace; turn 2 reads it back (from the workspace it starts
    with) and answers with its content; every turn votes for agent1 and presents its answer."""
    tools = [t["function"]["name"] for t in body.get("tools", [])]
    results = _tool_results(body)
    if "vote" in tools:
        return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "fine"}),))
    if not tools or "new_answer" not in tools:  # the presentation: the agent's own answer, as final
        answer = re.search(r"<agent1> (.*?) <end of agent1>", body["messages"][-1]["content"], re.S)
        return Reply(text=f"FINAL {answer.group(1) if answer else '?'}")
    if "What does the plan say" not in _text(body):  # turn 1
        if not results:
            return Reply(tool_calls=(("mcp__filesystem__write_file", {"path": "plan.txt", "content": "boil water"}),))
        return Reply(tool_calls=(("new_answer", {"content": "I wrote plan.txt"}),))
    if not results:
        return Reply(tool_calls=(("mcp__filesystem__read_text_file", {"path": "plan.txt"}),))
    if len(results) == 1:  # the previous turn's own workspace is a read-only context path
        previous = re.search(r"Context path: (\S+)", body["messages"][0]["content"])
        assert previous, body["messages"][0]["content"]
        return Reply(tool_calls=(("mcp__filesystem__write_file", {"path": f"{previous.group(1)}/plan.txt",
                                                                   "content": "overwritten"}),))
    return Reply(tool_calls=(("new_answer", {"content": f"The plan says: {results[0]}"}),))


def test_a_two_turn_session_whose_second_answer_uses_a_file_the_first_turn_wrote(tmp_path, fake, massgen_home):
    fake.default("planner", _planner)
    cfg = _config(tmp_path, fake, "planner", cwd="ws")
    first = massgen("submit", "Write the plan", "--config", cfg, "--session", "kitchen", "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["session_id"] == "kitchen" and one["final_answer"] == "FINAL I wrote plan.txt"
    asked_before = len(fake.requests())

    second = massgen("submit", "What does the plan say?", "--config", cfg, "--session", "kitchen", "--json")
    assert second.returncode == 0, second.stderr
    two = json.loads(second.stdout)
    assert two["status"] == "completed" and two["final_answer"] == "FINAL The plan says: boil water"
    turn2 = fake.requests()[asked_before]  # the second turn's first LLM call
    user = next(m["content"] for m in turn2["messages"] if m["role"] == "user")
    assert user.startswith("<CONVERSATION_HISTORY>\nUser: Write the plan\nAssistant: FINAL I wrote plan.txt\n")
    assert "<ORIGINAL MESSAGE> What does the plan say? <END OF ORIGINAL MESSAGE>" in user
    assert "multi_turn" in turn2["messages"][0]["content"]
    # The previous winner's workspace: copied into the new one, and read-only at its own path.
    assert f"runs/{one['run_id']}/workspaces/solo" in turn2["messages"][0]["content"]
    assert (massgen_home / "runs" / two["run_id"] / "workspaces" / "solo" / "plan.txt").read_text() == "boil water"
    refused = next(_tool_results(r)[1] for r in fake.requests()[asked_before:] if len(_tool_results(r)) == 2)
    assert refused.startswith("Error:") and "read-only" in refused, refused
    assert (massgen_home / "runs" / one["run_id"] / "workspaces" / "solo" / "plan.txt").read_text() == "boil water"

    listed = massgen("runs", "--session", "kitchen", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["run_id"], r["session_id"], r["question"]) for r in rows] == [
        (one["run_id"], "kitchen", "Write the plan"), (two["run_id"], "kitchen", "What does the plan say?")]

    shown = massgen("replay", "--session", "kitchen")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert text.index("turn 1") < text.index("Write the plan") < text.index("FINAL I wrote plan.txt") \
        < text.index("turn 2") < text.index("What does the plan say?") < text.index("FINAL The plan says: boil water")
    assert f"run {one['run_id']}" in text and "winner agent1 (solo)" in text
    single = " ".join(massgen("replay", two["run_id"]).stdout.split())
    assert "session kitchen (`massgen replay --session kitchen` shows every turn)" in single
    events = [json.loads(line) for line in massgen("replay", two["run_id"], "--json").stdout.splitlines()]
    submitted = events[0]["event"]
    assert submitted["session_id"] == "kitchen" and submitted["workspace_from"] == one["run_id"]
    assert [t["question"] for t in submitted["previous_turns"]] == ["Write the plan"]
    # A turn replays from its own events: the orchestrator core re-decides it with its history.
    check = massgen("replay", two["run_id"], "--check")
    assert check.returncode == 0 and "decisions reproduced" in check.stderr


def test_runs_and_replay_of_an_unknown_session_name_the_fix():
    for command in (("runs", "--session", "nope"), ("replay", "--session", "nope")):
        result = massgen(*command)
        assert result.returncode == 1
        assert "no runs in session 'nope'" in result.stderr and "massgen runs" in result.stderr


def test_chat_on_a_pipe_asks_each_line_as_the_next_turn_with_slash_commands(tmp_path, fake):
    fake.default("m", lambda body: team_member("twelve" if "And times 3" in _text(body) else "four")(body))
    cfg = _config(tmp_path, fake, "m")
    result = massgen("chat", "--config", cfg, stdin="What is 2+2?\n/status\n/help\nAnd times 3?\n/bogus\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("final answer · completed") == 2
    assert "FINAL four" in result.stdout and "FINAL twelve" in result.stdout
    errors = " ".join(result.stderr.split())
    session = SESSION_ID.search(errors)
    assert session, errors
    assert "1 turn(s) in this chat" in errors and "/reset, /clear" in errors and "unknown command /bogus" in errors
    last = fake.requests()[-1]  # the second turn's presentation carries the first turn
    assert "User: What is 2+2?\\nAssistant: FINAL four" in _text(last)
    listed = massgen("runs", "--session", session.group(), "--json")
    assert [json.loads(line)["question"] for line in listed.stdout.splitlines()] == ["What is 2+2?", "And times 3?"]


def test_chat_ctrl_c_cancels_the_turn_and_returns_to_the_prompt(tmp_path, fake):
    gate = threading.Event()
    fake.default("slow", lambda body: (gate.wait(120), team_member("late")(body))[1])
    cfg = _config(tmp_path, fake, "slow")
    proc = subprocess.Popen([MASSGEN, "chat", "--config", cfg, "--session", "ctrl-c"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []  # both pipes read as they come: a full pipe would block chat
    readers = [threading.Thread(target=lambda: err.extend(proc.stderr or ()), daemon=True),
               threading.Thread(target=lambda: list(proc.stdout or ()), daemon=True)]
    for r in readers:
        r.start()
    try:
        assert proc.stdin is not None
        proc.stdin.write("Think hard\n")
        proc.stdin.flush()
        fake.wait_for_requests("slow", 1, timeout_s=90)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.stdin.write("/status\n/quit\n")
        proc.stdin.close()
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its threads' stacks, into its stderr
            time.sleep(2)
            proc.kill()
            readers[0].join(10)
            pytest.fail("chat still ran 90 s after /quit; its stderr and threads:\n" + "".join(err))
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
    readers[0].join(10)
    stderr = " ".join("".join(err).split())
    assert code == 0, stderr
    assert "turn cancelled" in stderr and "1 turn(s)" not in stderr  # back at the prompt, nothing counted
    listed = massgen("runs", "--session", "ctrl-c", "--json")
    assert [json.loads(line)["status"] for line in listed.stdout.splitlines()] == ["cancelled"]


def _view(run_id: str, status: str, question: str, answer: str | None, winner: str | None) -> RunView:
    return RunView(run_id, question=question, status=status, final_answer=answer, winner=winner)


def test_next_turn_carries_only_answered_turns_and_the_last_winners_workspace():
    base = RunSubmitted(question="q3", agents=(), settings=RunSettings())
    turns = [_view("r1", "completed", "q1", "a1", "alpha"), _view("r2", "cancelled", "q2", None, None),
             _view("r3", "timed_out", "q2 again", "a2", "beta"), _view("r4", "failed", "q", None, None)]
    nxt = next_turn(base, "s", turns)
    assert nxt.session_id == "s" and nxt.question == "q3"
    assert [(t.run_id, t.question, t.answer, t.winner) for t in nxt.previous_turns] == [
        ("r1", "q1", "a1", "alpha"), ("r3", "q2 again", "a2", "beta")]
    assert nxt.workspace_from == "r3"


def test_history_goes_before_the_original_message_or_as_earlier_chat_messages():
    msgs = prompts.coordination_messages("", "lenient", "lenient", "q2", [])
    massgen_style = prompts.with_history(msgs, [("q1", "a1")])
    assert "<multi_turn" in massgen_style[0].content
    assert massgen_style[1].content.startswith(
        "<CONVERSATION_HISTORY>\nUser: q1\nAssistant: a1\n<END OF CONVERSATION_HISTORY>\n<ORIGINAL MESSAGE> q2")
    compact = prompts.with_history(prompts.coordination_messages("", "lenient", "lenient", "q2", [], "compact"),
                                   [("q1", "a1")], "compact")
    assert compact == (Message(role="user", content="q1"), Message(role="assistant", content="a1"),
                       Message(role="user", content="q2"))
    assert prompts.with_history(msgs, []) == msgs
