"""The backend registry: which adapter serves each ``backend.type``, its defaults, and what it can do.

Config validation uses it to refuse keys a backend cannot honour (with the key path and the backends
that can); the agent worker uses it to pick the adapter, the default ``base_url`` and the API-key
variable. Defaults follow MassGen spec §2.1 (its ``cli.py::create_backend`` table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard
from urllib.parse import urlsplit

from massgen_es.errors import ConfigError


@dataclass(frozen=True)
class Capabilities:
    """What one backend type offers.

    Attributes:
        adapter: module under ``massgen_agent_worker.providers`` that serves it.
        base_url: default endpoint (None: the adapter's own default, or required in config).
        key_env: default API-key environment variable (None: no key needed).
        native_tools: function calling; without it workflow decisions use structured output.
        structured_output: JSON-schema-constrained output.
        reasoning: ``reasoning:`` (effort, summaries) is honoured.
        thinking: ``thinking:`` / ``max_thinking_tokens`` (extended thinking) is honoured.
        streaming_usage: token usage arrives on the stream (else it is missing or estimated).
        web_search / code_execution: the provider's built-in tools.
    """

    adapter: str
    base_url: str | None = None
    key_env: str | None = None
    native_tools: bool = True
    structured_output: bool = True
    reasoning: bool = False
    thinking: bool = False
    streaming_usage: bool = True
    web_search: bool = False
    code_execution: bool = False


def _preset(base_url: str | None, key_env: str | None, **kw: bool) -> Capabilities:
    return Capabilities(adapter="chatcompletion", base_url=base_url, key_env=key_env, **kw)


BACKENDS: dict[str, Capabilities] = {
    "openai": Capabilities(
        adapter="openai", base_url="https://api.openai.com/v1", key_env="OPENAI_API_KEY", reasoning=True,
        web_search=True, code_execution=True,
    ),
    "claude": Capabilities(
        adapter="claude", base_url="https://api.anthropic.com", key_env="ANTHROPIC_API_KEY",
        structured_output=False, thinking=True, web_search=True, code_execution=True,
    ),
    "gemini": Capabilities(
        adapter="gemini", key_env="GEMINI_API_KEY", thinking=True, web_search=True, code_execution=True,
    ),
    "azure_openai": Capabilities(adapter="azure_openai", key_env="AZURE_OPENAI_API_KEY"),
    "claude_code": Capabilities(
        adapter="claude_code", key_env="ANTHROPIC_API_KEY", native_tools=True, structured_output=False,
        thinking=True, web_search=True, code_execution=True,
    ),
    # AG2 agents (massgen_es.ag2): endpoints and keys per llm_config entry, those of its api_type's backend
    "ag2": Capabilities(adapter="ag2", structured_output=False, streaming_usage=False),
    "autogen": Capabilities(adapter="ag2", structured_output=False, streaming_usage=False),
    "chatcompletion": _preset(None, None),
    "local": Capabilities(adapter="local", native_tools=False),
    "grok": _preset("https://api.x.ai/v1", "XAI_API_KEY", web_search=True, reasoning=True),
    "cerebras": _preset("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "together": _preset("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "fireworks": _preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "groq": _preset("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "openrouter": _preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "moonshot": _preset("https://api.moonshot.cn/v1", "MOONSHOT_API_KEY"),
    "kimi": _preset("https://api.moonshot.cn/v1", "KIMI_API_KEY"),
    "nebius": _preset("https://api.studio.nebius.ai/v1", "NEBIUS_API_KEY"),
    "qwen": _preset("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "QWEN_API_KEY"),
    "zai": _preset("https://api.z.ai/api/paas/v4", "ZAI_API_KEY"),
    "lmstudio": _preset("http://localhost:1234/v1", None, streaming_usage=False),
    "vllm": _preset("http://localhost:8000/v1", "VLLM_API_KEY"),
    "sglang": _preset("http://localhost:30000/v1", "SGLANG_API_KEY"),
}

# A plain `chatcompletion` backend infers its key variable from the endpoint's host (MassGen spec §2.1).
_HOST_KEYS = {
    "cerebras.ai": "CEREBRAS_API_KEY", "together.xyz": "TOGETHER_API_KEY", "fireworks.ai": "FIREWORKS_API_KEY",
    "groq.com": "GROQ_API_KEY", "nebius.com": "NEBIUS_API_KEY", "nebius.ai": "NEBIUS_API_KEY",
    "openrouter.ai": "OPENROUTER_API_KEY", "z.ai": "ZAI_API_KEY", "bigmodel.cn": "ZAI_API_KEY",
    "moonshot.ai": "MOONSHOT_API_KEY", "moonshot.cn": "MOONSHOT_API_KEY", "aliyuncs.com": "QWEN_API_KEY",
    "x.ai": "XAI_API_KEY", "api.openai.com": "OPENAI_API_KEY",
}


def capabilities(backend_type: str) -> Capabilities:
    """The registry entry of ``backend_type``.

    Raises:
        ConfigError: unknown type (with the known ones).
    """
    try:
        return BACKENDS[backend_type]
    except KeyError:
        raise ConfigError(f"unknown backend type {backend_type!r}; known: {', '.join(sorted(BACKENDS))}") from None


def _is_block(backend: object) -> TypeGuard[Mapping[str, Any]]:
    """A ``backend`` block as events carry it (JSON object keys are strings)."""
    return isinstance(backend, Mapping)


def tool_mode(backend: Mapping[str, Any] | Any) -> Literal["native", "json_schema"]:
    """How an agent with this ``backend`` block (a mapping, as events carry it, or a ``BackendConfig``)
    takes workflow decisions: its ``tool_mode`` if set, else
    native tool calls where its type has them. Gemini cannot combine function declarations with its
    built-in search or code execution, so with either it decides in ``json_schema`` mode.

    ``json_schema`` means the decision protocol for models without tool calls (the answer as free text,
    the choice as constrained JSON; ``massgen_agent_worker.decisions``) and the compact prompts
    (``massgen_orchestrator.prompts``).
    """

    def get(key: str) -> Any:
        return backend.get(key) if _is_block(backend) else getattr(backend, key, None)

    mode = get("tool_mode")
    if mode in ("native", "json_schema"):
        return mode
    backend_type = str(get("type"))
    if not capabilities(backend_type).native_tools:
        return "json_schema"
    if backend_type == "gemini" and (get("enable_web_search") or get("enable_code_execution")):
        return "json_schema"
    return "native"


def base_url(backend_type: str, configured: str | None) -> str | None:
    """The endpoint to call: the configured one, else the type's default."""
    return configured or capabilities(backend_type).base_url


def key_env(backend_type: str, configured: str | None, url: str | None) -> str | None:
    """The API-key variable: the configured one, else the type's default, else (``chatcompletion``)
    inferred from the endpoint's host; None means no key is needed (a self-hosted endpoint)."""
    if configured:
        return configured
    if capabilities(backend_type).key_env:
        return capabilities(backend_type).key_env
    host = (urlsplit(url).hostname or "") if url else ""
    return next((env for suffix, env in _HOST_KEYS.items() if host == suffix or host.endswith("." + suffix)), None)


def key_variables() -> frozenset[str]:
    """Every API-key environment variable a backend type or endpoint host defaults to (the secrets
    :mod:`massgen_es.scrub` looks for in a process's environment)."""
    return frozenset({c.key_env for c in BACKENDS.values() if c.key_env} | set(_HOST_KEYS.values()))


# Keys a backend must support to honour, and the capability that says it does.
FEATURE_KEYS = {
    "reasoning": "reasoning",
    "thinking": "thinking",
    "max_thinking_tokens": "thinking",
    "enable_web_search": "web_search",
    "enable_code_execution": "code_execution",
}
TYPE_ONLY_KEYS = {
    "api_version": ("azure_openai",),
    "azure_endpoint": ("azure_openai",),
    "permission_mode": ("claude_code",),
    "disallowed_tools": ("claude_code",),
    "text": ("openai",),
    "agent_config": ("ag2", "autogen"),
    "group_config": ("ag2", "autogen"),
}


def unsupported(backend_type: str, set_keys: dict[str, object]) -> tuple[str, str] | None:
    """The first key in ``set_keys`` (non-default values) that ``backend_type`` cannot honour, with the
    reason naming the types that can; None when all are fine."""
    caps = capabilities(backend_type)
    for key, cap in FEATURE_KEYS.items():
        if set_keys.get(key) and not getattr(caps, cap):
            able = sorted(t for t, c in BACKENDS.items() if getattr(c, cap))
            return key, f"backend type {backend_type!r} cannot honour it; remove it or use one of: {', '.join(able)}"
    for key, types in TYPE_ONLY_KEYS.items():
        if set_keys.get(key) and backend_type not in types:
            return key, f"only backend type {', '.join(types)} uses it; remove it"
    return None
