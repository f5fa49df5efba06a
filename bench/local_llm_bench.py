"""Local model speed through the pipeline (issue 11 item 4); prints its figures, asserts nothing.

1. **Tokens/s, pipeline against the raw server, same prompt.** A one-agent run on the default local
   model (temperature 0, seed 1, ``max_tokens`` fixed) through an embedded stack: its first turn is one
   plain call, measured from ``turn.requested`` to ``turn.responded`` (queue, worker, streaming into
   ``text.delta`` events, appends included). Then exactly that turn's messages go straight to the same
   llama.cpp server with the official ``openai`` SDK, streamed, in the same slot (the agent's), so both
   find the same prompt cached. Output tokens per second of each, and the ratio; target >= 0.9.
2. **Prompt cache.** Tokens the server processed for the team's vote and presentation turns, against
   the prompt sizes (llama.cpp's slot log: ``prompt eval ... / N tokens`` counts only uncached tokens).
3. **The demo's wall time**: ``massgen submit`` of the demo question as a new process (stack start and
   model load included), after install; target under 3 minutes on 2 cores.

    .venv/bin/python bench/local_llm_bench.py [--model NAME] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from massgen_agent_worker.providers import local
from massgen_cli.stack import open_stack
from massgen_es import models
from massgen_es.bus import Draft
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import TERMINAL_EVENTS, Message, Source, TurnRequested, TurnResponded, UsageRecorded

DEMO = "What is the capital of France? Answer in one word."
PROMPT = "Write a Python function is_prime(n) that returns True if the integer n is a prime number."
MAX_TOKENS = 200
MASSGEN = str(Path(sys.executable).parent / "massgen")


async def pipeline_call(stack, model: str) -> tuple[TurnRequested, float, int]:
    """One single-agent run; its first turn's request, seconds from request to response, output tokens."""
    cfg = parse_config({"agents": [{"id": "solo", "backend": {
        "type": "local", "model": model, "temperature": 0, "seed": 1, "max_tokens": MAX_TOKENS}}]})
    run_id = f"speed-{uuid.uuid4().hex[:8]}"
    await stack.log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted(PROMPT, cfg))],
                           origin=Source(service="bench", instance="speed"))
    async for r in stack.log.follow(run_id):
        if isinstance(r.event, TERMINAL_EVENTS):
            break
    records = await stack.log.read(run_id)
    req = next(r for r in records if isinstance(r.event, TurnRequested))
    resp = next(r for r in records if isinstance(r.event, TurnResponded) and r.event.turn_id == req.event.turn_id)
    usage = next(
        r.event for r in records if isinstance(r.event, UsageRecorded) and r.event.turn_id == req.event.turn_id
    )
    return req.event, resp.ts - req.ts, usage.usage.output_tokens


def plain(m: Message) -> ChatCompletionMessageParam:
    """A message as role and text only, in the SDK's shape (a first turn has no tool messages)."""
    if m.role == "system":
        return {"role": "system", "content": m.content}
    if m.role == "assistant":
        return {"role": "assistant", "content": m.content}
    if m.role == "tool":
        return {"role": "tool", "content": m.content, "tool_call_id": m.tool_call_id or ""}
    return {"role": "user", "content": m.content}


async def raw_call(base_url: str, model: str, req: TurnRequested) -> tuple[float, int]:
    """The same messages straight to the server, streamed; seconds and output tokens."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model=model, messages=[plain(m) for m in req.messages], temperature=0,
        seed=1, max_tokens=MAX_TOKENS, stream=True, stream_options={"include_usage": True},
        extra_body={"cache_prompt": True, "id_slot": local.slot_of(req)})
    tokens = 0
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    return time.monotonic() - started, tokens


def cache_figures(log: Path) -> list[tuple[int, int]]:
    """``(processed prompt tokens, tokens in the slot at release)`` per request, from llama.cpp's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    processed = [int(n) for n in re.findall(r"prompt eval time = .*?/\s*(\d+) tokens", text)]
    kept = [int(n) for n in re.findall(r"stop processing: n_tokens = (\d+)", text)]
    return list(zip(processed, kept, strict=False))


async def speed(model: str, rounds: int) -> None:
    async with open_stack(services=True, name="speed-bench") as stack:
        await pipeline_call(stack, model)  # warm up: the server loads the model
        ratios, piped, raws = [], [], []
        for _ in range(rounds):
            req, secs, tokens = await pipeline_call(stack, model)
            raw_s, raw_tokens = await raw_call(await local.server(model).ensure(), model, req)
            piped.append(tokens / secs)
            raws.append(raw_tokens / raw_s)
            ratios.append(piped[-1] / raws[-1])
        print(f"model {model}, prompt {PROMPT!r}, max_tokens {MAX_TOKENS}, {rounds} rounds")
        print(f"raw server:      {statistics.median(raws):6.2f} output tokens/s (streamed, openai SDK)")
        print(f"whole pipeline:  {statistics.median(piped):6.2f} output tokens/s (turn.requested -> turn.responded)")
        print(f"ratio:           {statistics.median(ratios):6.3f} (target >= 0.9)")


def demo(model: str) -> None:
    with tempfile.TemporaryDirectory(prefix="massgen-demo-") as home:
        env = {**os.environ, "MASSGEN_HOME": home}
        env.pop("MASSGEN_NATS_URL", None)
        started = time.monotonic()
        done = subprocess.run([MASSGEN, "submit", DEMO, "--json"], capture_output=True, text=True, env=env, timeout=900)
        wall = time.monotonic() - started
        out: dict[str, Any] = (
            json.loads(done.stdout) if done.returncode in (0, 3) else {"final_answer": done.stderr[-300:]}
        )
        print(f"demo wall time:  {wall:6.1f} s for `massgen submit {DEMO!r}` (target < 180 s on 2 cores); "
              f"final answer {out.get('final_answer')!r}, {out.get('usage', {}).get('llm_calls')} LLM calls")
        pairs = cache_figures(Path(home) / "logs" / f"local-llm-{model}.log")
        if pairs:
            print("prompt cache (per LLM call of the demo: prompt tokens processed / tokens in the slot after):")
            print("  " + ", ".join(f"{p}/{k}" for p, k in pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default=models.DEFAULT_MODEL, choices=list(models.MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    models.weights(args.model)
    if args.model == models.DEFAULT_MODEL:
        demo(args.model)  # first: a cold start, as a new user's
    with tempfile.TemporaryDirectory(prefix="massgen-speed-") as home:
        os.environ["MASSGEN_HOME"] = home
        os.environ.pop("MASSGEN_NATS_URL", None)
        asyncio.run(speed(args.model, args.rounds))


if __name__ == "__main__":
    main()
