"""``massgen config init``: the questions (questionary) and the commented YAML they become.

:func:`ask` asks on the terminal and returns :class:`Answers`; :func:`render` turns them into a config
file whose every block has a comment saying what it does. API keys are never asked for: only the name
of the environment variable that holds each one, written as an ``api_key: ${NAME}`` reference.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml

from massgen_es import ag2, backends, models
from massgen_es.config import BackendType
from massgen_es.errors import ConfigError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\d+[bkmgBKMG]?$")

DEFAULT_MODELS: dict[str, str] = {
    "local": models.DEFAULT_MODEL, "openai": "gpt-5-mini", "claude": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash", "azure_openai": "gpt-4o-mini",
}
"""The model offered first for a backend type (the user may type any other)."""

_TYPE_TITLES: dict[str, str] = {
    "local": "local: the local model through llama.cpp (`massgen models`), no API key needed",
    "openai": "openai: OpenAI Responses API",
    "claude": "claude: Anthropic Messages API",
    "gemini": "gemini: Google Gemini",
    "azure_openai": "azure_openai: Azure OpenAI (model = deployment)",
    "claude_code": "claude_code: the Claude Code CLI",
    "chatcompletion": "chatcompletion: any OpenAI-compatible endpoint (you give its URL)",
}


@dataclass(frozen=True)
class McpServer:
    """One MCP server of the menu, or a custom command."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict[str, str])
    """Variable name to ``${NAME}`` reference: what the server gets, read from the environment."""
    comment: str = ""


@dataclass(frozen=True)
class Agent:
    """One agent's answers."""

    id: str
    type: str
    model: str | None = None
    key_env: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Execution:
    """Code execution (``execute_command``) settings."""

    mode: str = "local"
    timeout_seconds: float = 60.0
    memory_limit: str | None = None


@dataclass(frozen=True)
class Answers:
    """Everything ``config init`` asked."""

    agents: tuple[Agent, ...]
    mcp_servers: tuple[McpServer, ...] = ()
    cwd: str | None = None
    context_paths: tuple[tuple[str, str], ...] = ()
    """(path, ``read`` or ``write``) pairs."""
    execution: Execution | None = None


MENU: dict[str, McpServer] = {
    "fetch": McpServer("fetch", "uvx", ("mcp-server-fetch",), comment="fetches web pages as markdown"),
    "search": McpServer("search", "npx", ("-y", "@modelcontextprotocol/server-brave-search"),
                        {"BRAVE_API_KEY": "${BRAVE_API_KEY}"}, comment="Brave web search; key in BRAVE_API_KEY"),
    "files": McpServer("files", "npx", ("-y", "@modelcontextprotocol/server-filesystem"),
                       comment="reads and writes the directories given as its arguments"),
    "everything": McpServer("everything", "npx", ("-y", "@modelcontextprotocol/server-everything"),
                            comment="the MCP reference test server (echo, add, ...)"),
}
"""The well-known MCP servers ``config init`` offers (plus a custom command)."""


def backend_types() -> list[str]:
    """The backend types, the local one (no key needed) first; not ``ag2``, whose AG2 agent blocks
    (``agent_config`` / ``group_config``, ``massgen_es.ag2``) are written by hand."""
    first = ["local", "openai", "claude", "gemini", "azure_openai", "claude_code", "chatcompletion"]
    return [*first, *(t for t in get_args(BackendType) if t not in first and t not in ag2.TYPES)]


def _needs_key(backend_type: str) -> str | None:
    """The default key variable of a type, "" for a type whose key is optional, None for no key."""
    if backend_type == "local":
        return None
    if backend_type == "chatcompletion":
        return ""
    return backends.capabilities(backend_type).key_env


# ---------------------------------------------------------------- the questions


def _valid_env(text: str) -> bool | str:
    return True if _ENV_NAME.match(text) else "a variable name: letters, digits and _ (the name, not the key)"


def _ask_agent(q: Any, i: int, taken: set[str]) -> Agent:
    def unique(text: str) -> bool | str:
        if not text.strip():
            return "give the agent an id"
        return "that id is taken" if text.strip() in taken else True

    agent_id = q.text(f"Agent {i} id:", default=f"agent{i}", validate=unique).unsafe_ask().strip()
    choices = [q.Choice(_TYPE_TITLES.get(t, f"{t}: an OpenAI-compatible preset"), value=t) for t in backend_types()]
    kind = q.select(f"Backend of {agent_id}:", choices=choices, use_shortcuts=True, use_jk_keys=False).unsafe_ask()
    model = q.text(f"Model of {agent_id}:", default=DEFAULT_MODELS.get(kind, "")).unsafe_ask().strip() or None
    base_url = None
    if kind == "chatcompletion":
        base_url = q.text("Endpoint (base_url):", default="http://127.0.0.1:8000/v1",
                          validate=lambda t: t.startswith(("http://", "https://")) or "an http(s) URL").unsafe_ask()
    key_env = None
    default_key = _needs_key(kind)
    if default_key is not None:
        key_env = q.text("Name of the environment variable holding the API key (not the key itself):",
                         default=default_key,
                         validate=lambda t: True if not t and default_key == "" else _valid_env(t)).unsafe_ask()
    return Agent(id=agent_id, type=kind, model=model, key_env=key_env or None, base_url=base_url)


def _ask_mcp(q: Any) -> tuple[McpServer, ...]:
    chosen: list[McpServer] = []
    while True:
        choices = [q.Choice("no (more) MCP servers", value="")]
        choices += [q.Choice(f"{s.name}: {s.comment}", value=s.name) for s in MENU.values()
                    if s.name not in {c.name for c in chosen}]
        choices.append(q.Choice("custom: a command of your own", value="custom"))
        title = f"Another MCP server? (chosen: {', '.join(c.name for c in chosen)})" if chosen else \
            "Add an MCP server (every agent gets it)?"
        pick = q.select(title, choices=choices, use_shortcuts=True, use_jk_keys=False).unsafe_ask()
        if not pick:
            return tuple(chosen)
        if pick == "files":
            where = q.text("Directory the files server serves:", default=str(Path.cwd())).unsafe_ask()
            chosen.append(McpServer("files", "npx", (*MENU["files"].args, where), comment=MENU["files"].comment))
        elif pick == "custom":
            name = q.text("Server name:", validate=lambda t: bool(re.fullmatch(r"[A-Za-z0-9_-]{1,100}", t))
                          or "letters, digits, _ or -").unsafe_ask()
            line = q.text("Command (e.g. npx -y my-mcp-server):", validate=lambda t: bool(t.strip()) or "a command"
                          ).unsafe_ask()
            names = q.text("Environment variables it needs, by name (comma-separated, empty for none):").unsafe_ask()
            words = shlex.split(line)
            env = {n.strip(): "${" + n.strip() + "}" for n in names.split(",") if _ENV_NAME.match(n.strip())}
            chosen.append(McpServer(name, words[0], tuple(words[1:]), env, comment="your own server"))
        else:
            chosen.append(MENU[pick])


def _ask_context_paths(q: Any) -> tuple[tuple[str, str], ...]:
    paths: list[tuple[str, str]] = []
    prompt = "Share a directory or file with the agents (a context path)?"
    while q.confirm(prompt, default=False).unsafe_ask():
        path = q.text("Path:", validate=lambda t: Path(t).expanduser().exists() or "no such file or directory"
                      ).unsafe_ask()
        permission = q.select("Permission:", choices=[
            q.Choice("read: agents read it", value="read"),
            q.Choice("write: the winner may write it while presenting", value="write"),
        ], use_shortcuts=True, use_jk_keys=False).unsafe_ask()
        paths.append((path, permission))
        prompt = f"Another context path? ({len(paths)} so far)"
    return tuple(paths)


def _ask_execution(q: Any, has_workspace: bool) -> Execution | None:
    question = "Let agents run commands in their workspace (execute_command)?" + \
        ("" if has_workspace else " It adds a workspace `workspace`.")
    if not q.confirm(question, default=False).unsafe_ask():
        return None
    mode = q.select("Where do commands run?", choices=[
        q.Choice("local: a bubblewrap sandbox on this machine (no network)", value="local"),
        q.Choice("docker: a container per agent (needs a Docker engine)", value="docker"),
    ], use_shortcuts=True, use_jk_keys=False).unsafe_ask()
    timeout = q.text("Timeout per command, in seconds:", default="60",
                     validate=lambda t: _positive(t) or "a positive number").unsafe_ask()
    memory = None
    if mode == "docker":
        memory = q.text("Container memory limit (e.g. 512m, 2g):", default="2g",
                        validate=lambda t: bool(_MEMORY.match(t)) or "a size like 512m or 2g").unsafe_ask()
    return Execution(mode=mode, timeout_seconds=float(timeout), memory_limit=memory)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def ask() -> Answers:
    """Ask for the team, each agent's backend, MCP servers, the workspace, context paths and code
    execution, on the terminal.

    Raises:
        KeyboardInterrupt: the person pressed Ctrl-C.
        ConfigError: questionary is not installed (the compose images leave it out).
    """
    try:
        import questionary as q
    except ImportError:
        raise ConfigError("the questions of `massgen config init` need questionary (`pip install questionary`); "
                          "or write a template with --template NAME") from None

    count = q.text("How many agents?", default="3",
                   validate=lambda t: (t.isdigit() and 1 <= int(t) <= 20) or "a number from 1 to 20").unsafe_ask()
    agents: list[Agent] = []
    for i in range(1, int(count) + 1):
        agents.append(_ask_agent(q, i, {a.id for a in agents}))
    servers = _ask_mcp(q)
    cwd = None
    if q.confirm("Give each agent a filesystem workspace (cwd)?", default=False).unsafe_ask():
        cwd = q.text("Workspace directory name:", default="workspace").unsafe_ask()
    paths = _ask_context_paths(q)
    execution = _ask_execution(q, cwd is not None)
    if execution is not None and cwd is None:
        cwd = "workspace"  # execute_command runs in the agent's workspace
    return Answers(agents=tuple(agents), mcp_servers=servers, cwd=cwd, context_paths=paths, execution=execution)


# ---------------------------------------------------------------- the file


def _y(value: object) -> str:
    """One YAML value in flow style, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _backend(a: Answers, agent: Agent, said: set[str]) -> list[str]:
    """The ``backend:`` block of ``agent``, without the comment lines in ``said`` (each explanation is
    written once, at the first agent that needs it); adds its comment lines to ``said``."""
    b = "      "
    lines = ["    backend:", f"{b}type: {_y(agent.type)}"]
    if agent.type == "local":
        lines[1] += "  # the local model through llama.cpp: no API key needed"
    if agent.model:
        lines.append(f"{b}model: {_y(agent.model)}")
    if agent.base_url:
        lines.append(f"{b}base_url: {_y(agent.base_url)}")
    if agent.key_env:
        lines += [f"{b}# The key is read from this environment variable when the run starts; the key itself never",
                  f"{b}# enters the config or the event log.",
                  f"{b}api_key: {_y('${' + agent.key_env + '}')}"]
    if a.cwd:
        lines += [f"{b}# A filesystem workspace: the agent gets the `filesystem` and `workspace_tools` MCP servers on",
                  f"{b}# it. It lives under the run's data directory, one per agent.",
                  f"{b}cwd: {_y(a.cwd)}"]
    if a.execution:
        e = a.execution
        lines += [f"{b}# Code execution: `execute_command` runs commands in the workspace ({e.mode} mode).",
                  f"{b}enable_mcp_command_line: true",
                  f"{b}command_line_execution_mode: {e.mode}",
                  f"{b}command_line_timeout_seconds: {_y(e.timeout_seconds)}"]
        if e.mode == "docker":
            lines.append(f"{b}command_line_docker_network_mode: none  # no network inside the container")
            if e.memory_limit:
                lines.append(f"{b}command_line_docker_memory_limit: {_y(e.memory_limit)}")
    if a.mcp_servers:
        lines += [f"{b}# MCP servers: each tool is offered as mcp__<server>__<tool>. `env` values are ${{VAR}}",
                  f"{b}# references, resolved by the MCP broker; they never reach the event log.",
                  f"{b}mcp_servers:"]
        for s in a.mcp_servers:
            lines += [f"{b}  - name: {_y(s.name)}" + (f"  # {s.comment}" if s.comment else ""),
                      f"{b}    command: {_y(s.command)}"]
            if s.args:
                lines.append(f"{b}    args: {_y(list(s.args))}")
            if s.env:
                lines.append(f"{b}    env: {_y(s.env)}")
    kept = [line for line in lines if not (line.lstrip().startswith("#") and line in said)]
    said.update(line for line in lines if line.lstrip().startswith("#"))
    return kept


def render(a: Answers, modeline: str) -> str:
    """The config file of ``a``, with a comment on each block; ``modeline`` is its first line."""
    lines = [
        modeline,
        "# Written by `massgen config init`. `massgen config validate FILE` checks it; `massgen config show FILE`",
        "# prints it with every default filled in; `massgen submit --config FILE --dry-run \"...\"` shows the plan.",
        "",
        "# The team: every agent answers the question, they vote, and the winner presents the final answer.",
        "agents:",
    ]
    said: set[str] = set()
    for agent in a.agents:
        lines.append(f"  - id: {_y(agent.id)}")
        lines += _backend(a, agent, said)
    lines += ["", "orchestrator:",
              "  # New answers each agent may give before the team must vote (null: no limit).",
              "  max_new_answers_per_agent: 2"]
    if a.context_paths:
        lines += ["  # Context paths, shared with every agent: read-only while they coordinate; a `write` path",
                  "  # becomes writable for the winner's final presentation only.",
                  "  context_paths:"]
        lines += [f"    - {{path: {_y(p)}, permission: {perm}}}" for p, perm in a.context_paths]
    lines += ["", "timeout_settings:",
              "  orchestrator_timeout_seconds: 1800  # the whole coordination",
              "  presentation_timeout_seconds: 300   # the winner's final presentation", ""]
    return "\n".join(lines)
