"""The requests and replies of ``massgen mcp list`` and ``massgen mcp call``: what the command line asks an
MCP broker (request-reply on ``subjects.MCP_INSPECT_SUBJECT`` / ``MCP_CALL_SUBJECT``), and its answers.

A listing changes no run, so nothing of it is recorded in the event log; a tool *call* is, like a
model's: the request names a ``tool.call_requested`` already in the log (``RunSettings.mode ==
"tool_call"``) and the broker records the outcome there.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from massgen_es.events import AgentSpec


class InspectRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The agents whose MCP servers to report, as ``run.submitted`` carries them (secrets as
    ``${secret:<digest>}`` references the broker resolves from the secret store)."""

    agents: tuple[AgentSpec, ...]


class ToolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One tool of a server's catalog."""

    name: str
    """Bare name, as the server knows it (``massgen mcp call SERVER NAME``)."""
    prefixed: str
    """``mcp__<server>__<tool>``: how models see it."""
    description: str
    input_schema: dict[str, Any]
    allowed: bool
    """Whether this agent's ``allowed_tools`` / ``exclude_tools`` let it see and call the tool."""


class ServerReport(msgspec.Struct, frozen=True, kw_only=True):
    """One MCP server of one agent, as the broker's session pool holds it."""

    agent_id: str
    server: str
    type: str
    """``stdio`` or ``streamable-http``."""
    state: Literal["running", "started", "failed"]
    """``running``: the shared session was already up (a run uses it); ``started``: started for this
    listing; ``failed``: it could not start or list its tools (``error`` says why)."""
    breaker: Literal["closed", "open", "half_open"]
    failures: int
    """Consecutive failed calls counted by the circuit breaker."""
    restarts: int
    catalog_version: int
    """1 after the first listing, +1 per ``notifications/tools/list_changed``."""
    tools: tuple[ToolInfo, ...] = ()
    error: str | None = None


class InspectReply(msgspec.Struct, frozen=True, kw_only=True):
    """The broker's answer: every server of every agent of the request, or ``error`` when the request
    itself could not be served (malformed, a secret missing from the store)."""

    servers: tuple[ServerReport, ...] = ()
    error: str | None = None


class CallRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Make the tool call recorded as event ``request_id`` of run ``run_id`` (written by the command line in
    a ``tool_call`` run)."""

    run_id: str
    request_id: str


class CallReply(msgspec.Struct, frozen=True, kw_only=True):
    """The call's outcome is in the log (``error`` is None), or the request was refused (``error``)."""

    error: str | None = None
