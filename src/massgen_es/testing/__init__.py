"""Test kit shipped with massgen-es: a real nats-server helper and a wire-level OpenAI fake."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 20.0, what: str = "") -> None:
    """Poll ``check`` (sync or async) every 50 ms until it returns true, instead of sleeping a fixed time.

    Raises:
        AssertionError: not true within ``timeout_s`` seconds; the message names ``what``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}")
        await asyncio.sleep(0.05)
