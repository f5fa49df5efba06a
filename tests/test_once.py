"""Each effect once (``massgen_es.bus.once``): the check before a request runs, and the fenced appends
after it, which expect the run's ``orchestrator`` subject where the check saw it and look again only
when it moved (issue 14 item 1). A real nats-server."""

from __future__ import annotations

import uuid

from massgen_es.bus import Draft, once
from massgen_es.bus.jetstream import JetStreamEventLog
from massgen_es.events import RunFailed, Source, TimerFired, ToolCallStarted

BROKER = Source(service="mcp_broker", instance="t")
ORCH = Source(service="orchestrator", instance="t")


def _marker(n: int) -> ToolCallStarted:
    return ToolCallStarted(call_id=f"c{n}", turn_id="t1", agent_id="a", server="s", tool="x")


async def _orchestrator_writes(log: JetStreamEventLog, run_id: str, event_id: str, event) -> None:
    await log.append(run_id, "orchestrator", [Draft(f"{run_id}:{event_id}", event)], origin=ORCH)


async def test_the_check_reports_the_fence_and_the_requests_own_records(nc) -> None:
    log, run_id = JetStreamEventLog(nc), f"once-{uuid.uuid4().hex[:6]}"
    await _orchestrator_writes(log, run_id, "o1", TimerFired(name="run_deadline"))
    await log.append(run_id, "mcp_broker", [Draft(once.started_id(f"{run_id}:req"), _marker(1))], origin=BROKER)
    before = await once.prior(log, run_id, "mcp_broker", f"{run_id}:req")
    [orch] = await log.read(run_id, source="orchestrator")
    assert before.ended is None and before.outcome is None
    assert before.started is not None and before.started.id == f"{run_id}:req:started"
    assert before.fence.seq == orch.seq


async def test_an_append_behind_a_moved_fence_looks_again_and_lands(nc) -> None:
    log, run_id = JetStreamEventLog(nc), f"once-{uuid.uuid4().hex[:6]}"
    await _orchestrator_writes(log, run_id, "o1", TimerFired(name="run_deadline"))
    before = await once.prior(log, run_id, "mcp_broker", f"{run_id}:req")
    stale = before.fence.seq
    await _orchestrator_writes(log, run_id, "o2", TimerFired(name="presentation_deadline"))  # moves it
    assert await once.append_unless_ended(log, run_id, "mcp_broker", [Draft(f"{run_id}:req:started", _marker(1))],
                                          origin=BROKER, fence=before.fence) is None
    [_, moved] = await log.read(run_id, source="orchestrator")
    assert stale is not None and before.fence.seq == moved.seq > stale
    assert [r.id for r in await log.read(run_id, source="mcp_broker")] == [f"{run_id}:req:started"]


async def test_an_append_behind_a_fence_the_runs_end_moved_appends_nothing(nc) -> None:
    log, run_id = JetStreamEventLog(nc), f"once-{uuid.uuid4().hex[:6]}"
    before = await once.prior(log, run_id, "mcp_broker", f"{run_id}:req")
    assert before.fence.seq == 0  # the orchestrator has written nothing yet
    await _orchestrator_writes(log, run_id, "end", RunFailed(reason="stopped"))
    ended = await once.append_unless_ended(log, run_id, "mcp_broker", [Draft(f"{run_id}:req:result", _marker(1))],
                                           origin=BROKER, fence=before.fence)
    assert ended is not None and ended.id == f"{run_id}:end"
    assert await log.read(run_id, source="mcp_broker") == []
    again = await once.prior(log, run_id, "mcp_broker", f"{run_id}:req")
    assert again.ended is not None and again.ended.id == f"{run_id}:end"
