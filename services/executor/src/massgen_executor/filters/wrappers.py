"""The words before the command that runs: reserved words, variable assignments, and wrappers
(``sudo``, ``env``, ``nohup``, ``timeout``, ``xargs``, …) that run the rest of their arguments."""

from __future__ import annotations

import posixpath
import re
import shlex

from massgen_executor.filters.call import options, value

_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}",
                       "esac"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=")
_PRIVILEGED = frozenset({"sudo", "doas", "pkexec", "run0"})
# Commands that run the rest of their arguments as a command: (short options with a value, long ones).
_WRAPPERS: dict[str, tuple[str, frozenset[str]]] = {
    "sudo": ("ugpCDrtUTR", frozenset({"user", "group", "prompt", "close-from", "chdir", "role", "type",
                                      "other-user", "command-timeout", "chroot", "host"})),
    "doas": ("uC", frozenset()),
    "pkexec": ("", frozenset({"user"})),
    "run0": ("uDg", frozenset({"user", "group", "chdir", "description", "property", "unit"})),
    "env": ("uCS", frozenset({"unset", "chdir", "split-string"})),
    "nohup": ("", frozenset()),
    "command": ("", frozenset()),
    "builtin": ("", frozenset()),
    "exec": ("a", frozenset()),
    "setsid": ("", frozenset()),
    "unbuffer": ("", frozenset()),
    "nice": ("n", frozenset({"adjustment"})),
    "ionice": ("cn", frozenset({"class", "classdata"})),
    "stdbuf": ("ioe", frozenset({"input", "output", "error"})),
    "time": ("fo", frozenset({"format", "output"})),
    "timeout": ("sk", frozenset({"signal", "kill-after"})),
    "xargs": ("IdnLPsEa", frozenset({"max-args", "max-procs", "max-lines", "delimiter", "arg-file", "eof",
                                     "max-chars", "process-slot-var"})),
    "busybox": ("", frozenset()),
}


def command_words(argv: list[str]) -> tuple[list[str], str]:
    """``(the command and its arguments, the privileged wrapper used or "")`` once the leading
    reserved words, assignments and wrappers of ``argv`` are stripped. The words of ``for``, ``case``
    and ``select`` are data, not a command: ``[]``."""
    privilege = ""
    while argv:
        word, name = argv[0], posixpath.basename(argv[0])
        if word in _RESERVED or _ASSIGNMENT.match(word):
            argv = argv[1:]
        elif word in ("for", "case", "select"):
            argv = []
        elif word == "function":
            argv = argv[2:]
        elif name in _WRAPPERS:
            privilege = privilege or (name if name in _PRIVILEGED else "")
            argv = _unwrap(name, argv[1:])
        else:
            break
    return argv, privilege


def _unwrap(name: str, args: list[str]) -> list[str]:
    """The command wrapper ``name`` runs, given the wrapper's arguments."""
    short, long = _WRAPPERS[name]
    _, opts, stop = options(args, short, long, stop_at_operand=True)
    argv = args[stop:]
    if name == "timeout" and argv:
        argv = argv[1:]  # the duration
    if name == "env" and (split := value(opts, "S", "split-string")) is not None:
        try:
            argv = shlex.split(split) + argv  # `env -S "CMD ARGS"`
        except ValueError:
            argv = [split, *argv]
    return argv
