"""Scaling benchmark (prints its figures; no assertions): runs per minute with 1, 2 and 4 agent-worker
replicas against a provider with a fixed 300 ms latency per call.

Each replica handles one LLM call at a time (`--concurrency 1`), so the replica count is the capacity;
the replicas share the durable work-queue consumer. For each replica count, RUNS 3-agent runs
(`max_new_answers_per_agent: 1`) are submitted at once and timed to their last terminal event.

- default: replicas are `massgen serve agent_worker` processes on a nats-server started here; the
  orchestrator runs in this process; the provider is the wire-level fake (massgen_es.testing.fake_openai).
- `--compose`: replicas are agent-worker containers of the compose stack (`docker compose up --scale`),
  with the stack's orchestrator, NATS (user `cli` for this script) and the scripted model container
  (`echo-300ms`), as a throwaway project (massgen_es.testing.compose; needs root and `make compose-fetch`).

Targets: at least 1.8x at 2 replicas and 3.2x at 4.
Usage: python bench/scale_bench.py [--compose] [RUNS]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from massgen_es.bus import Draft
from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen_es.bus.server import NatsServer
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import TERMINAL_EVENTS, Source
from massgen_es.testing.compose import ComposeStack
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_orchestrator.service import OrchestratorService

ARGS = [a for a in sys.argv[1:] if a != "--compose"]
COMPOSE = "--compose" in sys.argv[1:]
RUNS = int(ARGS[0]) if ARGS else 12
LATENCY_S = 0.3
REPLICAS = (1, 2, 4)
ROOT = Path(__file__).resolve().parents[1]
MASSGEN = str(Path(sys.executable).parent / "massgen")


def team(model: str, base_url: str):
    return parse_config({"agents": [
        {"id": f"a{i}", "backend": {"type": "chatcompletion", "model": model.format(i=i),
                                    "base_url": base_url, "max_retries": 0}}
        for i in range(3)
    ], "orchestrator": {"max_new_answers_per_agent": 1}})


async def timed_runs(log: JetStreamEventLog, cfg) -> float:
    """Submit RUNS runs at once; seconds until every one has a terminal event."""
    src = Source(service="bench", instance="bench")
    start = time.perf_counter()
    pending = set()
    for _ in range(RUNS):
        rid = uuid.uuid4().hex[:12]
        pending.add(rid)
        await log.append(rid, "cli", [Draft(f"{rid}:submitted", run_submitted("2+2?", cfg))], origin=src)
    async for r in log.follow(after_seq=0):
        if r.run_id in pending and isinstance(r.event, TERMINAL_EVENTS):
            pending.discard(r.run_id)
            if not pending:
                break
    return time.perf_counter() - start


def script(text: str):
    def handle(body: dict) -> Reply:
        names = [t["function"]["name"] for t in body.get("tools", [])]
        if not names:
            return Reply(text=f"final {text}", delay_s=LATENCY_S)
        if "vote" in names:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "ok"}),), delay_s=LATENCY_S)
        return Reply(tool_calls=(("new_answer", {"content": text}),), delay_s=LATENCY_S)

    return handle


async def processes() -> dict[int, float]:
    """Runs per minute per replica count, replicas as processes."""
    results = {}
    with tempfile.TemporaryDirectory() as d, NatsServer(Path(d) / "nats") as server, FakeOpenAI() as fake:
        for m in ("s0", "s1", "s2"):
            fake.default(m, script(f"answer {m}"))
        cfg = team("s{i}", fake.base_url)
        nc = await connect(server.url, "bench")
        await ensure_streams(nc.jetstream())
        log = JetStreamEventLog(nc)
        orch = asyncio.create_task(OrchestratorService(log, TurnQueue(nc)).run())
        env = {**os.environ, "MASSGEN_NATS_URL": server.url, "MASSGEN_HOME": str(Path(d) / "home")}
        for replicas in REPLICAS:
            procs = [subprocess.Popen([MASSGEN, "serve", "agent_worker", "--concurrency", "1"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(replicas)]
            try:
                await asyncio.sleep(3)  # let the replicas bind to the consumer
                results[replicas] = RUNS / await timed_runs(log, cfg) * 60
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(20)
        orch.cancel()
        await asyncio.gather(orch, return_exceptions=True)
        await nc.close()
    return results


async def containers() -> dict[int, float]:
    """Runs per minute per replica count, replicas as compose containers."""
    results = {}
    stack = ComposeStack(ROOT, workers=REPLICAS[0], worker_concurrency=1)
    print("building the images (scripts/compose-build.sh --offline) ...", flush=True)
    stack.build()
    with stack:
        nc = await connect(stack.url("cli"), "bench")
        log = JetStreamEventLog(nc)
        cfg = team("echo-300ms", "http://scripted-model:8000/v1")
        for replicas in REPLICAS:
            stack.scale_workers(replicas)  # returns once every replica heartbeats
            results[replicas] = RUNS / await timed_runs(log, cfg) * 60
        await nc.close()
    return results


async def main() -> None:
    results = await (containers() if COMPOSE else processes())
    base = results[1]
    kind = "agent-worker containers (docker compose --scale)" if COMPOSE else "agent-worker processes"
    print(f"replicas: {kind}; {RUNS} concurrent 3-agent runs, "
          f"provider latency {LATENCY_S * 1000:.0f} ms/call, worker concurrency 1")
    for n, rpm in results.items():
        print(f"{n} replica(s):            {rpm:6.1f} runs/min  ({rpm / base:.2f}x)")
    print("targets:                 >= 1.8x at 2 replicas, >= 3.2x at 4")


if __name__ == "__main__":
    asyncio.run(main())
