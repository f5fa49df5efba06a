"""``massgen export otel``: a run (or, with ``--follow``, every run as it ends) sent as OpenTelemetry
traces (:mod:`massgen_cli.otel_export`; the spans: :mod:`massgen_replay.traces`).

The follower marks each exported run in a key-value bucket (:data:`MARKS_BUCKET`, one key per run and
destination), so a restarted follower does not send a run twice; where it may not create or write the
bucket (a NATS user without that permission) it says so once and exports without marks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from typing import Annotated

import typer
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from massgen_cli.console import err, out, run
from massgen_cli.stack import open_stack
from massgen_es.bus import EventLog, cluster, natsapi
from massgen_es.errors import ConfigError
from massgen_es.events import TERMINAL_EVENTS
from massgen_replay import read

MARKS_BUCKET = "MASSGEN_OTEL_EXPORTS"
"""Key-value bucket of runs already exported: key ``<destination digest>.<run id>``, value the trace id."""


def otel(
    run_id: Annotated[str | None, typer.Argument(help="Run id to export (omit with --follow).")] = None,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", help="OTLP/HTTP endpoint: a base URL (/v1/traces is added) or the full traces URL. "
        "Default: $OTEL_EXPORTER_OTLP_ENDPOINT, else http://127.0.0.1:6006 (Phoenix).")] = None,
    project: Annotated[str, typer.Option(
        "--project", help="The openinference.project.name resource attribute (the Phoenix project).")] = "massgen",
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep running: export every run as it ends (runs already exported are skipped). "
        "Ctrl-C or SIGTERM stops it.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the backend per request.")] = 10.0,
) -> None:
    """Send a run as OpenTelemetry traces (GenAI semantic conventions): the run, each agent turn, each
    LLM call, tool call and command as spans, the answers and votes as span events."""
    from massgen_cli.otel_export import traces_url

    url = traces_url(endpoint)
    if follow == (run_id is not None):
        raise typer.BadParameter("give a RUN id, or --follow to export every run as it ends (not both)")
    if follow:
        run(_follow(url, project, timeout))
        return
    assert run_id is not None

    async def go() -> object:
        from massgen_cli.otel_export import export_run

        async with open_stack(services=False, name="massgen-export-otel") as stack:
            records = await read.run_records(stack.log, run_id)
        return await asyncio.to_thread(export_run, run_id, records, url, project=project, timeout_s=timeout)

    done = run(go())
    if done.status == "running":
        err.print(f"[yellow]warning:[/yellow] run {run_id} has not ended: its open spans end at its last event so "
                  "far, and a backend that keeps spans by id (Phoenix) keeps them so; export it once it ends, or "
                  "use --follow", highlight=False)
    out.print(f"exported run {run_id}: {done.spans} spans, trace {done.trace_id}, to {url}",
              highlight=False, soft_wrap=True)


class Marks:
    """The exported-run marks of one destination (``url`` and ``project``) in :data:`MARKS_BUCKET`."""

    def __init__(self, nc: Client, url: str, project: str) -> None:
        self.nc = nc
        self.prefix = hashlib.sha256(f"{url}|{project}".encode()).hexdigest()[:16]
        self.kv: KeyValue | None = None
        self.unavailable: str | None = None
        """Why marks cannot be kept (then every run is exported), None while they can."""

    async def _bucket(self) -> KeyValue | None:
        if self.kv is None and self.unavailable is None:
            js = natsapi.jetstream(self.nc)
            try:
                try:
                    self.kv = await js.key_value(MARKS_BUCKET)
                except BucketNotFoundError:
                    self.kv = await natsapi.admin(js).create_key_value(KeyValueConfig(
                        bucket=MARKS_BUCKET, history=1, storage=StorageType.FILE, replicas=cluster.replicas(self.nc)))
            except Exception as exc:  # permissions, server limits: exporting goes on without marks
                self._without(exc)
        return self.kv

    def _without(self, exc: Exception) -> None:
        self.unavailable = f"{type(exc).__name__}: {exc}"
        self.kv = None
        err.print(f"[yellow]warning:[/yellow] cannot keep export marks in bucket {MARKS_BUCKET} "
                  f"({self.unavailable}); a restarted follower will export runs again", highlight=False, soft_wrap=True)

    async def done(self, run_id: str) -> bool:
        """Whether ``run_id`` was exported to this destination already."""
        kv = await self._bucket()
        if kv is None:
            return False
        try:
            await kv.get(f"{self.prefix}.{run_id}")
            return True
        except KeyNotFoundError:
            return False

    async def mark(self, run_id: str, trace_id: str) -> None:
        """Record ``run_id`` as exported (its trace id as the value)."""
        kv = await self._bucket()
        if kv is not None:
            try:
                await kv.put(f"{self.prefix}.{run_id}", trace_id.encode())
            except Exception as exc:  # a write refused: say so, keep exporting
                self._without(exc)


async def follow_runs(log: EventLog, marks: Marks, url: str, project: str, timeout_s: float) -> None:
    """Export each run when its terminal event (``run.completed``/``timed_out``/``failed``) is stored,
    from the start of the log on, skipping runs ``marks`` has; returns only when cancelled.

    Raises:
        ExportFailed: the backend did not take a run (the follower stops: restarted, it retries that run).
    """
    from massgen_cli.otel_export import export_run

    # aclosing: a cancelled follower unsubscribes while its connection is still open
    async with contextlib.aclosing(log.follow(source="orchestrator")) as stored:  # terminal events: orchestrator's
        async for record in stored:
            if not isinstance(record.event, TERMINAL_EVENTS):
                continue
            if await marks.done(record.run_id):
                err.print(f"skip {record.run_id}: already exported to {url}", highlight=False, soft_wrap=True)
                continue
            records = await read.run_records(log, record.run_id)
            done = await asyncio.to_thread(export_run, record.run_id, records, url, project=project,
                                           timeout_s=timeout_s)
            await marks.mark(record.run_id, done.trace_id)
            err.print(f"exported run {record.run_id}: {done.spans} spans, trace {done.trace_id}",
                      highlight=False, soft_wrap=True)


async def _follow(url: str, project: str, timeout_s: float) -> None:
    async with open_stack(services=False, name="massgen-export-otel") as stack:
        if stack.embedded:  # started for this command: nothing else would write to it
            raise ConfigError("--follow needs a running stack to follow: start `massgen up` (or set "
                              "MASSGEN_NATS_URL to the stack's NATS), then submit runs there")
        task = asyncio.ensure_future(follow_runs(stack.log, Marks(stack.nc, url, project), url, project, timeout_s))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        err.print(f"following runs on {stack.url}; exporting each as it ends to {url} (Ctrl-C stops)",
                  highlight=False, soft_wrap=True)
        try:
            await task
        except asyncio.CancelledError:
            err.print("stopped following", highlight=False, soft_wrap=True)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
