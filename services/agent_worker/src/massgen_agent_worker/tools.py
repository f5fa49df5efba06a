"""The worker's side of MCP: ask the broker for catalogs and calls over the bus, wait for the results.

A request is appended to the run's ``agent`` subject (so the log shows it) and pushed to the broker's
work queue; the answer arrives on the run's ``mcp`` subject. Ids derive from the turn, the delivery
and the tool round, so a redelivered turn never reuses a result meant for different calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from nats.aio.client import Client

from massgen_agent_worker import classifier
from massgen_es import custom_tools, mcp, tool_safety
from massgen_es.bus import Draft, once
from massgen_es.bus.classifications import ClassificationStore
from massgen_es.bus.jetstream import ExecQueue, JetStreamEventLog, ToolQueue, WorkQueue
from massgen_es.config import BackendConfig, server_names
from massgen_es.errors import PlanningModeBlocked, ToolArgumentError, ToolTimeout
from massgen_es.events import (
    ApprovalRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    Failure,
    MediaGenerated,
    MediaSaved,
    Record,
    Source,
    ToolCall,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolClassified,
    ToolsListed,
    ToolsListRequested,
    ToolSpec,
    TurnRequested,
    WorkspaceFileRead,
    WorkspaceFileRequested,
    WorkspaceSnapshotRequested,
    WorkspaceSnapshotted,
)
from massgen_es.failures import failure_of
from massgen_es.subjects import Writer

COMMAND_LINE = "command_line"
EXECUTE_COMMAND = ToolSpec(
    name=mcp.tool_name(COMMAND_LINE, "execute_command"),
    description=(
        "Run a shell command in your workspace (pipes and && work) and get its exit code, stdout and stderr. "
        "work_dir is relative to your workspace; timeout is in seconds."
    ),
    parameters={
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The shell command."},
            "work_dir": {"type": "string", "description": "Directory inside your workspace (default: its root)."},
            "timeout": {"type": "number", "description": "Seconds before the command is killed."},
        },
        "required": ["command"],
    },
)
"""MassGen's ``execute_command`` (spec §4.1), run by the executor service rather than an MCP server."""

CUSTOM_TOOLS = "custom_tool"
"""The catalog entry of an agent's custom tools (MassGen spec §2.5), run by the executor too (MassGen's
bundled multimodal tools by the worker itself, recorded as calls of this server: ``multimodal``)."""

DISCOVERY_TIMEOUT_S = 90.0
"""How long a turn waits for its agent's tool catalogs (an npx server's first start can take seconds)."""


def expected_servers(backend: BackendConfig) -> list[str]:
    """Names of the MCP servers an agent uses: its ``mcp_servers`` plus ``filesystem`` and
    ``workspace_tools`` when ``cwd`` is set (``massgen_es.config.server_names``)."""
    return server_names(backend)


class Catalog:
    """An agent's MCP tools, as the broker last listed them."""

    def __init__(self, listed: Iterable[ToolsListed]) -> None:
        latest: dict[str, ToolsListed] = {}
        for ev in listed:
            if ev.server not in latest or ev.version >= latest[ev.server].version:
                latest[ev.server] = ev
        self.servers = latest

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        """Every tool of every listed server."""
        return tuple(t for ev in self.servers.values() for t in ev.tools)

    def notes(self) -> str:
        """A system-prompt note on unavailable servers and the filesystem roots (MassGen spec §1.6)."""
        lines = []
        for ev in self.servers.values():
            if ev.failure is not None:
                lines.append(f"The MCP server {ev.server!r} is unavailable: {ev.failure.message}")
            if ev.roots:
                lines.append(f"Your workspace (read-write): {ev.roots[0]}")
                lines.append(
                    f"Shared reference (read-only): {ev.roots[1]}/<agentN> holds the workspace of the agent "
                    "whose answer is labelled agentN"
                )
                lines.extend(f"Context path: {r}" for r in ev.roots[2:])
        return "\n".join(lines)


class ToolClient:
    """MCP over the bus for one worker process."""

    def __init__(self, nc: Client, source: Source) -> None:
        self.classifications = ClassificationStore(nc)
        self.log = JetStreamEventLog(nc)
        self.queue = ToolQueue(nc)
        self.exec_queue = ExecQueue(nc)
        self.source = source

    async def _request(self, run_id: str, cause: str, drafts: list[Draft], queue: WorkQueue | None = None) -> int:
        seqs = await self._append_requests(run_id, drafts)
        await self._push(run_id, cause, drafts, seqs, queue)
        return min(seqs)

    async def _append_requests(self, run_id: str, drafts: list[Draft]) -> list[int]:
        return await self.log.append(run_id, "agent_worker", drafts, origin=self.source)

    async def _push(
        self, run_id: str, cause: str, drafts: list[Draft], seqs: list[int], queue: WorkQueue | None
    ) -> None:
        for d, seq in zip(drafts, seqs, strict=True):
            await (queue or self.queue).push(
                Record(seq=seq, id=d.id, run_id=run_id, ts=time.time(), source=self.source,
                       causation_id=cause, event=d.event)
            )

    async def _follow_until(
        self, run_id: str, after_seq: int, source: Writer, accept: Callable[[Record], bool],
        enough: Callable[[list[Record]], bool], timeout_s: float,
    ) -> tuple[list[Record], bool]:
        """Follow the run's ``source`` subject, keeping the records ``accept`` takes, until ``enough`` says
        so or ``timeout_s`` passes; returns the records and whether it was enough. An
        ``approval.requested`` for one of the requests gives that much more time from its arrival: the
        call waits for a person (issue 15 item 3)."""
        got: list[Record] = []
        stream = self.log.follow(run_id, after_seq, source=source)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                async for r in stream:
                    if isinstance(r.event, ApprovalRequested) and accept(_outcome_of(r)):
                        deadline.reschedule(max(deadline.when() or 0.0, loop.time() + r.event.timeout_s + timeout_s))
                    elif accept(r):
                        got.append(r)
                        if enough(got):
                            return got, True
            return got, False
        except TimeoutError:
            return got, False
        finally:
            await stream.aclose()

    async def _await(
        self, run_id: str, after_seq: int, want: set[str], timeout_s: float, source: Writer = "mcp_broker"
    ) -> dict[str, Record]:
        """The records whose id is in ``want`` that arrived on ``source`` within ``timeout_s``."""
        got, _ = await self._follow_until(
            run_id, after_seq, source, lambda r: r.id in want, lambda rs: len(rs) == len(want), timeout_s
        )
        return {r.id: r for r in got}

    async def catalog(self, req: TurnRequested, run_id: str, cause: str, backend: BackendConfig) -> Catalog:
        """The agent's current catalog; the first turn of an agent in a run asks the broker for it."""
        local = [ToolsListed(agent_id=req.agent_id, server=COMMAND_LINE, version=1, tools=(EXECUTE_COMMAND,))
                 ] if backend.enable_mcp_command_line else []
        if backend.resolved_custom_tools:
            local.append(ToolsListed(agent_id=req.agent_id, server=CUSTOM_TOOLS, version=1, tools=tuple(
                ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
                for t in backend.resolved_custom_tools)))
        want = expected_servers(backend)
        if not want:
            return Catalog(local)
        listed = [r.event for r in await self.log.read(run_id) if isinstance(r.event, ToolsListed)
                  and r.event.agent_id == req.agent_id]
        if {ev.server for ev in listed} >= set(want):
            return Catalog([*listed, *local])
        request_id = f"{run_id}:tools:{req.agent_id}"
        seq = await self._request(run_id, cause, [Draft(request_id, ToolsListRequested(agent_id=req.agent_id), cause)])
        got = await self._await_catalog(run_id, seq, request_id, set(want))
        return Catalog([*listed, *got, *local])

    async def classify(self, req: TurnRequested, run_id: str, cause: str, catalog: Catalog) -> None:
        """Have the agent's backend classify each tool of ``catalog`` that has no stored classification
        (servers outside the agent's workspace only), store it and record ``tool.classified``: what
        planning mode holds back (issue 15 item 2; ``massgen_agent_worker.classifier``)."""
        for listed in catalog.servers.values():
            if listed.server in (*tool_safety.WORKSPACE_SERVERS, CUSTOM_TOOLS) or listed.failure is not None:
                continue
            for spec in listed.tools:
                tool = spec.name.split("__", 2)[-1]
                key = tool_safety.digest(listed.server, tool, spec.parameters)
                if await self.classifications.get(key) is not None:
                    continue
                learned = await classifier.classify(req, listed.server, tool, spec)
                if learned is None:
                    continue
                await self.classifications.put(key, learned)
                event = ToolClassified(agent_id=req.agent_id, server=listed.server, tool=tool, digest=key,
                                       safety=learned.safety, rationale=learned.rationale, model=learned.model)
                await self._record(run_id, Draft(f"{run_id}:classified:{key}:{req.agent_id}", event, cause))

    async def _await_catalog(self, run_id: str, after_seq: int, request_id: str, want: set[str]) -> list[ToolsListed]:
        got, _ = await self._follow_until(
            run_id, after_seq - 1, "mcp_broker",
            lambda r: isinstance(r.event, ToolsListed) and r.causation_id == request_id,
            lambda rs: {r.event.server for r in rs if isinstance(r.event, ToolsListed)} >= want,
            DISCOVERY_TIMEOUT_S,
        )
        out: list[ToolsListed] = [r.event for r in got]  # type: ignore[misc]
        missing = want - {ev.server for ev in out}
        out.extend(
            ToolsListed(agent_id="", server=s, version=0, failure=failure_of(
                ToolTimeout(f"no catalog from the MCP broker within {DISCOVERY_TIMEOUT_S:.0f} s")))
            for s in sorted(missing)
        )
        return out

    async def call_all(
        self, req: TurnRequested, run_id: str, cause: str, key: str, calls: list[ToolCall], backend: BackendConfig
    ) -> dict[str, str]:
        """Run the model's tool calls concurrently: ``execute_command`` and custom tools at the executor,
        MCP tools at the broker. Returns ``{call id: tool message text}``.

        A call nobody answers in time is recorded as failed by the worker itself under the result id the
        service would use, so at most one outcome per call is ever stored.
        """
        executed = {EXECUTE_COMMAND.name, *(t.name for t in backend.resolved_custom_tools if t.runs_in == "executor")}
        execs = [(i, c) for i, c in enumerate(calls) if c.name in executed]
        tools = [(i, c) for i, c in enumerate(calls) if c.name not in executed]
        parts = await asyncio.gather(
            self._executions(req, run_id, cause, key, execs, backend),
            self._mcp_calls(req, run_id, cause, key, tools, backend),
        )
        return {**parts[0], **parts[1]}

    async def _mcp_calls(self, req, run_id, cause, key, calls, backend) -> dict[str, str]:
        if not calls:
            return {}
        timeouts = {s.name: s.timeout * (s.retries + 1) + 5 for s in backend.mcp_servers}
        drafts: list[Draft] = []
        for i, call in calls:
            server, tool = mcp.split_tool_name(call.name) or ("", call.name)
            drafts.append(Draft(f"{key}:c{i}", ToolCallRequested(
                call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, kind=req.kind,
                server=server, tool=tool, arguments=call.arguments), cause))
        wait = max((timeouts.get(d.event.server, 60.0) for d in drafts), default=60.0)  # type: ignore[union-attr]
        return await self._outcomes(run_id, cause, drafts, wait, "mcp_broker", self.queue, _late_tool_call)

    async def _executions(self, req, run_id, cause, key, calls, backend) -> dict[str, str]:
        if not calls:
            return {}
        drafts: list[Draft] = []
        refused: dict[str, str] = {}
        schemas = {t.name: t.parameters for t in backend.resolved_custom_tools}
        for i, call in calls:
            custom = call.name if call.name.startswith(custom_tools.PREFIX) else ""
            try:
                if req.planning_mode:  # a command or a function may change anything: held back like irreversible tools
                    what = f"the custom tool {custom}" if custom else "execute_command"
                    raise PlanningModeBlocked(
                        f"{what} is not run during coordination (planning mode): describe the call "
                        "and what it would do; the winner runs it while presenting")
                args = mcp.check_arguments(call.arguments, schemas[custom] if custom else EXECUTE_COMMAND.parameters)
            except (ToolArgumentError, PlanningModeBlocked) as exc:  # recorded here: nothing to send
                bad = ExecutionFailed(call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id,
                                      failure=failure_of(exc))
                await self._record(run_id, Draft(f"{key}:c{i}:result", bad, cause))
                refused[call.id] = tool_message(bad)
                continue
            if custom:
                drafts.append(Draft(f"{key}:c{i}", ExecutionRequested(
                    call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt, command="",
                    custom_tool=custom, arguments=args), cause))
                continue
            drafts.append(Draft(f"{key}:c{i}", ExecutionRequested(
                call_id=call.id, turn_id=req.turn_id, agent_id=req.agent_id, attempt=req.attempt,
                command=str(args.get("command", "")), work_dir=str(args.get("work_dir") or ""),
                timeout_s=float(args["timeout"]) if isinstance(args.get("timeout"), int | float) else None), cause))
        if not drafts:
            return refused
        limit = backend.command_line_timeout_seconds * 10 + 60  # the executor caps a command at 10x the default
        done = await self._outcomes(run_id, cause, drafts, limit, "executor", self.exec_queue, _late_execution)
        return {**refused, **done}

    async def _record(self, run_id: str, draft: Draft) -> None:
        """An outcome the worker records itself (refused arguments, no answer in time)."""
        await self.log.append(run_id, "agent_worker", [draft], origin=self.source)

    async def _outcomes(self, run_id, cause, drafts, wait, source, queue, late) -> dict[str, str]:
        seqs = await self._append_requests(run_id, drafts)
        # Following the outcomes starts (a consumer is created) while the requests are pushed, not after.
        waiting = asyncio.ensure_future(
            self._await(run_id, min(seqs) - 1, {f"{d.id}:result" for d in drafts}, wait, source))
        try:
            await self._push(run_id, cause, drafts, seqs, queue)
        except BaseException:
            waiting.cancel()
            raise
        results = await waiting
        out: dict[str, str] = {}
        for d in drafts:
            r = results.get(f"{d.id}:result")
            event = r.event if r is not None else None
            if event is None:
                event = late(d.event, failure_of(ToolTimeout(f"no answer within {wait:.0f} s")))
                await self._record(run_id, Draft(f"{d.id}:result", event, d.id))
            out[d.event.call_id] = tool_message(event)  # type: ignore[union-attr]
        return out

    async def record(self, run_id: str, draft: Draft) -> None:
        """Append an event of the worker's own (``media.generated`` of an agent without a workspace)."""
        await self._record(run_id, draft)

    async def save_media(self, run_id: str, cause: str, request_id: str, event: MediaGenerated) -> MediaSaved | None:
        """Record ``event`` as the broker's work item and wait until it wrote the file into the agent's
        workspace; None when it did not answer in time."""
        seq = await self._request(run_id, cause, [Draft(request_id, event, cause)])
        got = await self._await(run_id, seq - 1, {once.result_id(request_id)}, 60.0)
        r = got.get(once.result_id(request_id))
        return r.event if r is not None and isinstance(r.event, MediaSaved) else None

    async def read_file(
        self, run_id: str, cause: str, request_id: str, event: WorkspaceFileRequested
    ) -> WorkspaceFileRead | None:
        """Record ``event`` as the broker's work item and wait until it read the file into the Object
        Store (or says why not); None when it did not answer in time."""
        seq = await self._request(run_id, cause, [Draft(request_id, event, cause)])
        got = await self._await(run_id, seq - 1, {once.result_id(request_id)}, 60.0)
        r = got.get(once.result_id(request_id))
        return r.event if r is not None and isinstance(r.event, WorkspaceFileRead) else None

    async def snapshot(self, req: TurnRequested, run_id: str, cause: str) -> WorkspaceSnapshotted | None:
        """Share the agent's workspace after an answer; wait for the copy so other agents see it."""
        request_id = f"{run_id}:snap:{req.turn_id}:{req.attempt}"
        seq = await self._request(run_id, cause, [Draft(request_id, WorkspaceSnapshotRequested(
            agent_id=req.agent_id, turn_id=req.turn_id), cause)])
        got = await self._await(run_id, seq - 1, {f"{request_id}:done"}, 120.0)
        r = got.get(f"{request_id}:done")
        return r.event if r is not None and isinstance(r.event, WorkspaceSnapshotted) else None


def _outcome_of(request: Record) -> Record:
    """A stand-in record with the id of the outcome of the call an ``approval.requested`` waits on
    (``<call request id>:result``), for the ``accept`` test of :meth:`ToolClient._follow_until`."""
    assert request.causation_id is not None
    return msgspec.structs.replace(request, id=f"{request.causation_id}:result")


def _late_tool_call(ev: ToolCallRequested, why: Failure) -> ToolCallFailed:
    return ToolCallFailed(call_id=ev.call_id, turn_id=ev.turn_id, agent_id=ev.agent_id, server=ev.server,
                          tool=ev.tool, failure=why)


def _late_execution(ev: ExecutionRequested, why: Failure) -> ExecutionFailed:
    return ExecutionFailed(call_id=ev.call_id, turn_id=ev.turn_id, agent_id=ev.agent_id, failure=why)


def tool_message(event: Any) -> str:
    """What the model reads back for a tool outcome (errors prefixed, as MassGen does; a command's result
    as MassGen's ``execute_command`` JSON, spec §4.1; a custom tool's as its result text, spec §2.5)."""
    if isinstance(event, ExecutionCompleted) and event.custom_tool:
        return event.stdout + ("\n[output truncated]" if event.stdout_truncated else "")
    if isinstance(event, ExecutionCompleted):
        return json.dumps({
            "success": event.exit_code == 0 and not event.timed_out, "exit_code": event.exit_code,
            "stdout": event.stdout + ("\n[output truncated]" if event.stdout_truncated else ""),
            "stderr": event.stderr + ("\n[output truncated]" if event.stderr_truncated else ""),
            "execution_time": event.duration_s, "timed_out": event.timed_out,
        })
    if isinstance(event, ExecutionFailed):
        return f"Error: {event.failure.message}"
    if isinstance(event, ToolCallCompleted):
        return f"Error: {event.content}" if event.is_error and not event.content.startswith("Error") else event.content
    if isinstance(event, ToolCallFailed):
        return f"Error: {event.failure.message}"
    return "Error: no result"
