"""Question paraphrasing before coordination (MassGen's ``orchestrator.dspy``, spec §1.15). Pure.

MassGen's ``dspy_paraphraser.py`` asks a DSPy program on a configured backend for ``num_variants``
semantically equivalent rewrites of the question, each at its own temperature, and gives agent ``j``
variant ``j mod n`` as ``<PARAPHRASED MESSAGE>`` next to the original. Here each rewrite is one turn of
kind ``paraphrase`` on that backend, run by an agent worker like any LLM call (recorded, retried,
redelivered after a crash), requested by the core at ``run.submitted`` and folded into one
``question.paraphrased`` when all have settled; a resumed run has them in its log and asks no more.
The ``dspy`` library is not used: it would bring litellm and its own provider stack into the worker,
whose providers, key handling and event recording serve every other call.

Where the spec is silent (its DSPy signature texts and temperature schedule), this module decides:
the prompts below, a temperature range per strategy (overridden by ``temperature_range``) spread evenly
over the variants, and a reply's last ``PARAPHRASE:`` line block as the variant when chain of thought
is on (the reasoning before it is dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

from massgen_es import ids
from massgen_es.events import Message, Paraphrasing, TurnRequested

RANGES: dict[str, tuple[float, float]] = {
    "conservative": (0.3, 0.6),
    "balanced": (0.5, 0.9),
    "adaptive": (0.5, 0.9),
    "diverse": (0.8, 1.2),
}
"""Temperature range per strategy, lowest for the first variant."""

_STYLE = {
    "conservative": "Change the wording as little as needed: keep the structure and the key terms.",
    "balanced": "Reword it naturally: new phrasing and sentence structure, same meaning and details.",
    "adaptive": "Reword it naturally: new phrasing and sentence structure, same meaning and details.",
    "diverse": "Reword it freely: a different structure and vocabulary, as another person would ask it.",
}
_MARKER = "PARAPHRASE:"


def temperatures(n: int, strategy: str, given: tuple[float, float] | None = None) -> tuple[float, ...]:
    """``n`` temperatures spread evenly over ``given`` or the strategy's :data:`RANGES`, rounded to 2 places."""
    lo, hi = given or RANGES.get(strategy, RANGES["balanced"])
    if n <= 1:
        return (round(lo, 2),)
    return tuple(round(lo + (hi - lo) * i / (n - 1), 2) for i in range(n))


def messages(question: str, p: Paraphrasing, i: int) -> tuple[Message, ...]:
    """What the paraphrasing model is sent for variant ``i``."""
    system = ("You rewrite questions. A rewrite asks exactly the same thing, with every fact, number, name "
              "and constraint of the original, and adds nothing. " + _STYLE.get(p.strategy, _STYLE["balanced"]))
    if p.use_chain_of_thought:
        ask = (f"Think briefly about what the question asks and must keep, then write the line {_MARKER} "
               "followed by the rewritten question and nothing after it.")
    else:
        ask = "Reply with the rewritten question only."
    user = f"Question:\n{question}\n\nThis is rewrite number {i + 1}; make it differ from the others. {ask}"
    return (Message(role="system", content=system), Message(role="user", content=user))


def requests(question: str, p: Paraphrasing, agent_ids: Sequence[str], anon_ids: Sequence[str]) -> list[TurnRequested]:
    """One turn per variant some agent receives (``min(num_variants, agents)``), each named after the
    first agent it goes to, on the paraphrasing backend at its temperature."""
    n = min(p.num_variants, len(agent_ids))
    temps = temperatures(n, p.strategy, p.temperature_range)
    return [
        TurnRequested(
            turn_id=ids.paraphrase_turn_id(agent_ids[i]), agent_id=agent_ids[i], attempt=1, kind="paraphrase",
            messages=messages(question, p, i),
            tools=(), backend={**p.backend, "temperature": temps[i]}, answers_version=0,
            anon_id=anon_ids[i],
        )
        for i in range(n)
    ]


def variant(reply: str, question: str) -> str:
    """The rewrite in a model's reply: after the last ``PARAPHRASE:`` when there is one, unquoted; ``""``
    when nothing is left or it only repeats the question."""
    text = reply.rsplit(_MARKER, 1)[1] if _MARKER in reply else reply
    text = text.strip().strip('"').strip()
    return "" if not text or text.casefold() == question.strip().casefold() else text


def assign(variants: Sequence[str], agent_ids: Sequence[str]) -> dict[str, str]:
    """Agent id -> its variant, round-robin in config order (spec §1.15); agents whose variant is empty
    are left out."""
    if not variants:
        return {}
    return {a: variants[j % len(variants)] for j, a in enumerate(agent_ids) if variants[j % len(variants)]}


__all__ = ["RANGES", "assign", "messages", "requests", "temperatures", "variant"]
