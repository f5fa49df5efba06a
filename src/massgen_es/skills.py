"""Skills: directories of instructions offered to agents (MassGen's openskills integration, spec §1.6, §4.1).

A skill is a directory holding ``SKILL.md``, whose YAML front matter names it (``name``) and says when
to use it (``description``); the rest of the file and the directory's other files are the skill. With
``orchestrator.coordination.use_skills`` the skills found in ``skills_directory`` (default
``.agent/skills``, relative to the directory massgen runs in, as MassGen's) are listed in every agent's
system prompt (MassGen's ``skills`` section), and the directory is a read-only context path of every
agent with a workspace: the agent reads a skill with its file tools or ``execute_command`` (``cat
<path>/SKILL.md``), locally or in its Docker sandbox (context paths are mounted there at the same path),
where MassGen's agents run ``openskills read <name>``.

Discovery happens once, when the run is submitted: the list is part of the system messages recorded in
``run.submitted``, so a replay shows what the agents were offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

SKILL_FILE = "SKILL.md"
DEFAULT_DIRECTORY = ".agent/skills"
_MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Skill:
    """One skill found by :func:`discover`.

    Attributes:
        name: the front matter's ``name`` (the directory's name when missing).
        description: the front matter's ``description`` (one line, at most 500 characters).
        path: the absolute path of its ``SKILL.md``.
    """

    name: str
    description: str
    path: str


def front_matter(text: str) -> dict[str, object]:
    """The YAML front matter of a Markdown text (between a first line ``---`` and the next ``---``), or
    ``{}`` when there is none or it is not a YAML mapping."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        return {}
    try:
        data: object = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return {}
    return {str(k): v for k, v in cast("dict[object, object]", data).items()} if isinstance(data, dict) else {}


def discover(directory: Path) -> list[Skill]:
    """The skills in ``directory``: each sub-directory with a ``SKILL.md``, sorted by name. A missing
    directory has none (the caller warns); a file without front matter is named after its directory."""
    if not directory.is_dir():
        return []
    found: list[Skill] = []
    for skill_file in sorted(directory.glob(f"*/{SKILL_FILE}")):
        meta = front_matter(skill_file.read_text(errors="replace"))
        name = str(meta.get("name") or skill_file.parent.name).strip()
        description = " ".join(str(meta.get("description") or "").split())[:_MAX_DESCRIPTION]
        found.append(Skill(name=name, description=description, path=str(skill_file.resolve())))
    return sorted(found, key=lambda s: s.name)


def prompt_section(skills: list[Skill]) -> str:
    """The system prompt section listing ``skills`` (MassGen's ``skills`` section, spec §1.6); empty when
    there are none."""
    if not skills:
        return ""
    listed = "\n".join(f"- {s.name}: {s.description or '(no description)'}\n  read: {s.path}" for s in skills)
    return (
        "<skills>\nSkills are instructions and files for tasks of a kind. Before a task one of them fits, "
        "read its SKILL.md (with your file tools, or `cat PATH` with execute_command) and follow it; files "
        "it mentions are in the same directory. Skills are read-only.\n"
        f"Available skills:\n{listed}\n</skills>"
    )


__all__ = ["DEFAULT_DIRECTORY", "SKILL_FILE", "Skill", "discover", "front_matter", "prompt_section"]
