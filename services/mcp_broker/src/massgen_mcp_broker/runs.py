"""What the broker knows about a run: its agents' MCP grants, workspaces and recorded results.

Built from the run's own events (``run.submitted`` and, for replay, a recorded run's tool results), so a
restarted broker rebuilds it from the log like every other service.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from massgen_es import ids, mcp, workspaces
from massgen_es.bus.secrets import SecretStore
from massgen_es.config import (
    FILESYSTEM_SERVER,
    PLANNING_MODULE,
    WORKSPACE_TOOLS_SERVER,
    BackendConfig,
    McpServerConfig,
    is_massgen_workspace_tools,
    is_planning_server,
    is_standard_filesystem_server,
)
from massgen_es.errors import ConfigError
from massgen_es.events import Record, RunSettings, RunSubmitted, ToolCallCompleted, ToolCallRequested
from massgen_mcp_broker.sessions import Launch

FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"


def filesystem_server_command() -> str:
    """The reference filesystem server installed by the project's setup (``make install`` puts the npm
    package under ``<venv>/mcp``); ``MASSGEN_MCP_FILESYSTEM`` overrides it.

    Raises:
        ConfigError: it is not installed.
    """
    installed = Path(sys.prefix) / "mcp/node_modules/.bin/mcp-server-filesystem"
    path = os.environ.get("MASSGEN_MCP_FILESYSTEM") or str(installed)
    if not Path(path).exists():
        raise ConfigError(
            f"the MCP filesystem server is not installed ({path} is missing); run `make install`, or "
            f"`npm install --prefix {Path(sys.prefix) / 'mcp'} {FILESYSTEM_PACKAGE}`"
        )
    return path


def workspace_tools_args(grant: AgentGrant, run: RunContext) -> tuple[str, ...]:
    """The command line of our ``workspace_tools`` server for ``grant`` (``python -m`` it): like the
    filesystem server's roots, the workspace and the ``write`` context paths writable (the broker keeps the
    latter read-only until the presentation, :meth:`AgentGrant.roots`), the other agents' snapshots and
    the ``read`` context paths read-only, and the protected paths (MassGen spec §3.5)."""
    assert grant.workspace is not None
    writable = [str(grant.workspace.resolve())]
    read_only = [str(run.snapshots.resolve())]
    for cp in grant.backend.context_paths:
        (writable if cp.permission == "write" else read_only).append(str(Path(cp.path).resolve()))
    args = ["-m", "massgen_mcp_broker.workspace_tools", "--allowed-paths", *writable, "--read-only", *read_only]
    if grant.protected:
        args += ["--protected", *map(str, grant.protected)]
    return tuple(args)


def task_planning_args(grant: AgentGrant, server: McpServerConfig) -> tuple[str, ...]:
    """The command line of our task-planning server for ``grant`` (``python -m`` it): the entry's
    ``--max-tasks``, and with ``--filesystem-mode`` the agent's workspace, where ``tasks/plan.json``
    mirrors the plan (MassGen spec §1.15; an agent without a workspace has no mirror)."""
    args = list(server.args)
    max_tasks = args[args.index("--max-tasks") + 1] if "--max-tasks" in args[:-1] else "10"
    out = ["-m", PLANNING_MODULE, "--max-tasks", max_tasks]
    if "--filesystem-mode" in args and grant.workspace is not None:
        out += ["--workspace", str(grant.workspace.resolve())]
    return tuple(out)


@dataclass
class AgentGrant:
    """One agent of a run, as the broker sees it."""

    agent_id: str
    anon_id: str
    backend: BackendConfig
    servers: dict[str, McpServerConfig]
    """Servers this agent may use by name, ``filesystem`` and ``workspace_tools`` included when ``cwd`` is set."""
    workspace: Path | None
    builtin: frozenset[str] = frozenset()
    """Names in :attr:`servers` that are ours (``filesystem``, ``workspace_tools``, ``planning``):
    :func:`resolve_launch` starts them with this agent's roots, whatever command the config gave."""
    _roots: dict[bool, list[mcp.Root]] = field(default_factory=dict, repr=False)

    @property
    def protected(self) -> list[Path]:
        """The context paths' ``protected_paths``, resolved: never deleted or overwritten (MassGen spec §3.5)."""
        return [Path(os.path.realpath(Path(cp.path) / rel)) for cp in self.backend.context_paths
                for rel in cp.protected_paths]

    def roots(self, run: RunContext, kind: str) -> list[mcp.Root]:
        """Directories the filesystem server may reach for this agent: its workspace (read-write), the
        other agents' shared snapshots (read-only), and the context paths, writable only for a ``write``
        path during the final presentation (MassGen spec §3.5). Resolved once per run and kind: a
        tool call checks its paths against them, and resolving costs a system call per level."""
        assert self.workspace is not None
        presenting = kind == "presentation"
        if presenting not in self._roots:
            roots = [mcp.Root(self.workspace.resolve(), True), mcp.Root(run.snapshots.resolve(), False)]
            for cp in self.backend.context_paths:
                roots.append(mcp.Root(Path(cp.path).resolve(), cp.permission == "write" and presenting))
            self._roots[presenting] = roots
        return self._roots[presenting]


@dataclass
class RunContext:
    """A run's agents and data directory (``<home>/runs/<run_id>``)."""

    run_id: str
    dir: Path
    agents: dict[str, AgentGrant]
    replay_from: str | None = None
    recorded: dict[tuple[str, str, str, str], list[ToolCallCompleted]] = field(default_factory=dict)
    launches: dict[tuple[str, str], tuple[Launch, list[str]]] = field(default_factory=dict, repr=False)
    """``(agent id, server name)``: :func:`resolve_launch`'s answer, which stays the same for the run."""
    settings: RunSettings = field(default_factory=RunSettings)
    """The run's protocol settings: its tool rules and planning mode (``massgen_es.tool_safety``)."""

    @property
    def snapshots(self) -> Path:
        """Where the run's agents share their workspaces (``<run dir>/snapshots``)."""
        return self.dir / "snapshots"

    @classmethod
    def build(cls, run_id: str, submitted: RunSubmitted, home: Path) -> RunContext:
        """Grants and workspaces for every agent of ``submitted``.

        Raises:
            ConfigError: a backend block does not validate (it did when submitted; a newer schema may differ).
        """
        run_dir = workspaces.run_dir(home, run_id)
        seed = workspaces.previous_workspace(home, submitted)  # a session turn's (MassGen spec §1.13)
        agents = {}
        for i, spec in enumerate(submitted.agents):
            backend = workspaces.session_backend(home, submitted, msgspec.convert(spec.backend, BackendConfig))
            servers = {s.name: s for s in backend.mcp_servers}
            workspace = None
            builtin: set[str] = {s.name for s in backend.mcp_servers if is_planning_server(s)}
            if backend.cwd is not None:
                workspace = workspaces.workspace(home, run_id, spec.id, seed)
                # Placeholder configs: resolve_launch() builds the real commands and their roots.
                mine = servers.get(FILESYSTEM_SERVER)
                if mine is None or is_standard_filesystem_server(mine):  # the official one means ours
                    # keeping its timeout and tool filters, as for workspace_tools below
                    servers[FILESYSTEM_SERVER] = mine or McpServerConfig(name=FILESYSTEM_SERVER, command="node")
                    builtin.add(FILESYSTEM_SERVER)
                own = servers.get(WORKSPACE_TOOLS_SERVER)
                # MassGen's own entry means ours (keeping its timeout and tool filters); another one replaces
                # ours, as a user server of the same name suppresses MassGen's injection (spec §3.5).
                if own is None or is_massgen_workspace_tools(own):
                    servers[WORKSPACE_TOOLS_SERVER] = own or McpServerConfig(name=WORKSPACE_TOOLS_SERVER,
                                                                             command="python")
                    builtin.add(WORKSPACE_TOOLS_SERVER)
            agents[spec.id] = AgentGrant(spec.id, ids.anon_id(i), backend, servers, workspace, frozenset(builtin))
        workspaces.snapshots(home, run_id)
        return cls(run_id, run_dir, agents, submitted.settings.replay_tools_from, settings=submitted.settings)

    def load_recording(self, records: list[Record]) -> None:
        """Index a recorded run's completed tool calls by (agent, server, tool, arguments), in order."""
        requests = {r.id: r.event for r in records if isinstance(r.event, ToolCallRequested)}
        for r in records:
            if isinstance(r.event, ToolCallCompleted) and r.causation_id in requests:
                req = requests[r.causation_id]
                self.recorded.setdefault(_call_key(req), []).append(r.event)

    def recorded_result(self, req: ToolCallRequested) -> ToolCallCompleted | None:
        """The next recorded result of an identical call, or None."""
        queue = self.recorded.get(_call_key(req))
        return queue.pop(0) if queue else None


def _call_key(req: ToolCallRequested) -> tuple[str, str, str, str]:
    try:
        args = msgspec.json.encode(msgspec.json.decode(req.arguments), order="sorted").decode()
    except msgspec.DecodeError:
        args = req.arguments
    return (req.agent_id, req.server, req.tool, args)


async def resolve_launch(
    grant: AgentGrant, server: McpServerConfig, run: RunContext, secrets: SecretStore
) -> tuple[Launch, list[str]]:
    """The concrete server to start for ``grant`` and the secret values it carries (for redaction).

    ``${secret:…}`` references come from the secret store, then ``${VAR}`` from the broker's environment.

    Raises:
        ConfigError: a referenced variable or secret is missing.
    """
    if server.name == FILESYSTEM_SERVER and server.name in grant.builtin:  # the server `cwd` adds
        roots = [str(r.path) for r in grant.roots(run, "coordination")]
        return Launch(name=server.name, type="stdio", command=filesystem_server_command(), args=tuple(roots)), []
    if server.name == WORKSPACE_TOOLS_SERVER and server.name in grant.builtin:
        return Launch(name=server.name, type="stdio", command=sys.executable, args=workspace_tools_args(grant, run)), []
    if is_planning_server(server) and server.name in grant.builtin:
        return Launch(name=server.name, type="stdio", command=sys.executable,
                      args=task_planning_args(grant, server)), []
    env_values = {k: await secrets.resolve(v) for k, v in server.env.items()}
    header_values = {k: await secrets.resolve(v) for k, v in server.headers.items()}
    env = {k: mcp.substitute(v, os.environ) for k, v in env_values.items()}
    headers = {k: mcp.substitute(v, os.environ) for k, v in header_values.items()}
    hidden = [*env.values(), *headers.values()]
    if server.type == "stdio":
        command, args = mcp.executable_and_args(server)
        return (
            Launch(
                name=server.name,
                type="stdio",
                command=command,
                args=tuple(mcp.substitute(a, os.environ) for a in args),
                env=tuple(sorted(env.items())),
                cwd=server.cwd,
            ),
            hidden,
        )
    return (
        Launch(name=server.name, type=server.type, url=server.url or "", headers=tuple(sorted(headers.items()))),
        hidden,
    )
