"""Command filtering for ``execute_command`` (MassGen spec §4.1; issue #5 item 4).

:func:`check_command` applies three layers in order; the first that objects raises
:class:`CommandRefused`, whose message goes back to the model as the tool error:

1. the sanitizer (MassGen's ``_sanitize_command``, made robust): recursive delete of ``/``, ``/*`` or
   ``~``, fork bombs, ``dd``/``mkfs``/``shred``/redirections onto disk devices, ``mv`` of ``/dev/null``,
   shutdown and reboot, killing every process; and, unless sudo is allowed, ``sudo``/``su``/``doas``
   and ``chmod``/``chown`` of paths outside the workspace;
2. writes outside the workspace: the targets of redirections (``>``, ``>>``, ``&>``, ``<>``), ``tee``,
   ``cp``/``mv``/``install``/``ln``, ``touch``, ``mkdir``, ``rm``/``rmdir``/``unlink``/``shred``/
   ``truncate``, ``dd of=`` and ``find … -delete`` must be inside the workspace (or an extra writable
   root); an absolute path may also be under ``/tmp``; a relative path may not climb out with ``..``;
3. the config's regex lists: ``command_line_blocked_commands`` (refused when any pattern
   ``re.search``-es the command) and ``command_line_allowed_commands`` (when given, the command must
   ``re.match`` one, anchored at its start, as in MassGen).

The command is parsed, not grepped: ``shlex`` tokens, split into simple commands at ``;``, ``&&``,
``||``, ``|``, ``&``, newlines and parentheses, with quotes, escapes, comments and here-documents
understood, so ``rm -r -f /``, ``sudo  rm --recursive --force /`` and ``"rm" -fr //`` are all seen as
what they are. Wrappers (``sudo``, ``env``, ``nohup``, ``timeout``, ``xargs``, …) are looked through,
and ``sh -c``/``bash -c`` strings, ``eval``, ``$(…)``, backquotes, process substitutions, here-documents
fed to a shell and ``find -exec`` commands are checked recursively.

This is a **best-effort** check of what a command says, not of what it does: variables
(``$X -rf /``), programs that write files themselves (``python -c "open('/etc/x','w')"``), scripts
written first and run later, and deliberate obfuscation all get past it. It errs towards refusing: a
write whose target depends on a variable or a substitution is refused, since it cannot be placed. The
real boundary is the sandbox (Docker mode) and, in local mode, the limits of
:mod:`massgen_executor.local`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from massgen.errors import MassgenError

ALLOWED_KEY = "command_line_allowed_commands"
BLOCKED_KEY = "command_line_blocked_commands"
TMP_DIR = "/tmp"  # writable by absolute path, as in every sandbox image
MAX_NESTING = 8  # sh -c "sh -c '…'" levels checked before giving up (and refusing)
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


# ---------------------------------------------------------------- config patterns


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


# ---------------------------------------------------------------- lexing

_OPCHARS = ";&|()<>\n"
# Quoted and escaped operator characters become private-use characters while shlex runs, so that every
# punctuation token it returns is a real operator; they are mapped back inside words afterwards.
_HIDE = {c: chr(0xE000 + i) for i, c in enumerate(_OPCHARS)}
_SHOW = str.maketrans({v: k for k, v in _HIDE.items()})
# Longest first: a run of operator characters is split greedily.
_OPERATORS = (
    "<<<", "&>>", ";;&", "&&", "||", "|&", ";;", ";&", ">>", ">|", ">&", "<&", "<>", "&>", "<<",
    ";", "&", "|", "(", ")", "<", ">", "\n",
)
_SEPARATORS = frozenset({";", "&", "&&", "||", "|", "|&", "\n", "(", ")", ";;", ";&", ";;&"})
_WRITE_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>"})
_WORD_END = " \t\n;&|()<>"
SUBST = "$__massgen_subst__"  # stands for $(…), `…`, <(…), >(…) and ((…)) in the parsed command
_HEREDOC = "__massgen_heredoc_{}__"

_ANSI_ESCAPE = re.compile(
    r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL
)
_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v"}


def _ansi_char(m: re.Match[str]) -> str:
    s = m.group(1)
    if s[0] in "xuU" and len(s) > 1:
        code = int(s[1:], 16)
        return chr(code) if code <= 0x10FFFF else ""
    if s[0] in "01234567":
        return chr(int(s, 8))
    if s[0] == "c" and len(s) == 2:
        return chr(ord(s[1]) & 0x1F)
    return _ANSI_SIMPLE.get(s, s)


@dataclass
class _Pre:
    """A script ready for shlex, with what was cut out of it."""

    text: str
    heredocs: dict[str, str]  # placeholder → body
    substitutions: list[str]  # inner text of $(…), `…`, <(…), >(…), and of ((…)) holding one


def _closing(src: str, i: int, opener: str = "(", closer: str = ")") -> int:
    """Index of the ``closer`` matching an already-open ``opener`` scanning from ``i`` (quotes
    skipped); ``len(src)`` when unterminated (the shell would reject it anyway)."""
    depth, n = 1, len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            j = src.find("'", i + 1)
            i = n if j < 0 else j + 1
            continue
        if c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            continue
        if c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return n


def _backquote_end(src: str, i: int) -> int:
    n = len(src)
    while i < n and src[i] != "`":
        i += 2 if src[i] == "\\" else 1
    return min(i, n)


def _heredoc_word(src: str, i: int) -> tuple[str, int]:
    """The delimiter of a here-document starting at ``i`` (quotes removed) and the index after it."""
    word, n = [], len(src)
    while i < n and src[i] not in _WORD_END:
        c = src[i]
        if c in "'\"":
            j = src.find(c, i + 1)
            j = n if j < 0 else j
            word.append(src[i + 1 : j])
            i = j + 1
        elif c == "\\" and i + 1 < n:
            word.append(src[i + 1])
            i += 2
        else:
            word.append(c)
            i += 1
    return "".join(word), i


def _preprocess(src: str) -> _Pre:
    """Prepare ``src`` for shlex: hide quoted/escaped operators, drop comments and line continuations,
    cut out here-document bodies and command substitutions (replaced by placeholders), decode
    ``$'…'``. Quotes themselves stay for shlex to remove."""
    out: list[str] = []
    heredocs: dict[str, str] = {}
    subs: list[str] = []
    pending: list[tuple[str, str, bool]] = []  # (placeholder, delimiter, strip leading tabs)
    quote = ""
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if quote == "'":
            if c == "'":
                quote = ""
            out.append(_HIDE.get(c, c))
            i += 1
            continue
        if quote == '"':
            if c == "\\" and i + 1 < n:
                if src[i + 1] != "\n":  # a backslash-newline inside double quotes joins lines
                    out.append(c + _HIDE.get(src[i + 1], src[i + 1]))
                i += 2
            elif c == '"':
                quote = ""
                out.append(c)
                i += 1
            elif c == "`" or src.startswith("$(", i):
                i = _cut_substitution(src, i, subs)
                out.append(SUBST)
            else:
                out.append(_HIDE.get(c, c))
                i += 1
            continue
        # unquoted
        if c == "\\":
            if i + 1 < n and src[i + 1] != "\n":
                nxt = src[i + 1]
                out.append(_HIDE[nxt] if nxt in _HIDE else c + nxt)
            i += 2
        elif c in "'\"":
            quote = c
            out.append(c)
            i += 1
        elif src.startswith("$'", i):  # ANSI-C quoting: decode, re-quote plainly
            j = i + 2
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            word = _ANSI_ESCAPE.sub(_ansi_char, src[i + 2 : j])
            out.append("'" + "'\\''".join("".join(_HIDE.get(ch, ch) for ch in part)
                                          for part in word.split("'")) + "'")
            i = j + 1
        elif c == "#" and (i == 0 or src[i - 1] in _WORD_END):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("$((", i) or src.startswith("((", i):
            # Arithmetic in bash, nested subshells in dash: cut out whole (so a `<<` shift is not taken
            # for a here-document) and check the inside as commands, which covers both readings.
            start = i + (3 if c == "$" else 2)
            end = _closing(src, start - 1)
            subs.append(src[start - 1 : end])
            out.append(" " + SUBST + " ")
            i = end + 1
        elif c == "`" or src.startswith("$(", i) or (c in "<>" and src.startswith("(", i + 1)):
            i = _cut_substitution(src, i, subs)
            out.append(SUBST)
        elif src.startswith("<<<", i):
            out.append("<<<")
            i += 3
        elif src.startswith("<<", i):
            j = i + 2
            strip = j < n and src[j] == "-"
            j += strip
            while j < n and src[j] in " \t":
                j += 1
            delimiter, j = _heredoc_word(src, j)
            if delimiter:
                key = _HEREDOC.format(len(heredocs))
                heredocs[key] = ""
                pending.append((key, delimiter, strip))
                out.append(f"<< {key} ")
                i = j
            else:
                out.append("<<")
                i += 2
        elif c == "\n" and pending:
            out.append(c)
            i += 1
            for key, delimiter, strip in pending:
                body: list[str] = []
                while i < n:
                    j = src.find("\n", i)
                    line = src[i:] if j < 0 else src[i:j]
                    i = n if j < 0 else j + 1
                    if (line.lstrip("\t") if strip else line) == delimiter:
                        break
                    body.append(line)
                heredocs[key] = "\n".join(body)
            pending.clear()
        else:
            out.append(c)
            i += 1
    return _Pre("".join(out), heredocs, subs)


def _cut_substitution(src: str, i: int, subs: list[str]) -> int:
    """Record the inner text of the substitution starting at ``i``; return the index after it."""
    if src[i] == "`":
        end = _backquote_end(src, i + 1)
        subs.append(src[i + 1 : end].replace("\\`", "`"))
    else:  # $( <( >(
        end = _closing(src, i + 2)
        subs.append(src[i + 2 : end])
    return end + 1


def _split_operators(run: str) -> list[str]:
    ops, i = [], 0
    while i < len(run):
        op = next(o for o in _OPERATORS if run.startswith(o, i))
        ops.append(op)
        i += len(op)
    return ops


def _tokens(text: str) -> list[tuple[bool, str]]:
    """``(is_operator, text)`` of each token of a preprocessed script (``ValueError`` on unbalanced
    quotes). A word may read like an operator (``';'``) and still be a word."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=_OPCHARS)
    lex.whitespace = " \t\r"  # a newline separates commands
    lex.whitespace_split = True
    lex.commenters = ""  # comments are gone already; shlex would also cut `a#b`
    out: list[tuple[bool, str]] = []
    for token in lex:
        if token and all(ch in _OPCHARS for ch in token):
            out.extend((True, op) for op in _split_operators(token))
        else:
            out.append((False, token.translate(_SHOW)))
    return out


@dataclass
class _Simple:
    """One simple command: its words, its redirections ``(operator, target)``, and the command piping
    into it, if any."""

    argv: list[str]
    redirects: list[tuple[str, str]]
    piped_from: _Simple | None = None


def _simple_commands(tokens: list[tuple[bool, str]]) -> list[_Simple]:
    out: list[_Simple] = []
    argv: list[str] = []
    redirects: list[tuple[str, str]] = []
    upstream: _Simple | None = None
    i = 0
    while i < len(tokens):
        is_op, token = tokens[i]
        if not is_op:
            argv.append(token)
        elif token in _SEPARATORS:
            current = _Simple(argv, redirects, upstream) if argv or redirects else None
            if current is not None:
                out.append(current)
            upstream = current if token in ("|", "|&") else None
            argv, redirects = [], []
        else:  # a redirection
            if argv and argv[-1].isdigit():
                argv.pop()  # `2>`: the descriptor, not an argument
            target = ""
            if i + 1 < len(tokens) and not tokens[i + 1][0]:
                target = tokens[i + 1][1]
                i += 1
            redirects.append((token, target))
        i += 1
    if argv or redirects:
        out.append(_Simple(argv, redirects, upstream))
    return out


# ---------------------------------------------------------------- paths


@dataclass
class _Ctx:
    workspace: str  # real path
    writable: tuple[str, ...]  # extra writable roots, real paths
    allow_sudo: bool
    cwd: str | None  # lexical absolute path, "~…" for the home directory, None when unknown
    anchored: bool  # cwd was set by an absolute `cd`: relative paths then count as absolute ones


def _norm(path: str) -> str:
    if path.startswith("~"):
        head, _, rest = path.partition("/")
        rest = posixpath.normpath("/" + rest)
        return head if rest == "/" else head + rest
    return posixpath.normpath("/" + path.lstrip("/"))  # also folds `//` and `/..`


_HOME_VAR = re.compile(r"^\$(?:HOME\b|\{HOME\})")
_PWD_VAR = re.compile(r"^\$(?:PWD\b|\{PWD\})")


def _resolve(target: str, ctx: _Ctx) -> str | None:
    """The absolute lexical path ``target`` names (``~…`` for the home directory), or None when it
    depends on something this check cannot know (a variable, a substitution, an unknown ``cd``)."""
    target = _HOME_VAR.sub("~", target)
    if m := _PWD_VAR.match(target):
        if ctx.cwd is None:
            return None
        target = ctx.cwd + target[m.end() :]
    if target.startswith(("~", "/")):
        return _norm(target)
    if target.startswith(("$", "`")) or ctx.cwd is None:
        return None
    return _norm(posixpath.join(ctx.cwd, target))


def _is_root(path: str | None) -> bool:
    return path is not None and re.fullmatch(r"/(?:\.?\*)?", path) is not None


def _is_home(path: str | None) -> bool:
    return path is not None and re.fullmatch(r"~[^/]*(?:/\.?\*)?", path) is not None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_BLOCK_DEVICE = re.compile(
    r"/dev/(?:sd|hd|vd|xvd)[a-z]|/dev/(?:nvme|mmcblk|loop|md|dm-|sr|disk|nbd|rbd)\d|/dev/mapper/"
    r"|/dev/(?:mem|kmem|port)$"
)
_HARMLESS_DEVICES = frozenset(
    {"/dev/null", "/dev/zero", "/dev/full", "/dev/stdout", "/dev/stderr", "/dev/tty"}
)
_FD_PATH = re.compile(r"/(?:dev|proc/self)/fd/\d+")


def _outside(target: str, ctx: _Ctx, device_ok: bool) -> str | None:
    """Why writing ``target`` leaves the writable area, or None when it does not."""
    if target in ("", "-"):
        return None
    path = _resolve(target, ctx)
    if path is None:
        return "and this check cannot tell where that is (it depends on a variable or a substitution)"
    if path.startswith("~"):
        return "which is in a home directory, outside your workspace"
    if device_ok and (path in _HARMLESS_DEVICES or _FD_PATH.fullmatch(path)):
        return None
    real = os.path.realpath(path)  # a symlink inside the workspace may point out of it
    if any(_under(real, root) for root in (ctx.workspace, *ctx.writable)):
        return None
    if (target.startswith("/") or ctx.anchored) and _under(real, os.path.realpath(TMP_DIR)):
        return None
    if not target.startswith("/") and not ctx.anchored:
        return "which is outside your workspace (a relative path may not climb out of it with `..`)"
    return "which is outside your workspace"


# ---------------------------------------------------------------- the checks


def _shown(argv: Sequence[str]) -> str:
    text = shlex.join(argv).replace(shlex.quote(SUBST), "$(…)").replace(SUBST, "$(…)")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _dangerous(shown: str, what: str, instead: str) -> CommandRefused:
    return CommandRefused(f"command refused: `{shown}` {what}; this is never run here. {instead}",
                          rule="dangerous")


_FUNCTION_NAME = r"[^\s()<>{}|&;'\"`$\\]+"
_FUNCTION_DEF = re.compile(  # `function NAME [()]` or `NAME ()`
    rf"(?:\bfunction\s+({_FUNCTION_NAME})\s*(?:\(\s*\))?|({_FUNCTION_NAME})\s*\(\s*\))\s*"
)
_OTHER_FORK_BOMBS = (
    re.compile(r"\bfork\b(?:\s*\(\s*\))?\s+while\s+fork\b"),  # perl -e 'fork while fork'
    re.compile(r"\bwhile\b.{0,120}?\bfork\s*\(", re.DOTALL),  # while True: os.fork()
    re.compile(r"\bfor\s*\(\s*;\s*;\s*\)\s*\{?\s*fork\s*\("),  # for(;;) fork();
    re.compile(r"\$0\s*(?:\||&(?!&))\s*\$0"),  # a script piping into itself
)


def _check_fork_bomb(text: str) -> None:
    for m in _FUNCTION_DEF.finditer(text):
        name = m.group(1) or m.group(2)
        start = m.end()
        if start >= len(text) or text[start] not in "{(":
            continue
        end = _closing(text, start + 1, text[start], "}" if text[start] == "{" else ")")
        body = text[start + 1 : end]
        # The function starts copies of itself in parallel: `f|f`, `f & …`.
        if re.search(rf"(?<![^\s|&;(){{}}]){re.escape(name)}\s*(?:\||&(?!&))", body):
            raise CommandRefused(
                f"command refused: it defines `{name}` to start copies of itself in parallel (a fork "
                "bomb); this is never run here. Recursive functions must not pipe into or background "
                "themselves.",
                rule="dangerous",
            )
    for pattern in _OTHER_FORK_BOMBS:
        if pattern.search(text):
            raise CommandRefused(
                "command refused: it forks in an endless loop (a fork bomb); this is never run here.",
                rule="dangerous",
            )


def _options(args: Sequence[str], with_arg: str = "", long_with_arg: frozenset[str] = frozenset(),
             stop_at_operand: bool = False) -> tuple[list[str], list[tuple[str, str | None]], int]:
    """GNU-style option parsing: ``(operands, [(option, value)], index where parsing stopped)``.
    ``with_arg``: short options taking a value; ``long_with_arg``: long ones taking one without ``=``.
    With ``stop_at_operand``, stop at the first operand (a wrapper's command)."""
    operands: list[str] = []
    opts: list[tuple[str, str | None]] = []
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
            for k, ch in enumerate(a[1:], 1):
                if ch in with_arg:
                    value = a[k + 1 :]
                    if not value and i + 1 < len(args):
                        i += 1
                        value = args[i]
                    opts.append((ch, value))
                    break
                opts.append((ch, None))
        elif stop_at_operand:
            break
        else:
            operands.append(a)
        i += 1
    return operands, opts, i


def _flag(opts: list[tuple[str, str | None]], *names: str) -> bool:
    return any(name in names for name, _ in opts)


def _value(opts: list[tuple[str, str | None]], *names: str) -> str | None:
    return next((v for name, v in opts if name in names and v is not None), None)


_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}",
                       "esac"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=")
_PRIVILEGED = frozenset({"sudo", "doas", "pkexec", "run0"})
_SWITCH_USER = frozenset({"su", "runuser"})
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
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"})
_FORMATTERS = frozenset(
    {"mke2fs", "mkswap", "fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "wipefs"}
)
_POWER = frozenset({"shutdown", "reboot", "halt", "poweroff", "kexec"})
_SYSTEMCTL_POWER = frozenset({"poweroff", "reboot", "halt", "kexec", "rescue", "emergency", "suspend",
                              "hibernate", "soft-reboot"})
_PERMISSIONS = frozenset({"chmod", "chown", "chgrp"})
# Commands whose operands are all written or removed: (short options with a value, long ones).
_WRITERS: dict[str, tuple[str, frozenset[str]]] = {
    "touch": ("drt", frozenset({"date", "reference"})),
    "mkdir": ("m", frozenset({"mode", "context"})),
    "rm": ("", frozenset()),
    "rmdir": ("", frozenset()),
    "unlink": ("", frozenset()),
    "shred": ("ns", frozenset({"iterations", "size", "random-source"})),
    "truncate": ("sr", frozenset({"size", "reference"})),
    "tee": ("", frozenset()),
}
_COPIERS: dict[str, tuple[str, frozenset[str]]] = {
    "cp": ("St", frozenset({"suffix", "target-directory"})),
    "mv": ("St", frozenset({"suffix", "target-directory"})),
    "install": ("gmoSt", frozenset({"group", "mode", "owner", "suffix", "target-directory"})),
    "ln": ("St", frozenset({"suffix", "target-directory"})),
}


def _check_script(text: str, ctx: _Ctx, depth: int) -> None:
    if depth > MAX_NESTING:
        raise CommandRefused(
            f"command refused: it nests commands more than {MAX_NESTING} levels deep (sh -c, eval, $(…)); "
            "run it in fewer levels",
            rule="unparsable",
        )
    _check_fork_bomb(text)
    pre = _preprocess(text)
    for inner in pre.substitutions:
        _check_script(inner, replace(ctx), depth + 1)
    try:
        tokens = _tokens(pre.text)
    except ValueError as exc:
        raise CommandRefused(
            f"command refused: it cannot be parsed ({exc}); balance its quotes and escapes", rule="unparsable"
        ) from None
    for simple in _simple_commands(tokens):
        _check_simple(simple, ctx, pre.heredocs, depth)


def _check_simple(cmd: _Simple, ctx: _Ctx, heredocs: dict[str, str], depth: int) -> None:
    argv = list(cmd.argv)
    writes: list[tuple[str, bool]] = []  # (target, /dev/null & co. allowed)
    for op, target in cmd.redirects:
        if op in _WRITE_REDIRECTS and not (op == ">&" and (target.isdigit() or target == "-")):
            writes.append((target, True))

    privilege = ""
    while argv:
        word, name = argv[0], posixpath.basename(argv[0])
        if word in _RESERVED or _ASSIGNMENT.match(word):
            argv.pop(0)
        elif word in ("for", "case", "select"):
            argv = []  # their words are data, not a command
        elif word == "function":
            argv = argv[2:]
        elif name in _WRAPPERS:
            privilege = privilege or (name if name in _PRIVILEGED else "")
            short, long = _WRAPPERS[name]
            _, opts, stop = _options(argv[1:], short, long, stop_at_operand=True)
            argv = argv[1 + stop :]
            if name == "timeout" and argv:
                argv = argv[1:]  # the duration
            if name == "env" and (split := _value(opts, "S", "split-string")) is not None:
                try:
                    argv = shlex.split(split) + argv  # `env -S "CMD ARGS"`
                except ValueError:
                    argv = [split, *argv]
        else:
            break

    name, args = (posixpath.basename(argv[0]), argv[1:]) if argv else ("", [])
    shown = _shown(argv or cmd.argv) or " ".join(f"{op} {t}" for op, t in cmd.redirects)
    permission_targets: list[str] = []

    if name in _SWITCH_USER:
        privilege = privilege or name
        if ctx.allow_sudo:
            for k, a in enumerate(args):
                if a in ("-c", "--command") and k + 1 < len(args):
                    _check_script(args[k + 1], replace(ctx), depth + 1)
                elif a.startswith("--command="):
                    _check_script(a.partition("=")[2], replace(ctx), depth + 1)
    elif name in ("cd", "pushd"):
        dests = [a for a in args if not a.startswith("-") or a == "-"]
        _cd(dests[0] if dests else "~", ctx)
    elif name in _SHELLS:
        _check_shell(args, cmd, ctx, heredocs, depth)
    elif name == "eval":
        _check_script(" ".join(args), replace(ctx), depth + 1)
    elif name == "rm":
        operands, opts, _ = _options(args)
        if _flag(opts, "no-preserve-root"):
            raise _dangerous(shown, "turns off rm's protection of the root directory",
                             "Delete paths inside your workspace instead.")
        if _flag(opts, "r", "R", "recursive"):
            for t in operands:
                path = _resolve(t, ctx)
                if _is_root(path) or _is_home(path):
                    where = "the root filesystem" if _is_root(path) else "a home directory"
                    raise _dangerous(shown, f"recursively deletes {where}",
                                     "Delete specific paths inside your workspace (e.g. `rm -rf build/`).")
        writes += [(t, False) for t in operands]
    elif name in _WRITERS:
        operands, _, _ = _options(args, *_WRITERS[name])
        writes += [(t, name == "tee") for t in operands]
    elif name in _COPIERS:
        operands, opts, _ = _options(args, *_COPIERS[name])
        directory = _value(opts, "t", "target-directory")
        if name == "mv" and any(_resolve(t, ctx) == "/dev/null" for t in [*operands, directory or ""]):
            raise _dangerous(shown, "moves /dev/null (it breaks every program that writes to it)",
                             "Delete files with `rm` instead.")
        if directory is not None:
            writes.append((directory, False))
        elif name == "install" and _flag(opts, "d", "directory"):
            writes += [(t, False) for t in operands]
        elif len(operands) >= 2:
            writes.append((operands[-1], name == "cp"))
        if name == "mv":  # the sources are removed
            writes += [(t, False) for t in (operands if directory is not None else operands[:-1])]
    elif name == "dd":
        writes += [(a[3:], True) for a in args if a.startswith("of=")]
    elif name == "find":
        writes += _check_find(args, shown, ctx, depth)
    elif name.startswith("mkfs") or name in _FORMATTERS:
        raise _dangerous(shown, "formats or partitions a disk", "Work with files inside your workspace.")
    elif name in _POWER or (name in ("init", "telinit") and args[:1] and args[0] in ("0", "6")) or (
        name == "systemctl" and _SYSTEMCTL_POWER.intersection(args)
    ):
        raise _dangerous(shown, "shuts down or restarts the machine", "Stop your own processes instead.")
    elif name == "killall5" or (name == "kill" and _kills_everything(args)):
        raise _dangerous(shown, "signals every process (or init)", "Kill your own processes by their pid.")
    elif name in _PERMISSIONS:
        operands, opts, _ = _options(args, "", frozenset({"reference", "from"}))
        letters = {o for o, _ in opts if len(o) == 1}
        # `chmod -x f`: a mode that looks like options; otherwise the first operand is the mode/owner.
        mode_in_options = name == "chmod" and not letters <= set("cfvRhHLP")
        files = operands if mode_in_options or _value(opts, "reference") else operands[1:]
        if _flag(opts, "R", "recursive") and any(_is_root(_resolve(f, ctx)) for f in files):
            raise _dangerous(shown, "recursively changes the whole filesystem",
                             "Change files inside your workspace instead.")
        permission_targets = files

    for target, _ in writes:
        path = _resolve(target, ctx)
        if path is not None and _BLOCK_DEVICE.match(path):
            raise _dangerous(shown, f"writes to the disk device {path}",
                             "Write to files inside your workspace instead.")
    if privilege and not ctx.allow_sudo:
        raise CommandRefused(
            f"command refused: `{privilege}` is not allowed for this agent (commands run as the sandbox "
            "user, and sudo is enabled only with `command_line_docker_enable_sudo`); run the command "
            "without it, installing into your workspace if needed (e.g. `pip install --target ./lib …`)",
            rule="privilege",
        )
    if not ctx.allow_sudo:
        for target in permission_targets:
            if (why := _outside(target, ctx, device_ok=False)) is not None:
                raise CommandRefused(
                    f"command refused: `{shown}` changes permissions or ownership of {target!r}, "
                    f"{why}; only files inside your workspace ({ctx.workspace}) may be changed",
                    rule="privilege",
                )
    for target, device_ok in writes:
        if (why := _outside(target, ctx, device_ok)) is not None:
            extra = "".join(f", {w}" for w in ctx.writable)
            raise CommandRefused(
                f"command refused: `{shown}` writes to {target!r}, {why}. Write "
                f"inside your workspace ({ctx.workspace}{extra}; relative paths such as `out/result.txt`) "
                f"or under {TMP_DIR}",
                rule="outside_workspace",
            )


def _cd(dest: str, ctx: _Ctx) -> None:
    if dest == "-":
        ctx.cwd = None
        return
    anchored = dest.startswith("/") or ctx.anchored
    ctx.cwd, ctx.anchored = _resolve(dest, ctx), anchored


def _check_shell(args: list[str], cmd: _Simple, ctx: _Ctx, heredocs: dict[str, str], depth: int) -> None:
    """``sh -c SCRIPT``, or a shell reading its script from stdin (a here-document, a here-string, or
    a pipe from a command with one, or from ``echo``/``printf``): check the script."""
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
    if has_c and i < len(args):
        _check_script(args[i], replace(ctx), depth + 1)
    elif i >= len(args):  # no script file: the shell reads its stdin
        scripts = []
        for source in (cmd, cmd.piped_from):
            if source is None:
                continue
            for op, target in source.redirects:
                if op == "<<" and target in heredocs:
                    scripts.append(heredocs[target])
                elif op == "<<<":
                    scripts.append(target)
        upstream = cmd.piped_from.argv if cmd.piped_from is not None else []
        if upstream and posixpath.basename(upstream[0]) in ("echo", "printf"):
            scripts.append(" ".join(a for a in upstream[1:] if not a.startswith("-")))
        for script in scripts:
            _check_script(script, replace(ctx), depth + 1)


def _check_find(args: list[str], shown: str, ctx: _Ctx, depth: int) -> list[tuple[str, bool]]:
    """``find ROOTS … -delete`` / ``-exec rm``: the roots are deleted from; ``-exec`` commands are
    checked as commands."""
    i = 0
    while i < len(args) and (args[i] in ("-H", "-L", "-P") or args[i].startswith("-O")):
        i += 1
    roots = []
    while i < len(args) and not args[i].startswith("-") and args[i] not in ("!", "(", ","):
        roots.append(args[i])
        i += 1
    expression = args[i:]
    deletes = "-delete" in expression
    for k, a in enumerate(expression):
        if a in ("-exec", "-execdir", "-ok", "-okdir"):
            ends = (j for j in range(k + 1, len(expression)) if expression[j] in (";", "+"))
            end = next(ends, len(expression))
            sub = expression[k + 1 : end]
            if sub:
                deletes = deletes or posixpath.basename(sub[0]) in ("rm", "shred", "unlink", "rmdir")
                _check_simple(_Simple(sub, []), replace(ctx), {}, depth + 1)
    if not deletes:
        return []
    for root in roots or ["."]:
        path = _resolve(root, ctx)
        if _is_root(path) or _is_home(path):
            where = "the root filesystem" if _is_root(path) else "a home directory"
            raise _dangerous(shown, f"deletes files throughout {where}",
                             "Run find on a directory inside your workspace.")
    return [(root, False) for root in roots or ["."]]


def _kills_everything(args: list[str]) -> bool:
    i = 0
    if args[:1] and args[0] in ("-s", "-n"):
        i = 2
    elif args[:1] and args[0].startswith("-") and args[0] not in ("--", "-1"):
        i = 1  # -9, -KILL, -SIGTERM
    rest = args[i:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return "-1" in rest or "1" in rest


def check_command(
    command: str,
    *,
    workspace: Path,
    allowed: Sequence[str] = (),
    blocked: Sequence[str] = (),
    allow_sudo: bool = False,
    cwd: Path | None = None,
    writable: Sequence[Path] = (),
) -> None:
    """Refuse ``command`` if the executor must not run it (MassGen spec §4.1 ``_sanitize_command`` and
    ``_check_command_filters``, issue #5 item 4). A best-effort check; see the module docstring.

    Args:
        command: the shell command as the model gave it (run later with ``/bin/sh -c``).
        workspace: the agent's workspace; writes must stay inside it (or ``writable``, or ``/tmp``).
        allowed: ``command_line_allowed_commands``; when non-empty the command must ``re.match`` one.
        blocked: ``command_line_blocked_commands``; the command must not ``re.search`` any.
        allow_sudo: ``command_line_docker_enable_sudo``: permits ``sudo``/``su``/``doas`` and
            ``chmod``/``chown`` anywhere (the other dangerous patterns stay refused).
        cwd: where the command runs, when not the workspace root (relative paths are resolved there).
        writable: further directories writes may go to (e.g. writable context paths); ``Path("/")``
            turns the outside-the-workspace check off, for a sandbox whose filesystem is disposable.

    Raises:
        CommandRefused: the message says why and what is allowed; ``rule`` names the check.
        ValueError: a pattern in ``allowed`` or ``blocked`` is not a valid regular expression (the
            message names it; config validation reports it earlier through :func:`validate_patterns`).
    """
    validate_patterns(allowed, ALLOWED_KEY)
    validate_patterns(blocked, BLOCKED_KEY)
    text = command.strip()
    if not text:
        raise CommandRefused("command refused: the command is empty; give a shell command to run",
                             rule="unparsable")
    if "\x00" in command:
        raise CommandRefused("command refused: it contains a NUL character; remove it", rule="unparsable")
    ws = os.path.realpath(workspace)
    ctx = _Ctx(workspace=ws, writable=tuple(os.path.realpath(w) for w in writable), allow_sudo=allow_sudo,
               cwd=os.path.realpath(cwd) if cwd is not None else ws, anchored=False)
    _check_script(command, ctx, 0)
    for pattern in blocked:
        if _compile(pattern).search(command):
            raise CommandRefused(
                f"command refused: it matches the blocked pattern `{pattern}` ({BLOCKED_KEY}); "
                "use another command",
                rule="blocked",
            )
    if allowed and not any(_compile(p).match(text) for p in allowed):
        raise CommandRefused(
            f"command refused: it matches none of the allowed patterns "
            f"{', '.join(f'`{p}`' for p in allowed)} ({ALLOWED_KEY}); only commands matching one of them "
            "from their start may run",
            rule="not_allowed",
        )
