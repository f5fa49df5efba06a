"""Scaling benchmark (prints its figures; no assertions): runs per minute with 1, 2 and 4 agent-worker
replicas against a provider with a fixed 300 ms latency per call.

Each replica is a `massgen serve agent-worker --concurrency 1` process (one LLM call at a time, so the
replica count is the capacity), sharing the durable work-queue consumer; the orchestrator runs in
this process; the provider is the wire-level fake with a 300 ms delay before each reply. For each
replica count, RUNS 3-agent runs are submitted at once and timed to their last terminal event.

Targets: at least 1.8x at 2 replicas and 3.2x at 4.
Usage: python bench/scale_bench.py [RUNS]
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

from massgen.bus import Draft
from massgen.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen.bus.server import NatsServer
from massgen.config import parse_config, run_submitted
from massgen.events import TERMINAL_EVENTS, Source
from massgen.testing.fake_openai import FakeOpenAI, Reply
from massgen_orchestrator.service import OrchestratorService

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
LATENCY_S = 0.3
MASSGEN = str(Path(sys.executable).parent / "massgen")


def script(text: str):
    def handle(body: dict) -> Reply:
        names = [t["function"]["name"] for t in body.get("tools", [])]
        if not names:
            return Reply(text=f"final {text}", delay_s=LATENCY_S)
        if "vote" in names:
            return Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "ok"}),), delay_s=LATENCY_S)
        return Reply(tool_calls=(("new_answer", {"content": text}),), delay_s=LATENCY_S)

    return handle


async def measure(log: JetStreamEventLog, cfg, replicas: int, url: str, home: str) -> float:
    env = {**os.environ, "MASSGEN_NATS_URL": url, "MASSGEN_HOME": home}
    procs = [subprocess.Popen([MASSGEN, "serve", "agent-worker", "--concurrency", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(replicas)]
    try:
        await asyncio.sleep(3)  # let the replicas bind to the consumer
        src = Source(service="bench", instance="bench")
        start = time.perf_counter()
        ids = []
        for _ in range(RUNS):
            rid = uuid.uuid4().hex[:12]
            ids.append(rid)
            await log.append(rid, "client", [Draft(f"{rid}:submitted", run_submitted("2+2?", cfg))], origin=src)
        pending = set(ids)
        async for r in log.follow(after_seq=0):
            if r.run_id in pending and isinstance(r.event, TERMINAL_EVENTS):
                pending.discard(r.run_id)
                if not pending:
                    break
        return time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)


async def main() -> None:
    with tempfile.TemporaryDirectory() as d, NatsServer(Path(d) / "nats") as server, FakeOpenAI() as fake:
        for m in ("s0", "s1", "s2"):
            fake.default(m, script(f"answer {m}"))
        cfg = parse_config({"agents": [
            {"id": f"a{i}", "backend": {"type": "chatcompletion", "model": f"s{i}", "base_url": fake.base_url,
                                        "max_retries": 0}}
            for i in range(3)
        ], "orchestrator": {"max_new_answers_per_agent": 1}})
        nc = await connect(server.url, "bench")
        await ensure_streams(nc.jetstream())
        log = JetStreamEventLog(nc)
        orch = asyncio.create_task(OrchestratorService(log, TurnQueue(nc)).run())
        results = {}
        for replicas in (1, 2, 4):
            elapsed = await measure(log, cfg, replicas, server.url, str(Path(d) / "home"))
            results[replicas] = RUNS / elapsed * 60
        orch.cancel()
        await asyncio.gather(orch, return_exceptions=True)
        await nc.close()
    base = results[1]
    print(f"runs per replica count:  {RUNS} concurrent 3-agent runs, provider latency {LATENCY_S * 1000:.0f} ms/call, "
          "worker concurrency 1")
    for n, rpm in results.items():
        print(f"{n} replica(s):            {rpm:6.1f} runs/min  ({rpm / base:.2f}x)")
    print("targets:                 >= 1.8x at 2 replicas, >= 3.2x at 4")


if __name__ == "__main__":
    asyncio.run(main())
