"""Executor benchmark (prints its figures; no assertions): cold and warm execution latency in Docker mode.

- cold: create and start an agent's sandbox, then run ``true`` in it (what a first command costs
  without the warm pool);
- warm: run ``true`` in an agent's sandbox that is already running (what the warm pool gives: the
  executor creates an agent's sandbox when its run is submitted).
Also the local mode (subprocess with resource limits) for reference.

Targets (2-core machine): warm p50 < 150 ms, cold p50 < 1.5 s.
Usage: python bench/exec_bench.py [N]   (needs the engine and images: `make sandbox`)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _stats import pct  # bench/ is the script's own directory, first on sys.path
from massgen_executor.docker_sandbox import DockerSandboxes, SandboxSpec
from massgen_executor.local import Limits, run_local

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
IMAGE = os.environ.get("MASSGEN_SANDBOX_PYTHON_IMAGE", "massgen/sandbox-python:latest")


async def main() -> None:
    sandboxes = DockerSandboxes()
    spec = SandboxSpec(image=IMAGE)
    cold, warm, local = [], [], []
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        os.chmod(ws, 0o777)
        run = f"bench{uuid.uuid4().hex[:6]}"
        names = []
        try:
            for i in range(N):
                t = time.perf_counter()
                name, _ = await sandboxes.ensure(run, f"a{i}", spec, ws, [])
                await sandboxes.exec(name, "true", work_dir=ws, timeout_s=30, max_bytes=1 << 16)
                cold.append(time.perf_counter() - t)
                names.append(name)
            for _ in range(N):
                t = time.perf_counter()
                await sandboxes.exec(names[0], "true", work_dir=ws, timeout_s=30, max_bytes=1 << 16)
                warm.append(time.perf_counter() - t)
            for _ in range(N):
                t = time.perf_counter()
                await run_local("true", work_dir=ws, timeout_s=30, limits=Limits())
                local.append(time.perf_counter() - t)
        finally:
            for name in names:
                await sandboxes.remove(name)
    ms = lambda xs, p: pct(xs, p) * 1000  # noqa: E731
    print(f"executions per mode:        {N} (image {IMAGE}, command `true`)")
    print(f"cold (create+start+exec):   p50 {ms(cold, 50):.0f} ms, p99 {ms(cold, 99):.0f} ms (target p50 < 1500 ms)")
    print(f"warm (exec in running box): p50 {ms(warm, 50):.0f} ms, p99 {ms(warm, 99):.0f} ms (target p50 < 150 ms)")
    print(f"local (rlimited subprocess):p50 {ms(local, 50):.1f} ms, p99 {ms(local, 99):.1f} ms")
    print(f"mean cold/warm:             {statistics.mean(cold) * 1000:.0f} / {statistics.mean(warm) * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
