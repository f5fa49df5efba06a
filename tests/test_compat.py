"""MassGen's keys that ours do not take as they are (issue 16 item 1): each renamed, passed through,
appended, ignored with a warning, or refused naming the MassGen feature (``massgen_es.compat``)."""

from __future__ import annotations

import logging

import pytest

from massgen_es import compat
from massgen_es.config import parse_config
from massgen_es.errors import ConfigError


def _team(kind: str = "vllm", **backend) -> dict:
    return {"agents": [{"id": "a", "system_message": "Be brief.", "backend": {"type": kind, "model": "m", **backend}}]}


def test_massgens_code_interpreter_is_our_code_execution():
    cfg = parse_config(_team("openai", enable_code_interpreter=True))
    assert cfg.team[0].backend.enable_code_execution is True


def test_giving_both_names_of_one_key_is_refused():
    with pytest.raises(ConfigError, match=r"enable_code_interpreter` is MassGen's name for `enable_code_execution"):
        parse_config(_team("openai", enable_code_interpreter=True, enable_code_execution=False))


def test_provider_parameters_massgen_passes_through_go_to_extra_body():
    cfg = parse_config(_team(top_k=20, chat_template_kwargs={"enable_thinking": False}, extra_body={"min_p": 0.1}))
    assert cfg.team[0].backend.extra_body == {
        "min_p": 0.1, "top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}


def test_append_system_prompt_is_appended_to_the_system_message():
    cfg = parse_config(_team(append_system_prompt="Use tools."))
    assert cfg.team[0].system_message == "Be brief.\n\nUse tools."


def test_keys_massgen_ignores_load_with_a_warning_naming_them(caplog: pytest.LogCaptureFixture):
    data = {**_team(max_mcp_message_history=50), "ui": {"type": "rich_terminal", "display_type": "simple"},
            "display": {"type": "rich_terminal"}}
    with caplog.at_level(logging.WARNING, logger="massgen.config"):
        cfg = parse_config(data, "f.yaml")
    assert cfg.ui.display_type == "simple"
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for key in ("`ui.type` ignored", "`display` ignored", "`agents[0].backend.max_mcp_message_history` ignored"):
        assert key in warned
    assert data["ui"] == {"type": "rich_terminal", "display_type": "simple"}, "the caller's data is unchanged"


@pytest.mark.parametrize(("data", "feature"), [
    ({"session_id": "s-1"}, r"`session_id` is MassGen's memory session ids"),
    ({"orchestrator": {"coordination": {"massgen_skills": ["serena"]}}},
     r"massgen_skills` is MassGen's bundled skills"),
    ({"agents": [{"id": "a", "backend": {"type": "ag2", "agent_config": {}}}]}, r"'ag2' is MassGen's AG2"),
])
def test_a_massgen_feature_not_built_is_refused_by_name_never_as_a_typo(data: dict, feature: str):
    with pytest.raises(ConfigError, match=feature) as info:
        parse_config({**_team(), **data})
    assert "does not support" in str(info.value) and "spelling" not in str(info.value)


def test_every_refused_feature_of_a_file_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config({**_team(enable_computer_use=True), "session_id": "s-1"})
    assert "`session_id`" in str(info.value) and "agents[0].backend.enable_computer_use" in str(info.value)


def test_a_key_nobody_knows_is_still_a_typo():
    with pytest.raises(ConfigError, match=r"unknown key `agents\[0\]\.backend\.temprature`; check its spelling"):
        parse_config(_team(temprature=0.2))


def test_an_unknown_mcp_security_level_means_strict_as_in_massgen(caplog: pytest.LogCaptureFixture):
    server = {"name": "fs", "command": "npx", "args": ["-y", "x"], "security": {"level": "high"}}
    with caplog.at_level(logging.WARNING, logger="massgen.config"):
        cfg = parse_config(_team(mcp_servers=[server]))
    assert cfg.team[0].backend.mcp_servers[0].security.level == "strict"
    assert "means \"strict\"" in caplog.text


def test_a_bad_backend_type_lists_the_backend_types():
    with pytest.raises(ConfigError, match=r"agents\[0\]\.backend\.type.*allowed: chatcompletion, local"):
        parse_config({"agents": [{"id": "a", "backend": {"type": "nope"}}]})


def test_migrate_rewrites_massgen_keys_and_names_what_it_dropped_and_what_stays_refused():
    data = {**_team("openai", enable_code_interpreter=True, top_k=5), "ui": {"type": "x"}, "session_id": "s-1"}
    out, notes = compat.migrate(data)
    backend = out["agents"][0]["backend"]
    assert backend["enable_code_execution"] is True and "enable_code_interpreter" not in backend
    assert backend["extra_body"] == {"top_k": 5} and "ui" in out and "type" not in out["ui"]
    assert any("`ui.type` ignored" in n for n in notes)
    assert any(n.startswith("still refused here: `session_id`") for n in notes)


def test_migrate_keeps_the_files_comments(tmp_path):
    from massgen_cli.migrate_command import migrate_text

    text = ("# my team\nagents:\n  - id: a  # the first\n    backend:\n      type: openai\n      model: gpt-5\n"
            "      enable_code_interpreter: true\nui:\n  type: rich_terminal\n")
    migrated, notes = migrate_text(text)
    assert "# my team" in migrated and "# the first" in migrated
    assert "enable_code_execution: true" in migrated and "enable_code_interpreter" not in migrated
    assert notes == ["`ui.type` ignored: MassGen's `ui.type`, which MassGen does not read (the view is "
                     "`ui.display_type`)"]
    path = tmp_path / "c.yaml"
    path.write_text(migrated)
    from massgen_es.config import load_config

    assert load_config(path).team[0].backend.enable_code_execution


def test_config_migrate_prints_the_rewritten_file_and_exits_1_naming_what_stays_refused(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    massgen = str(Path(sys.executable).with_name("massgen"))
    path = tmp_path / "massgen.yaml"
    path.write_text("agents:\n  - id: a  # mine\n    backend: {type: vllm, model: m, top_k: 5}\n"
                    "session_id: s-1\n")
    done = subprocess.run([massgen, "config", "migrate", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "# mine" in done.stdout and "extra_body" in done.stdout
    assert "still refused here: `session_id` is MassGen's memory session ids" in done.stderr
    path.write_text("agents:\n  - id: a\n    backend: {type: vllm, model: m, top_k: 5}\n")
    done = subprocess.run([massgen, "config", "migrate", "--write", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "top_k: 5" in path.read_text() and "extra_body" in path.read_text()


def test_a_refused_key_that_turns_its_feature_off_loads():
    cfg = parse_config({**_team(enable_computer_use=False), "memory": {"enabled": False}})
    assert cfg.team[0].id == "a"
