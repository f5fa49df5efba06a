"""What a rule sees: one simple command with its wrappers stripped (:class:`Call`), and GNU-style
option parsing for its arguments."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from massgen_executor.filters.lexer import Simple
from massgen_executor.filters.paths import Ctx

Options = list[tuple[str, str | None]]  # (option name without dashes, its value or None)
# Checks a nested script (str) or command (argv) in the given context at the given depth; provided by
# the dispatcher, so that rules can recurse without importing it.
Nested = Callable[[str | list[str], Ctx, int], None]


@dataclass
class Call:
    """One simple command being checked, and what the rules found it does.

    A rule reads ``name``/``args``, raises :class:`~massgen_executor.filters.errors.CommandRefused`
    for what is never run, and records the rest (``writes``, ``permission_targets``,
    ``privilege``) for the checks every command gets afterwards.
    """

    name: str  # basename of the command word; "" for a bare redirection
    args: list[str]
    shown: str  # how the command is quoted back in refusals
    cmd: Simple
    ctx: Ctx
    heredocs: dict[str, str]
    depth: int
    nested: Nested
    privilege: str = ""  # the wrapper or command that needs sudo rights (`sudo`, `su`, …)
    writes: list[tuple[str, bool]] = field(default_factory=list)  # (target, /dev/null & co. allowed)
    permission_targets: list[str] = field(default_factory=list)  # chmod/chown'ed paths

    def check_script(self, script: str) -> None:
        """Check a script this command runs (``sh -c``, ``eval``, ``su -c``), one level deeper and in a
        copy of the context."""
        self.nested(script, replace(self.ctx), self.depth + 1)

    def check_argv(self, argv: list[str]) -> None:
        """Check a command this command runs (``find -exec``), one level deeper and in a copy of the
        context."""
        self.nested(argv, replace(self.ctx), self.depth + 1)


def options(args: Sequence[str], with_arg: str = "", long_with_arg: frozenset[str] = frozenset(),
            stop_at_operand: bool = False) -> tuple[list[str], Options, int]:
    """GNU-style option parsing: ``(operands, [(option, value)], index where parsing stopped)``.
    ``with_arg``: short options taking a value; ``long_with_arg``: long ones taking one without ``=``.
    With ``stop_at_operand``, stop at the first operand (a wrapper's command)."""
    operands: list[str] = []
    opts: Options = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            if not stop_at_operand:
                operands.extend(args[i:])
                i = len(args)
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if not eq and name in long_with_arg and i + 1 < len(args):
                i += 1
                value, eq = args[i], "="
            opts.append((name, value if eq else None))
        elif a.startswith("-") and len(a) > 1:
            i = _short_options(a, args, i, with_arg, opts)
        elif stop_at_operand:
            break
        else:
            operands.append(a)
        i += 1
    return operands, opts, i


def _short_options(a: str, args: Sequence[str], i: int, with_arg: str, opts: Options) -> int:
    """Record the bundled short options of ``a`` (= ``args[i]``); return the index of the last
    argument consumed (``i + 1`` when the value is the next argument)."""
    for k, ch in enumerate(a[1:], 1):
        if ch in with_arg:
            value = a[k + 1 :]
            if not value and i + 1 < len(args):
                i += 1
                value = args[i]
            opts.append((ch, value))
            break
        opts.append((ch, None))
    return i


def flag(opts: Options, *names: str) -> bool:
    """Any of ``names`` was given."""
    return any(name in names for name, _ in opts)


def value(opts: Options, *names: str) -> str | None:
    """The first value given to any of ``names``, or None."""
    return next((v for name, v in opts if name in names and v is not None), None)
