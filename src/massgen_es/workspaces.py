"""Where a run's files live on disk (one layout for the MCP broker and the executor).

``<home>/runs/<run_id>/workspaces/<agent_id>`` is an agent's workspace (MassGen's ``cwd``, relocated
per run so parallel runs never share one, MassGen #463); ``<home>/runs/<run_id>/snapshots/agentN``
holds the workspace an agent shared with its answer, under that answer's anonymous id.
"""

from __future__ import annotations

import os
from pathlib import Path

SANDBOX_UID = 1000
"""The non-root user sandboxes run commands as (the ``massgen`` user of the sandbox images)."""


def run_dir(home: Path, run_id: str) -> Path:
    """Everything of one run on disk: its agents' workspaces and the snapshots they shared."""
    return home / "runs" / run_id


def workspace(home: Path, run_id: str, agent_id: str) -> Path:
    """An agent's workspace, created on first use and writable by the sandbox user."""
    path = run_dir(home, run_id) / "workspaces" / agent_id
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)  # sandboxes run commands as this user
    return path


def snapshots(home: Path, run_id: str) -> Path:
    """The directory of shared snapshots, created on first use."""
    path = run_dir(home, run_id) / "snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
