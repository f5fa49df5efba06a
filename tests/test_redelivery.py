"""Each effect once after a redelivery (issue 13 items 3 and 5): the executor and the MCP broker run as
``massgen serve`` processes and are SIGKILLed mid-call (no shutdown path acks or naks anything), a new
one is started, and JetStream redelivers the request after the (short) ack wait. Real nats-server, a
real command in local mode, a real stdio MCP server, scripted models through the real ``openai`` SDK.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from test_executor import commands
from test_mcp_broker import lines, mcp_team, script, tool_server

from harness import Stack, assert_no_duplicates, of, team
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import ExecQueue, ToolQueue, WorkQueue
from massgen_es.events import (
    TERMINAL_EVENTS,
    AnswerPosted,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionStarted,
    Record,
    RunCompleted,
    Source,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallStarted,
)
from massgen_es.testing import eventually

ACK_WAIT_S = 2.0
WORKER = Source(service="agent_worker", instance="test")


def local_executor_backend() -> dict:
    """Backend keys for an agent whose commands the executor runs on this host (local mode). The one
    place these tests name the mode, so a change of local mode's name or isolation touches only this."""
    return {"cwd": "ws", "enable_mcp_command_line": True, "command_line_execution_mode": "local"}


def exec_team(fake, handler) -> dict:
    cfg, (model,) = team(fake, 1)
    cfg["agents"][0]["backend"].update(local_executor_backend())
    fake.default(model, handler)
    return cfg


def after_end(records: list) -> list:
    """Records stored after the run's terminal event (there must be none)."""
    end = next(i for i, r in enumerate(records) if isinstance(r.event, TERMINAL_EVENTS))
    return records[end + 1:]


async def quiet_past_the_ack_wait(s: Stack, run_id: str) -> list:
    """The run's log once several ack waits have passed after its end (time for any redelivery)."""
    await asyncio.sleep(3 * ACK_WAIT_S + 1)
    return await s.log.read(run_id)


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


# ---------------------------------------------------------------- killed mid-call


async def test_executor_killed_mid_command_runs_it_once_and_answers_interrupted(fresh_nats, fake, massgen_home):
    cfg = exec_team(fake, commands(({"command": "echo x >> count.txt; sleep 3"},)))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        s.broker(massgen_home)  # `cwd` also gives the agent the filesystem MCP server
        doomed = s.process("executor", "--ack-wait", f"{ACK_WAIT_S:g}")
        run_id = await s.submit(cfg)
        counter = massgen_home / "runs" / run_id / "workspaces" / "agent-a" / "count.txt"
        await eventually(lambda: counter.exists(), 60, "the command to start")
        kill(doomed)
        killed_at = time.monotonic()
        s.process("executor", "--ack-wait", f"{ACK_WAIT_S:g}")
        records = await s.wait_done(run_id, 90)
        answered_after_s = time.monotonic() - killed_at
        records = await quiet_past_the_ack_wait(s, run_id)
    assert counter.read_text() == "x\n"  # the command ran once, not again after the redelivery
    assert len(of(records, ExecutionStarted)) == 1
    [failed] = of(records, ExecutionFailed)
    assert failed.failure.type == "Interrupted" and "executor stopped" in failed.failure.message
    [answer] = of(records, AnswerPosted)  # the model read the failure and the run went on
    assert "executor stopped while this command ran" in answer.content and of(records, RunCompleted)
    assert after_end(records) == []
    assert answered_after_s < 30  # the ack wait, not 60 s
    assert_no_duplicates(run_id, records)


async def test_broker_killed_mid_tool_call_calls_it_once_and_answers_interrupted(
    fresh_nats, fake, tmp_path, massgen_home
):
    cfg = mcp_team(fake, 1, [script((("mcp__t__slow", {"seconds": 3}),))], mcp_servers=[tool_server(tmp_path)])
    calls = tmp_path / "calls"
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        doomed = s.process("mcp_broker", "--ack-wait", f"{ACK_WAIT_S:g}")
        run_id = await s.submit(cfg)
        await eventually(lambda: lines(calls) == ["slow"], 60, "the tool call to start")
        kill(doomed)
        s.process("mcp_broker", "--ack-wait", f"{ACK_WAIT_S:g}")
        await s.wait_done(run_id, 90)
        records = await quiet_past_the_ack_wait(s, run_id)
    assert lines(calls) == ["slow"]  # the server was called once, not again after the redelivery
    assert len(of(records, ToolCallStarted)) == 1
    [failed] = of(records, ToolCallFailed)
    assert failed.failure.type == "Interrupted" and "MCP broker stopped" in failed.failure.message
    [answer] = of(records, AnswerPosted)
    assert "MCP broker stopped while slow" in answer.content and of(records, RunCompleted)
    assert after_end(records) == []
    assert_no_duplicates(run_id, records)


# ---------------------------------------------------------------- the run ended before the redelivery


async def _ended_run_with_a_lost_request(s: Stack, cfg: dict, queue: WorkQueue, request) -> Record:
    """A run that recorded ``request``, whose first delivery was taken by a service that died (fetched,
    never acked), and that then ended."""
    run_id = await s.submit(cfg)
    draft = Draft(f"{run_id}:w:late:c0", request)
    [seq] = await s.log.append(run_id, "agent_worker", [draft], origin=WORKER)
    record = Record(seq=seq, id=draft.id, run_id=run_id, ts=time.time(), source=WORKER, causation_id=None,
                    event=request)
    await queue.push(record)
    lost = await queue.consumer(ACK_WAIT_S, 5)
    [msg] = await lost.fetch(1, timeout=5)
    assert msg.metadata.num_delivered == 1
    await lost.unsubscribe()  # the dead service's delivery: neither acked nor naked
    await s.log.append(run_id, "orchestrator", [Draft(f"{run_id}:end", RunCompleted(
        winner_id="agent-a", final_answer="done"))], origin=Source(service="orchestrator", instance="test"))
    return record


async def _settled(s: Stack, queue: WorkQueue, caplog, record: Record) -> None:
    """Wait until the service, on the second delivery, logged that it skips ``record`` and acked it."""

    def logged() -> bool:
        return any(record.id in m and "not run" in m for m in caplog.messages)

    async def acked() -> bool:
        info = await s.nc.jetstream().consumer_info(queue.stream, queue.durable)
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(logged, 30, "the redelivered request to be skipped")
    await eventually(acked, 10, "the redelivered request to be acked")


async def test_redelivered_command_of_an_ended_run_is_acked_not_run(fresh_nats, fake, massgen_home, caplog):
    cfg = exec_team(fake, commands())
    request = ExecutionRequested(call_id="c0", turn_id="agent-a.1", agent_id="agent-a", attempt=0,
                                 command="echo x >> late.txt")
    caplog.set_level(logging.WARNING, logger="massgen.executor")
    async with Stack(fresh_nats.url) as s:
        queue = ExecQueue(s.nc)
        record = await _ended_run_with_a_lost_request(s, cfg, queue, request)
        s.executor(massgen_home, ack_wait_s=ACK_WAIT_S)
        await _settled(s, queue, caplog, record)
        records = await quiet_past_the_ack_wait(s, record.run_id)
    assert not list((massgen_home / "runs").rglob("late.txt"))  # never run
    assert after_end(records) == []
    assert [m for m in caplog.messages if record.run_id in m and record.id in m and "execution.requested" in m
            and "not run" in m]


async def test_redelivered_tool_call_of_an_ended_run_is_acked_not_called(
    fresh_nats, fake, tmp_path, massgen_home, caplog
):
    cfg = mcp_team(fake, 1, [script()], mcp_servers=[tool_server(tmp_path)])
    request = ToolCallRequested(call_id="c0", turn_id="agent-a.1", agent_id="agent-a", attempt=0,
                                kind="coordination", server="t", tool="echo", arguments='{"text": "late"}')
    caplog.set_level(logging.WARNING, logger="massgen.mcp_broker")
    async with Stack(fresh_nats.url) as s:
        queue = ToolQueue(s.nc)
        record = await _ended_run_with_a_lost_request(s, cfg, queue, request)
        s.broker(massgen_home, ack_wait_s=ACK_WAIT_S)
        await _settled(s, queue, caplog, record)
        records = await quiet_past_the_ack_wait(s, record.run_id)
    assert lines(tmp_path / "calls") == [] and lines(tmp_path / "starts") == []  # no server, no call
    assert after_end(records) == []
    assert [m for m in caplog.messages if record.run_id in m and record.id in m and "tool.call_requested" in m
            and "not run" in m]

