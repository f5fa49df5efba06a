"""The executor service: a pull consumer on the ``MASSGEN_EXEC`` work queue.

For each ``execution.requested`` it checks the command (filters) and the working directory (inside
the agent's workspace), runs it in the agent's Docker sandbox or locally with resource limits (in a
bubblewrap sandbox, or unisolated when the config opts in), and
appends ``execution.completed`` (exit code, duration, output up to the cap, and Object Store
references for the full output and for files the command wrote) or ``execution.failed``, under the id
``<request id>:result``, before acking.

Each command runs at most once (``massgen_es.bus.once``, issue 13 item 3): ``execution.started`` is
recorded just before it runs; a redelivered request that already has its outcome is acked, one that
was started but has none (this service was killed while it ran) gets ``execution.failed``
(``Interrupted``) instead of a second run, and a request whose run has ended is acked without running
or recording anything.

It also follows the event log: when a run is submitted it creates the Docker sandboxes of its agents
ahead of their first command (the warm pool), and when a run ends it removes them. On start it reaps
labelled containers of runs that have ended (or that it cannot find).

A request for a custom tool (``custom_tool`` set, MassGen spec §2.5) runs the same way, in the same
sandbox, without the command filters (the command is ours): ``python3 -c`` the runner of
:mod:`massgen_es.custom_tools.runner`, given the tool file's text from the run's config, the model's
arguments, the ``preset_args`` and the workspace as ``agent_cwd``. A shipped tool that reaches a
server (crawl4ai, GitHub: ``CustomToolSpec.network``) gets the host's network in local mode, and the
variables it names (``CustomToolSpec.env``) from this executor's environment, outside the event log and
the command line (stdin locally, the exec environment in Docker); a token among them is scrubbed from
every event. The function's result text becomes
``execution.completed`` (``stdout``); an exception, no result or a timeout becomes ``execution.failed``
(``CustomToolError``, ``ToolTimeout``), which the model reads as the tool's error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from massgen_es import ag2, mcp, scrub, subjects, workspaces
from massgen_es.bus import Draft, once
from massgen_es.bus.jetstream import ACK_WAIT_S, ExecQueue, JetStreamEventLog
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.config import BackendConfig
from massgen_es.custom_tools import CustomToolSpec, runner, source_of
from massgen_es.errors import CustomToolError, ExecutionError, Interrupted, MassgenError, ToolTimeout, UnknownTool
from massgen_es.events import (
    TERMINAL_EVENTS,
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionStarted,
    ObjectRef,
    Record,
    RunSubmitted,
    SandboxChanged,
    Source,
)
from massgen_es.failures import failure_of
from massgen_executor.docker_sandbox import DockerSandboxes, SandboxSpec, container_name
from massgen_executor.filters import CommandRefused, check_command
from massgen_executor.isolation import Isolation
from massgen_executor.local import Limits, run_local
from massgen_executor.result import ExecResult

log = logging.getLogger("massgen.executor")
MAX_FILES = 20
MAX_FILE_BYTES = 8 << 20


class Executor:
    """Runs commands for every run.

    Args:
        nc: a connected NATS client.
        home: data directory (workspaces under ``<home>/runs``).
        concurrency: commands run at once.
        ack_wait_s: seconds without an ack or heartbeat before JetStream redelivers a request (the
            queue's setting; heartbeats come at a third of it while a command runs).
        warm: create an agent's sandbox when its run is submitted (else on its first command).
        bwrap: the bubblewrap program local mode isolates commands with (a name on ``PATH`` or a path);
            default ``$MASSGEN_BWRAP``, else ``bwrap``.
    """

    def __init__(
        self, nc: Client, home: Path, *, concurrency: int = 8, ack_wait_s: float = ACK_WAIT_S, max_deliver: int = 5,
        warm: bool = True, instance: str | None = None, bwrap: str | None = None,
    ) -> None:
        self.bwrap = bwrap or os.environ.get("MASSGEN_BWRAP") or "bwrap"
        self.log = JetStreamEventLog(nc)
        self.queue = ExecQueue(nc)
        self.objects = ObjectStore(nc)
        self.secrets = SecretStore(nc)
        self.home = home
        self.concurrency, self.ack_wait_s, self.max_deliver, self.warm = concurrency, ack_wait_s, max_deliver, warm
        self.source = Source(service="executor", instance=instance or Source.instance_id())
        self.docker = DockerSandboxes()
        self.runs: dict[str, RunSubmitted] = {}
        self._sandboxes: dict[str, set[str]] = {}
        """Per run: names of the containers created for it."""

    async def run(self) -> None:
        """Reap orphans, then serve requests and follow runs until cancelled."""
        await self._reap()
        after = await self._last_seq()
        watcher = asyncio.create_task(self._watch(after))
        try:
            await self.queue.serve(
                self._handle, concurrency=self.concurrency, ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver
            )
        finally:
            watcher.cancel()

    async def _last_seq(self) -> int:
        info = await self.log.js.stream_info(subjects.EVENTS_STREAM)
        return int(info.state.last_seq or 0)

    # ------------------------------------------------------------------ runs

    async def _submitted(self, run_id: str) -> RunSubmitted:
        if run_id not in self.runs:
            records = await self.log.read(run_id)
            found = next((r.event for r in records if isinstance(r.event, RunSubmitted)), None)
            if found is None:
                raise MassgenError(f"run {run_id} has no run.submitted event")
            self.runs[run_id] = found
        return self.runs[run_id]

    def _backend(self, submitted: RunSubmitted, agent_id: str) -> BackendConfig:
        spec = next(a for a in submitted.agents if a.id == agent_id)
        return workspaces.session_backend(self.home, submitted, msgspec.convert(spec.backend, BackendConfig))

    def _workspace(self, run_id: str, agent_id: str) -> Path:
        """The agent's workspace; a session turn's starts as a copy of the previous turn's (spec §1.13)."""
        submitted = self.runs.get(run_id)
        seed = workspaces.previous_workspace(self.home, submitted) if submitted is not None else None
        return workspaces.workspace(self.home, run_id, agent_id, seed)

    async def _watch(self, after_seq: int) -> None:
        """Warm sandboxes for new runs, remove them when runs end."""
        async for r in self.log.follow(after_seq=after_seq):
            try:
                if isinstance(r.event, RunSubmitted):
                    self.runs[r.run_id] = r.event
                    if self.warm:
                        await self._prewarm(r.run_id, r.event)
                elif isinstance(r.event, TERMINAL_EVENTS):
                    await self._release(r.run_id, "run ended")
            except MassgenError as exc:
                log.warning("run %s: %s", r.run_id, exc)

    async def _prewarm(self, run_id: str, submitted: RunSubmitted) -> None:
        for spec in submitted.agents:
            b = self._backend(submitted, spec.id)
            executed = any(t.runs_in == "executor" for t in b.resolved_custom_tools)  # not the worker's own
            if (b.enable_mcp_command_line or executed) and b.command_line_execution_mode == "docker":
                await self._sandbox(run_id, spec.id, b, reason="warm")

    def _read_only(self, run_id: str, b: BackendConfig) -> list[Path]:
        """What a command may read besides its workspace: the context paths and the run's snapshots."""
        return [Path(cp.path) for cp in b.context_paths] + [workspaces.snapshots(self.home, run_id)]

    async def _sandbox(self, run_id: str, agent_id: str, b: BackendConfig, reason: str = "") -> str:
        workspace = self._workspace(run_id, agent_id)
        read_only = self._read_only(run_id, b)
        spec = SandboxSpec.of(b)
        # The sandbox's variables (`command_line_docker_credentials`) travel as secret references.
        env = {k: await self.secrets.resolve(v) for k, v in b.resolved_docker_env.items()}
        scrub.remember(env.values())
        name, created, preinstall = await self.docker.ensure(run_id, agent_id, spec, workspace, read_only, env)
        self._sandboxes.setdefault(run_id, set()).add(name)
        if created:
            await self._emit(run_id, f"{run_id}:exec:sandbox:{name}:created", None, SandboxChanged(
                agent_id=agent_id, container=name, state="created", image=spec.image, reason=reason,
                preinstall=preinstall))
        return name

    async def _release(self, run_id: str, reason: str) -> None:
        self.runs.pop(run_id, None)
        for name in sorted(self._sandboxes.pop(run_id, ())):
            if await self.docker.remove(name):
                agent = name.removeprefix(container_name(run_id, ""))
                await self._emit(run_id, f"{run_id}:exec:sandbox:{name}:removed", None, SandboxChanged(
                    agent_id=agent, container=name, state="removed", reason=reason))

    async def _reap(self) -> None:
        """Remove containers of runs that ended (or left no trace) while no executor watched."""
        try:
            found = await self.docker.labelled()
        except MassgenError:
            return  # no engine: nothing to reap, and local mode still works
        for run_id, agent_id, name in found:
            records = await self.log.read(run_id) if run_id else []
            if records and not any(isinstance(r.event, TERMINAL_EVENTS) for r in records):
                self._sandboxes.setdefault(run_id, set()).add(name)  # still running: keep serving it
                continue
            await self.docker.remove(name)
            if records:
                await self._emit(run_id, f"{run_id}:exec:sandbox:{name}:removed", None, SandboxChanged(
                    agent_id=agent_id, container=name, state="removed", reason="orphan reaped"))

    # ------------------------------------------------------------------ requests

    async def _emit(self, run_id: str, event_id: str, cause: str | None, event: Event) -> None:
        await self.log.append(run_id, "executor", [Draft(event_id, event, cause)], origin=self.source)

    async def _handle(self, record: Record, msg: Msg) -> None:
        req = record.event
        if not isinstance(req, ExecutionRequested):
            log.error("dropping executor request of type %s", record.type)
            await msg.term()
            return
        before = await once.prior(self.log, record.run_id, "executor", record.id, record.seq)
        if before.ended is not None:
            once.log_skipped(log, record, before.ended)
            await msg.ack()
            return
        if before.outcome is not None:  # answered before this delivery: nothing to do twice
            await msg.ack()
            return
        if before.started is not None:
            log.warning("run %s: request %s was started by an executor that stopped; answered Interrupted, "
                        "not run again", record.run_id, record.id)
            outcome: Event = ExecutionFailed(
                call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, failure=failure_of(Interrupted(
                    "the executor stopped while this command ran; it is not run again because it may already "
                    "have had effects")))
        else:
            try:
                outcome = await self._execute(record.run_id, record.id, req, before.fence)
            except Exception as exc:  # the model gets an answer either way; a bug is logged, not silent
                if not isinstance(exc, MassgenError):
                    log.exception("run %s: executing %s failed", record.run_id, record.id)
                outcome = ExecutionFailed(call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id,
                                          failure=failure_of(exc))
        ended = await once.append_unless_ended(
            self.log, record.run_id, "executor", [Draft(once.result_id(record.id), outcome, record.id)],
            origin=self.source, fence=before.fence)
        if ended is not None:  # the run ended while the command ran
            once.log_skipped(log, record, ended, "its outcome is dropped")
        await msg.ack()

    async def _execute(self, run_id: str, request_id: str, req: ExecutionRequested, fence: once.Fence) -> Event:
        submitted = await self._submitted(run_id)
        b = self._backend(submitted, req.agent_id)
        if req.custom_tool:
            return await self._custom_tool(run_id, request_id, req, fence, b)
        if not (b.enable_mcp_command_line or ag2.executes_code(msgspec.to_builtins(b))):  # AG2 code blocks too
            raise CommandRefused("command execution is not enabled for this agent (enable_mcp_command_line)")
        workspace = self._workspace(run_id, req.agent_id)
        work_dir = mcp.resolve_in_roots(req.work_dir or ".", [mcp.Root(workspace, True)], write=False)
        docker_mode = b.command_line_execution_mode == "docker"
        check_command(
            req.command, workspace=workspace, cwd=work_dir, allowed=b.command_line_allowed_commands,
            blocked=b.command_line_blocked_commands, allow_sudo=b.command_line_docker_enable_sudo,
            # In a container only the mounts outlive the command, and read-only ones are enforced by Docker.
            writable=[Path("/")] if docker_mode else [],
        )
        timeout_s = min(req.timeout_s or b.command_line_timeout_seconds, b.command_line_timeout_seconds * 10)
        cap = b.command_line_max_output_chars
        started = time.time()
        result, sandbox = await self._run(run_id, request_id, req, fence, b, req.command, work_dir, timeout_s)
        objects = await self._store(result, cap, workspace, started)
        return ExecutionCompleted(
            call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id,
            mode=b.command_line_execution_mode, exit_code=result.exit_code, duration_s=round(result.duration_s, 4),
            stdout=_text(result.stdout)[:cap], stderr=_text(result.stderr)[:cap], timed_out=result.timed_out,
            stdout_truncated=result.stdout_truncated or len(_text(result.stdout)) > cap,
            stderr_truncated=result.stderr_truncated or len(_text(result.stderr)) > cap,
            objects=objects, sandbox=sandbox,
        )

    async def _run(
        self, run_id: str, request_id: str, req: ExecutionRequested, fence: once.Fence, b: BackendConfig,
        command: str, work_dir: Path, timeout_s: float, *, network: bool = False, env: dict[str, str] | None = None,
    ) -> tuple[ExecResult, str | None]:
        """Run ``command`` in the agent's sandbox (Docker, bubblewrap or unisolated, as configured), after
        recording ``execution.started``; the result and the container's name in Docker mode.

        ``network``: local mode shares the host's network even without ``command_line_local_network`` (a
        shipped custom tool that reaches a server). ``env``: variables for the command, never in its
        command line: Docker's exec environment, or one JSON line on stdin locally (the custom-tool
        runner reads it)."""
        workspace = self._workspace(run_id, req.agent_id)
        sandbox = await self._sandbox(run_id, req.agent_id, b) if b.command_line_execution_mode == "docker" else None
        # From here on the command may have effects: a redelivery must not run it again.
        started_marker = ExecutionStarted(call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id,
                                          mode=b.command_line_execution_mode, sandbox=sandbox)
        if await once.append_unless_ended(self.log, run_id, "executor",
                                          [Draft(once.started_id(request_id), started_marker, request_id)],
                                          origin=self.source, fence=fence) is not None:
            raise ExecutionError("the run ended before the command started; it was not run")
        if sandbox is not None:
            # Full output up to 8 MB goes to the Object Store; the event keeps `cap` characters.
            return await self.docker.exec(sandbox, command, work_dir=work_dir, timeout_s=timeout_s,
                                          max_bytes=MAX_FILE_BYTES, env=env), sandbox
        isolation = None if b.command_line_execution_mode == "local_unisolated" else Isolation(
            workspace, tuple(self._read_only(run_id, b)), network=b.command_line_local_network or network,
            bwrap=self.bwrap)
        stdin = (json.dumps(env) + "\n").encode() if env is not None else None
        return await run_local(command, work_dir=work_dir, timeout_s=timeout_s, limits=Limits(),
                               max_output_bytes=MAX_FILE_BYTES, isolation=isolation, stdin=stdin), None

    async def _custom_tool(
        self, run_id: str, request_id: str, req: ExecutionRequested, fence: once.Fence, b: BackendConfig
    ) -> Event:
        """Run one custom-tool call (module docstring): its function's result, or why there is none."""
        spec: CustomToolSpec | None = next((t for t in b.resolved_custom_tools
                                            if t.name == req.custom_tool and t.runs_in == "executor"), None)
        if spec is None:
            raise UnknownTool(f"this agent has no custom tool {req.custom_tool!r}")
        workspace = self._workspace(run_id, req.agent_id)
        docker_mode = b.command_line_execution_mode == "docker"
        if spec.network and docker_mode and b.command_line_docker_network_mode == "none":
            raise CustomToolError(
                f"{spec.name} needs the network to reach its server, and this agent's Docker sandbox has none; set "
                "`command_line_docker_network_mode: host` (a server on this machine's localhost) or `bridge`")
        # The shipped tool's variables (a server's URL, a token) from this executor's environment; a
        # token value is scrubbed from the log like every `*_TOKEN` variable of this process.
        env = {k: os.environ[k] for k in spec.env if os.environ.get(k)}
        scrub.remember(env[k] for k in scrub.secret_names(env))
        on_stdin = not docker_mode and bool(env)
        try:
            command = runner.command(source_of(b.resolved_custom_tools, spec), spec.path, spec.function,
                                     {**req.arguments, **spec.preset_args}, str(workspace), env_on_stdin=on_stdin)
        except ValueError as exc:
            raise CustomToolError(f"{spec.name} was not run: {exc}") from None
        timeout_s = b.command_line_timeout_seconds
        started = time.time()
        result, sandbox = await self._run(run_id, request_id, req, fence, b, command, workspace, timeout_s,
                                          network=spec.network, env=env or None)
        if result.timed_out:
            raise ToolTimeout(f"{spec.name} did not finish within {timeout_s:g} s (command_line_timeout_seconds)")
        out = runner.result(_text(result.stdout))
        if out is None:
            tail = _text(result.stderr).strip()[-1000:]
            raise CustomToolError(f"{spec.name} gave no result (exit code {result.exit_code})"
                                  + (f": {tail}" if tail else ""))
        if not out.get("ok"):
            raise CustomToolError(f"{spec.name} failed: {out.get('error', 'no error message')}")
        text = str(out.get("text", ""))
        cap = b.command_line_max_output_chars
        objects = await self._store(dataclasses.replace(result, exit_code=0, stdout=text.encode()), cap, workspace,
                                    started)
        return ExecutionCompleted(
            call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, mode=b.command_line_execution_mode,
            exit_code=0, duration_s=round(result.duration_s, 4), stdout=text[:cap],
            stderr=_text(result.stderr)[:cap], stdout_truncated=len(text) > cap,
            stderr_truncated=result.stderr_truncated or len(_text(result.stderr)) > cap,
            objects=objects, sandbox=sandbox, custom_tool=spec.name,
        )

    async def _store(self, result: ExecResult, cap: int, workspace: Path, since: float) -> tuple[ObjectRef, ...]:
        refs = []
        for label, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if len(_text(data)) > cap:
                refs.append(await self.objects.put(data, label))
        produced = sorted(
            (p for p in workspace.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_mtime >= since - 1),
            key=lambda p: str(p),
        )[:MAX_FILES]
        for p in produced:
            if p.stat().st_size <= MAX_FILE_BYTES:
                refs.append(await self.objects.put(p.read_bytes(), str(p.relative_to(workspace))))
        return tuple(refs)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
