"""``massgen fork RUN --at SEQ`` as a user runs it (child processes, the embedded stack under a temp
MASSGEN_HOME, the wire-level OpenAI fake): a fork copies the parent's history up to SEQ and continues
live, with its config changed from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from massgen_es.testing.fake_openai import FakeOpenAI, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")


def massgen(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([MASSGEN, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ})


def events(run_id: str) -> list[dict]:
    result = massgen("replay", run_id, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def parent(tmp_path: Path):
    """A completed two-agent run on the fake: alpha (model ma) answers Paris, beta (mb) Paris, France;
    both vote for agent2 (beta), who presents. Model mc, unused by the parent, answers Lyon and votes
    agent2 too."""
    with FakeOpenAI() as fake:
        fake.default("ma", team_member("Paris", vote_for="agent2"))
        fake.default("mb", team_member("Paris, France", vote_for="agent2"))
        fake.default("mc", team_member("Lyon", vote_for="agent2"))
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": aid, "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
            for aid, m in (("alpha", "ma"), ("beta", "mb"))
        ]}))
        result = massgen("submit", "Capital of France?", "--config", str(cfg), "--json")
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["winner"] == "beta" and out["final_answer"] == "FINAL Paris, France"
        yield fake, out, events(out["run_id"])


def _votes(summary: dict) -> set[tuple[str, str]]:
    return {(v["voter"], v["target_anon"]) for v in summary["votes"]}


def test_a_fork_at_the_last_answer_with_the_same_config_reaches_the_same_decisions(parent) -> None:
    fake, out, log = parent
    answer = max((e for e in log if e["type"] == "answer.posted"), key=lambda e: e["seq"])
    last_answer = answer["seq"]
    # A decision is copied whole: the fork point moves to the end of the answer's decision (the vote turns).
    point = max(e["seq"] for e in log if e["causation_id"] == answer["causation_id"])
    result = massgen("fork", out["run_id"], "--at", str(last_answer), "--json")
    assert result.returncode == 0, result.stderr
    forked = json.loads(result.stdout)
    assert forked["run_id"] != out["run_id"] and forked["status"] == "completed"
    assert forked["winner"] == out["winner"] and forked["final_answer"] == out["final_answer"]
    assert _votes(forked) == _votes(out) == {("alpha", "agent2"), ("beta", "agent2")}
    assert forked["forked_from"] == {"run_id": out["run_id"], "seq": point}
    # Its history up to the fork point is the parent's: same events, times and writers, in order.
    copied = events(forked["run_id"])
    cut = next(i for i, e in enumerate(copied) if e["type"] == "run.forked")
    before = [e for e in log if e["seq"] <= point]
    assert [(e["type"], e["ts"], e["source"], e["event"]) for e in copied[:cut]] == [
        (e["type"], e["ts"], e["source"], {**e["event"], **({"forked_from": out["run_id"]}
                                                           if e["type"] == "run.submitted" else {})})
        for e in before
    ]
    # The core reproduces the fork's decisions, copied and live.
    check = massgen("replay", forked["run_id"], "--check")
    assert check.returncode == 0 and "decisions reproduced" in check.stderr, check.stderr


def test_a_fork_with_another_model_for_one_agent_continues_live_with_it(parent) -> None:
    fake, out, log = parent
    submitted = next(e["seq"] for e in log if e["type"] == "run.submitted")
    before = len(fake.requests("mb"))
    result = massgen("fork", out["run_id"], "--at", str(submitted), "--set", "agents[1].backend.model=mc", "--json")
    assert result.returncode == 0, result.stderr
    forked = json.loads(result.stdout)
    # beta now runs on mc from the start: its answer is mc's, and it presents mc's final answer.
    assert forked["status"] == "completed" and forked["winner"] == "beta"
    assert forked["final_answer"] == "FINAL Lyon" != out["final_answer"]
    assert len(fake.requests("mb")) == before  # the old model is not asked again
    assert fake.requests("mc")
    fork_log = events(forked["run_id"])
    answers = {e["event"]["agent_id"]: e["event"]["content"] for e in fork_log if e["type"] == "answer.posted"}
    assert answers == {"alpha": "Paris", "beta": "Lyon"}
    [mark] = [e for e in fork_log if e["type"] == "run.forked"]
    assert mark["event"]["parent_run_id"] == out["run_id"]
    assert mark["event"]["changes"] == ["agents[1].backend.model=mc"]
    # The fork point moved to the end of the decisions on the submission: both first turns are copies.
    assert mark["event"]["parent_seq"] > submitted
    requested = [e for e in fork_log if e["type"] == "turn.requested" and e["event"]["agent_id"] == "beta"]
    assert requested[0]["event"]["backend"]["model"] == "mb" and requested[0]["seq"] < mark["seq"]
    assert requested[1]["event"]["attempt"] == 2 and requested[1]["event"]["backend"]["model"] == "mc"
    check = massgen("replay", forked["run_id"], "--check")
    assert check.returncode == 0, check.stderr
    # replay and runs name the parent.
    assert f"fork of {out['run_id']}" in massgen("replay", forked["run_id"]).stdout
    rows = [json.loads(line) for line in massgen("runs", "--json").stdout.splitlines()]
    assert {r["run_id"]: r["forked_from"] for r in rows}[forked["run_id"]]["run_id"] == out["run_id"]


def test_bad_fork_inputs_are_clear_errors(parent) -> None:
    fake, out, log = parent
    run_id, last = out["run_id"], log[-1]["seq"]
    first = log[0]["seq"]
    cases = [
        (("nosuchrun", "--at", "1"), "no run 'nosuchrun' in this stack"),
        ((run_id, "--at", str(last + 5)), f"past the end of run {run_id} (its last event is seq {last})"),
        ((run_id, "--at", str(last)), f"run {run_id} ended at seq {last} (run.completed)"),
        ((run_id, "--at", str(first), "--set", "agents[5].backend.model=x"), "`agents[5]` does not exist"),
        ((run_id, "--at", str(first), "--set", "agents[1].backend.modle=x"), "unknown key `agents[1].backend.modle`"),
        ((run_id, "--at", str(first), "--set", "agents[0].id=gamma"), "a fork keeps the parent's agents"),
        ((run_id, "--at", str(first), "--set", "nonsense"), "expected PATH=VALUE"),
        ((run_id, "--at", str(first - 1)), f"--at {first - 1} is before run {run_id}'s submission"),
    ]
    for args, message in cases:
        result = massgen("fork", *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
