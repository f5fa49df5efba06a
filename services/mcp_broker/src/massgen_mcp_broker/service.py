"""The mcp_broker service: a pull consumer on the ``MASSGEN_TOOLS`` work queue.

For each request a worker pushed it appends the outcome to the run's ``mcp`` subject and only then acks:

- ``tools.list_requested``: starts (or reuses) the agent's servers and records one ``tools.listed`` per
  server; a server's ``list_changed`` notification records a new version for every run using it;
- ``tool.call_requested``: checks the grant, the tool filters, the arguments against the tool's input
  schema and filesystem paths against the agent's roots, then calls with a timeout, retries transient
  failures with exponential backoff, and counts outcomes in the server's circuit breaker; records
  ``tool.call_completed`` or ``tool.call_failed`` (id ``<request id>:result``, so a worker's own
  timeout record and the broker's can never both land);
- ``workspace.snapshot_requested``: copies the agent's workspace to ``snapshots/<anon id>``.
- ``media.generated``: writes a generated file (from the Object Store) into the agent's workspace (or the
  directory it names inside the agent's writable roots);
- ``workspace.file_requested``: reads a file the agent may read into the Object Store, for the worker's
  bundled multimodal tools (``workspace.file_read``).

Each tool call runs at most once (``massgen_es.bus.once``, issue 13 item 3): ``tool.call_started`` is
recorded just before the server is called; a redelivered call that already has its outcome is acked,
one that was started but has none (this service was killed during the call) gets ``tool.call_failed``
(``Interrupted``) instead of a second call, and any request whose run has ended is acked without
running or recording anything. Listings and snapshots have no effect outside the log: they are redone.

Every text that leaves the broker is scrubbed of the secret values its servers were started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import tenacity
from mcp import MCPError
from nats.aio.client import Client
from nats.aio.msg import Msg

from massgen_es import mcp, scrub, subjects, tool_safety
from massgen_es.bus import Draft, once
from massgen_es.bus.classifications import ClassificationStore
from massgen_es.bus.jetstream import ACK_WAIT_S, JetStreamEventLog, ToolQueue
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.config import FILESYSTEM_SERVER, PLANNING_SERVER, WORKSPACE_TOOLS_SERVER
from massgen_es.errors import (
    CircuitOpen,
    Interrupted,
    MassgenError,
    NoRecordedResult,
    ServerUnavailable,
    ToolArgumentError,
    ToolCallError,
    ToolError,
    ToolPermissionError,
    UnknownTool,
)
from massgen_es.events import (
    Event,
    McpServerStateChanged,
    MediaGenerated,
    MediaSaved,
    Record,
    RunSubmitted,
    Source,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallStarted,
    ToolsListed,
    ToolsListRequested,
    ToolSpec,
    WorkspaceFileRead,
    WorkspaceFileRequested,
    WorkspaceSnapshotRequested,
    WorkspaceSnapshotted,
)
from massgen_es.failures import failure_of
from massgen_es.memory_files import read_memories
from massgen_mcp_broker import approvals, inspection, tracking
from massgen_mcp_broker.runs import AgentGrant, RunContext, resolve_launch
from massgen_mcp_broker.sessions import Breaker, Session, SessionPool
from massgen_mcp_broker.task_planning import HISTORY_META

log = logging.getLogger("massgen.mcp_broker")

_TRANSIENT = (TimeoutError, ServerUnavailable, ConnectionError, anyio.ClosedResourceError, anyio.BrokenResourceError,
              anyio.EndOfStream)


class McpBroker:
    """Executes MCP requests for every run.

    Args:
        nc: a connected NATS client.
        home: data directory; workspaces and snapshots live in ``<home>/runs/<run_id>``, server stderr in
            ``<home>/logs``.
        concurrency: requests handled at once (a model's parallel tool calls run concurrently).
        ack_wait_s: seconds without an ack or heartbeat before JetStream redelivers a request (the
            queue's setting; heartbeats come at a third of it while a call runs).
        idle_s: seconds after which an unused session is stopped.
    """

    def __init__(
        self,
        nc: Client,
        home: Path,
        *,
        concurrency: int = 16,
        ack_wait_s: float = ACK_WAIT_S,
        max_deliver: int = 5,
        idle_s: float = 600.0,
        instance: str | None = None,
    ) -> None:
        self.nc = nc
        self.log = JetStreamEventLog(nc)
        self.classifications = ClassificationStore(nc)
        self.queue = ToolQueue(nc)
        self.secrets = SecretStore(nc)
        self.objects = ObjectStore(nc)
        self.home = home
        self.concurrency = concurrency
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.idle_s = idle_s
        self.source = Source(service="mcp_broker", instance=instance or Source.instance_id())
        self.pool = SessionPool(home / "logs", self._tools_changed)
        self.runs: dict[str, RunContext] = {}
        self.listeners: dict[str, set[tuple[str, str, str]]] = {}
        """Per session key: the (run, agent, server) catalogs to re-record on ``list_changed``."""
        self.requests: set[asyncio.Task[None]] = set()
        """``massgen mcp list`` / ``mcp call`` requests being answered (inspection.py)."""

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Pull and handle requests until cancelled; sessions are stopped on the way out."""
        reaper = asyncio.create_task(self._reap_idle())
        # `massgen mcp list` and `mcp call` (inspection.py): one replica of the queue group answers each.
        listing = await self.nc.subscribe(subjects.MCP_REQUESTS, queue=subjects.BROKER_CONSUMER,
                                          cb=self._on_request)
        try:
            await self.queue.serve(
                self._handle, concurrency=self.concurrency, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver
            )
        finally:
            reaper.cancel()
            with contextlib.suppress(Exception):
                await listing.unsubscribe()
            for task in list(self.requests):
                task.cancel()
            await self.pool.close()

    async def _on_request(self, msg: Msg) -> None:
        # A task each: the subscription's callbacks run one at a time, and a call may take its timeout.
        task = asyncio.create_task(inspection.serve_request(self, msg))
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_s, 30.0))
            await self.pool.close_idle(self.idle_s)

    async def _handle(self, record: Record, msg: Msg) -> None:
        try:
            before = await once.prior(self.log, record.run_id, "mcp_broker", record.id, record.seq)
            if before.ended is not None:
                once.log_skipped(log, record, before.ended)
                await msg.ack()
                return
            if before.outcome is not None:  # a call answered before this delivery: never call twice
                await msg.ack()
                return
            run = await self._run_context(record.run_id)
            match record.event:
                case ToolsListRequested() as req:
                    await self._list(run, record, req)
                case ToolCallRequested() as req:
                    await self._call(run, record, req, before)
                case WorkspaceSnapshotRequested() as req:
                    await self._snapshot(run, record, req)
                case MediaGenerated() as req:
                    await self._save_media(run, record, req)
                case WorkspaceFileRequested() as req:
                    await self._read_file(run, record, req)
                case _:
                    log.error("dropping broker request of type %s", record.type)
                    await msg.term()
                    return
            await msg.ack()
        except MassgenError as exc:
            log.error("request %s of run %s failed: %s", record.id, record.run_id, exc)
            await msg.term()

    async def call_once(self, record: Record) -> None:
        """Make the tool call of ``record`` (a ``tool.call_requested`` already in the log) unless its run
        ended or it was answered or started before: the work queue's rules without the work queue
        (``massgen mcp call``, inspection.py).

        Raises:
            MassgenError: the run has no ``run.submitted``.
        """
        assert isinstance(record.event, ToolCallRequested)
        before = await once.prior(self.log, record.run_id, "mcp_broker", record.id, record.seq)
        if before.ended is not None or before.outcome is not None:
            return
        run = await self._run_context(record.run_id)
        await self._call(run, record, record.event, before)

    async def _emit(self, run_id: str, cause: str, drafts: list[tuple[str, Event]]) -> None:
        await self.log.append(run_id, "mcp_broker", [Draft(i, e, cause) for i, e in drafts], origin=self.source)

    async def _run_context(self, run_id: str) -> RunContext:
        run = self.runs.get(run_id)
        if run is not None:
            return run
        records = await self.log.read(run_id)
        submitted = next((r.event for r in records if isinstance(r.event, RunSubmitted)), None)
        if submitted is None:
            raise MassgenError(f"run {run_id} has no run.submitted event")
        run = RunContext.build(run_id, submitted, self.home)
        if run.replay_from:
            run.load_recording(await self.log.read(run.replay_from))
        self.runs[run_id] = run
        return run

    # ------------------------------------------------------------------ sessions

    async def _session(
        self, run: RunContext, grant: AgentGrant, server: str, cause: str, start: bool = True
    ) -> Session:
        """The pooled session for one of ``grant``'s servers, started unless ``start`` is False."""
        cfg = grant.servers[server]
        key = (grant.agent_id, server)
        if key not in run.launches:
            run.launches[key] = await resolve_launch(grant, cfg, run, self.secrets)
        launch, hidden = run.launches[key]
        breaker = Breaker(cfg.circuit_breaker.max_failures, cfg.circuit_breaker.reset_time_seconds)
        session = self.pool.get(launch, breaker)
        scrub.remember(hidden)  # its env and header values: scrubbed from every event and log line
        if start:
            await self._start(run, session, server, cause)
        return session

    async def session_for(self, run: RunContext, grant: AgentGrant, server: str) -> Session:
        """The pooled session of one of ``grant``'s servers, not started (``massgen mcp list``).

        Raises:
            ConfigError: a referenced variable or secret is missing.
        """
        return await self._session(run, grant, server, "", start=False)

    async def _start(self, run: RunContext, session: Session, server: str, cause: str) -> None:
        launch = session.launch
        if not session.alive:
            await session.start()
            reason = "restarted after the server exited" if session.restarts else ""
            await self._emit(run.run_id, cause, [
                (f"{cause}:state:{launch.key}:{session.restarts}", McpServerStateChanged(
                    server=server, state="started", reason=reason))
            ])

    def _catalog(self, session: Session, grant: AgentGrant, server: str) -> tuple[ToolSpec, ...]:
        cfg = grant.servers[server]
        return tuple(
            ToolSpec(
                name=mcp.tool_name(server, t.name),
                description=t.description or "",
                parameters=t.input_schema or {"type": "object"},
            )
            for t in session.catalog
            if mcp.tool_allowed(cfg, grant.backend, t.name)
        )

    def _roots(self, run: RunContext, grant: AgentGrant, server: str) -> tuple[str, ...]:
        if server != FILESYSTEM_SERVER or grant.workspace is None:
            return ()
        return tuple(str(r.path) for r in grant.roots(run, "coordination"))

    async def _list(self, run: RunContext, record: Record, req: ToolsListRequested) -> None:
        grant = run.agents[req.agent_id]

        async def one(server: str) -> tuple[str, ToolsListed]:
            try:
                session = await self._session(run, grant, server, record.id)
            except MassgenError as exc:
                return f"{record.id}:{server}:failed", ToolsListed(
                    agent_id=grant.agent_id, server=server, version=0, failure=failure_of(exc))
            self.listeners.setdefault(session.launch.key, set()).add((run.run_id, grant.agent_id, server))
            return f"{record.id}:{server}:v{session.catalog_version}", ToolsListed(
                agent_id=grant.agent_id,
                server=server,
                version=session.catalog_version,
                tools=self._catalog(session, grant, server),
                roots=self._roots(run, grant, server),
            )

        listed = await asyncio.gather(*(one(s) for s in grant.servers))
        await self._emit(run.run_id, record.id, list(listed))

    async def _tools_changed(self, session: Session) -> None:
        for run_id, agent_id, server in sorted(self.listeners.get(session.launch.key, ())):
            run = self.runs.get(run_id)
            if run is None:
                continue
            grant = run.agents[agent_id]
            key = f"{run_id}:tools:{agent_id}:{server}:{session.launch.key}:v{session.catalog_version}"
            await self._emit(run_id, key, [(key, ToolsListed(
                agent_id=agent_id, server=server, version=session.catalog_version,
                tools=self._catalog(session, grant, server), roots=self._roots(run, grant, server)))])

    # ------------------------------------------------------------------ calls

    async def _call(self, run: RunContext, record: Record, req: ToolCallRequested, before: once.Prior) -> None:
        result_id = once.result_id(record.id)
        started = time.monotonic()

        def failed(error: MassgenError, attempts: int = 0) -> ToolCallFailed:
            return ToolCallFailed(
                call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, server=req.server, tool=req.tool,
                failure=failure_of(error), duration_s=round(time.monotonic() - started, 4), attempts=attempts,
            )

        if run.replay_from:
            hit = run.recorded_result(req)
            outcome: Event = (
                _replayed(hit, req, run.replay_from) if hit is not None else failed(NoRecordedResult(
                    f"no recorded result for {req.tool} with these arguments in run {run.replay_from}"))
            )
            await self._finish(run, record, [(result_id, outcome)], before.fence)
            return
        if before.started is not None:
            log.warning("run %s: tool call %s was started by a broker that stopped; answered Interrupted, not "
                        "called again", run.run_id, record.id)
            await self._finish(run, record, [(result_id, failed(Interrupted(
                f"the MCP broker stopped while {req.tool} on {req.server!r} ran; it is not called again because "
                "it may already have had effects")))], before.fence)
            return
        outcome, extra = await self._execute(run, record, req, failed, started, before.fence)
        await self._finish(run, record, [*extra, (result_id, outcome)], before.fence)

    async def _finish(
        self, run: RunContext, record: Record, drafts: list[tuple[str, Event]], fence: once.Fence
    ) -> None:
        """Append a call's outcome unless its run has ended meanwhile (then say so in the log)."""
        ended = await once.append_unless_ended(self.log, run.run_id, "mcp_broker",
                                               [Draft(i, e, record.id) for i, e in drafts], origin=self.source,
                                               fence=fence)
        if ended is not None:
            once.log_skipped(log, record, ended, "its outcome is dropped")

    async def _mark_started(self, run: RunContext, record: Record, req: ToolCallRequested, fence: once.Fence) -> None:
        """Record ``tool.call_started``: from here on the call may have effects, and a redelivery must not
        make it again (``massgen_es.bus.once``).

        Raises:
            ToolError: the run has ended; the call is not made.
        """
        marker = ToolCallStarted(call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, server=req.server,
                                 tool=req.tool)
        if await once.append_unless_ended(self.log, run.run_id, "mcp_broker",
                                          [Draft(once.started_id(record.id), marker, record.id)],
                                          origin=self.source, fence=fence) is not None:
            raise ToolError("the run ended before the call started; it was not made")

    async def _execute(self, run, record, req, failed, started, fence) -> tuple[Event, list[tuple[str, Event]]]:
        grant = run.agents.get(req.agent_id)
        if grant is None or req.server not in grant.servers:
            return failed(ToolPermissionError(f"MCP server {req.server!r} is not granted to this agent")), []
        cfg = grant.servers[req.server]
        if not mcp.tool_allowed(cfg, grant.backend, req.tool):
            return failed(ToolPermissionError(f"tool {mcp.tool_name(req.server, req.tool)} is not allowed "
                                              "for this agent (allowed_tools / exclude_tools)")), []
        try:
            session = await self._session(run, grant, req.server, record.id, start=False)
            if session.breaker.state(time.monotonic()) != "open":
                await self._start(run, session, req.server, record.id)
        except MassgenError as exc:
            return failed(ServerUnavailable(str(exc))), []
        extra: list[tuple[str, Event]] = []
        tool = next((t for t in session.catalog if t.name == req.tool), None)
        if tool is None:
            return failed(UnknownTool(f"MCP server {req.server!r} has no tool {req.tool!r}")), []
        try:
            arguments = mcp.check_arguments(req.arguments, tool.input_schema or {"type": "object"})
            meta = None
            if req.server in grant.builtin:  # ours: `filesystem`, `workspace_tools`, `planning`
                arguments, meta = await self._confine(run, grant, req, arguments)
            schema = tool.input_schema or {"type": "object"}  # as the catalog offered it: the classification key
            await approvals.check(self.log, self.source, run, record, req, fence,  # planning mode, rules, a person
                                  lambda: self.classifications.get(tool_safety.digest(req.server, req.tool, schema)))
            await self._mark_started(run, record, req, fence)
        except ToolError as exc:
            return failed(exc), []
        attempts = 0

        async def attempt() -> Event:
            """One try: the circuit-open refusal, or the completed call. A failed call is recorded in the
            breaker (and a crash as an event) and raised for tenacity to retry or give up."""
            nonlocal attempts
            if session.breaker.state(time.monotonic()) == "open":
                return failed(CircuitOpen(f"MCP server {req.server!r} is failing; its circuit breaker is open, "
                                          "calls resume after its reset time"), attempts)
            n, attempts = attempts, attempts + 1
            try:
                await self._start(run, session, req.server, f"{record.id}:a{n}")
                result = await session.call(req.tool, arguments, cfg.timeout, meta=meta)
            except (MCPError, *_TRANSIENT) as exc:
                if isinstance(exc, ServerUnavailable):
                    extra.append((f"{record.id}:crashed:{n}", McpServerStateChanged(
                        server=req.server, state="crashed", reason=str(exc))))
                change = session.breaker.record(False, time.monotonic())
                if change:
                    extra.append((f"{record.id}:breaker:{n}", McpServerStateChanged(
                        server=req.server, state=change, failures=session.breaker.failures,
                        reason=_describe(exc))))
                raise
            change = session.breaker.record(True, time.monotonic())
            if change:
                extra.append((f"{record.id}:breaker:ok", McpServerStateChanged(
                    server=req.server, state=change, failures=0, reason="call succeeded")))
            return ToolCallCompleted(
                call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, server=req.server, tool=req.tool,
                content=_text_of(result), is_error=bool(result.is_error),
                duration_s=round(time.monotonic() - started, 4), attempts=attempts,
            )

        try:
            outcome = await tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception(_transient),
                stop=tenacity.stop_after_attempt(cfg.retries + 1),
                wait=_backoff,
                reraise=True,  # the last failure itself, not tenacity's RetryError
            )(attempt)
        except (MCPError, *_TRANSIENT) as last:
            why = f"MCP call {req.tool} on {req.server!r} failed after {attempts} attempt(s): {_describe(last)}"
            return failed(ServerUnavailable(why) if isinstance(last, _TRANSIENT) else ToolCallError(why),
                          attempts), extra
        return outcome, extra

    async def _confine(
        self, run: RunContext, grant: AgentGrant, req: ToolCallRequested, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The arguments of a call to one of our workspace servers with every path checked against the
        agent's roots and protected paths and resolved, and the request ``_meta`` to send: for a
        ``planning`` call, the agent's earlier planning calls (``tracking.planning_history``); for a
        ``workspace_tools`` delete, the paths the agent read or created in this run, folded from the log
        (read-before-delete, MassGen spec §3.5; see ``tracking.py``).

        Raises:
            ToolArgumentError, ToolPermissionError: a path is malformed, outside the roots, read-only or
                protected.
        """
        if req.server == PLANNING_SERVER:  # no paths; the plan, from the log (MassGen spec §1.15)
            history = tracking.planning_history(await self.log.read(run.run_id), grant.agent_id, PLANNING_SERVER)
            return arguments, {HISTORY_META: history}
        roots = grant.roots(run, req.kind)
        filesystem = req.server == FILESYSTEM_SERVER
        confine = mcp.confine_paths if filesystem else mcp.confine_workspace_paths
        arguments = confine(req.tool, arguments, roots)
        mcp.check_protected_writes(filesystem, req.tool, arguments, grant.protected)
        if filesystem or req.tool not in mcp.WORKSPACE_DELETE_TOOLS:
            return arguments, None
        known = tracking.known_paths(await self.log.read(run.run_id), grant.agent_id, roots, FILESYSTEM_SERVER,
                                     WORKSPACE_TOOLS_SERVER)
        return arguments, {tracking.KNOWN_PATHS_META: sorted(known)}

    # ------------------------------------------------------------------ snapshots

    async def _snapshot(self, run: RunContext, record: Record, req: WorkspaceSnapshotRequested) -> None:
        grant = run.agents[req.agent_id]
        if grant.workspace is None:
            return
        target = run.snapshots / grant.anon_id
        files, size = await asyncio.to_thread(_copy_tree, grant.workspace, target)
        # MassGen's memory filesystem mode: the memories shared with the answer go into the log
        memories = await asyncio.to_thread(read_memories, target) if run.settings.memory_filesystem_mode else ()
        await self._emit(run.run_id, record.id, [(f"{record.id}:done", WorkspaceSnapshotted(
            agent_id=grant.agent_id, anon_id=grant.anon_id, turn_id=req.turn_id, path=str(target),
            files=files, bytes=size, memories=memories))])


    # ------------------------------------------------------------------ generated media

    async def _save_media(self, run: RunContext, record: Record, req: MediaGenerated) -> None:
        """Write a generated file (``media.generated``) into the agent's workspace, or its ``directory``
        inside the agent's writable roots, as ``media.saved`` (with a failure when that is outside them)."""
        grant = run.agents[req.agent_id]
        if grant.workspace is None:
            return
        data = await self.objects.get(req.object)
        name = Path(req.file_name).name  # a bare name: never outside the directory
        try:
            where = mcp.resolve_in_roots(req.directory or ".", grant.roots(run, "coordination"), write=True)
            if where.exists() and not where.is_dir():
                raise ToolArgumentError(f"storage path {req.directory!r} is a file, not a directory")
            target = where / name
            await asyncio.to_thread(_write, target, data)
        except (ToolError, OSError) as exc:
            saved = MediaSaved(call_id=req.call_id, agent_id=req.agent_id, path=req.directory, bytes=0,
                               failure=failure_of(exc))
        else:
            saved = MediaSaved(call_id=req.call_id, agent_id=req.agent_id, path=str(target), bytes=len(data))
        await self._emit(run.run_id, record.id, [(once.result_id(record.id), saved)])

    async def _read_file(self, run: RunContext, record: Record, req: WorkspaceFileRequested) -> None:
        """Store a file the agent may read (``workspace.file_requested``: its workspace, the shared
        snapshots, its context paths) in the Object Store, as ``workspace.file_read``."""
        grant = run.agents[req.agent_id]
        try:
            if grant.workspace is None:
                raise ToolPermissionError("this agent has no workspace to read files from; give its backend a `cwd`")
            path = mcp.resolve_in_roots(req.path, grant.roots(run, req.kind), write=False)
            data = await asyncio.to_thread(_read_at_most, path, req.max_bytes)
            ref = await self.objects.put(data, path.name, exact=True)
        except (ToolError, OSError) as exc:
            read = WorkspaceFileRead(call_id=req.call_id, agent_id=req.agent_id, path=req.path,
                                     failure=failure_of(exc))
        else:
            read = WorkspaceFileRead(call_id=req.call_id, agent_id=req.agent_id, path=str(path), object=ref)
        await self._emit(run.run_id, record.id, [(once.result_id(record.id), read)])


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _read_at_most(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``.

    Raises:
        ToolArgumentError: it does not exist, is not a file, or has more than ``max_bytes``.
    """
    if not path.exists():
        raise ToolArgumentError(f"file does not exist: {path}")
    if not path.is_file():
        raise ToolArgumentError(f"not a file: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ToolArgumentError(f"{path} has {size / 1024 / 1024:.1f} MB, more than the {max_bytes // 1024 // 1024} MB "
                                "this tool takes; use a smaller file")
    return path.read_bytes()


def _copy_tree(src: Path, target: Path) -> tuple[int, int]:
    """Replace ``target`` by a copy of ``src`` (symlinks copied as links, never followed); return
    (files, bytes). Only the latest snapshot is kept, as in MassGen."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, symlinks=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    files = [p for p in target.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def _text_of(result: mcp_types.CallToolResult) -> str:
    parts = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{block.type} content: {getattr(block, 'mime_type', '') or 'binary'}]")
    return "\n".join(parts)


def _transient(exc: BaseException) -> bool:
    """Worth another try: a timeout or a lost server, not a protocol error the server answered with."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, MCPError)


def _backoff(state: tenacity.RetryCallState) -> float:
    """Seconds before the next try of a tool call: 0.2, 0.4, 0.8 ... up to 5."""
    return min(0.2 * 2 ** (state.attempt_number - 1), 5.0)


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text


def _replayed(hit: ToolCallCompleted, req: ToolCallRequested, source_run: str) -> ToolCallCompleted:
    return ToolCallCompleted(
        call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, server=req.server, tool=req.tool,
        content=hit.content, is_error=hit.is_error, duration_s=0.0, attempts=0, replayed_from=source_run,
    )
