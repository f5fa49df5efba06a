"""``massgen fork RUN --at SEQ`` as a user runs it (child processes, the embedded stack under a temp
MASSGEN_HOME, the wire-level OpenAI fake): a fork copies the parent's history up to SEQ and continues
live, with its config changed from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from massgen_cli import fork as fork_mod
from massgen_es.bus import Draft
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import (
    Record,
    RunForked,
    RunSubmitted,
    Source,
    TimerFired,
    ToolCall,
    TurnRequested,
    TurnResponded,
    decode,
    encode,
)
from massgen_es.testing.fake_openai import FakeOpenAI, team_member
from massgen_orchestrator.decide import step, verify
from massgen_orchestrator.state import RunState

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


def test_a_fork_of_a_fork_keeps_the_first_forks_change_and_applies_its_own(parent) -> None:
    fake, out, log = parent
    answer = max(e["seq"] for e in log if e["type"] == "answer.posted")
    first = json.loads(massgen("fork", out["run_id"], "--at", str(answer), "--json").stdout)
    first_log = events(first["run_id"])
    mark = next(e["seq"] for e in first_log if e["type"] == "run.forked")
    result = massgen("fork", first["run_id"], "--at", str(mark), "--set", "agents[1].backend.model=mc", "--json")
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    assert second["forked_from"] == {"run_id": first["run_id"], "seq": mark}
    # beta's vote turn, waiting at the point, is asked of mc, which presents its own final answer.
    assert second["winner"] == "beta" and second["final_answer"] == "FINAL Lyon"
    second_log = events(second["run_id"])
    assert [e["event"]["parent_run_id"] for e in second_log if e["type"] == "run.forked"] == [
        out["run_id"], first["run_id"]]
    check = massgen("replay", second["run_id"], "--check")
    assert check.returncode == 0, check.stderr


def test_bad_fork_inputs_are_clear_errors(parent, tmp_path: Path) -> None:
    fake, out, log = parent
    run_id, last = out["run_id"], log[-1]["seq"]
    first = log[0]["seq"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"agents": [
        {"id": aid, "backend": {"type": "chatcompletion", "model": "ma", "base_url": fake.base_url}}
        for aid in ("alpha", "gamma")
    ]}))
    cases = [
        (("nosuchrun", "--at", "1"), "no run 'nosuchrun' in this stack"),
        ((run_id, "--at", str(last + 5)), f"past the end of run {run_id} (its last event is seq {last})"),
        ((run_id, "--at", str(last)), f"run {run_id} ended at seq {last} (run.completed)"),
        ((run_id, "--at", str(first), "--set", "agents[5].backend.model=x"), "`agents[5]` does not exist"),
        ((run_id, "--at", str(first), "--set", "agents[1].backend.modle=x"), "unknown key `agents[1].backend.modle`"),
        ((run_id, "--at", str(first), "--set", "agents[0].id=gamma"), "a fork keeps the parent's agents"),
        ((run_id, "--at", str(first), "--set", "nonsense"), "expected PATH=VALUE"),
        ((run_id, "--at", str(first - 1)), f"--at {first - 1} is before run {run_id}'s submission"),
        ((run_id, "--at", str(first), "--config", str(other)), "a fork keeps the parent's agents ['alpha', 'beta']"),
        ((run_id, "--at", str(first), "--config", str(other), "--set", "x=1"), "either --set changes or --config"),
    ]
    for args, message in cases:
        result = massgen("fork", *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
    # Refused before anything was written: the stack holds the parent only.
    assert [json.loads(line)["run_id"] for line in massgen("runs", "--json").stdout.splitlines()] == [run_id]


# ---------------------------------------------------------------- the pure parts, without a stack

RUN = "run-1"


class _Log:
    """A run's log built through the decision core: inputs appended, each followed by its decisions."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.state = RunState(RUN)

    def add(self, event, source: str = "agent_worker") -> list:
        seq = len(self.records) + 1
        # Through the codec, as the orchestrator reads it from the log (lists, not tuples).
        r = decode(encode(event, id=f"{RUN}:i{seq}", run_id=RUN, ts=float(seq),
                          source=Source(service=source, instance="t")), seq)
        self.records.append(r)
        drafts = step(self.state, r)
        for d in drafts:
            self.records.append(Record(seq=len(self.records) + 1, id=d.id, run_id=RUN, ts=float(seq),
                                       source=Source(service="orchestrator", instance="t"),
                                       causation_id=d.causation_id, event=d.event))
        return [d.event for d in drafts]


def _submitted(models: tuple[str, ...]) -> RunSubmitted:
    cfg = parse_config({"agents": [
        {"id": f"agent-{m}", "backend": {"type": "chatcompletion", "model": m, "base_url": "http://127.0.0.1:9/v1"}}
        for m in models
    ]})
    return run_submitted("What is the capital of France?", cfg)


def test_run_forked_asks_waiting_attempts_again_only_of_agents_whose_backend_changed() -> None:
    log = _Log()
    parent = _submitted(("ma", "mb"))
    first = log.add(parent, "cli")
    assert [e.backend["model"] for e in first] == ["ma", "mb"]
    new = fork_mod.forked_settings(parent, parse_config(_with_model(parent, 1, "mc")), "test", from_parent=True)
    decided = log.add(RunForked(parent_run_id="p", parent_seq=3, agents=new[0], settings=new[1]), "cli")
    # agent-mb's waiting attempt is asked again of mc, with the same messages; agent-ma's is left to the queue.
    [again] = decided
    assert isinstance(again, TurnRequested)
    assert (again.agent_id, again.turn_id, again.attempt) == ("agent-mb", first[1].turn_id, 2)
    assert again.backend["model"] == "mc" and again.messages == first[1].messages
    # The old attempt's late reply is stale: no decision; the new attempt's reply counts.
    late = TurnResponded(turn_id=again.turn_id, agent_id="agent-mb", attempt=1, content="",
                         tool_calls=(ToolCall(id="c1", name="new_answer", arguments='{"content": "Lyon"}'),))
    assert log.add(late) == []
    reply = msgspec.structs.replace(late, attempt=2)
    assert [type(e).__name__ for e in log.add(reply)][0] == "AnswerPosted"
    assert verify(RUN, log.records) == 4


def _with_model(submitted: RunSubmitted, index: int, model: str) -> dict:
    data = fork_mod.parent_config(submitted)
    fork_mod.apply_set(data, f"agents[{index}].backend.model={model}")
    return data


def test_fork_point_moves_to_the_end_of_the_decisions_on_the_events_up_to_it() -> None:
    log = _Log()
    log.add(_submitted(("ma", "mb")), "cli")  # seq 1, its decisions 2 and 3
    assert fork_mod.fork_point(RUN, log.records, 1) == 3
    assert fork_mod.fork_point(RUN, log.records, 2) == 3
    assert fork_mod.fork_point(RUN, log.records, 3) == 3


def test_set_paths_create_mappings_and_take_yaml_values() -> None:
    data = {"agents": [{"id": "a", "backend": {"type": "local"}}]}
    fork_mod.apply_set(data, "agents[0].backend.reasoning.effort=high")
    fork_mod.apply_set(data, "orchestrator.max_new_answers_per_agent=2")
    fork_mod.apply_set(data, "agents[0].backend.temperature=0.3")
    assert data["agents"][0]["backend"] == {"type": "local", "reasoning": {"effort": "high"}, "temperature": 0.3}
    assert data["orchestrator"] == {"max_new_answers_per_agent": 2}


def test_a_forks_deadlines_count_the_time_its_parent_had_left_at_the_fork_point() -> None:
    from massgen_orchestrator.service import _deadline_bases, _Run

    def rec(seq: int, ts: float, event) -> Record:
        return Record(seq=seq, id=f"r:{seq}", run_id="r", ts=ts, source=Source(service="cli", instance="t"),
                      causation_id=None, event=event)

    submitted = _submitted(("ma",))
    forked = RunForked(parent_run_id="p", parent_seq=2, agents=submitted.agents, settings=submitted.settings)
    run = _Run(state=RunState("r"))
    # Parent submitted at 100 s, fork point at 130 s, fork written at 1000 s: 30 s of the budget used.
    timer = TimerFired(name="run_deadline")
    _deadline_bases(run, [rec(1, 100.0, submitted), rec(2, 130.0, timer), rec(3, 1000.0, forked)])
    assert run.submitted_ts == 970.0


async def test_copied_events_keep_time_writer_and_content_and_get_ids_of_the_target_run() -> None:
    from massgen_es.bus.copying import copy_records
    from massgen_es.bus.memory import InMemoryEventLog
    from massgen_orchestrator.state import logical_order

    log = _Log()
    log.add(_submitted(("ma", "mb")), "cli")
    target = InMemoryEventLog()
    await target.append("other", "cli", [Draft("other:x", log.records[0].event)], origin=Source(service="cli",
                                                                                                 instance="t"))
    seqs = await copy_records(target, "fork-1", log.records)
    copies = await target.read("fork-1")
    assert [(c.ts, c.source, c.event) for c in copies] == [(r.ts, r.source, r.event) for r in log.records]
    assert [c.seq for c in copies] == [seqs[r.id] for r in log.records] == [2, 3, 4]
    # Decisions get the ids the orchestrator would have given them here: their cause's new seq.
    assert [c.id for c in copies] == [f"fork-1:c:{RUN}:i1", "fork-1:o2:0", "fork-1:o2:1"]
    assert [c.causation_id for c in copies[1:]] == [copies[0].id] * 2
    assert [c.id for c in logical_order(copies)] == [c.id for c in copies]
    assert await target.last_seq("fork-1", "orchestrator") == 4  # each on its writer's subject
