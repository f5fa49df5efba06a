"""The ``memory`` section of coordination prompts (MassGen's memory filesystem mode, spec §1.6 section 5).

Pure: the memories come from ``workspace.snapshotted`` events (``massgen_es.memory_files``), folded into
``RunState.memories``, so a replay rebuilds every prompt as sent. The section tells the agent how to keep
memories (MassGen's file layout and front matter; here with its file tools, where MassGen's agents call
a memory MCP server) and shows the latest memories each agent shared: short-term ones in full,
long-term ones by name, description and the file to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from massgen_es.events import MemoryNote, Message

INSTRUCTIONS = (
    "You have a memory kept as Markdown files in your workspace, visible to every agent once you share "
    "your workspace with an answer:\n"
    "- memory/short_term/NAME.md: small notes useful on every turn (findings, decisions, gotchas, user "
    "preferences; under 100 lines). Every agent sees them in full in its prompt. Prefer this tier.\n"
    "- memory/long_term/NAME.md: detailed analyses useful now and then. Agents see only the name and "
    "description, and read the file when they need it.\n"
    "Each file starts with front matter:\n---\nname: NAME\ndescription: one line saying what it holds\n---\n"
    "Write, update or delete these files with your file tools (or execute_command); keep them current and "
    "update a memory rather than adding a near duplicate."
)


def section(memories: Mapping[str, Sequence[MemoryNote]]) -> str:
    """The prompt section for the shared memories of each agent (keyed by anonymous id, config order)."""
    shown: list[str] = []
    for anon, notes in memories.items():
        short = [n for n in notes if n.tier == "short_term"]
        long = [n for n in notes if n.tier == "long_term"]
        if not notes:
            continue
        lines = [f"{anon}:"]
        for n in short:
            lines.append(f"- short_term/{n.name}" + (f" ({n.description})" if n.description else "")
                         + f":\n{n.content or '(empty)'}")
        lines += [f"- long_term/{n.name}: {n.description or '(no description)'} (read {n.path})" for n in long]
        shown.append("\n".join(lines))
    current = "\n\n".join(shown) if shown else "(no memories shared yet)"
    return (f'<memory priority="high">\n{INSTRUCTIONS}\n\nMemories the agents shared with their latest '
            f"answers:\n{current}\n</memory>")


def with_memory(messages: tuple[Message, ...], memories: Mapping[str, Sequence[MemoryNote]]) -> tuple[Message, ...]:
    """``messages`` with the memory section closing the system message (one is added when there is none)."""
    text = section(memories)
    first = messages[0]
    if first.role == "system":
        return (msgspec.structs.replace(first, content=f"{first.content}\n\n{text}"), *messages[1:])
    return (Message(role="system", content=text), *messages)


__all__ = ["INSTRUCTIONS", "section", "with_memory"]
