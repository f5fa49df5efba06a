"""``local``: a registry model (:mod:`massgen_es.models`) through the same ``openai`` SDK path as
``chatcompletion``.

With no ``base_url`` (and no ``MASSGEN_LOCAL_LLM_URL``) the worker starts the model's server itself
(once per process and model); otherwise it uses that server (e.g. the compose ``local-llm`` service).
Workflow decisions use the JSON-schema protocol of :mod:`massgen_agent_worker.decisions`, since the
models emit no native tool calls. Each request asks for llama.cpp's prompt cache, in the agent's own
slot (:func:`slot_of`), so an agent's later turns reuse what its earlier turns already processed.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from massgen_agent_worker.local_llm import DEFAULT_PARALLEL, LocalModelServer
from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, chatcompletion
from massgen_es import ids, models
from massgen_es.config import BackendConfig
from massgen_es.events import TurnRequested

DEFAULT_MAX_TOKENS = 512
_servers: dict[str, LocalModelServer] = {}


def server(model: str | None = None) -> LocalModelServer:
    """The process-wide server of ``model`` (logs under ``$MASSGEN_HOME/logs``)."""
    name = models.get(model).name
    if name not in _servers:
        home = Path(os.environ.get("MASSGEN_HOME") or Path.home() / ".massgen")
        _servers[name] = LocalModelServer(name, home / "logs")
    return _servers[name]


def shutdown() -> None:
    """Stop every model server this process started (``providers.shutdown``)."""
    for s in _servers.values():
        s.stop()


def slot_of(request: TurnRequested) -> int:
    """The server slot of the request's agent: its position in the team (``agentN`` is slot N-1), modulo
    the server's slots, so each agent of a team of up to that many keeps its own prompt cache."""
    return ids.anon_index(request.anon_id or ids.anon_id(0)) % DEFAULT_PARALLEL


async def complete(cfg: BackendConfig, request: TurnRequested, on_text: OnText) -> Completion:
    """One call to the local model. Raises as :func:`chatcompletion.complete`, plus ``LocalModelError``."""
    # MASSGEN_LOCAL_LLM_URL: a model server the deployment provides (compose's local-llm), kept out of
    # the config so no deployment address enters run.submitted. A server of one's own serves any model name.
    base_url = cfg.base_url or os.environ.get("MASSGEN_LOCAL_LLM_URL")
    name = cfg.model if base_url and cfg.model else models.get(cfg.model).name
    base_url = base_url or await server(name).ensure()
    cfg = msgspec.structs.replace(
        cfg, model=name, max_tokens=cfg.max_tokens or DEFAULT_MAX_TOKENS,
        extra_body={"cache_prompt": True, "id_slot": slot_of(request), **cfg.extra_body},
    )
    return await chatcompletion.complete(cfg, request, on_text, base_url=base_url)


adapter = FunctionAdapter(complete, shutdown)
