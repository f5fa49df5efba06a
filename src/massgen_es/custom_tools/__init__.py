"""MassGen's ``custom_tools`` (MassGen spec §2.5): Python functions offered to a model as tools.

A backend's ``custom_tools`` entries are resolved once, when the config is loaded
(:func:`resolve`): each function becomes a :class:`CustomToolSpec` named ``custom_tool__<name>``, its
JSON schema read from the file's source without running it (:mod:`massgen_es.custom_tools.schema`),
the file's text carried along so that an executor on another machine can run it. The agent worker
offers the specs; the executor runs a call in the agent's sandbox (:mod:`massgen_es.custom_tools.runner`).

A function without ``path``, or with a ``path`` under MassGen's ``massgen/tool/``, names one of MassGen's
bundled tools: those we ship are ours (:data:`SHIPPED`: the basic ones, the crawl4ai client, the GitHub
issue analyzer), the multimodal ones are run by the agent worker (:mod:`massgen_es.custom_tools.bundled`:
they call OpenAI models, and only the worker holds provider keys), so are the computer-use ones
(:mod:`massgen_es.custom_tools.automation`), the others are refused with the reason
(:data:`UNSUPPORTED`).

Network rule: a custom tool runs in the agent's sandbox, which has no network by default. A shipped tool
that exists to reach a server (crawl4ai, GitHub) is marked ``network``: in local mode its call gets the
host's network (our code, talking to the URL its variable names); in Docker mode it uses the container's
network, and a container without one (``command_line_docker_network_mode: none``) refuses the call naming
the fix. A user's tool follows the agent's settings (``command_line_local_network``,
``command_line_docker_network_mode``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from massgen_es.custom_tools import automation, bundled, schema
from massgen_es.errors import ConfigError

PREFIX = "custom_tool__"
"""Every custom tool's name starts with it (MassGen's ``custom_tool__<name>``)."""
MAX_SOURCE_BYTES = 48_000
"""A tool file travels in the run's events and in the sandbox's command line: at most this many bytes
(UTF-8), which leaves room for the arguments within one process argument (``runner.MAX_ARGV_BYTES``)."""
MAX_TOTAL_SOURCE_BYTES = 96_000
"""The tool files of one agent together: they ride in every ``turn.requested`` of the agent."""
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,50}$")

BASIC = Path(__file__).with_name("basic.py")
WEB = Path(__file__).with_name("crawl4ai.py")
GITHUB = Path(__file__).with_name("github_issues.py")


@dataclass(frozen=True)
class Shipped:
    """One of MassGen's bundled functions that we ship.

    Attributes:
        file: our file that defines it (standard library only: it runs in the agent's sandbox).
        massgen_path: MassGen's file of the function (a config may name it as ``path``), or None when no
            MassGen file defines it (``wrong_two_num_tool`` is named only by MassGen's broken-tool examples).
        network: the tool exists to reach a server: see the network rule in the module docstring.
        env: variables of the executor's environment handed to the call (a server's URL, an optional
            token), never through the event log or the command line.
    """

    file: Path
    massgen_path: str | None
    network: bool = False
    env: tuple[str, ...] = ()


_CRAWL4AI = "massgen/tool/_web_tools/crawl4ai_tool.py"
CRAWL4AI_TOOLS = ("crawl4ai_md", "crawl4ai_html", "crawl4ai_screenshot", "crawl4ai_pdf", "crawl4ai_execute_js",
                  "crawl4ai_crawl")
SHIPPED: Mapping[str, Shipped] = {
    "two_num_tool": Shipped(BASIC, "massgen/tool/_basic/_two_num_tool.py"),
    "wrong_two_num_tool": Shipped(BASIC, None),
    **{name: Shipped(WEB, _CRAWL4AI, network=True, env=("CRAWL4AI_BASE_URL",)) for name in CRAWL4AI_TOOLS},
    "fetch_github_issues": Shipped(GITHUB, "massgen/tool/_self_evolution/_github_issue_analyzer.py", network=True,
                                   env=("GITHUB_API_URL", "GITHUB_TOKEN")),
}
"""MassGen's bundled functions we ship, by name."""
AUTO_DISCOVERED = ("two_num_tool",)
"""What ``auto_discover_custom_tools`` adds: the working bundled tools this system ships."""

UNSUPPORTED: Mapping[str, str] = {
    "agentscope_lesson_planner": "an AgentScope agent (interop)",
}
"""MassGen's bundled tools (``massgen/tool/...``) that this system does not provide: a config naming one
is refused at load with what the tool does."""


class CustomToolSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One resolved custom tool: what the worker offers and the executor runs."""

    name: str
    """The tool's name as the model sees it: ``custom_tool__<name>``."""
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments the model passes (without ``preset_args`` and ``agent_cwd``)."""
    function: str
    """The function in the file."""
    path: str
    """Where the file came from (for messages and tracebacks): the config's path, or ours for bundled tools."""
    source: str
    """The file's text, run in the agent's sandbox; empty when an earlier tool of the same backend comes
    from the same file (the text travels once: :func:`source_of`)."""
    preset_args: dict[str, Any] = {}
    """Always passed, hidden from the model (MassGen's ``preset_args``)."""
    category: str | None = None
    runs_in: Literal["executor", "agent_worker"] = "executor"
    """Where a call runs: the executor, in the agent's sandbox; or the agent worker, for MassGen's bundled
    multimodal and computer-use tools (``function`` names their entry in
    :data:`massgen_es.custom_tools.bundled.TOOLS` or :data:`massgen_es.custom_tools.automation.TOOLS`;
    ``source`` is empty)."""
    network: bool = False
    """A shipped tool that reaches a server (:attr:`Shipped.network`)."""
    env: tuple[str, ...] = ()
    """Names of the executor's environment variables the call gets (:attr:`Shipped.env`)."""


@dataclass(frozen=True)
class Entry:
    """One ``custom_tools`` entry with its str-or-list forms normalised to lists (one per function)."""

    names: Sequence[str]
    functions: Sequence[str]
    descriptions: Sequence[str | None]
    preset_args: Sequence[Mapping[str, Any]]
    path: str | None
    category: str | None


def resolve(
    entries: Sequence[Entry], auto_discover: bool, exclude: Sequence[str], where: str, origin: str
) -> tuple[CustomToolSpec, ...]:
    """The tools of a backend's ``custom_tools`` (``where`` is the backend's key path, e.g.
    ``agents[0].backend``), plus the shipped ones when ``auto_discover``, minus those ``exclude`` names.

    Raises:
        ConfigError: naming the key (``agents[0].backend.custom_tools[1].function``) and the fix.
    """
    out: dict[str, tuple[str, CustomToolSpec]] = {}
    for i, e in enumerate(entries):
        at = f"{where}.custom_tools[{i}]"
        for j, function in enumerate(e.functions):
            spec = _one(e, j, function, at, origin)
            if spec.name in out:
                raise ConfigError(
                    f"{origin}: `{at}.name`: the tool `{spec.name}` is already declared by `{out[spec.name][0]}`; "
                    "give one of them another `name`")
            out[spec.name] = (at, spec)
    if auto_discover:
        for function in AUTO_DISCOVERED:
            if PREFIX + function not in out:
                out[PREFIX + function] = (f"{where}.auto_discover_custom_tools", _from_file(
                    SHIPPED[function].file, _read(SHIPPED[function].file), function, function, None, {}, "basic", "",
                    origin))
    dropped = set(exclude)
    kept = [s for _, s in out.values() if not ({s.name, s.name.removeprefix(PREFIX), s.function} & dropped)]
    carried: set[str] = set()
    for i, s in enumerate(kept):
        if s.path in carried:
            kept[i] = msgspec.structs.replace(s, source="")
        carried.add(s.path)
    if sum(len(s.source.encode()) for s in kept) > MAX_TOTAL_SOURCE_BYTES:
        raise ConfigError(f"{origin}: `{where}.custom_tools`: the tool files of this agent are over "
                          f"{MAX_TOTAL_SOURCE_BYTES // 1000} kB together, the most that travels with a run; "
                          "offer fewer or smaller files")
    return tuple(kept)


def source_of(specs: Sequence[CustomToolSpec], spec: CustomToolSpec) -> str:
    """The text of ``spec``'s file (carried by the first tool of ``specs`` from that file)."""
    return spec.source or next((s.source for s in specs if s.path == spec.path and s.source), "")


def _one(e: Entry, j: int, function: str, at: str, origin: str) -> CustomToolSpec:
    fkey = f"{at}.function" + (f"[{j}]" if len(e.functions) > 1 else "")
    name = e.names[j] if j < len(e.names) else function
    if not _NAME.match(name):
        raise ConfigError(f"{origin}: `{at}.name`: {name!r} is not a valid tool name; use letters, digits, `_` "
                          "and `-` (at most 50)")
    in_massgen = e.path is None or _massgen_path(e.path)
    if in_massgen and function in automation.TOOLS:
        return _automation_tool(e, j, function, name, at, origin)
    if in_massgen:
        if function in bundled.TOOLS:
            return _worker_tool(function, name, e.descriptions[j], e.preset_args[j], e.path, at, origin, e.category)
        refused = UNSUPPORTED.get(function)
        if refused is not None:
            raise ConfigError(
                f"{origin}: `{fkey}`: `{function}` is one of MassGen's bundled tools ({refused}), which this system "
                f"does not support; remove this entry from `{at.rsplit('.', 1)[0]}`")
        ours = SHIPPED.get(function)
        if ours is None or (e.path is not None and ours.massgen_path not in (None, _normal(e.path))):
            shipped = ", ".join(SHIPPED)
            raise ConfigError(
                f"{origin}: `{fkey}`: " + (f"no `path` is given, so `{function}` must be one of MassGen's bundled "
                                           if e.path is None else
                                           f"`{e.path}` is a MassGen bundled file, and `{function}` is not one of the ")
                + f"tools this system ships ({shipped}); set `{at}.path` to the Python file that defines it")
        spec = _from_file(ours.file, _read(ours.file), function, name, e.descriptions[j], e.preset_args[j], at, fkey,
                          origin, e.category)
        return msgspec.structs.replace(spec, network=ours.network, env=ours.env)
    assert e.path is not None
    file = Path(e.path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{origin}: `{at}.path`: the file {e.path!r} does not exist; give the path of the Python "
                          "file that defines the function (relative paths start from the current directory)")
    return _from_file(file, _read(file, f"{at}.path", origin), function, name, e.descriptions[j], e.preset_args[j],
                      at, fkey, origin, e.category)


def _automation_tool(e: Entry, j: int, function: str, name: str, at: str, origin: str) -> CustomToolSpec:
    preset = dict(e.preset_args[j])
    problem = automation.preset_problem(function, preset)
    if problem:
        key, why = problem.split(": ", 1)
        raise ConfigError(f"{origin}: `{at}.preset_args.{key}`: {why}")
    doc, _ = automation.TOOLS[function]
    return CustomToolSpec(
        name=PREFIX + name, description=e.descriptions[j] or doc, parameters=automation.schema(function, set(preset)),
        function=function, path=f"massgen/tool/{function}", source="", preset_args=preset, category=e.category,
        runs_in="agent_worker")


def _from_file(
    file: Path, source: str, function: str, name: str, description: str | None, preset: Mapping[str, Any],
    at: str, fkey: str, origin: str, category: str | None = None,
) -> CustomToolSpec:
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise ConfigError(f"{origin}: `{at}.path`: {file} is over {MAX_SOURCE_BYTES // 1000} kB, the most a tool "
                          "file may have here (it travels with the run); move the tool into a smaller file")
    try:
        tree = ast.parse(source, str(file))
    except SyntaxError as exc:
        raise ConfigError(f"{origin}: `{at}.path`: {file} is not valid Python ({exc.msg}, line {exc.lineno}); "
                          "fix the file") from None
    fn = schema.find_function(tree, function)
    if fn is None:
        raise ConfigError(f"{origin}: `{fkey}`: {file} defines no top-level function `{function}`; name a function "
                          "defined in that file (`def` or `async def` at module level)")
    accepted, any_keyword = schema.parameter_names(fn)
    for key in preset:
        if key not in accepted and not any_keyword:
            raise ConfigError(f"{origin}: `{at}.preset_args.{key}`: `{function}` has no parameter `{key}`; "
                              f"its parameters are: {', '.join(accepted) or 'none'}")
    doc, parameters = schema.tool_schema(fn, set(preset))
    return CustomToolSpec(
        name=PREFIX + name, description=description or doc or f"Custom tool {function}.", parameters=parameters,
        function=function, path=str(file), source=source, preset_args=dict(preset), category=category)


def _worker_tool(
    function: str, name: str, description: str | None, preset: Mapping[str, Any], path: str | None, at: str,
    origin: str, category: str | None,
) -> CustomToolSpec:
    """A spec for one of :data:`bundled.TOOLS`: MassGen's parameters without the ``preset_args``."""
    tool = bundled.TOOLS[function]
    properties: dict[str, Any] = tool.parameters["properties"]
    for key in preset:
        if key not in properties:
            raise ConfigError(f"{origin}: `{at}.preset_args.{key}`: `{function}` has no parameter `{key}`; "
                              f"its parameters are: {', '.join(properties)}")
    parameters = {**tool.parameters, "properties": {k: v for k, v in properties.items() if k not in preset},
                  "required": [k for k in tool.parameters["required"] if k not in preset]}
    return CustomToolSpec(
        name=PREFIX + name, description=description or tool.description, parameters=parameters, function=function,
        path=path or f"massgen/tool/_multimodal_tools/{function}.py", source="", preset_args=dict(preset),
        category=category, runs_in="agent_worker")


def _read(file: Path, key: str = "", origin: str = "") -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{origin}: `{key}`: cannot read {file} ({exc}); give a readable UTF-8 Python file") from None


def _normal(path: str) -> str:
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _massgen_path(path: str) -> bool:
    """Whether ``path`` points into MassGen's own package (``massgen/tool/...``): one of its bundled tools."""
    return _normal(path).startswith("massgen/tool/")
