"""The wording shared by the filters' refusals (``massgen_es.errors.CommandRefused``: ``rule`` names
the check, ``dangerous``, ``privilege``, ``outside_workspace``, ``blocked``, ``not_allowed`` or
``unparsable``)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from massgen_es.errors import CommandRefused
from massgen_executor.filters.lexer import SUBST

__all__ = ["CommandRefused", "dangerous", "shown"]  # CommandRefused is the filters' error, re-exported

_SHOWN = 120  # characters of a command quoted back in a refusal


def shown(argv: Sequence[str]) -> str:
    """``argv`` as the model should see it quoted back: shell-quoted, substitutions as ``$(…)``,
    cut to a readable length."""
    text = shlex.join(argv).replace(shlex.quote(SUBST), "$(…)").replace(SUBST, "$(…)")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def dangerous(shown: str, what: str, instead: str) -> CommandRefused:
    """The refusal (rule ``dangerous``) of a command that ``what``; ``instead`` says what to do."""
    return CommandRefused(f"command refused: `{shown}` {what}; this is never run here. {instead}",
                          rule="dangerous")
