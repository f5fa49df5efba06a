"""The config JSON Schema (schemas/config.schema.json, generated from massgen_es.config) and the
validation that reports every problem of a file at once (massgen_es.config_schema)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from massgen_es import config_schema
from massgen_es.config import DEFAULT_CONFIG_YAML, parse_config

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / config_schema.SCHEMA_FILE_NAME
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_committed_config_schema_matches_the_code():
    committed = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert committed == config_schema.json_schema(), (
        f"{SCHEMA_FILE} is stale or missing: run `make schema` and commit the result"
    )


def test_schema_carries_the_field_docstrings_and_the_mapping_form_of_mcp_servers():
    s = json.loads(config_schema.json_schema())
    backend = s["$defs"]["BackendConfig"]
    assert "filesystem workspace" in backend["properties"]["cwd"]["description"]
    assert backend["description"].startswith("An agent's ``backend`` block.")
    forms = backend["properties"]["mcp_servers"]["anyOf"]
    assert [f["type"] for f in forms] == ["array", "object"]
    assert "name" not in s["$defs"]["McpServerEntry"].get("required", [])


def test_every_example_and_the_default_pass_the_schema_and_load():
    for text, origin in [(DEFAULT_CONFIG_YAML, "default"), *((p.read_text(), p.name) for p in EXAMPLES.glob("*.yaml"))]:
        data = yaml.safe_load(text)
        assert config_schema.structure_problems(data, origin) == [], origin
        parse_config(data, origin)


def test_every_structural_problem_is_reported_with_its_key_path():
    data = yaml.safe_load("""
agents:
  - id: a
    backend: {type: local, temprature: 0.3, temperature: hot}
  - id: b
    backend: {type: nope}
ui: {display_type: fancy}
""")
    found = [(p.path, p.message) for p in config_schema.problems(data, "f.yaml")]
    paths = [p for p, _ in found]
    assert paths == ["agents[0].backend.temprature", "agents[0].backend.temperature", "agents[1].backend.type",
                     "ui.display_type"]
    assert "unknown key" in found[0][1] and "expected number or null" in found[1][1]


def test_semantic_problems_of_every_agent_are_reported_and_a_clean_file_has_none(tmp_path: Path):
    data = yaml.safe_load("""
agents:
  - id: a
    backend: {type: chatcompletion, model: x}
  - id: b
    backend: {type: openai, model: gpt-5-mini, api_key: sk-literal}
  - id: c
    backend: {type: local}
""")
    found = [str(p) for p in config_schema.problems(data, "f.yaml")]
    assert len(found) == 2
    assert "`agents[0].backend.base_url` is required" in found[0]
    assert "`agents[1].backend.api_key` holds a literal key" in found[1]
    assert config_schema.problems(yaml.safe_load(DEFAULT_CONFIG_YAML)) == []


def test_semantic_problems_of_agent_and_other_blocks_are_reported_beside_structural_ones():
    data = yaml.safe_load("""
agent:
  id: a
  backend: {type: local, context_paths: [{path: /no/such/one}]}
ui: {display_type: fancy}
orchestrator: {context_paths: [{path: /no/such/two}]}
""")
    found = [str(p) for p in config_schema.problems(data, "f.yaml")]
    assert len(found) == 3
    assert "`ui.display_type`" in found[0]
    assert "`agent.backend.context_paths[0].path` '/no/such/one' does not exist" in found[1]
    assert "`orchestrator.context_paths[0].path` '/no/such/two' does not exist" in found[2]


def test_problems_of_agents_together_are_found_when_each_alone_is_fine():
    data = yaml.safe_load("agents:\n  - {id: a, backend: {type: local}}\n  - {id: a, backend: {type: local}}\n")
    assert [str(p) for p in config_schema.problems(data, "f.yaml")] == [
        "f.yaml: duplicate agent id `a` at `agents[1].id`; ids must be unique"]


def test_a_file_that_loads_has_no_problems_even_where_the_schema_does_not_know_a_key(monkeypatch):
    # e.g. a MassGen key that loading renames before validation: loading is the one source of truth
    data = yaml.safe_load("agents:\n  - {id: a, backend: {type: local, massgen_only_key: 1}}\n")
    assert config_schema.structure_problems(data) != []
    assert config_schema.problems(data) != []
    monkeypatch.setattr(config_schema, "parse_config", lambda data, origin="<config>": None)
    assert config_schema.problems(data) == []
