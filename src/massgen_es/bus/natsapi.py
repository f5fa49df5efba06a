"""The nats-py calls the kernel makes, with complete types.

nats-py ships type hints (``py.typed``) but leaves a few parameters unannotated: the ``**opts`` of
``Client.jetstream``, the ``Future`` of ``Client.subscribe``, the ``**params`` of ``add_stream``,
``update_stream``, ``create_key_value`` and ``create_object_store``, and the ``**kwargs`` of
``KeyValue.keys``. Strict type checking reports every use of those methods as partially unknown. Each
protocol here states the signature the kernel uses; nats-py's objects are returned as them, which pyright
checks structurally (no cast), and the calls are nats-py's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, KeyValueConfig, ObjectStoreConfig, StreamConfig, StreamInfo
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore


class Connection(Protocol):
    """What the kernel calls on a ``nats.aio.client.Client`` beyond its fully typed methods."""

    def jetstream(self) -> JetStreamContext:
        """The JetStream context of this connection, with nats-py's default options."""
        ...

    async def subscribe(
        self, subject: str, queue: str = "", cb: Callable[[Msg], Awaitable[None]] | None = None
    ) -> Subscription:
        """A core NATS subscription; with ``cb``, messages are handed to it as they arrive."""
        ...


class Admin(Protocol):
    """The JetStream administration calls the kernel makes (streams and buckets)."""

    async def add_stream(self, config: StreamConfig) -> StreamInfo:
        """Create a stream (refused with ``BadRequestError`` when it exists with another config)."""
        ...

    async def update_stream(self, config: StreamConfig) -> StreamInfo:
        """Change an existing stream's config."""
        ...

    async def add_consumer(self, stream: str, config: ConsumerConfig) -> ConsumerInfo:
        """Create a consumer, or change the editable settings (ack wait, ...) of an existing one."""
        ...

    async def create_key_value(self, config: KeyValueConfig) -> KeyValue:
        """Create a key-value bucket."""
        ...

    async def create_object_store(self, bucket: str, config: ObjectStoreConfig) -> ObjectStore:
        """Create an object store bucket."""
        ...


class KeyLister(Protocol):
    """Listing a key-value bucket's keys."""

    async def keys(self, filters: list[str] = ...) -> list[str]:
        """Every key in the bucket (nats-py raises ``NoKeysError`` when there is none)."""
        ...


def connection(nc: Client) -> Connection:
    """``nc`` as a :class:`Connection`."""
    return nc


def jetstream(nc: Client) -> JetStreamContext:
    """``nc.jetstream()``."""
    return connection(nc).jetstream()


def server_info(nc: Client) -> dict[str, object]:
    """The INFO the connected server sent (``server_name``, ``cluster`` when clustered, ``version``...).

    nats-py keeps it in ``Client._server_info`` with no public accessor; an empty dict before connecting.
    """
    info: dict[str, object] = getattr(nc, "_server_info", None) or {}
    return info


def client_of(js: JetStreamContext) -> Client:
    """The connection a JetStream context was made from (nats-py's ``JetStreamContext._nc``)."""
    nc: Client = getattr(js, "_nc")  # noqa: B009 - a private attribute, read without pyright's complaint
    return nc


def admin(js: JetStreamContext) -> Admin:
    """``js`` as an :class:`Admin`."""
    return js


def key_lister(kv: KeyValue) -> KeyLister:
    """``kv`` as a :class:`KeyLister`."""
    return kv
