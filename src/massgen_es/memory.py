"""MassGen's ``memory`` block (MassGen spec §5.4, §1.15): conversation memory, persistent memory (mem0 +
Qdrant), context compression, retrieval and recording, as config structs and their checks.

The block is given at the top level and may be overridden per agent (``agents[i].memory``, deep-merged
over the top-level one, as MassGen's ``cli.py`` does). Loading resolves each agent's merged block into
``backend.resolved_memory`` (:func:`resolve`), so the agent worker, which holds the provider keys and
runs the memory library, finds it in the turn request like every other backend setting
(``massgen_agent_worker.memory`` does the work and records it as events).

Ours, beyond MassGen's keys: ``llm``/``embedding`` take ``base_url`` and ``api_key`` (``${ENV}`` only,
like a backend's) so memory traffic goes to the endpoint you choose (default: ``OPENAI_BASE_URL`` or
OpenAI, key ``OPENAI_API_KEY``, as mem0 does); ``compression.context_window`` overrides the window size
taken from :data:`CONTEXT_WINDOWS`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal, TypeGuard

import msgspec

from massgen_es.errors import ConfigError

_log = logging.getLogger("massgen.config")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

DEFAULT_CONTEXT_WINDOW = 128_000
"""Tokens assumed for a model :data:`CONTEXT_WINDOWS` does not know (set ``compression.context_window``)."""
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-5", 400_000), ("gpt-4.1", 1_047_576), ("gpt-4o", 128_000), ("o3", 200_000), ("o4", 200_000),
    ("claude", 200_000), ("gemini-2.5", 1_048_576), ("gemini-2.0", 1_048_576), ("grok-4", 256_000),
    ("grok-3", 131_072), ("gpt-oss", 131_072),
)
"""Context windows (tokens) by model-name prefix, first match wins (providers' model pages, 2025)."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class MemoryModel(_Strict, frozen=True):
    """``persistent_memory.llm`` / ``.embedding``: the model mem0 calls, through an OpenAI-compatible API."""

    provider: Literal["openai"] = "openai"
    """mem0's provider name; only ``openai`` (any OpenAI-compatible endpoint via ``base_url``) here."""
    model: str | None = None
    base_url: str | None = None
    """Ours: the endpoint (default ``OPENAI_BASE_URL``, else OpenAI's)."""
    api_key: str | None = None
    """Only ``${ENV_VAR}``: moved to ``api_key_env`` on load (keys never enter the event log)."""
    api_key_env: str = "OPENAI_API_KEY"
    dimensions: int | None = None
    """Embedding only: vector length (default 1536, text-embedding-3-small's)."""


class QdrantConfig(_Strict, frozen=True):
    """``persistent_memory.qdrant``: a Qdrant server (``mode: server``, shared by every worker) or an
    in-process store in a directory (``mode: local``: one worker process at a time, as MassGen notes)."""

    mode: Literal["server", "local"] = "local"
    host: str = "localhost"
    port: int = 6333
    path: str = ".massgen/qdrant"
    """``local``: the store's directory (made absolute at load, relative to where the config is loaded)."""


class ConversationMemory(_Strict, frozen=True):
    """``conversation_memory``: the short-term messages of a turn. Here they are the turn request's
    messages themselves (the event log keeps them), so the switch is accepted and always on."""

    enabled: bool = True


class PersistentMemory(_Strict, frozen=True):
    """``persistent_memory``: long-term facts mem0 extracts from each turn and retrieves for later ones."""

    enabled: bool = True
    on_disk: bool = True
    vector_store: Literal["qdrant"] = "qdrant"
    session_name: str | None = None
    """Memories are kept per session; default: the run's session (``massgen submit --session``), else the run."""
    agent_name: str | None = None
    """Whose memories (default: the agent's id)."""
    llm: MemoryModel = MemoryModel(model="gpt-4.1-nano-2025-04-14")
    embedding: MemoryModel = MemoryModel(model="text-embedding-3-small")
    qdrant: QdrantConfig = QdrantConfig()


class Compression(_Strict, frozen=True):
    """``compression``: when a call's messages pass ``trigger_threshold`` of the model's context window,
    older messages are summarised so the rest fits in ``target_ratio`` of it (MassGen's
    ContextWindowMonitor + ContextCompressor)."""

    trigger_threshold: float = 0.75
    target_ratio: float = 0.40
    context_window: int | None = None
    """Ours: the window in tokens (default: :func:`context_window` of the agent's model)."""


class Retrieval(_Strict, frozen=True):
    """``retrieval``: how many facts are put in the system message; ``exclude_recent``: leave out the ones
    recorded during this run (the agent's messages hold them already) unless context was compressed."""

    limit: int = 5
    exclude_recent: bool = True


class Recording(_Strict, frozen=True):
    """``recording``: what is stored besides question and answer: the turn's tool calls and results
    (``record_all_tool_calls``); ``record_reasoning`` is accepted, but our adapters keep no reasoning text."""

    record_all_tool_calls: bool = False
    record_reasoning: bool = False


class MemoryConfig(_Strict, frozen=True):
    """The ``memory`` block (MassGen spec §5.4)."""

    enabled: bool = True
    conversation_memory: ConversationMemory = ConversationMemory()
    persistent_memory: PersistentMemory = PersistentMemory(enabled=False)
    compression: Compression | None = None
    retrieval: Retrieval = Retrieval()
    recording: Recording = Recording()


def context_window(model: str | None) -> int:
    """The context window of ``model`` in tokens (:data:`CONTEXT_WINDOWS`, else :data:`DEFAULT_CONTEXT_WINDOW`)."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    return next((n for prefix, n in CONTEXT_WINDOWS if name.startswith(prefix)), DEFAULT_CONTEXT_WINDOW)


def _is_dict(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict)


def merged(top: dict[str, Any] | None, agent: dict[str, Any] | None) -> dict[str, Any] | None:
    """``agent`` deep-merged over ``top`` (MassGen's per-agent override), None when neither is given."""
    if top is None and agent is None:
        return None

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            old = out.get(k)
            out[k] = merge(old, v) if _is_dict(old) and _is_dict(v) else v
        return out

    return merge(top or {}, agent or {})


def resolve(raw: dict[str, Any] | None, where: str, origin: str) -> MemoryConfig | None:
    """The agent's memory settings from its merged block (:func:`merged`), checked; None when off.

    Raises:
        ConfigError: an unknown key, a bad value, a threshold outside (0, 1], a literal API key; the
            message names the key path (``where`` is e.g. ``agents[0].memory``).
    """
    if raw is None:
        return None
    try:
        cfg = msgspec.convert(raw, MemoryConfig)
    except msgspec.ValidationError as exc:
        m = re.search(r"^(.*?)(?: - at `\$(.*)`)?$", str(exc))
        what, at = (m.group(1), m.group(2) or "") if m else (str(exc), "")
        raise ConfigError(f"{origin}: bad value at `{where}{at}`: {what} (MassGen spec §5.4 lists the keys)") from None
    if not cfg.enabled or not (cfg.persistent_memory.enabled or cfg.compression is not None):
        return None
    c = cfg.compression
    if c is not None:
        for key in ("trigger_threshold", "target_ratio"):
            if not 0 < getattr(c, key) <= 1:
                raise ConfigError(f"{origin}: `{where}.compression.{key}` must be a fraction of the context "
                                  f"window in (0, 1] (got {getattr(c, key)})")
        if c.target_ratio > c.trigger_threshold:
            raise ConfigError(f"{origin}: `{where}.compression.target_ratio` ({c.target_ratio}) must not exceed "
                              f"`trigger_threshold` ({c.trigger_threshold}): compression would not reduce anything")
        if c.context_window is not None and c.context_window < 1:
            raise ConfigError(f"{origin}: `{where}.compression.context_window` must be a number of tokens >= 1")
    if cfg.recording.record_reasoning:
        _log.warning("%s: `%s.recording.record_reasoning` has no effect here: the adapters keep no reasoning "
                     "text, so a turn's answer (and with `record_all_tool_calls` its tool calls) is recorded", origin,
                     where)
    if cfg.retrieval.limit < 1:
        raise ConfigError(f"{origin}: `{where}.retrieval.limit` must be >= 1")
    p = cfg.persistent_memory
    llm = _by_reference(p.llm, f"{where}.persistent_memory.llm", origin)
    embedding = _by_reference(p.embedding, f"{where}.persistent_memory.embedding", origin)
    qdrant = p.qdrant
    if qdrant.mode == "local":
        qdrant = msgspec.structs.replace(qdrant, path=str(Path(qdrant.path).expanduser().resolve()))
    return msgspec.structs.replace(
        cfg, persistent_memory=msgspec.structs.replace(p, llm=llm, embedding=embedding, qdrant=qdrant))


def _by_reference(m: MemoryModel, where: str, origin: str) -> MemoryModel:
    """``api_key: ${NAME}`` becomes ``api_key_env: NAME``; a literal key is refused (it would be logged)."""
    if not m.model:
        raise ConfigError(f"{origin}: `{where}.model` is required (e.g. `model: gpt-4.1-nano-2025-04-14`)")
    if m.base_url is not None and not re.match(r"^https?://[^/\s]+", m.base_url):
        raise ConfigError(f"{origin}: `{where}.base_url` {m.base_url!r} is not an http(s) URL")
    if m.api_key is None:
        return m
    ref = _ENV_REF.match(m.api_key)
    if not ref:
        raise ConfigError(f"{origin}: `{where}.api_key` holds a literal key, which would be written to the event "
                          "log; put it in an environment variable and write `api_key: ${NAME}`")
    return msgspec.structs.replace(m, api_key=None, api_key_env=ref.group(1))


__all__ = [
    "CONTEXT_WINDOWS", "DEFAULT_CONTEXT_WINDOW", "Compression", "ConversationMemory", "MemoryConfig", "MemoryModel",
    "PersistentMemory", "QdrantConfig", "Recording", "Retrieval", "context_window", "merged", "resolve",
]
