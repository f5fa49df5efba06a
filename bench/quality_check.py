"""Checks an answer against a quality-set item (``quality_set.ITEMS``); used by ``bench/quality.py``.

Python items run through the executor's local mode (``massgen_executor.local.run_local``): the answer's
code and the item's asserts in a temporary workspace, with the executor's limits and a timeout.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from massgen_executor.local import Limits, run_local

_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|(?<![\w.])-?\d+(?:\.\d+)?")
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)


def numbers(text: str) -> list[float]:
    """Every number written in ``text`` (``1,024`` and ``16.09`` included)."""
    return [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(text)]


def code_of(answer: str) -> str:
    """The Python code in an answer: its fenced blocks joined, or the whole text when it has none."""
    blocks = _FENCE.findall(answer)
    if not blocks and "```" in answer:  # an unterminated fence: take what follows it
        blocks = [answer.split("```", 1)[1].split("\n", 1)[-1]]
    return "\n\n".join(blocks) if blocks else answer


async def check(item: dict, answer: str) -> bool:
    """Whether ``answer`` is right for ``item`` (see ``quality_set`` for the kinds of reference)."""
    text = answer.strip()
    if not text:
        return False
    if any(re.search(p, text, re.I | re.M) for p in item.get("reject", ())):
        return False
    if "accept" in item:
        return any(re.search(p, text, re.I | re.M) for p in item["accept"])
    if "number" in item:
        want, tol = float(item["number"]), float(item.get("tol", 0.0))
        return any(abs(n - want) <= max(tol * abs(want), 1e-9) for n in numbers(text))
    if "tests" in item:
        return await _passes(code_of(text), item["function"], item["tests"])
    raise ValueError(f"item {item['id']} has no reference")


async def _passes(code: str, function: str, tests: list[str]) -> bool:
    if f"def {function}" not in code:
        return False
    with tempfile.TemporaryDirectory(prefix="quality-") as d:
        Path(d, "solution.py").write_text(code)
        Path(d, "check.py").write_text("from solution import *\n" + "\n".join(tests) + "\nprint('ok')\n")
        result = await run_local("python3 check.py", work_dir=Path(d), timeout_s=10.0, limits=Limits(cpu_seconds=10))
    return result.exit_code == 0 and result.stdout.strip().endswith(b"ok")
