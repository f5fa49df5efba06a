"""The shell lexer behind the filters: a script's text → its simple commands.

:func:`preprocess` makes a script safe for :mod:`shlex` (quoted/escaped operator characters hidden,
comments and line continuations dropped, here-document bodies and ``$(…)``/backquote/process
substitutions and ``((…))`` cut out and replaced by placeholders, ``$'…'`` decoded); then
:meth:`Script.commands` tokenises the rest and splits it into :class:`Simple` commands at ``;``,
``&&``, ``||``, ``|``, ``&``, newlines and parentheses. The substitutions are returned as text, for the
caller to check as scripts of their own.

Hand-written rather than tree-sitter-bash: that grammar (0.25.1) fails on valid commands the executor
sees (``cmd <> f``, ``cat <<EOF >f; cmd``, two here-documents on one line) and reads
``rm 2>/dev/null -rf /`` as ``rm`` with a three-word redirection target.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

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
WRITE_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>"})
_WORD_END = " \t\n;&|()<>"
SUBST = "$__massgen_subst__"  # stands for $(…), `…`, <(…), >(…) and ((…)) in the parsed command
_HEREDOC = "__massgen_heredoc_{}__"

_ANSI_ESCAPE = re.compile(
    r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL
)
_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v"}


@dataclass
class Simple:
    """One simple command: its words, its redirections ``(operator, target)``, and the command piping
    into it, if any. A here-document's target is a key of :attr:`Script.heredocs`."""

    argv: list[str]
    redirects: list[tuple[str, str]]
    piped_from: Simple | None = None


@dataclass
class Script:
    """A script ready for shlex, with what was cut out of it."""

    text: str
    heredocs: dict[str, str]  # placeholder → body
    substitutions: list[str]  # inner text of $(…), `…`, <(…), >(…), and of ((…)) holding one

    def commands(self) -> list[Simple]:
        """The simple commands of :attr:`text`, in order.

        Raises:
            ValueError: unbalanced quotes or a trailing escape (shlex's message).
        """
        return _simple_commands(_tokens(self.text))


def preprocess(src: str) -> Script:
    """Prepare ``src`` for shlex: hide quoted/escaped operators, drop comments and line continuations,
    cut out here-document bodies and command substitutions (replaced by placeholders), decode
    ``$'…'``. Quotes themselves stay for shlex to remove. Never raises: what cannot be closed runs to
    the end of ``src`` (the shell would reject it anyway)."""
    return _Preprocessor(src).run()


def closing(src: str, i: int, opener: str = "(", closer: str = ")") -> int:
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


# ---------------------------------------------------------------- preprocessing


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


def _cut_substitution(src: str, i: int, subs: list[str]) -> int:
    """Record the inner text of the substitution starting at ``i``; return the index after it."""
    if src[i] == "`":
        end = _backquote_end(src, i + 1)
        subs.append(src[i + 1 : end].replace("\\`", "`"))
    else:  # $( <( >(
        end = closing(src, i + 2)
        subs.append(src[i + 2 : end])
    return end + 1


class _Preprocessor:
    """One pass over a script. Each method but :meth:`run` handles the construct starting at index
    ``i`` and returns the index after it."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.out: list[str] = []
        self.heredocs: dict[str, str] = {}
        self.subs: list[str] = []
        self.pending: list[tuple[str, str, bool]] = []  # (placeholder, delimiter, strip leading tabs)
        self.quote = ""

    def run(self) -> Script:
        i = 0
        while i < len(self.src):
            if self.quote == "'":
                i = self._single_quoted(i)
            elif self.quote == '"':
                i = self._double_quoted(i)
            else:
                i = self._unquoted(i)
        return Script("".join(self.out), self.heredocs, self.subs)

    def _single_quoted(self, i: int) -> int:
        c = self.src[i]
        if c == "'":
            self.quote = ""
        self.out.append(_HIDE.get(c, c))
        return i + 1

    def _double_quoted(self, i: int) -> int:
        src, c = self.src, self.src[i]
        if c == "\\" and i + 1 < len(src):
            if src[i + 1] != "\n":  # a backslash-newline inside double quotes joins lines
                self.out.append(c + _HIDE.get(src[i + 1], src[i + 1]))
            return i + 2
        if c == '"':
            self.quote = ""
            self.out.append(c)
            return i + 1
        if c == "`" or src.startswith("$(", i):
            self.out.append(SUBST)
            return _cut_substitution(src, i, self.subs)
        self.out.append(_HIDE.get(c, c))
        return i + 1

    def _unquoted(self, i: int) -> int:
        src, c = self.src, self.src[i]
        if c == "\\":
            if i + 1 < len(src) and src[i + 1] != "\n":  # backslash-newline: a line continuation
                nxt = src[i + 1]
                self.out.append(_HIDE[nxt] if nxt in _HIDE else c + nxt)
            return i + 2
        if c in "'\"":
            self.quote = c
            self.out.append(c)
            return i + 1
        if src.startswith("$'", i):
            return self._ansi_c(i)
        if c == "#" and (i == 0 or src[i - 1] in _WORD_END):  # a comment, not `a#b`
            j = src.find("\n", i)
            return len(src) if j < 0 else j
        if src.startswith("$((", i) or src.startswith("((", i):
            return self._arithmetic(i)
        if c == "`" or src.startswith("$(", i) or (c in "<>" and src.startswith("(", i + 1)):
            self.out.append(SUBST)
            return _cut_substitution(src, i, self.subs)
        if src.startswith("<<<", i):
            self.out.append("<<<")
            return i + 3
        if src.startswith("<<", i):
            return self._heredoc_start(i)
        if c == "\n" and self.pending:
            return self._heredoc_bodies(i)
        self.out.append(c)
        return i + 1

    def _ansi_c(self, i: int) -> int:
        """``$'…'``: decode, re-quote plainly (single quotes, operators hidden)."""
        src, j = self.src, i + 2
        while j < len(src) and src[j] != "'":
            j += 2 if src[j] == "\\" else 1
        word = _ANSI_ESCAPE.sub(_ansi_char, src[i + 2 : j])
        self.out.append("'" + "'\\''".join("".join(_HIDE.get(ch, ch) for ch in part)
                                           for part in word.split("'")) + "'")
        return j + 1

    def _arithmetic(self, i: int) -> int:
        """``$((…))`` or ``((…))``: arithmetic in bash, nested subshells in dash. Cut out whole (so a
        ``<<`` shift is not taken for a here-document) and check the inside as commands, which covers
        both readings."""
        start = i + (3 if self.src[i] == "$" else 2)
        end = closing(self.src, start - 1)
        self.subs.append(self.src[start - 1 : end])
        self.out.append(" " + SUBST + " ")
        return end + 1

    def _heredoc_start(self, i: int) -> int:
        """``<<WORD`` / ``<<-WORD``: a placeholder now, the body at the end of the line."""
        src, j = self.src, i + 2
        strip = j < len(src) and src[j] == "-"
        j += strip
        while j < len(src) and src[j] in " \t":
            j += 1
        delimiter, j = _heredoc_word(src, j)
        if not delimiter:
            self.out.append("<<")
            return i + 2
        key = _HEREDOC.format(len(self.heredocs))
        self.heredocs[key] = ""
        self.pending.append((key, delimiter, strip))
        self.out.append(f"<< {key} ")
        return j

    def _heredoc_bodies(self, i: int) -> int:
        """At the newline ending a line with here-documents: read their bodies, in order."""
        src, n = self.src, len(self.src)
        self.out.append("\n")
        i += 1
        for key, delimiter, strip in self.pending:
            body: list[str] = []
            while i < n:
                j = src.find("\n", i)
                line = src[i:] if j < 0 else src[i:j]
                i = n if j < 0 else j + 1
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
                body.append(line)
            self.heredocs[key] = "\n".join(body)
        self.pending.clear()
        return i


# ---------------------------------------------------------------- tokens and simple commands


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


def _simple_commands(tokens: list[tuple[bool, str]]) -> list[Simple]:
    out: list[Simple] = []
    argv: list[str] = []
    redirects: list[tuple[str, str]] = []
    upstream: Simple | None = None
    i = 0
    while i < len(tokens):
        is_op, token = tokens[i]
        if not is_op:
            argv.append(token)
        elif token in _SEPARATORS:
            current = Simple(argv, redirects, upstream) if argv or redirects else None
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
        out.append(Simple(argv, redirects, upstream))
    return out
