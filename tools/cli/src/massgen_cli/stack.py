"""Reaching a stack: an external one (``MASSGEN_NATS_URL``, or a running ``massgen up``), or an
embedded one started for the command (nats-server child + services in-process).

Data lives under ``MASSGEN_HOME`` (default ``~/.massgen``): ``nats/`` is the JetStream store, so runs
survive the process (``nats-cluster/n1..nN``: the nodes' stores of ``massgen up --cluster N``);
``stack.json`` advertises a foreground ``massgen up``; ``logs/`` holds the nats-server and local-model logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client

from massgen_cli import services as registry
from massgen_es.bus.jetstream import JetStreamEventLog, connect, ensure_streams
from massgen_es.bus.server import NatsCluster, NatsServer
from massgen_es.errors import ConfigError
from massgen_es.ops import home
from massgen_es.subjects import SERVICE_NAMES

log = logging.getLogger("massgen.stack")


def _advertised_url() -> str | None:
    """URL of a running ``massgen up`` on this ``MASSGEN_HOME``, if its process is alive."""
    path = home() / "stack.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Stack:
    """A connection to a stack, and whatever this process started for it."""

    nc: Client
    url: str
    embedded: bool
    server: NatsServer | NatsCluster | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def log(self) -> JetStreamEventLog:
        """The event log of this stack."""
        return JetStreamEventLog(self.nc)


@contextlib.asynccontextmanager
async def open_stack(*, services: bool, name: str = "massgen-cli", cluster: int = 1) -> AsyncIterator[Stack]:
    """Connect to the configured stack, or start an embedded one.

    Args:
        services: when embedding, also run every service in-process (``submit``); ``replay`` and
            ``runs`` only need the log.
        name: the NATS connection name (what the server's monitoring shows for this client).
        cluster: when embedding, the number of nats-server nodes: 1 is one server, more form a
            JetStream cluster whose streams are replicated (issue 13 item 6).

    Raises:
        BusUnavailable: ``MASSGEN_NATS_URL`` is set but unreachable, or nats-server cannot start.
        ConfigError: ``cluster`` is 0 or negative.
    """
    url = os.environ.get("MASSGEN_NATS_URL") or _advertised_url()
    server: NatsServer | NatsCluster | None = None
    if url is None and cluster > 1:
        server = NatsCluster(home() / "nats-cluster", cluster, log_dir=home() / "logs" / "nats-cluster")
        await asyncio.to_thread(server.start)
        url = server.url
    elif url is None:
        if cluster < 1:
            raise ConfigError(f"--cluster {cluster}: give the number of NATS nodes, 1 (one server) or 3")
        server = NatsServer(home() / "nats", log_file=home() / "logs" / "nats-server.log")
        await asyncio.to_thread(server.start)
        url = server.url
    nc = await connect(url, name)
    stack = Stack(nc=nc, url=url, embedded=server is not None, server=server)
    try:
        await ensure_streams(nc.jetstream())
        if server is not None and services:
            stack.tasks = registry.start(nc, SERVICE_NAMES)
        yield stack
    finally:
        for t in stack.tasks:
            t.cancel()
        await asyncio.gather(*stack.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await nc.close()
        if server is not None:
            await asyncio.to_thread(server.stop)


def advertise(url: str) -> Path:
    """Write ``stack.json`` so other commands on this ``MASSGEN_HOME`` use this stack."""
    path = home() / "stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path
