"""Reaching a stack: an external one (``MASSGEN_NATS_URL``, or a running ``massgen up``), or an
embedded one started for the command (nats-server child, the services in-process except the executor,
which runs as a child process whose environment holds no secrets: :mod:`massgen_cli.child_service`).

Data lives under ``MASSGEN_HOME`` (default ``~/.massgen``): ``nats/`` is the JetStream store, so runs
survive the process (``nats-cluster/n1..nN``: the nodes' stores of ``massgen up --cluster N``);
``stack.json`` advertises a foreground ``massgen up``; ``logs/`` holds the nats-server, executor and
local-model logs.
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
from massgen_cli.child_service import run_child
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
            stack.tasks = start_services(stack, adopt=False)  # this command's run only
        yield stack
    finally:
        for t in stack.tasks:
            t.cancel()
        if stack.tasks:  # bounded: a service stuck in its shutdown must not keep the command from ending
            _, stuck = await asyncio.wait(stack.tasks, timeout=_STOP_S)
            if stuck:
                log.warning("service %s did not stop within %g s of its cancellation; this process's tasks "
                            "wait in:\n%s", ", ".join(t.get_name() for t in stuck), _STOP_S,
                            "\n".join(awaiting(t) for t in asyncio.all_tasks() if not t.done()))
        with contextlib.suppress(Exception):
            await nc.close()
        if server is not None:
            await asyncio.to_thread(server.stop)


_STOP_S = 15.0
"""Seconds the services get to stop (the executor child: 10 s SIGTERM grace, then SIGKILL)."""

CHILD_SERVICES = ("executor",)
"""Services the embedded stack runs as child processes with a clean environment (issue 13 item 2):
the executor runs agents' commands, so it must hold no provider key or MCP secret."""


def awaiting(task: asyncio.Task) -> str:
    """Where ``task`` waits: ``task NAME``, then its chain of awaits, one ``file:line in function`` a
    line, innermost last (``Task.get_stack`` shows only the outermost frame of a coroutine). The chain
    ends at a future, which does not say what it waits for; the warning lists every task for that."""
    lines = [f"task {task.get_name()}"]
    node: object = task.get_coro()
    while node is not None and len(lines) < 40:
        frame = getattr(node, "cr_frame", None) or getattr(node, "ag_frame", None) or getattr(node, "gi_frame", None)
        if frame is None:
            lines.append(f"  {node!r}"[:200])
            break
        lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        node = getattr(node, "cr_await", None) or getattr(node, "ag_await", None) or getattr(node, "gi_yieldfrom", None)
    return "\n".join(lines)


def start_services(
    stack: Stack, metrics_port: int | None = None, *, adopt: bool = True, runs: tuple[str, ...] = ()
) -> list[asyncio.Task]:
    """Run every service for the embedded ``stack``: :data:`CHILD_SERVICES` as child processes
    (``massgen serve``, log in ``<MASSGEN_HOME>/logs/<name>.log``), the others in this process. Each is
    a task named after its service; a child that exits ends its task with a :class:`MassgenError`,
    as a crashed in-process service does. With ``metrics_port``, the child serves its metrics and
    health there (``massgen serve --metrics-port``; one child service at most then); without, none.
    ``adopt``, ``runs``: which of the log's unfinished runs the orchestrator takes on at start
    (``ServiceOptions``).

    Raises:
        MassgenError: a service's package is not installed.
    """
    tasks = registry.start(stack.nc, [n for n in SERVICE_NAMES if n not in CHILD_SERVICES],
                           registry.ServiceOptions(adopt=adopt, runs=runs))
    for name in CHILD_SERVICES:
        child = run_child(name, stack.url, home() / "logs" / f"{name}.log", metrics_port=metrics_port)
        tasks.append(asyncio.create_task(child, name=name))
    return tasks


def advertise(url: str) -> Path:
    """Write ``stack.json`` so other commands on this ``MASSGEN_HOME`` use this stack."""
    path = home() / "stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path
