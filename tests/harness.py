"""Test harness shared by the integration suites: scripted providers, a service stack on a real
nats-server, and log assertions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from massgen_agent_worker.worker import AgentWorker
from massgen_es import media
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.config import parse_config, run_submitted, secrets
from massgen_es.events import TERMINAL_EVENTS, AnswerPosted, Source, TurnRequested, UnknownEvent, check_writer
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_executor.service import Executor
from massgen_mcp_broker.service import McpBroker
from massgen_orchestrator.decide import verify
from massgen_orchestrator.service import OrchestratorService

MASSGEN = str(Path(sys.executable).parent / "massgen")


@contextlib.contextmanager
def massgen_up(home: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``massgen up ARGS`` (a running stack on ``home``) once it advertised itself in ``stack.json``;
    stopped with SIGINT (killed after 30 s) when the block ends."""
    proc = subprocess.Popen([MASSGEN, "up", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (home / "stack.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "massgen up did not advertise its stack"
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


RESTART_REASON = "It does not name the river."
RESTART_INSTRUCTIONS = "Say which river Paris is on."


def restarting_script(own: str):
    """Like :func:`agent_script`, for post-evaluation (MassGen spec §1.12): answers ``own`` + ``.``, and,
    in an attempt that was restarted (its prompts carry the feedback or the river), ``own`` + ``, on the
    Seine.``; votes agent1; as the evaluator, restarts on an answer without the river and submits one
    with it."""

    def handle(body: dict) -> Reply:
        prompt = json.dumps(body["messages"])
        text = f"{own}, on the Seine." if "PREVIOUS ATTEMPT FEEDBACK" in prompt or "Seine" in prompt else f"{own}."
        tools = tool_names(body)
        if "submit" in tools:
            if "Seine" in body["messages"][-1]["content"]:
                return Reply(tool_calls=(("submit", {"confirmed": True}),))
            args = {"reason": RESTART_REASON, "instructions": RESTART_INSTRUCTIONS}
            return Reply(tool_calls=(("restart_orchestration", args),))
        if not tools:
            return Reply(text=f"FINAL: {text}")
        if "vote" in tools:
            return vote("agent1", "agent1 is right")
        return answer(text)

    return handle


# ---------------------------------------------------------------- harness


def team(
    fake: FakeOpenAI, n: int, *, orchestrator: dict | None = None, timeout_s: float = 60
) -> tuple[dict, list[str]]:
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

    async def __aenter__(self) -> Stack:
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

    def broker(self, home: Path, **kw) -> McpBroker:
        b = McpBroker(self.nc, home, **kw)
        self.tasks.append(asyncio.create_task(b.run()))
        return b

    def executor(self, home: Path, **kw) -> Executor:
        ex = Executor(self.nc, home, **kw)
        self.tasks.append(asyncio.create_task(ex.run()))
        return ex

    def process(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "MASSGEN_NATS_URL": self.url}
        p = subprocess.Popen([MASSGEN, "serve", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    async def submit(self, cfg: dict, question: str = "What is the capital of France?", **kw) -> str:
        run_id = uuid.uuid4().hex[:12]
        parsed = parse_config(cfg)
        await SecretStore(self.nc).put_all(secrets(parsed))
        ev = run_submitted(question, parsed, **kw)
        await media.store_uploads(ObjectStore(self.nc), ev.agents)
        await self.log.append(
            run_id, "cli", [Draft(f"{run_id}:submitted", ev)], origin=Source(service="cli", instance="t")
        )
        return run_id

    async def wait_done(self, run_id: str, timeout_s: float = 30) -> list:
        records: list = []

        async def done() -> bool:
            nonlocal records
            records = await self.log.read(run_id)
            return any(isinstance(r.event, TERMINAL_EVENTS) for r in records)

        await eventually(done, timeout_s, f"run {run_id} to end")
        for r in records:  # every event was written by a writer the catalogue allows (docs/architecture)
            if not isinstance(r.event, UnknownEvent):
                check_writer(r.event, r.source.service)
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


