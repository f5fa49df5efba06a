"""MCP client sessions, kept alive and shared, with restart and a circuit breaker per server.

MassGen tears every stdio server down after each agent turn and starts it again on the next (spec
§3.2). Here a session is started once, kept while it is used, shared by every run and agent whose
server config is identical (same command, args, env, cwd / url, headers), and restarted on the next
call after it crashed.

A session lives in its own task because the SDK's transports are anyio context managers that must be
entered and exited in the same task; calls from other tasks go through the live ``mcp.Client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from massgen_es import scrub
from massgen_es.errors import ServerUnavailable

log = logging.getLogger("massgen.mcp_broker")
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Launch:
    """A resolved server: secrets substituted, paths absolute. Its :attr:`key` identifies a shared session.

    ``type`` is ``stdio`` (``command``, ``args``, ``env``, ``cwd``) or ``streamable-http`` (``url``,
    ``headers``).
    """

    name: str
    type: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """Digest of everything that makes two sessions interchangeable (secrets included, never shown)."""
        blob = json.dumps([self.type, self.command, self.args, self.env, self.cwd, self.url, self.headers])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Breaker:
    """MassGen's circuit breaker (spec §3.3): open after ``max_failures`` consecutive failures; after
    ``reset_s`` x min(2^(failures - max), 8) one trial call is let through (half-open); a success closes it."""

    max_failures: int = 3
    reset_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None

    def state(self, now: float) -> BreakerState:
        """``closed``, ``open`` or ``half_open``."""
        if self.opened_at is None:
            return "closed"
        backoff = self.reset_s * min(2 ** max(self.failures - self.max_failures, 0), 8)
        return "half_open" if now - self.opened_at >= backoff else "open"

    def record(self, ok: bool, now: float) -> BreakerState | None:
        """Count a call's outcome; return the new state when it changed, else None."""
        before = self.state(now)
        if ok:
            self.failures, self.opened_at = 0, None
        else:
            self.failures += 1
            if self.failures >= self.max_failures:
                self.opened_at = now
        after = self.state(now)
        return after if after != before or (not ok and before == "half_open") else None


OnToolsChanged = Callable[["Session"], Awaitable[None]]


@dataclass
class Session:
    """One live MCP client session. Use :meth:`start`, :meth:`tools`, :meth:`call`, :meth:`close`."""

    launch: Launch
    log_dir: Path
    on_tools_changed: OnToolsChanged | None = None
    breaker: Breaker = field(default_factory=Breaker)
    client: Client | None = None
    catalog: list[mcp_types.Tool] = field(default_factory=list)
    catalog_version: int = 0
    restarts: int = 0
    last_used: float = field(default_factory=time.monotonic)
    _task: asyncio.Task | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _relisting: asyncio.Task | None = None

    @property
    def alive(self) -> bool:
        """The server runs and its client session is up."""
        return self._task is not None and not self._task.done() and self.client is not None

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start (or restart) the server and list its tools.

        Raises:
            ServerUnavailable: it did not start or list its tools within ``timeout_s``.
        """
        async with self._lock:
            if self.alive:
                return
            if self._task is not None:
                self.restarts += 1
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._own(ready), name=f"mcp-{self.launch.name}-{self.launch.key}")
            try:
                await asyncio.wait_for(asyncio.shield(ready), timeout_s)
            except TimeoutError:
                await self.close()
                raise ServerUnavailable(
                    f"MCP server {self.launch.name!r} did not start within {timeout_s:.0f} s; "
                    f"see {self._errlog_path()}"
                ) from None
            except Exception as exc:
                tail = self._stderr_tail()
                raise ServerUnavailable(
                    f"MCP server {self.launch.name!r} failed to start ({_causes(exc)}"
                    + (f"; its stderr ends: {tail}" if tail else "") + f"); see {self._errlog_path()}"
                ) from None

    def _errlog_path(self) -> Path:
        return self.log_dir / f"mcp_{self.launch.name}_{self.launch.key}_stderr.log"

    def _stderr_tail(self, limit: int = 300) -> str:
        """The last line the server wrote to stderr (already scrubbed), e.g. the Python error of a
        module that is not installed; "" when it wrote none."""
        try:
            lines = [line.strip() for line in self._errlog_path().read_text(errors="replace").splitlines()]
        except OSError:
            return ""
        last = next((line for line in reversed(lines) if line), "")
        return last if len(last) <= limit else last[: limit - 3] + "..."

    def _transport(self, errlog: Any) -> Any:
        launch = self.launch
        if launch.type == "stdio":
            params = StdioServerParameters(
                command=launch.command, args=list(launch.args), env=dict(launch.env) or None, cwd=launch.cwd
            )
            return stdio_client(params, errlog=errlog)  # stderr to a file, as MassGen does (spec §3.2)
        return streamable_http_client(launch.url, http_client=httpx2.AsyncClient(headers=dict(launch.headers)))

    async def _own(self, ready: asyncio.Future[None]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            # The server's stderr goes through the scrubber: a server that prints its environment (the
            # resolved MCP secrets) must not leave them in the log file (issue 13 item 1).
            with scrub.scrubbed_pipe(self._errlog_path()) as errlog:
                # "legacy" (initialize handshake): list-changed then arrives as a plain notification; the
                # 2026 era would need a subscriptions/listen stream, which the reference servers lack.
                async with Client(self._transport(errlog), message_handler=self._on_message, mode="legacy") as client:
                    self.client = client
                    await self._relist()
                    if not ready.done():
                        ready.set_result(None)
                    await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ServerUnavailable(str(exc)))
            if not isinstance(exc, asyncio.CancelledError | Exception):
                raise
            log.warning("MCP server %s session ended: %s", self.launch.name, exc)
        finally:
            self.client = None

    async def _relist(self) -> None:
        assert self.client is not None
        tools: list[mcp_types.Tool] = []
        cursor = None
        while True:
            page = await self.client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.catalog = tools
        self.catalog_version += 1

    async def _on_message(self, message: Any) -> None:
        note = getattr(message, "root", message)
        if isinstance(note, mcp_types.ToolListChangedNotification) and self.client is not None:
            # Re-list in a task: the handler runs on the session's receive loop, which the listing needs.
            self._relisting = asyncio.create_task(self._tools_changed())

    async def _tools_changed(self) -> None:
        try:
            await self._relist()
        except Exception as exc:
            log.warning("re-listing tools of %s failed: %s", self.launch.name, exc)
            return
        if self.on_tools_changed is not None:
            await self.on_tools_changed(self)

    async def call(
        self, tool: str, arguments: dict[str, Any], timeout_s: float, meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        """One ``tools/call`` (``meta``: the request's ``_meta``).

        Raises:
            ServerUnavailable: the session is not alive.
            TimeoutError: no answer within ``timeout_s``.
            MCPError: the server answered with a JSON-RPC error.
        """
        client = self.client
        if client is None or not self.alive:
            raise ServerUnavailable(f"MCP server {self.launch.name!r} is not running")
        self.last_used = time.monotonic()
        try:
            # RequestParamsMeta is an open TypedDict: any key may go with the SDK's reserved ones.
            request_meta = cast(mcp_types.RequestParamsMeta, dict(meta)) if meta else None
            result = await asyncio.wait_for(client.call_tool(tool, arguments, meta=request_meta), timeout_s)
            if self._relisting is not None:
                # A server that changed its tools during the call notified us before answering: let the
                # new catalog be recorded before the result, so the model's next round is offered it.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._relisting), timeout_s)
                self._relisting = None
            return result
        except MCPError as exc:
            if exc.code != mcp_types.CONNECTION_CLOSED:
                raise
            # The server process exited: end the session so the next call starts a new one.
            await self.close()
            raise ServerUnavailable(f"MCP server {self.launch.name!r} exited during the call") from None

    async def close(self) -> None:
        """Stop the server (idempotent)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task


class SessionPool:
    """Sessions by :attr:`Launch.key`: identical server configs share one session across runs and agents."""

    def __init__(self, log_dir: Path, on_tools_changed: OnToolsChanged | None = None) -> None:
        self.log_dir = log_dir
        self.on_tools_changed = on_tools_changed
        self.sessions: dict[str, Session] = {}

    def get(self, launch: Launch, breaker: Breaker) -> Session:
        """The session for ``launch`` (created, not started, on first use)."""
        s = self.sessions.get(launch.key)
        if s is None:
            s = self.sessions[launch.key] = Session(launch, self.log_dir, self.on_tools_changed, breaker)
        return s

    async def close_idle(self, idle_s: float) -> None:
        """Stop sessions unused for ``idle_s`` seconds."""
        now = time.monotonic()
        for key, s in list(self.sessions.items()):
            if now - s.last_used > idle_s:
                await s.close()
                del self.sessions[key]

    async def close(self) -> None:
        """Stop every session."""
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)
        self.sessions.clear()


def _causes(exc: BaseException) -> str:
    """What went wrong, without the task groups around it: the MCP SDK wraps a server that exited
    (``MCPError: Connection closed``) or an endpoint that refused the connection (``ConnectError``) in
    nested ``ExceptionGroup``s, whose own text only says "unhandled errors in a TaskGroup"."""

    def leaves(e: BaseException) -> list[BaseException]:
        if isinstance(e, BaseExceptionGroup):
            return [leaf for sub in e.exceptions for leaf in leaves(sub)]
        return [e]

    return "; ".join(dict.fromkeys(f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
                                   for e in leaves(exc)))
