"""MCP and execution activity of a run, as rows: what ``massgen replay RUN --mcp`` and ``--exec`` show.

Pure projections of records (no I/O): a request is paired with its outcome by the outcome's
``causation_id`` (the broker and the executor record ``<request id>:result`` caused by the request).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from massgen_es import scrub
from massgen_es.events import (
    ApprovalDecided,
    ApprovalRequested,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRequested,
    ExecutionStarted,
    McpServerStateChanged,
    Record,
    SandboxChanged,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolsListed,
)

_BREAKER_STATES = frozenset({"open", "half_open", "closed"})


def redact_arguments(arguments: str) -> str:
    """A tool call's JSON arguments for display: values under credential-like keys (the scrubber's rule,
    :func:`massgen_es.scrub.secret_names`, at any depth) become ``[redacted]``, then the text is scrubbed
    of known secrets and credential shapes. Arguments that are not JSON are only scrubbed."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return scrub.text(arguments)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            hidden = set(scrub.secret_names({str(k): "" for k in v}))
            return {k: scrub.MARKER if str(k) in hidden else walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return scrub.text(json.dumps(walk(value), ensure_ascii=False, separators=(",", ":")))


def mcp_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Every MCP happening of ``records``, oldest first, one dict each (JSON-ready):

    - ``{"kind": "call", "ts", "agent", "server", "tool", "arguments", "duration_s", "result_chars",
      "is_error", "error", "attempts", "replayed_from"}``: a tool call and its outcome (``error`` is
      ``"<Failure type>: <message>"`` for a failed call, ``"isError"`` for a server's error result,
      ``"no outcome recorded"`` when none was; ``duration_s`` in seconds, ``result_chars`` the length
      of the result text; ``approval``: None, ``waiting``, or ``approved by …``/``denied by …: reason``
      for a call that asked a person);
    - ``{"kind": "server", "ts", "server", "state", "change", "reason", "failures"}``: ``change`` is
      ``breaker`` (circuit breaker open / half_open / closed), ``restart`` (started again after an
      exit), ``start`` or ``crash``;
    - ``{"kind": "catalog", "ts", "agent", "server", "version", "tools", "error"}``: a tool catalog as
      listed for an agent (``version`` > 1 after ``notifications/tools/list_changed``).
    """
    outcomes = {r.causation_id: r for r in records
                if isinstance(r.event, ToolCallCompleted | ToolCallFailed) and r.causation_id}
    asked = {r.causation_id: r.id for r in records if isinstance(r.event, ApprovalRequested)}
    decided = {r.causation_id: r.event for r in records if isinstance(r.event, ApprovalDecided)}
    rows: list[dict[str, Any]] = []
    for r in records:
        ev = r.event
        if isinstance(ev, ToolCallRequested):
            row: dict[str, Any] = {
                "kind": "call", "ts": r.ts, "agent": ev.agent_id, "server": ev.server, "tool": ev.tool,
                "arguments": redact_arguments(ev.arguments), "duration_s": None, "result_chars": None,
                "is_error": True, "error": "no outcome recorded", "attempts": 0, "replayed_from": None,
                "approval": _approval(asked.get(r.id), decided),
            }
            done = outcomes.get(r.id)
            if done is not None and isinstance(done.event, ToolCallCompleted):
                c = done.event
                row |= {"duration_s": c.duration_s, "result_chars": len(c.content), "is_error": c.is_error,
                        "error": "isError" if c.is_error else None, "attempts": c.attempts,
                        "replayed_from": c.replayed_from}
            elif done is not None and isinstance(done.event, ToolCallFailed):
                f = done.event
                row |= {"duration_s": f.duration_s, "error": f.failure.text(),
                        "attempts": f.attempts}
            rows.append(row)
        elif isinstance(ev, McpServerStateChanged):
            change = ("breaker" if ev.state in _BREAKER_STATES else "crash" if ev.state == "crashed"
                      else "restart" if ev.reason.startswith("restarted") else "start")
            rows.append({"kind": "server", "ts": r.ts, "server": ev.server, "state": ev.state, "change": change,
                         "reason": ev.reason, "failures": ev.failures})
        elif isinstance(ev, ToolsListed):
            rows.append({"kind": "catalog", "ts": r.ts, "agent": ev.agent_id, "server": ev.server,
                         "version": ev.version, "tools": len(ev.tools),
                         "error": ev.failure.text() if ev.failure else None})
    return rows


def _approval(asked: str | None, decided: dict[str | None, Any]) -> str | None:
    if asked is None:
        return None
    d = decided.get(asked)
    if not isinstance(d, ApprovalDecided):
        return "waiting"
    return f"{'approved' if d.approved else 'denied'} by {d.by}" + (f": {d.reason}" if d.reason else "")


def exec_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Every command execution of ``records``, oldest first:
    ``{"kind": "exec", "ts", "agent", "command", "mode", "sandbox", "exit_code", "timed_out",
    "duration_s", "output_chars", "stored_bytes", "error"}`` (``output_chars``: stdout plus stderr as
    recorded; ``stored_bytes``: the full output and files kept in the Object Store; ``mode``: ``docker``,
    ``local`` or ``local_unisolated``, None when the command never started), and the sandboxes'
    lifecycle: ``{"kind": "sandbox", "ts", "agent", "container", "state", "image", "reason"}``."""
    outcomes = {r.causation_id: r for r in records
                if isinstance(r.event, ExecutionCompleted | ExecutionFailed) and r.causation_id}
    started = {r.causation_id: r.event for r in records if isinstance(r.event, ExecutionStarted) and r.causation_id}
    rows: list[dict[str, Any]] = []
    for r in records:
        ev = r.event
        if isinstance(ev, ExecutionRequested):
            mark = started.get(r.id)
            row: dict[str, Any] = {
                "kind": "exec", "ts": r.ts, "agent": ev.agent_id, "command": scrub.text(ev.shown.removeprefix("$ ")),
                "mode": mark.mode if mark else None, "sandbox": mark.sandbox if mark else None,
                "exit_code": None, "timed_out": False, "duration_s": None, "output_chars": None,
                "stored_bytes": 0, "error": "no outcome recorded",
            }
            done = outcomes.get(r.id)
            if done is not None and isinstance(done.event, ExecutionCompleted):
                c = done.event
                row |= {"mode": c.mode, "sandbox": c.sandbox, "exit_code": c.exit_code, "timed_out": c.timed_out,
                        "duration_s": c.duration_s, "output_chars": len(c.stdout) + len(c.stderr),
                        "stored_bytes": sum(o.size for o in c.objects),
                        "error": "timed out" if c.timed_out else None}
            elif done is not None and isinstance(done.event, ExecutionFailed):
                row["error"] = done.event.failure.text()
            rows.append(row)
        elif isinstance(ev, SandboxChanged):
            rows.append({"kind": "sandbox", "ts": r.ts, "agent": ev.agent_id, "container": ev.container,
                         "state": ev.state, "image": ev.image, "reason": ev.reason})
    return rows
