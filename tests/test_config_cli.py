"""`massgen config` (init, templates, validate, show) and `massgen submit --dry-run` as a person uses
them: the real command in a child process, the interactive `config init` driven through a
pseudo-terminal (pexpect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from massgen_cli import config_commands, config_init
from massgen_es.config import load_config
from massgen_es.testing.fake_openai import FakeOpenAI, team_member

MASSGEN = str(Path(sys.executable).parent / "massgen")
SHORTCUTS = "1234567890abcdefghijklmnopqrstuvwxyz"  # questionary's shortcut keys, in choice order
CLEAR = "\x15"  # Ctrl-U: clear a prefilled default before typing


def massgen(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([MASSGEN, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **env})


class Terminal:
    """`massgen config init` on a pseudo-terminal: wait for a question, then type the answer."""

    def __init__(self, out: Path, home: Path) -> None:
        env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "MASSGEN_HOME": str(home)}
        self.child = pexpect.spawn(MASSGEN, ["config", "init", "--out", str(out)], env=env, encoding="utf-8",
                                   timeout=30, dimensions=(40, 160))

    def answer(self, question: str, keys: str) -> None:
        self.child.expect_exact(question)
        self.child.send(keys)

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


def _backend_key(backend_type: str) -> str:
    return SHORTCUTS[config_init.backend_types().index(backend_type)] + "\r"


def test_init_interactive_local_team_with_the_defaults(tmp_path: Path) -> None:
    out = tmp_path / "team.yaml"
    t = Terminal(out, tmp_path)
    t.answer("How many agents?", "\r")  # default: 3
    for i in (1, 2, 3):
        t.answer(f"Agent {i} id", "\r")
        t.answer(f"Backend of agent{i}", "\r")  # the first choice: local
        t.answer(f"Model of agent{i}", "\r")
    t.answer("Add an MCP server", "\r")  # no
    t.answer("filesystem workspace", "\r")  # no
    t.answer("context path", "\r")  # no
    t.answer("run commands", "\r")  # no
    assert t.finish() == 0
    text = out.read_text()
    assert text.startswith(config_commands.modeline() + "\n")
    assert "# The team:" in text
    cfg = load_config(out)
    assert [a.id for a in cfg.team] == ["agent1", "agent2", "agent3"]
    assert all(a.backend.type == "local" and a.backend.api_key_env is None for a in cfg.team)
    assert all(a.backend.cwd is None and not a.backend.enable_mcp_command_line for a in cfg.team)


def test_init_interactive_mixed_team_with_mcp_context_path_and_docker(tmp_path: Path) -> None:
    shared = tmp_path / "docs"
    shared.mkdir()
    out = tmp_path / "mixed.yaml"
    t = Terminal(out, tmp_path)
    t.answer("How many agents?", CLEAR + "2\r")
    t.answer("Agent 1 id", CLEAR + "planner\r")
    t.answer("Backend of planner", _backend_key("openai"))
    t.answer("Model of planner", CLEAR + "gpt-4o-mini\r")
    t.answer("environment variable holding the API key", CLEAR + "MY_OPENAI_KEY\r")
    t.answer("Agent 2 id", CLEAR + "critic\r")
    t.answer("Backend of critic", _backend_key("claude"))
    t.answer("Model of critic", "\r")  # default claude-sonnet-4-5
    t.answer("environment variable holding the API key", "\r")  # default ANTHROPIC_API_KEY
    t.answer("Add an MCP server", "2\r")  # fetch
    t.answer("Another MCP server? (chosen: fetch)", "1\r")  # no more
    t.answer("filesystem workspace", "y")
    t.answer("Workspace directory name", "\r")
    t.answer("Share a directory or file", "y")
    t.answer("Path:", str(shared) + "\r")
    t.answer("Permission:", "2\r")  # write
    t.answer("Another context path? (1 so far)", "n")
    t.answer("run commands", "y")
    t.answer("Where do commands run?", "2\r")  # docker
    t.answer("Timeout per command", CLEAR + "90\r")
    t.answer("memory limit", CLEAR + "1g\r")
    assert t.finish() == 0
    text = out.read_text()
    assert "sk-" not in text and "${MY_OPENAI_KEY}" in text
    cfg = load_config(out)
    planner, critic = cfg.team
    assert (planner.id, planner.backend.type, planner.backend.model, planner.backend.api_key_env) == \
        ("planner", "openai", "gpt-4o-mini", "MY_OPENAI_KEY")
    assert (critic.id, critic.backend.type, critic.backend.model, critic.backend.api_key_env) == \
        ("critic", "claude", "claude-sonnet-4-5", "ANTHROPIC_API_KEY")
    for a in cfg.team:
        b = a.backend
        assert [(s.name, s.command, s.args) for s in b.mcp_servers] == [("fetch", "uvx", ("mcp-server-fetch",))]
        assert b.cwd == "workspace" and b.enable_mcp_command_line
        assert (b.command_line_execution_mode, b.command_line_timeout_seconds, b.command_line_docker_memory_limit) \
            == ("docker", 90.0, "1g")
    assert [(cp.path, cp.permission) for cp in cfg.orchestrator.context_paths] == [(str(shared), "write")]


def test_init_interactive_custom_endpoint_custom_mcp_command_and_local_execution(tmp_path: Path) -> None:
    out = tmp_path / "own.yaml"
    t = Terminal(out, tmp_path)
    t.answer("How many agents?", CLEAR + "1\r")
    t.answer("Agent 1 id", CLEAR + "own\r")
    t.answer("Backend of own", _backend_key("chatcompletion"))
    t.answer("Model of own", "my-model\r")
    t.answer("Endpoint (base_url)", CLEAR + "http://127.0.0.1:9999/v1\r")
    t.answer("environment variable holding the API key", "\r")  # none: a self-hosted endpoint
    t.answer("Add an MCP server", "6\r")  # custom
    t.answer("Server name", "mine\r")
    t.answer("Command (e.g.", "npx -y my-mcp-server --verbose\r")
    t.answer("Environment variables it needs", "MY_TOKEN\r")
    t.answer("Another MCP server? (chosen: mine)", "1\r")
    t.answer("filesystem workspace", "n")
    t.answer("context path", "n")
    t.answer("It adds a workspace", "y")  # execute_command without a workspace: one is added
    t.answer("Where do commands run?", "1\r")  # local
    t.answer("Timeout per command", "\r")
    assert t.finish() == 0
    (agent,) = load_config(out).team
    b = agent.backend
    assert (b.type, b.model, b.base_url, b.api_key_env) == ("chatcompletion", "my-model", "http://127.0.0.1:9999/v1",
                                                            None)
    (server,) = b.mcp_servers
    assert (server.name, server.command, server.args, server.env) == \
        ("mine", "npx", ("-y", "my-mcp-server", "--verbose"), {"MY_TOKEN": "${MY_TOKEN}"})
    assert (b.cwd, b.enable_mcp_command_line, b.command_line_execution_mode, b.command_line_timeout_seconds) == \
        ("workspace", True, "local", 60.0)


def test_init_interrupted_writes_nothing_and_exits_4(tmp_path: Path) -> None:
    out = tmp_path / "never.yaml"
    t = Terminal(out, tmp_path)
    t.answer("How many agents?", "\r")
    t.answer("Agent 1 id", "\x03")  # Ctrl-C
    assert t.finish() == 4
    assert not out.exists()


def test_init_refuses_to_overwrite_unless_forced_and_needs_a_terminal_without_a_template(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    out.write_text("keep me")
    refused = massgen("config", "init", "--template", "mixed", "--out", str(out))
    assert refused.returncode == 1 and "--force" in refused.stderr and out.read_text() == "keep me"
    forced = massgen("config", "init", "--template", "mixed", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert [a.backend.type for a in load_config(out).team] == ["openai", "claude", "gemini"]
    no_tty = subprocess.run([MASSGEN, "config", "init", "--out", str(tmp_path / "n.yaml")], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert no_tty.returncode == 1 and "--template" in no_tty.stderr
    unknown = massgen("config", "init", "--template", "nope", "--out", str(tmp_path / "u.yaml"))
    assert unknown.returncode == 1 and "local, mixed, research, coding" in unknown.stderr


def test_templates_are_listed_and_every_one_loads(tmp_path: Path) -> None:
    listed = massgen("config", "templates")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == list(config_commands.TEMPLATES) and len(names) >= 4
    for name in names:
        out = tmp_path / f"{name}.yaml"
        written = massgen("config", "init", "--template", name, "--out", str(out))
        assert written.returncode == 0, written.stderr
        assert out.read_text().startswith("# yaml-language-server: $schema=")
        assert load_config(out).team
    mcp = load_config(tmp_path / "research.yaml").team[0].backend.mcp_servers
    assert {s.name for s in mcp} == {"fetch", "search"}
    coding = load_config(tmp_path / "coding.yaml").team[0].backend
    assert coding.enable_mcp_command_line and coding.command_line_execution_mode == "docker"


def test_validate_reports_every_problem_of_every_file_and_exits_1(tmp_path: Path) -> None:
    d = tmp_path / "configs"
    d.mkdir()
    (d / "good.yaml").write_text(config_commands.template_text("local"))
    (d / "two_errors.yaml").write_text(
        "agents:\n  - id: a\n    backend: {type: local, temprature: 0.3}\nui: {display_type: fancy}\n")
    (d / "semantic.yaml").write_text(
        "agents:\n  - id: a\n    backend: {type: local, context_paths: [{path: /no/such/dir}]}\n"
        "  - id: b\n    backend: {type: openai, model: gpt-5-mini, api_key: sk-literal}\n")
    (d / "broken.yml").write_text("agents: [\n")
    result = massgen("config", "validate", str(d))
    assert result.returncode == 1
    text = result.stdout
    assert f"✓ {d / 'good.yaml'}" in text
    assert f"{d / 'two_errors.yaml'}: `agents[0].backend.temprature`: unknown key" in text
    assert f"{d / 'two_errors.yaml'}: `ui.display_type`: 'fancy' is not one of" in text
    assert "`agents[0].backend.context_paths[0].path` '/no/such/dir' does not exist" in text
    assert "`agents[1].backend.api_key` holds a literal key" in text
    assert f"{d / 'broken.yml'}: not valid YAML" in text
    assert "3 of 4 file(s) have problems" in result.stderr
    good = massgen("config", "validate", str(d / "good.yaml"))
    assert good.returncode == 0 and load_config(d / "good.yaml")


def test_show_prints_the_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"agent": {"id": "solo", "backend": {
        "type": "openai", "model": "gpt-5-mini", "api_key": "${OPENAI_API_KEY}",
        "mcp_servers": [
            {"name": "tool", "command": "npx", "args": ["-y", "some-server"],
             "env": {"SERVICE_TOKEN": "literal-token-value-123", "OTHER": "${OTHER_TOKEN}"}},
            {"name": "remote", "type": "streamable-http", "url": "https://mcp.example.com/mcp",
             "headers": {"Authorization": "Bearer abcdef0123456789", "X-Key": "${REMOTE_KEY}"}},
        ]}}}))
    result = massgen("config", "show", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "literal-token-value-123" not in result.stdout and "abcdef0123456789" not in result.stdout
    shown = yaml.safe_load(result.stdout)
    assert "agent" not in shown and [a["id"] for a in shown["agents"]] == ["solo"]
    backend = shown["agents"][0]["backend"]
    assert backend["api_key_env"] == "OPENAI_API_KEY" and backend["request_timeout_seconds"] == 600.0
    tool, remote = backend["mcp_servers"]
    assert tool["env"] == {"SERVICE_TOKEN": "[redacted]", "OTHER": "${OTHER_TOKEN}"}
    assert remote["headers"] == {"Authorization": "[redacted]", "X-Key": "${REMOTE_KEY}"}
    assert shown["timeout_settings"]["orchestrator_timeout_seconds"] == 1800.0


@pytest.mark.parametrize("as_json", [True, False])
def test_submit_dry_run_prints_the_plan_without_a_stack_or_an_llm_call(tmp_path: Path, as_json: bool) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    with FakeOpenAI() as fake:
        fake.default("fake-model", team_member("Paris"))
        endpoint = fake.base_url
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({
            "agents": [
                {"id": "writer", "backend": {"type": "chatcompletion", "model": "fake-model", "base_url": fake.base_url,
                                             "cwd": "workspace", "enable_mcp_command_line": True,
                                             "command_line_execution_mode": "docker",
                                             "command_line_docker_memory_limit": "1g",
                                             "mcp_servers": [{"name": "fetch", "command": "uvx",
                                                              "args": ["mcp-server-fetch"]}]}},
                {"id": "local", "backend": {"type": "local"}},
            ],
            "orchestrator": {"context_paths": [{"path": str(shared), "permission": "read"}]},
            "timeout_settings": {"orchestrator_timeout_seconds": 300},
        }))
        # An unreachable NATS: a command that started or joined a stack would fail with exit 2.
        result = massgen("submit", "What is the capital of France?", "--config", str(cfg), "--dry-run",
                         *(["--json"] if as_json else []), MASSGEN_NATS_URL="nats://127.0.0.1:1",
                         MASSGEN_HOME=str(tmp_path / "home"))
        assert result.returncode == 0, result.stderr
        assert fake.requests() == []
    plan = json.loads(result.stdout) if as_json else yaml.safe_load(result.stdout)
    writer, local = plan["agents"]
    assert (writer["id"], writer["backend"], writer["model"], writer["endpoint"]) == \
        ("writer", "chatcompletion", "fake-model", endpoint)
    assert writer["tools"]["workflow"] == ["new_answer", "vote"]
    servers = {s["name"]: s for s in writer["tools"]["mcp_servers"]}
    assert servers["fetch"]["command"] == ["uvx", "mcp-server-fetch"]
    assert set(servers) == {"fetch", "filesystem", "workspace_tools"}
    assert writer["tools"]["execute_command"]["mode"] == "docker"
    assert writer["sandbox"]["network"] == "none" and writer["sandbox"]["memory_limit"] == "1g"
    assert writer["context_paths"] == [{"path": str(shared.resolve()), "permission": "read", "protected_paths": []}]
    assert (local["backend"], local["api_key_env"], local["sandbox"]) == ("local", None, None)
    assert plan["timeouts"]["orchestrator_s"] == 300.0
    bad = massgen("submit", "q", "--config", str(tmp_path / "missing.yaml"), "--dry-run")
    assert bad.returncode == 1
