"""MassGen's ``type: ag2`` backend blocks (MassGen spec §2.1/§2.2, ``adapters/ag2_adapter.py``): their
shape, checked at load, and what the rest of the system needs to know about them.

An ``ag2`` backend holds exactly one of

- ``agent_config``: one AG2 agent ``{type: assistant|conversable, name, system_message?, llm_config,
  code_execution_config?}``;
- ``group_config``: an AG2 group chat ``{llm_config (default of every agent), agents: [agent...],
  pattern: {type: auto|round_robin, initial_agent, group_manager_args?: {llm_config?}}, max_rounds?,
  user_agent?}``.

``llm_config`` is AG2's: one entry (a mapping) or a list of entries, each ``{api_type, model, ...}``
with ``api_type`` one of :data:`API_TYPES`. An entry's endpoint and key default to those of the backend
type of ours that serves the same provider (``base_url`` / ``api_key: ${NAME}`` in the entry override
them); a literal ``api_key`` is refused (it would enter the event log).

``code_execution_config.executor.type`` (:data:`CODE_EXECUTORS`) does not run code in the agent worker:
the worker hands every code block to the executor service (``execution.requested``), in the agent's
sandbox; ``DockerCommandLineCodeExecutor`` means ``command_line_execution_mode: docker``. The executor's
``timeout`` is each block's limit; its ``work_dir`` is not used (code runs in the agent's workspace).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard, cast

from massgen_es.errors import ConfigError

TYPES = ("ag2", "autogen")
"""Backend types served by AG2 (MassGen accepts both names)."""
API_TYPES = {"openai": "openai", "anthropic": "claude", "google": "gemini"}
"""AG2 ``api_type`` → our backend type whose endpoint and API-key variable it uses."""
CODE_EXECUTORS = {"LocalCommandLineCodeExecutor": None, "DockerCommandLineCodeExecutor": "docker"}
"""AG2 code executor types we route to the executor service, with the sandbox mode each asks for
(None: the backend's ``command_line_execution_mode``)."""
AGENT_TYPES = ("assistant", "conversable")
PATTERNS = ("auto", "round_robin")
DEFAULT_MAX_ROUNDS = 20
"""MassGen's ``DEFAULT_MAX_ROUNDS`` of a group chat."""
EXTRA = "services/agent_worker[ag2]"
"""The optional dependency set that installs AG2 in the agent worker."""

_ENV_REF = re.compile(r"^\$\{(\w+)\}$")
_AGENT_KEYS = frozenset({"type", "name", "system_message", "description", "llm_config", "code_execution_config"})
_ENTRY_KEYS = frozenset({"api_type", "model", "base_url", "api_key", "temperature", "top_p", "max_tokens",
                         "cache_seed", "timeout", "seed", "price"})


def _is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping)


def _fail(origin: str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{origin}: `{where}` {problem}")


def _items(value: object) -> list[object]:
    """The elements of a list (YAML sequence), else []."""
    return list(cast(list[object], value)) if isinstance(value, list) else []


def llm_entries(llm_config: object) -> list[Mapping[str, Any]]:
    """The entries of an AG2 ``llm_config`` (a mapping, or a list of mappings); [] for anything else."""
    if _is_map(llm_config):
        return [llm_config]
    return [e for e in _items(llm_config) if _is_map(e)]


def agent_configs(backend: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every AG2 agent block of an ``ag2`` backend (its ``agent_config``, or the group's agents and
    ``user_agent``)."""
    single = backend.get("agent_config")
    if _is_map(single):
        yield single
    group = backend.get("group_config")
    if _is_map(group):
        for agent in _items(group.get("agents")):
            if _is_map(agent):
                yield agent
        if _is_map(group.get("user_agent")):
            yield group["user_agent"]


def executor_of(agent: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``code_execution_config.executor`` block of an AG2 agent, or None (no code execution)."""
    cec = agent.get("code_execution_config")
    executor = cec.get("executor") if _is_map(cec) else None
    return executor if _is_map(executor) else None


def executes_code(backend: Mapping[str, Any]) -> bool:
    """Whether an ``ag2`` backend block has an agent with a code executor (the executor service then
    runs its code blocks)."""
    return backend.get("type") in TYPES and any(executor_of(a) is not None for a in agent_configs(backend))


def sandbox_mode(backend: Mapping[str, Any]) -> str | None:
    """``docker`` when an agent of ``backend`` asks for ``DockerCommandLineCodeExecutor``, else None."""
    for agent in agent_configs(backend):
        executor = executor_of(agent)
        if executor is not None and CODE_EXECUTORS.get(str(executor.get("type"))):
            return CODE_EXECUTORS[str(executor["type"])]
    return None


def check(backend: Mapping[str, Any], where: str, origin: str) -> None:
    """Check an ``ag2`` backend block (see the module docstring).

    Raises:
        ConfigError: naming the key path and the fix.
    """
    single, group = backend.get("agent_config"), backend.get("group_config")
    if (single is None) == (group is None):
        raise _fail(origin, where, "needs exactly one of `agent_config` (one AG2 agent) or `group_config` "
                    "(an AG2 group chat)")
    for key in ("mcp_servers", "cwd", "custom_tools", "upload_files"):
        if backend.get(key):
            raise _fail(origin, f"{where}.{key}", "is not supported with backend type ag2 here: its AG2 agents "
                        "get the workflow tools and code execution only; remove it or use another backend type")
    if single is not None:
        _check_agent(single, f"{where}.agent_config", origin, default_llm=None)
    else:
        _check_group(group, f"{where}.group_config", origin)


def _check_group(group: object, at: str, origin: str) -> None:
    if not _is_map(group):
        raise _fail(origin, at, "must be a mapping with `llm_config`, `agents` and `pattern`")
    if "llm_config" not in group:
        raise _fail(origin, f"{at}.llm_config", "is missing: a group chat needs a default llm_config for its agents")
    _check_llm(group["llm_config"], f"{at}.llm_config", origin)
    agents = _items(group.get("agents"))
    if not agents:
        raise _fail(origin, f"{at}.agents", "must be a non-empty list of AG2 agents")
    names: list[str] = []
    for i, agent in enumerate(agents):
        names.append(_check_agent(agent, f"{at}.agents[{i}]", origin, default_llm=group["llm_config"]))
    if len(set(names)) != len(names) or "User" in names:
        raise _fail(origin, f"{at}.agents", "needs unique agent names, none of them `User` (the name of the "
                    "group's user agent, which takes the workflow decision)")
    if group.get("user_agent") is not None:
        name = _check_agent(group["user_agent"], f"{at}.user_agent", origin, default_llm=group["llm_config"])
        if name != "User":
            raise _fail(origin, f"{at}.user_agent.name", "must be `User` (MassGen's group chat ends when User "
                        "takes its workflow decision)")
    _check_pattern(group.get("pattern"), names, at, origin)
    rounds = group.get("max_rounds", DEFAULT_MAX_ROUNDS)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise _fail(origin, f"{at}.max_rounds", "must be a whole number >= 1")
    extra = set(group) - {"llm_config", "agents", "pattern", "max_rounds", "user_agent"}
    if extra:
        raise _fail(origin, f"{at}.{sorted(extra)[0]}", "is not a group_config key (llm_config, agents, pattern, "
                    "max_rounds, user_agent)")


def _check_pattern(pattern: object, names: list[str], at: str, origin: str) -> None:
    if not _is_map(pattern):
        raise _fail(origin, f"{at}.pattern", "is missing: give `{type: auto, initial_agent: <agent name>}`")
    if pattern.get("type") not in PATTERNS:
        raise _fail(origin, f"{at}.pattern.type", f"must be one of: {', '.join(PATTERNS)}")
    if pattern.get("initial_agent") not in names:
        raise _fail(origin, f"{at}.pattern.initial_agent", f"must name one of the group's agents: {', '.join(names)}")
    manager = pattern.get("group_manager_args")
    if manager is not None:
        if not _is_map(manager) or set(manager) - {"llm_config"}:
            raise _fail(origin, f"{at}.pattern.group_manager_args", "takes only `llm_config` here")
        if "llm_config" in manager:
            _check_llm(manager["llm_config"], f"{at}.pattern.group_manager_args.llm_config", origin)


def _check_agent(agent: object, at: str, origin: str, default_llm: object) -> str:
    if not _is_map(agent):
        raise _fail(origin, at, "must be a mapping (type, name, system_message, llm_config ...)")
    extra = set(agent) - _AGENT_KEYS
    if extra:
        raise _fail(origin, f"{at}.{sorted(extra)[0]}", f"is not an AG2 agent key ({', '.join(sorted(_AGENT_KEYS))})")
    name = agent.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise _fail(origin, f"{at}.name", "must be a name of letters, digits, `_` or `-` (AG2 sends it to the API)")
    if agent.get("type", "conversable") not in AGENT_TYPES:
        raise _fail(origin, f"{at}.type", f"must be one of: {', '.join(AGENT_TYPES)}")
    if "llm_config" in agent:
        _check_llm(agent["llm_config"], f"{at}.llm_config", origin)
    elif default_llm is None:
        raise _fail(origin, f"{at}.llm_config", "is missing: give `{api_type: openai, model: gpt-4o}` or similar")
    cec = agent.get("code_execution_config")
    if cec is not None and cec is not False:
        executor = executor_of(agent)
        if executor is None:
            raise _fail(origin, f"{at}.code_execution_config", "needs `executor: {type: "
                        "LocalCommandLineCodeExecutor}` (or false)")
        if executor.get("type") not in CODE_EXECUTORS:
            raise _fail(origin, f"{at}.code_execution_config.executor.type", f"{executor.get('type')!r} is not "
                        f"supported here; use one of: {', '.join(CODE_EXECUTORS)} (both run code in the agent's "
                        "sandbox through the executor service)")
        timeout = executor.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise _fail(origin, f"{at}.code_execution_config.executor.timeout", "must be a number of seconds > 0")
    return name


def _check_llm(llm_config: object, at: str, origin: str) -> None:
    entries = llm_entries(llm_config)
    single = _is_map(llm_config)
    if not entries or (not single and len(entries) != len(_items(llm_config))):
        raise _fail(origin, at, "must be a mapping `{api_type, model, ...}` or a list of them")
    for i, entry in enumerate(entries):
        here = at if single else f"{at}[{i}]"
        extra = set(entry) - _ENTRY_KEYS
        if extra:
            raise _fail(origin, f"{here}.{sorted(extra)[0]}", f"is not supported in an llm_config entry here "
                        f"({', '.join(sorted(_ENTRY_KEYS))})")
        if entry.get("api_type", "openai") not in API_TYPES:
            raise _fail(origin, f"{here}.api_type", f"must be one of: {', '.join(API_TYPES)}")
        if not isinstance(entry.get("model"), str) or not entry["model"]:
            raise _fail(origin, f"{here}.model", "is required")
        key = entry.get("api_key")
        if key is not None and not (isinstance(key, str) and _ENV_REF.match(key)):
            raise _fail(origin, f"{here}.api_key", "holds a literal key, which would be written to the event log; "
                        "write `api_key: ${NAME}` with the key in the environment variable NAME")
        url = entry.get("base_url")
        if url is not None and not (isinstance(url, str) and re.match(r"https?://", url)):
            raise _fail(origin, f"{here}.base_url", "must be an http(s) URL")


def key_reference(entry: Mapping[str, Any]) -> str | None:
    """The variable named by an entry's ``api_key: ${NAME}``, or None."""
    match = _ENV_REF.match(str(entry.get("api_key") or ""))
    return match.group(1) if match else None
