"""Config loading and validation: strict keys with paths, no secrets, MassGen-shaped settings."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from massgen_es.config import load_config, parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import RunSettings


def _agent(id: str = "a", **backend) -> dict:
    return {"id": id, "backend": {"type": "local", **backend}}


def _cfg(**top) -> dict:
    return {"agents": [_agent()], **top}


# ---------------------------------------------------------------- default and shapes


def test_default_config_is_three_valid_local_agents():
    cfg = load_config(None)
    assert len(cfg.team) == 3
    assert all(a.backend.type == "local" for a in cfg.team)
    assert len({a.id for a in cfg.team}) == 3
    run_submitted("q", cfg)  # builds a valid event


def test_single_agent_form_works():
    cfg = parse_config({"agent": _agent("solo")})
    assert [a.id for a in cfg.team] == ["solo"]


# ---------------------------------------------------------------- unknown keys and bad values name their path


def test_unknown_nested_key_names_full_path():
    with pytest.raises(ConfigError, match=r"`agents\[0\]\.backend\.temprature`"):
        parse_config({"agents": [_agent(temprature=0.5)]})


def test_unknown_top_level_key_names_it():
    with pytest.raises(ConfigError, match=r"unknown key `orchestratr`"):
        parse_config(_cfg(orchestratr={}))


def test_bad_value_names_its_path():
    with pytest.raises(ConfigError, match=r"`orchestrator\.voting_sensitivity`.*sometimes"):
        parse_config(_cfg(orchestrator={"voting_sensitivity": "sometimes"}))


def test_single_agent_form_error_names_agent_path():
    with pytest.raises(ConfigError, match=r"`agent\.backend\.model`"):
        parse_config({"agent": {"id": "a", "backend": {"type": "chatcompletion"}}})


# ---------------------------------------------------------------- secrets


def test_literal_api_key_is_rejected_pointing_to_environment_variable():
    with pytest.raises(ConfigError, match=r"agents\[0\]\.backend\.api_key.*environment variable"):
        parse_config({"agents": [_agent(api_key="sk-live-123")]})


def test_api_key_env_reference_becomes_api_key_env_and_never_reaches_the_event(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    cfg = parse_config({"agents": [_agent(api_key="${MY_KEY}")]})
    assert cfg.team[0].backend.api_key is None
    assert cfg.team[0].backend.api_key_env == "MY_KEY"
    encoded = msgspec.json.encode(run_submitted("q", cfg))
    assert b'"api_key_env":"MY_KEY"' in encoded
    assert b"${MY_KEY}" not in encoded and b"sk-secret-value" not in encoded


def test_run_submitted_backend_has_no_api_key_field():
    cfg = parse_config({"agents": [_agent(api_key="${MY_KEY}")]})
    encoded = msgspec.json.encode(run_submitted("q", cfg))
    assert b'"api_key"' not in encoded


# ---------------------------------------------------------------- team and numeric checks


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"agents": [_agent("a"), _agent("a")]}, r"duplicate agent id `a` at `agents\[1\]\.id`"),
        ({"agents": []}, r"no agents"),
        ({"agents": [_agent("a")], "agent": _agent("b")}, r"either `agents:`.*or `agent:`.*not both"),
        (
            {"agents": [{"id": "a", "backend": {"type": "chatcompletion"}}]},
            r"`agents\[0\]\.backend\.model` is required for backend type chatcompletion",
        ),
        (
            _cfg(timeout_settings={"orchestrator_timeout_seconds": 0}),
            r"`timeout_settings\.orchestrator_timeout_seconds` must be a positive",
        ),
        (
            _cfg(timeout_settings={"presentation_timeout_seconds": -5}),
            r"`timeout_settings\.presentation_timeout_seconds` must be a positive",
        ),
        (
            _cfg(orchestrator={"max_new_answers_per_agent": 0}),
            r"`orchestrator\.max_new_answers_per_agent` must be >= 1",
        ),
    ],
    ids=["duplicate-ids", "empty-agents", "agent-and-agents", "chatcompletion-no-model", "zero-timeout",
         "negative-timeout", "zero-max-answers"],
)
def test_invalid_config_gives_clear_config_error(data: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_nan_timeout_is_rejected():
    with pytest.raises(ConfigError, match=r"orchestrator_timeout_seconds"):
        parse_config(_cfg(timeout_settings={"orchestrator_timeout_seconds": float("nan")}))


def test_non_positive_request_timeout_is_rejected():
    with pytest.raises(ConfigError, match=r"agents\[0\]\.backend\.request_timeout_seconds"):
        parse_config({"agents": [_agent(request_timeout_seconds=0)]})


# ---------------------------------------------------------------- files


def test_missing_file_names_the_path(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(missing)


def test_invalid_yaml_names_the_path(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents: [\n  - id: a\n    backend: {type: local\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*not valid YAML"):
        load_config(bad)


def test_valid_file_loads(tmp_path: Path):
    good = tmp_path / "team.yaml"
    good.write_text("agents:\n  - id: x\n    backend: {type: local}\n")
    assert [a.id for a in load_config(good).team] == ["x"]


# ---------------------------------------------------------------- run_submitted


def test_run_submitted_maps_orchestrator_and_timeout_settings():
    cfg = parse_config(
        _cfg(
            orchestrator={
                "max_new_answers_per_agent": 2,
                "voting_sensitivity": "strict",
                "answer_novelty_requirement": "balanced",
                "max_failed_turns": 5,
            },
            timeout_settings={"orchestrator_timeout_seconds": 90, "presentation_timeout_seconds": 15},
        )
    )
    event = run_submitted("Why?", cfg, config_path="team.yaml")
    assert event.settings == RunSettings(
        max_new_answers_per_agent=2,
        voting_sensitivity="strict",
        answer_novelty_requirement="balanced",
        max_failed_turns=5,
        orchestrator_timeout_s=90.0,
        presentation_timeout_s=15.0,
    )
    assert event.question == "Why?" and event.config_path == "team.yaml"
    assert [a.id for a in event.agents] == ["a"]


@pytest.mark.parametrize("question", ["", "   \n"], ids=["empty", "blank"])
def test_run_submitted_rejects_empty_question(question: str):
    with pytest.raises(ConfigError, match="question is empty"):
        run_submitted(question, load_config(None))


@pytest.mark.parametrize("url", ["not a url", "localhost:8000/v1", "ftp://example.com", "http://", "http://h:port/v1"])
def test_base_url_that_is_not_an_http_url_is_refused_naming_the_key(url: str) -> None:
    """Issue 13 item 4: such a run used to start, retry nine times and fail without naming the cause."""
    raw = {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m", "base_url": url}}]}
    with pytest.raises(ConfigError, match=r"`agents\[0\]\.backend\.base_url` is .* not an http\(s\) URL"):
        parse_config(raw)


def test_http_and_https_base_urls_are_accepted() -> None:
    for url in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1"):
        backend = {"type": "chatcompletion", "model": "m", "base_url": url}
        cfg = parse_config({"agents": [{"id": "a", "backend": backend}]})
        assert cfg.agents[0].backend.base_url == url
