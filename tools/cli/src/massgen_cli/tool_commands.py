"""``massgen tools review`` and ``massgen tools set``: how each tool of a config is classified and which
need a person, and a person's decisions, stored in an override file (``massgen_es.tool_safety``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from massgen_cli.console import fail, out, run
from massgen_cli.mcp_commands import ConfigOpt, _inspect, _load, servers_of
from massgen_cli.stack import open_stack
from massgen_es import tool_safety
from massgen_es.bus.classifications import ClassificationStore
from massgen_es.errors import ConfigError
from massgen_es.events import ToolRule
from massgen_es.ops import home
from massgen_es.tool_safety import Learned

EXECUTE_COMMAND_NAME = "execute_command"
"""The command tool's bare name (rules name it so; the worker classifies it on its ``command_line``)."""

tools_app = typer.Typer(no_args_is_help=True, help="Tool safety: how each tool is classified, and which need "
                        "a person's approval (review, then confirm or override).")


@tools_app.command("review")
def review(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per tool.")] = False,
) -> None:
    """Every tool of the config's MCP servers (and execute_command) with its classification (reversible or
    irreversible), why, where that comes from (a rule, or the name rule), and its policy (allow, ask,
    deny), as a run submitted from here would record them. `massgen tools set` confirms or overrides."""
    cfg, where = _load(config)
    try:
        rules = (*cfg.tool_safety.rules, *tool_safety.override_rules(home(), Path.cwd()))
    except ConfigError as exc:
        fail(str(exc), 1)
    tools: dict[tuple[str, str], str] = {}  # (server, tool) -> its classification key
    if any(servers_of(cfg).values()):
        reply = run(_inspect(cfg, config, None))
        if reply.error:
            fail(f"the MCP broker could not list the servers: {reply.error}", 2)
        for s in reply.servers:
            for t in s.tools:
                tool = t.name.split("__", 2)[-1]
                tools[(s.server, tool)] = tool_safety.digest(s.server, tool, t.input_schema or {"type": "object"})
    if any(a.backend.enable_mcp_command_line for a in cfg.team):
        tools[("", EXECUTE_COMMAND_NAME)] = _command_key()
    if not tools:
        fail(f"{where} gives its agents no tool; add agents[].backend.mcp_servers (or cwd, or "
             "enable_mcp_command_line)", 1)
    learned = run(_learned(list(tools.values())))
    rows = [tool_safety.review(rules, server, tool, learned.get(key)) for (server, tool), key in sorted(tools.items())]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("tool", "safety", "policy", "source", "rationale", title="tool safety", show_edge=False)
    for row in rows:
        style = "red" if row["safety"] == "irreversible" else "green"
        table.add_row(row["tool"], f"[{style}]{row['safety']}[/{style}]", row["policy"], row["source"],
                      row["rationale"])
    out.print(table)
    out.print("confirm or override one: massgen tools set TOOL --safety irreversible --policy ask "
              "[--workspace]", style="dim", highlight=False)


def _command_key() -> str:
    """The key the worker stores ``execute_command``'s classification under (its ``command_line``
    server); the worker's package is imported here only, as an image of the command line has none."""
    try:
        from massgen_agent_worker.tools import COMMAND_LINE, EXECUTE_COMMAND
    except ModuleNotFoundError:
        return ""  # no worker here, so no stored classification to find
    return tool_safety.digest(COMMAND_LINE, EXECUTE_COMMAND_NAME, EXECUTE_COMMAND.parameters)


async def _learned(keys: list[str]) -> dict[str, Learned]:
    """The stored LLM classifications of ``keys`` (``massgen_es.bus.classifications``)."""
    async with open_stack(services=False, name="massgen-tools") as stack:
        store = ClassificationStore(stack.nc)
        found = {key: await store.get(key) for key in keys}
    return {key: value for key, value in found.items() if value is not None}


@tools_app.command("set")
def set_rule(
    tool: Annotated[str, typer.Argument(help="server.tool (shell wildcards allowed: github.*), or "
                                        "execute_command.")],
    safety: Annotated[Literal["reversible", "irreversible"] | None,
                      typer.Option("--safety", help="What planning mode holds back.")] = None,
    policy: Annotated[Literal["allow", "ask", "deny"] | None,
                      typer.Option("--policy", help="allow, ask (a person approves each call) or deny.")] = None,
    rationale: Annotated[str, typer.Option("--rationale", help="Why, in a few words.")] = "",
    workspace: Annotated[bool, typer.Option("--workspace", help="Store it for this directory "
                                            "(./.massgen/tool_safety.yaml), not for you (MASSGEN_HOME).")] = False,
) -> None:
    """Store a person's decision about a tool; every later run reads it (after the config's own rules)."""
    if safety is None and policy is None:
        fail("give --safety, --policy or both", 1)
    path = (Path.cwd() / ".massgen" if workspace else home()) / tool_safety.OVERRIDE_FILE
    try:
        tool_safety.save_rule(path, ToolRule(tool=tool, safety=safety, policy=policy, rationale=rationale))
    except ConfigError as exc:
        fail(str(exc), 1)
    out.print(f"{tool}: stored in {path}", highlight=False)
