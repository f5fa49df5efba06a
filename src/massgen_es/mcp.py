"""MCP rules shared by config validation, the agent worker and the MCP broker (pure; no sessions).

- naming: ``mcp__<server>__<tool>`` (MassGen spec §3.2);
- tool filters that match bare and prefixed names alike (MassGen's silently miss prefixed ones, §3.2);
- server-command, environment and URL validation (MassGen spec §3.4);
- ``${VAR}`` substitution (the values are scrubbed from the log by :mod:`massgen_es.scrub`);
- tool-argument validation against the tool's input schema (MassGen spec §3.3, with looser limits);
- filesystem roots: traversal and symlink escapes are refused, read-only roots stay read-only (§3.5).

Only :func:`resolve_in_roots` (and :class:`Root`) touch the filesystem, to resolve paths; nothing does
network I/O (URL checks look at literal hosts only).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shlex
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard, cast
from urllib.parse import urlsplit

import jsonschema.exceptions
import jsonschema.validators
import msgspec
from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from massgen_es.errors import ConfigError, ToolArgumentError, ToolPermissionError

# ---------------------------------------------------------------- config (MassGen spec §3.1)


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class McpSecurityConfig(_Strict, frozen=True):
    """``security:`` of an MCP server (MassGen spec §3.4)."""

    level: Literal["strict", "moderate", "permissive"] = "strict"
    allowed_executables: tuple[str, ...] = ()
    """Executables allowed in addition to the level's list (basenames)."""
    allow_localhost: bool = True
    """For ``streamable-http``: allow loopback URLs (the usual place of a local server)."""
    allow_private_ips: bool = False


class CircuitBreakerConfig(_Strict, frozen=True):
    """Per-server circuit breaker (MassGen spec §3.3): open after ``max_failures`` consecutive failures,
    half-open after ``reset_time_seconds``."""

    max_failures: int = 3
    reset_time_seconds: float = 30.0


class McpServerConfig(_Strict, frozen=True):
    """One entry of ``backend.mcp_servers`` (MassGen spec §3.1). ``env`` and ``headers`` values may be
    literals or ``${VAR}`` references; neither form reaches the event log (literals go to the run's
    secret store)."""

    name: str
    type: Literal["stdio", "streamable-http"] = "stdio"
    command: str | tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    timeout: float = 30.0
    """Seconds per tool call."""
    retries: int = 3
    """Retries of a call that failed transiently (connection lost, timeout), with exponential backoff."""
    allowed_tools: tuple[str, ...] | None = None
    exclude_tools: tuple[str, ...] = ()
    security: McpSecurityConfig = McpSecurityConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()


class ToolFilters(Protocol):
    """A backend's MCP tool filters (``BackendConfig`` has them)."""

    @property
    def allowed_tools(self) -> tuple[str, ...] | None:
        """Only these tools (bare or prefixed names); None allows every tool."""
        ...

    @property
    def exclude_tools(self) -> tuple[str, ...]:
        """These tools (bare or prefixed names) are never offered."""
        ...


PREFIX = "mcp__"
MAX_ARGUMENT_CHARS = 100_000
MAX_ARGUMENT_DEPTH = 20

_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_METACHARS = re.compile(r"[&|;`$()<>\n\r\x00]")
_DOTDOT = re.compile(r"(?:^|[/\\=])\.\.(?:$|[/\\])")
_NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)

_LEVELS = ("strict", "moderate", "permissive")
# fmt: off
_EXECUTABLES = {
    "strict": frozenset({
        "python", "python3", "py", "uv", "uvx", "pipx", "pip", "pip3", "node", "npm", "npx", "yarn", "pnpm",
        "bun", "deno", "java", "ruby", "go", "cargo", "fastmcp", "sh", "bash", "zsh",
    }),
    "moderate": frozenset({"git", "nodejs"}),
    "permissive": frozenset({"curl", "wget"}),
}
_ALWAYS_DENIED_ENV = frozenset({
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "PYTHONPATH",
    "PYTHONSTARTUP", "NODE_OPTIONS",
})
_STRICT_DENIED_ENV = frozenset({"PATH", "HOME", "USER", "USERNAME", "SHELL"})
# fmt: on


# ---------------------------------------------------------------- naming and filters


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>``: how an MCP tool is offered to models (MassGen spec §3.2)."""
    return f"{PREFIX}{server}__{tool}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of a prefixed name (split on the first ``__`` after the prefix), or None when
    ``name`` is not an MCP tool name. Inverse of :func:`tool_name` (MassGen spec §3.2)."""
    if not name.startswith(PREFIX):
        return None
    server, sep, tool = name[len(PREFIX) :].partition("__")
    return (server, tool) if sep and server and tool else None


def _matches(entries: Iterable[str], server: str, tool: str) -> bool:
    return any(e in (tool, tool_name(server, tool)) for e in entries)


def tool_allowed(server: McpServerConfig, backend: ToolFilters, tool: str) -> bool:
    """Whether an agent may see and call ``tool`` (bare name) of ``server`` (MassGen spec §3.2).

    Excluded when the backend's or the server's ``exclude_tools`` lists it; otherwise the server's
    ``allowed_tools``, or else the backend's, must list it when set. An entry matches when it is the bare
    name or ``mcp__<this server>__<tool>`` (MassGen compares bare names only, so its documented prefixed
    entries never match); a prefixed entry for another server never matches.
    """
    if _matches(backend.exclude_tools, server.name, tool) or _matches(
        server.exclude_tools, server.name, tool
    ):
        return False
    allow = server.allowed_tools if server.allowed_tools is not None else backend.allowed_tools
    return allow is None or _matches(allow, server.name, tool)


# ---------------------------------------------------------------- server validation


def executable_and_args(cfg: McpServerConfig) -> tuple[str, list[str]]:
    """``(executable, args)`` of a ``stdio`` server: a string ``command`` is shlex-split and its extra
    tokens come before ``args``; ``("", args)`` when there is no command.

    Raises:
        ValueError: a string ``command`` has unbalanced quotes (``validate_server`` reports it).
    """
    tokens = shlex.split(cfg.command) if isinstance(cfg.command, str) else list(cfg.command or ())
    if not tokens:
        return "", list(cfg.args)
    return tokens[0], tokens[1:] + list(cfg.args)


def _executable_ok(cfg: McpServerConfig, executable: str) -> bool:
    level = _LEVELS.index(cfg.security.level)
    allowed = set[str]().union(*(_EXECUTABLES[lv] for lv in _LEVELS[: level + 1]))
    base = os.path.basename(executable)
    return (
        base in allowed
        or re.fullmatch(r"python3\.\d+", base) is not None
        or base in cfg.security.allowed_executables
        or executable in cfg.security.allowed_executables
    )


def validate_server(cfg: McpServerConfig, where: str) -> None:
    """Refuse a server config that could inject commands or reach what it should not (MassGen spec §3.4).

    ``where`` is the key path of the entry (e.g. ``agents[0].backend.mcp_servers[1]``).

    Raises:
        ConfigError: the message names the offending key under ``where`` and how to fix it.
    """
    if not _SERVER_NAME.match(cfg.name):
        raise ConfigError(f"`{where}.name` {cfg.name!r} must be 1-100 letters, digits, '_' or '-'")
    if cfg.type == "stdio":
        _validate_stdio(cfg, where)
    else:
        _validate_url(cfg, where)
    if cfg.cwd is not None and _DOTDOT.search(cfg.cwd):
        raise ConfigError(
            f"`{where}.cwd` {cfg.cwd!r} contains a `..` path component; use a path without `..`"
        )
    for key in cfg.env:
        if not _ENV_KEY.match(key):
            raise ConfigError(
                f"`{where}.env.{key}` is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        strict_only = key.upper() in _STRICT_DENIED_ENV
        if key.upper() in _ALWAYS_DENIED_ENV or (strict_only and cfg.security.level == "strict"):
            raise ConfigError(
                f"`{where}.env.{key}` may not be set for an MCP server (it changes what the process loads or "
                "runs as); remove it" + (", or set `security.level: moderate`" if strict_only else "")
            )
    if not 0 < cfg.timeout <= 300:
        raise ConfigError(f"`{where}.timeout` must be in (0, 300] seconds (got {cfg.timeout})")
    if not 0 <= cfg.retries <= 10:
        raise ConfigError(f"`{where}.retries` must be between 0 and 10 (got {cfg.retries})")
    if cfg.circuit_breaker.max_failures < 1:
        raise ConfigError(f"`{where}.circuit_breaker.max_failures` must be >= 1")
    if not cfg.circuit_breaker.reset_time_seconds > 0:
        raise ConfigError(f"`{where}.circuit_breaker.reset_time_seconds` must be > 0")


def _validate_stdio(cfg: McpServerConfig, where: str) -> None:
    if cfg.url is not None or cfg.headers:
        raise ConfigError(
            f"`{where}`: `url`/`headers` are for type streamable-http; remove them or change `type`"
        )
    if isinstance(cfg.command, str) and re.search(r"[\n\r]", cfg.command):
        raise ConfigError(f"`{where}.command` contains a newline; give one command")
    try:
        executable, args = executable_and_args(cfg)
    except ValueError as exc:
        raise ConfigError(
            f"`{where}.command` cannot be split ({exc}); balance its quotes or use a list"
        ) from None
    if not executable:
        raise ConfigError(f"`{where}.command` is required for a stdio server (e.g. `npx` or `python`)")
    if len(args) > 50:
        raise ConfigError(
            f"`{where}.args` has {len(args)} entries (with the command's own); at most 50 are allowed"
        )
    from_command = len(args) - len(cfg.args) + 1  # tokens that came from `command`
    for i, token in enumerate([executable, *args]):
        key = f"{where}.command" if i < from_command else f"{where}.args"
        if len(token) > 500:
            raise ConfigError(f"`{key}` has an entry over 500 characters; shorten it")
        # ${VAR} in arguments is substituted by the broker; in the executable it would stay literal.
        if _METACHARS.search(token if i == 0 else _VAR.sub("", token)):
            raise ConfigError(
                f"`{key}` entry {token!r} contains a shell metacharacter (& | ; ` $ ( ) < > or a newline); "
                "MCP servers are started without a shell, so give the program and each argument separately"
            )
        if i < from_command and _DOTDOT.search(token):  # as MassGen (spec §3.4): `command`, not `args`
            raise ConfigError(
                f"`{key}` entry {token!r} contains a `..` path component; use a path without `..`"
            )
    if not _executable_ok(cfg, executable):
        raise ConfigError(
            f"`{where}.command`: executable {os.path.basename(executable)!r} is not allowed at security "
            f"level {cfg.security.level!r}; add it to `{where}.security.allowed_executables` if you trust it"
        )


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return None
        try:  # forms the resolver also accepts: 2130706433, 0x7f.1, 127.1
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _validate_url(cfg: McpServerConfig, where: str) -> None:
    key = f"{where}.url"
    if cfg.command is not None or cfg.args:
        raise ConfigError(f"`{where}`: `command`/`args` are for type stdio; remove them or change `type`")
    if not cfg.url:
        raise ConfigError(f"`{key}` is required for a streamable-http server (e.g. https://host/mcp)")
    if len(cfg.url) > 2048:
        raise ConfigError(f"`{key}` is over 2048 characters")
    try:
        parts = urlsplit(cfg.url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"`{key}` {cfg.url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"`{key}` {cfg.url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"`{key}` holds credentials, which would be logged; move them to `{where}.headers`")
    host = parts.hostname.rstrip(".")
    ip = _literal_ip(host)
    # 0.0.0.0 / :: reach this machine too.
    if (
        host == "localhost"
        or host.endswith(".localhost")
        or (ip is not None and (ip.is_loopback or ip.is_unspecified))
    ):
        if not cfg.security.allow_localhost:
            raise ConfigError(f"`{key}` points to this machine; set `{where}.security.allow_localhost: true`")
    elif ip is not None and (not ip.is_global or ip.is_multicast) and not cfg.security.allow_private_ips:
        raise ConfigError(
            f"`{key}` points to the private/link-local/reserved address {ip}; "
            f"set `{where}.security.allow_private_ips: true` if you trust it"
        )


# ---------------------------------------------------------------- secrets


def substitute(value: str, env: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` in ``value`` by ``env[NAME]`` (MassGen spec §3.1).

    Raises:
        ConfigError: a referenced variable is not set.
    """

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise ConfigError(f"environment variable {m.group(1)} is not set; export it for the MCP broker")
        return env[m.group(1)]

    return _VAR.sub(one, value)


def _is_dict(value: object) -> TypeGuard[dict[Any, Any]]:
    return isinstance(value, dict)


def _is_object(value: object) -> TypeGuard[dict[str, Any]]:
    """A parsed JSON object (its keys are strings)."""
    return isinstance(value, dict)


def _is_list(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


# ---------------------------------------------------------------- arguments


def _too_deep(obj: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if _is_dict(node) else node if _is_list(node) else None
        if children is not None:
            if depth + 1 > limit:
                return True
            stack.extend((c, depth + 1) for c in children)
    return False


def _json_path(path: Iterable[Any]) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if re.fullmatch(r"[A-Za-z_]\w*", p) else f"[{p!r}]"
    return out


# typeshed's jsonschema stub leaves best_match's return type out: it is the most relevant error, or None.
_best_match = cast(
    Callable[[Iterable[ValidationError]], "ValidationError | None"],
    jsonschema.exceptions.best_match,  # pyright: ignore[reportUnknownMemberType]  (the stub's missing return type)
)


def _reject_constant(name: str) -> Any:
    raise ToolArgumentError(f"tool arguments contain {name}, which is not JSON")


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """The checked validator of a tool's input schema (given as canonical JSON: a tool's schema is the
    same on every call, and checking a schema costs ten times validating against it), None when the
    schema itself is invalid."""
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError:
        return None
    return cls(schema)


def check_arguments(arguments_json: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a model's raw tool arguments and validate them against the tool's input schema.

    An empty string means ``{}``. Limits: at most 100 000 characters and 20 levels of nesting (MassGen
    spec §3.3 uses 10 000 and 5, too strict for real tools). A schema that is itself invalid or has
    unresolvable references is not held against the model: the arguments then only need to be an object
    (the server still validates them).

    Returns:
        The arguments as a dict.

    Raises:
        ToolArgumentError: invalid JSON, not an object, too large or deep, or not matching ``schema``; the
            message says what and where (e.g. ``invalid arguments for tool: 'path' is a required property
            (at $)``) so the model can correct its call.
    """
    if len(arguments_json) > MAX_ARGUMENT_CHARS:
        raise ToolArgumentError(f"tool arguments are over {MAX_ARGUMENT_CHARS} characters; send less")
    try:
        args = json.loads(arguments_json or "{}", parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"tool arguments are not valid JSON: {exc}") from None
    except RecursionError:
        raise ToolArgumentError(
            f"tool arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels"
        ) from None
    if not _is_object(args):
        raise ToolArgumentError(f"tool arguments must be a JSON object, not {type(args).__name__}")
    if _too_deep(args, MAX_ARGUMENT_DEPTH):
        raise ToolArgumentError(f"tool arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels")
    validator = _validator(json.dumps(schema, sort_keys=True))
    if validator is None:
        return args
    try:
        error = _best_match(validator.iter_errors(args))
    except Unresolvable:
        return args
    if error is not None:
        message = error.message if len(error.message) <= 500 else error.message[:497] + "..."
        raise ToolArgumentError(
            f"invalid arguments for tool: {message} (at {_json_path(error.absolute_path)})"
        )
    return args


# ---------------------------------------------------------------- filesystem roots


@dataclass(frozen=True)
class Root:
    """A directory (or single file) an agent's filesystem tools may reach (MassGen spec §3.5).

    ``path`` is made absolute and resolved (symlinks followed) on construction, so containment checks
    compare real paths.
    """

    path: Path
    writable: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.path.realpath(self.path)))


# fmt: off
FILESYSTEM_READ_TOOLS = frozenset({
    "read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory",
    "list_directory_with_sizes", "directory_tree", "search_files", "get_file_info",
    "list_allowed_directories",
})
# fmt: on
"""Tools of ``@modelcontextprotocol/server-filesystem`` that only read."""

FILESYSTEM_WRITE_TOOLS = frozenset({"write_file", "edit_file", "create_directory", "move_file"})
"""Tools of ``@modelcontextprotocol/server-filesystem`` that change files."""

_PATH_KEYS = ("path", "source", "destination")


def path_arguments(tool: str, arguments: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``[(raw path, needs write), ...]`` for each path a ``server-filesystem`` tool call names: ``path``,
    each entry of ``paths``, and ``source``/``destination`` (``move_file``: both need write).

    A tool not known to only read (see ``FILESYSTEM_READ_TOOLS``) needs write, so a tool added by a newer
    server version cannot modify read-only roots (MassGen spec §3.5).

    Raises:
        ToolArgumentError: a path argument is not a string (or ``paths`` not a list of strings).
    """
    write = tool not in FILESYSTEM_READ_TOOLS
    out: list[tuple[str, bool]] = []
    for key in _PATH_KEYS:
        if key in arguments:
            if not isinstance(arguments[key], str):
                raise ToolArgumentError(f"invalid arguments for tool: `{key}` must be a string")
            out.append((arguments[key], write))
    if "paths" in arguments:
        paths = arguments["paths"]
        if not _is_list(paths) or not all(isinstance(p, str) for p in paths):
            raise ToolArgumentError("invalid arguments for tool: `paths` must be a list of strings")
        out.extend((p, write) for p in paths)
    return out


def resolve_in_roots(raw: str, roots: Sequence[Root], *, write: bool) -> Path:
    """Resolve ``raw`` and check that it stays inside a root (MassGen spec §3.5).

    Relative paths are taken relative to the first root. Symlinks are followed (``os.path.realpath``,
    which also follows dangling links and keeps a not-yet-existing tail), so a link inside a root that
    points outside is refused. The most specific containing root decides whether writing is allowed.
    ``~`` is refused rather than expanded (the filesystem server would expand it to the broker's home).

    Returns:
        The resolved absolute path.

    Raises:
        ToolPermissionError: no roots, ``~``, a NUL byte, a path outside every root, or a write under a
            read-only root.
    """
    if not roots:
        raise ToolPermissionError(f"path {raw!r}: no directories are shared with this agent")
    if raw.startswith("~"):
        raise ToolPermissionError(f"path {raw!r}: `~` is not expanded; use a path inside {roots[0].path}")
    if "\x00" in raw:
        raise ToolPermissionError(f"path {raw!r} contains a NUL byte")
    path = Path(raw)
    resolved = Path(os.path.realpath(path if path.is_absolute() else roots[0].path / path))
    inside = [r for r in roots if resolved.is_relative_to(r.path)]
    if not inside:
        allowed = ", ".join(str(r.path) for r in roots)
        raise ToolPermissionError(
            f"path {raw!r} resolves outside the allowed directories ({resolved} is not under {allowed}); "
            "use a path inside one of them"
        )
    # Most specific root decides; on a tie the read-only one wins.
    root = max(inside, key=lambda r: (len(r.path.parts), not r.writable))
    if write and not root.writable:
        writable = ", ".join(str(r.path) for r in roots if r.writable) or "none"
        raise ToolPermissionError(
            f"path {raw!r} is read-only for this agent (under {root.path}); "
            f"write inside a writable directory ({writable})"
        )
    return resolved


def confine_paths(tool: str, arguments: Mapping[str, Any], roots: Sequence[Root]) -> dict[str, Any]:
    """Check every path of a ``server-filesystem`` call and return the arguments with each path replaced
    by its resolved absolute form, so the server acts on exactly the path that was checked (no gap
    between our check and a second resolution by the server).

    Raises:
        ToolArgumentError, ToolPermissionError: as :func:`path_arguments` and :func:`resolve_in_roots`.
    """
    write = dict(path_arguments(tool, arguments))  # raw path -> needs write
    out = dict(arguments)
    for key in _PATH_KEYS:
        if key in out:
            out[key] = str(resolve_in_roots(out[key], roots, write=write[out[key]]))
    if "paths" in out:
        out["paths"] = [str(resolve_in_roots(p, roots, write=write[p])) for p in out["paths"]]
    return out


# fmt: off
WORKSPACE_TOOLS_PATHS: dict[str, tuple[tuple[str, bool], ...]] = {
    "copy_file": (("source_path", False), ("destination_path", True)),
    "copy_files_batch": (("source_base_path", False), ("destination_base_path", True)),
    "delete_file": (("path", True),),
    "delete_files_batch": (("base_path", True),),
    "compare_directories": (("dir1", False), ("dir2", False)),
    "compare_files": (("file1", False), ("file2", False)),
}
# fmt: on
"""Path arguments of each ``workspace_tools`` tool (MassGen's names, spec §3.5) and whether each needs write."""

WORKSPACE_DELETE_TOOLS = frozenset({"delete_file", "delete_files_batch"})
"""``workspace_tools`` tools that delete: read-before-delete applies (MassGen spec §3.5)."""


def confine_workspace_paths(tool: str, arguments: Mapping[str, Any], roots: Sequence[Root]) -> dict[str, Any]:
    """:func:`confine_paths` for a ``workspace_tools`` call: each path argument of
    :data:`WORKSPACE_TOOLS_PATHS` checked against ``roots`` and replaced by its resolved form (an empty
    destination means the workspace, the first root, as in MassGen).

    Raises:
        ToolArgumentError: a path argument is not a string.
        ToolPermissionError: as :func:`resolve_in_roots`.
    """
    out = dict(arguments)
    for key, write in WORKSPACE_TOOLS_PATHS.get(tool, ()):
        if key in out:
            if not isinstance(out[key], str):
                raise ToolArgumentError(f"invalid arguments for tool: `{key}` must be a string")
            out[key] = str(resolve_in_roots(out[key], roots, write=write))
    return out


def check_not_protected(path: Path, protected: Sequence[Path], *, deleting: bool) -> None:
    """Refuse to change a protected path (a context path's ``protected_paths``, MassGen spec §3.5: never
    deleted or overwritten): ``path`` (resolved) may not be one or lie inside one, and, when
    ``deleting``, may not contain one.

    Raises:
        ToolPermissionError: naming the protected path and what to do instead.
    """
    for p in protected:
        if path.is_relative_to(p) or (deleting and p.is_relative_to(path)):
            raise ToolPermissionError(
                f"path {str(path)!r} is protected ({p} is listed in a context path's protected_paths): it can "
                "never be deleted or overwritten; leave it as it is, or write to another path"
            )


def check_protected_writes(
    filesystem: bool, tool: str, arguments: Mapping[str, Any], protected: Sequence[Path]
) -> None:
    """Refuse a call that would overwrite or delete a protected path (:func:`check_not_protected`):
    the write paths of a ``server-filesystem`` call (``filesystem``) or of a ``workspace_tools`` call,
    both already resolved (:func:`confine_paths`, :func:`confine_workspace_paths`). ``move_file``'s
    source and ``delete_file``'s path may not contain one either; ``delete_files_batch`` is left to the
    server, which skips protected files and deletes the rest (MassGen spec §3.5).

    Raises:
        ToolPermissionError: as :func:`check_not_protected`.
    """
    if not protected:
        return
    if filesystem:
        if tool in FILESYSTEM_READ_TOOLS:
            return
        writes = [(k, arguments[k]) for k in _PATH_KEYS if k in arguments]
        writes += [("paths", p) for p in arguments.get("paths") or ()]
    else:
        writes = [(k, arguments[k]) for k, write in WORKSPACE_TOOLS_PATHS.get(tool, ()) if write and k in arguments]
    for key, value in writes:
        deleting = (tool, key) in (("move_file", "source"), ("delete_file", "path"))
        check_not_protected(Path(value), protected, deleting=deleting)
