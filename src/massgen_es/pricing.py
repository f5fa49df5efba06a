"""Token prices and the cost of one LLM call (MassGen spec §2.7).

Prices are USD per million tokens, per token class: ``input``, ``cached`` (cache reads), ``output``.
Reasoning tokens are billed as output tokens by every provider listed, so they are part of
``output_tokens`` and are not charged again.

Source: the providers' public pricing pages (openai.com/api/pricing, anthropic.com/pricing,
ai.google.dev/gemini-api/docs/pricing, x.ai/api), transcribed on ``PRICES_AS_OF``. The build machines
have no network, so they were not re-checked since: update the table, and the date, when a price
changes. A model matches the longest key that prefixes its name (``gpt-4o-mini-2024-07-18`` ->
``gpt-4o-mini``); unknown models have no price (cost ``None``, never a guess). Local and self-hosted
backends cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from massgen_es.events import Usage

PRICES_AS_OF = "2025-10-01"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached: float | None = None
    """Cache-read price; None means cached tokens are billed as input."""


PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o3": Price(2.00, 8.00, 0.50),
    # Anthropic (cache reads at 0.1x input)
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    # xAI
    "grok-4": Price(3.00, 15.00, 0.75),
    "grok-3-mini": Price(0.30, 0.50, 0.075),
    "grok-3": Price(3.00, 15.00, 0.75),
}

FREE_BACKENDS = frozenset({"local", "lmstudio", "vllm", "sglang"})


def price_of(model: str) -> Price | None:
    """The price of ``model`` (longest matching prefix; a ``provider/`` prefix is ignored), or None."""
    name = model.rsplit("/", 1)[-1].lower()
    keys = [k for k in PRICES if name.startswith(k)]
    return PRICES[max(keys, key=len)] if keys else None


def cost_usd(backend_type: str, model: str, usage: Usage) -> float | None:
    """Cost of one call in USD, rounded to 1e-8; 0 for local backends; None for an unknown model."""
    if backend_type in FREE_BACKENDS:
        return 0.0
    price = price_of(model)
    if price is None:
        return None
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_price = price.cached if price.cached is not None else price.input
    total = (usage.input_tokens - cached) * price.input + cached * cached_price + usage.output_tokens * price.output
    return round(total / 1_000_000, 8)
