"""The secret store: MCP ``env``/``headers`` values, kept out of the event log (docs/architecture principle 7).

``run.submitted`` carries ``${secret:<digest>}`` references (:func:`massgen_es.config.secret_ref`); the
submitter puts the values here first, and the MCP broker resolves the references when it starts a
server. A JetStream key-value bucket, so it follows the stack wherever it runs (embedded or compose).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from massgen_es import scrub, subjects
from massgen_es.bus import cluster, natsapi
from massgen_es.errors import ConfigError

_REF = re.compile(r"\$\{secret:([0-9a-f]{32})\}")


class SecretStore:
    """Digest -> value, in the ``MASSGEN_SECRETS`` bucket."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = natsapi.jetstream(nc)
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(subjects.SECRETS_BUCKET)
            except BucketNotFoundError:
                self._kv = await natsapi.admin(self.js).create_key_value(
                    KeyValueConfig(bucket=subjects.SECRETS_BUCKET, history=1, storage=StorageType.FILE,
                                   replicas=cluster.replicas(self.nc))
                )
        return self._kv

    async def put_all(self, values: Mapping[str, str]) -> None:
        """Store ``{digest: value}`` (idempotent: the key is the value's digest)."""
        if not values:
            return
        scrub.remember(values.values())
        kv = await self._bucket()
        for digest, value in values.items():
            await kv.put(digest, value.encode())

    async def resolve(self, text: str) -> str:
        """Replace every ``${secret:<digest>}`` in ``text`` by its value.

        Raises:
            ConfigError: a referenced secret is not in the store (the run was submitted without it).
        """
        digests = _REF.findall(text)
        if not digests:
            return text
        kv = await self._bucket()
        values: dict[str, str] = {}
        for d in digests:
            try:
                entry = await kv.get(d)
            except KeyNotFoundError:
                raise ConfigError(
                    f"secret {d[:8]}... is not in the secret store; submit the run with `massgen submit`, "
                    "which stores MCP env and header values there"
                ) from None
            values[d] = (entry.value or b"").decode()
        scrub.remember(values.values())
        return _REF.sub(lambda m: values[m.group(1)], text)
