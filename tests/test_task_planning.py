"""Agent task planning, ours (MassGen spec §1.15, ``coordination.enable_agent_task_planning``): the real
server process over stdio with the official MCP SDK client; the config keys and the injected server; then
a run through the broker on a real nats-server with a scripted model, the plan rebuilt from the log."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from test_mcp_broker import mcp_team, of, run, script
from test_workspace_tools import Tools

from massgen_es.config import PLANNING_SERVER, parse_config, run_submitted, server_names
from massgen_es.errors import ConfigError
from massgen_es.events import ToolCallCompleted, ToolsListed
from massgen_mcp_broker.runs import RunContext, resolve_launch
from massgen_mcp_broker.task_planning import HISTORY_META, TOOLS

PLANNING = {"coordination": {"enable_agent_task_planning": True}}


@asynccontextmanager
async def server(*args: str) -> AsyncIterator[Tools]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "massgen_mcp_broker.task_planning", *args])
    async with Client(stdio_client(params), mode="legacy") as client:
        yield Tools(client)


# ---------------------------------------------------------------- the server over stdio


async def test_offers_massgens_eight_tools_with_massgens_argument_names():
    async with server() as tools:
        listed = {t.name: set(t.input_schema.get("properties", {})) for t in (await tools.client.list_tools()).tools}
    assert listed == {
        "create_task_plan": {"tasks"}, "add_task": {"description", "after_task_id", "depends_on"},
        "update_task_status": {"task_id", "status"}, "edit_task": {"task_id", "description"},
        "get_task_plan": set(), "delete_task": {"task_id"}, "get_ready_tasks": set(), "get_blocked_tasks": set(),
    }
    assert set(listed) == set(TOOLS)


async def test_a_plan_with_dependencies_by_index_and_id_and_ready_and_blocked_tasks():
    async with server() as tools:
        created = await tools.ok("create_task_plan", tasks=[
            "Research", {"id": "build", "description": "Build", "depends_on": [0]},
            {"description": "Test", "depends_on": ["build"]}])
        assert [(t["id"], t["depends_on"]) for t in created["tasks"]] == [
            ("task_1", []), ("build", ["task_1"]), ("task_3", ["build"])]
        assert created["summary"]["ready_tasks"] == 1 and created["summary"]["blocked_tasks"] == 2
        assert [t["id"] for t in (await tools.ok("get_ready_tasks"))["ready_tasks"]] == ["task_1"]
        blocked = (await tools.ok("get_blocked_tasks"))["blocked_tasks"]
        assert [(t["id"], t["blocking_task_ids"]) for t in blocked] == [("build", ["task_1"]), ("task_3", ["build"])]
        done = await tools.ok("update_task_status", task_id="task_1", status="completed")
        assert [t["id"] for t in done["newly_ready_tasks"]] == ["build"]
        added = await tools.ok("add_task", description="Docs", after_task_id="task_1", depends_on=["build"])
        await tools.ok("edit_task", task_id="task_3", description="Test everything")
        plan = await tools.ok("get_task_plan")
        assert [t["id"] for t in plan["plan"]["tasks"]] == ["task_1", added["task"]["id"], "build", "task_3"]
        assert plan["plan"]["tasks"][3]["description"] == "Test everything"
        assert plan["summary"] == {"total_tasks": 4, "completed_tasks": 1, "in_progress_tasks": 0,
                                   "ready_tasks": 1, "blocked_tasks": 2}
        is_error, text = await tools.call("delete_task", task_id="build")
        assert is_error and "depend(s) on 'build'" in text
        assert (await tools.ok("delete_task", task_id=added["task"]["id"]))["deleted_task_id"] == added["task"]["id"]


async def test_refusals_name_the_problem():
    async with server() as tools:
        for tasks, expected in (([{"description": "A", "depends_on": [0]}], "must reference earlier tasks"),
                                ((["A", {"description": "B", "depends_on": ["nope"]}]), "not an earlier task"),
                                ([], "empty")):
            is_error, text = await tools.call("create_task_plan", tasks=tasks)
            assert is_error and expected in text, text
        await tools.ok("create_task_plan", tasks=["A"])
        is_error, text = await tools.call("update_task_status", task_id="task_1", status="done")
        assert is_error and "invalid status 'done'" in text
        is_error, text = await tools.call("edit_task", task_id="task_9", description="x")
        assert is_error and "no task 'task_9'" in text and "task_1" in text


async def test_a_plan_holds_at_most_max_tasks():
    async with server("--max-tasks", "3") as tools:
        is_error, text = await tools.call("create_task_plan", tasks=["a", "b", "c", "d"])
        assert is_error and "at most 3 tasks (max_tasks_per_plan)" in text
        await tools.ok("create_task_plan", tasks=["a", "b", "c"])
        is_error, text = await tools.call("add_task", description="d")
        assert is_error and "at most 3 tasks" in text


async def test_the_plan_is_rebuilt_from_the_history_in_meta_and_mirrored_to_tasks(tmp_path):
    history = [{"tool": "create_task_plan", "arguments": {"tasks": ["A", {"description": "B", "depends_on": [0]}]}},
               {"tool": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}]
    async with server("--workspace", str(tmp_path)) as tools:  # a fresh process: nothing in memory
        is_error, text = await tools.call("get_ready_tasks", meta={HISTORY_META: history})
        assert not is_error and [t["id"] for t in json.loads(text)["ready_tasks"]] == ["task_2"]
        is_error, text = await tools.call("update_task_status", meta={HISTORY_META: history}, task_id="task_2",
                                          status="in_progress")
        assert not is_error, text
    mirrored = json.loads((tmp_path / "tasks" / "plan.json").read_text())
    assert [(t["id"], t["status"]) for t in mirrored["tasks"]] == [("task_1", "completed"), ("task_2", "in_progress")]


# ---------------------------------------------------------------- config and injection


def team(**coordination) -> dict:
    backend = {"type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1", "cwd": "ws"}
    return {"agents": [{"id": "a", "backend": backend}],
            "orchestrator": {"coordination": {"enable_agent_task_planning": True, **coordination}}}


async def test_the_key_adds_the_planning_server_to_every_agent_launched_as_ours(massgen_home):
    cfg = parse_config(team(max_tasks_per_plan=4, task_planning_filesystem_mode=True))
    assert server_names(cfg.team[0].backend) == [PLANNING_SERVER, "filesystem", "workspace_tools"]
    context = RunContext.build("run-p", run_submitted("q", cfg), massgen_home)
    grant = context.agents["a"]
    assert PLANNING_SERVER in grant.builtin
    launch, _ = await resolve_launch(grant, grant.servers[PLANNING_SERVER], context, None)  # type: ignore[arg-type]
    assert (launch.command, launch.args) == (sys.executable, (
        "-m", "massgen_mcp_broker.task_planning", "--max-tasks", "4", "--workspace", str(grant.workspace.resolve())))
    assert server_names(parse_config(team(enable_agent_task_planning=False)).team[0].backend) == [
        "filesystem", "workspace_tools"]


def test_a_server_of_your_own_named_planning_and_a_bad_limit_name_the_fix():
    cfg = team()
    cfg["agents"][0]["backend"]["mcp_servers"] = [{"name": "planning", "command": "npx", "args": ["x"]}]
    with pytest.raises(ConfigError, match=r"named `planning`.*enable_agent_task_planning`; rename yours"):
        parse_config(cfg)
    with pytest.raises(ConfigError, match=r"`orchestrator.coordination.max_tasks_per_plan` must be >= 1"):
        parse_config(team(max_tasks_per_plan=0))


# ---------------------------------------------------------------- through the broker


async def test_through_the_broker_the_plan_lives_in_the_log_and_mirrors_to_the_workspace(
    fresh_nats, fake, massgen_home
):
    p = "mcp__planning__"
    rounds = (
        ((p + "create_task_plan", {"tasks": ["Outline", {"description": "Write", "depends_on": [0]}]}),),
        ((p + "update_task_status", {"task_id": "task_1", "status": "completed"}),),
        ((p + "get_ready_tasks", {}),),
    )
    cfg = mcp_team(fake, 1, [script(*rounds)], cwd="ws")
    cfg["orchestrator"] = {"coordination": {"enable_agent_task_planning": True, "task_planning_filesystem_mode": True}}
    run_id, records = await run(fresh_nats, massgen_home, cfg)
    listed = {e.server: e for e in of(records, ToolsListed)}
    assert {t.name for t in listed[PLANNING_SERVER].tools} == {p + t for t in TOOLS}
    done = [e for e in of(records, ToolCallCompleted) if e.server == PLANNING_SERVER]
    assert [(e.tool, e.is_error) for e in done] == [
        ("create_task_plan", False), ("update_task_status", False), ("get_ready_tasks", False)]
    assert [t["id"] for t in json.loads(done[2].content)["ready_tasks"]] == ["task_2"]
    workspace: Path = massgen_home / "runs" / run_id / "workspaces" / cfg["agents"][0]["id"]
    mirrored = json.loads((workspace / "tasks" / "plan.json").read_text())
    assert [(t["id"], t["status"]) for t in mirrored["tasks"]] == [("task_1", "completed"), ("task_2", "pending")]
