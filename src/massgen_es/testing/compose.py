"""A throwaway compose project for the end-to-end tests and the scaling benchmark.

``docker-compose.yml`` plus ``deploy/tests/e2e.compose.yml`` (a scripted model on the stack's network,
the workers' ack wait and concurrency) under its own project name, free loopback ports and a fresh
data directory, so it never touches the user's stack (project ``massgen``) nor its event log. The
credentials are the project's own (``deploy/.env``, made by ``scripts/compose-secrets.sh``).

    with ComposeStack(ROOT, workers=1) as stack:      # build --offline, up --wait ... down -v
        stack.cli("submit", "2+2?", "--config", cfg, "--json")
        stack.scale_workers(3)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Self

from massgen_es.errors import DeploymentError

SERVICE_UID, SANDBOX_GID = 10001, 1000  # the images' user; the sandboxes' group (deploy/README.md)
MASSGEN = str(Path(sys.executable).parent / "massgen")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_of(instance: str) -> str:
    """The hostname in a ``Source.instance`` (``<host>-<pid>-<hex>``); in a container, its short id."""
    return instance.rsplit("-", 2)[0]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class ComposeStack:
    """One compose project of the whole stack, driven through the ``docker compose`` CLI.

    Args:
        root: the project checkout (holds docker-compose.yml, deploy/, scripts/).
        workers: agent-worker replicas started by ``up``.
        worker_concurrency: turns each replica handles at once.
        ack_wait_s: the workers' JetStream ack wait, seconds (a killed worker's turn comes back after it).
        cluster: three NATS nodes (``deploy/cluster.yml`` over the other two files) instead of one.

    Every method raises ``DeploymentError`` naming the failing command with the tail of its output.
    Needs root (the data directory is handed to the images' uid, as scripts/compose-up.sh does).
    """

    def __init__(
        self, root: Path, *, workers: int = 1, worker_concurrency: int = 4, ack_wait_s: float = 6.0,
        cluster: bool = False,
    ) -> None:
        self.root = root
        self.workers = workers
        self.cluster = cluster
        self.name = f"massgen-e2e-{uuid.uuid4().hex[:8]}"
        self.nats_port = free_port()
        self.nats_ports = [self.nats_port, free_port(), free_port()] if cluster else [self.nats_port]
        self.data: Path | None = None
        self.env = {
            **os.environ,
            "NATS_PORT": str(self.nats_port),
            **{f"NATS_PORT_{i + 1}": str(p) for i, p in enumerate(self.nats_ports) if i},
            "NATS_MONITOR_PORT": str(free_port()),
            "E2E_ACK_WAIT": f"{ack_wait_s:g}",
            "E2E_WORKER_CONCURRENCY": str(worker_concurrency),
        }
        self.passwords: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def build(self) -> str:
        """``scripts/compose-build.sh --offline``: the images from this tree, with no download; returns
        its output (per-step timings)."""
        return self.run(["bash", "scripts/compose-build.sh", "--offline"], timeout=1200)

    def up(self) -> None:
        """Credentials, a data directory owned by the services' uid, then ``up -d --wait``."""
        if os.geteuid() != 0:
            raise DeploymentError("the compose stack needs root here: its data directory must belong to uid "
                                  f"{SERVICE_UID} (see scripts/compose-up.sh)")
        self.run(["bash", "scripts/compose-secrets.sh"])
        self.passwords = _env_file(self.root / "deploy" / ".env")
        self.data = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        os.chown(self.data, SERVICE_UID, SANDBOX_GID)
        self.data.chmod(0o2775)
        self.env["MASSGEN_DATA"] = str(self.data)
        self.compose("up", "-d", "--wait", "--scale", f"agent-worker={self.workers}", timeout=300)
        self.wait_ready()

    def down(self) -> None:
        """Remove the project's containers, network and volume, the sandboxes its executor made, and the
        data directory. Never raises: teardown must not hide the test's own failure."""
        try:
            self.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=120)
        except DeploymentError as exc:
            print(exc, file=sys.stderr)
        if self.data is not None:
            for cid in self.sandboxes():
                subprocess.run(["docker", "rm", "-f", cid], check=False, capture_output=True, timeout=60)
            shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------------ driving

    def compose(self, *args: str, timeout: float = 120) -> str:
        """``docker compose -p <project> -f docker-compose.yml -f deploy/tests/e2e.compose.yml ARGS``;
        returns stdout."""
        project = ["-p", self.name, "-f", "docker-compose.yml", "-f", "deploy/tests/e2e.compose.yml"]
        if self.cluster:
            project += ["-f", "deploy/cluster.yml"]
        return self.run(["docker", "compose", "--env-file", "deploy/.env", *project, *args], timeout=timeout)

    def scale_workers(self, n: int) -> None:
        """Run ``n`` agent-worker replicas (the running ones are kept)."""
        self.compose("up", "-d", "--wait", "--no-recreate", "--scale", f"agent-worker={n}", timeout=180)
        self.workers = n
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 90) -> dict:
        """Wait until ``massgen status`` shows a heartbeat from the orchestrator, the broker, the
        executor and every running worker container (a service heartbeats once it has made its streams
        and consumers); returns that status."""
        deadline = time.monotonic() + timeout_s
        while True:
            hosts = set(self.containers("agent-worker"))
            done = self.cli("status", "--json", timeout=60)
            status = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}
            beating = {(s["service"], host_of(s["instance"])) for s in status.get("services", [])}
            workers = {host for service, host in beating if service == "agent_worker"}
            if {"orchestrator", "mcp_broker", "executor"} <= {s for s, _ in beating} and hosts <= workers:
                return status
            if time.monotonic() > deadline:
                raise DeploymentError(f"not every service has a heartbeat after {timeout_s:g}s: "
                                      f"{sorted(beating)}; `docker compose -p {self.name} logs` tells why")
            time.sleep(1)

    def containers(self, service: str) -> dict[str, str]:
        """Running containers of ``service``: hostname (what ``Source.instance`` starts with) -> id."""
        ids = self.compose("ps", "-q", service).split()
        if not ids:
            return {}
        out = self.run(["docker", "inspect", "-f", "{{.Config.Hostname}} {{.Id}}", *ids])
        return dict(line.split() for line in out.splitlines() if line.strip())

    def sandboxes(self) -> list[str]:
        """Ids of the executor's sandbox containers whose mounts lie in this stack's data directory."""
        out = self.run(["docker", "ps", "-aq", "--filter", "label=massgen.executor"])
        found = []
        for cid in out.split():
            mounts = self.run(["docker", "inspect", "-f", "{{range .Mounts}}{{.Source}} {{end}}", cid])
            if self.data is not None and str(self.data) in mounts:
                found.append(cid)
        return found

    def url(self, user: str = "cli") -> str:
        """The NATS URL of ``user`` (a key of the server's users: cli, orchestrator, agent_worker, ...)
        on the published loopback port; with ``cluster``, the three nodes' URLs, comma-separated."""
        var = "NATS_" + user.upper().replace("-", "_") + "_PASSWORD"
        return ",".join(f"nats://{user}:{self.passwords[var]}@127.0.0.1:{p}" for p in self.nats_ports)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``massgen ARGS`` on the host as NATS user ``cli`` against this stack (not checked)."""
        return subprocess.run([MASSGEN, *args], check=False, env=self._cli_env(), capture_output=True,
                              text=True, timeout=timeout)

    def cli_popen(self, *args: str) -> subprocess.Popen:
        """``cli`` in the background; stdout and stderr are pipes."""
        return subprocess.Popen([MASSGEN, *args], env=self._cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def _cli_env(self) -> dict[str, str]:
        return {**self.env, "MASSGEN_NATS_URL": self.url("cli")}

    def logs(self, service: str) -> str:
        """Everything ``service``'s containers printed."""
        return self.compose("logs", "--no-color", service, timeout=60)

    def run(self, cmd: list[str], timeout: float = 120) -> str:
        """Run ``cmd`` in the checkout with this stack's environment; returns stdout."""
        try:
            done = subprocess.run(cmd, check=False, cwd=self.root, env=self.env, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeploymentError(f"`{' '.join(cmd)}` took over {timeout:g}s") from exc
        if done.returncode != 0:
            output = _tail(done.stdout + done.stderr)
            raise DeploymentError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{output}")
        return done.stdout


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blank lines skipped, quotes stripped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip().strip("'\"")
    return pairs
