"""The config's regex lists: ``command_line_blocked_commands`` and ``command_line_allowed_commands``."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from massgen_executor.filters.errors import CommandRefused

ALLOWED_KEY = "command_line_allowed_commands"
BLOCKED_KEY = "command_line_blocked_commands"


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def validate_patterns(patterns: Sequence[str], key: str) -> None:
    """Check a regex list from config (``command_line_allowed_commands`` or ``…_blocked_commands``).

    ``key`` is the config key path, used in the message (e.g. ``agents[0].backend.command_line_…``).

    Raises:
        ValueError: ``patterns`` is a single string, or an entry is not a string or not a valid Python
            regular expression; the message names the entry, the pattern and the regex error.
    """
    # ValueError for wrong types too: config validation reports every bad value the same way.
    if isinstance(patterns, (str, bytes)):
        raise ValueError(  # noqa: TRY004
            f"`{key}` must be a list of regular expressions, not a single string"
        )
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise ValueError(f"`{key}[{i}]` must be a string (got {type(pattern).__name__})")  # noqa: TRY004
        try:
            _compile(pattern)
        except re.error as exc:
            raise ValueError(f"`{key}[{i}]` {pattern!r} is not a valid regular expression: {exc}") from None


def check_patterns(command: str, allowed: Sequence[str], blocked: Sequence[str]) -> None:
    """Refuse ``command`` when a ``blocked`` pattern ``re.search``-es it, or when ``allowed`` is given
    and none ``re.match``-es it (anchored at its start, as in MassGen; leading and trailing blanks
    ignored). The patterns must have passed :func:`validate_patterns`.

    Raises:
        CommandRefused: rule ``blocked`` or ``not_allowed``; the message names the pattern(s).
    """
    for pattern in blocked:
        if _compile(pattern).search(command):
            raise CommandRefused(
                f"command refused: it matches the blocked pattern `{pattern}` ({BLOCKED_KEY}); "
                "use another command",
                rule="blocked",
            )
    if allowed and not any(_compile(p).match(command.strip()) for p in allowed):
        raise CommandRefused(
            f"command refused: it matches none of the allowed patterns "
            f"{', '.join(f'`{p}`' for p in allowed)} ({ALLOWED_KEY}); only commands matching one of them "
            "from their start may run",
            rule="not_allowed",
        )
