"""Junk never becomes an answer (issue 11 item 3): text that says nothing, for every backend.

A small model under a long prompt may reply ``...``, ``**`` or a chat-template token such as
``<|im_end|>`` or ``<END OF DOCUMENT>``; the orchestrator rejects such an answer (and a vote whose
reason is such text) through the usual enforcement, and a junk presentation falls back to the
winner's stored answer.
"""

from __future__ import annotations

import re

_TEMPLATE_TOKENS = re.compile(
    r"<\|[^<>|\n]{0,40}\|>"  # <|im_end|>, <|endoftext|>, <|eot_id|>
    r"|<[^<>\n]{0,60}>"  # <END OF DOCUMENT>, </s>, <end_of_turn>, <agent1>: a lone tag says nothing
    r"|\[/?INST\]|<<\s*/?SYS\s*>>",
    re.I,
)
_WORD = re.compile(r"\w", re.UNICODE)
_ECHOED_LABEL = re.compile(r"^\s*(?:agent\d+(?: wrote)?|final answer)\s*:\s*", re.I)


def why_junk(text: str) -> str | None:
    """Why ``text`` is not an answer, or None when it has words (or numbers) in it.

    Junk: empty or whitespace; only chat-template tokens or lone tags; only punctuation or markup
    (``...``, ``**``, ``---``). Underscores alone count as markup.
    """
    if not text.strip():
        return "it is empty"
    stripped = _TEMPLATE_TOKENS.sub(" ", text)
    if not _WORD.search(stripped.replace("_", " ")):
        if stripped.strip(" \t\r\n") != text.strip(" \t\r\n"):
            return f"it is only a chat-template token or tag ({text.strip()[:40]!r}), not text"
        return f"it has no words, only punctuation or markup ({text.strip()[:40]!r})"
    return None


def strip_echoed_label(text: str) -> str:
    """``text`` without a leading ``agentN:`` / ``agentN wrote:`` / ``Final answer:`` that a small model
    copies from the way answers are listed to it; the answer itself is kept as written."""
    return _ECHOED_LABEL.sub("", text, count=1).strip()
