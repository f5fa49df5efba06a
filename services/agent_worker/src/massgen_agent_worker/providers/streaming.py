"""What the streaming adapters (``chatcompletion``, ``openai``, ``claude``, ``gemini``) share.

A :class:`StreamedReply` lives for one call. It holds the clock started before the request and the
time to the first output, joins the text (each piece also goes to ``on_text``; ``on_text("")`` marks
progress without text), assembles tool calls by index from id / name / argument deltas, and reads the
SDK's stream with its exceptions mapped to :mod:`massgen_es.errors` provider errors::

    reply = StreamedReply(on_text)
    async with reply.stream(client.create(**params), map_error, (sdk.APIError,)) as chunks:
        async for chunk in chunks:          # the adapter reads its own SDK's chunk shapes
            await reply.add_text(chunk.text)
            reply.tool_call_delta(chunk.index, id=..., name=..., arguments=...)
    Completion(reply.content, reply.tool_calls(), finish, usage, model, reply.ttft)

Request building, chunk shapes, usage and finish reasons stay in each adapter.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from massgen_agent_worker.providers import OnText
from massgen_es.errors import ProviderError
from massgen_es.events import ToolCall

MapError = Callable[[Exception], ProviderError]


@dataclass
class ToolCallParts:
    """A tool call while its deltas stream in."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def _by_index(index: int, position: int) -> str:
    return f"call_{index}"


class StreamedReply:
    """Text, tool calls and time to first output of one streamed call.

    Args:
        on_text: receives each text piece, and ``""`` for progress without text (:meth:`progress`).
    """

    def __init__(self, on_text: OnText) -> None:
        self.on_text = on_text
        self.started = time.monotonic()
        self.ttft: float | None = None
        """Seconds from construction to the first output (:meth:`first_output`); None if none came."""
        self.text: list[str] = []
        self.calls: dict[int, ToolCallParts] = {}

    def first_output(self) -> None:
        """Note that output came now, if none came before (text always counts; adapters that time the
        first token at any content also call it for other chunks)."""
        if self.ttft is None:
            self.ttft = time.monotonic() - self.started

    async def add_text(self, text: str) -> None:
        """Append a text piece and pass it to ``on_text``."""
        self.first_output()
        self.text.append(text)
        await self.on_text(text)

    async def progress(self) -> None:
        """A chunk without text (tool-call, thinking ... delta): ``on_text("")``, for the first-token
        timeout and liveness."""
        await self.on_text("")

    @property
    def content(self) -> str:
        """The text so far, joined."""
        return "".join(self.text)

    def tool_call(self, index: int) -> ToolCallParts:
        """The call being assembled at ``index`` (created empty on first use), to set parts directly."""
        return self.calls.setdefault(index, ToolCallParts())

    def tool_call_delta(
        self, index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
    ) -> None:
        """Merge a delta into the call at ``index``: a non-empty ``id`` replaces the one so far, ``name``
        and ``arguments`` fragments are appended."""
        call = self.tool_call(index)
        call.id = id or call.id
        call.name += name or ""
        call.arguments += arguments or ""

    def tool_calls(
        self, default_id: Callable[[int, int], str] = _by_index, empty_arguments: str = ""
    ) -> tuple[ToolCall, ...]:
        """The assembled calls in index order. A call without id gets ``default_id(index, position)``
        (default ``call_<index>``), one without arguments ``empty_arguments``."""
        return tuple(
            ToolCall(
                id=c.id or default_id(index, position), name=c.name, arguments=c.arguments or empty_arguments
            )
            for position, (index, c) in enumerate(sorted(self.calls.items()))
        )

    @contextlib.asynccontextmanager
    async def stream(
        self, opening: Awaitable[Any], map_error: MapError, errors: tuple[type[Exception], ...]
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """Open the SDK stream (``opening`` resolves to it) and yield its chunks; closes it on any exit,
        so the pooled connection is freed.

        Only the SDK's own steps (opening, reading the next chunk) are mapped: an exception of ``errors``
        there leaves as ``map_error(exc)``; what the adapter raises while handling a chunk is not mapped.

        Raises:
            ProviderError: from ``map_error``.
        """
        try:
            sdk_stream = await opening
        except errors as exc:
            raise map_error(exc) from None
        chunks = _Mapped(sdk_stream.__aiter__(), map_error, errors)
        # The SDK clients' streams are async context managers; google-genai's is an async generator.
        if not isinstance(sdk_stream, contextlib.AbstractAsyncContextManager):
            sdk_stream = contextlib.aclosing(sdk_stream)
        async with sdk_stream:
            yield chunks


class _Mapped:
    """An async iterator whose errors of ``errors`` leave as ``map_error(exc)``."""

    def __init__(self, chunks: AsyncIterator[Any], map_error: MapError, errors: tuple[type[Exception], ...]) -> None:
        self.chunks, self.map_error, self.errors = chunks, map_error, errors

    def __aiter__(self) -> _Mapped:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.chunks.__anext__()
        except self.errors as exc:
            raise self.map_error(exc) from None
