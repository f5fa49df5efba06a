"""The one exception tree of massgen-es. A failure kind recorded in the log (``Failure.type``) is the
name of one of these classes; ``massgen_es.failures.failure_of`` turns any of them into a ``Failure``.

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
    - ``ProtocolError``: the coordination protocol ended an agent's turn.
        - ``EnforcementExhausted``: no valid workflow decision within ``max_attempts`` (MassGen spec §1.4).
    - ``ToolError``: an MCP tool call had no result; the message is for the model.
        - ``ToolArgumentError``: the arguments do not fit the tool's input schema.
        - ``ToolPermissionError``: the server or tool is not granted, or a path leaves the agent's roots.
        - ``UnknownTool``: the server has no such tool.
        - ``NoRecordedResult``: replaying tools, the recorded run has no result for this call.
        - ``ToolCallError``: the server answered the call with a protocol error.
        - ``ServerUnavailable``: the server could not be started, or its session ended (retryable).
        - ``CircuitOpen``: the server's circuit breaker is open (retryable, after its reset time).
        - ``ToolTimeout``: no answer in time (retryable).
        - ``CustomToolError``: a custom tool's function raised, or its runner gave no result.
    - ``ExecutionError``: a command was not run to its end; the message is for the model.
        - ``CommandRefused``: a filter refused it (``rule`` names which).
        - ``CommandStartError``: it could not be started (no working directory, fork refused).
        - ``SandboxUnavailable``: Docker mode without a usable engine or image (never falls back).
    - ``Interrupted``: a command or tool call was started but its service stopped before recording the
      outcome; it is not run again (it may already have had effects).
    - ``ReplayError``: a run cannot be rebuilt from its log.
        - ``NondeterminismError``: re-deciding a recorded log gave different decisions.
    - ``DeploymentError``: the compose stack could not be built, started or driven (tests).
    - ``InternalError``: an unexpected exception inside a service (a bug); its ``Failure`` carries the
      original exception as ``cause``.

Errors cross service boundaries only as ``massgen_es.events.Failure`` records (docs/architecture:
failures are data).
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


class HistoryConflict(BusError):
    """A recorded history cannot be written under a run id that already holds other events
    (``massgen_es.bus.history``, ``massgen import bundle``)."""


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


class ProtocolError(MassgenError):
    """The coordination protocol ended an agent's turn."""


class EnforcementExhausted(ProtocolError):
    """The agent made no valid workflow decision (``vote``/``new_answer``) within ``max_attempts``."""


class ToolError(MassgenError):
    """An MCP tool call had no result. The message is shown to the model as the tool's error.

    Attributes:
        retryable: whether the same call may succeed later.
    """

    retryable: bool = False


class ToolArgumentError(ToolError):
    """A model's tool arguments do not fit the tool's input schema."""


class ToolPermissionError(ToolError):
    """A tool call reaches outside what the agent may use (server, tool or path)."""


class PlanningModeBlocked(ToolError):
    """Planning mode holds the call back: an irreversible tool during coordination (MassGen spec §1.14);
    the agent describes what it would do, and the winner runs it while presenting."""


class ApprovalDenied(ToolError):
    """A call marked ``ask`` was denied by a person, or nobody answered in time (issue 15 item 3)."""


class UnknownTool(ToolError):
    """The MCP server has no tool of that name."""


class NoRecordedResult(ToolError):
    """Replaying tools from a recorded run, that run has no result for this call."""


class ToolCallError(ToolError):
    """The MCP server answered the call with a protocol error."""


class ServerUnavailable(ToolError):
    """The MCP server could not be started, or its session ended."""

    retryable = True


class CircuitOpen(ToolError):
    """The MCP server failed too often; calls resume after its breaker's reset time."""

    retryable = True


class ToolTimeout(ToolError):
    """No answer to a tool call, a catalog request or a command within its time."""

    retryable = True


class CustomToolError(ToolError):
    """A custom tool's function raised (the message names the exception), or its runner in the sandbox
    ended without a result (MassGen spec §2.5)."""


class ComputerUseError(ToolError):
    """A computer-use tool could not run (no key, an environment not built here, the provider refused the
    request): the calling model gets the message as the tool's error."""


class ComputerActionError(ToolError):
    """An action of the computer-use model the page or desktop refused, or that is malformed; its text is
    what the computer-use model reads, and the loop goes on."""


class ExecutionError(MassgenError):
    """A command was not run to its end. The message is shown to the model as the tool's error."""


class CommandRefused(ExecutionError):
    """A command filter refused the command; ``rule`` names the rule, the message says why and what
    to do instead."""

    def __init__(self, message: str, *, rule: str = "refused") -> None:
        super().__init__(message)
        self.rule = rule


class CommandStartError(ExecutionError):
    """The command could not be started (missing working directory, no ``/bin/sh``, fork refused)."""


class SandboxUnavailable(ExecutionError):
    """Docker mode is configured but no engine (or image) is usable; never a silent fallback."""


class Interrupted(MassgenError):
    """A side effect (a command, an MCP tool call) was started, but the service running it stopped before
    recording its outcome. The redelivered request is answered with this failure and not run again,
    because the first run may already have had effects (issue 13 item 3; docs/architecture principle 3)."""


class ReplayError(MassgenError):
    """A run cannot be rebuilt from its event log."""


class BundleError(MassgenError):
    """A bundle cannot be written, read or imported; the message names the file, what is wrong and the fix
    (``massgen_replay.bundle``)."""


class ExportFailed(MassgenError):
    """The OTLP backend did not take a run's spans (unreachable, or it refused them; ``massgen export otel``)."""


class NondeterminismError(ReplayError):
    """Re-running the decision core over a recorded log produced different decisions."""


class InternalError(MassgenError):
    """An unexpected exception inside a service: a bug. Recorded with the original as ``cause``."""


class DeploymentError(MassgenError):
    """The compose stack could not be built, started or driven (massgen_es.testing.compose); the message
    carries the failing command and the tail of its output."""
