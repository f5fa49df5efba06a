"""The metrics and health endpoint of a service process (issue 14 item 4): ``GET /metrics`` (Prometheus
text format, :class:`massgen_cli.metrics.EventMetrics`) and ``GET /healthz`` on one HTTP port.

``/healthz`` answers 200 ``{"status": "ok", ...}`` while the process's NATS connection is up and every
service task of the process is running, and 503 ``{"status": "unhealthy", "reason": ...}`` otherwise
(NATS reconnecting or closed, a service that stopped, with its error). It is served on the services'
own event loop, so a loop that is blocked does not answer at all, and a healthcheck with a timeout
reports it.

The server is a few lines of asyncio rather than ``prometheus_client.start_http_server``: that one runs
in a thread, while the work queues' depth is read from NATS on the loop at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from collections.abc import AsyncIterator, Collection, Sequence

from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from massgen_cli.metrics import EventMetrics
from massgen_es import observe
from massgen_es.errors import MassgenError

log = logging.getLogger("massgen.metrics")
_READ_TIMEOUT_S = 5.0
_QUEUE_READ_TIMEOUT_S = 3.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class MetricsServer:
    """``/metrics`` and ``/healthz`` for the services of this process.

    Args:
        nc: the services' NATS connection (its state is the health's first half; the queue depths are read
            through it).
        tasks: the services' tasks (and their heartbeats); one that is done makes the process unhealthy.
        metrics: the process's metrics (it must be an observer, :func:`massgen_es.observe.add`, to move).
        host: the address to bind: ``0.0.0.0`` in a container, ``127.0.0.1`` on a laptop.
        port: the TCP port; 0 picks a free one (:attr:`port` tells which).
    """

    def __init__(self, nc: Client, tasks: Sequence[asyncio.Task[object]], metrics: EventMetrics, host: str,
                 port: int) -> None:
        self.nc, self.tasks, self.metrics, self.host, self.port = nc, tasks, metrics, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on ``host:port``.

        Raises:
            MassgenError: the port is in use or cannot be bound; the message names the option to change.
        """
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            hint = ("the port is in use: pick another with --metrics-port (or MASSGEN_METRICS_PORT), or stop "
                    f"what listens there (`ss -ltnp 'sport = :{self.port}'`)") if exc.errno == errno.EADDRINUSE \
                else "pick another --metrics-port (or MASSGEN_METRICS_PORT)"
            raise MassgenError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}; {hint}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close the open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def health(self) -> tuple[int, dict[str, object]]:
        """``(200, {"status": "ok", ...})`` or ``(503, {"status": "unhealthy", "reason": ...})``: see the
        module's docstring."""
        nats = "connected" if self.nc.is_connected else "reconnecting" if self.nc.is_reconnecting else "closed"
        services = {t.get_name(): "running" if not t.done() else _ended(t) for t in self.tasks}
        body: dict[str, object] = {"nats": nats, "services": services}
        if nats != "connected":
            return 503, {"status": "unhealthy", "reason": f"NATS connection is {nats}", **body}
        stopped = [f"{name}: {state}" for name, state in services.items() if state != "running"]
        if stopped:
            return 503, {"status": "unhealthy", "reason": "service task ended: " + "; ".join(stopped), **body}
        return 200, {"status": "ok", **body}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"GET /metrics or /healthz\n"
            elif path == "/metrics":
                await self.metrics.refresh_queues(self.nc, _QUEUE_READ_TIMEOUT_S)
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
            elif path == "/healthz":
                status, info = self.health()
                ctype, body = "application/json", json.dumps(info).encode() + b"\n"
            else:
                status, ctype, body = 404, "text/plain", b"not found: GET /metrics or /healthz\n"
            writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                ConnectionError):
            pass  # a client that sent no complete request, or left: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _ended(task: asyncio.Task[object]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return f"failed: {type(exc).__name__}: {exc}" if exc is not None else "exited"


@contextlib.asynccontextmanager
async def serving(
    nc: Client, services: Collection[str], tasks: Sequence[asyncio.Task[object]], port: int | None,
    host: str = "0.0.0.0",  # all interfaces: in a container; `massgen up` passes 127.0.0.1
) -> AsyncIterator[MetricsServer | None]:
    """Serve ``/metrics`` and ``/healthz`` for ``services`` (their names) and their ``tasks`` on
    ``host:port`` while inside; with ``port`` None, nothing (yields None). The process's metrics
    observe the event log and the work queues (:mod:`massgen_es.observe`) only while inside.

    Raises:
        MassgenError: the port cannot be bound.
    """
    if port is None:
        yield None
        return
    metrics = EventMetrics(services)
    server = MetricsServer(nc, tasks, metrics, host, port)
    await server.start()
    observe.add(metrics)
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, server.port)
    try:
        yield server
    finally:
        observe.remove(metrics)
        await server.stop()


__all__ = ["MetricsServer", "serving"]
