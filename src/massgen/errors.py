"""The one exception tree of massgen-es.

- ``MassgenError``: base of everything raised on purpose.
    - ``ConfigError``: a config file or value is wrong; the message names the key and the fix.
    - ``BusError``: NATS/JetStream could not do what was asked.
        - ``BusUnavailable``: no server answers at the URL.
        - ``ConcurrencyConflict``: an append lost the optimistic-concurrency race (JetStream err_code 10071).
        - ``StreamNotFound``: the stream is missing (err_code 10059).
    - ``EventDecodeError``: bytes on the bus are not a valid event envelope.
    - ``ProviderError``: an LLM provider call failed (``retryable``, ``retry_after_s``, ``status``).
        - ``ProviderRateLimited`` (429, retryable, honours ``Retry-After``)
        - ``ProviderAuthError`` (401/403)
        - ``ProviderBadRequest`` (400/404/413/422: the request itself is wrong)
        - ``ProviderServerError`` (5xx, 408, 409: retryable)
        - ``ProviderConnectionError`` (unreachable, connection dropped: retryable)
        - ``ProviderTimeout`` (connect, first-token or total timeout: retryable)
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
        retry_after_s: seconds the provider asked us to wait (``Retry-After``), if it did.
        status: the HTTP status, when there was one.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, retryable: bool | None = None, retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


class ProviderRateLimited(ProviderError):
    """HTTP 429: too many requests or tokens; retry after ``retry_after_s`` (or a backoff)."""

    retryable = True


class ProviderAuthError(ProviderError):
    """HTTP 401/403: the API key is missing, wrong or not allowed this model."""


class ProviderBadRequest(ProviderError):
    """HTTP 400/404/413/422: the request is wrong (unknown model, bad parameter, context too long)."""


class ProviderServerError(ProviderError):
    """HTTP 5xx (and 408/409): the provider failed; retrying may help."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or the connection dropped mid-stream."""

    retryable = True


class ProviderTimeout(ProviderError):
    """A connect, first-token or total timeout expired."""

    retryable = True


def provider_error_for_status(
    status: int, message: str, *, retry_after_s: float | None = None
) -> ProviderError:
    """The error class for an HTTP error status (the one mapping every adapter uses)."""
    if status == 429:
        cls: type[ProviderError] = ProviderRateLimited
    elif status in (401, 403):
        cls = ProviderAuthError
    elif status >= 500 or status in (408, 409):
        cls = ProviderServerError
    else:
        cls = ProviderBadRequest
    return cls(message, retry_after_s=retry_after_s, status=status)


class LocalModelError(MassgenError):
    """The embedded local model could not be installed, verified or started."""


class ReplayError(MassgenError):
    """A run cannot be rebuilt from its event log."""


class NondeterminismError(ReplayError):
    """Re-running the decision core over a recorded log produced different decisions."""


class DeploymentError(MassgenError):
    """The compose stack could not be built, started or driven (massgen.testing.compose); the message
    carries the failing command and the tail of its output."""
