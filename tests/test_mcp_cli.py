"""``massgen mcp list|call``, ``massgen replay --mcp/--exec/--agent/--type/--summary`` and ``massgen runs
--stats`` as a user runs them: child processes on the embedded stack (a real nats-server, the services),
the SDK-built test MCP server and the npm filesystem server, scripted models on the wire-level fake."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from test_cli import massgen as _massgen
from test_mcp_broker import tool_server

from massgen_es.testing.fake_openai import FakeOpenAI, team_member


def massgen(*args: str, **env: str):
    """The command, on a terminal wide enough that rich wraps no line the tests look for."""
    return _massgen(*args, COLUMNS="250", **env)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MASSGEN_HOME (one event log) for the module's commands."""
    return tmp_path_factory.mktemp("massgen-home")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One agent with the test server, ``crash`` excluded, and a filesystem workspace."""
    tmp = tmp_path_factory.mktemp("cfg")
    path = tmp / "team.yaml"
    path.write_text(yaml.safe_dump({"agents": [{"id": "alpha", "backend": {
        "type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1", "cwd": "ws",
        "mcp_servers": [tool_server(tmp, exclude_tools=["crash"])]}}]}))
    return path


@pytest.fixture(scope="module")
def call_run(home: Path, config: Path) -> dict:
    """``massgen mcp call t echo`` once: its JSON output."""
    done = massgen("mcp", "call", "t", "echo", "--args", '{"text": "ping"}', "--config", str(config), "--json",
                   MASSGEN_HOME=str(home))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mcp_list_shows_each_servers_state_catalog_version_and_input_schemas(home: Path, config: Path):
    done = massgen("mcp", "list", "--config", str(config), "--json", MASSGEN_HOME=str(home))
    assert done.returncode == 0, done.stderr
    servers = {s["server"]: s for s in json.loads(done.stdout)}
    assert set(servers) == {"t", "filesystem", "workspace_tools"}  # `cwd` adds the last two
    t = servers["t"]
    assert (t["state"] in ("started", "running"), t["breaker"], t["catalog_version"], t["error"]) == (
        True, "closed", 1, None)
    tools = {x["name"]: x for x in t["tools"]}
    assert tools["echo"]["input_schema"]["required"] == ["text"] and tools["echo"]["prefixed"] == "mcp__t__echo"
    assert tools["echo"]["allowed"] and not tools["crash"]["allowed"]  # exclude_tools, as the agent sees it
    assert any(x["name"] == "read_text_file" for x in servers["filesystem"]["tools"])
    assert any(x["name"] == "copy_file" for x in servers["workspace_tools"]["tools"])
    table = massgen("mcp", "list", "--config", str(config), MASSGEN_HOME=str(home))
    assert table.returncode == 0 and "echo" in table.stdout and '"required":["text"]' in table.stdout


def test_mcp_call_is_recorded_as_a_run_that_replay_shows(home: Path, call_run: dict):
    assert (call_run["status"], call_run["result"], call_run["is_error"]) == ("completed", "echo: ping", False)
    run_id = call_run["run_id"]
    report = massgen("replay", run_id, "--mcp", MASSGEN_HOME=str(home))
    assert report.returncode == 0, report.stderr
    assert "MCP calls (1)" in report.stdout and "echo" in report.stdout and '{"text":"ping"}' in report.stdout
    only = massgen("replay", run_id, "--json", "--type", "tool.call_completed", MASSGEN_HOME=str(home))
    [line] = only.stdout.splitlines()
    assert json.loads(line)["event"]["content"] == "echo: ping"
    lines = massgen("replay", run_id, "--json", MASSGEN_HOME=str(home)).stdout.splitlines()
    types = [json.loads(x)["type"] for x in lines]
    # No agent turn: the command line's request, the broker's marker and outcome, the orchestrator's end.
    assert "turn.requested" not in types and types[-1] == "run.completed", types
    assert types[:2] == ["run.submitted", "tool.call_requested"]
    assert {"tool.call_started", "tool.call_completed"} <= set(types)
    check = massgen("replay", run_id, "--check", MASSGEN_HOME=str(home))
    assert check.returncode == 0 and "decisions reproduced" in check.stderr
    runs = [json.loads(x) for x in massgen("runs", "--json", MASSGEN_HOME=str(home)).stdout.splitlines()]
    assert {"run_id": run_id, "status": "completed"}.items() <= next(r for r in runs if r["run_id"] == run_id).items()


def test_mcp_call_on_the_filesystem_server_uses_the_agents_workspace(home: Path, config: Path):
    done = massgen("mcp", "call", "filesystem", "list_allowed_directories", "--config", str(config), "--json",
                   MASSGEN_HOME=str(home))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert f"runs/{out['run_id']}/workspaces/alpha" in out["result"]


def test_mcp_call_errors_name_the_problem_and_the_fix(home: Path, config: Path):
    unknown_server = massgen("mcp", "call", "weather", "x", "--config", str(config), MASSGEN_HOME=str(home))
    assert unknown_server.returncode == 1
    assert "no agent of" in unknown_server.stderr and "named 'weather'" in unknown_server.stderr
    assert "configured: filesystem, t, workspace_tools" in unknown_server.stderr
    bad_json = massgen("mcp", "call", "t", "echo", "--args", "{text", "--config", str(config), MASSGEN_HOME=str(home))
    assert bad_json.returncode == 1 and "--args is not valid JSON" in bad_json.stderr
    unknown_tool = massgen("mcp", "call", "t", "nope", "--config", str(config), MASSGEN_HOME=str(home))
    assert unknown_tool.returncode == 2
    assert "UnknownTool" in unknown_tool.stderr and "massgen mcp list" in unknown_tool.stderr
    wrong = massgen("mcp", "call", "t", "echo", "--args", '{"txt": 1}', "--config", str(config), MASSGEN_HOME=str(home))
    assert wrong.returncode == 2
    assert "ToolArgumentError" in wrong.stderr and "fix --args" in wrong.stderr
    excluded = massgen("mcp", "call", "t", "crash", "--config", str(config), MASSGEN_HOME=str(home))
    assert excluded.returncode == 2 and "ToolPermissionError" in excluded.stderr


def test_replay_filters_refuse_what_cannot_match_naming_the_fix(home: Path, call_run: dict):
    run_id = call_run["run_id"]
    nobody = massgen("replay", run_id, "--agent", "nobody", MASSGEN_HOME=str(home))
    assert nobody.returncode == 1 and "its agents: alpha" in nobody.stderr
    typo = massgen("replay", run_id, "--type", "tool.call_done", MASSGEN_HOME=str(home))
    assert typo.returncode == 1 and "matches no event type" in typo.stderr
    both = massgen("replay", run_id, "--mcp", "--exec", MASSGEN_HOME=str(home))
    assert both.returncode == 1 and "pick one" in both.stderr


def test_replay_report_summary_and_runs_stats_show_consensus_analytics(tmp_path: Path):
    with FakeOpenAI() as fake:
        fake.default("ma", team_member("Paris", vote_for="agent2"))
        fake.default("mb", team_member("Paris, France", vote_for="agent2"))
        cfg = tmp_path / "team.yaml"
        cfg.write_text(yaml.safe_dump({"agents": [
            {"id": aid, "backend": {"type": "chatcompletion", "model": m, "base_url": fake.base_url}}
            for aid, m in (("alpha", "ma"), ("beta", "mb"))
        ]}))
        run = massgen("submit", "Capital of France?", "--config", str(cfg), "--json")
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout)["run_id"]
    summary = json.loads(massgen("replay", run_id, "--summary").stdout)["analytics"]
    assert summary["winner"] == "beta" and summary["time_to_consensus_s"] > 0
    assert summary["persuasion"] == [{"voter": "alpha", "author": "beta", "votes": 1}]
    report = massgen("replay", run_id).stdout
    assert "who persuaded whom" in report and re.search(r"beta\s+│\s+yes", report)
    beta_only = json.loads(massgen("replay", run_id, "--summary", "--agent", "beta").stdout)
    assert set(beta_only["usage"]["per_agent"]["alpha"].values()) == {0}  # alpha's events were left out
    stats = json.loads(massgen("runs", "--stats", "--json").stdout)
    assert stats["runs"] == 1 and stats["per_agent"]["beta"]["wins"] == 1 and stats["per_agent"]["alpha"]["wins"] == 0
    table = massgen("runs", "--stats").stdout
    assert "per agent, across runs" in table and "100%" in table


def test_mcp_list_names_a_server_that_cannot_start_and_exits_2(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    broken = {"name": "broken", "type": "stdio", "command": sys.executable, "args": [str(tmp_path / "missing.py")]}
    cfg.write_text(yaml.safe_dump({"agents": [{"id": "alpha", "backend": {
        "type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1",
        "mcp_servers": [broken, tool_server(tmp_path)]}}]}))
    done = massgen("mcp", "list", "--config", str(cfg))
    assert done.returncode == 2
    assert "broken (alpha): MCP server 'broken' failed to start" in done.stdout and "see " in done.stdout
    assert re.search(r"│ t\s+│ stdio │ started", done.stdout)  # the other server is still listed
