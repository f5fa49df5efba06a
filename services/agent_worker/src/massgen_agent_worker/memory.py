"""MassGen's persistent memory and context compression (MassGen spec §5.4), run in the agent worker.

The worker holds the provider keys, so it runs the memory library (mem0, the one MassGen uses, over
Qdrant) and records what it did as events (``massgen_es.events``): ``memory.retrieved`` (facts put in
the system message), ``memory.stored`` (what a turn added) and ``context.compressed``. Replay shows
them without calling anything; the store's facts are not in the log, only what each turn stored and saw.

- **Retrieval**: at the start of each turn attempt, the facts closest to the turn's task (the last user
  message) from the agent's memories of this session, at most ``retrieval.limit``; with
  ``exclude_recent`` the ones this run recorded are left out (the run's messages hold them already),
  except after a compression, when they are what the summary lost.
- **Storing**: after a turn attempt answered, its task and answer (and with
  ``recording.record_all_tool_calls`` its tool calls and results) go to ``mem0.add``, which extracts
  facts with the memory LLM. The ``memory.stored`` event has the id ``<turn key>:memory:result``; a
  redelivered turn that finds it does not store again (``once.prior``), and mem0 drops facts whose hash
  it already holds, so a crash between the store and the event stores nothing twice either.
- **Compression** (:func:`plan`): when a call's messages pass ``trigger_threshold`` of the model's
  context window, the oldest ones (never the system message or the turn's task) are summarised by the
  memory LLM into the system message, keeping the newest that fit ``target_ratio`` of the window.

mem0 and qdrant-client are the worker's optional ``memory`` extra; without it a turn with memory fails
naming the extra. mem0's telemetry (PostHog) is switched off before it is imported (``MEM0_TELEMETRY``,
read once at import), and its files go under ``$MASSGEN_HOME/mem0`` (``MEM0_DIR``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from massgen_es import ops
from massgen_es.errors import ConfigError
from massgen_es.events import MemoryFact, Message
from massgen_es.memory import MemoryConfig, MemoryModel

log = logging.getLogger("massgen.agent_worker.memory")

EXTRA = "massgen-agent-worker[memory]"
COLLECTION = "massgen_memory"
DEFAULT_DIMS = 1536
SUMMARY_PROMPT = (
    "Summarise the conversation below for the assistant who will continue it: keep every fact, decision, "
    "file name, number and open question; drop pleasantries. Answer with the summary only."
)

_stores: dict[tuple[Any, ...], Any] = {}
"""One mem0 ``AsyncMemory`` per store and models: a local Qdrant directory admits one client per process."""
_locks: dict[tuple[Any, ...], asyncio.Lock] = {}
"""Per store and event loop: calls are serialised, as Qdrant's in-process engine is not safe for concurrent ones."""
_clients: dict[tuple[Any, ...], Any] = {}


@atexit.register
def _close() -> None:
    """Close the Qdrant clients while the interpreter can still run their cleanup (their ``__del__`` fails
    at shutdown)."""
    for client in _clients.values():
        with contextlib.suppress(Exception):
            client.close()
    _clients.clear()


def _mem0() -> tuple[Any, Any, Any]:
    """``(AsyncMemory, MemoryConfig, QdrantClient)`` of the installed extra.

    Raises:
        ConfigError: the ``memory`` extra is not installed in this worker.
    """
    os.environ["MEM0_TELEMETRY"] = "False"  # mem0 reports usage to PostHog unless this is set at import
    os.environ.setdefault("MEM0_DIR", str(ops.home() / "mem0"))
    try:
        from mem0 import AsyncMemory  # noqa: PLC0415 - the optional extra
        from mem0.configs.base import MemoryConfig as Mem0Config  # noqa: PLC0415
        from qdrant_client import QdrantClient  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"the config's `memory` block needs mem0 and qdrant-client in the agent worker ({exc}); install the "
            f"worker's memory extra: pip install '{EXTRA}' (`make install` does)") from None
    return AsyncMemory, Mem0Config, QdrantClient


def _key(m: MemoryModel) -> str:
    key = os.environ.get(m.api_key_env)
    if not key:
        raise ConfigError(f"memory: the API-key variable {m.api_key_env} is not set in the agent worker's "
                          f"environment (persistent_memory {m.model})")
    return key


def _base_url(m: MemoryModel) -> str:
    return m.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"


def _store(cfg: MemoryConfig) -> tuple[Any, asyncio.Lock]:
    """The mem0 store for ``cfg`` (made once per process)."""
    async_memory, mem0_config, qdrant_client = _mem0()
    p = cfg.persistent_memory
    q = p.qdrant
    target = ("server", q.host, q.port) if q.mode == "server" else ("local", q.path)
    key = (target, p.llm, p.embedding)
    lock = _locks.setdefault((key, asyncio.get_running_loop()), asyncio.Lock())
    if key in _stores:
        return _stores[key], lock
    if target not in _clients:
        _clients[target] = (qdrant_client(host=q.host, port=q.port) if q.mode == "server"
                            else qdrant_client(path=q.path))
    dims = p.embedding.dimensions or DEFAULT_DIMS
    embedder: dict[str, Any] = {"model": p.embedding.model, "api_key": _key(p.embedding),
                                "openai_base_url": _base_url(p.embedding)}
    if p.embedding.dimensions:
        embedder["embedding_dims"] = dims
    history = os.path.join(q.path if q.mode == "local" else str(ops.home() / "mem0"), "history.db")
    os.makedirs(os.path.dirname(history), exist_ok=True)
    config = mem0_config(**{
        "llm": {"provider": "openai", "config": {
            "model": p.llm.model, "api_key": _key(p.llm), "openai_base_url": _base_url(p.llm)}},
        "embedder": {"provider": "openai", "config": embedder},
        "vector_store": {"provider": "qdrant", "config": {
            "client": _clients[target], "collection_name": f"{COLLECTION}_{dims}", "embedding_model_dims": dims,
            "on_disk": p.on_disk}},
        "history_db_path": history,
    })
    store = async_memory(config)
    # mem0's OpenAI classes send to OpenRouter whenever OPENROUTER_API_KEY is set, whatever the config
    # says: give them clients on the configured endpoints, so memory traffic goes where the config says.
    store.llm.client = openai.OpenAI(api_key=_key(p.llm), base_url=_base_url(p.llm))
    store.embedding_model.client = openai.OpenAI(api_key=_key(p.embedding), base_url=_base_url(p.embedding))
    _stores[key] = store
    return store, lock


@dataclass(frozen=True)
class AgentMemory:
    """One agent's persistent memory in one session.

    Attributes:
        cfg: the agent's resolved ``memory`` block.
        agent: whose memories (``agent_name`` or the agent id).
        session: the session they belong to (mem0's ``run_id``).
        run_id: this run; stored facts carry it (``massgen_run``), so ``exclude_recent`` can leave them out.
    """

    cfg: MemoryConfig
    agent: str
    session: str
    run_id: str

    async def search(self, query: str, *, exclude_recent: bool) -> tuple[tuple[MemoryFact, ...], int]:
        """The facts closest to ``query`` (at most ``retrieval.limit``) and how many were left out as this
        run's own.

        Raises:
            ConfigError: the extra is missing or a key variable is unset.
            Exception: what mem0 raises (the caller records it as a failure).
        """
        store, lock = _store(self.cfg)
        limit = self.cfg.retrieval.limit
        async with lock:
            found = await store.search(query[:4000], filters={"agent_id": self.agent, "run_id": self.session},
                                       top_k=limit * 3 if exclude_recent else limit)
        hits = found.get("results", []) if isinstance(found, dict) else list(found or [])
        recent = [h for h in hits if (h.get("metadata") or {}).get("massgen_run") == self.run_id]
        kept = [h for h in hits if h not in recent] if exclude_recent else hits
        facts = tuple(MemoryFact(id=str(h.get("id")), text=str(h.get("memory", "")), score=h.get("score"))
                      for h in kept[:limit])
        return facts, len(recent) if exclude_recent else 0

    async def store(self, messages: list[dict[str, str]]) -> tuple[MemoryFact, ...]:
        """Give ``messages`` (``{"role", "content"}``) to mem0; the facts it added, updated or deleted.

        Raises:
            ConfigError: the extra is missing or a key variable is unset.
            Exception: what mem0 raises (the caller records it as a failure).
        """
        store, lock = _store(self.cfg)
        async with lock:
            out = await store.add(messages, agent_id=self.agent, run_id=self.session,
                                  metadata={"massgen_run": self.run_id})
        results = out.get("results", []) if isinstance(out, dict) else []
        return tuple(MemoryFact(id=str(r.get("id")), text=str(r.get("memory", "")), event=r.get("event"))
                     for r in results)

    async def summarise(self, messages: Sequence[Message]) -> str:
        """A summary of ``messages`` by the memory LLM (``persistent_memory.llm``).

        Raises:
            ConfigError: the API-key variable is unset.
            openai.APIError: the call failed.
        """
        m = self.cfg.persistent_memory.llm
        client = openai.AsyncOpenAI(api_key=_key(m), base_url=_base_url(m), max_retries=2)
        async with client:
            reply = await client.chat.completions.create(model=m.model or "", messages=[
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": "\n\n".join(_transcript(messages))},
            ])
        return (reply.choices[0].message.content or "").strip() if reply.choices else ""


def _transcript(messages: Sequence[Message]) -> list[str]:
    out = []
    for m in messages:
        calls = "".join(f"\n[calls {c.name}({c.arguments})]" for c in m.tool_calls)
        out.append(f"{m.role}: {m.content}{calls}")
    return out


def tokens(messages: Sequence[Message]) -> int:
    """Estimated tokens of ``messages``: characters / 4 (content and tool-call arguments), the usual rule
    of thumb for English text; no tokenizer is needed for a threshold."""
    return sum(len(m.content) + sum(len(c.name) + len(c.arguments) for c in m.tool_calls) for m in messages) // 4


@dataclass(frozen=True)
class Plan:
    """What a compression removes: ``removed`` messages (indexes into the list) and the budget it aimed at."""

    removed: tuple[int, ...]
    budget: int
    tokens_before: int


def plan(messages: Sequence[Message], task: int, window: int, trigger: float, target: float) -> Plan | None:
    """Which messages to summarise, or None when under ``trigger`` of ``window`` or nothing can go.

    The leading system messages and ``messages[task]`` (the turn's task) always stay; of the others,
    the newest that fit ``target * window`` (with what stays anyway) are kept, never starting at a tool
    result whose call would be gone (the provider refuses a result without its call).
    """
    before = tokens(messages)
    if before <= trigger * window:
        return None
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    fixed = tokens(messages[:head]) + tokens(messages[task:task + 1])
    budget = int(target * window)
    keep_from, used = len(messages), fixed
    while keep_from - 1 > task and used + tokens(messages[keep_from - 1:keep_from]) <= budget:
        keep_from -= 1
        used += tokens(messages[keep_from:keep_from + 1])
    while keep_from < len(messages) and messages[keep_from].role == "tool":
        keep_from += 1
    removed = tuple(i for i in range(head, len(messages)) if i != task and (i < task or i < keep_from))
    return Plan(removed, budget, before) if removed else None


def with_system_note(messages: list[Message], note: str) -> list[Message]:
    """``messages`` with ``note`` appended to the first system message (or a new one in front)."""
    if messages and messages[0].role == "system":
        return [Message(role="system", content=f"{messages[0].content}\n\n{note}"), *messages[1:]]
    return [Message(role="system", content=note), *messages]


def facts_note(facts: Sequence[MemoryFact]) -> str:
    """The system-message section listing retrieved facts (MassGen injects them the same way)."""
    return "Relevant memories from earlier conversations:\n" + "\n".join(f"- {f.text}" for f in facts)


def record_messages(task: str, answer: str, rounds: Sequence[Message], all_tool_calls: bool) -> list[dict[str, str]]:
    """What a turn gives mem0: its task and answer, and with ``all_tool_calls`` each tool round."""
    out = [{"role": "user", "content": task}]
    if all_tool_calls:
        for m in rounds:
            if m.role == "assistant" and m.tool_calls:
                calls = "; ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
                out.append({"role": "assistant", "content": f"(tool calls) {calls}"})
            elif m.role == "tool":
                out.append({"role": "user", "content": f"(tool result) {m.content[:2000]}"})
    if answer.strip():
        out.append({"role": "assistant", "content": answer})
    return out


def answer_of(content: str, tool_calls: Sequence[Any]) -> str:
    """A turn's answer: its text, else a ``new_answer`` call's ``content`` argument."""
    if content.strip():
        return content
    for c in tool_calls:
        if c.name == "new_answer":
            try:
                args = json.loads(c.arguments or "{}")
            except json.JSONDecodeError:
                continue
            if isinstance(args, dict) and isinstance(args.get("content"), str):
                return args["content"]
    return ""
