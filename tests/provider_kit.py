"""Shared pieces of the provider adapter tests."""

from __future__ import annotations

from massgen_es.events import Message, ToolSpec, TurnRequested


def turn(messages: tuple[Message, ...], tools: tuple[ToolSpec, ...] = ()) -> TurnRequested:
    """A coordination turn request carrying ``messages`` and ``tools``."""
    return TurnRequested(
        turn_id="t", agent_id="a", attempt=1, kind="coordination", messages=messages, tools=tools,
        backend={}, answers_version=0,
    )


class Recorder:
    """An ``on_text`` that keeps every call (``""`` marks a non-text chunk)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, text: str) -> None:
        self.calls.append(text)

    @property
    def text(self) -> list[str]:
        return [c for c in self.calls if c]
