"""What one command execution produced, whichever runner ran it (local subprocess or Docker sandbox)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one ``execute_command`` (MassGen spec §4.1: ``{exit_code, stdout, stderr,
    execution_time}``, plus the flags MassGen leaves implicit).

    Attributes:
        exit_code: the shell's exit status (``/bin/sh -c`` returns 128+N when its last command died of
            signal N); negative ``-N`` when the shell itself was killed by signal N, the ``subprocess``
            convention. A timed-out execution reports whatever its runner documents (local mode: ``-9``).
        stdout: the first bytes of standard output, at most the runner's cap.
        stderr: the first bytes of standard error, at most the runner's cap.
        duration_s: wall-clock seconds from start to the end of the command.
        timed_out: the command ran out of time and was killed; ``exit_code`` then says nothing about
            the command itself.
        stdout_truncated: the command wrote more to stdout than ``stdout`` holds.
        stderr_truncated: the command wrote more to stderr than ``stderr`` holds.
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool
