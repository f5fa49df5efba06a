"""``skip_coordination_rounds`` (MassGen's debug key, spec §1.2 step 5 and §5.2) through the pure decision
core, driven like ``tests/test_decide.py`` (its ``Run`` helper): no coordination round, the first agent
in config order is the winner and presents at once."""

from __future__ import annotations

from test_decide import COMPACT, IDS, QUESTION, A, Run, of, texts

from massgen_es.config import parse_config, run_submitted
from massgen_es.events import (
    ConsensusReached,
    PresentationCompleted,
    PresentationStarted,
    RunCompleted,
    TurnRequested,
    VoteCast,
)
from massgen_orchestrator.decide import verify


def test_the_first_agent_presents_at_once_without_a_coordination_turn():
    run = Run(3, skip_coordination_rounds=True)
    started = of(run.first, PresentationStarted)
    requested = of(run.first, TurnRequested)
    assert [(s.presenter_id, s.reason) for s in started] == [(A, "skipped")]
    assert [(t.agent_id, t.kind, t.tools) for t in requested] == [(A, "presentation", ())]
    assert QUESTION in texts(requested[0].messages)
    assert "Coordination was skipped" in texts(requested[0].messages)
    assert "time limit" not in texts(requested[0].messages)
    for real_id in IDS:
        assert real_id not in texts(requested[0].messages)


def test_the_presentation_is_the_final_answer_and_no_vote_or_consensus_is_recorded():
    run = Run(2, skip_coordination_rounds=True)
    out = run.respond(A, content="Paris.")
    assert [(c.presenter_id, c.content, c.used_stored_answer) for c in of(out, PresentationCompleted)] == [
        (A, "Paris.", False)]
    assert [(r.winner_id, r.final_answer) for r in of(out, RunCompleted)] == [(A, "Paris.")]
    events = [r.event for r in run.log]
    assert not of(events, VoteCast) and not of(events, ConsensusReached)
    assert not [e for e in of(events, TurnRequested) if e.kind == "coordination"]
    assert verify("run-1", run.log) > 0  # replaying the log reproduces the same decisions


def test_compact_agents_skip_too():
    run = Run(2, backend=COMPACT, skip_coordination_rounds=True)
    [req] = of(run.first, TurnRequested)
    assert (req.agent_id, req.kind) == (A, "presentation")


def test_off_by_default_every_agent_starts_a_coordination_turn():
    run = Run(2)
    assert [(t.agent_id, t.kind) for t in of(run.first, TurnRequested)] == [(a, "coordination") for a in IDS[:2]]
    assert not run_submitted(QUESTION, parse_config({"agents": [{"id": "a", "backend": COMPACT}]})
                             ).settings.skip_coordination_rounds

