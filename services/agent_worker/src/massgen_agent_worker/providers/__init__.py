"""Provider adapters: one module per backend type, behind the :class:`Provider` protocol.

An adapter module exposes ``async def complete(cfg, request, on_text) -> Completion``: it turns a
``turn.requested`` (neutral messages and tools; MCP tools included, already prefixed) into one
streamed LLM call, passes text deltas to ``on_text(text)`` and calls ``on_text("")`` for every other
streamed chunk (tool-call, thinking or reasoning delta) so the caller can see progress, and returns a
:class:`Completion`. Provider errors leave as ``massgen_es.errors.ProviderError`` subclasses; the adapter
never retries (the worker does, and records each retry as an event). ``massgen_es.backends`` says which
module serves which ``backend.type``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import asyncio
import importlib
import weakref

import msgspec

from massgen_es import backends
from massgen_es.config import BackendConfig
from massgen_es.errors import ConfigError
from massgen_es.events import ToolCall, TurnRequested, Usage

OnText = Callable[[str], Awaitable[None]]
T = TypeVar("T")

# SDK clients keep HTTP connection pools, bound to the event loop they were made in: one client per
# (loop, key) saves a TCP/TLS handshake per call (~70 ms against a loopback server).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def loop_cached(key: tuple, make: Callable[[], T]) -> T:
    """The client cached under ``key`` for the running event loop, made by ``make()`` on first use."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = make()
    return per_loop[key]


@dataclass(frozen=True)
class Completion:
    """The neutral result of one LLM call."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    time_to_first_token_s: float | None = None
    cost_usd: float | None = None
    """Set only when the provider reports the cost itself (Claude Code); else the price table decides."""


class Provider(Protocol):
    """One backend type."""

    async def complete(self, request: TurnRequested, on_text: OnText) -> Completion:
        """Make the call for ``request``; stream text to ``on_text``.

        Raises:
            ProviderError: the call failed (``retryable`` says whether trying again may help).
        """
        ...


def backend_config(backend: dict[str, Any]) -> BackendConfig:
    """Validate the ``backend`` dict carried by a turn request.

    Raises:
        ConfigError: the dict is not a valid backend block.
    """
    try:
        return msgspec.convert(backend, BackendConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid backend in turn request: {exc}") from None


_adapters: dict[str, Any] = {}
"""Adapter modules fully imported, by adapter name."""


async def complete(request: TurnRequested, on_text: OnText, **kwargs: Any) -> Completion:
    """Dispatch ``request`` to the adapter of its backend type (``massgen_es.backends``); ``kwargs`` go to
    adapters that take more (``claude_code``'s ``run_tool``, which runs MCP calls inside its own loop).

    Raises:
        ProviderError: the call failed.
        ConfigError: the backend is misconfigured, or its adapter's SDK is not installed.
    """
    cfg = backend_config(request.backend)
    adapter = backends.capabilities(cfg.type).adapter
    module = _adapters.get(adapter)
    try:
        if module is None:
            # A provider SDK's first import takes up to seconds: in a thread, so that the worker's other
            # turns, heartbeats and SIGTERM handling are not held up. Not sys.modules: it holds a module
            # another thread is still initialising; import_module waits for that one.
            module = _adapters[adapter] = await asyncio.to_thread(
                importlib.import_module, f"massgen_agent_worker.providers.{adapter}"
            )
    except ImportError as exc:
        raise ConfigError(f"backend {cfg.type}: its SDK is not installed ({exc.name}); run `make install`") from None
    return await module.complete(cfg, request, on_text, **kwargs)


def shutdown() -> None:
    """Release what loaded adapters hold beyond a call (the local backend's model servers)."""
    for module in _adapters.values():
        stop = getattr(module, "shutdown", None)
        if stop is not None:
            stop()
