"""The one registry of services: ``massgen serve NAME``, the embedded stack (``massgen submit``,
``massgen up``) and the compose images (whose command is ``massgen serve NAME``) all build and run a
service here, with the same defaults and the same heartbeat.

A service's package is imported only when that service is built, so an image that carries one service
and the command line runs ``massgen serve`` for that service alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict

from nats.aio.client import Client

from massgen_es.errors import MassgenError
from massgen_es.ops import Service, heartbeat, home
from massgen_es.subjects import SERVICE_NAMES, ServiceName


class ServiceKwargs(TypedDict, total=False):
    """The keyword arguments :meth:`ServiceOptions.kwargs` passes to a service constructor."""

    concurrency: int
    ack_wait_s: float


@dataclass(frozen=True)
class ServiceOptions:
    """Settings ``massgen serve`` passes on; None keeps the service's own default.

    Attributes:
        concurrency: items handled at once (turns, tool calls, commands); defaults: agent_worker 4,
            mcp_broker 16, executor 8; the orchestrator takes runs as they come.
        ack_wait_s: agent_worker, mcp_broker, executor: seconds without an ack or an in-progress heartbeat
            (sent every third of it while an item runs) before JetStream redelivers the item to another
            replica; default ``massgen_es.bus.jetstream.ACK_WAIT_S`` (15). The orchestrator pulls from
            no work queue and ignores it (issue 13 item 3).
    """

    concurrency: int | None = None
    ack_wait_s: float | None = None
    adopt: bool = True
    """orchestrator: take on every unfinished run in the log at start (compose, ``massgen up``); False
    for the stack one ``massgen submit`` starts (issue 15 item 6: an interrupted run continues only by
    ``massgen resume``)."""
    runs: tuple[str, ...] = ()
    """orchestrator: runs to take on at start even without ``adopt`` (the run of ``resume``/``fork``)."""

    def kwargs(self) -> ServiceKwargs:
        """The options that are set, as keyword arguments of a service constructor."""
        out: ServiceKwargs = {}
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        if self.ack_wait_s is not None:
            out["ack_wait_s"] = self.ack_wait_s
        return out


def _orchestrator(nc: Client, o: ServiceOptions) -> Service:
    from massgen_es.bus.jetstream import JetStreamEventLog, TurnQueue
    from massgen_orchestrator.service import OrchestratorService

    return OrchestratorService(JetStreamEventLog(nc), TurnQueue(nc), adopt=o.adopt, runs=o.runs)


def _agent_worker(nc: Client, o: ServiceOptions) -> Service:
    from massgen_agent_worker.worker import AgentWorker

    return AgentWorker(nc, **o.kwargs())


def _mcp_broker(nc: Client, o: ServiceOptions) -> Service:
    from massgen_mcp_broker.service import McpBroker

    return McpBroker(nc, home(), **o.kwargs())


def _executor(nc: Client, o: ServiceOptions) -> Service:
    from massgen_executor.service import Executor

    return Executor(nc, home(), **o.kwargs())


FACTORIES: dict[ServiceName, Callable[[Client, ServiceOptions], Service]] = {
    "orchestrator": _orchestrator,
    "agent_worker": _agent_worker,
    "mcp_broker": _mcp_broker,
    "executor": _executor,
}
assert tuple(FACTORIES) == SERVICE_NAMES  # one entry per name of the kernel's ServiceName


def build(name: ServiceName, nc: Client, options: ServiceOptions | None = None) -> Service:
    """The service ``name`` on connection ``nc``.

    Raises:
        MassgenError: its package is not installed (the message names the install command).
    """
    try:
        return FACTORIES[name](nc, options or ServiceOptions())
    except ModuleNotFoundError as exc:  # not a broken import inside an installed package: that raises as is
        raise MassgenError(
            f"service {name} cannot start: module {exc.name} is not installed; run `make install`"
        ) from None


def start(nc: Client, names: Iterable[ServiceName], options: ServiceOptions | None = None) -> list[asyncio.Task]:
    """Build each service, and run it and its heartbeat as tasks on the running loop.

    Raises:
        MassgenError: a service's package is not installed.
    """
    built = [build(name, nc, options) for name in names]
    return [
        *(asyncio.create_task(svc.run(), name=svc.source.service) for svc in built),
        *(asyncio.create_task(heartbeat(nc, svc.source), name=f"{svc.source.service}-heartbeat") for svc in built),
    ]
