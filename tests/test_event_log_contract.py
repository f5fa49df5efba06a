"""The EventLog contract, run against both implementations (InMemoryEventLog is trusted because it passes it).

The session nats-server is shared, so every test uses its own run id and draft ids derived from it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js.api import RetentionPolicy, StorageType

from massgen_es import subjects
from massgen_es.bus import Draft, EventLog
from massgen_es.bus.jetstream import JetStreamEventLog
from massgen_es.bus.memory import InMemoryEventLog
from massgen_es.errors import ConcurrencyConflict
from massgen_es.events import (
    AgentDropped,
    Failure,
    Record,
    RunFailed,
    Source,
    TimerFired,
    UnknownEvent,
    VoteCast,
)

ORIGIN = Source(service="pytest", instance="contract-1")


@pytest.fixture(params=["memory", "jetstream"])
def event_log(request: pytest.FixtureRequest) -> EventLog:
    if request.param == "memory":
        return InMemoryEventLog()
    return JetStreamEventLog(request.getfixturevalue("nc"))


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex


def _drafts(run: str, n: int, tag: str = "d", causation_id: str | None = None) -> list[Draft]:
    return [
        Draft(f"{run}:{tag}{i}", AgentDropped(agent_id=f"a{i}", reason="test", failed_turns=i), causation_id)
        for i in range(n)
    ]


async def _ids(log: EventLog, run: str) -> list[str]:
    return [r.id for r in await log.read(run)]


async def test_append_then_read_returns_records_in_order_with_metadata(event_log: EventLog, run: str):
    drafts = _drafts(run, 3, causation_id="cause-1")
    seqs = [(await event_log.append(run, "agent_worker", [d], origin=ORIGIN))[0] for d in drafts]
    records = await event_log.read(run)
    assert [r.seq for r in records] == seqs == sorted(set(seqs))
    assert [r.id for r in records] == [d.id for d in drafts]
    assert all(r.run_id == run and r.source == ORIGIN and r.causation_id == "cause-1" for r in records)


async def test_read_run_id_returns_only_that_run(event_log: EventLog, run: str):
    other = uuid.uuid4().hex
    await event_log.append(run, "agent_worker", _drafts(run, 1), origin=ORIGIN)
    await event_log.append(other, "agent_worker", _drafts(other, 1), origin=ORIGIN)
    await event_log.append(run, "orchestrator", _drafts(run, 1, tag="o"), origin=ORIGIN)
    assert await _ids(event_log, run) == [f"{run}:d0", f"{run}:o0"]
    assert await _ids(event_log, other) == [f"{other}:d0"]


async def test_read_after_seq_returns_only_later_events(event_log: EventLog, run: str):
    seqs = [(await event_log.append(run, "agent_worker", [d], origin=ORIGIN))[0] for d in _drafts(run, 3)]
    later = await event_log.read(run, after_seq=seqs[0])
    assert [r.seq for r in later] == seqs[1:]
    assert await event_log.read(run, after_seq=seqs[-1]) == []


async def test_read_after_last_event_of_run_returns_promptly(event_log: EventLog, run: str):
    other = uuid.uuid4().hex
    [last] = await event_log.append(run, "agent_worker", _drafts(run, 1), origin=ORIGIN)
    await event_log.append(other, "agent_worker", _drafts(other, 1), origin=ORIGIN)
    assert await asyncio.wait_for(event_log.read(run, after_seq=last), timeout=2) == []


async def test_read_without_run_id_includes_every_run(event_log: EventLog, run: str):
    other = uuid.uuid4().hex
    [s1] = await event_log.append(run, "agent_worker", _drafts(run, 1), origin=ORIGIN)
    [s2] = await event_log.append(other, "agent_worker", _drafts(other, 1), origin=ORIGIN)
    everything = await event_log.read(after_seq=s1 - 1)
    assert [(r.seq, r.run_id) for r in everything][:2] == [(s1, run), (s2, other)]


async def test_draft_appended_twice_is_stored_once_with_same_seq(event_log: EventLog, run: str):
    [draft] = _drafts(run, 1)
    first = await event_log.append(run, "agent_worker", [draft], origin=ORIGIN)
    second = await event_log.append(run, "agent_worker", [draft], origin=ORIGIN)
    assert first == second
    assert await _ids(event_log, run) == [draft.id]


async def test_batch_appended_twice_is_stored_once_with_same_seqs(event_log: EventLog, run: str):
    drafts = _drafts(run, 2)
    first = await event_log.append(run, "orchestrator", drafts, origin=ORIGIN)
    second = await event_log.append(run, "orchestrator", drafts, origin=ORIGIN)
    assert first == second
    assert await _ids(event_log, run) == [d.id for d in drafts]


async def test_decision_retried_after_it_landed_returns_its_seqs(event_log: EventLog, run: str):
    # The orchestrator retries a decision whose ack it lost: same ids, same expected last sequence.
    [before] = await event_log.append(run, "orchestrator", _drafts(run, 1, tag="first"), origin=ORIGIN)
    drafts = _drafts(run, 2, tag="decision")
    first = await event_log.append(run, "orchestrator", drafts, origin=ORIGIN, expect_last_seq=before)
    again = await event_log.append(run, "orchestrator", drafts, origin=ORIGIN, expect_last_seq=before)
    assert first == again
    assert await _ids(event_log, run) == [f"{run}:first0"] + [d.id for d in drafts]


async def test_one_fenced_event_retried_after_it_landed_returns_its_seq(event_log: EventLog, run: str):
    # One event with an expectation is a plain publish, not a batch (a broker's started marker and
    # outcome, a lone decision): its repeat is deduplicated before the expectation is checked.
    [before] = await event_log.append(run, "orchestrator", _drafts(run, 1, tag="first"), origin=ORIGIN)
    one = _drafts(run, 1, tag="marker")
    first = await event_log.append(run, "executor", one, origin=ORIGIN, expect_last_seq=before,
                                   expect_of="orchestrator")
    await event_log.append(run, "executor", _drafts(run, 1, tag="next"), origin=ORIGIN)
    again = await event_log.append(run, "executor", one, origin=ORIGIN, expect_last_seq=before,
                                   expect_of="orchestrator")
    assert first == again
    assert [r.id for r in await event_log.read(run, source="executor")] == [f"{run}:marker0", f"{run}:next0"]


async def test_batch_with_correct_expect_last_seq_lands_contiguously(event_log: EventLog, run: str):
    [before] = await event_log.append(run, "orchestrator", _drafts(run, 1, tag="first"), origin=ORIGIN)
    drafts = _drafts(run, 3, tag="batch")
    seqs = await event_log.append(run, "orchestrator", drafts, origin=ORIGIN, expect_last_seq=before)
    assert seqs == list(range(seqs[0], seqs[0] + 3)) and seqs[0] > before
    records = await event_log.read(run, after_seq=before)
    assert [(r.seq, r.id) for r in records] == [(s, d.id) for s, d in zip(seqs, drafts, strict=True)]


async def test_wrong_expect_last_seq_raises_conflict_and_writes_nothing(event_log: EventLog, run: str):
    [last] = await event_log.append(run, "orchestrator", _drafts(run, 1, tag="first"), origin=ORIGIN)
    with pytest.raises(ConcurrencyConflict):
        await event_log.append(
            run, "orchestrator", _drafts(run, 2, tag="lost"), origin=ORIGIN, expect_last_seq=last + 1000
        )
    assert await _ids(event_log, run) == [f"{run}:first0"]
    assert await event_log.last_seq(run, "orchestrator") == last


async def test_expect_last_seq_zero_succeeds_on_fresh_subject(event_log: EventLog, run: str):
    seqs = await event_log.append(run, "orchestrator", _drafts(run, 2), origin=ORIGIN, expect_last_seq=0)
    assert await event_log.last_seq(run, "orchestrator") == seqs[-1]


async def test_expect_last_seq_zero_fails_on_used_subject(event_log: EventLog, run: str):
    await event_log.append(run, "orchestrator", _drafts(run, 1, tag="first"), origin=ORIGIN)
    with pytest.raises(ConcurrencyConflict):
        await event_log.append(run, "orchestrator", _drafts(run, 1, tag="lost"), origin=ORIGIN, expect_last_seq=0)
    assert await _ids(event_log, run) == [f"{run}:first0"]


async def test_last_seq_is_per_run_and_source_subject(event_log: EventLog, run: str):
    other = uuid.uuid4().hex
    [orch_seq] = await event_log.append(run, "orchestrator", _drafts(run, 1, tag="o"), origin=ORIGIN)
    [agent_seq] = await event_log.append(run, "agent_worker", _drafts(run, 1, tag="a"), origin=ORIGIN)
    await event_log.append(other, "orchestrator", _drafts(other, 1), origin=ORIGIN)
    assert await event_log.last_seq(run, "orchestrator") == orch_seq
    assert await event_log.last_seq(run, "agent_worker") == agent_seq
    assert await event_log.last_seq(run, "timer") == 0


async def test_last_and_read_by_source_see_one_writers_subject(event_log: EventLog, run: str):
    await event_log.append(run, "orchestrator", _drafts(run, 2, tag="o"), origin=ORIGIN)
    await event_log.append(run, "executor", _drafts(run, 2, tag="x"), origin=ORIGIN)
    last = await event_log.last(run, "orchestrator")
    assert last is not None and last.id == f"{run}:o1" and last.run_id == run
    assert await event_log.last(run, "timer") is None
    assert [r.id for r in await event_log.read(run, source="executor")] == [f"{run}:x0", f"{run}:x1"]


async def test_expect_of_fences_an_append_on_another_writers_subject(event_log: EventLog, run: str):
    """What ``once.append_unless_ended`` relies on (issue 13 item 3): an executor's append expects the
    orchestrator's subject to end where it was read, and fails if the orchestrator wrote meanwhile."""
    seen = await event_log.last_seq(run, "orchestrator")  # 0: nothing there yet
    [first] = await event_log.append(run, "executor", _drafts(run, 1, tag="x"), origin=ORIGIN,
                                     expect_last_seq=seen, expect_of="orchestrator")
    await event_log.append(run, "orchestrator", _drafts(run, 1, tag="o"), origin=ORIGIN)
    with pytest.raises(ConcurrencyConflict):
        await event_log.append(run, "executor", _drafts(run, 1, tag="late"), origin=ORIGIN,
                               expect_last_seq=seen, expect_of="orchestrator")
    now = await event_log.last_seq(run, "orchestrator")
    await event_log.append(run, "executor", _drafts(run, 1, tag="y"), origin=ORIGIN, expect_last_seq=now,
                           expect_of="orchestrator")
    assert [r.id for r in await event_log.read(run, source="executor")] == [f"{run}:x0", f"{run}:y0"]
    assert first > 0


async def test_follow_yields_existing_then_live_events(event_log: EventLog, run: str):
    existing = _drafts(run, 2, tag="old")
    live = _drafts(run, 1, tag="new")
    for d in existing:
        await event_log.append(run, "agent_worker", [d], origin=ORIGIN)
    seen: asyncio.Queue[Record] = asyncio.Queue()

    async def consume(stream: AsyncIterator[Record]) -> None:
        async for record in stream:
            await seen.put(record)

    stream = event_log.follow(run)
    task = asyncio.create_task(consume(stream))
    try:
        got = [(await asyncio.wait_for(seen.get(), 10)).id for _ in existing]
        await event_log.append(run, "agent_worker", live, origin=ORIGIN)
        got.append((await asyncio.wait_for(seen.get(), 10)).id)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
    assert got == [d.id for d in existing + live]


async def test_follow_with_source_yields_only_that_writers_events(event_log: EventLog, run: str):
    await event_log.append(run, "agent_worker", _drafts(run, 1, tag="a"), origin=ORIGIN)
    await event_log.append(run, "mcp_broker", _drafts(run, 1, tag="m"), origin=ORIGIN)
    stream = event_log.follow(run, source="mcp_broker")
    try:
        first = await asyncio.wait_for(anext(stream), 10)
        await event_log.append(run, "agent_worker", _drafts(run, 1, tag="a2"), origin=ORIGIN)
        await event_log.append(run, "mcp_broker", _drafts(run, 1, tag="m2"), origin=ORIGIN)
        second = await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    assert [first.id, second.id] == [f"{run}:m0", f"{run}:m20"]


async def test_events_round_trip_through_the_codec(event_log: EventLog, run: str):
    events = [
        VoteCast(voter_id="a", target_id="b", target_anon="agent2", reason="r", version=1, turn_id="t"),
        RunFailed(reason="x", failure=Failure(type="E", message="m", cause=Failure(type="C", message="c"))),
        TimerFired(name="run_deadline"),
    ]
    drafts = [Draft(f"{run}:e{i}", e) for i, e in enumerate(events)]
    await event_log.append(run, "orchestrator", drafts, origin=ORIGIN)
    assert [r.event for r in await event_log.read(run)] == events


# ---------------------------------------------------------------- JetStream only


async def test_jetstream_streams_are_configured(nc):
    js = nc.jetstream()
    events = (await js.stream_info(subjects.EVENTS_STREAM)).config
    assert events.storage == StorageType.FILE
    assert events.deny_delete and events.deny_purge and events.allow_atomic
    turns = (await js.stream_info(subjects.TURNS_STREAM)).config
    assert turns.retention == RetentionPolicy.WORK_QUEUE


async def test_jetstream_malformed_message_reads_as_invalid_unknown_event(nc, run: str):
    log = JetStreamEventLog(nc)
    await nc.jetstream().publish(subjects.run_subject(run, "cli"), b"{not an envelope")
    [draft] = _drafts(run, 1)
    await log.append(run, "agent_worker", [draft], origin=ORIGIN)
    bad, good = await log.read(run)
    assert isinstance(bad.event, UnknownEvent) and bad.event.type == "invalid"
    assert bad.type == "invalid" and bad.run_id == run
    assert good.id == draft.id
