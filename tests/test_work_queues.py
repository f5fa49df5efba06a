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
