"""``local``: the embedded SmolLM2 model through the same ``openai`` SDK path as ``chatcompletion``.

With no ``base_url`` (and no ``MASSGEN_LOCAL_LLM_URL``) the worker starts the model server itself (once
per process); otherwise it uses that server (e.g. the compose ``local-llm`` service). Workflow decisions use JSON-schema-constrained
output, since the model emits no native tool calls.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from massgen.config import BackendConfig
from massgen.events import TurnRequested
from massgen_agent_worker.local_llm import MODEL_NAME, LocalModelServer
from massgen_agent_worker.providers import Completion, OnText, chatcompletion

DEFAULT_MAX_TOKENS = 256
_server: LocalModelServer | None = None


def server() -> LocalModelServer:
    """The process-wide model server (logs under ``$MASSGEN_HOME/logs``)."""
    global _server
    if _server is None:
        home = Path(os.environ.get("MASSGEN_HOME", Path.home() / ".massgen"))
        _server = LocalModelServer(home / "logs")
    return _server


async def complete(cfg: BackendConfig, request: TurnRequested, on_text: OnText) -> Completion:
    """One call to the local model. Raises as :func:`chatcompletion.complete`, plus ``LocalModelError``."""
    # MASSGEN_LOCAL_LLM_URL: a model server the deployment provides (compose's local-llm), kept out of
    # the config so no deployment address enters run.submitted.
    base_url = cfg.base_url or os.environ.get("MASSGEN_LOCAL_LLM_URL") or await server().ensure()
    cfg = msgspec.structs.replace(
        cfg, model=cfg.model or MODEL_NAME, max_tokens=cfg.max_tokens or DEFAULT_MAX_TOKENS
    )
    return await chatcompletion.complete(cfg, request, on_text, base_url=base_url)
