"""Operations: what a service is, where data lives, service heartbeats, ``massgen status``, and
JSON-lines logs.

Each service writes a heartbeat every few seconds into the key-value bucket ``MASSGEN_SERVICES``
(entries expire after ``HEARTBEAT_TTL_S``, so a dead instance disappears on its own); ``status`` reads
them with the work queues' depth and redeliveries and the streams' sizes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from massgen_es import subjects
from massgen_es.bus import cluster, natsapi
from massgen_es.events import Source

HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TTL_S = 30.0
log = logging.getLogger("massgen.ops")


class Service(Protocol):
    """What every service is to the process that runs it (``massgen_cli.services`` builds them).

    Attributes:
        source: who the service writes as (``Source.service`` is its one name, ``subjects.ServiceName``).
    """

    source: Source

    async def run(self) -> None:
        """Serve until cancelled; on cancellation, hand in-flight work back and return."""
        ...


def home() -> Path:
    """Where a stack's data lives: ``$MASSGEN_HOME`` or ``~/.massgen`` (the JetStream store, logs,
    run workspaces)."""
    return Path(os.environ.get("MASSGEN_HOME") or Path.home() / ".massgen")


async def _services_bucket(nc: Client) -> KeyValue:
    js = natsapi.jetstream(nc)
    try:
        return await js.key_value(subjects.SERVICES_BUCKET)
    except BucketNotFoundError:
        return await natsapi.admin(js).create_key_value(
            KeyValueConfig(
                bucket=subjects.SERVICES_BUCKET, history=1, ttl=HEARTBEAT_TTL_S, storage=StorageType.MEMORY,
                replicas=cluster.replicas(nc),
            )
        )


async def heartbeat(nc: Client, source: Source, every_s: float = HEARTBEAT_EVERY_S) -> None:
    """Write this instance's heartbeat until cancelled (failures are logged and retried)."""
    key = re.sub(r"[^A-Za-z0-9_=-]", "_", f"{source.service}-{source.instance}")
    started = time.time()
    while True:
        try:
            kv = await _services_bucket(nc)
            body = {"service": source.service, "instance": source.instance, "ts": time.time(), "started": started}
            await kv.put(key, json.dumps(body).encode())
        except Exception as exc:  # the service keeps working without its heartbeat
            log.warning("heartbeat failed: %s", exc)
        await asyncio.sleep(every_s)


async def _heartbeats(nc: Client, now: float) -> list[dict[str, Any]]:
    kv = await _services_bucket(nc)
    found: list[dict[str, Any]] = []
    for key in await natsapi.key_lister(kv).keys():
        try:
            entry = await kv.get(key)
        except NotFoundError:  # expired (max age) or deleted between keys() and get()
            continue
        info = json.loads(entry.value or b"{}")
        found.append({**info, "age_s": round(now - info.get("ts", now), 1)})
    return found


async def queue_depths(nc: Client, consumers: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Each work queue's durable consumer (of the queues pulled by ``consumers``, service names, when
    given: a service's NATS user may read only its own consumer's info), from JetStream consumer info:
    ``stream``, ``consumer`` (the service that pulls it), ``pending`` (items not yet delivered),
    ``in_flight`` (delivered, not acked) and ``redelivered`` (delivered more than once, not acked yet);
    the three counts are None while the consumer is missing or has no leader (a cluster node is down).

    Raises:
        Exception: whatever nats-py raises for an error other than a missing consumer or a transient one.
    """
    js = natsapi.jetstream(nc)
    queues: list[dict[str, Any]] = []
    for q in subjects.WORK_QUEUES:
        if consumers is not None and q.consumer not in consumers:
            continue
        stream, durable = q.stream, q.consumer
        try:
            c = await js.consumer_info(stream, durable)
            queues.append({"stream": stream, "consumer": durable, "pending": c.num_pending,
                           "in_flight": c.num_ack_pending, "redelivered": c.num_redelivered})
        except Exception as exc:  # missing, or no leader while a node is down: shown as unknown
            if not isinstance(exc, NotFoundError | TimeoutError) and not cluster.transient(exc):
                raise
            queues.append({"stream": stream, "consumer": durable, "pending": None, "in_flight": None,
                           "redelivered": None})
    return queues


async def status(nc: Client, url: str | None = None) -> dict[str, Any]:
    """Connected instances (last heartbeat), work queues (depth, in flight, redeliveries), stream sizes,
    and, given the stack's ``url`` (one server or a cluster's nodes, comma-separated), the NATS nodes'
    and streams' health under ``"cluster"`` (:func:`massgen_es.bus.cluster.health`; issue 13 item 6)."""
    js = natsapi.jetstream(nc)
    now = time.time()
    services: list[dict[str, Any]] = []
    for attempt in range(3):  # a heartbeat read can fail transiently on a loaded server: try again
        try:
            services = await _heartbeats(nc, now)
            break
        except Exception as exc:  # noqa: BLE001 - nats-py raises several types here
            if "no keys" in str(exc).lower():
                break  # no heartbeat yet: an empty list, not an error
            log.warning("reading heartbeats (attempt %d of 3): %s: %s", attempt + 1, type(exc).__name__, exc)
            await asyncio.sleep(0.2)
    queues = await queue_depths(nc)
    streams: list[dict[str, Any]] = []
    for name in (subjects.EVENTS_STREAM, subjects.TURNS_STREAM, subjects.TOOLS_STREAM, subjects.EXEC_STREAM):
        try:
            s = (await js.stream_info(name)).state
            streams.append({"stream": name, "messages": s.messages, "bytes": s.bytes})
        except Exception as exc:
            if not isinstance(exc, NotFoundError | TimeoutError) and not cluster.transient(exc):
                raise
            streams.append({"stream": name, "messages": None, "bytes": None})
    out: dict[str, Any] = {"services": sorted(services, key=lambda s: (s["service"], s["instance"])), "queues": queues,
           "streams": streams}
    if url is not None:
        out["cluster"] = await cluster.health(nc, url)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` (and ``exc`` with a traceback)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "service": self.service,
               "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
