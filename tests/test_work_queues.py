"""Work-queue consumers on a JetStream store made by an earlier version (``subjects.RENAMED_CONSUMERS``),
or with another ack wait."""

from __future__ import annotations

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from massgen_es import subjects
from massgen_es.bus.jetstream import ExecQueue, TurnQueue, connect, ensure_streams
from massgen_es.bus.server import NatsServer
from massgen_es.errors import BusError


async def _store_with_consumer(server: NatsServer, name: str):
    nc = await connect(server.url, "pytest")
    js = nc.jetstream()
    await ensure_streams(js)
    await js.add_consumer(subjects.TURNS_STREAM, ConsumerConfig(
        durable_name=name, filter_subject=subjects.TURNS_WILDCARD, ack_policy=AckPolicy.EXPLICIT))
    return nc, js


async def test_a_consumer_left_by_an_earlier_version_is_replaced(fresh_nats: NatsServer) -> None:
    nc, js = await _store_with_consumer(fresh_nats, "agent-workers")
    try:
        sub = await TurnQueue(nc).consumer(ack_wait_s=30, max_deliver=5)
        names = {c.name for c in await js.consumers_info(subjects.TURNS_STREAM)}
        assert names == {subjects.WORKER_CONSUMER}
        await sub.unsubscribe()
    finally:
        await nc.close()


async def test_another_consumer_on_the_work_queue_is_an_error_naming_the_fix(fresh_nats: NatsServer) -> None:
    nc, js = await _store_with_consumer(fresh_nats, "someone-else")
    try:
        with pytest.raises(BusError, match=r"already has a consumer for massgen\.turns\.>.*nats consumer rm"):
            await TurnQueue(nc).consumer(ack_wait_s=30, max_deliver=5)
        assert {c.name for c in await js.consumers_info(subjects.TURNS_STREAM)} == {"someone-else"}
    finally:
        await nc.close()


async def test_an_existing_consumer_takes_the_ack_wait_of_the_replica_that_binds_last(fresh_nats: NatsServer) -> None:
    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        queue = ExecQueue(nc)
        await (await queue.consumer(ack_wait_s=60, max_deliver=5)).unsubscribe()  # a store of an earlier version
        await (await queue.consumer(ack_wait_s=15, max_deliver=5)).unsubscribe()
        info = await nc.jetstream().consumer_info(queue.stream, queue.durable)
        assert info.config.ack_wait == 15
    finally:
        await nc.close()


async def test_a_pulled_item_carries_its_event_log_sequence(fresh_nats: NatsServer) -> None:
    """What lets ``once.prior`` read only what came after a request (issue 14 item 1)."""
    import asyncio

    from massgen_es.bus.jetstream import ToolQueue
    from massgen_es.events import Record, Source, ToolsListRequested

    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        queue = ToolQueue(nc)
        source = Source(service="agent_worker", instance="t")
        for seq, rid in ((42, "logged"), (0, "unlogged")):
            await queue.push(Record(seq=seq, id=rid, run_id="r1", ts=1.0, source=source, causation_id=None,
                                    event=ToolsListRequested(agent_id="a")))
        got: dict[str, int] = {}

        async def handle(record: Record, msg) -> None:
            got[record.id] = record.seq
            await msg.ack()

        serving = asyncio.create_task(queue.serve(handle, concurrency=2, ack_wait_s=15, max_deliver=2))
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.05)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        assert got == {"logged": 42, "unlogged": 0}
    finally:
        await nc.close()


async def test_a_consumer_stops_even_when_a_pull_swallows_its_cancellation(fresh_nats: NatsServer) -> None:
    """Python 3.11's ``wait_for`` under nats-py's ``fetch`` can end in a timeout instead of the cancel
    that landed with it (CPython gh-86296; seen in CI: an embedded worker kept pulling for 15 s after
    its cancel). Here every pull that is cancelled ends that way, and the consumer must stop anyway."""
    import asyncio

    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        queue = TurnQueue(nc)
        real_consumer = queue.consumer
        pulls = 0

        async def consumer(ack_wait_s: float, max_deliver: int):
            sub = await real_consumer(ack_wait_s, max_deliver)
            fetch = sub.fetch

            async def swallowing_fetch(batch: int, timeout: float):
                nonlocal pulls
                pulls += 1
                try:
                    return await fetch(batch, timeout=timeout)
                except asyncio.CancelledError:
                    raise TimeoutError from None  # what wait_for does when the timeout fires alongside

            sub.fetch = swallowing_fetch
            return sub

        queue.consumer = consumer

        async def handle(record, msg) -> None:
            await msg.ack()

        serving = asyncio.create_task(queue.serve(handle, concurrency=1, ack_wait_s=15, max_deliver=2))
        while pulls == 0:
            await asyncio.sleep(0.05)
        serving.cancel()
        done, _ = await asyncio.wait([serving], timeout=5)
        assert done == {serving} and serving.cancelled()
    finally:
        await nc.close()


async def test_retrying_stops_when_a_transient_error_was_a_swallowed_cancel() -> None:
    """``cluster.retrying`` tries again on a timeout; a timeout that was a cancel (CPython gh-86296 under
    nats-py's ``request``) must end it, not start another attempt (seen in CI: an orchestrator that
    outlived its cancel)."""
    import asyncio

    from massgen_es.bus import cluster

    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise TimeoutError from None  # what wait_for does when the timeout fires alongside

    task = asyncio.create_task(cluster.retrying(call, "appending", for_s=30))
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=3)
    assert done == {task} and task.cancelled() and calls == 1


async def test_following_the_log_stops_when_the_consumer_swallowed_its_cancel(fresh_nats: NatsServer) -> None:
    """A follower (the orchestrator) whose work on a record swallowed its task's cancel (an append's
    ``wait_for`` returning its result alongside the cancel) must not wait for the next record forever."""
    import asyncio

    from massgen_es.bus import Draft
    from massgen_es.bus.jetstream import JetStreamEventLog
    from massgen_es.events import RunCancelRequested, Source

    nc = await connect(fresh_nats.url, "pytest")
    try:
        await ensure_streams(nc.jetstream())
        log = JetStreamEventLog(nc)
        handled = asyncio.Event()

        async def follower() -> None:
            async for _ in log.follow("r1"):
                task = asyncio.current_task()
                assert task is not None
                handled.set()
                try:
                    await asyncio.sleep(10)  # work the cancel lands in ...
                except asyncio.CancelledError:
                    pass  # ... and that finishes anyway, as wait_for does when its result is ready

        following = asyncio.create_task(follower())
        await log.append("r1", "cli", [Draft("r1:x", RunCancelRequested(by="t"))],
                         origin=Source(service="cli", instance="t"))
        await asyncio.wait_for(handled.wait(), 10)
        following.cancel()
        done, _ = await asyncio.wait([following], timeout=5)
        assert done == {following} and following.cancelled()
    finally:
        await nc.close()
