"""What ``massgen fork`` decides before it writes anything: where the fork point really is, and the
fork's config. Pure functions of the parent's records and the user's changes; ``fork_commands`` does
the I/O.

Rules, and why:

- the fork point ``SEQ`` is the parent's stream sequence (``massgen replay RUN --json`` shows it). It
  must lie between the parent's ``run.submitted`` and its last event, and before its end (a fork of an
  ended run at its end would have nothing left to do);
- it is moved forward to the end of the orchestrator's decisions on every event up to it (a decision is
  one atomic batch; copying half of one, or an input without the decisions it caused, would leave the
  fork with a state the orchestrator never had). The fork therefore starts from a decided state, and
  ``run.forked`` records the point actually used;
- the config is the parent's as submitted, in MassGen's shape, with ``--set`` assignments applied, or
  the file of ``--config``; either is validated by the normal parser (``massgen_es.config``), so a bad
  path or value is an error naming it. The agents' ids and order must stay the parent's (the copied
  history refers to them), and keys the MCP broker and the executor read from the run's submission
  (``mcp_servers``, ``cwd``, context paths, command-line execution) cannot change: a fork changes what
  the orchestrator and the workers use (models, backends, system messages, protocol settings, timeouts).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from massgen_es import config as config_mod
from massgen_es import tool_safety
from massgen_es.errors import ConfigError
from massgen_es.events import TERMINAL_EVENTS, AgentSpec, Record, RunSettings, RunSubmitted
from massgen_es.ops import home

_FIXED_BACKEND_KEYS = ("mcp_servers", "cwd", "context_paths", "enable_mcp_command_line", "command_line_")
"""Backend keys the broker and the executor read from the run's submission, which a fork keeps."""
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def fork_point(run_id: str, records: list[Record], seq: int) -> int:
    """The parent sequence the fork's copy ends at, for a requested ``seq``.

    Args:
        run_id: the parent run (for messages).
        records: every event of the parent, in stream order.
        seq: the requested fork point, a stream sequence of the parent.

    Returns:
        ``seq`` moved forward to the end of the orchestrator's decisions on the events up to it.

    Raises:
        ConfigError: no such run, ``seq`` before its submission or past its last event, or the run ends
            at or before the fork point.
    """
    if not records:
        raise ConfigError(f"no run {run_id!r} in this stack; `massgen runs` lists the runs")
    submitted = next((r for r in records if isinstance(r.event, RunSubmitted)), None)
    if submitted is None:
        raise ConfigError(f"run {run_id!r} has no run.submitted event, so there is nothing to fork")
    if seq < submitted.seq:
        raise ConfigError(f"--at {seq} is before run {run_id}'s submission (seq {submitted.seq}); "
                          f"fork at {submitted.seq} or later (`massgen replay {run_id} --json` shows each seq)")
    if seq > records[-1].seq:
        raise ConfigError(f"--at {seq} is past the end of run {run_id} (its last event is seq {records[-1].seq})")
    point = seq
    while True:
        inputs = {r.id for r in records if not r.is_decision and r.seq <= point}
        end = max((r.seq for r in records if r.is_decision and r.causation_id in inputs), default=point)
        if end <= point:
            break
        point = end
    ended = next((r for r in records if isinstance(r.event, TERMINAL_EVENTS) and r.seq <= point), None)
    if ended is not None:
        moved = f" (the orchestrator's decisions on the events up to {seq} reach seq {point})" if point > seq else ""
        raise ConfigError(f"run {run_id} ended at seq {ended.seq} ({ended.type}){moved}; fork at an earlier seq "
                          "(the seq of the answer or vote to continue from)")
    return point


def parent_config(submitted: RunSubmitted) -> dict[str, Any]:
    """The parent's config as submitted, in MassGen's shape (what ``--set`` paths address)."""
    s = submitted.settings
    return {
        "agents": [
            {"id": a.id, "backend": copy.deepcopy(a.backend), "system_message": a.system_message}
            for a in submitted.agents
        ],
        "orchestrator": {
            "max_new_answers_per_agent": s.max_new_answers_per_agent,
            "voting_sensitivity": s.voting_sensitivity,
            "answer_novelty_requirement": s.answer_novelty_requirement,
            "max_failed_turns": s.max_failed_turns,
            "max_cost_usd": s.max_cost_usd,
        },
        "timeout_settings": {
            "orchestrator_timeout_seconds": s.orchestrator_timeout_s,
            "presentation_timeout_seconds": s.presentation_timeout_s,
        },
    }


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set PATH=VALUE`` to ``data`` (mutated): ``PATH`` is dotted keys with list indices
    (``agents[1].backend.model``), ``VALUE`` a YAML scalar or flow value (``0.3``, ``null``, ``[a, b]``).
    Missing mappings on the way are created; whether the key exists is the config parser's to say.

    Raises:
        ConfigError: no ``=``, a malformed path, an index out of range, or a step into a non-container.
    """
    path, eq, raw = assignment.partition("=")
    path = path.strip()
    steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]
    rebuilt = "".join(f"[{i}]" if i is not None else f".{k}" for k, i in steps).lstrip(".")
    if not eq or not steps or rebuilt != path or steps[0][0] is None:
        raise ConfigError(f"--set {assignment!r}: expected PATH=VALUE with a dotted path and list indices, "
                          "e.g. --set agents[1].backend.model=gpt-4o-mini")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({exc})") from None
    node: Any = data
    where = ""
    for n, (key, index) in enumerate(steps):
        last = n == len(steps) - 1
        if index is not None:
            i = int(index)
            if not isinstance(node, list) or i >= len(node):
                size = f"a list of {len(node)}" if isinstance(node, list) else "not a list"
                raise ConfigError(f"--set {assignment!r}: `{where}[{i}]` does not exist (`{where}` is {size})")
            if last:
                node[i] = value
            node, where = node[i], f"{where}[{i}]"
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {assignment!r}: `{where}` is not a mapping, so it has no key `{key}`")
            if last:
                node[key] = value
            elif node.get(key) is None:
                node[key] = [] if steps[n + 1][1] is not None else {}
            node, where = node[key], f"{where}.{key}".lstrip(".")


def forked_settings(
    submitted: RunSubmitted, cfg: config_mod.Config, origin: str, *, from_parent: bool
) -> tuple[tuple[AgentSpec, ...], RunSettings]:
    """The fork's agents and settings from a validated ``cfg``, checked against the parent's submission.

    ``from_parent``: ``cfg`` is :func:`parent_config` with ``--set`` changes, whose MCP servers carry the
    parent's ``${secret:…}`` references instead of values (a file of ``--config`` has the values).

    Raises:
        ConfigError: the agents' ids or order differ from the parent's, or a key a fork keeps changed.
    """
    new = config_mod.run_submitted(submitted.question, cfg, replay_tools_from=submitted.settings.replay_tools_from,
                                   overrides=tool_safety.override_rules(home(), Path.cwd()))
    old_ids, new_ids = [a.id for a in submitted.agents], [a.id for a in new.agents]
    if old_ids != new_ids:
        raise ConfigError(f"{origin}: a fork keeps the parent's agents {old_ids} (ids and order: the copied "
                          f"history refers to them), got {new_ids}; change their backends instead")
    # As the log holds them (lists, not tuples), so they compare equal to the parent's when unchanged.
    agents = tuple(msgspec.json.decode(msgspec.json.encode(a), type=AgentSpec) for a in new.agents)
    if from_parent:
        agents = tuple(_keep_secret_refs(old, a) for old, a in zip(submitted.agents, agents, strict=True))
    for i, (old, a) in enumerate(zip(submitted.agents, agents, strict=True)):
        for key in sorted(set(old.backend) | set(a.backend)):
            if key.startswith(_FIXED_BACKEND_KEYS) and _plain(old.backend.get(key)) != a.backend.get(key):
                raise ConfigError(f"{origin}: `agents[{i}].backend.{key}` cannot change in a fork (the MCP "
                                  "broker and the executor keep the parent's); submit a new run instead")
    return agents, new.settings


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists)."""
    return msgspec.json.decode(msgspec.json.encode(value))


def _keep_secret_refs(old: AgentSpec, new: AgentSpec) -> AgentSpec:
    """The parent's MCP servers as they were when a fork leaves them alone: parsed again, their
    ``${secret:…}`` references were taken for values and referenced once more."""
    servers = old.backend.get("mcp_servers")
    if not servers:
        return new
    again = [
        {**s, **{k: {n: config_mod.secret_ref(v) for n, v in s.get(k, {}).items()} for k in ("env", "headers")}}
        for s in servers
    ]
    if new.backend.get("mcp_servers") != _plain(again):
        return new  # changed by --set: the fixed-key check refuses it
    return msgspec.structs.replace(new, backend={**new.backend, "mcp_servers": servers})
