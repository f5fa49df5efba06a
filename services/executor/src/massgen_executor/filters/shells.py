"""Rules for commands that run shell code or change how later paths resolve: ``sh``/``bash``/… (with
``-c`` or reading a script from stdin), ``eval``, ``cd``/``pushd``. The code they run is checked as a
script of its own."""

from __future__ import annotations

import posixpath

from massgen_executor.filters.call import Call
from massgen_executor.filters.paths import change_directory

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"})


def shell(call: Call) -> None:
    """``sh -c SCRIPT``, or a shell reading its script from stdin (a here-document, a here-string, or
    a pipe from a command with one, or from ``echo``/``printf``): check the script. A script file is
    not read (see the module docstring of :mod:`massgen_executor.filters`)."""
    has_c, i = _shell_options(call.args)
    if has_c and i < len(call.args):
        call.check_script(call.args[i])
    elif i >= len(call.args):  # no script file: the shell reads its stdin
        for script in _stdin_scripts(call):
            call.check_script(script)


def _shell_options(args: list[str]) -> tuple[bool, int]:
    """``(-c given, index of the first operand)`` of a shell's arguments."""
    has_c, i = False, 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a[:1] not in ("-", "+") or len(a) == 1:
            break
        if a in ("-o", "+o", "-O", "+O"):
            i += 1
        elif not a.startswith("--") and "c" in a[1:]:
            has_c = True
        i += 1
    return has_c, i


def _stdin_scripts(call: Call) -> list[str]:
    """What a shell without a script operand reads: here-documents and here-strings given to it or to
    the command piping into it, and the words ``echo``/``printf`` pipe into it."""
    cmd = call.cmd
    scripts = []
    for source in (cmd, cmd.piped_from):
        if source is None:
            continue
        for op, target in source.redirects:
            if op == "<<" and target in call.heredocs:
                scripts.append(call.heredocs[target])
            elif op == "<<<":
                scripts.append(target)
    upstream = cmd.piped_from.argv if cmd.piped_from is not None else []
    if upstream and posixpath.basename(upstream[0]) in ("echo", "printf"):
        scripts.append(" ".join(a for a in upstream[1:] if not a.startswith("-")))
    return scripts


def eval_(call: Call) -> None:
    """``eval ARGS``: the joined arguments are checked as a script."""
    call.check_script(" ".join(call.args))


def cd(call: Call) -> None:
    """``cd``/``pushd DIR``: later relative paths of this script resolve from ``DIR`` (an unknown
    ``DIR`` makes them unplaceable, hence refused when written)."""
    dests = [a for a in call.args if not a.startswith("-") or a == "-"]
    change_directory(dests[0] if dests else "~", call.ctx)
