"""Child processes that do not outlive their parent (the embedded nats-server, the local model server).

A ``massgen submit`` killed hard (SIGKILL, a CI timeout) cannot stop its children itself; left running,
a llama.cpp server keeps both cores busy and slows every later run on the machine (seen in CI).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # prctl(2): the signal the child gets when the thread that made it exits
_LINUX = sys.platform == "linux"
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if _LINUX else None


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that has the child sent SIGTERM when its parent dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``); None elsewhere, where children may outlive a killed parent.

    The signal follows the *thread* that started the child: start children from a long-lived thread
    (the event loop's), not from ``asyncio.to_thread``.
    """
    if _libc is None:
        return None
    prctl = _libc.prctl

    def _set() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return _set
