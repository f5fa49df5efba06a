"""Executor benchmark (prints its figures; no assertions): cold and warm execution latency in Docker mode.

- cold: create and start an agent's sandbox, then run ``true`` in it (what a first command costs
  without the warm pool);
- warm: run ``true`` in an agent's sandbox that is already running (what the warm pool gives: the
  executor creates an agent's sandbox when its run is submitted).
Also local mode, ``echo hi`` as a resource-limited subprocess in a bubblewrap sandbox (``local``) and
without it (``local_unisolated``): the difference is bwrap's overhead per call (issue 13 item 2).

Targets (2-core machine): warm p50 < 150 ms, cold p50 < 1.5 s.
Usage: python bench/exec_bench.py [N] [--local]   (needs the engine and images: `make sandbox`;
``--local`` measures the local modes only, without Docker)
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
from massgen_executor.isolation import Isolation
from massgen_executor.local import Limits, run_local

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
N = int(ARGS[0]) if ARGS else 20
LOCAL_ONLY = "--local" in sys.argv
ms = lambda xs, p: pct(xs, p) * 1000  # noqa: E731


async def local_modes() -> None:
    """p50/p99 of ``echo hi`` in local mode with and without the bubblewrap sandbox."""
    times: dict[str, list[float]] = {"local": [], "local_unisolated": []}
    with tempfile.TemporaryDirectory() as d:
        ws = Path(d)
        isolation = Isolation(ws)
        await run_local("true", work_dir=ws, timeout_s=30, limits=Limits(), isolation=isolation)  # the one probe
        for _ in range(N):
            for mode, iso in (("local", isolation), ("local_unisolated", None)):
                t = time.perf_counter()
                r = await run_local("echo hi", work_dir=ws, timeout_s=30, limits=Limits(), isolation=iso)
                times[mode].append(time.perf_counter() - t)
                assert r.stdout == b"hi\n", r
    for mode, xs in times.items():
        print(f"{mode + ' (echo hi):':<28}p50 {ms(xs, 50):.1f} ms, p99 {ms(xs, 99):.1f} ms")
    print(f"bwrap overhead per call:    p50 {ms(times['local'], 50) - ms(times['local_unisolated'], 50):.1f} ms")
IMAGE = os.environ.get("MASSGEN_SANDBOX_PYTHON_IMAGE", "massgen/sandbox-python:latest")


async def main() -> None:
    sandboxes = DockerSandboxes()
    spec = SandboxSpec(image=IMAGE)
    cold, warm = [], []
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
        finally:
            for name in names:
                await sandboxes.remove(name)
    print(f"executions per mode:        {N} (image {IMAGE}, command `true`)")
    print(f"cold (create+start+exec):   p50 {ms(cold, 50):.0f} ms, p99 {ms(cold, 99):.0f} ms (target p50 < 1500 ms)")
    print(f"warm (exec in running box): p50 {ms(warm, 50):.0f} ms, p99 {ms(warm, 99):.0f} ms (target p50 < 150 ms)")
    print(f"mean cold/warm:             {statistics.mean(cold) * 1000:.0f} / {statistics.mean(warm) * 1000:.0f} ms")


if __name__ == "__main__":
    if not LOCAL_ONLY:
        asyncio.run(main())
    asyncio.run(local_modes())
