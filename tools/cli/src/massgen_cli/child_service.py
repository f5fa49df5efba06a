"""A service of the embedded stack run as a child process with a clean environment (issue 13 item 2).

The executor runs the agents' commands; in one process with the other services, its environment (and
``/proc/<pid>/environ``, readable by any process of the same user) would hold every provider key and
MCP secret of the stack. So ``massgen submit`` and ``massgen up`` start it as ``massgen serve executor``
with :func:`clean_env`: an allowlist of harmless variables, minus anything named like a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from massgen_es import scrub
from massgen_es.children import dies_with_parent
from massgen_es.errors import MassgenError

KEEP = re.compile(
    r"PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_\w+|TZ|TERM|TMPDIR|VIRTUAL_ENV|PYTHON\w*|XDG_\w+"
    r"|DOCKER_HOST|DOCKER_CONFIG|DOCKER_CERT_PATH|DOCKER_TLS_VERIFY|DOCKER_CONTEXT|MASSGEN_\w+"
)
"""Variables the child may inherit (whole-name match): locale, paths, the Docker engine's address (Docker
mode) and the project's own settings."""
_STOP_GRACE_S = 10.0
_TAIL_BYTES = 2000


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` restricted to :data:`KEEP`, without the variables that hold credentials by their name
    or as a provider's key variable (:func:`massgen_es.scrub.secret_names`, the same rule the scrubber
    uses) and without ``MASSGEN_NATS_URL`` (the caller passes the stack's own)."""
    drop = {*scrub.secret_names(environ), "MASSGEN_NATS_URL"}
    return {k: v for k, v in environ.items() if KEEP.fullmatch(k) and k not in drop}


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


async def run_child(service: str, nats_url: str, log_path: Path, metrics_port: int | None = None) -> None:
    """Run ``massgen serve <service>`` against ``nats_url`` with :func:`clean_env`, logging to
    ``log_path`` (appended), serving metrics on 127.0.0.1:``metrics_port`` if given (never on an
    inherited ``MASSGEN_METRICS_PORT``: the parent may use that port), until cancelled; then SIGTERM (the
    service naks its work in flight and exits), SIGKILL after a grace. The child gets SIGTERM too if this process dies
    (:func:`massgen_es.children.dies_with_parent`).

    Raises:
        MassgenError: the child exited by itself; the message gives its exit status and its log's tail.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**clean_env(os.environ), "MASSGEN_NATS_URL": nats_url}  # in the environ, not argv (ps shows argv)
    env.pop("MASSGEN_METRICS_PORT", None)
    if metrics_port is not None:  # on loopback, as the embedded stack's own endpoint
        env.update(MASSGEN_METRICS_PORT=str(metrics_port), MASSGEN_METRICS_HOST="127.0.0.1")
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from massgen_cli.app import main; main()", "serve", service,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=dies_with_parent(),
        )
    try:
        code = await proc.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), _STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        raise
    tail = _tail(log_path)[-500:]
    raise MassgenError(f"its process (pid {proc.pid}) exited with status {code}; log {log_path}: {tail}")
