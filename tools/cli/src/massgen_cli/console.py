"""What every command shares: the two consoles, failing with an exit code, running a coroutine.

Exit codes follow MassGen (spec §6.1): 0 success, 1 config error, 2 execution error (NATS
unreachable, all agents failed, ...), 3 timeout, 4 interrupted.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import typer
from rich.console import Console

from massgen_es.errors import ConfigError, MassgenError

out = Console()
err = Console(stderr=True)

EXIT = {"completed": 0, "failed": 2, "timed_out": 3, "cancelled": 4}
"""Exit code per terminal run status."""


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def run(coro: Any) -> Any:
    """Run ``coro`` to its end; Ctrl-C exits 4, a ``ConfigError`` 1, any other ``MassgenError`` 2."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(4) from None
    except ConfigError as exc:
        fail(str(exc), 1)
    except MassgenError as exc:
        fail(str(exc), 2)


