"""The one exception tree of massgen-es.

- ``MassgenError``: base of everything raised on purpose.
    - ``ConfigError``: a config file or value is wrong; the message names the key and the fix.
    - ``BusError``: NATS/JetStream could not do what was asked.
        - ``BusUnavailable``: no server answers at the URL.
        - ``ConcurrencyConflict``: an append lost the optimistic-concurrency race (JetStream err_code 10071).
        - ``StreamNotFound``: the stream is missing (err_code 10059).
    - ``EventDecodeError``: bytes on the bus are not a valid event envelope.
    - ``ProviderError``: an LLM provider call failed.
        - ``ProviderHTTPError``: the provider answered with an HTTP error (``status``, ``retryable``).
        - ``ProviderConnectionError``: the provider could not be reached or timed out.
    - ``LocalModelError``: the embedded local model could not be installed, verified or started.
    - ``ReplayError``: a run cannot be rebuilt from its log.
        - ``NondeterminismError``: re-deciding a recorded log gave different decisions.

Errors cross service boundaries only as ``massgen.events.Failure`` records (DESIGN principle 6).
"""

from __future__ import annotations


class MassgenError(Exception):
    """Base class of every deliberate massgen-es error."""


class ConfigError(MassgenError):
    """Invalid configuration. The message names the offending key and how to fix it."""


class BusError(MassgenError):
    """NATS / JetStream failure."""


class BusUnavailable(BusError):
    """No NATS server answers at the configured URL."""


class ConcurrencyConflict(BusError):
    """An append with ``Nats-Expected-Last-Subject-Sequence`` lost the race (JetStream err_code 10071)."""


class StreamNotFound(BusError):
    """The JetStream stream does not exist (err_code 10059)."""


class EventDecodeError(MassgenError):
    """A message on the bus is not a valid event envelope."""


class ProviderError(MassgenError):
    """An LLM provider call failed.

    Attributes:
        retryable: whether the same call may succeed if repeated later.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error status."""

    def __init__(self, message: str, *, status: int, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or the call timed out."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class LocalModelError(MassgenError):
    """The embedded local model could not be installed, verified or started."""


class ReplayError(MassgenError):
    """A run cannot be rebuilt from its event log."""


class NondeterminismError(ReplayError):
    """Re-running the decision core over a recorded log produced different decisions."""
