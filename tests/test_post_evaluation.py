"""Post-evaluation and orchestration restarts (MassGen spec §1.12) through the pure decision core, one
test per rule, driven like ``tests/test_decide.py`` (its ``Run`` helper)."""

from __future__ import annotations

import json

import pytest
from test_decide import COMPACT, IDS, QUESTION, RUN, A, B, Run, answer, at, both_answer, of, texts, to_presentation

from massgen_es import ids
from massgen_es.config import parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import (
    AnswerPosted,
    Event,
    PostEvaluationStarted,
    PostEvaluationSubmitted,
    PresentationCompleted,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunRestarted,
    RunTimedOut,
    TimerFired,
    ToolCall,
    TurnRequested,
)
from massgen_orchestrator.decide import verify
from massgen_replay import lanes, traces
from massgen_replay.views import RunView

PRESENTED = "Paris is the capital of France."
REASON = "The answer does not say which river Paris is on."
INSTRUCTIONS = "Name the river too."


def restarts(n: int) -> dict:
    return {"coordination": {"max_orchestration_restarts": n}}


def submit() -> ToolCall:
    return ToolCall(id="call-submit", name="submit", arguments=json.dumps({"confirmed": True}))


def restart(reason: str = REASON, instructions: str = INSTRUCTIONS) -> ToolCall:
    return ToolCall(
        id="call-restart", name="restart_orchestration",
        arguments=json.dumps({"reason": reason, "instructions": instructions}),
    )


def present(run: Run, content: str = PRESENTED) -> list[Event]:
    """Drive one attempt: both answer, both vote agent1, A presents ``content``."""
    to_presentation(run)
    return run.respond(A, content=content)


def test_winner_post_evaluates_the_presented_answer():
    run = Run(2, **restarts(1))
    out = present(run)
    assert [type(e) for e in out] == [PresentationCompleted, PostEvaluationStarted, TurnRequested]
    started, req = at(out, 1, PostEvaluationStarted), at(out, 2, TurnRequested)
    assert (started.evaluator_id, started.attempt, started.turn_id) == (A, 1, ids.post_evaluation_turn_id(A))
    assert req.kind == "post_evaluation" and req.agent_id == A and req.turn_id == started.turn_id
    assert [t.name for t in req.tools] == ["submit", "restart_orchestration"]
    assert req.tools[0].parameters["properties"]["confirmed"]["enum"] == [True]
    assert req.tools[1].parameters["required"] == ["reason", "instructions"]
    user = req.messages[-1].content
    assert QUESTION in user and f"FINAL ANSWER TO EVALUATE:\n{PRESENTED}" in user
    assert "restart_orchestration(reason, instructions)" in req.messages[0].content
    assert not any(real in texts(req.messages) for real in IDS)
    assert run.state.phase == "evaluating" and run.state.status is None


def test_no_post_evaluation_by_default():
    run = Run(2)
    out = present(run)
    assert [type(e) for e in out] == [PresentationCompleted, RunCompleted]


def test_submit_completes_with_the_presented_answer():
    run = Run(2, **restarts(1))
    present(run)
    out = run.respond(A, submit())
    assert of(out, PostEvaluationSubmitted)[0].auto == ""
    assert of(out, RunCompleted) == [RunCompleted(winner_id=A, final_answer=PRESENTED)]
    assert run.state.status == "completed"
    verify(RUN, run.log)


def test_restart_starts_a_new_attempt_with_the_feedback_in_every_prompt():
    run = Run(2, **restarts(1))
    present(run)
    before = {r.turn_id for r in run.requests()}
    out = run.respond(A, restart())
    assert at(out, 0, RunRestarted) == RunRestarted(
        attempt=2, evaluator_id=A, reason=REASON, instructions=INSTRUCTIONS, previous_winner_id=A,
        previous_answer=PRESENTED,
    )
    reqs = of(out, TurnRequested)
    assert [r.agent_id for r in reqs] == [A, B]
    for r in reqs:
        user = r.messages[-1].content
        assert r.kind == "coordination" and r.answers_version == 0 and [t.name for t in r.tools] == ["new_answer"]
        assert user.startswith("<PREVIOUS ATTEMPT FEEDBACK>")
        assert REASON in user and INSTRUCTIONS in user and PRESENTED in user
        assert "(no answers available yet)" in user and QUESTION in user
        assert r.turn_id not in before  # turn ids are unique across attempts
    st = run.state
    assert st.attempt == 2 and st.phase == "coordinating" and st.answers == []
    assert all(a.vote is None and a.answers == [] for a in st.agents.values())
    # Attempt 2: answers and votes again, labelled afresh; later turns keep the feedback.
    to_presentation(run)
    assert all(r.messages[-1].content.count("<PREVIOUS ATTEMPT FEEDBACK>") == 1 for r in run.requests()
               if r.kind == "coordination" and r.turn_id not in before and r.attempt == 1)
    assert run.turns[A].turn_id == ids.presentation_turn_id(A, 2) == f"{A}.a2.present"
    labels = [e.label for e in of([r.event for r in run.log], AnswerPosted)]
    assert labels == ["agent1.1", "agent2.1", "agent1.2", "agent2.2"]  # unique across attempts
    verify(RUN, run.log)


def test_restarts_are_bounded_and_the_last_attempt_is_not_evaluated():
    run = Run(2, **restarts(2))
    for attempt in (1, 2):
        present(run, f"attempt {attempt} answer")
        assert run.turns[A].kind == "post_evaluation"
        assert run.turns[A].turn_id == ids.post_evaluation_turn_id(A, attempt)
        run.respond(A, restart())
    out = present(run, "attempt 3 answer")
    assert [type(e) for e in out] == [PresentationCompleted, RunCompleted]
    assert of(out, RunCompleted)[0].final_answer == "attempt 3 answer"
    assert [e.attempt for e in of([r.event for r in run.log], RunRestarted)] == [2, 3]
    turn_ids = [r.turn_id for r in run.requests() if r.attempt == 1]
    assert len(turn_ids) == len(set(turn_ids))
    verify(RUN, run.log)


@pytest.mark.parametrize("how", ["failed", "deadline", "run_deadline", "no_call", "no_reason"])
def test_an_evaluation_without_a_decision_submits(how):
    run = Run(2, **restarts(1))
    present(run)
    turn = run.turns[A]
    if how == "failed":
        out = run.fail(A)
    elif how == "deadline":
        out = run.feed(TimerFired(name="presentation_deadline", turn_id=turn.turn_id), "timer")
    elif how == "run_deadline":
        out = run.timer("run_deadline")
    elif how == "no_call":
        out = run.respond(A, content="Looks good to me.")
    else:
        out = run.respond(A, restart(reason=" "))
    (submitted,) = of(out, PostEvaluationSubmitted)
    assert submitted.auto  # says why it counts as a submit
    assert of(out, RunCompleted) == [RunCompleted(winner_id=A, final_answer=PRESENTED)]
    verify(RUN, run.log)


def test_an_earlier_turns_deadline_does_not_end_the_evaluation():
    run = Run(2, **restarts(1))
    present(run)
    stale = TimerFired(name="presentation_deadline", turn_id=ids.presentation_turn_id(A))
    assert run.feed(stale, "timer") == []
    assert run.state.phase == "evaluating"


def test_no_post_evaluation_after_the_run_deadline():
    run = Run(2, **restarts(1))
    to_presentation(run)
    run.timer("run_deadline")  # fires while presenting: the run's time is up, no restart can follow
    out = run.respond(A, content=PRESENTED)
    assert [type(e) for e in out] == [PresentationCompleted, RunCompleted]


def test_run_deadline_in_a_restarted_attempt_ends_it_timed_out():
    run = Run(2, **restarts(1))
    present(run)
    run.respond(A, restart())
    run.respond(A, answer("Paris, on the Seine"))
    run.timer("run_deadline")
    out = run.respond(A, content="Paris, on the Seine.")
    assert [type(e) for e in out] == [PresentationCompleted, RunTimedOut]


def test_a_cancel_during_post_evaluation_ends_the_run():
    run = Run(2, **restarts(1))
    present(run)
    out = run.feed(RunCancelRequested(reason="enough", by="test"), "cli")
    assert [type(e) for e in out] == [RunCancelled]
    assert run.respond(A, restart()) == []
    assert run.state.status == "cancelled"


def test_compact_post_evaluation_and_restart_context_for_models_without_tool_calls():
    run = Run(2, backend=COMPACT, **restarts(1))
    present(run)
    req = run.turns[A]
    assert "FINAL ANSWER TO EVALUATE" not in texts(req.messages)
    assert f"The team's final answer:\n\n{PRESENTED}" in req.messages[-1].content
    run.respond(A, restart())
    first = run.turns[B].messages
    assert first[-1].role == "user" and first[-1].content.endswith(QUESTION)
    assert first[-1].content.startswith(f"A previous attempt at this question was restarted because: {REASON}")


def test_debug_final_answer_replaces_the_first_attempts_answer():
    run = Run(2, debug_final_answer="Lyon.", **restarts(1))
    out = present(run)
    assert at(out, 0, PresentationCompleted).content == "Lyon."
    assert "FINAL ANSWER TO EVALUATE:\nLyon." in at(out, 2, TurnRequested).messages[-1].content
    run.respond(A, restart(reason="Lyon is not the capital"))
    out = present(run)
    assert of(out, RunCompleted)[0].final_answer == PRESENTED


def test_massgen_coordination_key_parses():
    cfg = parse_config({"agents": [{"id": "a", "backend": {"type": "local"}}], "orchestrator": restarts(2)})
    assert run_submitted("q", cfg).settings.max_orchestration_restarts == 2
    with pytest.raises(ConfigError, match="max_orchestration_restarts"):
        parse_config({"agents": [{"id": "a", "backend": {"type": "local"}}], "orchestrator": restarts(-1)})


def test_replay_shows_the_evaluation_and_the_restart_and_the_last_attempts_outcome():
    run = Run(2, **restarts(1))
    present(run, "Paris.")
    run.respond(A, restart())
    both_answer(run)
    run.vote_now(A, "agent2", "B names the river")
    run.vote_now(B, "agent2", "mine names the river")
    run.respond(B, content=PRESENTED)
    view = RunView(RUN)
    for r in run.log:
        view.apply(r)
    kinds = [(e.kind, e.text) for e in view.timeline]
    assert ("evaluating", "post-evaluation of attempt 1") in kinds
    assert ("restarted", f"attempt 2: {REASON}; instructions: {INSTRUCTIONS}") in kinds
    assert (view.attempt, view.status, view.winner, view.final_answer) == (2, "completed", B, PRESENTED)
    assert view.tally == {"agent2": 2}
    restart_item = next(i for i in lanes.items(run.log) if i.type == "run.restarted")
    assert restart_item.lane == A and REASON in restart_item.summary and INSTRUCTIONS in restart_item.body
    root = traces.run_spans(RUN, run.log)[0]
    (event,) = [e for e in root.events if e.name == "massgen.restart"]
    assert event.attributes["massgen.restart.reason"] == REASON
