"""Rules for commands that write or delete files: which paths they write (checked against the
workspace afterwards), and the deletions that are never run (the root filesystem, a home directory)."""

from __future__ import annotations

import posixpath

from massgen_executor.filters.call import Call, flag, options, value
from massgen_executor.filters.errors import dangerous
from massgen_executor.filters.paths import is_home, is_root, resolve

# Commands whose operands are all written or removed: (short options with a value, long ones).
WRITERS: dict[str, tuple[str, frozenset[str]]] = {
    "touch": ("drt", frozenset({"date", "reference"})),
    "mkdir": ("m", frozenset({"mode", "context"})),
    "rmdir": ("", frozenset()),
    "unlink": ("", frozenset()),
    "shred": ("ns", frozenset({"iterations", "size", "random-source"})),
    "truncate": ("sr", frozenset({"size", "reference"})),
    "tee": ("", frozenset()),
}
# Commands writing their last operand (or `-t DIR`): (short options with a value, long ones).
COPIERS: dict[str, tuple[str, frozenset[str]]] = {
    "cp": ("St", frozenset({"suffix", "target-directory"})),
    "mv": ("St", frozenset({"suffix", "target-directory"})),
    "install": ("gmoSt", frozenset({"group", "mode", "owner", "suffix", "target-directory"})),
    "ln": ("St", frozenset({"suffix", "target-directory"})),
}
_DELETERS = frozenset({"rm", "shred", "unlink", "rmdir"})


def rm(call: Call) -> None:
    """``rm``: refuses ``--no-preserve-root`` and a recursive delete of ``/``, ``/*`` or a home
    directory (it destroys the machine or the user's files); every operand is a write."""
    operands, opts, _ = options(call.args)
    if flag(opts, "no-preserve-root"):
        raise dangerous(call.shown, "turns off rm's protection of the root directory",
                        "Delete paths inside your workspace instead.")
    if flag(opts, "r", "R", "recursive"):
        for t in operands:
            path = resolve(t, call.ctx)
            if is_root(path) or is_home(path):
                where = "the root filesystem" if is_root(path) else "a home directory"
                raise dangerous(call.shown, f"recursively deletes {where}",
                                "Delete specific paths inside your workspace (e.g. `rm -rf build/`).")
    call.writes += [(t, False) for t in operands]


def writer(call: Call) -> None:
    """``touch``, ``mkdir``, ``rmdir``, ``unlink``, ``shred``, ``truncate``, ``tee``: every operand
    is a write (``tee`` may also write ``/dev/null`` and the like)."""
    operands, _, _ = options(call.args, *WRITERS[call.name])
    call.writes += [(t, call.name == "tee") for t in operands]


def copier(call: Call) -> None:
    """``cp``, ``mv``, ``install``, ``ln``: the destination is a write, and ``mv``'s sources are
    removed. Refuses moving ``/dev/null`` (every program writing to it would then write a file)."""
    name = call.name
    operands, opts, _ = options(call.args, *COPIERS[name])
    directory = value(opts, "t", "target-directory")
    if name == "mv" and any(resolve(t, call.ctx) == "/dev/null" for t in [*operands, directory or ""]):
        raise dangerous(call.shown, "moves /dev/null (it breaks every program that writes to it)",
                        "Delete files with `rm` instead.")
    if directory is not None:
        call.writes.append((directory, False))
    elif name == "install" and flag(opts, "d", "directory"):
        call.writes += [(t, False) for t in operands]
    elif len(operands) >= 2:
        call.writes.append((operands[-1], name == "cp"))
    if name == "mv":  # the sources are removed
        call.writes += [(t, False) for t in (operands if directory is not None else operands[:-1])]


def dd(call: Call) -> None:
    """``dd of=FILE``: a write (onto a disk device it is refused afterwards)."""
    call.writes += [(a[3:], True) for a in call.args if a.startswith("of=")]


def find(call: Call) -> None:
    """``find ROOTS … -delete`` / ``-exec rm``: the roots are deleted from, refused when one is the
    root filesystem or a home directory; ``-exec`` commands are checked as commands."""
    roots, expression = _find_roots(call.args)
    deletes = "-delete" in expression
    for sub in _find_exec_commands(expression):
        deletes = deletes or posixpath.basename(sub[0]) in _DELETERS
        call.check_argv(sub)
    if not deletes:
        return
    for root in roots or ["."]:
        path = resolve(root, call.ctx)
        if is_root(path) or is_home(path):
            where = "the root filesystem" if is_root(path) else "a home directory"
            raise dangerous(call.shown, f"deletes files throughout {where}",
                            "Run find on a directory inside your workspace.")
    call.writes += [(root, False) for root in roots or ["."]]


def _find_roots(args: list[str]) -> tuple[list[str], list[str]]:
    """``find``'s ``(starting points, expression)``, its leading ``-H``/``-L``/``-P``/``-O`` skipped."""
    i = 0
    while i < len(args) and (args[i] in ("-H", "-L", "-P") or args[i].startswith("-O")):
        i += 1
    roots = []
    while i < len(args) and not args[i].startswith("-") and args[i] not in ("!", "(", ","):
        roots.append(args[i])
        i += 1
    return roots, args[i:]


def _find_exec_commands(expression: list[str]) -> list[list[str]]:
    """The non-empty commands of ``-exec``/``-execdir``/``-ok``/``-okdir`` (up to ``;`` or ``+``)."""
    commands = []
    for k, a in enumerate(expression):
        if a in ("-exec", "-execdir", "-ok", "-okdir"):
            ends = (j for j in range(k + 1, len(expression)) if expression[j] in (";", "+"))
            sub = expression[k + 1 : next(ends, len(expression))]
            if sub:
                commands.append(sub)
    return commands
