"""Provider adapters: one module per backend type, behind the :class:`Provider` protocol.

An adapter turns a ``turn.requested`` (neutral messages and tools) into one LLM call, streams text
through ``on_text``, and returns a :class:`Completion` in the neutral shape. Provider errors leave
as ``massgen.errors.ProviderError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from massgen.config import BackendConfig
from massgen.errors import ConfigError
from massgen.events import ToolCall, TurnRequested, Usage

OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Completion:
    """The neutral result of one LLM call."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage
    model: str
    time_to_first_token_s: float | None = None


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


async def complete(request: TurnRequested, on_text: OnText) -> Completion:
    """Dispatch ``request`` to the adapter of its backend type."""
    cfg = backend_config(request.backend)
    if cfg.type == "local":
        from massgen_agent_worker.providers import local

        return await local.complete(cfg, request, on_text)
    from massgen_agent_worker.providers import chatcompletion

    return await chatcompletion.complete(cfg, request, on_text)
