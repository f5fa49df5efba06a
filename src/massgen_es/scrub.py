"""Secrets scrubbed where everything passes (issue 13 item 1): every event on its way to the bus
(:func:`massgen_es.events.encode`), every object put in the Object Store, every log line a service
writes (:class:`ScrubbingFormatter`) and every MCP server's stderr log (:class:`ScrubbedPipe`).

Two kinds of secret are replaced by :data:`MARKER`:

- known values: whatever this process has learnt is secret (:func:`remember`): the API keys the agent
  worker resolves, the MCP ``env``/``headers`` values that pass through the secret store, and at start
  the values of environment variables whose names say they hold credentials (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``, and the key variables of :mod:`massgen_es.backends`);
- credential shapes, known or not: ``Bearer <token>``, OpenAI/Anthropic ``sk-…``, Google ``AIza…``,
  GitHub ``ghp_…``, Slack ``xox?-…``, Hugging Face ``hf_…``, AWS ``AKIA…``, a URL's password
  (``nats://user:password@host``), and ``api_key=…``-style assignments (also inside JSON-quoted text).

The marker and every character a pattern matches are plain JSON string characters, so scrubbing the
bytes of a JSON document leaves it valid JSON. A value shorter than :data:`MIN_SECRET_CHARS` is not
remembered: scrubbing ``"1234"`` everywhere would destroy more than it protects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import IO

from massgen_es import backends

MARKER = "[redacted]"
MIN_SECRET_CHARS = 8
_SECRET_NAME = re.compile(r"API_?KEY|SECRET|(_KEY|_TOKEN|_PASSWORD|_PASSWD|_CREDENTIALS?)$", re.IGNORECASE)

# Credential shapes. Token characters stop at anything JSON would escape (quote, backslash), so a
# replacement never cuts an escape sequence in half.
_TOKEN = r"[A-Za-z0-9._~+/=-]"
# The generic shapes (a scheme or a key name, then a value) also want a digit in the value, so prose such
# as "bearer instruments" or "api_key: required" stays as it is.
_DIGITED = r"(?=[A-Za-z._~+/=-]*[0-9])" + _TOKEN
_SHAPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (pattern, replacement, prefixes: how a match begins, lower-cased)
    (rf"(?i)\b(bearer|basic)(\s+){_DIGITED}{{8,}}", r"\1\2" + MARKER, ("bearer", "basic")),
    (r"\bsk-[A-Za-z0-9_-]{16,}", MARKER, ("sk-",)),
    (r"\bAIza[0-9A-Za-z_-]{30,}", MARKER, ("aiza",)),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}", MARKER, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"\bgithub_pat_[A-Za-z0-9_]{30,}", MARKER, ("github_pat_",)),
    (r"\bxox[abeprs]-[A-Za-z0-9-]{10,}", MARKER, ("xox",)),
    (r"\bhf_[A-Za-z0-9]{30,}", MARKER, ("hf_",)),
    (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", MARKER, ("akia", "asia")),
    # a URL's password: nats://user:password@host, https://user:token@host
    (r"://([^:/@\s\"'\\]+):[^@/\s\"'\\]+@", r"://\1:" + MARKER + "@", ("://",)),
    # key = value, key: "value", \"key\": \"value\" (a JSON body quoted inside a JSON string)
    (rf"(?i)\b((?:api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|secret[_-]?key|password|passwd)"
     rf"(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?){_DIGITED}{{6,}}", r"\1" + MARKER,
     ("api", "access", "auth", "client", "secret", "passw")),
)
# A regex scan costs about 12 ns a byte here, a substring search about 1: so the patterns are only tried
# (``match``, anchored) where one of their prefixes occurs, and a 2 KB event pays about 20 us
# (bench/scrub_bench.py).
_COMPILED = tuple((re.compile(p.encode()), r.encode(), tuple(t.encode() for t in ts)) for p, r, ts in _SHAPES)


def _shapes(b: bytes) -> bytes:
    low = b.lower()
    found: list[tuple[int, int, bytes]] = []
    for pattern, repl, prefixes in _COMPILED:
        for prefix in prefixes:
            at = low.find(prefix)
            while at != -1:
                m = pattern.match(b, at)
                if m is not None:
                    found.append((m.start(), m.end(), m.expand(repl)))
                at = low.find(prefix, m.end() if m is not None else at + 1)
    if not found:
        return b
    out: list[bytes] = []
    done = 0
    for start, end, replacement in sorted(found):
        if start >= done:  # overlapping matches: the first one wins
            out += [b[done:start], replacement]
            done = end
    out.append(b[done:])
    return b"".join(out)


class Scrubber:
    """Known secret values plus the credential shapes; thread-safe (services log from threads).

    Use the process-wide :data:`SCRUBBER` through the module functions; a separate instance is for tests.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._spellings: tuple[bytes, ...] = ()
        self._known: re.Pattern[bytes] | None = None

    def remember(self, values: Iterable[str]) -> None:
        """Treat each value (of at least :data:`MIN_SECRET_CHARS` characters) as secret from now on."""
        new = {v for v in values if len(v.strip()) >= MIN_SECRET_CHARS} - self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            # JSON escapes a value's quotes and backslashes: match the escaped spelling in encoded bytes too.
            spellings = sorted({v.encode() for v in self._values} | {_json_escaped(v).encode() for v in self._values},
                               key=len, reverse=True)
            self._known = re.compile(b"|".join(re.escape(v) for v in spellings))
            self._spellings = tuple(spellings)

    def text(self, s: str) -> str:
        """``s`` with every known value and credential shape replaced by :data:`MARKER`."""
        return self.data(s.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")

    def data(self, b: bytes) -> bytes:
        """The same for bytes (UTF-8 text or a JSON document; JSON stays valid)."""
        known, spellings = self._known, self._spellings
        if known is not None and any(v in b for v in spellings):
            b = known.sub(MARKER.encode(), b)
        return _shapes(b)


def _json_escaped(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def secret_names(environ: Mapping[str, str]) -> list[str]:
    """Names of the variables of ``environ`` that hold credentials by their name or by
    :mod:`massgen_es.backends` (the provider key variables)."""
    known = backends.key_variables()
    return [k for k in environ if k in known or _SECRET_NAME.search(k)]


SCRUBBER = Scrubber()
"""The process-wide scrubber; it starts with the credential values of this process's environment."""


def remember(values: Iterable[str]) -> None:
    """Add secret values to the process-wide scrubber (see :meth:`Scrubber.remember`)."""
    SCRUBBER.remember(values)


def text(s: str) -> str:
    """``s`` scrubbed by the process-wide scrubber."""
    return SCRUBBER.text(s)


def data(b: bytes) -> bytes:
    """``b`` scrubbed by the process-wide scrubber."""
    return SCRUBBER.data(b)


_started = False


def remember_environment() -> None:
    """Remember the credential values of ``os.environ`` (once per process; cheap afterwards)."""
    global _started
    if not _started:
        _started = True
        remember(os.environ[k] for k in secret_names(os.environ))


class ScrubbingFormatter(logging.Formatter):
    """Wraps a formatter: the formatted line (message, arguments and traceback) is scrubbed."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, scrubbed."""
        return text(self.inner.format(record))


def guard_logging(root: logging.Logger | None = None) -> None:
    """Scrub every line the handlers of ``root`` (default: the root logger) write; idempotent. Call it
    after ``logging.basicConfig``; it also remembers this process's credential environment."""
    remember_environment()
    for handler in (root or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, ScrubbingFormatter):
            handler.setFormatter(ScrubbingFormatter(handler.formatter))


@contextlib.contextmanager
def scrubbed_pipe(path: Path) -> Generator[IO[str]]:
    """A writable file whose lines reach ``path`` (appended) scrubbed, for a child process's stderr.

    A child writes to a file descriptor, which no Python code sees: this hands it the write end of a
    pipe and copies the read end line by line through :func:`text` on a thread. The copy ends when every
    writer has closed the pipe (this context and the child); leaving the context waits for it at most 5 s.
    """
    read_fd, write_fd = os.pipe()

    def copy() -> None:
        with open(read_fd, encoding="utf-8", errors="replace") as src, open(path, "a", encoding="utf-8") as dst:
            for line in src:
                dst.write(text(line))
                dst.flush()

    thread = threading.Thread(target=copy, name=f"scrub-{path.name}", daemon=True)
    thread.start()
    try:
        with open(write_fd, "w", encoding="utf-8") as sink:
            yield sink
    finally:
        thread.join(5)
