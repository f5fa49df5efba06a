"""What scrubbing secrets costs on the append path (issue 13 item 1): ``events.encode`` of a
``turn.failed`` event with a message of 200 B, 2 KB and 20 KB of prose, and of 2 KB holding a key and a
remembered value, with the process-wide scrubber and with scrubbing turned off.

    .venv/bin/python bench/scrub_bench.py

Target: under 50 us added per 2 KB event (an append itself takes ~300 us; a run writes ~40 events).
"""

from __future__ import annotations

import timeit

from massgen_es import events, scrub

PROSE = "The quick brown fox jumps over the lazy dog; a token of 12 words, a basic key idea. "
SOURCE = events.Source(service="agent_worker", instance="bench")


def cost_us(message: str, n: int = 3000) -> float:
    event = events.TurnFailed(turn_id="t", agent_id="a", attempt=1, failure=events.Failure(type="X", message=message))
    return timeit.timeit(lambda: events.encode(event, id="i", run_id="r", ts=1.0, source=SOURCE), number=n) / n * 1e6


def main() -> None:
    scrub.remember(["opaque-remembered-value-1234"])
    cases = {
        "200 B prose": PROSE[:200],
        "2 KB prose": (PROSE * 25)[:2000],
        "20 KB prose": (PROSE * 250)[:20000],
        "2 KB with a key and a remembered value": (PROSE * 24)[:1900]
        + " Bearer sk-proj-Abc123def456ghi789 opaque-remembered-value-1234",
    }
    with_scrub = {name: cost_us(text) for name, text in cases.items()}
    real = scrub.SCRUBBER.data
    scrub.SCRUBBER.data = lambda b: b  # type: ignore[method-assign]
    without = {name: cost_us(text) for name, text in cases.items()}
    scrub.SCRUBBER.data = real  # type: ignore[method-assign]
    print(f"{'event message':42} {'encode':>10} {'unscrubbed':>11} {'added':>9}")
    for name in cases:
        print(f"{name:42} {with_scrub[name]:8.1f}us {without[name]:9.1f}us {with_scrub[name] - without[name]:7.1f}us")


if __name__ == "__main__":
    main()
