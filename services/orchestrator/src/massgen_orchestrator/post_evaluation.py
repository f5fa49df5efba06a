"""Post-evaluation and orchestration restarts (MassGen spec §1.12), as pure functions of the run state.

After the presentation, when ``max_orchestration_restarts > 0`` and the attempt is not the run's last,
the winner evaluates the presented answer with two tools (spec §1.5): ``submit{confirmed}`` ends the
run with that answer; ``restart_orchestration{reason, instructions}`` is recorded as ``run.restarted``
and a new attempt begins, whose coordination turns start with the feedback. A run has at most
``1 + max_orchestration_restarts`` attempts.

Anything else submits, as in MassGen ("no tool call / timeout ⇒ auto-submit"): a reply without either
call, a ``restart_orchestration`` without a reason, a failed turn, the presentation deadline (which
bounds the evaluation turn as it bounds the presentation) or the run deadline.

Deadlines across attempts: the run deadline (``orchestrator_timeout_s``) counts from the submission
and covers every attempt, as MassGen's orchestrator timeout covers the whole run: a restart gives no
new time. After it fired there is no post-evaluation (MassGen: a timed-out attempt goes straight to
the presentation, without post-evaluation), so no restart either; the restarted attempt coordinates
under the same deadline and ends timed out like any attempt when it fires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from massgen_es import ids
from massgen_es.events import (
    Event,
    PostEvaluationStarted,
    PostEvaluationSubmitted,
    RunCompleted,
    RunRestarted,
    TurnFailed,
    TurnRequested,
    TurnResponded,
)
from massgen_orchestrator import prompts
from massgen_orchestrator.state import AgentState, RunState, Turn

SUBMIT = "submit"
RESTART = "restart_orchestration"


def enabled(state: RunState) -> bool:
    """Whether the presentation that just ended is post-evaluated: restarts are allowed and this is not
    the last attempt, and the run is neither past its deadline nor over its budget (an evaluation is
    another LLM call, and a restart would be many)."""
    assert state.submitted is not None
    restarts = state.submitted.settings.max_orchestration_restarts
    return restarts > 0 and state.attempt <= restarts and not state.deadline_passed and not state.budget_exceeded


def start(state: RunState, winner: AgentState, final_answer: str, style: prompts.Style) -> list[Event]:
    """``post_evaluation.started`` and the evaluation turn of ``winner`` on ``final_answer``."""
    assert state.submitted is not None
    turn_id = ids.post_evaluation_turn_id(winner.id, state.attempt)
    return [
        PostEvaluationStarted(evaluator_id=winner.id, turn_id=turn_id, attempt=state.attempt),
        TurnRequested(
            turn_id=turn_id,
            agent_id=winner.id,
            attempt=1,
            kind="post_evaluation",
            messages=prompts.post_evaluation_messages(
                winner.system_message, state.submitted.question, final_answer, style
            ),
            tools=(prompts.submit_tool(), prompts.restart_tool()),
            backend=winner.backend,
            answers_version=state.version,
            anon_id=winner.anon_id,
        ),
    ]


@dataclass(frozen=True)
class Verdict:
    """What the evaluation decided: a restart with its feedback, or a submit (``auto``: why it counts
    as one when the evaluator did not call ``submit``)."""

    restart: bool
    reason: str = ""
    instructions: str = ""
    auto: str = ""


def verdict(ev: TurnResponded | TurnFailed | None) -> Verdict:
    """The verdict of an evaluation reply, failure, or deadline (``None``). The first of the two tools
    called decides; MCP calls were the worker's business and never reach here."""
    if ev is None:
        return Verdict(False, auto="the evaluation's deadline passed")
    if isinstance(ev, TurnFailed):
        return Verdict(False, auto=f"the evaluation failed: {ev.failure.text()}")
    call = next((c for c in ev.tool_calls if c.name in (SUBMIT, RESTART)), None)
    if call is None:
        return Verdict(False, auto="the evaluator called neither submit nor restart_orchestration")
    if call.name == SUBMIT:
        return Verdict(False)
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        args = None
    reason = args.get("reason") if isinstance(args, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return Verdict(False, auto="restart_orchestration without a reason")
    instructions = args.get("instructions") if isinstance(args, dict) else None
    return Verdict(True, reason.strip(), instructions.strip() if isinstance(instructions, str) else "")


def outcome(state: RunState, turn: Turn, v: Verdict) -> list[Event]:
    """The events of verdict ``v`` on evaluation ``turn``: ``run.restarted`` (the caller then starts the
    new attempt's turns), or ``post_evaluation.submitted`` and ``run.completed`` with the presented answer."""
    assert state.presenter is not None
    evaluator = state.presenter
    if v.restart:
        return [
            RunRestarted(
                attempt=state.attempt + 1,
                evaluator_id=evaluator,
                reason=v.reason,
                instructions=v.instructions,
                previous_winner_id=evaluator,
                previous_answer=state.final_answer or "",
            )
        ]
    return [
        PostEvaluationSubmitted(evaluator_id=evaluator, turn_id=turn.id, auto=v.auto),
        RunCompleted(winner_id=evaluator, final_answer=state.final_answer or ""),
    ]
