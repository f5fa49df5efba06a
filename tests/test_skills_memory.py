"""Skills (MassGen's openskills integration) and memory filesystem mode (``orchestrator.coordination``
``use_skills`` / ``skills_directory`` / ``enable_memory_filesystem_mode``): a real nats-server, the
services in-process, scripted models through the real ``openai`` SDK (FakeOpenAI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_executor import IMAGE, commands, engine, exec_team  # noqa: F401 - engine: the fixture
from test_executor import run as run_with_executor
from test_mcp_broker import mcp_team, of, run, script

from massgen_es.config import parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import ExecutionCompleted, ExecutionFailed, RunCompleted, WorkspaceSnapshotted
from massgen_es.memory_files import read_memories
from massgen_es.skills import discover, front_matter

SKILL = "---\nname: poem-maker\ndescription: Writes a poem\n  in four lines.\n---\n# Steps\n1. Rhyme.\n"


def skills_dir(tmp_path: Path) -> Path:
    root = tmp_path / "skills"
    (root / "poem").mkdir(parents=True)
    (root / "poem" / "SKILL.md").write_text(SKILL)
    (root / "bare").mkdir()
    (root / "bare" / "SKILL.md").write_text("no front matter here")
    (root / "not-a-skill").mkdir()
    return root


def test_discovery_reads_name_and_description_from_the_front_matter(tmp_path):
    found = discover(skills_dir(tmp_path))
    assert [(s.name, s.description) for s in found] == [("bare", ""), ("poem-maker", "Writes a poem in four lines.")]
    assert found[1].path == str((tmp_path / "skills" / "poem" / "SKILL.md").resolve())
    assert discover(tmp_path / "missing") == []
    assert front_matter("---\n[a list]\n---\n") == {}


def team(tmp_path: Path, **coordination) -> dict:
    backend = {"type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    return {"agents": [{"id": "a", "backend": {**backend, "cwd": "ws"}, "system_message": "Be brief."},
                       {"id": "b", "backend": backend}],
            "orchestrator": {"coordination": {"use_skills": True, **coordination}}}


def test_submission_lists_the_skills_and_shares_their_directory_read_only_with_workspace_agents(tmp_path):
    root = skills_dir(tmp_path)
    submitted = run_submitted("q", parse_config(team(tmp_path, skills_directory=str(root))))
    a, b = submitted.agents
    assert a.system_message.startswith("Be brief.\n\n<skills>")
    for spec in (a, b):
        assert "- poem-maker: Writes a poem in four lines.\n  read: " + str(root / "poem" / "SKILL.md") in \
            spec.system_message
    assert {"path": str(root.resolve()), "permission": "read"}.items() <= a.backend["context_paths"][0].items()
    assert not b.backend.get("context_paths")  # no workspace: nothing to read it with


def test_a_directory_without_skills_offers_none_with_a_warning(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="massgen.config"):
        submitted = run_submitted("q", parse_config(team(tmp_path, skills_directory=str(tmp_path / "none"))))
    assert "<skills>" not in submitted.agents[0].system_message
    assert any("holds no skills" in r.getMessage() for r in caplog.records)


def test_massgens_bundled_skills_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"`orchestrator.coordination.massgen_skills` is MassGen's bundled skills"):
        parse_config(team(tmp_path, massgen_skills=["file_search"]))
    parse_config(team(tmp_path, massgen_skills=[]))  # none asked for: loads


async def test_an_agent_reads_a_skill_with_execute_command_in_its_sandbox(fresh_nats, fake, massgen_home, tmp_path):
    root = skills_dir(tmp_path)
    skill = root / "poem" / "SKILL.md"
    cfg = exec_team(fake, commands(({"command": f"cat {skill}"},)))
    cfg["orchestrator"] = {"coordination": {"use_skills": True, "skills_directory": str(root)}}
    _, records = await run_with_executor(fresh_nats, massgen_home, cfg)
    [done] = of(records, ExecutionCompleted)
    assert (done.mode, done.exit_code, done.stdout) == ("local", 0, SKILL)
    first = next(r.event for r in records if r.type == "turn.requested")
    assert f"read: {skill}" in first.messages[0].content  # the list reached the model's system prompt
    assert of(records, RunCompleted)


@pytest.mark.usefixtures("engine")  # a real Docker engine, or the test fails loudly
async def test_in_docker_the_skill_is_mounted_read_only_at_the_same_path(fresh_nats, fake, massgen_home, tmp_path):
    root = skills_dir(tmp_path)
    skill = root / "poem" / "SKILL.md"
    cfg = exec_team(fake, commands(({"command": f"cat {skill}"},), ({"command": f"touch {root}/poem/added.md"},)),
                    command_line_execution_mode="docker", command_line_docker_image=IMAGE)
    cfg["orchestrator"] = {"coordination": {"use_skills": True, "skills_directory": str(root)}}
    _, records = await run_with_executor(fresh_nats, massgen_home, cfg)
    read, write = [r.event for r in records if isinstance(r.event, ExecutionCompleted | ExecutionFailed)]
    assert isinstance(read, ExecutionCompleted) and (read.mode, read.exit_code, read.stdout) == ("docker", 0, SKILL)
    assert isinstance(write, ExecutionFailed) or write.exit_code != 0  # skills are read-only in the sandbox
    assert not (root / "poem" / "added.md").exists()
    assert of(records, RunCompleted)


# ---------------------------------------------------------------- memory filesystem mode

NOTE = "---\nname: findings\ndescription: What I found\n---\n- Paris is the capital.\n"
DETAIL = "---\nname: report\ndescription: The long analysis\n---\n" + "line\n" * 50


async def test_memories_shared_with_an_answer_are_logged_and_shown_in_every_later_prompt(
    fresh_nats, fake, massgen_home
):
    fs = "mcp__filesystem__"
    rounds = (
        ((fs + "create_directory", {"path": "memory/short_term"}),
         (fs + "create_directory", {"path": "memory/long_term"})),
        ((fs + "write_file", {"path": "memory/short_term/findings.md", "content": NOTE}),
         (fs + "write_file", {"path": "memory/long_term/report.md", "content": DETAIL})),
    )
    cfg = mcp_team(fake, 2, [script(*rounds), script()], cwd="ws")
    cfg["orchestrator"] = {"coordination": {"enable_memory_filesystem_mode": True}}
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    assert of(records, RunCompleted)
    shared = [e for e in of(records, WorkspaceSnapshotted) if e.memories]
    assert shared and shared[0].anon_id == "agent1"
    short, long = shared[0].memories
    assert (short.tier, short.name, short.description, short.content) == (
        "short_term", "findings", "What I found", "- Paris is the capital.")
    assert (long.tier, long.name, long.content) == ("long_term", "report", "")  # read on demand, not inlined
    assert long.path == str(massgen_home / "runs" / run_id / "snapshots" / "agent1" / "memory" / "long_term" /
                            "report.md")
    requests = [r.event for r in records if r.type == "turn.requested"]
    assert all("memory/short_term/NAME.md" in t.messages[0].content for t in requests if t.kind == "coordination")
    at = next(x.seq for x in records if x.type == "workspace.snapshotted" and x.event.memories)
    later = [r.event for r in records if r.type == "turn.requested" and r.seq > at and r.event.kind == "coordination"]
    assert later, "no coordination turn after the memories were shared"
    for t in later:
        system = t.messages[0].content
        assert "agent1:\n- short_term/findings (What I found):\n- Paris is the capital." in system
        assert f"- long_term/report: The long analysis (read {long.path})" in system
    model_saw = [json.dumps(b["messages"]) for b in fake.requests()]
    assert any("Paris is the capital" in s and "short_term/findings" in s for s in model_saw)


def test_memory_mode_off_shows_no_memory_section(tmp_path):
    cfg = team(tmp_path)
    cfg["orchestrator"] = {"coordination": {"enable_memory_filesystem_mode": False}}
    assert not run_submitted("q", parse_config(cfg)).settings.memory_filesystem_mode


def test_memory_files_are_read_with_their_front_matter_and_never_through_a_symlink(tmp_path):
    ws, outside = tmp_path / "ws", tmp_path / "secret"
    (ws / "memory" / "short_term").mkdir(parents=True)
    (outside / "long_term").mkdir(parents=True)
    (outside / "long_term" / "key.md").write_text("---\nname: key\n---\nsk-live-123")
    (ws / "memory" / "short_term" / "findings.md").write_text(NOTE)
    (ws / "memory" / "short_term" / "linked.md").symlink_to(outside / "long_term" / "key.md")
    (ws / "memory" / "long_term").symlink_to(outside / "long_term")
    [note] = read_memories(ws)
    assert (note.tier, note.name, note.description, note.content) == (
        "short_term", "findings", "What I found", "- Paris is the capital.")
    other = tmp_path / "ws2"
    other.mkdir()
    (other / "memory").symlink_to(outside)  # the whole memory folder pointing elsewhere
    assert read_memories(other) == ()
