"""``massgen mcp list`` on the broker's side: each configured server's session as the pool holds it.

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
from typing import TYPE_CHECKING

import msgspec
from nats.aio.msg import Msg

from massgen_es import mcp, scrub
from massgen_es.errors import MassgenError
from massgen_es.events import RunSettings, RunSubmitted
from massgen_es.mcp_inspect import InspectReply, InspectRequest, ServerReport, ToolInfo
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
            state = "running"
            error = None
            try:
                session = await broker.session_for(run, grant, name)
                if not session.alive:
                    state = "started"
                    await session.start()
            except MassgenError as exc:
                state, error = "failed", str(exc)
                session = None
            if session is None:
                reports.append(ServerReport(agent_id=grant.agent_id, server=name, type=cfg.type, state="failed",
                                            breaker="closed", failures=0, restarts=0, catalog_version=0, error=error))
                continue
            tools = tuple(ToolInfo(name=t.name, prefixed=mcp.tool_name(name, t.name), description=t.description or "",
                                   input_schema=t.input_schema or {"type": "object"},
                                   allowed=mcp.tool_allowed(cfg, grant.backend, t.name))
                          for t in session.catalog)
            reports.append(ServerReport(
                agent_id=grant.agent_id, server=name, type=session.launch.type,
                state="failed" if error else state,  # type: ignore[arg-type]
                breaker=session.breaker.state(time.monotonic()), failures=session.breaker.failures,
                restarts=session.restarts, catalog_version=session.catalog_version, tools=tools, error=error))
    return InspectReply(servers=tuple(reports))


async def serve_request(broker: McpBroker, msg: Msg) -> None:
    """Answer one ``massgen mcp list`` request; a request that cannot be served gets ``error`` (the
    reply is scrubbed of every secret the broker knows, as events are)."""
    try:
        reply = await inspect(broker, msgspec.json.decode(msg.data, type=InspectRequest))
    except (MassgenError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("mcp list request refused: %s", exc)
        reply = InspectReply(error=str(exc))
    await msg.respond(scrub.data(msgspec.json.encode(reply)))
