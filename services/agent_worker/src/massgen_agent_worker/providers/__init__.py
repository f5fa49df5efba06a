"""Provider adapters: one module per adapter, each exposing an :class:`Adapter` named ``adapter``.

An adapter's ``complete(cfg, request, on_text)`` turns a ``turn.requested`` (neutral messages and tools;
MCP tools included, already prefixed) into one streamed LLM call, passes text deltas to
``on_text(text)`` and calls ``on_text("")`` for other streamed chunks (tool-call, thinking or reasoning
deltas) so the caller can see progress, and returns a :class:`Completion`. Provider errors leave as
``massgen_es.errors.ProviderError`` subclasses; the adapter never retries (the worker does, and records
each retry as an event). ``massgen_es.backends`` names the adapter of each ``backend.type``;
:data:`ADAPTERS` loads it. What the streaming adapters share lives in :mod:`.streaming`.
"""

from __future__ import annotations

import asyncio
import importlib
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from massgen_es import ag2, backends
from massgen_es.config import BackendConfig
from massgen_es.errors import ConfigError
from massgen_es.events import ProviderBlock, ToolCall, TurnRequested, Usage

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
    provider_blocks: tuple[ProviderBlock, ...] = ()
    """Blocks of the reply the provider wants back unchanged with it (Claude's signed thinking): the
    tool loop keeps them on the assistant message (``Message.provider_blocks``)."""


class Adapter(Protocol):
    """One adapter: the calls of the backend types ``massgen_es.backends`` routes to it."""

    async def complete(
        self, cfg: BackendConfig, request: TurnRequested, on_text: OnText, **kwargs: Any
    ) -> Completion:
        """Make the call for ``request``; stream text to ``on_text``. ``kwargs``: what this adapter takes
        beyond that (``claude_code``'s ``run_tool``).

        Raises:
            ProviderError: the call failed (``retryable`` says whether trying again may help).
            ConfigError: the backend is misconfigured (missing key, model, endpoint ...).
        """
        ...

    def shutdown(self) -> None:
        """Release what the adapter holds beyond a call (the local backend's model servers)."""
        ...


@dataclass(frozen=True)
class FunctionAdapter:
    """An :class:`Adapter` made of an adapter module's functions: ``complete(cfg, request, on_text,
    **kwargs) -> Completion`` and, if it holds anything between calls, ``shutdown()``."""

    complete_fn: Callable[..., Awaitable[Completion]]
    shutdown_fn: Callable[[], None] | None = None

    async def complete(
        self, cfg: BackendConfig, request: TurnRequested, on_text: OnText, **kwargs: Any
    ) -> Completion:
        """``complete_fn(cfg, request, on_text, **kwargs)``; raises what it raises (:meth:`Adapter.complete`)."""
        return await self.complete_fn(cfg, request, on_text, **kwargs)

    def shutdown(self) -> None:
        """``shutdown_fn()``, if the module has one."""
        if self.shutdown_fn is not None:
            self.shutdown_fn()


def backend_config(backend: dict[str, Any]) -> BackendConfig:
    """Validate the ``backend`` dict carried by a turn request.

    Raises:
        ConfigError: the dict is not a valid backend block.
    """
    try:
        return msgspec.convert(backend, BackendConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid backend in turn request: {exc}") from None


# Each loader imports its module (and so the provider SDK) on first use only: a worker that serves
# Claude alone never loads google-genai.
def _chatcompletion() -> Adapter:
    from massgen_agent_worker.providers import chatcompletion

    return chatcompletion.adapter


def _openai() -> Adapter:
    from massgen_agent_worker.providers import openai

    return openai.adapter


def _claude() -> Adapter:
    from massgen_agent_worker.providers import claude

    return claude.adapter


def _gemini() -> Adapter:
    from massgen_agent_worker.providers import gemini

    return gemini.adapter


def _azure_openai() -> Adapter:
    from massgen_agent_worker.providers import azure_openai

    return azure_openai.adapter


def _local() -> Adapter:
    from massgen_agent_worker.providers import local

    return local.adapter


def _claude_code() -> Adapter:
    from massgen_agent_worker.providers import claude_code

    return claude_code.adapter


def _ag2() -> Adapter:
    from massgen_agent_worker.providers import ag2_agents

    return ag2_agents.adapter


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "chatcompletion": _chatcompletion,
    "openai": _openai,
    "claude": _claude,
    "gemini": _gemini,
    "azure_openai": _azure_openai,
    "local": _local,
    "claude_code": _claude_code,
    "ag2": _ag2,
}
"""Loader of each adapter, by the adapter name of ``massgen_es.backends.Capabilities.adapter``."""

_loaded: dict[str, Adapter] = {}
"""Adapters already loaded, by adapter name."""


_SHARED_MODULES = ("httpx",)
"""Modules one SDK imports and another reads from ``sys.modules``: the ``openai`` SDK treats a loaded
``httpx`` as a legacy client type (``openai._httpx2.http_response_types``), so an openai call made while
another adapter's thread is still importing ``httpx`` (google-genai, anthropic) fails with "partially
initialized module 'httpx'" (seen in the MassGen corpus walk). Every loader imports them first: the
``import`` statement waits for another thread's import to finish, so no adapter is usable before they
are whole."""


def _with_shared_modules(load: Callable[[], Adapter]) -> Adapter:
    for module in _SHARED_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # not installed (the worker image): nothing half-imported to see
            if exc.name != module:
                raise
    return load()


async def adapter_for(cfg: BackendConfig) -> Adapter:
    """The adapter serving ``cfg.type``, loaded on first use.

    Raises:
        ConfigError: the type has no adapter here, or the adapter's SDK is not installed.
    """
    name = backends.capabilities(cfg.type).adapter
    adapter = _loaded.get(name)
    if adapter is not None:
        return adapter
    load = ADAPTERS.get(name)
    if load is None:
        raise ConfigError(f"backend {cfg.type}: no provider adapter {name!r} in this worker")
    try:
        # A provider SDK's first import takes up to seconds: in a thread, so that the worker's other
        # turns, heartbeats and SIGTERM handling are not held up. The import statement waits for a
        # module another thread is still initialising (sys.modules alone would hand it over half-done).
        adapter = _loaded[name] = await asyncio.to_thread(_with_shared_modules, load)
    except ImportError as exc:
        extra = f" (the optional dependencies `pip install -e '{ag2.EXTRA}'`)" if name == "ag2" else ""
        raise ConfigError(
            f"backend {cfg.type}: its SDK is not installed ({exc.name}); run `make install`{extra}") from None
    return adapter


async def complete(request: TurnRequested, on_text: OnText, **kwargs: Any) -> Completion:
    """Dispatch ``request`` to the adapter of its backend type (:func:`adapter_for`); ``kwargs`` go to
    adapters that take more (``claude_code``'s ``run_tool``, which runs MCP calls inside its own loop).

    Raises:
        ProviderError: the call failed.
        ConfigError: the backend is misconfigured, or its adapter's SDK is not installed.
    """
    cfg = backend_config(request.backend)
    return await (await adapter_for(cfg)).complete(cfg, request, on_text, **kwargs)


def shutdown() -> None:
    """Release what loaded adapters hold beyond a call (the local backend's model servers)."""
    for adapter in _loaded.values():
        adapter.shutdown()
