"""``azure_openai``: Azure OpenAI deployments, Chat Completions streaming with native tools.

MassGen's ``AzureOpenAIBackend`` (MassGen spec §2.1, §2.2): ``openai.AsyncAzureOpenAI`` on a resource
endpoint, where ``backend.model`` is the **deployment name**. The SDK sends each call to
``{endpoint}/openai/deployments/{model}/chat/completions?api-version={api_version}`` with an ``api-key``
header. Unlike MassGen (which parses workflow decisions from a trailing JSON block, spec §2.3), the
workflow and MCP tools go in ``tools=`` as native function tools, like any ``chatcompletion`` backend.

Configuration:

- endpoint: ``backend.azure_endpoint``, else ``backend.base_url``, else ``AZURE_OPENAI_ENDPOINT``;
  none → ``ConfigError`` naming ``backend.azure_endpoint``;
- ``backend.api_version`` (default ``2024-12-01-preview``);
- key: the variable named by ``api_key_env``, default ``AZURE_OPENAI_API_KEY`` (Entra ID tokens are not
  supported).

The request, the stream and the error mapping are chatcompletion's (:func:`chatcompletion.stream_chat`:
messages, tools, ``temperature``/``max_tokens``/``top_p``/``seed``, ``extra_body``, usage on the
stream, ``ProviderError`` per failure kind), on an ``AsyncAzureOpenAI`` client.
"""

from __future__ import annotations

import os

import openai

from massgen_agent_worker.providers import Completion, FunctionAdapter, OnText, chatcompletion, loop_cached
from massgen_es.config import BackendConfig
from massgen_es.errors import ConfigError
from massgen_es.events import TurnRequested
from massgen_es.media import Attachment

DEFAULT_API_VERSION = "2024-12-01-preview"


def endpoint(cfg: BackendConfig) -> str:
    """The Azure resource endpoint for ``cfg``.

    Raises:
        ConfigError: none is configured.
    """
    url = cfg.azure_endpoint or cfg.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT")
    if not url:
        raise ConfigError(
            "backend azure_openai has no endpoint; set `backend.azure_endpoint` "
            "(e.g. https://RESOURCE.openai.azure.com) or export AZURE_OPENAI_ENDPOINT"
        )
    return url


def client(cfg: BackendConfig) -> openai.AsyncAzureOpenAI:
    """The shared ``AsyncAzureOpenAI`` client for ``cfg``'s endpoint, API version and key.

    Raises:
        ConfigError: no endpoint, or the API-key variable is not set.
    """
    url = endpoint(cfg)
    version = cfg.api_version or DEFAULT_API_VERSION
    key = chatcompletion.api_key(cfg, url)
    return loop_cached(
        ("azure", url, version, key, cfg.request_timeout_seconds, cfg.connect_timeout_seconds),
        lambda: openai.AsyncAzureOpenAI(
            azure_endpoint=url,
            api_version=version,
            api_key=key,
            max_retries=0,  # retries are the worker's decision, recorded as events
            timeout=chatcompletion.timeout(cfg),
        ),
    )


async def complete(
    cfg: BackendConfig, request: TurnRequested, on_text: OnText, attachments: tuple[Attachment, ...] = ()
) -> Completion:
    """One streamed chat completion on the Azure deployment ``cfg.model`` (``attachments`` as chatcompletion's).

    Raises:
        ProviderError: a subclass per failure kind (:func:`chatcompletion.map_openai_error`).
        ConfigError: no endpoint, or the API-key variable is not set.
    """
    return await chatcompletion.stream_chat(client(cfg), cfg, request, on_text, attachments)


adapter = FunctionAdapter(complete)
