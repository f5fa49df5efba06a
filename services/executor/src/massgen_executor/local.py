"""Local mode: run an agent's command as a resource-limited subprocess, for users without Docker
(issue #5 item 3; MassGen spec §4.1 runs ``subprocess.run(shell=True)`` with no limits at all), isolated
in Linux namespaces by bubblewrap (issue 13 item 2, :mod:`massgen_executor.isolation`).

The command runs as ``/bin/sh -c <command>`` in its own session and process group, with
``setrlimit`` limits on CPU time, address space, file size and process count, a minimal environment
(no host secrets), stdin from ``/dev/null``, and a wall-clock timeout that kills the whole group.
When the shell ends, whatever it left running in its group is killed too: background jobs do not
outlive the call (they would otherwise hold the output pipes open until they exit).

With an :class:`~massgen_executor.isolation.Isolation` (``command_line_execution_mode: local``), the
shell runs inside bwrap: its own PID, IPC, UTS and network namespaces, only the workspace writable,
context paths read-only, no ``/etc/shadow`` or other processes' ``/proc/*/environ``, an unprivileged
uid. Killing bwrap's group ends its PID namespace and with it every process of the command. Without
one (``local_unisolated``, an explicit opt-in) the command sees the host filesystem and network with
the executor's user: containment, not isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from massgen_es.errors import CommandStartError
from massgen_executor.isolation import Isolation, bwrap_argv, hand_over, require_bwrap
from massgen_executor.result import ExecResult

TIMEOUT_EXIT_CODE = -9  # -SIGKILL: what the killed shell reports; ``timed_out`` says why
LANG = "C.UTF-8"
_CHUNK = 64 * 1024
_DRAIN_GRACE_S = 2.0  # after the group is killed, how long a pipe held by an escaped process may stay open


@dataclass(frozen=True)
class Limits:
    """Per-process ``setrlimit`` limits of a local execution (issue #5 item 3).

    Every limit applies to each process separately (the shell and each of its children get their own
    budget); the wall-clock timeout is what bounds the group as a whole.

    Attributes:
        cpu_seconds: ``RLIMIT_CPU``. At the limit the process gets ``SIGXCPU``, one second later
            ``SIGKILL``.
        memory_bytes: ``RLIMIT_AS``, the *virtual address space*, not resident memory: an allocation
            beyond it fails (``MemoryError`` in Python, ``ENOMEM`` in C). Runtimes that reserve large
            address spaces up front (Node, the JVM, Go) need a higher value than they actually use.
        file_size_bytes: ``RLIMIT_FSIZE``: a write past it kills the writer with ``SIGXFSZ`` (or fails
            with ``EFBIG`` if the signal is ignored); the file keeps its first ``file_size_bytes``.
        processes: ``RLIMIT_NPROC``. The kernel counts all processes of the *real user id*, not of this
            command, and does not enforce it for root (``CAP_SYS_RESOURCE``/``CAP_SYS_ADMIN``); so it
            stops fork bombs only when the executor runs as an unprivileged user that has few other
            processes. Docker mode's pids limit is the real bound.
    """

    cpu_seconds: int = 60
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 1 << 30
    processes: int = 256

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_bytes", "file_size_bytes", "processes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer (got {value!r})")


def _clamp(kind: int, soft: int, hard: int) -> tuple[int, int]:
    # An unprivileged process cannot raise its hard limit: never ask for more than it has, or
    # setrlimit fails in the child and nothing runs.
    _, current_hard = resource.getrlimit(kind)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    return soft, hard


def _limiter(limits: Limits) -> Callable[[], None]:
    # Computed in the parent so that the forked child only calls setrlimit (little Python runs between
    # fork and exec, which is what makes preexec_fn risky).
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.processes, limits.processes),
    ]
    settings = [(kind, *_clamp(kind, soft, hard)) for kind, soft, hard in wanted]

    def apply() -> None:
        for kind, soft, hard in settings:
            resource.setrlimit(kind, (soft, hard))

    return apply


def minimal_env(work_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: the executor's ``PATH`` (to find tools), ``HOME=work_dir``,
    ``LANG=C.UTF-8``, then ``extra`` (which may override them). Nothing else of the host's environment,
    so API keys and tokens never reach an agent's command."""
    env = {"PATH": os.environ.get("PATH") or os.defpath, "HOME": str(work_dir), "LANG": LANG}
    env.update(extra or {})
    return env


@dataclass
class _Sink:
    """The head of one output stream; ``truncated`` once more arrived than ``cap``."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False


async def _drain(stream: asyncio.StreamReader, sink: _Sink) -> None:
    # Keep reading past the cap: a child writing into a full pipe would block forever.
    while chunk := await stream.read(_CHUNK):
        room = sink.cap - len(sink.data)
        if len(chunk) > room:
            sink.truncated = True
        if room > 0:
            sink.data += chunk[:room]


async def _shell_exit(proc: asyncio.subprocess.Process) -> int:
    """The shell's exit status, as soon as it exits.

    Python 3.11's ``Process.wait()`` returns only once the output pipes are closed too, which a
    background job holding them (``sleep 100 &``) delays until it ends; ``returncode`` is set at exit.
    """
    waiter = asyncio.ensure_future(proc.wait())
    delay = 0.005
    try:
        while not waiter.done() and proc.returncode is None:
            await asyncio.wait({waiter}, timeout=delay)
            delay = min(delay * 2, 0.1)
    finally:
        waiter.cancel()
    assert proc.returncode is not None
    return proc.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


async def run_local(
    command: str,
    *,
    work_dir: Path,
    timeout_s: float,
    limits: Limits,
    env: Mapping[str, str] | None = None,
    max_output_bytes: int = 1 << 20,
    isolation: Isolation | None = None,
    stdin: bytes | None = None,
) -> ExecResult:
    """Run ``/bin/sh -c command`` in ``work_dir`` with ``limits`` and a ``timeout_s`` wall clock.

    The process starts a new session (its pid is its process group id); stdin is ``/dev/null``, or
    a pipe that carries ``stdin`` and is then closed (how a value that must not show in the process
    list, such as a token, reaches the command); the
    environment is :func:`minimal_env` (``work_dir`` as ``HOME``, plus ``env``; never secrets: in a
    sandbox they show in its ``/proc/1/cmdline``). With ``isolation`` the shell runs inside bwrap
    (:func:`~massgen_executor.isolation.bwrap_argv`), which itself starts with an empty environment.
    Stdout and stderr are read concurrently and drained to the end, keeping the first
    ``max_output_bytes`` of each.

    When the shell exits, or the timeout expires, or the calling task is cancelled, the whole process
    group gets ``SIGKILL``, so backgrounded grandchildren (``sleep 100 &``) die with it. A process that
    left the group (``setsid``) escapes that kill; if it still holds the output pipes, reading stops
    after a short grace.

    Returns:
        An :class:`ExecResult`. On timeout: ``timed_out=True`` and ``exit_code=-9`` (``-SIGKILL``, the
        ``subprocess`` convention for "killed by signal 9", rather than ``timeout(1)``'s 124, which a
        command can also return by itself), with the output produced until then.

    Raises:
        ValueError: ``timeout_s`` is not positive or ``max_output_bytes`` is negative.
        CommandStartError: the process could not be started (e.g. ``work_dir`` does not exist).
        SandboxUnavailable: ``isolation`` is given but bwrap cannot run here (the message names the fix).
        asyncio.CancelledError: the call was cancelled; the process group has been killed.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive (got {timeout_s})")
    if max_output_bytes < 0:
        raise ValueError(f"max_output_bytes must be >= 0 (got {max_output_bytes})")
    argv, child_env = ["/bin/sh", "-c", command], minimal_env(work_dir, env)
    if isolation is not None:
        bwrap = await asyncio.to_thread(require_bwrap, isolation)
        if not work_dir.is_dir():
            raise CommandStartError(f"could not run the command: {work_dir} is not a directory")
        if isolation.as_root:
            await asyncio.to_thread(hand_over, isolation.workspace)
        argv, child_env = bwrap_argv(isolation, command, work_dir=work_dir, env=child_env, bwrap=bwrap), {}
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=work_dir,
            env=child_env,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limiter(limits),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandStartError(f"could not run the command in {work_dir}: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        with contextlib.suppress(OSError):  # the command may exit without reading it
            await proc.stdin.drain()
        proc.stdin.close()
    out, err = _Sink(max_output_bytes), _Sink(max_output_bytes)
    readers = [asyncio.create_task(_drain(proc.stdout, out)), asyncio.create_task(_drain(proc.stderr, err))]
    timed_out = False
    try:
        try:
            await asyncio.wait_for(_shell_exit(proc), timeout_s)
        except TimeoutError:
            timed_out = True
        _kill_group(proc.pid)
        exit_code = await _shell_exit(proc)
        duration = time.monotonic() - started
        _, pending = await asyncio.wait(readers, timeout=_DRAIN_GRACE_S)
        for task in pending:
            task.cancel()
    except BaseException:  # cancelled (or worse): leave nothing running
        _kill_group(proc.pid)
        for task in readers:
            task.cancel()
        raise
    finally:
        # Closes the pipes when an escaped process still holds them (asyncio closes it otherwise).
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    return ExecResult(
        exit_code=TIMEOUT_EXIT_CODE if timed_out else exit_code,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        duration_s=duration,
        timed_out=timed_out,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )
