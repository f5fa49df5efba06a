"""``massgen mcp list`` and ``massgen mcp call`` on the broker's side (request-reply, ``massgen.mcp.*``).

``mcp call``: the command line appended a ``tool.call_requested`` to a run of mode ``tool_call``; the
broker makes it with every check a model's call gets (:meth:`McpBroker.call_once`), records the outcome,
then answers. Only such runs are served, and only a request the command line wrote.

``mcp list``: each configured server's session as the pool holds it.

The command line sends its config's agents on ``subjects.MCP_INSPECT_SUBJECT``; one replica (queue group
``mcp_broker``) starts what is not running, and answers with states, circuit breakers, catalog versions
and tools (with their input schemas, and whether each agent's filters allow them). Sessions are the
pool's own, so a server a run already uses is reported as that run sees it (same breaker, same catalog
version). Filesystem servers get a scratch workspace under ``<home>/runs/mcp-inspect``. Nothing is
recorded in the event log: a listing changes no run.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

import msgspec
from nats.aio.msg import Msg

from massgen_es import mcp, scrub, subjects
from massgen_es.errors import MassgenError
from massgen_es.events import RunSettings, RunSubmitted, ToolCallRequested
from massgen_es.mcp_inspect import CallReply, CallRequest, InspectReply, InspectRequest, ServerReport, ToolInfo
from massgen_mcp_broker.runs import RunContext

if TYPE_CHECKING:
    from massgen_mcp_broker.service import McpBroker

log = logging.getLogger("massgen.mcp_broker")
INSPECT_RUN = "mcp-inspect"
"""The scratch run directory of listings (workspaces for filesystem servers)."""


async def inspect(broker: McpBroker, request: InspectRequest) -> InspectReply:
    """Report every server of every agent of ``request``, starting those not running.

    Raises:
        ConfigError: an agent's backend block does not validate.
    """
    submitted = RunSubmitted(question="", agents=request.agents, settings=RunSettings())
    run = RunContext.build(INSPECT_RUN, submitted, broker.home)
    reports: list[ServerReport] = []
    for grant in run.agents.values():
        for name, cfg in grant.servers.items():
            state: Literal["running", "started"] = "running"
            try:
                session = await broker.session_for(run, grant, name)
                if not session.alive:
                    state = "started"
                    await session.start()
            except MassgenError as exc:
                reports.append(ServerReport(agent_id=grant.agent_id, server=name, type=cfg.type, state="failed",
                                            breaker="closed", failures=0, restarts=0, catalog_version=0,
                                            error=str(exc)))
                continue
            tools = tuple(ToolInfo(name=t.name, prefixed=mcp.tool_name(name, t.name), description=t.description or "",
                                   input_schema=t.input_schema or {"type": "object"},
                                   allowed=mcp.tool_allowed(cfg, grant.backend, t.name))
                          for t in session.catalog)
            reports.append(ServerReport(
                agent_id=grant.agent_id, server=name, type=session.launch.type, state=state,
                breaker=session.breaker.state(time.monotonic()), failures=session.breaker.failures,
                restarts=session.restarts, catalog_version=session.catalog_version, tools=tools))
    return InspectReply(servers=tuple(reports))


async def call(broker: McpBroker, request: CallRequest) -> CallReply:
    """Make the call ``request`` names (see module docstring); the reply says it is recorded, or why not."""
    records = await broker.log.read(request.run_id)
    submitted = next((r.event for r in records if isinstance(r.event, RunSubmitted)), None)
    if submitted is None or submitted.settings.mode != "tool_call":
        return CallReply(error=f"run {request.run_id} is not a `massgen mcp call` run (mode tool_call)")
    record = next((r for r in records if r.id == request.request_id), None)
    if record is None or not isinstance(record.event, ToolCallRequested) or record.source.service != "cli":
        return CallReply(error=f"run {request.run_id} has no tool.call_requested {request.request_id!r} by the cli")
    await broker.call_once(record)
    return CallReply()


async def serve_request(broker: McpBroker, msg: Msg) -> None:
    """Answer one request of ``massgen mcp list`` or ``mcp call`` (by subject); a request that cannot be
    served gets ``error``. The reply is scrubbed of every secret the broker knows, as events are."""
    reply: InspectReply | CallReply
    failed = InspectReply if msg.subject == subjects.MCP_INSPECT_SUBJECT else CallReply
    try:
        if msg.subject == subjects.MCP_INSPECT_SUBJECT:
            reply = await inspect(broker, msgspec.json.decode(msg.data, type=InspectRequest))
        elif msg.subject == subjects.MCP_CALL_SUBJECT:
            reply = await call(broker, msgspec.json.decode(msg.data, type=CallRequest))
        else:
            reply = CallReply(error=f"unknown MCP broker request subject {msg.subject!r}")
    except (MassgenError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("%s request refused: %s", msg.subject, exc)
        reply = failed(error=str(exc))
    await msg.respond(scrub.data(msgspec.json.encode(reply)))
