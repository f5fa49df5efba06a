"""Big payloads by reference (docs/architecture principle 5): the JetStream Object Store bucket ``MASSGEN_OBJECTS``.

Objects are content-addressed: the name is the sha256 of the bytes, so storing the same output twice
(a redelivered execution) stores it once, and an event's reference can be checked against its digest.
"""

from __future__ import annotations

import hashlib

from nats.aio.client import Client
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore as Bucket

from massgen_es import scrub, subjects
from massgen_es.bus import cluster, natsapi
from massgen_es.errors import BusError
from massgen_es.events import ObjectRef


class ObjectStore:
    """Put and get content-addressed objects."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js = natsapi.jetstream(nc)
        self._store: Bucket | None = None

    async def _bucket(self) -> Bucket:
        if self._store is None:
            try:
                self._store = await self.js.object_store(subjects.OBJECTS_BUCKET)
            except BucketNotFoundError:
                self._store = await natsapi.admin(self.js).create_object_store(
                    subjects.OBJECTS_BUCKET,
                    config=ObjectStoreConfig(storage=StorageType.FILE, replicas=cluster.replicas(self.nc)),
                )
        return self._store

    async def put(self, data: bytes, label: str = "", *, exact: bool = False) -> ObjectRef:
        """Store ``data`` (once per content), secrets scrubbed (:mod:`massgen_es.scrub`), and return its
        reference (the digest is of the stored, scrubbed bytes). ``exact``: stored byte for byte, not
        scrubbed (a user's uploaded file, ``massgen_es.media``: scrubbing could corrupt an image, and the
        reference was computed from the file)."""
        if not exact:
            data = scrub.data(data)
        digest = hashlib.sha256(data).hexdigest()
        store = await self._bucket()
        try:
            await store.get_info(digest)
        except ObjectNotFoundError:
            await store.put(digest, data)
        return ObjectRef(name=digest, digest=f"sha256:{digest}", size=len(data), label=label)

    async def get(self, ref: ObjectRef) -> bytes:
        """The bytes of ``ref``, checked against its digest.

        Raises:
            BusError: the object is missing or does not match its digest.
        """
        store = await self._bucket()
        try:
            data = (await store.get(ref.name)).data or b""
        except ObjectNotFoundError:
            raise BusError(
                f"object {ref.name} ({ref.label or 'no label'}) is not in {subjects.OBJECTS_BUCKET}"
            ) from None
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != ref.digest:
            raise BusError(f"object {ref.name} does not match its digest {ref.digest}")
        return data
