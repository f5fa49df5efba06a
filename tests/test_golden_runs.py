"""Golden runs (issue 14 item 8): recorded runs, kept as bundles in ``tests/histories``, re-decided through
the current orchestrator core. A changed decision fails the test naming the run and the first decision
that differs, as Temporal's replayer does for workflow histories. No NATS: the bundles are read directly.

When a change of decisions is intended: re-record (``tests/histories/record.py NAME``), review
``git diff tests/histories/*.decisions.txt``, and commit the new bundles with the change (README, "Golden
runs").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import pytest

from massgen_es.errors import NondeterminismError
from massgen_es.events import Record, RunSubmitted, VoteCast
from massgen_orchestrator.decide import step, verify
from massgen_orchestrator.state import RunState, logical_order
from massgen_replay import bundle as bundles

HISTORIES = Path(__file__).parent / "histories"
GOLDEN = sorted(HISTORIES.glob("*.tar.gz"))
sys.path.insert(0, str(HISTORIES))
from record import decisions  # noqa: E402 - the listing the recorder writes beside each bundle


def first_difference(run: str, records: list[Record]) -> str | None:
    """The first input whose decisions the core now makes differently, described decision by decision
    (recorded against produced), or None when every decision is reproduced."""
    ordered = logical_order(records)
    recorded: dict[str, list] = {}
    for r in ordered:
        if r.is_decision:
            recorded.setdefault(r.causation_id or "", []).append(r.event)
    state = RunState(records[0].run_id)
    for r in ordered:
        if r.is_decision:
            continue
        produced = [d.event for d in step(state, r)]
        was = recorded.get(r.id, [])
        if produced == was:
            continue
        i = next((i for i, (a, b) in enumerate(zip(was, produced, strict=False)) if a != b),
                 min(len(was), len(produced)))
        return (f"golden run {run}: after input seq {r.seq} ({r.type}, id {r.id}), decision {i + 1}: "
                + _differ(was[i] if i < len(was) else None, produced[i] if i < len(produced) else None))
    return None


def _differ(recorded, produced) -> str:
    """What differs between a recorded decision and the one the core makes now: its type, or each field
    that differs, shown around the first character where the two differ."""
    if recorded is None or produced is None or type(recorded) is not type(produced):
        name = lambda e: "nothing" if e is None else msgspec.to_builtins(e)["type"]  # noqa: E731
        return f"recorded {name(recorded)}, the core now decides {name(produced)}"
    a, b = msgspec.to_builtins(recorded), msgspec.to_builtins(produced)
    parts = []
    for key in [k for k in {**a, **b} if a.get(k) != b.get(k)]:
        x, y = json.dumps(a.get(key), ensure_ascii=False), json.dumps(b.get(key), ensure_ascii=False)
        at = next((n for n, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        start = max(0, at - 40)
        parts.append(f"{key} differs at character {at}: recorded ...{x[start:at + 60]!r}..., "
                     f"now ...{y[start:at + 60]!r}...")
    return f"{a['type']}: " + "; ".join(parts)


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name.removesuffix(".tar.gz") for p in GOLDEN])
def test_golden_run_is_decided_the_same_by_the_current_core(path: Path):
    bundle = bundles.load(path)  # hashes, schema version
    assert bundle.status != "unfinished", f"{path.name}: a golden run must have ended"
    difference = first_difference(path.name, bundle.records)
    assert difference is None, f"{difference}\nIf intended: re-record it (tests/histories/record.py), review the diff"
    assert verify(bundle.run_id, bundle.records) > 0  # what `massgen replay --check` runs agrees
    listing = path.with_name(path.name.removesuffix(".tar.gz") + ".decisions.txt")
    assert listing.read_text() == decisions(bundle.records), f"{listing.name} is stale: re-record {path.name}"


def test_the_golden_runs_cover_tools_a_crash_a_timeout_a_budget_stop_planning_an_approval_and_the_local_model():
    kinds: dict[str, set[str]] = {p.name: set(bundles.load(p).manifest["counts"]["by_type"]) for p in GOLDEN}
    assert any({"tool.call_completed", "execution.completed"} <= k for k in kinds.values()), kinds
    assert any("execution.failed" in k or "tool.call_failed" in k for k in kinds.values())  # Interrupted
    assert any("run.timed_out" in k for k in kinds.values())
    assert any("budget.exceeded" in k for k in kinds.values())
    assert any({"approval.requested", "approval.decided"} <= k for k in kinds.values())  # issue 15 item 9
    planned = [r.event for p in GOLDEN for r in bundles.load(p).records if isinstance(r.event, RunSubmitted)
               and r.event.settings.planning_mode]
    assert planned, "no golden run in planning mode"
    local = [p for p in GOLDEN if any(a.backend.get("type") == "local" for r in bundles.load(p).records
                                      if isinstance(r.event, RunSubmitted) for a in r.event.agents)]
    assert local, "no golden run of the real local model"
    for p in GOLDEN:
        assert p.stat().st_size < 1_000_000, f"{p.name} is {p.stat().st_size} bytes; keep golden runs small"


def test_a_changed_decision_fails_naming_the_run_and_the_first_differing_decision():
    """The check can fail: a recorded vote whose target is altered is no longer what the core decides."""
    path = HISTORIES / "mcp-exec.tar.gz"
    records = bundles.load(path).records
    [(i, first_vote), *_] = [(i, r) for i, r in enumerate(records) if isinstance(r.event, VoteCast)]
    altered = msgspec.structs.replace(first_vote.event, reason="tampered")
    records[i] = msgspec.structs.replace(first_vote, event=altered)
    difference = first_difference("mcp-exec.tar.gz", records)
    assert difference is not None
    assert difference.startswith("golden run mcp-exec.tar.gz: after input seq")
    assert "decision 1: vote.cast: reason differs at character 1: recorded" in difference
    assert "'\"tampered\"'" in difference
    with pytest.raises(NondeterminismError, match="run .*: at seq"):
        verify(records[0].run_id, records)
