"""MassGen-shaped YAML configuration (MassGen spec §5.2), validated strictly.

Accepted shape::

    agents:                      # or `agent:` with a single entry
      - id: researcher
        backend: {type: chatcompletion, model: gpt-4o-mini, base_url: ..., api_key_env: OPENAI_API_KEY}
        system_message: "..."
    orchestrator: {max_new_answers_per_agent: 2, voting_sensitivity: lenient, ...}
    timeout_settings: {orchestrator_timeout_seconds: 1800}
    ui: {display_type: rich_terminal}

Every struct forbids unknown fields, so a typo fails with the key's path. Secrets never enter the
event log (docs/architecture principle 7): ``api_key`` may only reference an environment variable (``${NAME}``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args
from urllib.parse import urlsplit

import msgspec
import yaml

from massgen_es import ag2, backends, compat, custom_tools, docker_setup, mcp, media, models, skills
from massgen_es import memory as memory_block
from massgen_es.custom_tools import CustomToolSpec
from massgen_es.errors import ConfigError
from massgen_es.events import AgentSpec, ExecutionMode, Paraphrasing, RunSettings, RunSubmitted, ToolRule
from massgen_es.mcp import McpServerConfig
from massgen_es.tool_safety import ToolSafetyConfig

BackendType = Literal[
    "chatcompletion", "local", "openai", "claude", "gemini", "azure_openai", "claude_code",
    # chatcompletion presets: a default base_url and API-key variable each (massgen_es.backends)
    "grok", "cerebras", "together", "fireworks", "groq", "openrouter", "moonshot", "kimi", "nebius", "qwen",
    "zai", "lmstudio", "vllm", "sglang",
    # AG2 (AutoGen) agents or group chats, MassGen's ExternalAgentBackend (massgen_es.ag2)
    "ag2", "autogen",
]
Sensitivity = Literal["lenient", "balanced", "strict"]

FILESYSTEM_SERVER = "filesystem"
"""Name of the MCP filesystem server that ``backend.cwd`` adds (MassGen spec §3.5)."""
WORKSPACE_TOOLS_SERVER = "workspace_tools"
"""Name of MassGen's copy/delete/compare server that ``backend.cwd`` adds too (MassGen spec §3.5); ours is
``massgen_mcp_broker.workspace_tools``."""
_STANDARD_FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"
_MASSGEN_WORKSPACE_TOOLS = "filesystem_manager._workspace_tools_server"
PLANNING_SERVER = "planning"
"""Name of the task-planning server that ``coordination.enable_agent_task_planning`` adds to every agent
(MassGen spec §1.15; MassGen names it ``planning_<agent id>``, which would put real ids in tool names)."""
PLANNING_MODULE = "massgen_mcp_broker.task_planning"
"""Our task-planning server: the MCP broker starts it for an entry :func:`is_planning_server` accepts."""

_log = logging.getLogger("massgen.config")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ContextPath(_Strict, frozen=True):
    """A directory or file shared with agents (MassGen spec §3.5): read-only during coordination;
    ``write`` becomes writable for the winner's final presentation only."""

    path: str
    permission: Literal["read", "write"] = "read"
    protected_paths: tuple[str, ...] = ()
    """Paths relative to ``path`` that are never deleted or overwritten, even when ``path`` is writable."""


class ReasoningConfig(_Strict, frozen=True):
    """``reasoning:`` for reasoning models (OpenAI Responses API: effort and summaries)."""

    effort: Literal["minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ThinkingConfig(_Strict, frozen=True):
    """``thinking:`` for Claude's extended thinking (Anthropic ``thinking: {type, budget_tokens}``)."""

    type: Literal["enabled", "disabled"] = "enabled"
    budget_tokens: int = 1024


class TextConfig(_Strict, frozen=True):
    """``text:`` of the OpenAI Responses API."""

    verbosity: Literal["low", "medium", "high"] | None = None


class CustomToolConfig(_Strict, frozen=True):
    """One entry of a backend's ``custom_tools`` (MassGen spec §2.5): Python functions offered to the model
    as ``custom_tool__<name>``, their schema read from the file's signature and docstring, each call run
    by the executor in the agent's sandbox (``massgen_es.custom_tools``). The str-or-list forms pair up
    by position: the i-th ``name``/``description``/``preset_args`` belong to the i-th ``function``."""

    function: str | tuple[str, ...] | None = None
    """The function(s) in ``path``; required."""
    name: str | tuple[str, ...] | None = None
    """The tool name(s) after ``custom_tool__`` (default: the function's name)."""
    path: str | None = None
    """The Python file. Without it, or under MassGen's ``massgen/tool/``, it names one of MassGen's
    bundled tools: ``two_num_tool`` (and the broken ``wrong_two_num_tool``) are provided, the others refused."""
    description: str | tuple[str, ...] | None = None
    """Replaces the docstring's description for the model."""
    category: str | None = None
    preset_args: dict[str, Any] | tuple[dict[str, Any], ...] | None = None
    """Arguments always passed, hidden from the model's schema."""


class BackendConfig(_Strict, frozen=True):
    """An agent's ``backend`` block.

    ``chatcompletion`` reaches any OpenAI-compatible endpoint through the ``openai`` SDK; ``local`` is
    the embedded llama.cpp server with a GGUF model installed from PyPI (see ``massgen_agent_worker.local_llm``).
    """

    type: BackendType
    model: str | None = None
    base_url: str | None = None
    """Endpoint; default ``https://api.openai.com/v1`` for chatcompletion, the embedded server for local."""
    api_key: str | None = None
    """Only ``${ENV_VAR}`` is accepted; it is stored as ``api_key_env``."""
    api_key_env: str | None = None
    """Name of the environment variable holding the key (default ``OPENAI_API_KEY`` for chatcompletion)."""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    tool_mode: Literal["native", "json_schema"] | None = None
    """How workflow decisions are taken: native tool calls (default for chatcompletion) or
    JSON-schema-constrained output (default for local, whose small models emit no tool calls)."""
    request_timeout_seconds: float = 600.0
    """Total time one LLM call may take."""
    connect_timeout_seconds: float = 10.0
    first_token_timeout_seconds: float | None = None
    """Time until the first streamed chunk (text, tool-call or thinking delta); None: no separate limit."""
    max_retries: int = 3
    """Retries of a retryable provider error (rate limit, 5xx, connection, timeout); each is an event."""
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    thinking: ThinkingConfig | None = None
    enable_web_search: bool = False
    enable_code_execution: bool = False
    betas: tuple[str, ...] = ()
    """``claude``: Anthropic beta features, sent as the ``anthropic-beta`` header (MassGen spec §5.2)."""
    extra_body: dict[str, Any] = {}
    """Extra request fields passed through (vLLM ``top_k``, Grok ``search_parameters`` ...)."""
    api_version: str | None = None
    """``azure_openai``: API version (default ``2024-12-01-preview``)."""
    azure_endpoint: str | None = None
    """``azure_openai``: the resource endpoint (or ``AZURE_OPENAI_ENDPOINT``); ``model`` is the deployment."""
    permission_mode: Literal["default", "acceptEdits", "bypassPermissions", "plan"] | None = None
    """``claude_code``: permission mode of the Claude Agent SDK (default ``acceptEdits``)."""
    disallowed_tools: tuple[str, ...] = ()
    """``claude_code``: built-in tools Claude Code may not use."""
    max_thinking_tokens: int | None = None
    """``claude_code``: thinking budget."""
    agent_config: dict[str, Any] | None = None
    """``ag2``: one AG2 agent (``type``, ``name``, ``system_message``, ``llm_config``,
    ``code_execution_config``); see ``massgen_es.ag2``."""
    group_config: dict[str, Any] | None = None
    """``ag2``: an AG2 group chat (``llm_config``, ``agents``, ``pattern``, ``max_rounds``); see
    ``massgen_es.ag2``."""
    mcp_servers: tuple[McpServerConfig, ...] = ()
    """MCP servers of this agent (MassGen also accepts a mapping keyed by name; normalised on load)."""
    allowed_tools: tuple[str, ...] | None = None
    """Backend-level MCP tool allowlist; bare (``read_file``) and prefixed (``mcp__fs__read_file``) names."""
    exclude_tools: tuple[str, ...] = ()
    max_tool_rounds: int = 10
    """MCP tool rounds per turn; after that the model is asked for its workflow decision only."""
    cwd: str | None = None
    """Gives the agent a filesystem workspace (MassGen's ``cwd``). The workspace itself always lives under
    the run's data directory, per agent, so parallel runs never share one (MassGen #463)."""
    context_paths: tuple[ContextPath, ...] = ()
    enable_mcp_command_line: bool = False
    """Offer ``execute_command`` (as ``mcp__command_line__execute_command``), run by the executor in the
    agent's workspace (MassGen spec §4.1). Needs ``cwd``."""
    command_line_execution_mode: ExecutionMode = "local"
    """``docker``: one container per agent per run; ``local``: a subprocess with resource limits in a
    bubblewrap sandbox (own namespaces, only the workspace writable, no network, an unprivileged uid;
    issue 13 item 2); ``local_unisolated``: the same subprocess without the sandbox, with the host's
    filesystem, network and the executor's user (an explicit opt-in). Neither Docker nor local mode
    falls back to a weaker one: with no engine, or no usable ``bwrap``, the command fails naming the fix."""
    command_line_local_network: bool = False
    """Local mode: give commands the host's network (else only their own loopback)."""
    command_line_docker_image: str = "massgen/sandbox-python:latest"
    command_line_docker_dockerfile: str | None = None
    """A Dockerfile the executor builds (tagged ``command_line_docker_image``) instead of a prebuilt image."""
    command_line_docker_network_mode: Literal["none", "bridge", "host"] = "none"
    command_line_docker_memory_limit: str | None = None
    """E.g. ``512m``, ``2g``."""
    command_line_docker_cpu_limit: float | None = None
    command_line_docker_pids_limit: int = 256
    command_line_docker_read_only: bool = False
    """Read-only root filesystem (the workspace stays writable; ``/tmp`` is a tmpfs)."""
    command_line_docker_enable_sudo: bool = False
    """Accepted for MassGen compatibility: lifts the sudo/chown/chmod filter; commands still run as the
    sandbox's non-root user."""
    command_line_docker_credentials: docker_setup.DockerCredentials | None = None
    """MassGen's credential mounts (read-only) and environment (``env_file``, ``env_vars``) of the Docker
    sandbox (MassGen spec §4.2, ``massgen_es.docker_setup``); values travel as secret references."""
    command_line_docker_packages: docker_setup.DockerPackages | None = None
    """``preinstall: {python, npm, system}`` package lists installed when the Docker sandbox starts."""
    resolved_docker_mounts: tuple[docker_setup.Mount, ...] = ()
    """Filled in at load from ``command_line_docker_credentials`` (host paths that exist); not a config key."""
    resolved_docker_env: dict[str, str] = {}
    """Filled in at load from ``command_line_docker_credentials``: the sandbox's variables; in events each
    value is a ``${secret:…}`` reference. Not a config key."""
    command_line_allowed_commands: tuple[str, ...] = ()
    """Regexes; when set, a command must match one (``re.match``, as MassGen)."""
    command_line_blocked_commands: tuple[str, ...] = ()
    command_line_timeout_seconds: float = 60.0
    command_line_max_output_chars: int = 16_384
    """Stdout/stderr kept in the event; the full output goes to the Object Store."""
    custom_tools: tuple[CustomToolConfig, ...] = ()
    """Python functions offered as ``custom_tool__<name>`` (MassGen spec §2.5), run by the executor in the
    agent's sandbox (the ``command_line_execution_mode`` sandbox and ``command_line_timeout_seconds``, with
    ``agent_cwd`` the agent's workspace); ``enable_mcp_command_line`` is not needed."""
    auto_discover_custom_tools: bool = False
    """MassGen spec §2.5: also offer the bundled tools this system ships (``two_num_tool``)."""
    exclude_custom_tools: tuple[str, ...] = ()
    """Custom tools not offered, by name (``two_num_tool`` or ``custom_tool__two_num_tool``)."""
    resolved_custom_tools: tuple[CustomToolSpec, ...] = ()
    """Filled in when the config is loaded, from the three keys above (the files' text included, so a
    worker or executor on another machine has them); not a config key. A recorded run's backend parsed
    again (``massgen fork --set``) keeps the tools it had."""
    upload_files: tuple[media.UploadFile, ...] = ()
    """Files the model sees with the question (MassGen spec §2.8): ``{image_path|audio_path|video_path|file_path:
    PATH}`` each, of a kind and type the provider accepts (``massgen_es.media.ACCEPTS``); stored in the Object
    Store at submit, attached by the adapter in its provider's native form."""
    media_max_file_size_mb: float = 64.0
    """Largest ``upload_files`` entry, in MB (MassGen's default)."""
    enable_image_generation: bool = False
    """Offer ``generate_image(prompt, size?)``, run by the worker through the provider's own API (``openai``:
    Images API); the file goes to the Object Store (``media.generated``) and the workspace if ``cwd`` is set."""
    enable_audio_generation: bool = False
    """Offer ``generate_audio(text, voice?)``, likewise (``openai``: text-to-speech)."""
    enable_video_generation: bool = False
    """Offer ``generate_video(prompt, seconds?, size?)``, likewise (``openai``: the Videos API, Sora)."""
    enable_file_generation: bool = False
    """Offer ``generate_file(prompt, file_format, filename?)``: the backend's model writes the content, the
    worker renders it as PDF, DOCX, XLSX, PPTX, Markdown or text; likewise stored and saved."""
    resolved_memory: memory_block.MemoryConfig | None = None
    """Filled in when the config is loaded: the agent's ``memory`` block merged over the top-level one
    (``massgen_es.memory.resolve``); the agent worker runs it. Not a config key."""


class AgentConfig(_Strict, frozen=True):
    """One entry of ``agents:``."""

    id: str
    backend: BackendConfig
    system_message: str = ""
    memory: dict[str, Any] | None = None
    """Per-agent ``memory`` keys, deep-merged over the top-level block (MassGen spec §5.4)."""


class CoordinationConfig(_Strict, frozen=True):
    """The ``orchestrator.coordination:`` block (MassGen spec §5.2): the keys supported so far."""

    enable_planning_mode: bool = False
    """During coordination irreversible tools are not executed; the winner runs them while presenting
    (MassGen spec §1.14; which tools: ``massgen_es.tool_safety``)."""
    planning_mode_instruction: str | None = None
    """The text added to coordination prompts in planning mode (default: MassGen's)."""
    max_orchestration_restarts: int = 0
    """Restarts the winner's post-evaluation may ask for (MassGen spec §1.12); 0: no post-evaluation."""
    enable_agent_task_planning: bool = False
    """Every agent gets the task-planning MCP server ``planning`` (MassGen spec §1.15; ours is
    ``massgen_mcp_broker.task_planning``)."""
    max_tasks_per_plan: int = 10
    """Tasks a plan may hold (MassGen spec §1.15)."""
    task_planning_filesystem_mode: bool = False
    """The plan is mirrored to ``tasks/plan.json`` in the agent's workspace (agents with ``cwd``)."""
    use_skills: bool = False
    """The skills of ``skills_directory`` are listed in every agent's system prompt and readable by the
    agents (``massgen_es.skills``; MassGen's openskills integration)."""
    skills_directory: str = skills.DEFAULT_DIRECTORY
    """Where skills are found (relative to the directory massgen runs in): one sub-directory per skill."""
    enable_memory_filesystem_mode: bool = False
    """Agents keep short- and long-term memory files in ``memory/`` of their workspace; every agent's
    prompt shows the memories the agents shared with their answers (MassGen's memory filesystem mode)."""


class DspyConfig(_Strict, frozen=True):
    """``orchestrator.dspy``: MassGen's question paraphrasing (spec §1.15, §5.2). Each agent is also
    asked a rewrite of the question, made once per run by ``backend`` (``massgen_orchestrator.paraphrase``;
    the ``dspy`` library itself is not used)."""

    enabled: bool = False
    backend: BackendConfig | None = None
    """The backend that writes the rewrites (required when enabled)."""
    num_variants: int = 3
    strategy: Literal["balanced", "diverse", "conservative", "adaptive"] = "balanced"
    use_chain_of_thought: bool = False
    temperature_range: tuple[float, float] | None = None
    cache_enabled: bool = True
    """Accepted: the rewrites are made once per run and recorded, which is what MassGen's cache saves."""
    semantic_threshold: float = 0.85
    """Accepted; it only matters with ``validate_semantics``."""
    validate_semantics: bool = False
    """MassGen's semantic check of each rewrite; not built here (``true`` is refused)."""


class OrchestratorConfig(_Strict, frozen=True):
    """The ``orchestrator:`` block (MassGen spec §5.2, protocol subset)."""

    max_new_answers_per_agent: int | None = None
    voting_sensitivity: Sensitivity = "lenient"
    answer_novelty_requirement: Sensitivity = "lenient"
    max_failed_turns: int = 3
    """Consecutive failed turns before an agent is dropped (not in MassGen, which retries forever)."""
    context_paths: tuple[ContextPath, ...] = ()
    """Shared with every agent (merged with each backend's ``context_paths``)."""
    max_cost_usd: float | None = None
    """Run budget in USD: when the recorded cost reaches it, coordination stops and the run ends with the
    best answer so far (no presentation call). Costs come from ``massgen_es.pricing``."""
    snapshot_storage: str | None = None
    """Accepted for MassGen compatibility; snapshots always live under the run's data directory."""
    agent_temporary_workspace: str | None = None
    """Accepted for MassGen compatibility; see ``snapshot_storage``."""
    coordination: CoordinationConfig = CoordinationConfig()
    dspy: DspyConfig | None = None
    """MassGen's question paraphrasing (spec §1.15)."""
    debug_final_answer: str | None = None
    """MassGen's debug aid: attempt 1's final answer is this text (to test restarts, spec §1.12)."""
    skip_coordination_rounds: bool = False
    """MassGen's debug aid (spec §1.2 step 5): no coordination; the first agent presents at once."""


class TimeoutSettings(_Strict, frozen=True):
    """The ``timeout_settings:`` block."""

    orchestrator_timeout_seconds: float = 1800.0
    presentation_timeout_seconds: float = 300.0


class UiConfig(_Strict, frozen=True):
    """The ``ui:`` block. ``silent`` turns off the live view; ``textual_terminal`` (MassGen's current
    default) is the Textual app on a terminal, the Rich view on a pipe; the others are the Rich view."""

    display_type: Literal["rich_terminal", "textual_terminal", "simple", "silent"] = "rich_terminal"
    logging_enabled: bool = True


class Config(_Strict, frozen=True):
    """A whole config file."""

    agents: tuple[AgentConfig, ...] = ()
    agent: AgentConfig | None = None
    orchestrator: OrchestratorConfig = OrchestratorConfig()
    timeout_settings: TimeoutSettings = TimeoutSettings()
    ui: UiConfig = UiConfig()
    tool_safety: ToolSafetyConfig = ToolSafetyConfig()
    """Ours, not MassGen's: which tools need a person's approval or are refused, and which planning mode
    holds back (``massgen_es.tool_safety``)."""
    memory: memory_block.MemoryConfig | None = None
    """MassGen's memory block (spec §5.4): persistent memory (mem0 + Qdrant) and context compression, run
    by the agent worker (``massgen_es.memory``; needs the worker's ``memory`` extra)."""

    @property
    def team(self) -> tuple[AgentConfig, ...]:
        """The agents in config order (the order that anonymous ids and tie-breaks follow)."""
        return self.agents or ((self.agent,) if self.agent else ())


DEFAULT_CONFIG_YAML = """\
# The embedded default: three agents on the default local model (`massgen models`; no API key needed).
# They differ in emphasis and temperature, so their answers differ where the model is unsure.
agents:
  - id: concise
    backend: {type: local, temperature: 0.2, seed: 1}
    system_message: "You answer correctly and briefly. For a calculation, show the short working, then the result."
  - id: explainer
    backend: {type: local, temperature: 0.5, seed: 2}
    system_message: "You give a correct answer with a short explanation."
  - id: checker
    backend: {type: local, temperature: 0.7, seed: 3}
    system_message: "You check facts and calculations step by step, then state the answer plainly."
orchestrator:
  # One answer each, then the agents vote: keeps a small model's round short.
  max_new_answers_per_agent: 1
timeout_settings:
  orchestrator_timeout_seconds: 600
  presentation_timeout_seconds: 180
"""


def _path_of(message: str) -> tuple[str, str]:
    """Turn msgspec's "... - at `$.agents[0].backend`" into ("agents[0].backend", "...")."""
    m = re.search(r"^(.*?)(?: - at `\$(.*)`)?$", message)
    assert m is not None
    return (m.group(2) or "").lstrip("."), m.group(1)


def _allowed(where: str) -> str:
    """The text "; allowed: a, b" naming the values of the enum-valued key at ``where`` (a path like
    ``agents[0].backend.command_line_execution_mode``), found by walking :class:`Config`'s fields, or ""
    when the path leads to no such key."""
    tp: Any = Config
    for name in re.sub(r"\[\d+\]", "", where).split("."):
        fields = {f.name: f.type for f in msgspec.structs.fields(tp)} if _is_struct(tp) else {}
        if name not in fields:
            return ""
        tp = fields[name]
        while not _is_struct(tp) and get_args(tp):  # tuple[X, ...], X | None: down to the struct or enum
            inner = [a for a in get_args(tp) if a is not type(None) and a is not Ellipsis]
            if len(inner) != 1 or isinstance(inner[0], str):
                break
            tp = inner[0]
    values = [v for arg in get_args(tp) for v in (get_args(arg) or (arg,)) if isinstance(v, str)]
    return "; allowed: " + ", ".join(values) if values else ""


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def parse_config(data: Any, origin: str = "<config>") -> Config:
    """Validate already-parsed YAML/JSON data.

    Raises:
        ConfigError: the message names the key (as a path like ``agents[1].backend.model``) and the fix.
    """
    if not _is_mapping(data):
        raise ConfigError(f"{origin}: the top level must be a mapping with an `agents:` list")
    translated = compat.translate(data)
    if translated.refused:
        raise ConfigError(f"{origin}: " + "; ".join(translated.refused))
    for warning in translated.warnings:
        _log.warning("%s: %s", origin, warning)
    try:
        cfg = msgspec.convert(_normalize_mcp_servers(translated.data), Config)
    except msgspec.ValidationError as exc:
        where, what = _path_of(str(exc))
        unknown = re.match(r"Object contains unknown field `(.+)`", what)
        if unknown:
            key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise ConfigError(f"{origin}: unknown key `{key}`; check its spelling or remove it") from None
        if what.startswith("Invalid enum value"):
            what += _allowed(where)
        raise ConfigError(f"{origin}: bad value at `{where or '(top level)'}`: {what}") from None
    return _check(cfg, origin)


def _is_mapping(value: object) -> TypeGuard[dict[str, Any]]:
    """A parsed YAML/JSON mapping (its keys are checked when msgspec converts it)."""
    return isinstance(value, dict)


def _is_list(value: object) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


def _normalize_mcp_servers(data: dict[str, Any]) -> dict[str, Any]:
    """MassGen accepts ``mcp_servers`` as a list of ``{name, ...}`` or a mapping keyed by name (spec §3.1):
    turn the mapping form into the list form."""
    agents_value = data.get("agents")
    agents = agents_value if _is_list(agents_value) else None
    single = data.get("agent")
    entries: list[Any] = agents if agents is not None else ([single] if _is_mapping(single) else [])
    fixed = [_mcp_servers_listed(entry) for entry in entries]
    if agents is not None:
        return {**data, "agents": fixed}
    return {**data, "agent": fixed[0]} if fixed else data


def _mcp_servers_listed(entry: Any) -> Any:
    """One agent entry with its ``backend.mcp_servers`` mapping (if it has one) as a list."""
    if not _is_mapping(entry):
        return entry
    backend = entry.get("backend")
    if not _is_mapping(backend):
        return entry
    servers = backend.get("mcp_servers")
    if not _is_mapping(servers):
        return entry
    listed = [{"name": k, **v} if _is_mapping(v) else v for k, v in servers.items()]
    return {**entry, "backend": {**backend, "mcp_servers": listed}}


def _check(cfg: Config, origin: str) -> Config:
    if cfg.agents and cfg.agent:
        raise ConfigError(f"{origin}: give either `agents:` (a list) or `agent:` (one), not both")
    if not cfg.team:
        raise ConfigError(f"{origin}: no agents; add an `agents:` list with at least one entry")
    fixed = _checked_agents(cfg, origin)
    o = _checked_orchestrator(cfg.orchestrator, origin)
    if o.coordination.enable_agent_task_planning:
        fixed = [_with_planning(a, o.coordination, "agent" if cfg.agent else f"agents[{i}]", origin)
                 for i, a in enumerate(fixed)]
    t = cfg.timeout_settings
    for key in ("orchestrator_timeout_seconds", "presentation_timeout_seconds"):
        _check_seconds(getattr(t, key), f"timeout_settings.{key}", origin)
    return msgspec.structs.replace(cfg, agents=tuple(fixed), agent=None, orchestrator=o)


def _checked_agents(cfg: Config, origin: str) -> list[AgentConfig]:
    """The team with unique, non-empty ids, each backend checked and its memory block resolved."""
    seen: set[str] = set()
    fixed: list[AgentConfig] = []
    for i, agent in enumerate(cfg.team):
        where = "agent" if cfg.agent else f"agents[{i}]"
        if not agent.id.strip():
            raise ConfigError(f"{origin}: `{where}.id` is empty; give every agent a unique id")
        if agent.id in seen:
            raise ConfigError(f"{origin}: duplicate agent id `{agent.id}` at `{where}.id`; ids must be unique")
        seen.add(agent.id)
        backend = _check_backend(agent.backend, f"{where}.backend", origin)
        if backend.resolved_memory is None:  # else a recorded run's backend parsed again (`massgen fork --set`)
            top = msgspec.to_builtins(cfg.memory) if cfg.memory is not None else None
            backend = msgspec.structs.replace(backend, resolved_memory=memory_block.resolve(
                memory_block.merged(top, agent.memory), f"{where}.memory" if agent.memory else "memory", origin))
        fixed.append(msgspec.structs.replace(agent, backend=backend))
    return fixed


def _checked_orchestrator(o: OrchestratorConfig, origin: str) -> OrchestratorConfig:
    for i, cp in enumerate(o.context_paths):
        _check_context_path(cp, f"orchestrator.context_paths[{i}]", origin)
    if o.max_new_answers_per_agent is not None and o.max_new_answers_per_agent < 1:
        raise ConfigError(f"{origin}: `orchestrator.max_new_answers_per_agent` must be >= 1 or null")
    if o.max_cost_usd is not None and not (math.isfinite(o.max_cost_usd) and o.max_cost_usd > 0):
        raise ConfigError(f"{origin}: `orchestrator.max_cost_usd` must be a positive number of dollars")
    if o.max_failed_turns < 1:
        raise ConfigError(f"{origin}: `orchestrator.max_failed_turns` must be >= 1")
    if o.coordination.max_orchestration_restarts < 0:
        raise ConfigError(f"{origin}: `orchestrator.coordination.max_orchestration_restarts` must be >= 0")
    if o.coordination.max_tasks_per_plan < 1:
        raise ConfigError(f"{origin}: `orchestrator.coordination.max_tasks_per_plan` must be >= 1")
    if o.dspy is not None and o.dspy.enabled:
        o = msgspec.structs.replace(o, dspy=_check_dspy(o.dspy, origin))
    return o


def _check_dspy(d: DspyConfig, origin: str) -> DspyConfig:
    """An enabled ``orchestrator.dspy`` block: a valid backend, at least one variant, a sane range.

    Raises:
        ConfigError: naming the key and the fix.
    """
    where = "orchestrator.dspy"
    if d.backend is None:
        raise ConfigError(f"{origin}: `{where}.backend` is missing; name the backend that paraphrases "
                          "(e.g. `backend: {type: openai, model: gpt-4o-mini}`)")
    if d.num_variants < 1:
        raise ConfigError(f"{origin}: `{where}.num_variants` must be >= 1")
    if d.validate_semantics:
        raise ConfigError(f"{origin}: `{where}.validate_semantics` is MassGen's semantic check of each "
                          "paraphrase, which this system does not support; remove it or set it to false")
    r = d.temperature_range
    if r is not None and not (0 <= r[0] <= r[1] <= 2):
        raise ConfigError(f"{origin}: `{where}.temperature_range` must be [low, high] with 0 <= low <= high <= 2")
    return msgspec.structs.replace(d, backend=_check_backend(d.backend, f"{where}.backend", origin))


def _check_backend(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    b = _key_by_reference(b, where, origin)
    _check_model(b, where, origin)
    if b.type in ag2.TYPES:
        b = _checked_ag2(b, where, origin)
    _check_call_limits(b, where, origin)
    b = _without_workspace_tools_of_no_workspace(b, where, origin)
    _check_mcp_servers(b, where, origin)
    for i, cp in enumerate(b.context_paths):
        _check_context_path(cp, f"{where}.context_paths[{i}]", origin)
    _check_command_line(b, where, origin)
    media.check_uploads(b.type, b.upload_files, b.media_max_file_size_mb, where, origin)
    media.check_generation(b.type, {k: getattr(b, k) for k in media.GENERATION_KEYS}, where, origin)
    return _with_custom_tools(_with_docker_setup(b, where, origin), where, origin)


def _with_docker_setup(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    """``b`` with its Docker credentials resolved (``massgen_es.docker_setup.resolve``) and its package
    lists checked; a recorded run's backend parsed again keeps what it had.

    Raises:
        ConfigError: naming the key and the fix.
    """
    if b.command_line_docker_packages is not None:
        docker_setup.check_packages(b.command_line_docker_packages, where, origin)
    creds = b.command_line_docker_credentials
    if (creds is not None or b.command_line_docker_packages is not None) and b.command_line_execution_mode != "docker":
        _log.warning("%s: `%s.command_line_docker_credentials`/`command_line_docker_packages` apply to the Docker "
                     "sandbox only; `command_line_execution_mode` is %r", origin, where, b.command_line_execution_mode)
    if creds is None or b.resolved_docker_mounts or b.resolved_docker_env:
        return b
    mounts, env = docker_setup.resolve(creds, where, origin)
    return msgspec.structs.replace(b, resolved_docker_mounts=mounts, resolved_docker_env=env)


def _checked_ag2(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    """An ``ag2`` backend's AG2 blocks are valid (``massgen_es.ag2.check``); an AG2 Docker code executor
    makes the agent's sandbox a Docker one."""
    ag2.check(msgspec.to_builtins(b), where, origin)
    mode = ag2.sandbox_mode(msgspec.to_builtins(b))
    return msgspec.structs.replace(b, command_line_execution_mode=mode) if mode == "docker" else b


def _key_by_reference(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    """``api_key: ${NAME}`` becomes ``api_key_env: NAME``; a literal key is refused."""
    if b.api_key is None:
        return b
    ref = _ENV_REF.match(b.api_key)
    if not ref:
        raise ConfigError(
            f"{origin}: `{where}.api_key` holds a literal key, which would be written to the event log; "
            "put the key in an environment variable and write `api_key: ${NAME}` or `api_key_env: NAME`"
        )
    return msgspec.structs.replace(b, api_key=None, api_key_env=ref.group(1))


def _check_model(b: BackendConfig, where: str, origin: str) -> None:
    """The model, endpoint and features fit the backend type."""
    if b.type == "local" and not b.base_url and b.model is not None and b.model not in models.MODELS:
        raise ConfigError(
            f"{origin}: `{where}.model`: unknown local model {b.model!r}; choose one of: {', '.join(models.MODELS)} "
            "(`massgen models` lists them), or set `base_url` to a model server of your own"
        )
    for key in ("base_url", "azure_endpoint"):
        _check_http_url(getattr(b, key), f"{where}.{key}", origin)
    caps = backends.capabilities(b.type)
    if caps.adapter in ("chatcompletion", "openai", "claude", "gemini", "azure_openai") and not b.model:
        raise ConfigError(f"{origin}: `{where}.model` is required for backend type {b.type}")
    if b.type == "chatcompletion" and not b.base_url:
        raise ConfigError(
            f"{origin}: `{where}.base_url` is required for backend type chatcompletion (or use a preset type "
            "such as openai, groq, together, vllm)"
        )
    bad = backends.unsupported(b.type, {k: getattr(b, k) for k in (*backends.FEATURE_KEYS, *backends.TYPE_ONLY_KEYS)})
    if bad:
        raise ConfigError(f"{origin}: `{where}.{bad[0]}`: {bad[1]}")


def _check_http_url(value: str | None, where: str, origin: str) -> None:
    """An endpoint is an absolute http(s) URL with a host (issue 13 item 4: ``base_url: "not a url"``
    used to start a run that failed nine retries later without naming the cause)."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{origin}: `{where}` is {value!r}, which is not an http(s) URL; write the endpoint's full URL, "
            "e.g. http://127.0.0.1:8000/v1"
        )


def _check_call_limits(b: BackendConfig, where: str, origin: str) -> None:
    """Retries, timeouts, sampling and token limits of the backend's calls are in range."""
    if b.max_retries < 0:
        raise ConfigError(f"{origin}: `{where}.max_retries` must be >= 0")
    _check_seconds(b.connect_timeout_seconds, f"{where}.connect_timeout_seconds", origin)
    if b.first_token_timeout_seconds is not None:
        _check_seconds(b.first_token_timeout_seconds, f"{where}.first_token_timeout_seconds", origin)
    if b.temperature is not None and not 0 <= b.temperature <= 2:
        raise ConfigError(f"{origin}: `{where}.temperature` must be between 0 and 2")
    if b.max_tokens is not None and b.max_tokens < 1:
        raise ConfigError(f"{origin}: `{where}.max_tokens` must be >= 1")
    _check_seconds(b.request_timeout_seconds, f"{where}.request_timeout_seconds", origin)
    if b.max_tool_rounds < 1:
        raise ConfigError(f"{origin}: `{where}.max_tool_rounds` must be >= 1")


def is_massgen_workspace_tools(server: McpServerConfig) -> bool:
    """Whether ``server`` is MassGen's own ``workspace_tools`` server, declared the MassGen way
    (``command: fastmcp``, ``args: [run, massgen.filesystem_manager._workspace_tools_server:create_server,
    --, --allowed-paths, .]``, or the ``massgen/filesystem_manager/…py`` file form). Such an entry
    means ours (MassGen spec §3.5): MassGen's module is not installed here, and its ``.`` would be the
    broker's directory, not the agent's workspace."""
    return any(_MASSGEN_WORKSPACE_TOOLS in a.replace("/", ".") for a in _stdio_words(server, WORKSPACE_TOOLS_SERVER))


def is_standard_filesystem_server(server: McpServerConfig) -> bool:
    """Whether ``server`` is the official filesystem server named ``filesystem``
    (``npx -y @modelcontextprotocol/server-filesystem <paths>``), as MassGen's examples declare it next to
    ``cwd``. With a workspace such an entry means the one ``cwd`` adds, which is that same server over
    the agent's own roots (its ``.`` would be the broker's directory); another server of that name
    replaces ours, as a user server suppresses MassGen's injection (spec §3.5)."""
    return any(a.startswith(_STANDARD_FILESYSTEM_PACKAGE) for a in _stdio_words(server, FILESYSTEM_SERVER))


def _stdio_words(server: McpServerConfig, name: str) -> tuple[str, ...]:
    """The command line of ``server`` when it is a stdio server called ``name``, else nothing."""
    if server.name != name or server.type != "stdio":
        return ()
    try:
        executable, args = mcp.executable_and_args(server)
    except ValueError:
        return ()
    return (executable, *args)


def planning_server(c: CoordinationConfig) -> McpServerConfig:
    """The ``mcp_servers`` entry that ``enable_agent_task_planning`` adds to every agent (MassGen spec
    §1.15): ours, its limit and filesystem mode in its arguments (the broker adds the workspace)."""
    args = ("-m", PLANNING_MODULE, "--max-tasks", str(c.max_tasks_per_plan))
    return McpServerConfig(name=PLANNING_SERVER, command="python",
                           args=(*args, "--filesystem-mode") if c.task_planning_filesystem_mode else args)


def is_planning_server(server: McpServerConfig) -> bool:
    """Whether ``server`` is the entry :func:`planning_server` made (the broker then starts ours)."""
    return server.name == PLANNING_SERVER and server.type == "stdio" and PLANNING_MODULE in server.args


def _with_planning(agent: AgentConfig, c: CoordinationConfig, where: str, origin: str) -> AgentConfig:
    """``agent`` with the task-planning server added to its ``mcp_servers``.

    Raises:
        ConfigError: the agent already has a server named ``planning``.
    """
    b = agent.backend
    if any(s.name == PLANNING_SERVER and not is_planning_server(s) for s in b.mcp_servers):
        raise ConfigError(f"{origin}: `{where}.backend.mcp_servers` has a server named `{PLANNING_SERVER}`, a name "
                          "taken by the task-planning server of "
                          "`orchestrator.coordination.enable_agent_task_planning`; rename yours")
    servers = tuple(s for s in b.mcp_servers if not is_planning_server(s)) + (planning_server(c),)
    return msgspec.structs.replace(agent, backend=msgspec.structs.replace(b, mcp_servers=servers))


def server_names(b: BackendConfig) -> list[str]:
    """Names of the MCP servers an agent uses, in config order: its ``mcp_servers``, then ``filesystem``
    and ``workspace_tools`` when ``cwd`` is set (MassGen spec §3.5; a user server named
    ``workspace_tools`` replaces ours unless it is MassGen's own, see :func:`is_massgen_workspace_tools`)."""
    names = [s.name for s in b.mcp_servers]
    if b.cwd is not None:  # a user's `filesystem` takes our server's place (is_standard_filesystem_server)
        names += [n for n in (FILESYSTEM_SERVER, WORKSPACE_TOOLS_SERVER) if n not in names]
    return names


def _check_mcp_servers(b: BackendConfig, where: str, origin: str) -> None:
    """Every MCP server is valid and has a unique name (``filesystem`` is taken when ``cwd`` is set)."""
    names: set[str] = set()
    for i, server in enumerate(b.mcp_servers):
        try:
            mcp.validate_server(server, f"{where}.mcp_servers[{i}]")
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        if server.name in names:
            raise ConfigError(f"{origin}: duplicate MCP server name `{server.name}` at `{where}.mcp_servers[{i}].name`")
        if b.cwd is not None and server.name == FILESYSTEM_SERVER and not is_standard_filesystem_server(server):
            _log.warning("%s: `%s.mcp_servers[%d]` is named `filesystem`: it replaces the workspace server that "
                         "`cwd` adds, as in MassGen (spec §3.5); rename it to keep both", origin, where, i)
        names.add(server.name)


def _without_workspace_tools_of_no_workspace(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    """``b`` without MassGen's own ``workspace_tools`` entry when the agent has no workspace (no ``cwd``).

    MassGen runs that server over ``--allowed-paths .``, the directory MassGen runs in (spec §3.5). Here the
    built-in one serves it (:func:`is_massgen_workspace_tools`), and it works only in an agent's own
    workspace: without ``cwd`` there is nothing for it to work in, so the entry is left out with a warning
    naming the fix, and the config loads (MassGen's ``tools/planning`` examples declare it on agents
    without ``cwd``). A workspace is not made up for the agent: its user-declared ``filesystem`` server
    keeps that name, which ``cwd``'s would take.
    """
    if b.cwd is not None:
        return b
    kept: list[McpServerConfig] = []
    for i, server in enumerate(b.mcp_servers):
        if is_massgen_workspace_tools(server):
            _log.warning("%s: `%s.mcp_servers[%d]` is MassGen's workspace_tools server, built in here and working "
                         "only in the agent's workspace; this agent has none, so it runs without it (set `%s.cwd`, "
                         "e.g. `cwd: workspace`, to give it one)", origin, where, i, where)
        else:
            kept.append(server)
    return b if len(kept) == len(b.mcp_servers) else msgspec.structs.replace(b, mcp_servers=tuple(kept))


def _check_command_line(b: BackendConfig, where: str, origin: str) -> None:
    """The command-line tool's settings: a workspace, valid command patterns, sandbox limits."""
    if b.enable_mcp_command_line and b.cwd is None:
        raise ConfigError(f"{origin}: `{where}.enable_mcp_command_line` needs a workspace; set `{where}.cwd`")
    for key in ("command_line_allowed_commands", "command_line_blocked_commands"):
        for pattern in getattr(b, key):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{origin}: `{where}.{key}`: {pattern!r} is not a valid regex ({exc})") from None
    mem = b.command_line_docker_memory_limit
    if mem is not None and not re.fullmatch(r"\d+[bkmg]?", mem.lower()):
        raise ConfigError(f"{origin}: `{where}.command_line_docker_memory_limit` {mem!r} must look like 512m or 2g")
    if b.command_line_docker_cpu_limit is not None and not b.command_line_docker_cpu_limit > 0:
        raise ConfigError(f"{origin}: `{where}.command_line_docker_cpu_limit` must be > 0")
    _check_seconds(b.command_line_timeout_seconds, f"{where}.command_line_timeout_seconds", origin)


def _with_custom_tools(b: BackendConfig, where: str, origin: str) -> BackendConfig:
    """``b`` with its ``custom_tools`` resolved into ``resolved_custom_tools`` (MassGen spec §2.5).

    Raises:
        ConfigError: a bad entry (no function, a missing file, a function the file does not define, a
            name clash, a MassGen bundled tool we do not support), naming its key path and the fix.
    """
    if b.resolved_custom_tools:  # a run's recorded backend parsed again (`massgen fork --set`): keep its tools
        return b
    entries: list[custom_tools.Entry] = []
    for i, t in enumerate(b.custom_tools):
        at = f"{where}.custom_tools[{i}]"
        functions = _listed(t.function)
        if not functions:
            raise ConfigError(f"{origin}: `{at}.function` is missing; name the Python function(s) to offer, "
                              "e.g. `function: [two_num_tool]`")
        names, descriptions = _listed(t.name), _listed(t.description)
        presets = [t.preset_args] if isinstance(t.preset_args, dict) else list(t.preset_args or ())
        for key, values in (("name", names), ("description", descriptions), ("preset_args", presets)):
            if len(values) > len(functions) or (key != "name" and 1 < len(values) < len(functions)):
                raise ConfigError(f"{origin}: `{at}.{key}` has {len(values)} entries for {len(functions)} "
                                  f"function(s); give one per function (or, for `{key}`, one for all)")
        entries.append(custom_tools.Entry(
            names=names, functions=functions,
            descriptions=[descriptions[j] if j < len(descriptions) else (descriptions or [None])[0]
                          for j in range(len(functions))],
            preset_args=[presets[j] if j < len(presets) else (presets or [{}])[0] for j in range(len(functions))],
            path=t.path, category=t.category))
    specs = custom_tools.resolve(entries, b.auto_discover_custom_tools, b.exclude_custom_tools, where, origin)
    return msgspec.structs.replace(b, resolved_custom_tools=specs)


def _listed(value: str | tuple[str, ...] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or ())


def _check_context_path(cp: ContextPath, where: str, origin: str) -> None:
    # MassGen refuses to start when a context path is missing (spec §3.5).
    if not Path(cp.path).expanduser().exists():
        raise ConfigError(f"{origin}: `{where}.path` {cp.path!r} does not exist; create it or fix the path")
    for j, rel in enumerate(cp.protected_paths):
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not rel.strip():
            raise ConfigError(
                f"{origin}: `{where}.protected_paths[{j}]` {rel!r} must be a path relative to `{where}.path` "
                "without `..` (e.g. `config/settings.yaml`)"
            )


def _check_seconds(value: float, key: str, origin: str) -> None:
    # `value <= 0` is False for NaN: test for the good case instead.
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{origin}: `{key}` must be a positive, finite number of seconds (got {value})")


def load_config(path: str | Path | None) -> Config:
    """Load and validate a config file, or the embedded default (three local agents) when ``path`` is None.

    Raises:
        ConfigError: missing file, invalid YAML, or invalid content.
    """
    if path is None:
        return parse_config(yaml.safe_load(DEFAULT_CONFIG_YAML), "<default config>")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))


def run_submitted(
    question: str, cfg: Config, config_path: str | None = None, *, replay_tools_from: str | None = None,
    overrides: tuple[ToolRule, ...] = (),
) -> RunSubmitted:
    """Build the ``run.submitted`` event for a question and a validated config.

    Each backend block carries the orchestrator's ``context_paths`` merged into its own (absolute paths),
    and every MCP ``env``/``headers`` value replaced by a ``${secret:<digest>}`` reference: the values
    go to the secret store (:func:`secrets`), never to the event log (docs/architecture principle 7).
    ``replay_tools_from`` names a run whose recorded tool results the MCP broker serves instead of
    calling the servers again. ``overrides``: the tool rules of the override files
    (``tool_safety.override_rules``), recorded after the config's.
    """
    if not question.strip():
        raise ConfigError("the question is empty; pass the question to answer as the first argument")
    t = cfg.timeout_settings
    o = cfg.orchestrator
    shared, offered = o.context_paths, ""
    if o.coordination.use_skills:  # found now, recorded in the system messages (massgen_es.skills)
        directory = Path(o.coordination.skills_directory).expanduser()
        found = skills.discover(directory)
        if not found:
            _log.warning("`orchestrator.coordination.skills_directory` %r holds no skills (no */%s); the agents "
                         "are offered none", o.coordination.skills_directory, skills.SKILL_FILE)
        else:
            shared = (*shared, ContextPath(path=str(directory.resolve()), permission="read"))
            offered = skills.prompt_section(found)
    return RunSubmitted(
        question=question,
        agents=tuple(
            AgentSpec(
                id=a.id,
                backend=_backend_dict(a.backend, shared if a.backend.cwd is not None else o.context_paths),
                system_message="\n\n".join(p for p in (a.system_message, offered) if p),
            )
            for a in cfg.team
        ),
        settings=RunSettings(
            max_new_answers_per_agent=o.max_new_answers_per_agent,
            voting_sensitivity=o.voting_sensitivity,
            answer_novelty_requirement=o.answer_novelty_requirement,
            max_failed_turns=o.max_failed_turns,
            orchestrator_timeout_s=t.orchestrator_timeout_seconds,
            presentation_timeout_s=t.presentation_timeout_seconds,
            replay_tools_from=replay_tools_from,
            max_cost_usd=o.max_cost_usd,
            planning_mode=o.coordination.enable_planning_mode,
            planning_mode_instruction=o.coordination.planning_mode_instruction,
            tool_rules=(*cfg.tool_safety.rules, *overrides),
            approval_timeout_s=cfg.tool_safety.approval_timeout_seconds,
            max_orchestration_restarts=o.coordination.max_orchestration_restarts,
            debug_final_answer=o.debug_final_answer,
            skip_coordination_rounds=o.skip_coordination_rounds,
            memory_filesystem_mode=o.coordination.enable_memory_filesystem_mode,
            paraphrase=Paraphrasing(
                num_variants=o.dspy.num_variants, backend=_backend_dict(o.dspy.backend), strategy=o.dspy.strategy,
                use_chain_of_thought=o.dspy.use_chain_of_thought, temperature_range=o.dspy.temperature_range,
            ) if o.dspy is not None and o.dspy.enabled and o.dspy.backend is not None else None,
        ),
        config_path=config_path,
    )


def _backend_dict(b: BackendConfig, shared_paths: tuple[ContextPath, ...] = ()) -> dict[str, Any]:
    """The backend block for the event: unset keys left out, so ``api_key`` never appears (it was moved
    to ``api_key_env`` by validation) and the event stays small; secrets replaced by references."""
    paths = tuple(
        msgspec.structs.replace(cp, path=str(Path(cp.path).expanduser().resolve()))
        for cp in (*shared_paths, *b.context_paths)
    )
    servers = tuple(
        msgspec.structs.replace(
            s,
            env={k: secret_ref(v) for k, v in s.env.items()},
            headers={k: secret_ref(v) for k, v in s.headers.items()},
        )
        for s in b.mcp_servers
    )
    uploads = media.with_objects(b.upload_files, b.media_max_file_size_mb)
    docker_env = {k: v if _SECRET_REF.fullmatch(v) else secret_ref(v) for k, v in b.resolved_docker_env.items()}
    b = msgspec.structs.replace(b, context_paths=paths, mcp_servers=servers, upload_files=uploads,
                                resolved_docker_env=docker_env)
    return {k: v for k, v in msgspec.to_builtins(b).items() if v is not None}


_SECRET_REF = re.compile(r"\$\{secret:[0-9a-f]{32}\}")


def secret_ref(value: str) -> str:
    """``${secret:<digest>}``: how a secret value appears in an event (content-addressed)."""
    return "${secret:" + hashlib.sha256(value.encode()).hexdigest()[:32] + "}"


def secrets(cfg: Config) -> dict[str, str]:
    """Every MCP ``env``/``headers`` value and Docker sandbox variable (``resolved_docker_env``) of ``cfg``
    by its digest: what the submitter stores in the secret store before appending ``run.submitted``."""
    out: dict[str, str] = {}
    for a in cfg.team:
        values = [v for s in a.backend.mcp_servers for v in (*s.env.values(), *s.headers.values())]
        for v in (*values, *a.backend.resolved_docker_env.values()):
            if not _SECRET_REF.fullmatch(v):
                out[secret_ref(v)[len("${secret:") : -1]] = v
    return out
