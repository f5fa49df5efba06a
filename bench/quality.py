"""Quality benchmark (issue 11 item 5): does the default team answer right on the local model?

Runs every item of ``quality_set.ITEMS`` (64 questions: short facts, arithmetic, unit conversions,
simple reasoning, small Python functions) through the whole pipeline, as ``massgen submit`` does (an
embedded stack: nats-server, orchestrator, worker, local model server), (a) with one agent, the default
team's first, and (b) with the default 3-agent team, both on ``--model``. Each final answer is checked
against the item's reference (``quality_check``; Python functions run their asserts through the
executor's local mode). Prints accuracy per category and overall, wall time and LLM calls per item.

Targets: team accuracy >= 80% overall and >= the single agent's (MassGen's premise).

Results go to a JSON-lines file as they come (``--out``, one line per item and mode), so an
interrupted run resumes where it stopped; ``--fresh`` starts over. The question set is never edited
to fit results.

    .venv/bin/python bench/quality.py --model qwen2.5-coder-1.5b
    .venv/bin/python bench/quality.py --model qwen2.5-coder-0.5b --modes team --limit 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import yaml

from massgen_cli.stack import open_stack
from massgen_es import models
from massgen_es.bus import Draft
from massgen_es.config import DEFAULT_CONFIG_YAML, Config, parse_config, run_submitted
from massgen_es.events import TERMINAL_EVENTS, Source
from massgen_replay.views import RunView

sys.path.insert(0, str(Path(__file__).parent))
from quality_check import check  # noqa: E402
from quality_set import CATEGORIES, ITEMS  # noqa: E402

MODES = ("single", "team")


def configs(model: str) -> dict[str, Config]:
    """The default team with every agent on ``model``, and its first agent alone."""
    data = yaml.safe_load(DEFAULT_CONFIG_YAML)
    for agent in data["agents"]:
        agent["backend"]["model"] = model
    team = parse_config(data, "<default team>")
    return {"team": team, "single": msgspec.structs.replace(team, agents=team.agents[:1])}


async def ask(stack, cfg: Config, question: str) -> dict:
    """One run through the stack: its final answer, status, wall time and LLM calls."""
    run_id = f"quality-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    await stack.log.append(run_id, "cli", [Draft(f"{run_id}:submitted", run_submitted(question, cfg))],
                           origin=Source(service="bench", instance="quality"))
    view = RunView(run_id)
    async for record in stack.log.follow(run_id):
        view.apply(record)
        if isinstance(record.event, TERMINAL_EVENTS):
            break
    summary = view.summary()
    return {"run_id": run_id, "status": summary["status"], "answer": summary["final_answer"] or "",
            "seconds": round(time.monotonic() - started, 2), "llm_calls": summary["usage"]["llm_calls"]}


def load(path: Path) -> dict[tuple[str, str, str], dict]:
    done: dict[tuple[str, str, str], dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[(row["model"], row["mode"], row["id"])] = row
    return done


def report(rows: list[dict], model: str) -> None:
    """The table: accuracy per category and overall for each mode, time and LLM calls per item."""
    by = defaultdict(list)
    for r in rows:
        by[(r["mode"], r["category"])].append(r)
        by[(r["mode"], "overall")].append(r)
    modes = [m for m in MODES if by[(m, "overall")]]
    print(f"\nquality benchmark: model {model}, {len(ITEMS)} items")
    head = f"{'category':<12}" + "".join(f"{m + ' accuracy':>22}" for m in modes)
    print(head)
    for cat in (*CATEGORIES, "overall"):
        cells = []
        for m in modes:
            got = by[(m, cat)]
            ok = sum(r["correct"] for r in got)
            cells.append(f"{ok:>3}/{len(got):<3} {100 * ok / len(got):5.1f}%" if got else "-")
        print(f"{cat:<12}" + "".join(f"{c:>22}" for c in cells))
    for m in modes:
        got = by[(m, "overall")]
        secs = [r["seconds"] for r in got]
        calls = [r["llm_calls"] for r in got]
        bad = [r["id"] for r in got if r["status"] != "completed"]
        print(f"{m}: wall time per item mean {statistics.mean(secs):.1f} s, median {statistics.median(secs):.1f} s, "
              f"max {max(secs):.1f} s; LLM calls per item mean {statistics.mean(calls):.2f}"
              + (f"; not completed: {', '.join(bad)}" if bad else ""))
    if len(modes) == 2:
        team, single = (sum(r["correct"] for r in by[(m, "overall")]) for m in ("team", "single"))
        n = len(by[("team", "overall")])
        print(f"targets: team >= 80% overall: {'met' if team >= 0.8 * n else 'NOT met'} ({100 * team / n:.1f}%); "
              f"team >= single: {'met' if team >= single else 'NOT met'} ({team} vs {single})")


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", default=models.DEFAULT_MODEL, choices=list(models.MODELS))
    ap.add_argument("--modes", default="single,team", help="comma-separated: single, team")
    ap.add_argument("--limit", type=int, default=0, help="only the first N items of each category")
    ap.add_argument("--ids", default="", help="comma-separated item ids")
    ap.add_argument("--out", default="bench/results/quality.jsonl", help="results, one JSON line per item and mode")
    ap.add_argument("--fresh", action="store_true", help="ignore earlier results in --out")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    items = [i for i in ITEMS if not args.ids or i["id"] in args.ids.split(",")]
    if args.limit:
        items = [i for c in CATEGORIES for i in [x for x in items if x["category"] == c][: args.limit]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {} if args.fresh else load(out)
    if args.fresh:
        out.unlink(missing_ok=True)
    cfgs = configs(args.model)
    models.weights(args.model)  # fail now, with the install hint
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="massgen-quality-") as home:
        os.environ["MASSGEN_HOME"] = home  # a private embedded stack; the user's runs stay apart
        os.environ.pop("MASSGEN_NATS_URL", None)
        async with open_stack(services=True, name="quality-bench") as stack:
            for n, item in enumerate(items, 1):
                for mode in modes:
                    key = (args.model, mode, item["id"])
                    if key not in done:
                        got = await ask(stack, cfgs[mode], item["question"])
                        row = {"model": args.model, "mode": mode, "id": item["id"], "category": item["category"],
                               **got, "correct": await check(item, got["answer"])}
                        with out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        done[key] = row
                    row = done[key]
                    rows.append(row)
                    mark = "ok " if row["correct"] else "BAD"
                    print(f"[{n:>2}/{len(items)}] {mode:<6} {mark} {item['id']:<10} {row['seconds']:6.1f}s "
                          f"{row['llm_calls']:>2} calls  {row['answer'][:70]!r}", flush=True)
    report(rows, args.model)


if __name__ == "__main__":
    asyncio.run(main())
