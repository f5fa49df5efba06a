"""MassGen's agent task-planning MCP server (MassGen spec §1.15, its ``_planning_mcp_server.py``), ours.
Run over stdio::

    python -m massgen_mcp_broker.task_planning [--max-tasks N] [--workspace DIR]

The MCP broker starts one for every agent of a run whose ``orchestrator.coordination.
enable_agent_task_planning`` is on, as the server named ``planning`` (``massgen_es.config.PLANNING_SERVER``;
MassGen names it after the real agent id, which would leak into tool names). ``--max-tasks`` is
``coordination.max_tasks_per_plan`` (default 10); ``--workspace`` is the agent's workspace when
``coordination.task_planning_filesystem_mode`` is on and the agent has one: the plan is then mirrored to
``<workspace>/tasks/plan.json`` after every change, as MassGen does.

Tools, with MassGen's names and arguments: ``create_task_plan(tasks)`` (strings or ``{id?, description,
depends_on?}`` objects; a dependency is an earlier task's index or any earlier id; replaces the plan),
``add_task(description, after_task_id?, depends_on?)``, ``update_task_status(task_id, status)``
(``pending|in_progress|completed|blocked``; the result lists the tasks it made ready), ``edit_task(task_id,
description?)``, ``get_task_plan()``, ``delete_task(task_id)`` (refused while another task depends on it),
``get_ready_tasks()`` (pending, every dependency completed), ``get_blocked_tasks()`` (pending, waiting on
``blocking_task_ids``). Each result is a JSON object with ``success: true`` and ``operation``; each
refusal (unknown id, a dependency on a later or unknown task, a cycle, more than ``--max-tasks`` tasks, a
bad status) is a tool error that names the problem and the fix. Task ids given by the server are
``task_<n>`` (its position in the plan when free, else the next free number; no randomness), so the same
calls give the same plan.

Where the plan lives (the brief's choice): **derived from the run's log**. Every call the broker makes
carries, in the request ``_meta`` key :data:`HISTORY_META`, the agent's earlier completed calls of this
server (tool and arguments, folded from the log's ``tool.call_requested``/``tool.call_completed``); the
server replays them into an empty plan before applying the new call. So a restarted broker (or a server
process started afresh) answers exactly as before, with nothing kept only in a process; the
``tasks/plan.json`` mirror of filesystem mode is an output for the agent to read, never read back. Run on
its own (no ``_meta``), the server keeps the plan in memory for the life of the process.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

HISTORY_META = "massgen/task_planning_history"
"""Request ``_meta`` key: ``[{"tool": str, "arguments": {...}}, ...]``, the agent's earlier completed calls."""
STATUSES = ("pending", "in_progress", "completed", "blocked")
DEFAULT_MAX_TASKS = 10
"""MassGen's ``max_tasks_per_plan`` default (spec §5.2 table)."""


@dataclass
class Task:
    """One task: ``id``, ``description``, ``status`` (one of :data:`STATUSES`), ``depends_on`` (task ids)."""

    id: str
    description: str
    status: str = "pending"
    depends_on: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The task as MassGen's tools show it: ``{id, description, status, depends_on}``."""
        return {"id": self.id, "description": self.description, "status": self.status,
                "depends_on": list(self.depends_on)}


class TaskPlan:
    """An agent's plan, in order, and the eight tools without MCP: each returns its JSON-able result and
    raises the SDK's ``ToolError`` to refuse (MassGen spec §1.15).

    Args:
        max_tasks: tasks a plan may hold (``max_tasks_per_plan``).
    """

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if max_tasks < 1:
            raise ValueError("max_tasks must be >= 1")
        self.max_tasks = max_tasks
        self.tasks: list[Task] = []
        self._next = 1

    def _new_id(self) -> str:
        while any(t.id == f"task_{self._next}" for t in self.tasks):
            self._next += 1
        self._next += 1
        return f"task_{self._next - 1}"

    def get(self, tool: str, task_id: str) -> Task:
        """The task ``task_id``. Raises ToolError: no such task (the text lists the ids)."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        known = ", ".join(t.id for t in self.tasks) or "none; create a plan with create_task_plan"
        raise ToolError(f"{tool}: no task {task_id!r}; the plan's task ids are: {known}")

    def _check_room(self, tool: str, adding: int) -> None:
        if len(self.tasks) + adding > self.max_tasks:
            raise ToolError(f"{tool}: a plan holds at most {self.max_tasks} tasks (max_tasks_per_plan) and this "
                            f"would make {len(self.tasks) + adding}; merge tasks or delete finished ones first")

    def ready(self) -> list[Task]:
        """Pending tasks whose dependencies are all completed."""
        done = {t.id for t in self.tasks if t.status == "completed"}
        return [t for t in self.tasks if t.status == "pending" and set(t.depends_on) <= done]

    def blocked(self) -> list[Task]:
        """Pending tasks waiting on a dependency that is not completed."""
        ready = {t.id for t in self.ready()}
        return [t for t in self.tasks if t.status == "pending" and t.id not in ready]

    def summary(self) -> dict[str, int]:
        """Counts of all, completed, in-progress, ready and blocked tasks."""
        return {"total_tasks": len(self.tasks),
                "completed_tasks": sum(t.status == "completed" for t in self.tasks),
                "in_progress_tasks": sum(t.status == "in_progress" for t in self.tasks),
                "ready_tasks": len(self.ready()), "blocked_tasks": len(self.blocked())}

    # ------------------------------------------------------------ the tools (MassGen's arguments)

    def create_task_plan(self, tasks: list[str | dict[str, Any]]) -> dict[str, Any]:
        """Replace the plan by ``tasks`` (strings or ``{id?, description, depends_on?}``; a dependency is an
        earlier index or id). Raises ToolError: empty, too many, a bad task or dependency."""
        tool = "create_task_plan"
        if not tasks:
            raise ToolError(f"{tool}: the task list is empty; give at least one task")
        fresh = TaskPlan(self.max_tasks)
        fresh._check_room(tool, len(tasks))
        for i, spec in enumerate(tasks):
            if isinstance(spec, str):
                spec = {"description": spec}
            if not isinstance(spec, dict) or not isinstance(spec.get("description"), str):
                raise ToolError(f"{tool}: task {i} must be a string or an object with a description")
            fresh._next = max(fresh._next, i + 1)  # a generated id is task_<position>, when free
            task_id = spec.get("id") or fresh._new_id()
            if not isinstance(task_id, str) or any(t.id == task_id for t in fresh.tasks):
                raise ToolError(f"{tool}: task {i} has a repeated or invalid id {task_id!r}; ids must be unique")
            deps = []
            for dep in spec.get("depends_on") or []:
                if isinstance(dep, int) and not isinstance(dep, bool):
                    if not 0 <= dep < i:
                        raise ToolError(f"{tool}: task {i} depends on index {dep}; dependencies must reference "
                                        "earlier tasks in the list (indexes from 0)")
                    deps.append(fresh.tasks[dep].id)
                elif isinstance(dep, str) and any(t.id == dep for t in fresh.tasks):
                    deps.append(dep)
                else:
                    raise ToolError(f"{tool}: task {i} depends on {dep!r}, which is not an earlier task; "
                                    "dependencies must reference earlier tasks (by index or id)")
            fresh.tasks.append(Task(task_id, spec["description"], depends_on=deps))
        self.tasks, self._next = fresh.tasks, fresh._next
        return {"operation": tool, "tasks": [t.to_dict() for t in self.tasks], "summary": self.summary()}

    def add_task(self, description: str, after_task_id: str | None = None,
                 depends_on: list[str] | None = None) -> dict[str, Any]:
        """Insert a task after ``after_task_id`` (default: last). Raises ToolError: full, unknown id."""
        tool = "add_task"
        self._check_room(tool, 1)
        for dep in depends_on or []:
            self.get(tool, dep)  # a new task cannot close a cycle: nothing depends on it yet
        at = len(self.tasks) if after_task_id is None else self.tasks.index(self.get(tool, after_task_id)) + 1
        task = Task(self._new_id(), description, depends_on=list(depends_on or []))
        self.tasks.insert(at, task)
        return {"operation": tool, "task": task.to_dict()}

    def update_task_status(self, task_id: str, status: str) -> dict[str, Any]:
        """Set a status; the result lists ``newly_ready_tasks``. Raises ToolError: bad status, unknown id."""
        tool = "update_task_status"
        if status not in STATUSES:
            raise ToolError(f"{tool}: invalid status {status!r}; use one of {', '.join(STATUSES)}")
        task = self.get(tool, task_id)
        before = {t.id for t in self.ready()}
        task.status = status
        newly = [t.to_dict() for t in self.ready() if t.id not in before]
        return {"operation": tool, "task": task.to_dict(), "newly_ready_tasks": newly}

    def edit_task(self, task_id: str, description: str | None = None) -> dict[str, Any]:
        """Change a description. Raises ToolError: unknown id."""
        task = self.get("edit_task", task_id)
        if description is not None:
            task.description = description
        return {"operation": "edit_task", "task": task.to_dict()}

    def get_task_plan(self) -> dict[str, Any]:
        """``{plan: {tasks}, summary}``."""
        return {"operation": "get_task_plan", "plan": {"tasks": [t.to_dict() for t in self.tasks]},
                "summary": self.summary()}

    def delete_task(self, task_id: str) -> dict[str, Any]:
        """Remove a task. Raises ToolError: unknown id, or another task depends on it."""
        tool = "delete_task"
        task = self.get(tool, task_id)
        dependents = [t.id for t in self.tasks if task_id in t.depends_on]
        if dependents:
            raise ToolError(f"{tool}: {', '.join(dependents)} depend(s) on {task_id!r}; delete or edit those "
                            "tasks first")
        self.tasks.remove(task)
        return {"operation": tool, "deleted_task_id": task_id}

    def get_ready_tasks(self) -> dict[str, Any]:
        """``{ready_tasks, count}``: pending tasks whose dependencies are all completed."""
        ready = self.ready()
        return {"operation": "get_ready_tasks", "ready_tasks": [t.to_dict() for t in ready], "count": len(ready)}

    def get_blocked_tasks(self) -> dict[str, Any]:
        """``{blocked_tasks, count}``, each task with the ``blocking_task_ids`` not yet completed."""
        done = {t.id for t in self.tasks if t.status == "completed"}
        blocked = [{**t.to_dict(), "blocking_task_ids": [d for d in t.depends_on if d not in done]}
                   for t in self.blocked()]
        return {"operation": "get_blocked_tasks", "blocked_tasks": blocked, "count": len(blocked)}

    def apply(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call the tool named ``tool`` with ``arguments``. Raises ToolError: unknown tool or a refusal."""
        method = getattr(self, tool, None) if tool in TOOLS else None
        if method is None:
            raise ToolError(f"no task-planning tool {tool!r}")
        return method(**arguments)


TOOLS = ("create_task_plan", "add_task", "update_task_status", "edit_task", "get_task_plan", "delete_task",
         "get_ready_tasks", "get_blocked_tasks")
"""MassGen's eight tool names (spec §1.15)."""


def replay(history: Sequence[Any], max_tasks: int) -> TaskPlan:
    """The plan the calls of ``history`` (:data:`HISTORY_META`'s shape) give; a call that was refused
    then is refused again and changes nothing, so every earlier call may be passed."""
    plan = TaskPlan(max_tasks)
    for call in history:
        if isinstance(call, dict) and isinstance(call.get("arguments"), dict):
            try:
                plan.apply(str(call.get("tool")), call["arguments"])
            except (ToolError, TypeError):
                continue
    return plan


class PlanningServer:
    """The state behind the MCP server: the in-memory plan and the optional ``tasks/`` mirror."""

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS, workspace: Path | None = None) -> None:
        self.plan = TaskPlan(max_tasks)
        self.workspace = workspace

    def call(self, tool: str, arguments: dict[str, Any], ctx: Context | None) -> str:
        """Rebuild the plan from the log's history when the broker sent it, apply the call, mirror, answer."""
        meta = (ctx.request_context.meta or {}) if ctx is not None else {}
        history = meta.get(HISTORY_META)
        if isinstance(history, list):
            self.plan = replay(history, self.plan.max_tasks)
        result = self.plan.apply(tool, {k: v for k, v in arguments.items() if v is not None})
        if self.workspace is not None and tool not in ("get_task_plan", "get_ready_tasks", "get_blocked_tasks"):
            tasks_dir = self.workspace / "tasks"
            tasks_dir.mkdir(parents=True, exist_ok=True)
            (tasks_dir / "plan.json").write_text(json.dumps(self.plan.get_task_plan()["plan"], indent=2))
        return json.dumps({"success": True, **result}, indent=1)


def create_server(state: PlanningServer) -> MCPServer:
    """The MCP server offering MassGen's eight task-planning tools over ``state`` (MassGen spec §1.15)."""
    server = MCPServer("task_planning", instructions="Plan your work as tasks with dependencies and track them.")

    @server.tool()
    def create_task_plan(tasks: list[str | dict[str, Any]], ctx: Context) -> str:
        """Create a new task plan (replacing any plan). Each task is a string or {"id"?, "description",
        "depends_on"?: [earlier index or id, ...]}; tasks without dependencies can start at once."""
        return state.call("create_task_plan", {"tasks": tasks}, ctx)

    @server.tool()
    def add_task(description: str, ctx: Context, after_task_id: str | None = None,
                 depends_on: list[str] | None = None) -> str:
        """Add a task after after_task_id (default: at the end), depending on the given task ids."""
        return state.call("add_task", {"description": description, "after_task_id": after_task_id,
                                       "depends_on": depends_on}, ctx)

    @server.tool()
    def update_task_status(task_id: str, status: str, ctx: Context) -> str:
        """Set a task's status (pending, in_progress, completed, blocked); lists tasks that became ready."""
        return state.call("update_task_status", {"task_id": task_id, "status": status}, ctx)

    @server.tool()
    def edit_task(task_id: str, ctx: Context, description: str | None = None) -> str:
        """Change a task's description."""
        return state.call("edit_task", {"task_id": task_id, "description": description}, ctx)

    @server.tool()
    def get_task_plan(ctx: Context) -> str:
        """The whole plan with every task's status and a summary."""
        return state.call("get_task_plan", {}, ctx)

    @server.tool()
    def delete_task(task_id: str, ctx: Context) -> str:
        """Remove a task no other task depends on."""
        return state.call("delete_task", {"task_id": task_id}, ctx)

    @server.tool()
    def get_ready_tasks(ctx: Context) -> str:
        """Pending tasks whose dependencies are all completed: what you can work on now."""
        return state.call("get_ready_tasks", {}, ctx)

    @server.tool()
    def get_blocked_tasks(ctx: Context) -> str:
        """Pending tasks still waiting on dependencies, each with the blocking_task_ids."""
        return state.call("get_blocked_tasks", {}, ctx)

    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line (see the module docstring) and serve over stdio until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m massgen_mcp_broker.task_planning",
                                     description="MassGen's agent task-planning MCP server (stdio).")
    parser.add_argument("--max-tasks", type=int, default=DEFAULT_MAX_TASKS, help="tasks a plan may hold")
    parser.add_argument("--workspace", help="mirror the plan to WORKSPACE/tasks/plan.json (filesystem mode)")
    args = parser.parse_args(argv)
    create_server(PlanningServer(args.max_tasks, Path(args.workspace) if args.workspace else None)).run("stdio")


if __name__ == "__main__":
    main()
