"""The ``massgen`` command (Typer + Rich): submit, replay, runs, status, serve, up, and ``models``.

Exit codes follow MassGen (spec §6.1): 0 success, 1 config error, 2 execution error (NATS
unreachable, all agents failed, ...), 3 timeout, 4 interrupted (``massgen_cli.console``).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from massgen_cli import replay_show, sessions
from massgen_cli import services as registry
from massgen_cli.config_commands import config_app
from massgen_cli.console import EXIT, err, fail, out, run
from massgen_cli.export_commands import export_app, import_app
from massgen_cli.fork_commands import fork
from massgen_cli.mcp_commands import mcp_app
from massgen_cli.model_commands import models_app
from massgen_cli.run_control import (
    approve,
    cancel,
    cancel_on_interrupt,
    decide_approval,
    deny,
    interrupted,
    resume,
    who,
)
from massgen_cli.stack import CHILD_SERVICES, Stack, advertise, open_stack, start_services
from massgen_cli.tool_commands import tools_app
from massgen_es import config as config_mod
from massgen_es import media, scrub, tool_safety
from massgen_es.bus import Draft
from massgen_es.bus.jetstream import ACK_WAIT_S
from massgen_es.bus.objects import ObjectStore
from massgen_es.bus.secrets import SecretStore
from massgen_es.errors import ConfigError, MassgenError, ReplayError
from massgen_es.events import TERMINAL_EVENTS, ApprovalRequested, Record, Source
from massgen_es.ops import home
from massgen_es.subjects import SERVICE_NAMES, ServiceName
from massgen_replay import read, render, views

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Event-sourced multi-agent LLM orchestration.")
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")
app.add_typer(import_app, name="import")
app.command()(fork)
app.command()(cancel)
app.command()(resume)
app.command()(approve)
app.command()(deny)
app.command()(sessions.chat)
app.add_typer(mcp_app, name="mcp")
app.add_typer(tools_app, name="tools")
app.add_typer(config_app, name="config")


def new_run_id() -> str:
    """Sortable, subject-safe run id: ``YYYYmmdd-HHMMSS-xxxxxx``."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@app.command()
def submit(
    question: Annotated[str, typer.Argument(help="The question or task for the agents.")],
    config: Annotated[str | None, typer.Option("--config", "-c", help="MassGen-shaped YAML config.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the live view.")] = False,
    replay_tools_from: Annotated[
        str | None,
        typer.Option(
            "--replay-tools-from", help="Serve MCP tool results recorded in this run instead of calling servers."
        ),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Submit to the running stack and return at once, "
                                         "printing the run id; `massgen replay`/`cancel` take it from there.")] = False,
    session: Annotated[str | None, typer.Option("--session", help="Ask this as the next turn of session ID (a new "
                                                "session if it has no runs yet): the agents see its earlier "
                                                "questions and answers and start from its last winner's "
                                                "workspace.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the plan (agents, "
                                          "endpoints, tools, sandboxes, context paths, timeouts); no LLM call, "
                                          "no stack started.")] = False,
) -> None:
    """Run a question through the team: answers, votes, and the winner's final presentation.

    With `ui: {display_type: textual_terminal}` in the config and a terminal on stdin and stdout, the live
    view is the Textual app (a pane per agent; q closes it and the run goes on in the stack); on a pipe or
    a plain terminal it is the Rich view. Ctrl-C cancels the run (`run.cancelled`) and exits 4.
    With `--session ID` the run is a turn of that session (MassGen spec §1.13; see `massgen chat`).
    With `--dry-run` nothing runs: the plan is printed (`--json`: as one JSON object).
    """
    try:
        cfg = config_mod.load_config(config)
        submitted = config_mod.run_submitted(question, cfg, config, replay_tools_from=replay_tools_from,
                                             overrides=tool_safety.override_rules(home(), Path.cwd()))
        if session is not None:
            sessions.check_session_id(session)
    except ConfigError as exc:
        fail(str(exc), 1)
    if dry_run:
        return _print_plan(cfg, submitted, as_json)
    quiet = as_json or cfg.ui.display_type == "silent"
    tui = not quiet and cfg.ui.display_type == "textual_terminal" and sys.stdin.isatty() and sys.stdout.isatty()
    if detach:
        run_id = run(_submit_detached(submitted, config_mod.secrets(cfg), session))
        print(json.dumps({"run_id": run_id, "status": "running"} | ({"session_id": session} if session else {}))
              if as_json else run_id)
        return
    view = run(submit_run(submitted, quiet, config_mod.secrets(cfg), tui=tui, session=session))
    if session is not None and not as_json:
        err.print(f"session [bold]{session}[/bold]: continue it with `massgen submit --session {session} \"…\"` "
                  f"or `massgen chat --session {session}`")
    report(view, as_json)


def _print_plan(cfg: config_mod.Config, submitted: Any, as_json: bool) -> None:
    """``submit --dry-run``: the plan (``massgen_cli.plan``) as JSON or YAML, scrubbed of secrets."""
    import yaml

    from massgen_cli.plan import plan

    the_plan = plan(cfg, submitted)
    if as_json:
        print(scrub.text(json.dumps(the_plan, ensure_ascii=False)))
        return
    err.print("dry run: the config is valid; nothing was started and no LLM was called")
    sys.stdout.write(scrub.text(yaml.safe_dump(the_plan, sort_keys=False, allow_unicode=True, width=120)))


def report(view: views.RunView, as_json: bool) -> NoReturn:
    """Print a followed run's outcome (the final answer, or one JSON object) and exit with its status's
    code (``console.EXIT``): what ``submit`` and ``fork`` end with."""
    if as_json:
        print(json.dumps(view.summary(), ensure_ascii=False))
    else:
        out.print(render.final(view))
    if view.status == "failed":
        err.print(Text.assemble(("run failed:", "red"), f" {view.failure}"))
        for agent_id, last in view.agent_failures().items():
            err.print(Text(f"  {agent_id}: {last['type']}: {last['message']}"))
    elif view.status == "timed_out":
        err.print("[yellow]run timed out[/yellow]: the best available answer was presented")
    raise typer.Exit(EXIT.get(view.status, 2))


async def _append_submitted(stack: Stack, run_id: str, submitted: Any, secrets: dict[str, str]) -> None:
    await SecretStore(stack.nc).put_all(secrets)  # before the event that references them
    await media.store_uploads(ObjectStore(stack.nc), submitted.agents)  # likewise
    await stack.log.append(
        run_id,
        "cli",
        [Draft(f"{run_id}:submitted", submitted)],
        origin=Source(service="cli", instance=f"{os.uname().nodename}-{os.getpid()}"),
    )


async def submit_run(
    submitted: Any, quiet: bool, secrets: dict[str, str], tui: bool = False, session: str | None = None
) -> views.RunView:
    """Submit ``submitted`` as a new run (as the next turn of ``session`` when given,
    ``sessions.continued``) and follow it to its end (:func:`follow_or_cancel`): ``submit`` and each
    ``chat`` turn.

    Raises:
        MassgenError: NATS unreachable, an embedded service stopped.
    """
    run_id = new_run_id()
    async with open_stack(services=True) as stack:
        if session is not None:
            submitted = await sessions.continued(stack.log, submitted, session)
        if not quiet:
            where = "embedded stack" if stack.embedded else stack.url
            turn = f" (session {session}, turn {len(submitted.previous_turns) + 1})" if session is not None else ""
            err.print(f"run [bold]{run_id}[/bold] on {where}{turn}")
        await _append_submitted(stack, run_id, submitted, secrets)
        return await follow_or_cancel(stack, run_id, quiet, tui=tui)


async def _submit_detached(submitted: Any, secrets: dict[str, str], session: str | None = None) -> str:
    async with open_stack(services=False) as stack:
        if stack.embedded:
            raise ConfigError("--detach needs a running stack to leave the run to: start `massgen up` (or set "
                              "MASSGEN_NATS_URL to the stack's NATS); a stack started by this command stops with it")
        if session is not None:
            submitted = await sessions.continued(stack.log, submitted, session)
        run_id = new_run_id()
        await _append_submitted(stack, run_id, submitted, secrets)
        return run_id


async def follow_or_cancel(stack: Stack, run_id: str, quiet: bool, tui: bool = False) -> views.RunView:
    """:func:`follow_run`, and on Ctrl-C (the command's task cancelled) cancel the run before exiting
    (``run_control.cancel_on_interrupt``; issue 15 item 6): a run left ``running`` would be resumed by
    the next stack that takes on unfinished runs, and spend tokens nobody waits for."""
    try:
        return await follow_run(stack, run_id, quiet, tui=tui)
    except asyncio.CancelledError:
        await asyncio.shield(cancel_on_interrupt(stack, run_id))
        raise


async def follow_run(stack: Stack, run_id: str, quiet: bool, tui: bool = False) -> views.RunView:
    """Follow ``run_id`` from its first event to its end on ``stack`` (an open ``stack.open_stack``),
    with the live view and progress lines unless ``quiet``: the Textual app when ``tui``, else Rich.

    Raises:
        MassgenError: an embedded service stopped meanwhile (``_unless_a_service_stops``).
    """
    log = stack.log
    view = views.RunView(run_id)
    display = (
        Live(render.live(view), console=err, refresh_per_second=8, transient=False)
        if not quiet and not tui else _Null()
    )
    feed: asyncio.Queue[Any] = asyncio.Queue()  # the Textual app's records, when it shows the run
    asks = not quiet and not tui and sys.stdin.isatty()  # a tool call marked `ask` is answered inline

    async def follow() -> None:
        with display as live:
            async for record in log.follow(run_id):
                if asks and isinstance(record.event, ApprovalRequested):
                    await _ask(stack, record, live)
                seen = len(view.timeline)
                view.apply(record)
                if tui:
                    feed.put_nowait(record)
                if live is not None:
                    for entry in view.timeline[seen:]:
                        line = render.progress(view, entry)
                        if line is not None:
                            live.console.print(line)
                    live.update(render.live(view))
                if isinstance(record.event, TERMINAL_EVENTS):
                    return

    if not tui:
        await _unless_a_service_stops(follow(), stack.tasks)
        return view
    from massgen_replay.tui import RunApp, run_live  # here: Textual is slow to import, and only this needs it

    def early_quit() -> None:
        where = "the embedded stack (in this process: Ctrl-C stops it and the run)" if stack.embedded \
            else f"the stack at {stack.url} (Ctrl-C stops waiting, not the run)"
        err.print(f"view closed; run [bold]{run_id}[/bold] goes on in {where}; waiting for its end")

    await _unless_a_service_stops(run_live(RunApp(run_id, feed, live=True), follow(), early_quit), stack.tasks)
    return view


_STOP_S = 10.0
"""Seconds a cancelled part of a command may take to stop before the command goes on without it."""


async def _ask(stack: Stack, asked: Record, live: Live | None) -> None:
    """Ask the person at the terminal about a tool call marked ``ask`` (issue 15 item 3), unless it was
    decided already (from another terminal: ``massgen approve``). The view pauses meanwhile; the run
    goes on."""
    from rich.prompt import Confirm, Prompt

    if any(r.id == f"{asked.id}:decided" for r in await stack.log.read(asked.run_id, after_seq=asked.seq)):
        return
    ev = asked.event
    assert isinstance(ev, ApprovalRequested)
    if live is not None:
        live.stop()
    try:
        err.print(f"[bold yellow]approval needed[/bold yellow]: {ev.agent_id} calls {ev.server}.{ev.tool} "
                  f"{ev.arguments[:500]}" + (f" ({ev.rationale})" if ev.rationale else ""), highlight=False)
        ok = await asyncio.to_thread(Confirm.ask, "run it?", console=err, default=False)
        reason = "" if ok else await asyncio.to_thread(Prompt.ask, "why not (optional)", console=err, default="")
        await decide_approval(stack.log, asked, ok, who("the live view of massgen submit"), reason)
    finally:
        if live is not None:
            live.start()


async def _unless_a_service_stops(work: Coroutine[Any, Any, None], services: list[asyncio.Task[None]]) -> None:
    """Run ``work``; an embedded service that stops (a crash) ends it at once with that service's error,
    instead of a run waiting out its timeout for a service that is gone.

    Raises:
        MassgenError: a service stopped; the message names it and its error.
    """
    job = asyncio.ensure_future(work)
    done, _ = await asyncio.wait([job, *services], return_when=asyncio.FIRST_COMPLETED)
    if job in done:
        return job.result()
    job.cancel()
    await asyncio.wait([job], timeout=_STOP_S)  # bounded: the crash is reported even if the view is stuck
    stopped = next(iter(done))
    why = stopped.exception() if not stopped.cancelled() else None
    raise MassgenError(f"service {stopped.get_name()} {'crashed: ' + str(why) if why else 'stopped'}")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@app.command()
def replay(
    run_id: Annotated[str | None, typer.Argument(help="Run id, as printed by submit or listed by `massgen runs`.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the events as JSON lines.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Also re-decide the run through the orchestrator core and compare.")
    ] = False,
    html_file: Annotated[
        str | None, typer.Option("--html", metavar="FILE", help="Also write a self-contained HTML timeline to FILE.")
    ] = None,
    tui: Annotated[
        bool, typer.Option("--tui", help="Browse the run in the Textual terminal UI (q quits); with stdout not a "
                           "terminal (a pipe, a file), the report is printed instead.")
    ] = False,
    summary: Annotated[bool, typer.Option("--summary", help="Print one JSON object: status, votes, usage, "
                                          "consensus analytics.")] = False,
    mcp: Annotated[bool, typer.Option("--mcp", help="Only MCP activity: calls, breakers, restarts, catalogs.")] = False,
    exec_: Annotated[bool, typer.Option("--exec", help="Only command executions.")] = False,
    agent: Annotated[list[str] | None, typer.Option("--agent", help="Only this agent's events (repeatable).")] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Only events of this type or prefix, e.g. "
                                                    "tool.call_completed or tool. (repeatable).")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Show every turn of this session in order "
                                                "(question, winner, final answer) instead of one run.")] = None,
) -> None:
    """Rebuild a run from its event log, with zero LLM calls; with `--session ID`, each turn of a session."""
    if session is not None:
        return _replay_session(session, as_json)
    if run_id is None:
        fail("name the run to replay (`massgen runs` lists them), or a session with --session ID", 1)

    async def go() -> Any:
        async with open_stack(services=False) as stack:
            return await read.run_records(stack.log, run_id)

    try:
        records = run(go())
    except ReplayError as exc:  # pragma: no cover - _run maps MassgenError already
        fail(str(exc), 1)
    filters = {"mcp": mcp, "exec_": exec_, "agents": agent or (), "types": type_ or ()}
    if tui and sys.stdin.isatty() and sys.stdout.isatty():
        from massgen_replay.tui import RunApp  # here: Textual is slow to import, and only this needs it

        RunApp.replay(run_id, replay_show.choose(run_id, records, **filters)[0]).run()
    else:
        if tui:
            err.print("--tui needs a terminal on stdin and stdout; printing the report instead")
        replay_show.show(run_id, records, as_json=as_json, summary=summary, **filters)
    if html_file:
        from massgen_replay import html

        try:
            Path(html_file).write_text(html.render(run_id, replay_show.choose(run_id, records, **filters)[0]),
                                       encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write the HTML timeline to {html_file}: {exc.strerror}; pick a writable path", 1)
        err.print(f"HTML timeline written to {html_file}")
    if check:
        from massgen_orchestrator.decide import verify

        try:
            n = verify(run_id, records)
        except MassgenError as exc:
            fail(str(exc), 2)
        err.print(f"decisions reproduced by the orchestrator core for all {n} inputs")


def _session_views(session: str) -> list[views.RunView]:
    """The runs of ``session`` in order; exits 1 naming the fix when it has none."""

    async def go() -> list[views.RunView]:
        async with open_stack(services=False) as stack:
            return await sessions.session_runs(stack.log, session)

    turns = run(go())
    if not turns:
        fail(sessions.unknown_session(session), 1)
    return turns


def _replay_session(session: str, as_json: bool) -> None:
    sessions.show_session(session, _session_views(session), as_json)


@app.command()
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Consensus analytics across runs: wins, vote flips, "
                                        "persuasion, time to consensus, per-agent cost and latency.")] = False,
    session: Annotated[str | None, typer.Option("--session", help="Only the runs (turns) of this session, "
                                                "in order.")] = None,
) -> None:
    """List runs with status, winner and duration. Status: completed, failed, timed_out, cancelled,
    running (a stack drives it), cancelling (cancel requested, not yet recorded), or interrupted (its
    stack went away before it ended: `massgen resume RUN` continues it, `massgen cancel RUN` ends it)."""

    async def go() -> Any:
        async with open_stack(services=False) as stack:
            found = await read.all_runs(stack.log)
            return found, {v.run_id: interrupted(v, stack) for v in found}

    all_runs, statuses = run(go())
    if session is not None:
        all_runs = [v for v in all_runs if v.session_id == session]
        if not all_runs:
            fail(sessions.unknown_session(session), 1)
    if stats:
        return replay_show.stats(all_runs, as_json)
    if as_json:
        for v in all_runs:
            summary = v.summary()
            row = {k: summary[k] for k in ("run_id", "status", "winner", "duration_s", "forked_from", "session_id")}
            row["status"] = statuses[v.run_id]
            print(json.dumps(row | {"question": v.question}))
        return
    table = Table(show_edge=False)
    for col in ("run", "status", "winner", "seconds", "question"):
        table.add_column(col)
    for v in all_runs:
        parent = f" (fork of {v.forked_from[0]} at {v.forked_from[1]})" if v.forked_from else ""
        parent += f" (session {v.session_id})" if v.session_id else ""
        table.add_row(v.run_id + parent, statuses[v.run_id], v.winner or "-", f"{v.duration_s or 0:.1f}",
                      v.question[:60])
    out.print(table if all_runs else "no runs yet: `massgen submit \"your question\"` starts one")


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help=" | ".join(SERVICE_NAMES), show_default=False)],
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", envvar="MASSGEN_NATS_URL", help="NATS server URL (nats://user:pw@host:4222).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Items handled at once (turns, tool calls, commands); default: the service's.")
    ] = None,
    ack_wait: Annotated[
        float | None,
        typer.Option(help=f"Seconds without an ack or heartbeat (sent every third of it) before a work item "
                          f"(turn, tool call, command) is redelivered; default {ACK_WAIT_S:g}. The orchestrator "
                          "pulls from no work queue and ignores it."),
    ] = None,
    log_format: Annotated[str, typer.Option(help="json (one object per line) or text.")] = "json",
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", envvar="MASSGEN_METRICS_PORT",
                                 help="Serve Prometheus /metrics and /healthz on this port; default: off.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", envvar="MASSGEN_METRICS_HOST",
                          help="Address the metrics port listens on (0.0.0.0: every interface, as in a container).")
    ] = "0.0.0.0",
) -> None:
    """Run one service against a NATS server until SIGTERM or SIGINT.

    On SIGTERM the service stops taking work, naks what it had in flight (another replica takes it at
    once; after a crash, JetStream redelivers it after the ack wait) and exits 0; nothing is lost and
    nothing is recorded twice.
    """
    if not nats_url:
        fail("no NATS URL; pass --nats-url or set MASSGEN_NATS_URL", 1)
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        from massgen_es.ops import JsonFormatter

        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    scrub.guard_logging()
    options = registry.ServiceOptions(concurrency=concurrency, ack_wait_s=ack_wait)

    async def go() -> None:
        import signal

        from massgen_cli.metrics_http import serving
        from massgen_es.bus.jetstream import connect, ensure_streams

        nc = await connect(nats_url, f"massgen-{service}")
        await ensure_streams(nc.jetstream())
        tasks = registry.start(nc, [service], options)
        main = tasks[0]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        logging.getLogger("massgen").info("%s serving on %s", service, nats_url.split("@")[-1])
        try:
            async with serving(nc, [service], tasks, metrics_port, metrics_host):
                await main
        except asyncio.CancelledError:
            logging.getLogger("massgen").info("%s stopping (signal): unacked work will be redelivered", service)
        finally:
            for task in tasks[1:]:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)

    run(go())


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Connected service instances, work-queue depth and redeliveries, stream sizes, and the NATS nodes'
    health (reachable, stream leaders, replicas current or lagging)."""

    async def go() -> dict:
        from massgen_es.ops import status as read_status

        async with open_stack(services=False, name="massgen-status") as stack:
            return await read_status(stack.nc, stack.url)

    info = run(go())
    if as_json:
        print(json.dumps(info))
        return
    services = Table("service", "instance", "last heartbeat", title="services")
    for s in info["services"]:
        services.add_row(s["service"], s["instance"], f"{s['age_s']:.0f} s ago")
    queues = Table("work queue", "consumer", "pending", "in flight", "redelivered", title="work queues")
    for q in info["queues"]:
        queues.add_row(q["stream"], q["consumer"], *(str(q[k]) if q[k] is not None else "-"
                                                   for k in ("pending", "in_flight", "redelivered")))
    streams = Table("stream", "messages", "bytes", title="streams")
    for st in info["streams"]:
        streams.add_row(st["stream"], str(st["messages"] if st["messages"] is not None else "-"),
                        str(st["bytes"] if st["bytes"] is not None else "-"))
    for t in (services, queues, streams, *_cluster_tables(info["cluster"])):
        out.print(t)


def _cluster_tables(health: dict) -> list[Table]:
    """The NATS nodes and each stream's replicas (``massgen_es.bus.cluster.health``)."""
    word = "healthy" if health["healthy"] else "[red]NOT healthy[/red]"
    title = f"NATS: cluster {health['name']}, R{health['replicas']}, {word}" if health["name"] else \
        f"NATS: one server, {word}"
    nodes = Table("node", "url", "reachable", "leads", "current", "lag", title=title)
    for n in health["nodes"]:
        nodes.add_row(n["name"] or "?", n["url"], "yes" if n["reachable"] else "[red]no[/red]",
                      ", ".join(n["leader_of"]) or "-", "yes" if n["current"] else "[red]no[/red]", str(n["lag"]))
    if not health["name"]:
        return [nodes]
    replicas = Table("stream", "replicas", "leader", "peers (current/lag)", title="stream replicas")
    for s in health["streams"]:
        peers = ", ".join(
            f"{p['name']}: {'offline' if p['offline'] else 'current' if p['current'] else 'lag ' + str(p['lag'])}"
            for p in s["peers"])
        replicas.add_row(s["stream"], str(s["replicas"] or "-"), s["leader"] or "[red]none[/red]", peers or "-")
    return [nodes, replicas]


@app.command()
def up(
    cluster: Annotated[
        int, typer.Option("--cluster", help="NATS nodes: 1 (one server) or 3 (a JetStream cluster, every "
                          "stream replicated on all three; one node may fail).")
    ] = 1,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus /metrics and /healthz for the "
                                 "in-process services on 127.0.0.1:PORT (labelled per service), and the "
                                 "executor child's on PORT+1; default: off.")
    ] = None,
) -> None:
    """Run the embedded stack (nats-server(s), the executor as a child process without secrets in its
    environment, every other service in this process) in the foreground."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scrub.guard_logging()

    async def go() -> None:
        if os.environ.get("MASSGEN_NATS_URL"):
            raise ConfigError("MASSGEN_NATS_URL is set: a stack already runs there; unset it to start an embedded one")
        from massgen_cli.metrics_http import serving

        async with open_stack(services=False, name="massgen-up", cluster=cluster) as stack, \
                contextlib.AsyncExitStack() as scope:
            child_port = metrics_port + 1 if metrics_port is not None else None
            stack.tasks = start_services(stack, metrics_port=child_port)
            in_process = [n for n in SERVICE_NAMES if n not in CHILD_SERVICES]
            metrics = await scope.enter_async_context(
                serving(stack.nc, in_process, stack.tasks, metrics_port, host="127.0.0.1"))
            path = advertise(stack.url)
            nodes = f"{cluster} NATS nodes" if cluster > 1 else "one NATS server"
            err.print(f"embedded stack ({nodes}) on {stack.url} (advertised in {path}); Ctrl-C to stop")
            if metrics is not None:
                err.print(f"metrics on http://127.0.0.1:{metrics.port}/metrics (executor: port {child_port}), "
                          "health on /healthz")
            try:
                await asyncio.gather(*stack.tasks)
            finally:
                path.unlink(missing_ok=True)

    run(go())


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    scrub.guard_logging()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where a stuck command is
    app()


__all__ = ["app", "follow_or_cancel", "main", "new_run_id", "report", "submit_run"]
