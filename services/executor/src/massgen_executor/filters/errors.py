"""The refusal the filters raise, and the wording shared by its messages."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from massgen.errors import MassgenError
from massgen_executor.filters.lexer import SUBST

_SHOWN = 120  # characters of a command quoted back in a refusal


class CommandRefused(MassgenError):
    """A command the executor will not run. The message is for the model: it says why and what is
    allowed instead.

    Attributes:
        rule: which check refused it: ``dangerous``, ``privilege``, ``outside_workspace``, ``blocked``,
            ``not_allowed`` or ``unparsable``; ``refused`` when raised elsewhere without one (e.g. the
            service refusing an agent that has no command execution).
    """

    def __init__(self, message: str, *, rule: str = "refused") -> None:
        super().__init__(message)
        self.rule = rule


def shown(argv: Sequence[str]) -> str:
    """``argv`` as the model should see it quoted back: shell-quoted, substitutions as ``$(…)``,
    cut to a readable length."""
    text = shlex.join(argv).replace(shlex.quote(SUBST), "$(…)").replace(SUBST, "$(…)")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def dangerous(shown: str, what: str, instead: str) -> CommandRefused:
    """The refusal (rule ``dangerous``) of a command that ``what``; ``instead`` says what to do."""
    return CommandRefused(f"command refused: `{shown}` {what}; this is never run here. {instead}",
                          rule="dangerous")
