"""MassGen's memory filesystem mode: memory files in an agent's workspace (``coordination.
enable_memory_filesystem_mode``; MassGen spec §1.6 ``memory`` section, §5.2).

An agent keeps memories as Markdown files with YAML front matter (``name``, ``description``) in
``memory/short_term/`` (small notes, shown in full in every agent's prompt) and ``memory/long_term/``
(detailed ones: only name and description are shown; an agent reads the file when it needs it). Agents
write and read them with their file tools, where MassGen's use a memory MCP server.

MassGen re-reads every agent's memory files before each turn from the copies the agents shared. Here
the broker reads them when it shares an agent's workspace with its answer (``workspace.snapshotted``
carries them, so the log holds what every prompt showed) and the orchestrator shows the latest of each
agent (``massgen_orchestrator.memory``). Where MassGen's documentation is silent, limits apply: at most
``MAX_NOTES`` files per tier and agent, ``MAX_CONTENT`` characters of each short-term note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from massgen_es.events import MemoryNote
from massgen_es.skills import front_matter

MEMORY_DIR = "memory"
TIERS: tuple[Literal["short_term", "long_term"], ...] = ("short_term", "long_term")
MAX_NOTES = 20
MAX_CONTENT = 4000


def _body(text: str) -> str:
    """``text`` without its front matter (when it has one)."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is not None:
            return "\n".join(lines[end + 1:]).strip()
    return text.strip()


def read_memories(root: Path) -> tuple[MemoryNote, ...]:
    """The memory files under ``root/memory`` (a workspace or its snapshot), short-term first, each tier
    sorted by file name; symlinked files, and folders leading outside ``root``, are skipped (an agent
    must not make the broker read files elsewhere into the log)."""
    notes: list[MemoryNote] = []
    for tier in TIERS:
        folder = root / MEMORY_DIR / tier
        if not folder.is_dir() or not folder.resolve().is_relative_to(root.resolve()):
            continue  # a symlinked memory/ or tier folder could point anywhere on the broker's disk
        files = [f for f in sorted(folder.glob("*.md")) if f.is_file() and not f.is_symlink()][:MAX_NOTES]
        for f in files:
            text = f.read_text(errors="replace")
            meta = front_matter(text)
            body = _body(text)
            content = body[:MAX_CONTENT] + (" […]" if len(body) > MAX_CONTENT else "") if tier == "short_term" else ""
            notes.append(MemoryNote(tier=tier, name=str(meta.get("name") or f.stem), path=str(f),
                                    description=" ".join(str(meta.get("description") or "").split())[:300],
                                    content=content))
    return tuple(notes)


__all__ = ["MAX_CONTENT", "MAX_NOTES", "MEMORY_DIR", "TIERS", "read_memories"]
