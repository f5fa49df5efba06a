"""Which tool calls need a person, and which planning mode holds back (issue 15 items 1-3).

A run's :class:`~massgen_es.events.ToolRule` list (``RunSettings.tool_rules``) comes from three places,
first match wins: the config's ``tool_safety.rules``, then the workspace's override file
``./.massgen/tool_safety.yaml`` (the directory the command runs in), then the user's
``$MASSGEN_HOME/tool_safety.yaml``. Each file is a ``rules:`` list of ``{tool, policy, safety,
rationale}``. The rules are copied into ``run.submitted``, so the broker, a replay and a fork decide
alike, wherever they run.

A tool no rule classifies is classified by its name, with the examples MassGen's irreversibility
analysis gives its model (spec §1.14): sending, posting, deleting, creating records, modifying external
state are irreversible; reading, searching, listing, fetching are reversible. Our own servers
(filesystem, workspace_tools, the task plan) work inside the agent's workspace and the run, so they
are reversible. This is the
fallback of a missing classification, not an LLM's judgement; a rule overrides it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from massgen_es.errors import ConfigError
from massgen_es.events import ToolRule

Policy = Literal["allow", "ask", "deny"]
Safety = Literal["reversible", "irreversible"]
OVERRIDE_FILE = "tool_safety.yaml"
WORKSPACE_SERVERS = frozenset({"filesystem", "workspace_tools", "planning"})
"""Our servers, confined to the agent's workspace, the run's copies and the run's own task plan
(MassGen: reversible; planning mode never holds them back)."""

_IRREVERSIBLE = re.compile(
    r"(^|_)(send|post|publish|delete|remove|destroy|drop|create|insert|update|modify|edit|write|put|patch|"
    r"submit|merge|push|pay|transfer|buy|order|book|invite|email|message|tweet|reply|comment|upload|deploy|"
    r"execute|exec|run|kill|move|rename|archive|close|approve|reject|cancel)(_|$)"
)


class Learned(msgspec.Struct, frozen=True, kw_only=True):
    """An LLM's classification of a tool, as the ``MASSGEN_TOOL_SAFETY`` bucket keeps it."""

    safety: Safety
    rationale: str
    model: str


def digest(server: str, tool: str, schema: object) -> str:
    """The key of a tool's classification: its server, name and input schema (a changed schema is a
    new tool to classify)."""
    text = json.dumps([server, tool, schema], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ToolSafetyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The config's ``tool_safety:`` block, and the shape of an override file.

    Attributes:
        rules: the rules, in order (the first match decides).
        approval_timeout_seconds: how long a call marked ``ask`` waits before it is denied.
    """

    rules: tuple[ToolRule, ...] = ()
    approval_timeout_seconds: float = 300.0


def name_of(server: str, tool: str) -> str:
    """``server.tool``, the name rules match (``execute_command`` alone for the command tool)."""
    return f"{server}.{tool}" if server else tool


def _match(rules: tuple[ToolRule, ...], server: str, tool: str) -> list[ToolRule]:
    name = name_of(server, tool)
    return [r for r in rules if fnmatch.fnmatchcase(name, r.tool)]


def policy(rules: tuple[ToolRule, ...], server: str, tool: str) -> tuple[Policy, str]:
    """The policy of a call and its rationale: the first matching rule that sets one, else ``allow``."""
    for rule in _match(rules, server, tool):
        if rule.policy is not None:
            return rule.policy, rule.rationale
    return "allow", ""


def classify(
    rules: tuple[ToolRule, ...], server: str, tool: str, learned: Learned | None = None
) -> tuple[Safety, str]:
    """Whether a tool's effects can be undone, and why: the first matching rule that says so (a
    person's), else ``learned`` (an LLM's), else the name rule of the module docstring (MassGen spec
    §1.14's examples)."""
    for rule in _match(rules, server, tool):
        if rule.safety is not None:
            return rule.safety, rule.rationale or f"rule {rule.tool}"
    if learned is not None:
        return learned.safety, learned.rationale
    if server in WORKSPACE_SERVERS:
        return "reversible", "works in the agent's own workspace and the run's copies"
    word = _IRREVERSIBLE.search(tool.lower())
    if word:
        return "irreversible", f"its name says it {word.group(2)}s (may change the world outside the run)"
    return "reversible", "its name says it reads, searches or lists"


def review(
    rules: tuple[ToolRule, ...], server: str, tool: str, learned: Learned | None = None
) -> dict[str, str]:
    """What ``massgen tools review`` shows of one tool: ``{"tool", "safety", "rationale", "source",
    "policy"}``; ``source`` is ``rule`` (a person's), ``llm:<model>`` or ``name`` (the name rule)."""
    safety, why = classify(rules, server, tool, learned)
    by_rule = any(r.safety is not None for r in _match(rules, server, tool))
    source = "rule" if by_rule else f"llm:{learned.model}" if learned is not None else "name"
    return {"tool": name_of(server, tool), "safety": safety, "rationale": why, "source": source,
            "policy": policy(rules, server, tool)[0]}


def save_rule(path: Path, rule: ToolRule) -> None:
    """Store ``rule`` in the override file ``path`` (created if missing), replacing a rule for the same
    ``tool`` pattern: a person's decision, reused by every later run that reads the file.

    Raises:
        ConfigError: the file exists but is not a valid override file.
    """
    kept = [r for r in _load(path) if r.tool != rule.tool]
    rules = [{k: v for k, v in msgspec.to_builtins(r).items() if v not in (None, "")} for r in (rule, *kept)]
    data = {"rules": rules}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _load(path: Path) -> tuple[ToolRule, ...]:
    try:
        data: object = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return ()
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the tool safety file {path}: {exc}; fix or remove it") from None
    try:
        return msgspec.convert(data, ToolSafetyConfig).rules
    except msgspec.ValidationError as exc:
        raise ConfigError(f"tool safety file {path}: {exc}; each rule is {{tool, policy: allow|ask|deny, "
                          "safety: reversible|irreversible, rationale}}") from None


def override_rules(home: Path, workdir: Path) -> tuple[ToolRule, ...]:
    """The override files' rules, as a run records them after the config's: the workspace file's, then
    the user file's.

    Raises:
        ConfigError: an override file is not YAML of the right shape; the message names the file.
    """
    return (*_load(workdir / ".massgen" / OVERRIDE_FILE), *_load(home / OVERRIDE_FILE))


__all__ = ["OVERRIDE_FILE", "Learned", "Policy", "Safety", "ToolSafetyConfig", "classify", "digest", "name_of",
           "override_rules", "policy", "review", "save_rule"]
