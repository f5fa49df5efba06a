"""Integration: real nats-server, the services (in-process or as processes), the official ``openai``
SDK talking HTTP to the wire-level fake. Each test gets its own nats-server (an empty log)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from massgen.bus import Draft
from massgen.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen.config import parse_config, run_submitted
from massgen.events import (
    AgentDropped,
    AnswerPosted,
    ConsensusReached,
    PresentationCompleted,
    RunCompleted,
    RunTimedOut,
    Source,
    TERMINAL_EVENTS,
    TurnRejected,
    TurnRequested,
    TurnStarted,
    UpdateDelivered,
    VoteCast,
    VoteInvalidated,
)
from massgen.testing.fake_openai import FakeOpenAI, Reply
from massgen_agent_worker.worker import AgentWorker
from massgen_orchestrator.decide import verify
from massgen_orchestrator.prompts import ENFORCEMENT_MESSAGE
from massgen_orchestrator.service import OrchestratorService

from massgen.testing import eventually

MASSGEN = str(Path(sys.executable).parent / "massgen")


# ---------------------------------------------------------------- scripted providers


def tool_names(body: dict) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


def answer(text: str, **kw) -> Reply:
    return Reply(tool_calls=(("new_answer", {"content": text}),), **kw)


def vote(anon: str, reason: str = "best answer", **kw) -> Reply:
    return Reply(tool_calls=(("vote", {"agent_id": anon, "reason": reason}),), **kw)


def agent_script(text: str, vote_for: str, final: str | None = None):
    """Answer when only new_answer is offered, vote when voting is possible, present when no tools."""

    def handle(body: dict) -> Reply:
        tools = tool_names(body)
        if not tools:
            return Reply(text=final or f"FINAL: {text}")
        if "vote" in tools:
            return vote(vote_for, f"{vote_for} is right")
        return answer(text)

    return handle


# ---------------------------------------------------------------- harness


def team(fake: FakeOpenAI, n: int, *, orchestrator: dict | None = None, timeout_s: float = 60) -> tuple[dict, list[str]]:
    """A config of n chatcompletion agents on the fake, each with its own model name."""
    tag = uuid.uuid4().hex[:6]
    models = [f"m{i}-{tag}" for i in range(n)]
    cfg = {
        "agents": [
            {"id": f"agent-{chr(97 + i)}", "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
            for i, m in enumerate(models)
        ],
        "orchestrator": orchestrator or {},
        "timeout_settings": {"orchestrator_timeout_seconds": timeout_s, "presentation_timeout_seconds": 30},
    }
    return cfg, models


class Stack:
    """Services against one nats-server; in-process tasks and/or child processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.tasks: list[asyncio.Task] = []
        self.procs: list[subprocess.Popen] = []

    async def __aenter__(self) -> "Stack":
        self.nc = await connect(self.url, "test")
        await ensure_streams(self.nc.jetstream())
        self.log = JetStreamEventLog(self.nc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        await self.nc.close()

    def orchestrator(self) -> OrchestratorService:
        svc = OrchestratorService(self.log, TurnQueue(self.nc))
        self.tasks.append(asyncio.create_task(svc.run()))
        return svc

    def worker(self, **kw) -> AgentWorker:
        w = AgentWorker(self.nc, **kw)
        self.tasks.append(asyncio.create_task(w.run()))
        return w

    def process(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "MASSGEN_NATS_URL": self.url}
        p = subprocess.Popen([MASSGEN, "serve", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    async def submit(self, cfg: dict, question: str = "What is the capital of France?") -> str:
        run_id = uuid.uuid4().hex[:12]
        ev = run_submitted(question, parse_config(cfg))
        await self.log.append(run_id, "client", [Draft(f"{run_id}:submitted", ev)], origin=Source(service="cli", instance="t"))
        return run_id

    async def wait_done(self, run_id: str, timeout_s: float = 30) -> list:
        records: list = []

        async def done() -> bool:
            nonlocal records
            records = await self.log.read(run_id)
            return any(isinstance(r.event, TERMINAL_EVENTS) for r in records)

        await eventually(done, timeout_s, f"run {run_id} to end")
        return records


def of(records: list, cls: type) -> list:
    return [r.event for r in records if isinstance(r.event, cls)]


def assert_no_duplicates(run_id: str, records: list) -> None:
    """Nothing written twice: ids, decisions per cause, answers per label; the core reproduces the log."""
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    labels = [e.label for e in of(records, AnswerPosted)]
    assert len(labels) == len(set(labels)), labels
    turns = Counter((e.turn_id, e.attempt) for e in of(records, TurnRequested))
    assert max(turns.values()) == 1, turns
    assert len([r for r in records if isinstance(r.event, TERMINAL_EVENTS)]) == 1
    assert verify(run_id, records) > 0


# ---------------------------------------------------------------- tests


async def test_consensus_round_presents_the_plurality_winner(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb, mc) = team(fake, 3)
    fake.default(ma, agent_script("Paris.", "agent1", final="The capital of France is Paris."))
    fake.default(mb, agent_script("Paris, France.", "agent1"))
    fake.default(mc, agent_script("It is Paris.", "agent2"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    assert of(records, ConsensusReached), _dump(records)
    consensus = of(records, ConsensusReached)[0]
    assert consensus.winner_id == "agent-a" and consensus.tally == {"agent1": 2, "agent2": 1}
    done = of(records, RunCompleted)[0]
    assert done.winner_id == "agent-a" and done.final_answer == "The capital of France is Paris."
    presentation = [b for b in fake.requests(ma) if "tools" not in b][0]
    prompt = json.dumps(presentation["messages"])
    assert "Paris, France." in prompt and "agent1 is right" in prompt and "agent-b" not in prompt
    assert_no_duplicates(run_id, records)


async def test_new_answer_invalidates_votes_and_agents_revote(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("A1", "agent1"))
    fake.script(mb, answer("B1", delay_s=1.0))  # arrives after agent-a has already voted
    fake.default(mb, agent_script("B1", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    invalidated = of(records, VoteInvalidated)
    assert [(e.voter_id, e.by_label) for e in invalidated] == [("agent-a", "agent2.1")]
    a_votes = [e for e in of(records, VoteCast) if e.voter_id == "agent-a"]
    assert [v.version for v in a_votes] == [1, 2]
    assert {v.voter_id: v.version for v in of(records, VoteCast)} == {"agent-a": 2, "agent-b": 2}  # last votes
    assert of(records, RunCompleted)


async def test_mid_turn_update_is_received_by_the_model(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("Paris is the capital of France.", "agent1"))
    fake.script(mb, vote("agent1", "stale vote", delay_s=1.0))  # cast while agent-a's answer arrives
    fake.default(mb, agent_script("unused", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    second_call = fake.requests(mb)[1]["messages"]
    update = second_call[-1]["content"]
    assert update.startswith("UPDATE: While you were working, new answers were provided.")
    assert "<agent1> Paris is the capital of France. <end of agent1>" in update
    assert any(m["role"] == "tool" and m["content"].startswith("Vote not recorded") for m in second_call)
    delivered = of(records, UpdateDelivered)
    assert [(e.agent_id, e.labels) for e in delivered] == [("agent-b", ("agent1.1",))]
    b_votes = [e for e in of(records, VoteCast) if e.voter_id == "agent-b"]
    assert len(b_votes) == 1 and b_votes[0].reason == "agent1 is right"  # the stale vote never counted


async def test_enforcement_retries_until_a_workflow_tool_is_called(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma,) = team(fake, 1)
    fake.script(ma, Reply(text="I think it is Paris."), answer("Paris"))
    fake.default(ma, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    assert [e.code for e in of(records, TurnRejected)] == ["no_workflow_tool"]
    retry = fake.requests(ma)[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is Paris."}
    assert retry[-1] == {"role": "user", "content": ENFORCEMENT_MESSAGE}
    assert of(records, RunCompleted)[0].final_answer == "FINAL: Paris"


async def test_failing_agent_is_dropped_and_the_run_goes_on(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("Paris", "agent1"))
    fake.default(mb, lambda body: Reply(status=500, error_message="provider is down"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    dropped = of(records, AgentDropped)
    assert [(d.agent_id, d.failed_turns) for d in dropped] == [("agent-b", 3)]
    assert "HTTP 500" in dropped[0].reason
    assert len(fake.requests(mb)) == 3
    assert of(records, RunCompleted)[0].winner_id == "agent-a"


async def test_timeout_presents_the_best_available_answer(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2, timeout_s=2)
    fake.script(ma, answer("Paris"), vote("agent1", delay_s=8))  # never votes in time
    fake.default(ma, lambda body: Reply(text="Presented after timeout: Paris"))
    fake.default(mb, lambda body: answer("late", delay_s=8))  # never answers in time
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id, timeout_s=20)
    timed_out = of(records, RunTimedOut)[0]
    assert timed_out.winner_id == "agent-a" and timed_out.final_answer == "Presented after timeout: Paris"
    assert not of(records, RunCompleted)


async def test_two_worker_processes_share_one_run(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, models = team(fake, 4)
    for i, m in enumerate(models):
        fake.default(m, lambda body, i=i: _slow(agent_script(f"answer {i}", "agent1")(body)))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.process("agent-worker", "--concurrency", "1")
        s.process("agent-worker", "--concurrency", "1")
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id, timeout_s=60)
    workers = Counter(e.worker for e in of(records, TurnStarted))
    assert len(workers) == 2, workers
    assert of(records, RunCompleted)
    assert_no_duplicates(run_id, records)


def _slow(reply: Reply) -> Reply:
    return Reply(text=reply.text, tool_calls=reply.tool_calls, delay_s=0.2)


async def test_orchestrator_sigkilled_mid_run_resumes_without_duplicates(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb, mc) = team(fake, 3)
    for m, text in ((ma, "Paris"), (mb, "Paris, France"), (mc, "It is Paris")):
        fake.default(m, lambda body, text=text: _slow(agent_script(text, "agent1")(body)))
    async with Stack(fresh_nats.url) as s:
        first = s.process("orchestrator")
        s.worker()
        run_id = await s.submit(cfg)

        async def answered() -> bool:
            return any(isinstance(r.event, AnswerPosted) for r in await s.log.read(run_id))

        await eventually(answered, 20, "a first answer")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        await asyncio.sleep(1.0)  # workers keep answering turns while no orchestrator decides
        s.process("orchestrator")
        records = await s.wait_done(run_id, timeout_s=60)
    assert of(records, RunCompleted)
    assert len({r.source.instance for r in records if r.source.service == "orchestrator"}) == 2
    assert_no_duplicates(run_id, records)


async def test_worker_killed_mid_turn_gets_the_turn_redelivered_without_duplicate_answer(
    fresh_nats, fake: FakeOpenAI
) -> None:
    cfg, (ma,) = team(fake, 1)
    fake.script(ma, answer("Paris", delay_s=4.0))  # the first worker dies while waiting for this
    fake.default(ma, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        doomed = s.process("agent-worker", "--ack-wait", "2")
        run_id = await s.submit(cfg)
        await asyncio.to_thread(fake.wait_for_requests, ma, 1, 20)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
        s.process("agent-worker", "--ack-wait", "2")
        records = await s.wait_done(run_id, timeout_s=60)
    starts = [e for e in of(records, TurnStarted) if e.turn_id == "agent-a.1"]
    assert [e.delivery for e in starts] == [1, 2]
    assert len(starts[0].worker) and starts[0].worker != starts[1].worker
    assert [e.label for e in of(records, AnswerPosted)] == ["agent1.1"]
    assert of(records, PresentationCompleted) and of(records, RunCompleted)
    assert_no_duplicates(run_id, records)


def _dump(records: list) -> str:
    return "\n".join(f"{r.seq} {r.type} {getattr(r.event, 'agent_id', '')} {getattr(r.event, 'reason', '')} {getattr(r.event, 'failure', '')}" for r in records)
