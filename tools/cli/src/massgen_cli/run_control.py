"""Stopping and continuing runs (issue 15 item 6): ``massgen cancel``, ``massgen resume``, and what
Ctrl-C in ``massgen submit`` does.

A cancel is a request the command line records (``run.cancel_requested``) and the orchestrator
decides (``run.cancelled``, a terminal event): every service then leaves the run alone, in-flight turns
are abandoned, late results are not recorded, and no stack resumes it. A run whose stack went away
before it ended is *interrupted*: the stack one ``massgen submit`` starts takes on no run but its own,
so only ``massgen resume`` continues it (a long-lived stack, compose or ``massgen up``, carries on
with every unfinished run after a restart, as crash recovery wants).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import uuid
from typing import Annotated

import typer

from massgen_cli import services as registry
from massgen_cli.console import err, run
from massgen_cli.stack import Stack, open_stack, start_services
from massgen_es.bus import Draft, EventLog
from massgen_es.errors import ConfigError
from massgen_es.events import (
    TERMINAL_EVENTS,
    ApprovalDecided,
    ApprovalRequested,
    Record,
    RunCancelRequested,
    RunResumeRequested,
    Source,
)
from massgen_replay import read, views

END_WAIT_S = 15.0
"""Seconds ``cancel`` (and Ctrl-C in ``submit``) waits for the orchestrator to record the run's end."""


def who(command: str) -> str:
    """``"<command> by <user>@<host>"``: the ``by`` of a cancel or resume request."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return f"{command} by {user}@{os.uname().nodename}"


def _cli_source() -> Source:
    return Source(service="cli", instance=f"{os.uname().nodename}-{os.getpid()}")


async def run_end(log: EventLog, run_id: str, timeout_s: float) -> Record | None:
    """The run's terminal record, waiting up to ``timeout_s`` for the orchestrator to write it; None
    if it did not within that time."""
    last = await log.last(run_id, "orchestrator")
    if last is not None and isinstance(last.event, TERMINAL_EVENTS):
        return last

    async def follow() -> Record:
        async for r in log.follow(run_id, last.seq if last is not None else 0, source="orchestrator"):
            if isinstance(r.event, TERMINAL_EVENTS):
                return r
        raise AssertionError("the log's follow never ends")

    try:
        return await asyncio.wait_for(follow(), timeout_s)
    except TimeoutError:
        return None


async def request_cancel(log: EventLog, run_id: str, by: str, reason: str = "") -> None:
    """Record ``run.cancel_requested`` for ``run_id`` (one per run: a second request is the same event,
    which JetStream's duplicate window drops)."""
    event = RunCancelRequested(reason=reason, by=by)
    await log.append(run_id, "cli", [Draft(f"{run_id}:cancel", event)], origin=_cli_source())


async def cancel_on_interrupt(stack: Stack, run_id: str) -> None:
    """What Ctrl-C in ``submit`` (and ``resume``, ``fork``) does before the command exits: cancel the
    run and wait (up to :data:`END_WAIT_S`) for the orchestrator to record it, so the run neither stays
    ``running`` nor is resumed by the next stack."""
    await request_cancel(stack.log, run_id, who("Ctrl-C in massgen"), "interrupted")
    ended = await run_end(stack.log, run_id, END_WAIT_S)
    if ended is None:
        err.print(f"run {run_id}: cancel requested; the orchestrator had not recorded it within {END_WAIT_S:g} s, "
                  "so it takes effect when one sees it (the run is not resumed)")
    else:
        err.print(f"run {run_id}: {ended.type.removeprefix('run.')}")


async def _view(stack: Stack, run_id: str) -> views.RunView:
    records = await read.run_records(stack.log, run_id)  # ReplayError for an unknown run
    view = views.RunView(run_id)
    for r in records:
        view.apply(r)
    return view


def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id, as printed by submit or listed by `massgen runs`.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded with the cancel.")] = "",
) -> None:
    """Cancel a run from any terminal: no new turns, work in flight abandoned, nothing resumes it."""

    async def go() -> str:
        async with open_stack(services=False, name="massgen-cancel") as stack:
            view = await _view(stack, run_id)
            if view.phase == "done":
                raise ConfigError(f"run {run_id} has already ended ({view.status}); there is nothing to cancel")
            await request_cancel(stack.log, run_id, who("massgen cancel"), reason)
            tasks: list[asyncio.Task] = []
            if stack.embedded:  # no stack runs: an orchestrator of this command's own records the end
                tasks = registry.start(stack.nc, ["orchestrator"], registry.ServiceOptions(adopt=False))
            try:
                ended = await run_end(stack.log, run_id, END_WAIT_S)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if ended is None:
                return (f"run {run_id}: cancel requested; the stack at {stack.url} has not recorded it within "
                        f"{END_WAIT_S:g} s (is its orchestrator running?); it takes effect when one sees it")
            return f"run {run_id}: {ended.type.removeprefix('run.')}"

    err.print(run(go()))


def resume(
    run_id: Annotated[str, typer.Argument(help="An interrupted run (status `interrupted` in `massgen runs`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the live view.")] = False,
) -> None:
    """Continue an interrupted run on purpose: its open turns are requested again and its deadlines
    count on from where they stopped; Ctrl-C cancels it."""
    from massgen_cli.app import follow_or_cancel, report  # the submit command's own follow and report

    async def go() -> views.RunView:
        async with open_stack(services=False) as stack:
            view = await _view(stack, run_id)
            if view.phase == "done":
                raise ConfigError(f"run {run_id} has already ended ({view.status}); a finished run is not resumed "
                                  f"(`massgen fork {run_id} --at SEQ` starts a new run from a point of it)")
            event = RunResumeRequested(by=who("massgen resume"))
            await stack.log.append(run_id, "cli", [Draft(f"{run_id}:resume:{uuid.uuid4().hex[:8]}", event)],
                                   origin=_cli_source())
            if stack.embedded:  # after the request: the deadlines then count from it (orchestrator.service)
                stack.tasks = start_services(stack, adopt=False, runs=(run_id,))
            if not as_json:
                where = "embedded stack" if stack.embedded else stack.url
                err.print(f"resuming run [bold]{run_id}[/bold] on {where}")
            return await follow_or_cancel(stack, run_id, as_json)

    report(run(go()), as_json)


def interrupted(view: views.RunView, stack: Stack) -> str:
    """The status ``massgen runs`` shows: a run still going in the log is ``interrupted`` when no stack
    runs (this command started its own, which drives nothing), else the view's own status."""
    if stack.embedded and view.phase != "done":
        return "interrupted (cancel requested)" if view.status == "cancelling" else "interrupted"
    return view.status




# ---------------------------------------------------------------- approvals (issue 15 item 3)


def pending_approvals(records: list[Record]) -> list[tuple[Record, ApprovalRequested]]:
    """The run's ``approval.requested`` records that have no ``approval.decided`` yet, in order."""
    decided = {r.id for r in records if isinstance(r.event, ApprovalDecided)}
    return [(r, r.event) for r in records
            if isinstance(r.event, ApprovalRequested) and f"{r.id}:decided" not in decided]


async def decide_approval(log: EventLog, asked: Record, approved: bool, by: str, reason: str = "") -> None:
    """Record a person's answer to ``asked`` (an ``approval.requested`` record) under the one decision id
    the broker waits on (``<request id>:decided``; a second answer is a duplicate JetStream drops)."""
    ev = asked.event
    assert isinstance(ev, ApprovalRequested)
    decided = ApprovalDecided(call_id=ev.call_id, agent_id=ev.agent_id, server=ev.server, tool=ev.tool,
                              approved=approved, by=by, reason=reason)
    await log.append(asked.run_id, "cli", [Draft(f"{asked.id}:decided", decided, asked.id)], origin=_cli_source())


def _decide(run_id: str, call: str | None, approved: bool, reason: str) -> None:
    command = "massgen approve" if approved else "massgen deny"

    async def go() -> str:
        async with open_stack(services=False, name="massgen-approval") as stack:
            records = await read.run_records(stack.log, run_id)
            waiting = pending_approvals(records)
            if call is None:
                if not waiting:
                    return f"run {run_id}: no tool call is waiting for approval"
                return "\n".join(f"{ev.call_id}  {ev.agent_id}  {ev.server}.{ev.tool}  {ev.arguments[:200]}"
                                 for _, ev in waiting)
            asked = [(r, ev) for r, ev in waiting if ev.call_id == call]
            if not asked:
                if any(isinstance(r.event, ApprovalRequested) and r.event.call_id == call for r in records):
                    raise ConfigError(f"tool call {call} of run {run_id} has already been decided: "
                                      f"`massgen replay {run_id}` shows by whom")
                ids = ", ".join(ev.call_id for _, ev in waiting) or "none"
                raise ConfigError(f"run {run_id} has no tool call {call} waiting for approval; waiting: {ids}")
            record, ev = asked[0]
            await decide_approval(stack.log, record, approved, who(command), reason)
            return f"run {run_id}: {ev.server}.{ev.tool} ({call}) {'approved' if approved else 'denied'}"

    out_text = run(go())
    print(out_text)


def approve(
    run_id: Annotated[str, typer.Argument(help="The run whose tool call waits.")],
    call: Annotated[str | None, typer.Argument(help="The tool call id; omit it to list the calls waiting.")] = None,
) -> None:
    """Approve a tool call that waits for a person (a tool marked `ask`); without CALL, list them."""
    _decide(run_id, call, True, "")


def deny(
    run_id: Annotated[str, typer.Argument(help="The run whose tool call waits.")],
    call: Annotated[str, typer.Argument(help="The tool call id (`massgen approve RUN` lists them).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; the agent reads it.")] = "",
) -> None:
    """Deny a tool call that waits for a person; the agent is told, with the reason."""
    _decide(run_id, call, False, reason)


__all__ = ["END_WAIT_S", "approve", "cancel", "cancel_on_interrupt", "decide_approval", "deny", "interrupted",
           "pending_approvals", "request_cancel", "resume", "run_end", "who"]
