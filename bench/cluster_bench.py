"""One server vs a three-node cluster (issue 13 item 6): the wall time of a run, and the append latency,
on each (prints its figures; no assertions).

A 3-agent run against a zero-latency scripted provider (the wire-level fake), the orchestrator and an
agent worker in-process, over a real nats-server and then over three (NatsCluster, every stream R3):
what replication costs a run. Every append waits for a quorum of the stream's replicas (two of three)
to store it, so each append costs one more network round trip between nodes (loopback here).

    .venv/bin/python bench/cluster_bench.py [RUNS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _stats import pct  # bench/ is the script's own directory, first on sys.path
from massgen_agent_worker.worker import AgentWorker
from massgen_es.bus import Draft
from massgen_es.bus.cluster import replicas
from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen_es.bus.server import NatsCluster, NatsServer
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import TERMINAL_EVENTS, Source, TimerFired
from massgen_es.testing.fake_openai import FakeOpenAI, team_member
from massgen_orchestrator.service import OrchestratorService

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
APPENDS = 500


async def measure(url: str, fake: FakeOpenAI, tag: str) -> dict:
    cfg = parse_config({"agents": [
        {"id": f"a{i}", "backend": {"type": "chatcompletion", "model": f"{tag}{i}", "base_url": fake.base_url}}
        for i in range(3)
    ]})
    nc = await connect(url, "bench")
    await ensure_streams(nc.jetstream())
    log = JetStreamEventLog(nc)
    tasks = [asyncio.create_task(OrchestratorService(log, TurnQueue(nc)).run()),
             asyncio.create_task(AgentWorker(nc, concurrency=4).run())]
    src = Source(service="bench", instance="bench")
    walls = []
    try:
        for i in range(RUNS + 1):  # the first run warms up connections and consumers
            run_id = uuid.uuid4().hex[:12]
            start = time.perf_counter()
            await log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted("2+2?", cfg))], origin=src)
            async for r in log.follow(run_id):
                if isinstance(r.event, TERMINAL_EVENTS):
                    break
            if i:
                walls.append(time.perf_counter() - start)
        run_id = uuid.uuid4().hex[:12]
        lat = []
        for i in range(APPENDS):
            t = time.perf_counter()
            await log.append(run_id, "timer", [Draft(f"{run_id}:t{i}", TimerFired(name="run_deadline"))],
                             origin=src)
            lat.append((time.perf_counter() - t) * 1000)
        return {"replicas": replicas(nc), "wall_p50_s": statistics.median(walls), "wall_max_s": max(walls),
                "append_p50_ms": pct(lat, 50), "append_p99_ms": pct(lat, 99)}
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()


async def main() -> None:
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            for tag in ("s", "c"):
                fake.default(f"{tag}{i}", team_member(f"answer {i}"))
        with NatsServer(Path(tmp) / "one") as server:
            one = await measure(server.url, fake, "s")
        with NatsCluster(Path(tmp) / "three", size=3) as cluster:
            three = await measure(cluster.url, fake, "c")
    print(f"{RUNS} runs each (3 agents, zero-latency fake provider), {APPENDS} single appends")
    print(f"{'':<16}{'replicas':>9}{'run p50 s':>11}{'run max s':>11}{'append p50 ms':>15}{'append p99 ms':>15}")
    for name, r in (("one server", one), ("3-node cluster", three)):
        print(f"{name:<16}{r['replicas']:>9}{r['wall_p50_s']:>11.3f}{r['wall_max_s']:>11.3f}"
              f"{r['append_p50_ms']:>15.2f}{r['append_p99_ms']:>15.2f}")
    print(f"run wall time, cluster / one server: {three['wall_p50_s'] / one['wall_p50_s']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
