"""``massgen fork RUN --at SEQ``: a new run whose history up to SEQ is RUN's, continued live with a
changed config.

What the fork's log holds, in order:

1. a copy of the parent's events up to the fork point (``massgen_cli.fork.fork_point``), each with its
   original timestamp and writer (``massgen_es.bus.copying``); the copied ``run.submitted`` carries
   ``forked_from``, so the orchestrator leaves the run alone while the copy is written;
2. ``run.forked`` {parent_run_id, parent_seq, changes, agents, settings}: the copy is complete, and from
   here the new config applies. The orchestrator rebuilds the run from its log as after a crash: turns
   still waiting for a worker at the fork point are queued again (asked again of the new backend when
   their agent's backend changed), deadlines are re-armed with the time the parent had left;
3. the fork's own events, live.

Not copied: the parent's events after the fork point (its end among them: a fork point at or after the
end is refused), work-queue items (the queue is not the log; outstanding turns are queued again), and
the agents' workspace files and shared snapshots (a fork's agents start with empty workspaces). Copied
as history: everything up to the point, including timers that fired then and usage (so the fork's
``replay`` counts the parent's tokens and cost up to the point).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec
import typer

from massgen_cli.console import err, fail, run
from massgen_cli.fork import apply_set, fork_point, forked_settings, parent_config
from massgen_cli.stack import open_stack, start_services
from massgen_es import config as config_mod
from massgen_es import media
from massgen_es.bus import Draft
from massgen_es.bus.copying import copy_records
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.errors import MassgenError
from massgen_es.events import Record, RunForked, RunSubmitted, Source


def fork(
    run_id: Annotated[str, typer.Argument(help="The parent run, as `massgen runs` lists it.")],
    at: Annotated[int, typer.Option("--at", help="The parent's stream seq to fork at (`massgen replay RUN --json`).")],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="PATH=VALUE on the parent's config, e.g. agents[1].backend.model=m2 (repeatable)."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Replace the config (same agent ids and order).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the live view.")] = False,
) -> None:
    """Start a new run from RUN's history up to seq AT, with a changed config, and follow it like submit."""
    from massgen_cli.app import report  # app registers this command: imported here, not at the top

    if sets and config:
        fail("give either --set changes or --config FILE, not both", 1)
    report(run(_fork(run_id, at, sets or [], config, as_json)), as_json)


async def _fork(parent: str, at: int, sets: list[str], config: str | None, quiet: bool) -> Any:
    from massgen_cli.app import follow_or_cancel, new_run_id

    # Services start only once the fork is written: a bad input then leaves nothing running to stop.
    async with open_stack(services=False) as stack:
        log = stack.log
        records = await log.read(parent)
        point = fork_point(parent, records, at)
        prefix = [r for r in records if r.seq <= point]
        submitted = next(r.event for r in prefix if isinstance(r.event, RunSubmitted))
        forked, secrets = _forked_event(parent, point, submitted, sets, config, len(prefix))
        run_id = new_run_id()
        if not quiet:
            where = "embedded stack" if stack.embedded else stack.url
            moved = f" (moved from {at} to the end of its decisions)" if point > at else ""
            err.print(f"run [bold]{run_id}[/bold] on {where}: fork of {parent} at seq {point}{moved}")
        await SecretStore(stack.nc).put_all(secrets)
        await media.store_uploads(ObjectStore(stack.nc), forked.agents)  # a --config file's upload_files
        try:
            await copy_records(log, run_id, [_marked(r, parent) for r in prefix])
        except Exception as exc:  # noqa: BLE001 - a denied publish surfaces as a timeout, not a BusError
            raise MassgenError(
                f"copying {parent}'s events into the fork {run_id} failed: {exc}. A fork writes each copied event "
                "on its writer's subject, so its NATS user must be allowed every `massgen.run.*.<writer>` subject "
                "(the embedded stack's is; the compose `cli` user may write only `massgen.run.*.cli`)"
            ) from exc
        cli = Source(service="cli", instance=f"{os.uname().nodename}-{os.getpid()}")
        await log.append(run_id, "cli", [Draft(f"{run_id}:forked", forked)], origin=cli)
        if stack.embedded:
            stack.tasks = start_services(stack, adopt=False, runs=(run_id,))
        return await follow_or_cancel(stack, run_id, quiet)


def _forked_event(
    parent: str, point: int, submitted: RunSubmitted, sets: list[str], config: str | None, copied: int
) -> tuple[RunForked, dict[str, str]]:
    """The ``run.forked`` event and the secret values its config references (a ``--config`` file's).

    Raises:
        ConfigError: a bad ``--set`` or config file, naming the path or key and the fix.
    """
    changes: tuple[str, ...]
    if config is not None:
        cfg = config_mod.load_config(config)
        changes = (f"--config {config}",)
        agents, settings = forked_settings(submitted, cfg, config, from_parent=False)
        secrets = config_mod.secrets(cfg)
    else:
        data = parent_config(submitted)
        for assignment in sets:
            apply_set(data, assignment)
        origin = f"config of {parent} with --set"
        cfg = config_mod.parse_config(data, origin)
        changes = tuple(sets)
        agents, settings = forked_settings(submitted, cfg, origin, from_parent=True)
        secrets = {}
    return RunForked(parent_run_id=parent, parent_seq=point, changes=changes, agents=agents, settings=settings,
                     copied=copied), secrets


def _marked(record: Record, parent: str) -> Record:
    """The parent's submission marked as the start of a fork's copy; other records unchanged."""
    if isinstance(record.event, RunSubmitted):
        return msgspec.structs.replace(record, event=msgspec.structs.replace(record.event, forked_from=parent))
    return record
