"""The embedded local model: a GGUF model of the registry (:mod:`massgen_es.models`) served by llama.cpp's
OpenAI-compatible server (``xllamacpp``), in a child process on loopback.

The child keeps llama.cpp's chatty C++ logging out of the terminal (it goes to a log file) and keeps a
crash of the native code from taking the worker down. ``python -m massgen_agent_worker.local_llm
--model NAME --port N [--host H]`` runs the server in the foreground; the compose ``local-llm``
service runs exactly that.

Speed on two cores (issue 11 item 4): one slot per agent (``--parallel``, requests pin their slot with
``id_slot``) and llama.cpp's prompt cache (``cache_prompt``), so an agent's later turns only process
the tokens its earlier turns did not.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from massgen_es import models
from massgen_es.children import dies_with_parent
from massgen_es.errors import LocalModelError

DEFAULT_PARALLEL = 4
"""Slots of the server: concurrent requests, one per agent of a default team (plus one)."""
DEFAULT_CTX_PER_SLOT = 4096


def serve(
    model: str | None, port: int, *, host: str = "127.0.0.1", parallel: int = DEFAULT_PARALLEL,
    ctx_per_slot: int = DEFAULT_CTX_PER_SLOT, threads: int | None = None,
) -> None:
    """Run the llama.cpp server for registry model ``model`` (None: the default) until SIGTERM/SIGINT.

    The model is served under its registry name (what requests put in ``model``), with ``parallel``
    slots of ``ctx_per_slot`` tokens each and the prompt cache on.

    Raises:
        LocalModelError: xllamacpp missing, or the weights missing or not matching their pin.
    """
    path = models.weights(model)
    name = models.get(model).name
    try:
        xlc: Any = importlib.import_module("xllamacpp")  # a compiled extension that ships no type stubs
    except ImportError:
        raise LocalModelError("xllamacpp is not installed; run `make install`") from None
    params = xlc.CommonParams()
    params.model.path = str(path)
    params.model_alias = {name}  # a set of names in xllamacpp: a bare str would become its letters
    params.hostnames = [host]
    params.port = port
    params.use_jinja = True
    params.ui = False
    params.n_parallel = parallel
    params.n_ctx = ctx_per_slot * parallel
    params.cache_prompt = True
    params.cpuparams.n_threads = threads or min(4, os.cpu_count() or 2)
    params.cpuparams_batch.n_threads = params.cpuparams.n_threads
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xlc.Server(params)
    print(f"local model {name} ({path.name}, {parallel} slots) listening on {server.listening_address}", flush=True)
    stop.wait()
    del server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalModelServer:
    """One model's server as a child process, started on first use and shared by the process's agents.

    Args:
        model: a registry name (None: the default model).
        log_dir: where ``local-llm-<model>.log`` goes.
    """

    def __init__(self, model: str | None, log_dir: Path) -> None:
        self.model = models.get(model).name
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self._lock = asyncio.Lock()

    async def ensure(self, timeout_s: float = 180.0) -> str:
        """Start the server if needed and return its OpenAI base URL (``http://127.0.0.1:N/v1``).

        Raises:
            LocalModelError: the weights are missing/corrupt, or the server did not come up.
        """
        async with self._lock:
            if self.proc is not None and self.proc.poll() is None and self.base_url:
                return self.base_url
            # Fail here, with the install hint, rather than in the child; hashing a large file takes seconds.
            await asyncio.to_thread(models.weights, self.model)
            port = _free_port()
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"local-llm-{self.model}.log"
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "massgen_agent_worker.local_llm", "--model", self.model,
                     "--port", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=dies_with_parent(),
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
    """Entry point of the child process and of the compose ``local-llm`` container."""
    ap = argparse.ArgumentParser(description="Serve a local GGUF model over an OpenAI-compatible API")
    env = os.environ.get
    ap.add_argument("--model", default=env("LOCAL_LLM_MODEL"), help=f"registry name (default {models.DEFAULT_MODEL})")
    ap.add_argument("--host", default=env("LOCAL_LLM_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(env("LOCAL_LLM_PORT", "8080")))
    ap.add_argument("--parallel", type=int, default=int(env("LOCAL_LLM_PARALLEL", str(DEFAULT_PARALLEL))),
                    help="concurrent request slots")
    ap.add_argument("--ctx-per-slot", type=int, default=int(env("LOCAL_LLM_CTX_PER_SLOT", str(DEFAULT_CTX_PER_SLOT))))
    ap.add_argument("--threads", type=int, default=int(env("LOCAL_LLM_THREADS", "0")) or None)
    args = ap.parse_args()
    try:
        serve(args.model, args.port, host=args.host, parallel=args.parallel, ctx_per_slot=args.ctx_per_slot,
              threads=args.threads)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
