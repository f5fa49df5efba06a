"""The checks a tool call passes after its arguments and before it runs (issue 15 items 1 and 3): planning
mode, the run's tool rules, and a person's approval (``massgen_es.tool_safety``).

An approval is two events. The broker records ``approval.requested`` (id ``<call request id>:approval``)
and waits on the run's ``cli`` subject for ``approval.decided`` (id ``<that>:decided``), written by
``massgen approve``/``deny`` or the live view's prompt. With no answer within the timeout the broker
records the denial itself under the same id; JetStream keeps the first of two writes of one id, so
exactly one decision exists, and the broker reads back which one it was. A broker that stops while it
waits leaves the call's work item unacknowledged: the next delivery records no second request (same
id) and finds a decision already made in the log. Meanwhile the rest of the run goes on: the call waits
in its own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress

from massgen_es import tool_safety
from massgen_es.bus import Draft, EventLog, once
from massgen_es.errors import ApprovalDenied, PlanningModeBlocked, ToolPermissionError
from massgen_es.events import ApprovalDecided, ApprovalRequested, Record, Source, ToolCallRequested
from massgen_es.tool_safety import Learned
from massgen_mcp_broker.runs import RunContext


def approval_id(request_id: str) -> str:
    """Event id of the ``approval.requested`` of the call request ``request_id``."""
    return f"{request_id}:approval"


def decision_id(request_id: str) -> str:
    """Event id of the one ``approval.decided`` of the call request ``request_id``."""
    return f"{approval_id(request_id)}:decided"


async def check(log: EventLog, source: Source, run: RunContext, record: Record, req: ToolCallRequested,
                fence: once.Fence, learned: Callable[[], Awaitable[Learned | None]]) -> None:
    """Let the call through, or raise why not. A call made by ``massgen mcp call`` (a person's own)
    passes: the rules are about what agents do. ``learned``: reads the tool's stored LLM
    classification (only a planning-mode coordination call needs it).

    Raises:
        PlanningModeBlocked: a coordination call of an irreversible tool in a planning-mode run
            (MassGen spec §1.14; the text tells the model to describe the call instead).
        ToolPermissionError: a rule says ``deny``.
        ApprovalDenied: a rule says ``ask`` and the person said no, or nobody answered in time, or the
            run ended while it waited.
    """
    settings = run.settings
    if settings.mode == "tool_call":
        return
    name = tool_safety.name_of(req.server, req.tool)
    if settings.planning_mode and req.kind == "coordination":
        safety, why = tool_safety.classify(settings.tool_rules, req.server, req.tool, await learned())
        if safety == "irreversible":
            raise PlanningModeBlocked(
                f"tool {name} is blocked during coordination (planning mode active; irreversible: {why}). "
                "Describe what you would do with it; the winner runs it while presenting")
    policy, why = tool_safety.policy(settings.tool_rules, req.server, req.tool)
    if policy == "deny":
        because = f": {why}" if why else ""
        raise ToolPermissionError(f"tool {name} is refused by the run's tool safety rules{because}")
    if policy == "ask":
        await _approved(log, source, run, record, req, fence, why)


async def _approved(log: EventLog, source: Source, run: RunContext, record: Record, req: ToolCallRequested,
                    fence: once.Fence, rationale: str) -> None:
    timeout_s = run.settings.approval_timeout_s
    asked = ApprovalRequested(call_id=req.call_id, turn_id=req.turn_id, agent_id=req.agent_id, server=req.server,
                              tool=req.tool, arguments=req.arguments, timeout_s=timeout_s, rationale=rationale)
    if await once.append_unless_ended(log, run.run_id, "mcp_broker", [Draft(approval_id(record.id), asked, record.id)],
                                      origin=source, fence=fence) is not None:
        raise ApprovalDenied("the run ended while the call waited for approval; it was not made")
    wanted = decision_id(record.id)
    decided = None
    with suppress(TimeoutError):
        decided = await asyncio.wait_for(_first(log, run.run_id, record.seq, wanted), timeout_s)
    if decided is None:
        timed_out = ApprovalDecided(call_id=req.call_id, agent_id=req.agent_id, server=req.server, tool=req.tool,
                                    approved=False, by=f"timeout after {timeout_s:g} s")
        if await once.append_unless_ended(log, run.run_id, "mcp_broker", [Draft(wanted, timed_out, record.id)],
                                          origin=source, fence=fence) is not None:
            raise ApprovalDenied("the run ended while the call waited for approval; it was not made")
        decided = await _recorded(log, run.run_id, record.seq, wanted)
    if not decided.approved:
        why = f": {decided.reason}" if decided.reason else ""
        raise ApprovalDenied(f"tool {tool_safety.name_of(req.server, req.tool)} was not approved "
                             f"(denied by {decided.by}{why}); do without it or explain what you would have done")


async def _first(log: EventLog, run_id: str, after_seq: int, wanted: str) -> ApprovalDecided:
    """The person's decision, once the ``cli`` subject of the run holds it."""
    async for r in log.follow(run_id, after_seq, source="cli"):
        if r.id == wanted and isinstance(r.event, ApprovalDecided):
            return r.event
    raise AssertionError("the log's follow never ends")


async def _recorded(log: EventLog, run_id: str, after_seq: int, wanted: str) -> ApprovalDecided:
    """The decision that counts: the one stored (a person's may have won over the timeout's)."""
    for writer in ("cli", "mcp_broker"):
        for r in await log.read(run_id, after_seq=after_seq, source=writer):
            if r.id == wanted and isinstance(r.event, ApprovalDecided):
                return r.event
    raise AssertionError(f"no {wanted} stored after it was appended")


__all__ = ["approval_id", "check", "decision_id"]
