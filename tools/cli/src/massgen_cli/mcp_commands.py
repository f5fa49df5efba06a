"""``massgen mcp list`` and ``massgen mcp call``: MCP servers as the services see them, through the broker.

- ``list`` asks an MCP broker (request-reply on ``subjects.MCP_INSPECT_SUBJECT``) about every server of
  the config: state, circuit breaker, catalog version, and tools with their input schemas. A listing
  changes no run, so nothing is recorded.
- ``call`` makes one call as a run of its own (``RunSettings.mode == "tool_call"``): ``run.submitted``
  with the agent that has the server and ``tool.call_requested``, then a request on
  ``subjects.MCP_CALL_SUBJECT`` naming it (the command line pushes no work). The broker checks and makes
  the call as it does a model's (grant, filters, input schema, filesystem roots, retries, breaker), and
  the orchestrator ends the run with the outcome, so ``massgen replay RUN`` shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import msgspec
import typer
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from rich.table import Table
from rich.text import Text

from massgen_cli.console import err, fail, out, run
from massgen_cli.stack import Stack, open_stack
from massgen_es import config as config_mod
from massgen_es import mcp, scrub, subjects
from massgen_es.bus import Draft
from massgen_es.bus.secrets import SecretStore
from massgen_es.config import Config, server_names
from massgen_es.errors import ConfigError, MassgenError
from massgen_es.events import (
    TERMINAL_EVENTS,
    RunCompleted,
    Source,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from massgen_es.mcp_inspect import CallReply, CallRequest, InspectReply, InspectRequest

mcp_app = typer.Typer(no_args_is_help=True, help="MCP servers through the broker: list their tools, call one.")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="MassGen-shaped YAML config (default: the "
                                               "built-in team).")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="The agent whose server (and filters) to use; "
                                              "default: the first agent that has the server.")]
LIST_TIMEOUT_S = 90.0
"""How long ``mcp list`` waits for the broker's answer: starting every stdio server may take a while (npx)."""
BROKER_WAIT_S = 15.0
"""How long ``mcp list`` waits for a broker to subscribe (an embedded one starts with the command)."""

_HINTS = {
    "UnknownTool": "`massgen mcp list{cfg}` lists the server's tools",
    "ToolArgumentError": "fix --args to match the tool's input schema (`massgen mcp list{cfg}` shows it)",
    "ToolPermissionError": "the agent's allowed_tools / exclude_tools, or the filesystem roots, refuse it",
    "ServerUnavailable": "check the server's command or url in the config; its stderr log is under "
                         "MASSGEN_HOME/logs",
    "CircuitOpen": "the server failed repeatedly; calls resume after its circuit_breaker.reset_time_seconds",
}
"""What to do about a failed call, by failure type (``massgen_es.errors`` class names)."""


def servers_of(cfg: Config) -> dict[str, list[str]]:
    """Agent id -> the MCP server names it may use (``filesystem`` and ``workspace_tools`` when it has a
    ``cwd``), config order."""
    return {a.id: server_names(a.backend) for a in cfg.team}


def agent_for(cfg: Config, server: str, agent: str | None, where: str) -> str:
    """The agent whose ``server`` a call uses.

    Raises:
        ConfigError: no such agent, or no agent (or not ``agent``) has ``server``; the message lists
            what the config has and how to add the server.
    """
    by_agent = servers_of(cfg)
    if agent is not None and agent not in by_agent:
        raise ConfigError(f"--agent {agent!r} is not in {where}; its agents: {', '.join(by_agent)}")
    candidates = [a for a, names in by_agent.items() if server in names and (agent is None or a == agent)]
    if candidates:
        return candidates[0]
    known = sorted({n for names in by_agent.values() for n in names})
    owner = f"agent {agent!r}" if agent else "no agent"
    raise ConfigError(
        f"{owner} of {where} has an MCP server named {server!r} (configured: {', '.join(known) or 'none'}); "
        f"add it under agents[].backend.mcp_servers, or pass one of those names")


def parse_args(text: str) -> dict[str, Any]:
    """``--args`` as a JSON object.

    Raises:
        ConfigError: not JSON, or not an object; the message shows the expected form.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--args is not valid JSON ({exc}); give an object, e.g. --args '{{\"path\": \"/tmp\"}}'"
                          ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--args must be a JSON object of the tool's arguments, not {type(value).__name__}; "
                          "e.g. --args '{\"text\": \"hi\"}'")
    return value


def _load(config: str | None) -> tuple[Config, str]:
    try:
        return config_mod.load_config(config), config or "the built-in config"
    except ConfigError as exc:
        fail(str(exc), 1)


# ---------------------------------------------------------------- list


@mcp_app.command("list")
def list_servers(
    config: ConfigOpt = None,
    agent: AgentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: every server's report.")] = False,
) -> None:
    """Each configured MCP server as the broker holds it: state, circuit breaker, catalog version, and its
    tools with their input schemas (servers not running are started)."""
    cfg, where = _load(config)
    if agent is not None and agent not in servers_of(cfg):
        fail(f"--agent {agent!r} is not in {where}; its agents: {', '.join(servers_of(cfg))}", 1)
    if not any(servers_of(cfg).values()):
        fail(f"{where} configures no MCP server; add agents[].backend.mcp_servers (or cwd for filesystem)", 1)
    reply = run(_inspect(cfg, config, agent))
    if reply.error:
        fail(f"the MCP broker could not list the servers: {reply.error}", 2)
    if as_json:
        print(json.dumps(msgspec.to_builtins(reply.servers), ensure_ascii=False))
        return
    _print_reports(reply, config)
    if any(s.state == "failed" for s in reply.servers):
        raise typer.Exit(2)


async def _inspect(cfg: Config, config_path: str | None, agent: str | None) -> InspectReply:
    submitted = config_mod.run_submitted("massgen mcp list", cfg, config_path)
    agents = tuple(a for a in submitted.agents if agent is None or a.id == agent)
    async with open_stack(services=True, name="massgen-mcp") as stack:
        await SecretStore(stack.nc).put_all(config_mod.secrets(cfg))
        msg = await _ask(stack, subjects.MCP_INSPECT_SUBJECT, msgspec.json.encode(InspectRequest(agents=agents)),
                         LIST_TIMEOUT_S)
        return msgspec.json.decode(msg.data, type=InspectReply)


async def _ask(stack: Stack, subject: str, body: bytes, timeout_s: float) -> Msg:
    """One request to an MCP broker, waiting up to :data:`BROKER_WAIT_S` for one to subscribe.

    Raises:
        MassgenError: no broker answers, or none within ``timeout_s``; naming what to start or look at.
    """
    waited = 0.0
    while True:
        try:
            return await stack.nc.request(subject, body, timeout=timeout_s)
        except NoRespondersError:
            # An embedded broker subscribes a moment after the stack is up; an external one may restart.
            if waited >= BROKER_WAIT_S:
                raise MassgenError(f"no MCP broker answers on {stack.url.split('@')[-1]}; start one "
                                   "(`massgen up`, or `massgen serve mcp_broker`)") from None
            await asyncio.sleep(0.2)
            waited += 0.2
        except NatsTimeout:
            raise MassgenError(f"the MCP broker did not answer within {timeout_s:.0f} s; a server may hang "
                               "(see MASSGEN_HOME/logs)") from None


def _print_reports(reply: InspectReply, config: str | None) -> None:
    summary = Table("agent", "server", "type", "state", "breaker", "catalog", "tools", title="MCP servers",
                    show_edge=False)
    for s in reply.servers:
        style = {"failed": "red", "started": "green"}.get(s.state, "")
        breaker = s.breaker + (f" ({s.failures} failures)" if s.failures else "")
        summary.add_row(s.agent_id, s.server, s.type, Text(s.state, style=style), breaker,
                        f"v{s.catalog_version}" if s.catalog_version else "-", str(len(s.tools)))
    out.print(summary)
    for s in reply.servers:  # whole lines: a table cell would squeeze the path of the server's log
        if s.error:
            out.print(Text.assemble((f"{s.server} ({s.agent_id}): ", "red"), scrub.text(s.error)), soft_wrap=True)
    seen: set[tuple[str, str]] = set()
    for s in reply.servers:
        key = (s.server, json.dumps([(t.name, t.input_schema, t.allowed) for t in s.tools], sort_keys=True))
        if not s.tools or key in seen:  # agents sharing a server and its filters: its tools once
            continue
        seen.add(key)
        # One block per tool, the schema on one soft-wrapped line: a table cell would fold it unreadably.
        out.print(Text(f"{s.server} (catalog v{s.catalog_version}, {len(s.tools)} tools)", style="bold"))
        for t in s.tools:
            head = Text.assemble("  ", (t.name, "bold cyan"), ("" if t.allowed else " (not allowed for this agent)",
                                                               "yellow"), f"  {' '.join(t.description.split())}")
            out.print(head, soft_wrap=True)
            out.print(Text("    " + json.dumps(t.input_schema, separators=(",", ":"), ensure_ascii=False)),
                      soft_wrap=True)
    cfg = f" --config {config}" if config else ""
    err.print(f"call one: massgen mcp call SERVER TOOL --args '{{...}}'{cfg}", style="dim", highlight=False)


# ---------------------------------------------------------------- call


@mcp_app.command("call")
def call(
    server: Annotated[str, typer.Argument(help="The server's name in the config.")],
    tool: Annotated[str, typer.Argument(help="The tool's name (bare, or mcp__SERVER__TOOL).")],
    args: Annotated[str, typer.Option("--args", help="The arguments as a JSON object.")] = "{}",
    config: ConfigOpt = None,
    agent: AgentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: run id, status, result, error.")] = False,
) -> None:
    """Make one tool call through the MCP broker, recorded in the event log as a run of its own (its id is
    printed; `massgen replay RUN --mcp` shows it). Exit 0 on a result, 1 on a bad argument or config,
    2 when the call failed or the server answered with an error."""
    cfg, where = _load(config)
    split = mcp.split_tool_name(tool)
    if split is not None:
        if split[0] != server:
            fail(f"tool {tool!r} belongs to server {split[0]!r}, not {server!r}; pass its bare name", 1)
        tool = split[1]
    try:
        arguments = parse_args(args)
        agent_id = agent_for(cfg, server, agent, where)
    except ConfigError as exc:
        fail(str(exc), 1)
    outcome = run(_call(cfg, config, agent_id, server, tool, arguments, quiet=as_json))
    run_id, status, done = outcome
    result: dict[str, Any] = {"run_id": run_id, "status": status, "server": server, "tool": tool, "agent": agent_id}
    if isinstance(done, ToolCallCompleted):
        result |= {"result": done.content, "is_error": done.is_error, "duration_s": done.duration_s,
                   "attempts": done.attempts, "error": done.content if done.is_error else None}
    elif isinstance(done, ToolCallFailed):
        result |= {"result": None, "is_error": True, "duration_s": done.duration_s, "attempts": done.attempts,
                   "error": done.failure.text()}
    else:
        result |= {"result": None, "is_error": True, "error": f"no outcome recorded (run {status})"}
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    elif not result["is_error"]:
        out.print(Text(result["result"]))
    if result["is_error"]:
        hint = _HINTS.get(done.failure.type, "") if isinstance(done, ToolCallFailed) else ""
        fix = "; " + hint.format(cfg=f" --config {config}" if config else "") if hint else ""
        err.print(Text.assemble(("error:", "red"), f" {server}.{tool}: {result['error']}{fix}"))
    err.print(f"replay it: massgen replay {run_id} --mcp", style="dim", highlight=False)
    raise typer.Exit(0 if status == "completed" else 2)


async def _call(cfg: Config, config_path: str | None, agent_id: str, server: str, tool: str,
                arguments: dict[str, Any], quiet: bool) -> tuple[str, str, ToolCallCompleted | ToolCallFailed | None]:
    """Submit the tool-call run, push the call, follow the run to its end: (run id, status, outcome)."""
    from massgen_cli.app import new_run_id  # one run-id format for every command

    run_id = new_run_id()
    submitted = config_mod.run_submitted(f"massgen mcp call {server} {tool}", cfg, config_path)
    limit = next((s for a in cfg.team if a.id == agent_id for s in a.backend.mcp_servers if s.name == server), None)
    # The run's deadline: every try of the call, each within the server's timeout, plus starting it.
    deadline = (limit.timeout * (limit.retries + 1) if limit else 120.0) + 60.0
    submitted = msgspec.structs.replace(
        submitted, agents=tuple(a for a in submitted.agents if a.id == agent_id),
        settings=msgspec.structs.replace(submitted.settings, mode="tool_call", orchestrator_timeout_s=deadline))
    request = ToolCallRequested(call_id=f"{run_id}-call", turn_id=f"{run_id}:mcp-call", agent_id=agent_id, attempt=1,
                          kind="coordination", server=server, tool=tool, arguments=json.dumps(arguments))
    origin = Source(service="cli", instance=f"{os.uname().nodename}-{os.getpid()}")
    async with open_stack(services=True, name="massgen-mcp") as stack:
        if not quiet:
            where = "embedded stack" if stack.embedded else stack.url.split("@")[-1]
            err.print(f"run [bold]{run_id}[/bold] on {where}: {server}.{tool} as {agent_id}", highlight=False)
        await SecretStore(stack.nc).put_all(config_mod.secrets(cfg))  # before the event that references them
        drafts = [Draft(f"{run_id}:submitted", submitted), Draft(f"{run_id}:mcp-call", request, f"{run_id}:submitted")]
        await stack.log.append(run_id, "cli", drafts, origin=origin)
        msg = await _ask(stack, subjects.MCP_CALL_SUBJECT, msgspec.json.encode(
            CallRequest(run_id=run_id, request_id=drafts[1].id)), deadline)
        refused = msgspec.json.decode(msg.data, type=CallReply).error
        if refused:
            raise MassgenError(f"the MCP broker refused the call: {refused}")
        outcome: ToolCallCompleted | ToolCallFailed | None = None
        async for r in stack.log.follow(run_id):
            if isinstance(r.event, ToolCallCompleted | ToolCallFailed) and r.event.call_id == request.call_id:
                outcome = r.event
            if isinstance(r.event, TERMINAL_EVENTS):
                status = "completed" if isinstance(r.event, RunCompleted) else r.type.removeprefix("run.")
                return run_id, status, outcome
    raise MassgenError(f"run {run_id} ended without its end event")  # pragma: no cover - follow never ends
