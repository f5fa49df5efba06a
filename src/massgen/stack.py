"""Reaching a stack: an external one (``MASSGEN_NATS_URL``, or a running ``massgen up``), or an
embedded one started for the command (nats-server child + services in-process).

Data lives under ``MASSGEN_HOME`` (default ``~/.massgen``): ``nats/`` is the JetStream store, so runs
survive the process; ``stack.json`` advertises a foreground ``massgen up``; ``logs/`` holds the
nats-server and local-model logs.
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

from massgen.bus.jetstream import JetStreamEventLog, connect, ensure_streams
from massgen.bus.server import NatsServer
from massgen.errors import MassgenError

log = logging.getLogger("massgen.stack")


def home() -> Path:
    """``$MASSGEN_HOME`` or ``~/.massgen``."""
    return Path(os.environ.get("MASSGEN_HOME") or Path.home() / ".massgen")


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
    server: NatsServer | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def log(self) -> JetStreamEventLog:
        """The event log of this stack."""
        return JetStreamEventLog(self.nc)


def start_services(
    nc: Client, *, orchestrator: bool = True, workers: int = 1, broker: bool = True, executor: bool = True
) -> list[asyncio.Task]:
    """Run the orchestrator, agent workers, the MCP broker and the executor in this process, as tasks on
    the running loop.

    Raises:
        MassgenError: a service package is not installed (with the install command).
    """
    try:
        from massgen_agent_worker.worker import AgentWorker
        from massgen_executor.service import Executor
        from massgen_mcp_broker.service import McpBroker
        from massgen_orchestrator.service import OrchestratorService
    except ImportError as exc:
        raise MassgenError(f"service packages missing ({exc.name}); run `make install`") from None
    from massgen.bus.jetstream import TurnQueue

    from massgen.ops import heartbeat

    services: list = []
    if orchestrator:
        services.append(OrchestratorService(JetStreamEventLog(nc), TurnQueue(nc)))
    services.extend(AgentWorker(nc) for _ in range(workers))
    if broker:
        services.append(McpBroker(nc, home()))
    if executor:
        services.append(Executor(nc, home()))
    tasks = [asyncio.create_task(svc.run(), name=svc.source.service) for svc in services]
    tasks += [asyncio.create_task(heartbeat(nc, svc.source), name="heartbeat") for svc in services]
    return tasks


@contextlib.asynccontextmanager
async def open_stack(*, services: bool, name: str = "massgen-cli") -> AsyncIterator[Stack]:
    """Connect to the configured stack, or start an embedded one.

    Args:
        services: when embedding, also run the orchestrator and a worker in-process (``submit``, ``up``);
            ``replay`` and ``runs`` only need the log.

    Raises:
        BusUnavailable: ``MASSGEN_NATS_URL`` is set but unreachable, or nats-server cannot start.
    """
    url = os.environ.get("MASSGEN_NATS_URL") or _advertised_url()
    server = None
    if url is None:
        server = NatsServer(home() / "nats", log_file=home() / "logs" / "nats-server.log")
        await asyncio.to_thread(server.start)
        url = server.url
    nc = await connect(url, name)
    stack = Stack(nc=nc, url=url, embedded=server is not None, server=server)
    try:
        await ensure_streams(nc.jetstream())
        if server is not None and services:
            stack.tasks = start_services(nc)
        yield stack
    finally:
        for t in stack.tasks:
            t.cancel()
        await asyncio.gather(*stack.tasks, return_exceptions=True)
        if server is not None:
            _stop_local_model()
        with contextlib.suppress(Exception):
            await nc.close()
        if server is not None:
            await asyncio.to_thread(server.stop)


def _stop_local_model() -> None:
    with contextlib.suppress(ImportError):
        from massgen_agent_worker.providers import local

        local.stop_all()


def advertise(url: str) -> Path:
    """Write ``stack.json`` so other commands on this ``MASSGEN_HOME`` use this stack."""
    path = home() / "stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path
