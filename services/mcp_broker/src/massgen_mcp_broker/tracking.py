"""Read-before-delete (MassGen spec §3.5, its ``FileOperationTracker``): the ``workspace_tools`` server
deletes a file only when the agent created it or read it in this run.

What counts as read: ``compare_files`` and ``compare_directories`` (as in MassGen), and also the
filesystem server's ``read_text_file``, ``read_file`` and ``read_multiple_files``: MassGen leaves them
out (the ``read`` keyword is commented out in its ``_is_read_tool``) while its own denial tells the model
to read the file first, a defect the spec notes. What counts as created: the filesystem server's
``write_file`` and the files ``copy_file``/``copy_files_batch`` wrote. A directory may be deleted when
every file under it counts (MassGen's ``can_delete_directory``).

Where the state lives: in the event log. Every call's arguments (``tool.call_requested``) and result
(``tool.call_completed``) are recorded, and ``workspace_tools`` results name the files they read and
created (``"read"``/``"created"``). Before a delete the broker folds the run's log into the set of paths
this agent read or created (:func:`known_paths`) and sends it with the call (request ``_meta`` key
:data:`KNOWN_PATHS_META`); the server also remembers what it did itself (:class:`Tracker`), which is all it
has when run on its own. So a restarted broker or server, or another broker replica, decides the same
way, and the server never needs to see the filesystem server's calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massgen_es import mcp
from massgen_es.errors import ToolError
from massgen_es.events import Record, ToolCallCompleted, ToolCallRequested

KNOWN_PATHS_META = "massgen/known_paths"
"""Request ``_meta`` key: the resolved paths the agent read or created in this run, from the log."""

FILESYSTEM_READS = frozenset({"read_text_file", "read_file", "read_multiple_files"})
"""Filesystem-server tools whose ``path``/``paths`` count as read (MassGen omits them; see above)."""
FILESYSTEM_CREATES = frozenset({"write_file"})
"""Filesystem-server tools whose ``path`` counts as created."""


@dataclass
class Tracker:
    """The resolved paths (``os.path.realpath`` strings) an agent read or created."""

    known: set[str] = field(default_factory=set)

    def note(self, paths: Iterable[str]) -> None:
        """Count ``paths`` (resolved) as read or created."""
        self.known.update(paths)

    def unread(self, target: Path, also: frozenset[str] = frozenset()) -> list[Path]:
        """The files at or under ``target`` (resolved) that count as neither read nor created, with
        ``also`` counted too, sorted. Links are checked as themselves (deleting one removes only the
        link); an empty directory has none."""
        known = self.known | also
        if not target.is_dir() or target.is_symlink():
            return [] if str(target) in known or not os.path.lexists(target) else [target]
        out = []
        for dirpath, dirnames, filenames in os.walk(target):
            # os.walk does not descend into linked directories: check those links as entries.
            for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
                path = os.path.join(dirpath, name)
                if path not in known:
                    out.append(Path(path))
        return sorted(out)


def result_paths(content: str) -> list[str]:
    """The ``read`` and ``created`` paths a ``workspace_tools`` result names ([] for any other text)."""
    try:
        data = json.loads(content)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    paths = [*data.get("read", ()), *data.get("created", ())]
    return [p for p in paths if isinstance(p, str)]


def _filesystem_paths(tool: str, arguments: str, roots: Sequence[mcp.Root]) -> list[str]:
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return []
    if not isinstance(args, dict):
        return []
    raws = [args.get("path"), *(args.get("paths") or ())]
    out = []
    for raw in raws:
        if isinstance(raw, str):
            try:
                out.append(str(mcp.resolve_in_roots(raw, roots, write=False)))
            except ToolError:
                continue  # refused then as now: it was never read
    return out


def known_paths(
    records: Iterable[Record], agent_id: str, roots: Sequence[mcp.Root], filesystem: str, workspace_tools: str
) -> set[str]:
    """Every resolved path ``agent_id`` read or created in a run, from the run's records: successful
    calls of the filesystem server (named ``filesystem``; arguments resolved against ``roots``, relative
    ones against the workspace, the first root) and of our ``workspace_tools`` server (named
    ``workspace_tools``; the paths its results name). MassGen spec §3.5."""
    requests: dict[str, ToolCallRequested] = {}
    known: set[str] = set()
    for r in records:
        ev = r.event
        if isinstance(ev, ToolCallRequested) and ev.agent_id == agent_id:
            requests[r.id] = ev
            continue
        if not isinstance(ev, ToolCallCompleted) or ev.is_error or r.causation_id not in requests:
            continue
        req = requests[r.causation_id]
        if req.server == filesystem and req.tool in FILESYSTEM_READS | FILESYSTEM_CREATES:
            known.update(_filesystem_paths(req.tool, req.arguments, roots))
        elif req.server == workspace_tools:
            known.update(result_paths(ev.content))
    return known


def planning_history(records: Iterable[Record], agent_id: str, planning: str) -> list[dict[str, Any]]:
    """``agent_id``'s completed calls of the task-planning server (named ``planning``) in log order, as
    ``[{"tool", "arguments"}]``: the plan's state, which the server replays before each call
    (``massgen_mcp_broker.task_planning``, MassGen spec §1.15). Calls that answered with an error are
    left out; a call without an outcome (still running, or lost in a crash) never happened."""
    requests: dict[str, ToolCallRequested] = {}
    out: list[dict[str, Any]] = []
    for r in records:
        ev = r.event
        if isinstance(ev, ToolCallRequested) and ev.agent_id == agent_id and ev.server == planning:
            requests[r.id] = ev
        elif isinstance(ev, ToolCallCompleted) and not ev.is_error and r.causation_id in requests:
            req = requests.pop(r.causation_id)
            try:
                arguments = json.loads(req.arguments or "{}")
            except ValueError:
                continue
            out.append({"tool": req.tool, "arguments": arguments})
    return out
