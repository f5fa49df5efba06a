"""Walking-skeleton benchmark (prints its figures; no assertions).

A 3-agent run against a zero-latency scripted provider (the wire-level fake), over a real nats-server:
- wall time per run; provider time = the time during which at least one LLM call of the run was in
  flight (the union of the calls' intervals: parallel calls overlap, so their plain sum over-counts);
  orchestration overhead = wall - provider time, i.e. the time no LLM call was running;
- LLM calls per run and sequential LLM round trips (the longest chain of calls each starting after the
  previous one ended); the workload has each agent answer once, then vote: target 7 calls in 3 round
  trips (MassGen 0.1.97 makes 7 in 3; issue 11 item 6);
- the same workload in ``tool_mode: json_schema`` (the protocol for models without tool calls): its
  calls per run and LLM calls per decision (answer or vote);
- events written per run;
- event append latency p50/p99 (single publish with Nats-Msg-Id, file storage);
- replay throughput: reading a run's events back and folding them into the replay view, events/s.

Targets (2-core machine): overhead < 100 ms per run, append p99 < 2 ms, replay >= 20,000 events/s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid

from _stats import pct  # bench/ is the script's own directory, first on sys.path
from massgen_agent_worker.worker import AgentWorker
from massgen_es import ids
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue, connect, ensure_streams
from massgen_es.bus.server import NatsServer
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import TERMINAL_EVENTS, AnswerPosted, Source, TimerFired, UsageRecorded, VoteCast
from massgen_es.testing.fake_openai import FakeOpenAI, Reply, team_member
from massgen_orchestrator.service import OrchestratorService
from massgen_replay.read import project

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def json_script(text: str):
    """The same agent for ``tool_mode: json_schema``: constrained choices are votes, free text answers."""
    def handle(body: dict) -> Reply:
        if "response_format" in body:
            return Reply(text=json.dumps({"tool": "vote", "arguments": {"agent_id": "agent1", "reason": "ok"}}))
        return Reply(text=f"final {text}" if "was voted the best" in body["messages"][-1]["content"] else text)

    return handle


def round_trips(usage: list) -> int:
    """Sequential LLM round trips: the longest chain of calls where each starts after the last ended."""
    spans = sorted((r.ts - r.event.duration_s, r.ts) for r in usage)
    depth: list[int] = []
    for i, (start, _) in enumerate(spans):
        depth.append(1 + max((depth[j] for j in range(i) if spans[j][1] <= start), default=0))
    return max(depth, default=0)


def busy_time(usage: list) -> float:
    """Length of the union of the calls' [end - duration, end] intervals, in seconds.

    A ``usage.recorded`` event is appended right after its call ends, so its ``ts`` marks the end."""
    spans = sorted((r.ts - r.event.duration_s, r.ts) for r in usage)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            total += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return total + ((cur_end - cur_start) if cur_end is not None else 0.0)


async def main() -> None:
    with tempfile.TemporaryDirectory() as d, NatsServer(d) as server, FakeOpenAI() as fake:
        for m in ("b0", "b1", "b2"):
            fake.default(m, team_member(f"answer from {m}"))
        for m in ("j0", "j1", "j2"):
            fake.default(m, json_script(f"answer from {m}"))
        cfg = parse_config({"agents": [
            {"id": f"a{i}", "backend": {"type": "chatcompletion", "model": f"b{i}", "base_url": fake.base_url}}
            for i in range(3)
        ]})
        json_cfg = parse_config({"agents": [
            {"id": f"a{i}", "backend": {"type": "chatcompletion", "model": f"j{i}", "base_url": fake.base_url,
                                        "tool_mode": "json_schema"}}
            for i in range(3)
        ]})
        nc = await connect(server.url, "bench")
        await ensure_streams(nc.jetstream())
        log = JetStreamEventLog(nc)
        tasks = [
            asyncio.create_task(OrchestratorService(log, TurnQueue(nc)).run()),
            asyncio.create_task(AgentWorker(nc, concurrency=4).run()),
        ]
        src = Source(service="bench", instance="bench")
        walls, provider_sums, events, run_ids, calls, trips = [], [], [], [], [], []
        for i in range(RUNS + 1):  # the first run warms up connections and consumers
            run_id = uuid.uuid4().hex[:12]
            start = time.perf_counter()
            await log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted("2+2?", cfg))], origin=src)
            async for r in log.follow(run_id):
                if isinstance(r.event, TERMINAL_EVENTS):
                    break
            wall = time.perf_counter() - start
            records = await log.read(run_id)
            if i == 0:
                continue
            usage = [r for r in records if isinstance(r.event, UsageRecorded)]
            walls.append(wall)
            provider_sums.append(busy_time(usage))
            events.append(len(records))
            run_ids.append(run_id)
            calls.append(len(usage))
            trips.append(round_trips(usage))
        json_calls, json_trips, per_decision = [], [], []
        for _ in range(3):
            run_id = uuid.uuid4().hex[:12]
            await log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted("2+2?", json_cfg))],
                             origin=src)
            async for r in log.follow(run_id):
                if isinstance(r.event, TERMINAL_EVENTS):
                    break
            records = await log.read(run_id)
            usage = [r for r in records if isinstance(r.event, UsageRecorded)]
            coordination = [
                r for r in usage if isinstance(r.event, UsageRecorded) and not ids.is_presentation(r.event.turn_id)
            ]
            decisions = [r for r in records if isinstance(r.event, (AnswerPosted, VoteCast))]
            json_calls.append(len(usage))
            json_trips.append(round_trips(usage))
            per_decision.append(len(coordination) / max(len(decisions), 1))

        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Append latency: single publishes with a Nats-Msg-Id, as workers do. Measured with the services
        # stopped, so their reactions to these events do not share the event loop with the timing.
        lat = []
        run_id = uuid.uuid4().hex[:12]
        for n in range(2000):
            t = time.perf_counter()
            await log.append(run_id, "timer", [Draft(f"{run_id}:b{n}", TimerFired(name="run_deadline"))], origin=src)
            lat.append((time.perf_counter() - t) * 1000)


        # Replay: read a run back and fold it into the replay view, many times over.
        n_ev, t0 = 0, time.perf_counter()
        for rid in run_ids * 5:
            recs = await log.read(rid)
            project(rid, recs)
            n_ev += len(recs)
        replay_s = time.perf_counter() - t0
        big_t0 = time.perf_counter()
        big = await log.read(run_id)
        project(run_id, big)
        big_s = time.perf_counter() - big_t0

        await nc.close()

    wall_ms = statistics.median(walls) * 1000
    prov_ms = statistics.median(provider_sums) * 1000
    print(f"runs measured:                 {RUNS} (3 agents, zero-latency scripted provider)")
    print(f"wall time per run (median):    {wall_ms:.1f} ms")
    print(f"provider time per run:         {prov_ms:.1f} ms (some LLM call in flight; HTTP round trips to the fake)")
    print(f"orchestration overhead:        {wall_ms - prov_ms:.1f} ms per run (wall - provider time; target < 100 ms)")
    print(f"LLM calls per run:             {statistics.median(calls):.0f} "
          "(target 7: 3 answers, 3 votes, 1 presentation)")
    print(f"sequential LLM round trips:    {statistics.median(trips):.0f} (target 3)")
    print(f"json_schema mode:              {statistics.median(json_calls):.0f} calls per run, "
          f"{statistics.median(json_trips):.0f} round trips, "
          f"{statistics.median(per_decision):.2f} LLM calls per decision")
    print(f"events written per run:        {statistics.median(events):.0f}")
    print(f"event append p50 / p99:        {pct(lat, 50):.3f} / {pct(lat, 99):.3f} ms (target p99 < 2 ms)")
    print(f"replay, small runs:            {n_ev / replay_s:,.0f} events/s ({n_ev} events; per-run read cost included)")
    print(f"replay, one 2,000-event log:   {len(big) / big_s:,.0f} events/s (target >= 20,000)")


if __name__ == "__main__":
    asyncio.run(main())
