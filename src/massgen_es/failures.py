"""Exceptions as data: the one way an exception becomes a ``Failure`` record at a service boundary
(docs/architecture: failures are data, never pickled exceptions)."""

from __future__ import annotations

from typing import Any

from massgen_es.errors import InternalError, MassgenError
from massgen_es.events import Failure

_DETAILS = ("status", "retry_after_s", "rule")
"""Attributes of an error that go into ``Failure.details`` when set (provider status, Retry-After,
the command filter's rule)."""


def failure_of(exc: BaseException, **details: Any) -> Failure:
    """``exc`` as a :class:`Failure`: its kind, message, whether retrying may help, its details, and
    the exception that caused it as ``cause`` (``raise ... from``), recursively.

    The kind is the name of a class of the ``massgen_es.errors`` tree; an exception from outside the
    tree (a bug, or a library error nobody mapped) is recorded as ``InternalError`` with the original
    as its cause, so every ``Failure.type`` names a class of the tree.

    Args:
        exc: the exception.
        details: extra details (JSON values) merged over the error's own.
    """
    if not isinstance(exc, MassgenError):
        return Failure(type=InternalError.__name__, message=f"unexpected {type(exc).__name__}: {exc}",
                       details=details, cause=_plain(exc))
    own = {k: getattr(exc, k) for k in _DETAILS if getattr(exc, k, None) is not None}
    return Failure(
        type=type(exc).__name__,
        message=str(exc),
        retryable=bool(getattr(exc, "retryable", False)),
        details={**own, **details},
        cause=_cause(exc),
    )


def _cause(exc: BaseException) -> Failure | None:
    cause = exc.__cause__
    if cause is None:
        return None
    return failure_of(cause) if isinstance(cause, MassgenError) else _plain(cause)


def _plain(exc: BaseException) -> Failure:
    """A foreign exception as it was (no tree kind): the cause of an ``InternalError``."""
    return Failure(type=type(exc).__name__, message=str(exc), cause=_cause(exc))
