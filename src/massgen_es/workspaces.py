"""Where a run's files live on disk (one layout for the MCP broker and the executor).

``<home>/runs/<run_id>/workspaces/<agent_id>`` is an agent's workspace (MassGen's ``cwd``, relocated
per run so parallel runs never share one, MassGen #463); ``<home>/runs/<run_id>/snapshots/agentN``
holds the workspace an agent shared with its answer, under that answer's anonymous id.

A turn of a multi-turn session (MassGen spec §1.13) starts from the workspace the previous turn's
winner left, ``<home>/runs/<previous run>/workspaces/<winner>`` as that run ended (nothing writes to an
ended run's files): every agent's new workspace begins as a writable copy of it (:func:`workspace`'s
``seed``), and the original is a read-only context path (:func:`previous_workspace`), as MassGen adds
``turn_N/workspace`` read-only and pre-populates every agent workspace with a copy of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import msgspec

from massgen_es.config import BackendConfig, ContextPath
from massgen_es.events import RunSubmitted

SANDBOX_UID = 1000
"""The non-root user sandboxes run commands as (the ``massgen`` user of the sandbox images)."""


def run_dir(home: Path, run_id: str) -> Path:
    """Everything of one run on disk: its agents' workspaces and the snapshots they shared."""
    return home / "runs" / run_id


def workspace(home: Path, run_id: str, agent_id: str, seed: Path | None = None) -> Path:
    """An agent's workspace, created on first use (as a copy of ``seed``, the previous turn's workspace,
    when given) and writable by the sandbox user."""
    path = run_dir(home, run_id) / "workspaces" / agent_id
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Built aside and renamed into place: the broker and the executor may both create it first.
        staging = path.with_name(f".{agent_id}.{uuid.uuid4().hex[:8]}")
        if seed is not None:
            shutil.copytree(seed, staging, symlinks=True)
        else:
            staging.mkdir()
        if os.geteuid() == 0:
            for p in [staging, *staging.rglob("*")]:
                os.chown(p, SANDBOX_UID, SANDBOX_UID, follow_symlinks=False)  # sandboxes run commands as this user
        try:
            staging.rename(path)
        except OSError:  # another service created it meanwhile (from the same seed)
            shutil.rmtree(staging, ignore_errors=True)
    return path


def final_workspace(home: Path, run_id: str, agent_id: str) -> Path:
    """Where an agent's workspace is (after ``run_id`` ended: as the run left it); not created."""
    return run_dir(home, run_id) / "workspaces" / agent_id


def previous_workspace(home: Path, submitted: RunSubmitted) -> Path | None:
    """The workspace a session turn carries forward: the winner's of ``submitted.workspace_from``
    (MassGen spec §1.13), or None when the run is no session turn, that turn had no winner, or its
    winner had no workspace (no ``cwd``)."""
    turn = next((t for t in submitted.previous_turns if t.run_id == submitted.workspace_from), None)
    if turn is None or turn.winner is None:
        return None
    path = final_workspace(home, turn.run_id, turn.winner)
    return path if path.is_dir() else None


def snapshots(home: Path, run_id: str) -> Path:
    """The directory of shared snapshots, created on first use."""
    path = run_dir(home, run_id) / "snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def session_backend(home: Path, submitted: RunSubmitted, backend: BackendConfig) -> BackendConfig:
    """``backend`` with the previous turn's workspace (:func:`previous_workspace`) as one more read-only
    context path, for an agent with a workspace (MassGen spec §1.13, §3.5: "previous turns are added
    read-only"); unchanged otherwise. The broker and the executor both see a run's backends through it."""
    previous = previous_workspace(home, submitted) if backend.cwd is not None else None
    if previous is None:
        return backend
    extra = ContextPath(path=str(previous.resolve()), permission="read")
    return msgspec.structs.replace(backend, context_paths=(*backend.context_paths, extra))
