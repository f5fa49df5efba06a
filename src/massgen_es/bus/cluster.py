"""Past one NATS server (issue 13 item 6): how many replicas every stream, bucket and work queue gets, the
retry of JetStream calls across a leader election, and the cluster's health for ``massgen status``.

- **Replicas**, decided here only: ``MASSGEN_NATS_REPLICAS`` when set, else 3 when the connected server
  belongs to a cluster (its INFO names one), else 1. R3 is NATS's standard choice: one node of three may
  fail and every stream keeps a quorum. Work-queue consumers inherit their stream's replicas.
- **Retries**: while a stream's leader is being elected (a node died), a publish gets no answer, "no
  responders" or a 503; :func:`retrying` repeats the same call, and since every append carries its
  ``Nats-Msg-Id``, a repeat of a publish that did land is dropped by the server, never stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from massgen_es import subjects
from massgen_es.bus import natsapi
from massgen_es.errors import BusError, ConfigError

REPLICAS_ENV = "MASSGEN_NATS_REPLICAS"
CLUSTER_REPLICAS = 3
_MAX_REPLICAS = 5  # JetStream's limit
RETRY_FOR_S = 30.0  # a leader election takes a few seconds; a reconnect to another node about one
_log = logging.getLogger("massgen.bus")
T = TypeVar("T")

# What the cluster's health covers: the streams behind every stream, bucket and work queue.
STREAMS = (
    subjects.EVENTS_STREAM, subjects.TURNS_STREAM, subjects.TOOLS_STREAM, subjects.EXEC_STREAM,
    f"KV_{subjects.SERVICES_BUCKET}", f"KV_{subjects.SECRETS_BUCKET}", f"OBJ_{subjects.OBJECTS_BUCKET}",
)


def server_urls(url: str) -> list[str]:
    """The servers of a ``MASSGEN_NATS_URL``: one URL, or several separated by commas (the nodes of a
    cluster, each with its credentials), as nats-py's ``servers=[...]`` takes them.

    Raises:
        ConfigError: the list is empty or has an empty entry.
    """
    urls = [u.strip() for u in url.split(",")]
    if not url.strip() or not all(urls):
        raise ConfigError(f"NATS URL {redact(url)!r} has an empty entry; use nats://host:port, or several "
                          "separated by commas (one per cluster node)")
    return urls


def redact(url: str) -> str:
    """``url`` (one or a comma-separated list) without passwords: safe to print and to log."""
    out: list[str] = []
    for u in url.split(","):
        parts = urlsplit(u.strip())
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        out.append(urlunsplit(parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port else netloc)))
    return ",".join(out)


def replicas(nc: Client) -> int:
    """The replica count of every stream, bucket and work queue on ``nc``'s server (see the module doc).

    Raises:
        ConfigError: ``MASSGEN_NATS_REPLICAS`` is not a whole number from 1 to 5.
    """
    raw = os.environ.get(REPLICAS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_REPLICAS:
            raise ConfigError(f"{REPLICAS_ENV}={raw!r}: give a whole number from 1 to {_MAX_REPLICAS} "
                              "(3 for a three-node cluster), or unset it to follow the server")
        return int(raw)
    return CLUSTER_REPLICAS if natsapi.server_info(nc).get("cluster") else 1


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is what JetStream answers while a leader is being elected or the client is moving
    to another node: no answer in time, no responders, or 503 (unavailable)."""
    if isinstance(exc, APIError):
        return isinstance(exc, ServiceUnavailableError) or exc.code == 503
    return isinstance(exc, TimeoutError | NoStreamResponseError | nats.errors.NoRespondersError
                      | nats.errors.ConnectionReconnectingError)


def raise_if_cancelled() -> None:
    """Raise the cancellation this task was sent but did not get. Python 3.11's ``asyncio.wait_for``
    (under nats-py's ``fetch`` and ``request``) returns its result or times out when that lands together
    with a cancel (CPython gh-86296), so a loop that tries again on a timeout would run on after
    SIGTERM; the task still counts the request (``Task.cancelling``). Every such loop calls this."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def retrying(call: Callable[[], Awaitable[T]], what: str, for_s: float = RETRY_FOR_S) -> T:
    """``await call()``, repeated while it fails transiently (:func:`transient`), for up to ``for_s``
    seconds. ``call`` must be safe to repeat: a publish carries its ``Nats-Msg-Id``.

    Raises:
        BusError: still failing after ``for_s`` (names ``what`` and the last error); any other error of
            ``call`` as it is.
    """
    deadline = time.monotonic() + for_s
    pause = 0.1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not transient(exc):
                raise
            raise_if_cancelled()  # a timeout that was a cancel: stop, do not try again
            if time.monotonic() > deadline:
                raise BusError(f"{what}: no JetStream answer for {for_s:g} s ({type(exc).__name__}: {exc}); "
                               "is a quorum of the NATS cluster up?") from exc
            _log.info("%s: %s, retrying (a leader election or a reconnect)", what, type(exc).__name__)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _probe(url: str, timeout_s: float) -> dict[str, Any]:
    """Connect to one node on its own: reachable, and its name."""
    row: dict[str, Any] = {"url": redact(url), "name": None, "reachable": False}
    try:
        nc = await asyncio.wait_for(
            nats.connect(url, connect_timeout=timeout_s, allow_reconnect=False,  # pyright: ignore[reportUnknownMemberType]
                         max_reconnect_attempts=0),
            timeout_s + 1,
        )
    except Exception as exc:  # noqa: BLE001 - nats-py raises several unrelated types for "nobody there"
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return row
    row.update(reachable=True, name=natsapi.server_info(nc).get("server_name"))
    await nc.close()
    return row


async def _stream_replicas(nc: Client, name: str) -> dict[str, Any] | None:
    """One stream's replica group: leader and each peer's state; None if the stream does not exist."""
    js = natsapi.jetstream(nc)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - no leader right now: that is the health to report
        return {"stream": name, "replicas": None, "leader": None, "peers": [],
                "error": f"{type(exc).__name__}: {exc}"[:200]}
    cluster = info.cluster
    peers: list[dict[str, Any]] = []
    if cluster is not None and cluster.leader:
        peers.append({"name": cluster.leader, "leader": True, "current": True, "offline": False, "lag": 0})
    for p in (cluster.replicas if cluster is not None else None) or []:
        peers.append({"name": p.name, "leader": False, "current": bool(p.current), "offline": bool(p.offline),
                      "lag": p.lag or 0})
    return {"stream": name, "replicas": info.config.num_replicas or 1,
            "leader": cluster.leader if cluster is not None else None, "peers": peers}


async def health(nc: Client, url: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """The cluster's health, as ``massgen status`` shows it (issue 13 item 6).

    Args:
        nc: a connection to the stack (reads stream info).
        url: the stack's URL(s); each is probed with a connection of its own.
        timeout_s: per node probe.

    Returns:
        ``{"name", "replicas", "healthy", "nodes": [...], "streams": [...]}``: ``name`` is the cluster's
        (None for one server); each node has ``url`` (no password), ``name``, ``reachable``,
        ``leader_of`` (streams it leads), ``current`` (all its replicas caught up) and ``lag`` (the most
        operations it is behind in any stream); each stream has ``replicas``, ``leader`` and ``peers``
        (``name``, ``leader``, ``current``, ``offline``, ``lag``). ``healthy``: every node reachable, every
        stream has a leader and every peer is current.
    """
    nodes = list(await asyncio.gather(*(_probe(u, timeout_s) for u in server_urls(url))))
    found = await asyncio.gather(*(_stream_replicas(nc, s) for s in STREAMS))
    streams = [s for s in found if s is not None]
    peer_names = sorted({p["name"] for s in streams for p in s["peers"]})
    unnamed = [n for n in nodes if n["name"] is None]
    missing = [p for p in peer_names if p not in {n["name"] for n in nodes}]
    if len(unnamed) == 1 and len(missing) == 1:  # the one node down is the one peer not answering
        unnamed[0]["name"] = missing[0]
    for node in nodes:
        mine = [(s["stream"], p) for s in streams for p in s["peers"] if p["name"] == node["name"]]
        node["leader_of"] = [stream for stream, p in mine if p["leader"]]
        node["current"] = node["reachable"] and all(p["current"] and not p["offline"] for _, p in mine)
        node["lag"] = max((p["lag"] for _, p in mine), default=0)
    healthy = all(n["reachable"] and n["current"] for n in nodes) and all(
        s["leader"] is not None or s["replicas"] == 1 for s in streams)
    return {"name": natsapi.server_info(nc).get("cluster"), "replicas": replicas(nc), "healthy": healthy,
            "nodes": nodes, "streams": streams}
