"""Where LLM tool classifications are kept: the ``MASSGEN_TOOL_SAFETY`` key-value bucket, keyed by
``massgen_es.tool_safety.digest`` (issue 15 item 2). The agent worker writes an entry the first time a
planning-mode turn meets a tool without one (and records ``tool.classified``); the MCP broker and
``massgen tools review`` read them. A bucket that cannot be reached is no classification: the name
rule stands in (``massgen_es.tool_safety.classify``)."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from massgen_es import subjects
from massgen_es.bus import cluster, natsapi
from massgen_es.tool_safety import Learned

log = logging.getLogger("massgen.tool_safety")


class ClassificationStore:
    """Digest -> :class:`~massgen_es.tool_safety.Learned`, in the ``MASSGEN_TOOL_SAFETY`` bucket."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = natsapi.jetstream(nc)
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(subjects.TOOL_SAFETY_BUCKET)
            except BucketNotFoundError:
                self._kv = await natsapi.admin(self.js).create_key_value(KeyValueConfig(
                    bucket=subjects.TOOL_SAFETY_BUCKET, history=1, storage=StorageType.FILE,
                    replicas=cluster.replicas(self.nc)))
        return self._kv

    async def get(self, digest: str) -> Learned | None:
        """The stored classification of ``digest``; None when there is none or the bucket is out of
        reach (logged: the name rule then decides)."""
        try:
            entry = await (await self._bucket()).get(digest)
        except KeyNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - permissions, a server without the bucket: no classification
            log.warning("tool classifications unavailable (%s); the name rule decides", exc)
            return None
        try:
            return msgspec.json.decode(entry.value or b"", type=Learned)
        except msgspec.DecodeError:
            return None

    async def put(self, digest: str, learned: Learned) -> None:
        """Store ``learned`` under ``digest`` (a failure is logged; the event keeps the classification)."""
        try:
            await (await self._bucket()).put(digest, msgspec.json.encode(learned))
        except Exception as exc:  # noqa: BLE001 - see get()
            log.warning("cannot store a tool classification (%s)", exc)


__all__ = ["ClassificationStore"]
