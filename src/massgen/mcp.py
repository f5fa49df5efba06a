"""MCP rules shared by config validation, the agent worker and the MCP broker (pure; no sessions).

- naming: ``mcp__<server>__<tool>`` (MassGen spec §3.2);
- tool filters that match bare and prefixed names alike (MassGen's silently miss prefixed ones);
- server-command, environment and URL validation (MassGen spec §3.4);
- ``${VAR}`` substitution and redaction of secret values (DESIGN principle 7);
- tool-argument validation against the tool's input schema;
- filesystem roots: path traversal and symlink escapes are refused (MassGen spec §3.5).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema

from massgen.errors import ConfigError, MassgenError

if TYPE_CHECKING:
    from massgen.config import BackendConfig, McpServerConfig

PREFIX = "mcp__"
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METACHARS = re.compile(r"[&|;`$()<>\n\r]")

_EXECUTABLES = {
    "strict": {
        "python", "python3", "py", "uv", "uvx", "pipx", "pip", "pip3", "node", "npm", "npx", "yarn", "pnpm",
        "bun", "deno", "java", "ruby", "go", "cargo", "fastmcp", "sh", "bash", "zsh",
    },
    "moderate": {"git", "nodejs"},
    "permissive": {"curl", "wget"},
}
_LEVELS = ("strict", "moderate", "permissive")
_ALWAYS_DENIED_ENV = {
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "PYTHONPATH",
    "PYTHONSTARTUP", "NODE_OPTIONS",
}
_STRICT_DENIED_ENV = {"PATH", "HOME", "USER", "USERNAME", "SHELL"}
MAX_ARGUMENT_CHARS = 100_000
MAX_ARGUMENT_DEPTH = 20


class ToolArgumentError(MassgenError):
    """A model's tool arguments do not fit the tool's input schema; the message is for the model."""


class ToolPermissionError(MassgenError):
    """A tool call reaches outside what the agent may use; the message is for the model."""


# ---------------------------------------------------------------- naming and filters


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>``: how an MCP tool is offered to models (MassGen spec §3.2)."""
    return f"{PREFIX}{server}__{tool}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of a prefixed name, or None when ``name`` is not an MCP tool name."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition("__")
    return (server, tool) if sep and server and tool else None


def _matches(entries: Iterable[str], server: str, tool: str) -> bool:
    return any(e in (tool, tool_name(server, tool)) for e in entries)


def tool_allowed(server: McpServerConfig, backend: BackendConfig, tool: str) -> bool:
    """Whether an agent may see and call ``tool`` (bare name) of ``server``.

    Excluded by the backend's or the server's ``exclude_tools``; then the server's ``allowed_tools``, or
    else the backend's, must list it when set. Entries may be bare or prefixed names (MassGen compares
    bare names only, so its documented prefixed entries never match: spec §3.2).
    """
    if _matches(backend.exclude_tools, server.name, tool) or _matches(server.exclude_tools, server.name, tool):
        return False
    allow = server.allowed_tools if server.allowed_tools is not None else backend.allowed_tools
    return allow is None or _matches(allow, server.name, tool)


# ---------------------------------------------------------------- server validation


def executable_and_args(cfg: McpServerConfig) -> tuple[str, list[str]]:
    """The executable and the full argument list of a ``stdio`` server (a string ``command`` is
    shlex-split; its extra tokens come before ``args``)."""
    tokens = shlex.split(cfg.command) if isinstance(cfg.command, str) else list(cfg.command or ())
    if not tokens:
        return "", list(cfg.args)
    return tokens[0], tokens[1:] + list(cfg.args)


def _allowed_executables(cfg: McpServerConfig) -> set[str]:
    level = _LEVELS.index(cfg.security.level)
    return set().union(*(_EXECUTABLES[lv] for lv in _LEVELS[: level + 1]), cfg.security.allowed_executables)


def _executable_ok(executable: str, allowed: set[str]) -> bool:
    base = os.path.basename(executable)
    return base in allowed or ("python" in allowed and re.fullmatch(r"python3\.\d+", base) is not None)


def validate_server(cfg: McpServerConfig, where: str) -> None:
    """Refuse a server config that could inject commands or reach what it should not (MassGen spec §3.4).

    Raises:
        ConfigError: names the key under ``where`` (e.g. ``agents[0].backend.mcp_servers[1]``) and the fix.
    """
    if not _SERVER_NAME.match(cfg.name):
        raise ConfigError(f"`{where}.name` {cfg.name!r} must be 1-100 letters, digits, '_' or '-'")
    if cfg.type == "stdio":
        _validate_stdio(cfg, where)
    else:
        _validate_url(cfg, where)
    for key in cfg.env:
        if not _ENV_KEY.match(key):
            raise ConfigError(f"`{where}.env.{key}` is not a valid environment variable name")
        if key in _ALWAYS_DENIED_ENV or (cfg.security.level == "strict" and key in _STRICT_DENIED_ENV):
            raise ConfigError(
                f"`{where}.env.{key}` may not be set for an MCP server (it changes what code the process loads); "
                "remove it" + (", or use `security.level: moderate`" if key in _STRICT_DENIED_ENV else "")
            )
    if not 0 < cfg.timeout <= 300:
        raise ConfigError(f"`{where}.timeout` must be in (0, 300] seconds")
    if not 0 <= cfg.retries <= 10:
        raise ConfigError(f"`{where}.retries` must be between 0 and 10")
    if cfg.circuit_breaker.max_failures < 1 or not cfg.circuit_breaker.reset_time_seconds > 0:
        raise ConfigError(f"`{where}.circuit_breaker` needs max_failures >= 1 and reset_time_seconds > 0")


def _validate_stdio(cfg: McpServerConfig, where: str) -> None:
    if cfg.url is not None or cfg.headers:
        raise ConfigError(f"`{where}`: `url`/`headers` are for type streamable-http; remove them or change `type`")
    try:
        executable, args = executable_and_args(cfg)
    except ValueError as exc:
        raise ConfigError(f"`{where}.command` cannot be split: {exc}") from None
    if not executable:
        raise ConfigError(f"`{where}.command` is required for a stdio server (e.g. `npx` or `python`)")
    if len(args) > 50:
        raise ConfigError(f"`{where}.args` has {len(args)} entries; at most 50 are allowed")
    for i, token in enumerate([executable, *args]):
        key = f"{where}.command" if i == 0 else f"{where}.args"
        if len(token) > 500:
            raise ConfigError(f"`{key}` has an entry over 500 characters")
        if _METACHARS.search(_VAR.sub("", token)):
            raise ConfigError(
                f"`{key}` entry {token!r} contains shell metacharacters (& | ; ` $ ( ) < >); MCP servers are "
                "started without a shell, so pass each argument separately"
            )
        if ".." in Path(token).parts:
            raise ConfigError(f"`{key}` entry {token!r} contains a `..` path component; use an absolute path")
    if not _executable_ok(executable, _allowed_executables(cfg)):
        raise ConfigError(
            f"`{where}.command`: executable {os.path.basename(executable)!r} is not allowed at security level "
            f"{cfg.security.level!r}; add it to `{where}.security.allowed_executables` if you trust it"
        )
    if cfg.cwd is not None and ".." in Path(cfg.cwd).parts:
        raise ConfigError(f"`{where}.cwd` contains a `..` path component; use an absolute path")


def _validate_url(cfg: McpServerConfig, where: str) -> None:
    if cfg.command is not None or cfg.args:
        raise ConfigError(f"`{where}`: `command`/`args` are for type stdio; remove them or change `type`")
    if not cfg.url:
        raise ConfigError(f"`{where}.url` is required for a streamable-http server")
    if len(cfg.url) > 2048:
        raise ConfigError(f"`{where}.url` is over 2048 characters")
    parts = urlsplit(cfg.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"`{where}.url` {cfg.url!r} must be an http(s) URL with a host")
    host = parts.hostname
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    loopback = host == "localhost" or (ip is not None and ip.is_loopback)
    if loopback and not cfg.security.allow_localhost:
        raise ConfigError(f"`{where}.url` points to this machine; set `security.allow_localhost: true` to allow it")
    if not loopback and ip is not None and (ip.is_private or ip.is_link_local or ip.is_reserved):
        if not cfg.security.allow_private_ips:
            raise ConfigError(
                f"`{where}.url` points to a private address {host}; set `security.allow_private_ips: true` to allow it"
            )


# ---------------------------------------------------------------- secrets


def substitute(value: str, env: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` in ``value`` by ``env[NAME]``.

    Raises:
        ConfigError: a referenced variable is not set.
    """

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise ConfigError(f"environment variable {m.group(1)} is not set; export it for the MCP broker")
        return env[m.group(1)]

    return _VAR.sub(one, value)


class Redactor:
    """Replaces known secret values by ``***`` in text (values shorter than 4 characters are ignored)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def scrub_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` (dicts, lists, tuples, strings) with every string scrubbed."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.scrub_obj(v) for v in obj)
        return obj


# ---------------------------------------------------------------- arguments


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def check_arguments(arguments_json: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a model's raw tool arguments and validate them against the tool's input schema.

    Returns:
        The arguments as a dict.

    Raises:
        ToolArgumentError: invalid JSON, not an object, too large or deep, or not matching ``schema``;
            the message says what and where, for the model to correct its call.
    """
    if len(arguments_json) > MAX_ARGUMENT_CHARS:
        raise ToolArgumentError(f"tool arguments are over {MAX_ARGUMENT_CHARS} characters")
    try:
        args = json.loads(arguments_json or "{}")
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"tool arguments are not valid JSON: {exc}") from None
    if not isinstance(args, dict):
        raise ToolArgumentError("tool arguments must be a JSON object")
    if _depth(args) > MAX_ARGUMENT_DEPTH:
        raise ToolArgumentError(f"tool arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(args))
    if error is not None:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
        raise ToolArgumentError(f"invalid arguments for tool: {error.message} (at {where})")
    return args


# ---------------------------------------------------------------- filesystem roots


@dataclass(frozen=True)
class Root:
    """A directory an agent's filesystem tools may reach (absolute and resolved)."""

    path: Path
    writable: bool


FILESYSTEM_WRITE_TOOLS = frozenset({"write_file", "edit_file", "create_directory", "move_file"})
"""Tools of ``@modelcontextprotocol/server-filesystem`` that change files."""


def path_arguments(tool: str, arguments: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``(raw path, needs write)`` for each path a filesystem-server tool call names."""
    write = tool in FILESYSTEM_WRITE_TOOLS
    out: list[tuple[str, bool]] = []
    for key in ("path", "source", "destination"):
        if isinstance(arguments.get(key), str):
            out.append((arguments[key], write))
    paths = arguments.get("paths")
    if isinstance(paths, list):
        out.extend((p, write) for p in paths if isinstance(p, str))
    return out


def _resolve(path: Path) -> Path:
    # realpath of the deepest existing ancestor (symlinks followed), then the part that does not exist yet.
    existing, rest = path, []
    while not existing.exists() and existing != existing.parent:
        rest.append(existing.name)
        existing = existing.parent
    resolved = Path(os.path.realpath(existing))
    for name in reversed(rest):
        resolved = resolved / name
    return resolved


def resolve_in_roots(raw: str, roots: Sequence[Root], *, write: bool) -> Path:
    """Resolve ``raw`` (relative paths are relative to the first root) and check it stays in a root.

    Symlinks are followed before the check, so a link inside a root that points outside is refused; a
    path under a read-only root is refused for writing.

    Raises:
        ToolPermissionError: the path leaves every root, uses ``~``, or needs write access it lacks.
    """
    if raw.startswith("~"):
        raise ToolPermissionError(f"path {raw!r}: `~` is not expanded; use a path inside {roots[0].path}")
    path = Path(raw)
    resolved = _resolve(path if path.is_absolute() else roots[0].path / path)
    if ".." in resolved.parts:  # only possible for a non-existing tail such as missing/../../x
        resolved = Path(os.path.normpath(resolved))
    inside = [r for r in roots if resolved.is_relative_to(r.path)]
    if not inside:
        allowed = ", ".join(str(r.path) for r in roots)
        raise ToolPermissionError(f"path {raw!r} resolves outside the allowed directories ({allowed})")
    root = max(inside, key=lambda r: len(r.path.parts))  # the most specific root decides
    if write and not root.writable:
        raise ToolPermissionError(f"path {raw!r} is read-only for this agent (under {root.path})")
    return resolved
