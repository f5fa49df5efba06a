"""MassGen's example configs that use the coordination keys of issue 15 item 7 (task planning,
``skip_coordination_rounds``) parse here with MassGen's meaning, the skills examples (``use_skills``,
``enable_memory_filesystem_mode``) too.

MassGen runs its examples from its repository root, so their relative ``context_paths`` (``docs/``,
``massgen/configs/resources/...``) are created under a temporary directory used as the working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from massgen_es.config import PLANNING_SERVER, load_config, run_submitted, server_names

CONFIGS = Path(__file__).parent / "massgen_configs"
"""Copies of MassGen's example configs (its ``massgen/configs``, same relative paths) that use these keys:
the tests need nothing outside the repository."""
PARSING = {
    "debug/skip_coordination_test.yaml": "skip",
    "meta/massgen_suggests_to_improve_massgen.yaml": "planning",
    "tools/planning/simple_task_planning.yaml": "planning",
    "tools/todo/example_task_todo.yaml": "planning",
}
SKILLS = {  # (skills offered, memory files): `use_skills` and `enable_memory_filesystem_mode`
    "skills/skills_basic.yaml": (True, False),
    "skills/skills_existing_filesystem.yaml": (True, True),
    "skills/skills_with_memory.yaml": (True, True),
    "skills/test_memory.yaml": (False, True),
}


@pytest.fixture
def massgen_root(tmp_path, monkeypatch) -> Path:
    for rel in ("docs", "massgen/configs/resources/v0.0.21-example", ".agent/skills/demo"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / ".agent/skills/demo/SKILL.md").write_text("---\nname: demo\ndescription: Shows how\n---\nSteps.")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_example_using_the_keys_is_listed():
    keys = ("enable_agent_task_planning", "max_tasks_per_plan", "task_planning_filesystem_mode",
            "skip_coordination_rounds")
    copies = (p for p in CONFIGS.rglob("*.yaml") if "corpus" not in p.relative_to(CONFIGS).parts)  # not the corpus
    using = {str(p.relative_to(CONFIGS)) for p in copies if any(k in p.read_text() for k in keys)}
    assert using == set(PARSING) | set(SKILLS)


@pytest.mark.parametrize("name", sorted(PARSING))
def test_the_example_parses_with_massgens_meaning(name, massgen_root):
    cfg = load_config(CONFIGS / name)
    settings = run_submitted("q", cfg).settings
    if PARSING[name] == "skip":
        assert settings.skip_coordination_rounds
    else:
        assert cfg.orchestrator.coordination.enable_agent_task_planning
        assert all(PLANNING_SERVER in server_names(a.backend) for a in cfg.team)


@pytest.mark.parametrize("name", sorted(SKILLS))
def test_the_skills_examples_parse_with_massgens_meaning(name, massgen_root):
    skills, memory = SKILLS[name]
    submitted = run_submitted("q", load_config(CONFIGS / name))
    skill = str(massgen_root / ".agent/skills/demo/SKILL.md")
    assert all((f"- demo: Shows how\n  read: {skill}" in a.system_message) == skills for a in submitted.agents)
    assert submitted.settings.memory_filesystem_mode == memory
