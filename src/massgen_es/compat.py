"""MassGen's config keys that ours do not take as they are, and what each becomes (issue 16 item 1).

MassGen adds keys in every release, so compatibility is one table, not a patch per file. Each entry
says, for a key of one block (``SCOPES``), what loading does with it:

- ``rename``: MassGen's name for one of our keys (``enable_code_interpreter`` is ``enable_code_execution``);
- ``pass_through``: a provider parameter MassGen sends with the API call as it is (vLLM's ``top_k``);
  here it goes into ``backend.extra_body``, which is sent the same way;
- ``append_system``: text MassGen adds to the agent's system prompt (Claude Code's
  ``append_system_prompt``); here it is appended to ``system_message``;
- ``ignore``: a key MassGen itself ignores or that has no effect here; the config loads, with a warning;
- ``refuse``: a MassGen feature this system does not have; loading fails with a message naming the
  feature (never "check its spelling", which is for keys nobody knows). A key that turns its feature off
  (``false``, ``{enabled: false}``) loads.

:func:`translate` applies the table to parsed YAML before it is validated (``config.parse_config``);
:func:`migrate` rewrites a MassGen file into our keys (``massgen config migrate``). Sources: MassGen
spec §5.2 (keys), §3.4 (MCP security levels), §5.4 (memory), §2.8 (multimodal), §4.2 (Docker keys).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

Kind = Literal["rename", "pass_through", "append_system", "ignore", "refuse"]


@dataclass(frozen=True)
class Key:
    """What loading does with one MassGen key (see the module docstring for each ``kind``).

    Attributes:
        kind: one of :data:`Kind`.
        what: the MassGen feature, in words, for messages ("conversation memory (mem0 + Qdrant)").
        to: ``rename``: our key's name.
    """

    kind: Kind
    what: str
    to: str = ""
    hint: str = ""
    """``refuse``: what to do instead, when there is something."""


def _is_dict(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def _is_list(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


def _refuse(what: str, hint: str = "") -> Key:
    return Key("refuse", what, hint=hint)


def _ignore(what: str) -> Key:
    return Key("ignore", what)


_COMPUTER_USE = _refuse("computer use (a virtual display driven by the model)")
_AG2 = _refuse("AG2 (AutoGen) agents as a backend")

SCOPES: dict[str, dict[str, Key]] = {
    "top": {
        "session_id": _refuse("memory session ids", "a conversation here is `massgen submit --session ID` or "
                              "`massgen chat`"),
        "display": _ignore("display block of the computer-use examples, which MassGen does not read"),
        "timeout": _ignore("`timeout` block, which only MassGen's validator reads; the run's limit is "
                           "`timeout_settings.orchestrator_timeout_seconds`"),
    },
    "ui": {
        "type": _ignore("`ui.type`, which MassGen does not read (the view is `ui.display_type`)"),
        "use_orchestrator_for_single_agent": _ignore(
            "single-agent shortcut; one agent here always goes through the orchestrator"),
        "automation_mode": _ignore("automation mode; use `massgen submit --json` for machine-readable output"),
        "debug": _ignore("debug flag MassGen's CLI sets; use `massgen replay --debug` on the run"),
    },
    "agent": {
        "append_system_prompt": Key("append_system", "extra system prompt text"),
    },
    "backend": {
        "enable_code_interpreter": Key("rename", "OpenAI's code interpreter", "enable_code_execution"),
        "top_k": Key("pass_through", "sampling parameter"),
        "repetition_penalty": Key("pass_through", "sampling parameter"),
        "chat_template_kwargs": Key("pass_through", "chat-template arguments (vLLM, SGLang)"),
        "separate_reasoning": Key("pass_through", "SGLang reasoning parser switch"),
        "append_system_prompt": Key("append_system", "extra system prompt text (Claude Code)"),
        "system_prompt": Key("append_system", "system prompt (Claude Code)"),
        "provider": _ignore("provider display name of a chat-completions endpoint"),
        "provider_name": _ignore("provider display name of a chat-completions endpoint"),
        "max_mcp_message_history": _ignore("MCP message-history trimming; each turn here carries the whole "
                                           "turn's tool rounds"),
        "enforce_read_before_delete": _ignore("read-before-delete switch; workspace_tools here always asks "
                                              "for a read first"),
        "context_write_access_enabled": _ignore("write access switch MassGen's CLI sets; writable context "
                                                "paths here are writable for the final presentation"),
        "agent_temporary_workspace": _ignore("temporary workspace MassGen's CLI sets; workspaces here live "
                                             "under the run's data directory"),
        "enable_computer_use": _COMPUTER_USE,
        "display_width": _COMPUTER_USE,
        "display_height": _COMPUTER_USE,
        "computer_environment": _COMPUTER_USE,
        "agent_config": _AG2,
        "group_config": _AG2,
    },
    "orchestrator": {
        "session_storage": _ignore("session storage path, which MassGen hard-codes; sessions here are in the "
                                   "event log"),
        "timeout": _ignore("`orchestrator.timeout` block, which only MassGen's validator reads; the run's limit "
                           "is `timeout_settings.orchestrator_timeout_seconds`"),
    },
    "coordination": {
        "massgen_skills": _refuse("bundled skills (file_search, serena, semtools: texts and tools MassGen ships)",
                                  "put skills of your own in `skills_directory` with `use_skills: true`"),
    },
    "mcp_server": {},
    "custom_tool": {
        "default_params": _ignore("`default_params`, which MassGen's tool loader does not read (its key is "
                                  "`preset_args`, spec §5.2)"),
    },
}
"""Per block, MassGen's keys that need the table. A key not listed here and not one of ours is unknown."""

BACKEND_TYPES: dict[str, Key] = {"ag2": _AG2}
"""MassGen backend types this system does not have, by ``backend.type``."""

MCP_SECURITY_LEVELS = ("strict", "moderate", "permissive")
"""MassGen's MCP security levels (spec §3.4); any other value means ``strict`` there, so here too."""


@dataclass
class Translation:
    """The outcome of :func:`translate`.

    Attributes:
        data: the config with MassGen's keys turned into ours (a copy; the input is unchanged).
        warnings: one line per key loaded with a changed or no effect, naming its path.
        refused: one line per MassGen feature this system does not have, naming its path.
    """

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list[str])
    refused: list[str] = field(default_factory=list[str])


def translate(data: dict[str, Any]) -> Translation:
    """Apply :data:`SCOPES` to a parsed config (a mapping). Keys this table does not know are left for
    validation to accept or refuse; malformed blocks (a list where a mapping belongs) too.

    Returns:
        A :class:`Translation`; the caller raises on ``refused`` (``config.parse_config``).
    """
    out = Translation(copy.deepcopy(data))
    root = out.data
    _apply(root, "top", "", out, None)
    if _is_dict(root.get("ui")):
        _apply(root["ui"], "ui", "ui", out, None)
    orch = root.get("orchestrator")
    if _is_dict(orch):
        _apply(orch, "orchestrator", "orchestrator", out, None)
        if _is_dict(orch.get("coordination")):
            _apply(orch["coordination"], "coordination", "orchestrator.coordination", out, None)
        dspy = orch.get("dspy")
        if _is_dict(dspy) and _is_dict(dspy.get("backend")):  # the paraphrasing backend: a backend block too
            _apply(dspy["backend"], "backend", "orchestrator.dspy.backend", out, None)
    agents = root.get("agents")
    entries = [(f"agents[{i}]", a) for i, a in enumerate(agents)] if _is_list(agents) else []
    if _is_dict(root.get("agent")):
        entries.append(("agent", root["agent"]))
    for where, agent in entries:
        if _is_dict(agent):
            _agent(agent, where, out)
    return out


def _agent(agent: dict[str, Any], where: str, out: Translation) -> None:
    _apply(agent, "agent", where, out, agent)
    backend = agent.get("backend")
    if not _is_dict(backend):
        return
    kind = backend.get("type")
    if isinstance(kind, str) and kind in BACKEND_TYPES:
        out.refused.append(f"`{where}.backend.type` {kind!r} is MassGen's {BACKEND_TYPES[kind].what}, which this "
                           "system does not support; use another backend type")
    _apply(backend, "backend", f"{where}.backend", out, agent)
    tools = backend.get("custom_tools")
    for i, tool in enumerate(tools if _is_list(tools) else ()):
        if _is_dict(tool):
            _apply(tool, "custom_tool", f"{where}.backend.custom_tools[{i}]", out, None)
    servers = backend.get("mcp_servers")
    listed = servers.items() if _is_dict(servers) else enumerate(servers) if _is_list(servers) else ()
    for key, server in listed:
        if _is_dict(server):
            _mcp_server(server, f"{where}.backend.mcp_servers[{key}]" if isinstance(key, int)
                        else f"{where}.backend.mcp_servers.{key}", out)


def _mcp_server(server: dict[str, Any], where: str, out: Translation) -> None:
    _apply(server, "mcp_server", where, out, None)
    security = server.get("security")
    level = security.get("level") if _is_dict(security) else None
    if _is_dict(security) and isinstance(level, str) and level not in MCP_SECURITY_LEVELS:
        security["level"] = "strict"
        out.warnings.append(f"`{where}.security.level` {level!r} is not one of MassGen's levels "
                            f"({', '.join(MCP_SECURITY_LEVELS)}); as in MassGen, it means \"strict\"")


def _apply(block: dict[str, Any], scope: str, where: str, out: Translation, agent: dict[str, Any] | None) -> None:
    for key in [k for k in block if k in SCOPES[scope]]:
        rule, path = SCOPES[scope][key], f"{where}.{key}" if where else key
        value = block[key]
        if rule.kind == "refuse" and not _in_use(value):
            del block[key]  # `enable_x: false`, `memory: {enabled: false}`: the feature is off, as here
        elif rule.kind == "refuse":
            out.refused.append(f"`{path}` is MassGen's {rule.what}, which this system does not support; "
                               "remove it to run here" + (f" ({rule.hint})" if rule.hint else ""))
        elif rule.kind == "ignore":
            del block[key]
            out.warnings.append(f"`{path}` ignored: MassGen's {rule.what}")
        elif rule.kind == "rename":
            if rule.to in block:
                out.refused.append(f"`{path}` is MassGen's name for `{rule.to}`, which is given too; keep one")
            else:
                block[rule.to] = block.pop(key)
        elif rule.kind == "pass_through":
            extra = block.setdefault("extra_body", {})
            if _is_dict(extra):
                extra.setdefault(key, block.pop(key))
        elif rule.kind == "append_system" and agent is not None:
            del block[key]
            if isinstance(value, str) and value.strip():
                base = agent.get("system_message")
                agent["system_message"] = f"{base}\n\n{value}" if isinstance(base, str) and base else value


def _in_use(value: object) -> bool:
    """Whether a refused key asks for its feature: not ``false``, empty, or ``{enabled: false}``."""
    if _is_dict(value) and value.get("enabled") is False:
        return False
    return value not in (None, False, "", [], {})


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A MassGen config rewritten into our keys, and notes for the person: what was dropped or changed
    (the warnings of loading) and what stays that this system refuses. Renames, pass-through parameters
    and appended system prompts are applied as :func:`translate` applies them when loading.

    Returns:
        ``(data, notes)``: the rewritten mapping and one line per dropped or refused key.
    """
    t = translate(data)
    return t.data, [*t.warnings, *(f"still refused here: {r}" for r in t.refused)]


__all__ = ["BACKEND_TYPES", "MCP_SECURITY_LEVELS", "SCOPES", "Key", "Translation", "migrate", "translate"]
