"""``massgen submit --dry-run``: what a run of a config would use, without an LLM call or a stack.

:func:`plan` reads the validated config and the ``run.submitted`` event it would append (context paths
merged and resolved as the services get them): per agent its backend, model, endpoint and key variable,
its tools (workflow tools, MCP servers, ``execute_command``), its sandbox, context paths and timeouts.
"""

from __future__ import annotations

from typing import Any

from massgen_es import ag2, backends, mcp, models
from massgen_es.config import (
    FILESYSTEM_SERVER,
    WORKSPACE_TOOLS_SERVER,
    BackendConfig,
    Config,
    is_massgen_workspace_tools,
    is_planning_server,
    server_names,
)
from massgen_es.events import RunSubmitted
from massgen_orchestrator import prompts


def _endpoint(b: BackendConfig) -> str:
    if b.type == "local" and not b.base_url:
        return "the embedded llama.cpp server (local)"
    if b.type == "azure_openai":
        return b.azure_endpoint or "$AZURE_OPENAI_ENDPOINT"
    if b.type == "claude_code":
        return "the Claude Code CLI (local process)"
    if b.type in ag2.TYPES:
        return "AG2 agents in the worker (each llm_config entry's endpoint)"
    return backends.base_url(b.type, b.base_url) or f"the {b.type} SDK's default"


def _model(b: BackendConfig) -> str | None:
    if b.type == "local" and not b.base_url:
        return b.model or models.DEFAULT_MODEL
    return b.model


def _servers(b: BackendConfig) -> list[dict[str, Any]]:
    """Every MCP server the agent gets, with how it is started or reached."""
    given = {s.name: s for s in b.mcp_servers}
    listed: list[dict[str, Any]] = []
    for name in server_names(b):
        s = given.get(name)
        if s is None or (name == WORKSPACE_TOOLS_SERVER and is_massgen_workspace_tools(s)):
            what = "the agent's workspace (MCP filesystem server)" if name == FILESYSTEM_SERVER else \
                "copy, delete and compare files in the workspace (massgen_mcp_broker.workspace_tools)"
            listed.append({"name": name, "type": "built-in", "what": what})
        elif is_planning_server(s):
            listed.append({"name": name, "type": "built-in",
                           "what": "the task plan (massgen_mcp_broker.task_planning)"})
        elif s.type == "stdio":
            executable, args = mcp.executable_and_args(s)
            listed.append({"name": name, "type": "stdio", "command": [executable, *args],
                           "env": sorted(s.env), "timeout_s": s.timeout})
        else:
            listed.append({"name": name, "type": s.type, "url": s.url, "headers": sorted(s.headers),
                           "timeout_s": s.timeout})
    return listed


def _execute_command(b: BackendConfig) -> dict[str, Any] | None:
    if not b.enable_mcp_command_line:
        return None
    return {"mode": b.command_line_execution_mode, "timeout_s": b.command_line_timeout_seconds,
            "max_output_chars": b.command_line_max_output_chars,
            "allowed_commands": list(b.command_line_allowed_commands),
            "blocked_commands": list(b.command_line_blocked_commands)}


def _sandbox(b: BackendConfig) -> dict[str, Any] | None:
    if not b.enable_mcp_command_line:
        return None
    if b.command_line_execution_mode == "docker":
        return {"mode": "docker", "image": b.command_line_docker_image,
                "dockerfile": b.command_line_docker_dockerfile, "network": b.command_line_docker_network_mode,
                "memory_limit": b.command_line_docker_memory_limit, "cpu_limit": b.command_line_docker_cpu_limit,
                "pids_limit": b.command_line_docker_pids_limit, "read_only_root": b.command_line_docker_read_only}
    isolated = b.command_line_execution_mode == "local"
    return {"mode": b.command_line_execution_mode,
            "isolation": "bubblewrap (own namespaces, only the workspace writable)" if isolated else
            "none: the host's filesystem, network and user",
            "network": ("host" if b.command_line_local_network else "loopback only") if isolated else "host"}


def plan(cfg: Config, submitted: RunSubmitted) -> dict[str, Any]:
    """The plan of a run of ``cfg`` (``submitted`` is the ``run.submitted`` event it would start with)."""
    workflow = [prompts.new_answer_tool().name, prompts.vote_tool(["agent1"]).name]
    if cfg.orchestrator.coordination.max_orchestration_restarts:
        workflow += [prompts.submit_tool().name, prompts.restart_tool().name]
    agents: list[dict[str, Any]] = []
    for a, spec in zip(cfg.team, submitted.agents, strict=True):
        b = a.backend
        url = backends.base_url(b.type, b.base_url)
        agents.append({
            "id": a.id,
            "backend": b.type,
            "model": _model(b),
            "endpoint": _endpoint(b),
            "api_key_env": backends.key_env(b.type, b.api_key_env, url) if b.type != "local" else None,
            "decisions": backends.tool_mode(b),
            "tools": {"workflow": list(workflow), "mcp_servers": _servers(b), "execute_command": _execute_command(b)},
            "workspace": b.cwd,
            "sandbox": _sandbox(b),
            "context_paths": [{"path": cp["path"], "permission": cp["permission"],
                               "protected_paths": cp["protected_paths"]} for cp in spec.backend["context_paths"]],
            "timeouts": {"request_s": b.request_timeout_seconds, "connect_s": b.connect_timeout_seconds,
                         "first_token_s": b.first_token_timeout_seconds, "max_retries": b.max_retries,
                         "max_tool_rounds": b.max_tool_rounds},
        })
    s = submitted.settings
    return {
        "dry_run": True,
        "config": submitted.config_path or "<default config>",
        "question": submitted.question,
        "agents": agents,
        "orchestrator": {"max_new_answers_per_agent": s.max_new_answers_per_agent,
                         "voting_sensitivity": s.voting_sensitivity,
                         "answer_novelty_requirement": s.answer_novelty_requirement,
                         "max_failed_turns": s.max_failed_turns, "max_cost_usd": s.max_cost_usd,
                         "planning_mode": s.planning_mode, "max_orchestration_restarts": s.max_orchestration_restarts,
                         "tool_rules": len(s.tool_rules)},
        "timeouts": {"orchestrator_s": s.orchestrator_timeout_s, "presentation_s": s.presentation_timeout_s,
                     "approval_s": s.approval_timeout_s},
    }
