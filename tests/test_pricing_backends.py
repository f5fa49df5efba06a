"""The price table and the backend registry."""

from __future__ import annotations

import pytest

from massgen_es import backends, pricing
from massgen_es.events import Usage


def test_cost_charges_input_cached_and_output_tokens_at_their_prices():
    usage = Usage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000, reasoning_tokens=50_000)
    # gpt-4o: $2.50 input, $1.25 cached, $10 output per million; reasoning is inside output
    assert pricing.cost_usd("openai", "gpt-4o-2024-08-06", usage) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 1.0)


def test_longest_prefix_wins_and_provider_prefixes_are_ignored():
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == pricing.PRICES["gpt-4o-mini"]
    assert pricing.price_of("openai/gpt-4o") == pricing.PRICES["gpt-4o"]


def test_unknown_models_have_no_cost_and_local_backends_are_free():
    assert pricing.cost_usd("chatcompletion", "my-own-model", Usage(input_tokens=10)) is None
    assert pricing.cost_usd("local", "SmolLM2", Usage(input_tokens=10, output_tokens=10)) == 0.0


@pytest.mark.parametrize(
    ("backend_type", "url", "env"),
    [
        ("chatcompletion", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ("chatcompletion", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ("chatcompletion", "http://127.0.0.1:8000/v1", None),
        ("grok", None, "XAI_API_KEY"),
        ("claude", None, "ANTHROPIC_API_KEY"),
    ],
)
def test_api_key_variable_follows_the_type_or_the_endpoint_host(backend_type, url, env):
    assert backends.key_env(backend_type, None, url) == env
    assert backends.key_env(backend_type, "MINE", url) == "MINE"


def test_presets_bring_their_endpoint():
    assert backends.base_url("groq", None) == "https://api.groq.com/openai/v1"
    assert backends.base_url("groq", "http://proxy/v1") == "http://proxy/v1"
    assert all(c.adapter in {"chatcompletion", "local", "openai", "claude", "gemini", "azure_openai", "claude_code",
                             "ag2"} for c in backends.BACKENDS.values())
