"""The decision core: MassGen's coordination protocol (spec §1.2-§1.11) as a pure function of the log.

``step(state, record)`` folds one input event and returns the orchestrator's decisions, which it also
folds, so ``state`` always equals the fold of the log. ``decide`` is the side-effect-free variant.
No clock, randomness or I/O: time arrives as ``timer.fired`` events, ids derive from the cause.

Rules, each named after a test in ``tests/test_decide.py``:

- every agent starts on the task in parallel (``run.submitted``); with ``RunSettings.paraphrase``
  (MassGen's ``orchestrator.dspy``, spec §1.15) the question's rewrites are asked first, one turn each,
  and once all settled ``question.paraphrased`` gives each agent its ``<PARAPHRASED MESSAGE>``;
- with ``memory_filesystem_mode`` every coordination prompt of an agent with a workspace shows the
  memory files the agents shared with their answers (``massgen_orchestrator.memory``);
- answers are shown as ``agentN`` (N = config position), one numbering everywhere;
- a response is validated in MassGen's order (spec §1.4 table) and rejected with its error text, up to
  ``max_attempts`` LLM calls per turn; then the turn fails;
- an accepted ``new_answer`` invalidates every vote and restarts every idle agent on the new answer set,
  once no turn in flight can only end in an answer (so vote turns see the answers already in flight);
- a vote counts only against the answer set its voter saw; a vote cast on a stale set is not counted,
  and the new answers go to the agent in its next call (the update MassGen loses, spec §1.4);
- consensus when every live agent holds a valid vote; plurality winner, ties broken by config order;
- the winner presents with every answer and the vote reasons; an empty or failed presentation falls
  back to the stored answer;
- ``run_deadline``: the best available answer is presented and the run ends timed out;
- ``skip_coordination_rounds`` (MassGen's debug key): the first agent presents at once, no round;
- with ``max_orchestration_restarts > 0`` the winner post-evaluates the presented answer and may
  restart the run, a bounded number of times (``massgen_orchestrator.post_evaluation``, spec §1.12);
- an agent failing ``max_failed_turns`` turns in a row is dropped; with no agent left the run fails.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from massgen_es import backends, ids
from massgen_es.bus import Draft
from massgen_es.errors import EnforcementExhausted, NondeterminismError
from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    BudgetExceeded,
    ConsensusReached,
    Event,
    Failure,
    Message,
    PresentationCompleted,
    PresentationStarted,
    QuestionParaphrased,
    Record,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunForked,
    RunSettings,
    RunSubmitted,
    RunTimedOut,
    Source,
    TimerFired,
    ToolCall,
    ToolCallCompleted,
    ToolCallFailed,
    ToolSpec,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    UnknownEvent,
    UpdateDelivered,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
    VoteRecord,
)
from massgen_es.failures import failure_of
from massgen_orchestrator import memory, paraphrase, post_evaluation, prompts
from massgen_orchestrator.junk import strip_echoed_label, why_junk
from massgen_orchestrator.state import AgentState, RunState, Turn, current_turn, evolve, logical_order

CORE_SOURCE = Source(service="orchestrator", instance="core")
STALE_VOTE_TEXT = "Vote not recorded: new answers arrived while you were working; they are in the update below."
_NOVELTY_LIMIT = {"balanced": 0.7, "strict": 0.5}


def step(state: RunState, record: Record) -> list[Draft]:
    """Fold ``record`` into ``state``, decide, fold the decisions too, and return them."""
    if record.is_decision:
        evolve(state, record)
        return []
    ev = record.event
    turn = None
    if isinstance(ev, (TurnResponded, TurnFailed)):
        turn = current_turn(state, ev.agent_id, ev.turn_id, ev.attempt)
    evolve(state, record)
    decider = _Decider(state, record)
    decider.react(turn)
    return decider.out


def decide(state: RunState, record: Record) -> list[Draft]:
    """Pure variant of :func:`step`: returns the decisions for ``record`` and leaves ``state`` untouched."""
    return step(copy.deepcopy(state), record)


def verify(run_id: str, records: list[Record]) -> int:
    """Re-decide a recorded run through the core and compare with the recorded decisions.

    Returns:
        The number of inputs checked.

    Raises:
        NondeterminismError: at the first input whose decisions differ, naming both.
    """
    ordered = logical_order(records)
    recorded: dict[str, list[Event | UnknownEvent]] = {}
    for r in ordered:
        if r.is_decision:
            recorded.setdefault(r.causation_id or "", []).append(r.event)
    state = RunState(run_id)
    checked = 0
    for r in ordered:
        if r.is_decision:
            continue
        produced = [d.event for d in step(state, r)]
        if produced != recorded.get(r.id, []):
            names = [type(e).__name__ for e in recorded.get(r.id, [])]
            raise NondeterminismError(
                f"run {run_id}: at seq {r.seq} ({r.type}) the log records {names} "
                f"but the core decides {[type(e).__name__ for e in produced]}"
            )
        checked += 1
    return checked


@dataclass
class _Verdict:
    kind: str  # "vote" | "answer" | "reject"
    code: str = ""
    errors: tuple[str, ...] = ()
    """Rejection text for each tool call (or one text when there were none)."""
    target: AgentState | None = None
    text: str = ""


class _Decider:
    def __init__(self, state: RunState, cause: Record) -> None:
        self.state = state
        self.cause = cause
        self.out: list[Draft] = []

    @property
    def settings(self) -> RunSettings:
        assert self.state.submitted is not None
        return self.state.submitted.settings

    def emit(self, event: Event) -> None:
        d = Draft(ids.decision_id(self.state.run_id, self.cause.seq, len(self.out)), event, self.cause.id)
        self.out.append(d)
        evolve(
            self.state,
            Record(
                seq=0,
                id=d.id,
                run_id=self.state.run_id,
                ts=self.cause.ts,
                source=CORE_SOURCE,
                causation_id=self.cause.id,
                event=event,
            ),
        )

    # ------------------------------------------------------------ inputs

    def react(self, turn: Turn | None) -> None:
        st, ev = self.state, self.cause.event
        if st.submitted is None or st.phase == "done":
            return
        if isinstance(ev, RunCancelRequested):  # issue 15 item 6: in any phase and mode, nothing after it
            self.emit(RunCancelled(reason=ev.reason, by=ev.by))
            return
        if self.settings.mode == "tool_call":
            self.on_tool_call_run(ev)
            return
        match ev:
            case RunSubmitted():
                self.on_submitted()
            case RunForked():
                self.on_forked()
            case TurnResponded() | TurnFailed() if turn is not None:
                self.on_turn_result(turn, ev)
            case TimerFired(name="run_deadline") if st.phase == "coordinating":
                self.on_deadline()
            case UsageRecorded() if st.phase == "coordinating" and not st.budget_exceeded:
                self.on_usage()
            case TimerFired(name="presentation_deadline") if st.phase == "presenting" and _bounds(
                ev, st.presentation_turn
            ):
                self.finish(None)
            case TimerFired(name="presentation_deadline") if st.phase == "evaluating" and _bounds(
                ev, st.evaluation_turn
            ):
                self.on_evaluated(None)
            case TimerFired(name="run_deadline") if st.phase == "evaluating":
                self.on_evaluated(None)  # MassGen: the orchestrator timeout bounds post-evaluation too
            case _:
                pass
        if st.phase == "coordinating":
            self.start_idle()
        if st.budget_exceeded and st.phase == "coordinating" and not st.in_flight:
            self.end_on_budget()

    def on_tool_call_run(self, ev: Event | UnknownEvent) -> None:
        """A run of one MCP tool call (``massgen mcp call``, ``RunSettings.mode``): no agent turn; the run
        ends with the call's outcome: completed with its result, failed with its error, or timed out."""
        match ev:
            case ToolCallCompleted(is_error=False):
                self.emit(RunCompleted(winner_id=ev.agent_id, final_answer=ev.content))
            case ToolCallCompleted():
                self.emit(RunFailed(reason=f"{ev.server}.{ev.tool} answered with an error: {ev.content}"))
            case ToolCallFailed():
                self.emit(RunFailed(reason=f"{ev.server}.{ev.tool} failed: {ev.failure.message}", failure=ev.failure))
            case TimerFired(name="run_deadline"):
                self.emit(RunTimedOut())
            case _:
                pass

    def on_submitted(self) -> None:
        """Every agent starts on the task at once (a repeated submission starts nothing). With
        ``skip_coordination_rounds`` (MassGen's debug key, spec §1.2 step 5) no agent does: the first agent
        in config order is the winner and presents at once, without answers or votes."""
        st = self.state
        if self.settings.skip_coordination_rounds:
            if st.presenter is None and st.live:
                self.start_presentation(st.live[0], "skipped")
            return
        p = self.settings.paraphrase
        if p is not None and not st.paraphrase_turns and st.paraphrased is None:  # MassGen spec §1.15
            agents = list(st.agents.values())
            for req in paraphrase.requests(st.submitted.question if st.submitted else "", p,
                                           [a.id for a in agents], [a.anon_id for a in agents]):
                self.emit(req)
            return
        if all(a.turns_started == 0 for a in st.agents.values()) and not st.paraphrasing:
            for agent in st.live:
                self.start_turn(agent)

    def on_paraphrased(self) -> None:
        """A paraphrase turn settled; once all have, record the variants and who gets which (MassGen
        spec §1.15), and every agent starts on the task. A failed or unusable rewrite leaves its agents
        with the original question only."""
        st = self.state
        turns = list(st.paraphrase_turns.values())
        if st.paraphrased is not None or any(t.response is None and not t.failed for t in turns):
            return
        question = st.submitted.question if st.submitted else ""
        variants = tuple(paraphrase.variant(t.response.content, question) if t.response else "" for t in turns)
        self.emit(QuestionParaphrased(variants=variants, by_agent=paraphrase.assign(variants, list(st.agents))))
        for agent in st.live:
            self.start_turn(agent)

    def on_forked(self) -> None:
        """A fork continues: an attempt still waiting for a worker whose agent's backend changed is asked
        again, as its next attempt, of the new backend (so the change applies from the fork point, and a
        late reply of the old attempt is stale); the others are re-queued as after a crash (the shell)."""
        st = self.state
        waiting = [(a, a.turn) for a in st.live if a.turn is not None and st.phase == "coordinating"]
        if st.presentation_turn is not None and st.presenter is not None and st.phase == "presenting":
            waiting.append((st.agents[st.presenter], st.presentation_turn))
        if st.evaluation_turn is not None and st.presenter is not None and st.phase == "evaluating":
            waiting.append((st.agents[st.presenter], st.evaluation_turn))
        for agent, turn in waiting:
            if turn.response is None and not turn.failed and turn.backend != agent.backend:
                self.emit(
                    TurnRequested(
                        turn_id=turn.id,
                        agent_id=agent.id,
                        attempt=turn.attempt + 1,
                        kind=turn.kind,
                        messages=turn.messages,
                        tools=turn.tools,
                        backend=agent.backend,
                        answers_version=turn.answers_version,
                        anon_id=agent.anon_id,
                        planning_mode=self.settings.planning_mode and turn.kind == "coordination",
                    )
                )

    def on_turn_result(self, turn: Turn, ev: TurnResponded | TurnFailed) -> None:
        """The current attempt of ``turn`` was answered or failed."""
        st = self.state
        if turn.kind == "paraphrase":
            if st.phase == "coordinating":
                self.on_paraphrased()
        elif turn.kind == "post_evaluation":
            if st.phase == "evaluating":
                self.on_evaluated(ev)
        elif turn.kind == "presentation":
            if st.phase == "presenting":
                if isinstance(ev, TurnResponded):
                    presented = strip_echoed_label(ev.content)
                    self.finish(None if why_junk(presented) else presented)
                else:
                    self.finish(None)
        elif st.phase == "coordinating":
            if isinstance(ev, TurnResponded):
                self.on_response(st.agents[ev.agent_id], turn, ev)
            else:
                self.on_failed_turn(st.agents[ev.agent_id], ev.failure)

    def on_evaluated(self, ev: TurnResponded | TurnFailed | None) -> None:
        """The post-evaluation replied, failed, or ran out of time (``ev`` None): submit, or restart the
        run with every live agent on the task again, the feedback in their prompts (spec §1.12)."""
        st = self.state
        assert st.evaluation_turn is not None
        for event in post_evaluation.outcome(st, st.evaluation_turn, post_evaluation.verdict(ev)):
            self.emit(event)
        if st.phase == "coordinating":
            for agent in st.live:
                self.start_turn(agent)

    def on_usage(self) -> None:
        """Once the recorded cost reaches the run's budget, record that coordination stops here."""
        limit = self.settings.max_cost_usd
        if limit is not None and self.state.cost_usd >= limit:
            self.emit(BudgetExceeded(cost_usd=round(self.state.cost_usd, 8), max_cost_usd=limit))

    def on_response(self, agent: AgentState, turn: Turn, ev: TurnResponded) -> None:
        st = self.state
        verdict = self.validate(agent, ev)
        if verdict.kind == "vote":
            assert verdict.target is not None
            if turn.answers_version != st.version:
                self.continue_turn(agent, turn, ev, (STALE_VOTE_TEXT,) * len(ev.tool_calls))
                return
            self.emit(
                VoteCast(
                    voter_id=agent.id,
                    target_id=verdict.target.id,
                    target_anon=verdict.target.anon_id,
                    reason=verdict.text,
                    version=st.version,
                    turn_id=turn.id,
                )
            )
            self.check_consensus()
        elif verdict.kind == "answer":
            label = f"{agent.anon_id}.{agent.answers_posted + 1}"
            self.emit(
                AnswerPosted(
                    agent_id=agent.id,
                    anon_id=agent.anon_id,
                    label=label,
                    content=verdict.text,
                    version=st.version + 1,
                    turn_id=turn.id,
                )
            )
            for other in st.agents.values():
                if other.vote is not None:
                    self.emit(VoteInvalidated(voter_id=other.id, target_id=other.vote.target_id, by_label=label))
        else:
            self.emit(
                TurnRejected(
                    turn_id=turn.id, agent_id=agent.id, attempt=turn.attempt, code=verdict.code, errors=verdict.errors
                )
            )
            if turn.rejections >= self.settings.max_attempts:
                self.emit(
                    TurnFailed(
                        turn_id=turn.id,
                        agent_id=agent.id,
                        attempt=turn.attempt,
                        failure=failure_of(
                            EnforcementExhausted(
                                f"Agent failed to use workflow tools after {turn.rejections} attempts"
                            ),
                            last_error=verdict.errors[0] if verdict.errors else "",
                        ),
                    )
                )
                self.on_failed_turn(agent, None)
            else:
                self.continue_turn(agent, turn, ev, verdict.errors)

    def on_failed_turn(self, agent: AgentState, failure: Failure | None) -> None:
        st = self.state
        if agent.consecutive_failures >= self.settings.max_failed_turns:
            why = failure.text() if failure else "could not produce a valid workflow decision"
            self.emit(
                AgentDropped(
                    agent_id=agent.id,
                    reason=f"{agent.consecutive_failures} failed turns in a row; last: {why}",
                    failed_turns=agent.consecutive_failures,
                )
            )
            if not st.live:
                self.emit(RunFailed(reason="all agents failed", failure=failure))
            else:
                self.check_consensus()
        else:
            self.start_turn(agent)

    def end_on_budget(self, winner: AgentState | None = None) -> None:
        """Over budget with nothing in flight: end with the best answer so far, without a presentation
        call (it would cost). Turns that were running when the budget was reached were let finish."""
        st = self.state
        tally = self.tally()
        best = winner or (tally[0][0] if tally else next((a for a in st.agents.values() if a.answers), None))
        if best is None or best.latest is None:
            self.emit(RunFailed(reason=f"budget of ${self.settings.max_cost_usd:g} reached before any answer"))
            return
        content = best.latest.content
        self.emit(PresentationCompleted(presenter_id=best.id, content=content, used_stored_answer=True))
        self.emit(RunCompleted(winner_id=best.id, final_answer=content))

    def on_deadline(self) -> None:
        st = self.state
        tally = self.tally()
        if tally:
            winner = tally[0][0]
        else:
            winner = next((a for a in st.agents.values() if a.answers), None)
        if winner is None:
            self.emit(RunTimedOut())
        else:
            self.start_presentation(winner, "timeout")

    # ------------------------------------------------------------ validation (spec §1.4 table)

    def validate(self, agent: AgentState, ev: TurnResponded) -> _Verdict:
        calls = ev.tool_calls
        if not calls:
            return _Verdict("reject", "no_workflow_tool", (prompts.ENFORCEMENT_MESSAGE,))
        n = len(calls)
        unknown = [c.name for c in calls if c.name not in ("vote", "new_answer")]
        if unknown:
            return _reject(n, "unknown_tool", f"Unknown tool '{unknown[0]}'. Use the `vote` or `new_answer` tool.")
        votes = [c for c in calls if c.name == "vote"]
        answers = [c for c in calls if c.name == "new_answer"]
        if len(votes) > 1:
            first = (
                f"Multiple vote calls not allowed. Made {len(votes)} calls but must make exactly 1. "
                "Call vote tool once with chosen agent."
            )
            rest = "Vote rejected due to multiple votes."
            return _Verdict("reject", "multiple_votes", tuple(first if i == 0 else rest for i in range(n)))
        if votes and answers:
            return _reject(
                n,
                "vote_and_answer",
                "Cannot use both 'vote' and 'new_answer' in same response. Choose one: vote for existing answer "
                "OR provide new answer.",
            )
        if votes:
            return self.validate_vote(votes[0], n)
        return self.validate_answer(agent, answers[0], n)

    def validate_vote(self, call: ToolCall, n: int) -> _Verdict:
        """A lone ``vote`` call (of ``n`` calls in the response): a known target and a reason in words."""
        st = self.state
        args = _arguments(call) or {}
        target = args.get("agent_id")
        if not isinstance(target, str):
            return _reject(
                n,
                "bad_arguments",
                'Invalid arguments for vote: expected {"agent_id": "agentN", "reason": "..."}, '
                f"got {call.arguments[:200]!r}",
            )
        valid = [anon for anon, _ in st.current_answers()]
        if not valid:
            return _reject(n, "vote_no_answers", "Cannot vote when no answers exist. Use new_answer tool.")
        if target not in valid:
            return _reject(n, "unknown_agent", f"Invalid agent_id '{target}'. Valid agents: {', '.join(valid)}")
        reason = args.get("reason")
        if not isinstance(reason, str):
            return _junk_reason(n, "it is missing")
        why = why_junk(reason)
        if why:
            return _junk_reason(n, why)
        return _Verdict("vote", target=st.by_anon(target), text=reason)

    def validate_answer(self, agent: AgentState, call: ToolCall, n: int) -> _Verdict:
        """A lone ``new_answer`` call (of ``n`` calls in the response): text in words, within the agent's
        answer limit, novel enough and not a duplicate."""
        st = self.state
        content = (_arguments(call) or {}).get("content")
        if isinstance(content, str):
            content = strip_echoed_label(content)
        if not isinstance(content, str) or not content.strip():
            return _reject(
                n,
                "bad_arguments",
                'Invalid arguments for new_answer: expected {"content": "your answer"}, '
                f"got {call.arguments[:200]!r}",
            )
        why = why_junk(content)
        if why:
            return _reject(
                n,
                "junk_answer",
                f"Answer not recorded: {why}. Write the answer itself, in words, with new_answer.",
            )
        limit = self.settings.max_new_answers_per_agent
        if limit is not None and len(agent.answers) >= limit:
            return _reject(
                n,
                "max_answers",
                f"You've reached the maximum of {limit} new answer(s). Please vote for the best existing answer "
                "using the `vote` tool.",
            )
        novelty = self.settings.answer_novelty_requirement
        if novelty in _NOVELTY_LIMIT:
            for _, existing in st.current_answers():
                if _jaccard(content, existing) > _NOVELTY_LIMIT[novelty]:
                    pct = int(_NOVELTY_LIMIT[novelty] * 100)
                    return _reject(
                        n,
                        "answer_not_novel",
                        f"Your answer is too similar to existing answers (>{pct}% overlap). Please provide a "
                        "meaningfully different solution, or vote for an existing answer.",
                    )
        for anon, existing in st.current_answers():
            if existing.strip() == content.strip():
                return _reject(
                    n,
                    "duplicate_answer",
                    f"Answer already provided by {anon}. Provide different answer or vote for existing one.",
                )
        return _Verdict("answer", text=content)

    # ------------------------------------------------------------ turns

    def tools_for(self, agent: AgentState) -> tuple[ToolSpec, ...]:
        limit = self.settings.max_new_answers_per_agent
        tools: list[ToolSpec] = []
        if limit is None or len(agent.answers) < limit:
            tools.append(prompts.new_answer_tool())
        valid = [anon for anon, _ in self.state.current_answers()]
        if valid:
            tools.append(prompts.vote_tool(valid))
        return tuple(tools)

    def start_idle(self) -> None:
        """Start a turn for every live agent that is idle without a vote (after a new answer invalidated
        the votes, or after it answered), once no turn in flight can only end in an answer. Runs after
        every input, so whatever ends the last such turn (an answer, a failure, a drop) starts them.

        Such answers are moments away (every agent starts at once), and the run waits for them anyway:
        a vote turn started before they land sees a stale answer set and has to be asked again, an
        extra LLM round trip for nothing (issue 11 item 6). A vote still counts only against the set
        its voter saw.
        """
        st = self.state
        if st.paraphrasing or any(a.turn is not None and all(t.name == "new_answer" for t in a.turn.tools)
                                  for a in st.live):
            return
        for agent in st.live:
            if agent.turn is None and agent.vote is None:
                self.start_turn(agent)

    def start_turn(self, agent: AgentState) -> None:
        st = self.state
        if st.budget_exceeded:
            return  # over budget: no new LLM call (end_on_budget ends the run when nothing is in flight)
        assert st.submitted is not None
        s = self.settings
        messages = prompts.coordination_messages(
            agent.system_message,
            s.voting_sensitivity,
            s.answer_novelty_requirement,
            st.submitted.question,
            st.current_answers(),
            _style(agent),
            (agent.anon_id, agent.latest.content) if agent.latest else None,
            paraphrase=st.paraphrased.by_agent.get(agent.id) if st.paraphrased else None,
        )
        messages = prompts.with_history(messages, _history(st.submitted), _style(agent))  # a session's turns
        if st.restart is not None:  # every turn of a restarted attempt starts with the feedback (spec §1.12)
            r = st.restart
            context = prompts.restart_context(r.reason, r.instructions, r.previous_answer, _style(agent))
            messages = prompts.with_restart_context(messages, context)
        if s.planning_mode:  # MassGen spec §1.14: agents describe what they would do
            messages = prompts.with_planning(messages, s.planning_mode_instruction)
        if s.memory_filesystem_mode and agent.backend.get("cwd") is not None:  # massgen_orchestrator.memory
            shared = {a.anon_id: st.memories.get(a.anon_id, ()) for a in st.agents.values()}
            messages = memory.with_memory(messages, shared)
        self.emit(
            TurnRequested(
                turn_id=ids.turn_id(agent.id, agent.turns_started + 1),
                agent_id=agent.id,
                attempt=1,
                kind="coordination",
                messages=messages,
                tools=self.tools_for(agent),
                backend=agent.backend,
                answers_version=st.version,
                anon_id=agent.anon_id,
                planning_mode=s.planning_mode,
            )
        )

    def continue_turn(self, agent: AgentState, turn: Turn, ev: TurnResponded, errors: tuple[str, ...]) -> None:
        """Next attempt of a turn: the model's reply, the tool errors, and any answers it has not seen."""
        st = self.state
        if st.budget_exceeded:
            return  # over budget: no new attempt, and no update recorded that nobody would receive
        msgs = [*turn.messages, Message(role="assistant", content=ev.content, tool_calls=ev.tool_calls)]
        if ev.tool_calls:
            # One error text per tool call (every verdict and the stale-vote notice have as many).
            msgs += [
                Message(role="tool", content=e, tool_call_id=c.id) for c, e in zip(ev.tool_calls, errors, strict=True)
            ]
        else:
            msgs.append(Message(role="user", content=errors[0]))
        attempt = turn.attempt + 1
        if turn.answers_version != st.version:
            fresh = [
                (a.anon_id, a.latest.content)
                for a in st.agents.values()
                if a.latest is not None and a.latest.version > turn.answers_version
            ]
            msgs.append(Message(role="user", content=prompts.update_message(fresh, _style(agent))))
            self.emit(
                UpdateDelivered(
                    agent_id=agent.id,
                    turn_id=turn.id,
                    attempt=attempt,
                    labels=tuple(
                        a.latest.label
                        for a in st.agents.values()
                        if a.latest and a.latest.version > turn.answers_version
                    ),
                    from_version=turn.answers_version,
                    to_version=st.version,
                )
            )
        self.emit(
            TurnRequested(
                turn_id=turn.id,
                agent_id=agent.id,
                attempt=attempt,
                kind="coordination",
                messages=tuple(msgs),
                tools=self.tools_for(agent),
                backend=agent.backend,
                answers_version=st.version,
                anon_id=agent.anon_id,
                planning_mode=self.settings.planning_mode,
            )
        )

    # ------------------------------------------------------------ consensus and presentation

    def tally(self) -> list[tuple[AgentState, int]]:
        """Valid votes of live agents per target, best first; ties by config order (spec §1.9)."""
        st = self.state
        counts: dict[str, int] = {}
        for a in st.live:
            if a.vote is not None and a.vote.version == st.version:
                counts[a.vote.target_id] = counts.get(a.vote.target_id, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], st.agents[kv[0]].index))
        return [(st.agents[aid], n) for aid, n in ranked]

    def check_consensus(self) -> None:
        st = self.state
        live = st.live
        if st.phase != "coordinating" or not live:
            return
        if not all(a.vote is not None and a.vote.version == st.version for a in live):
            return
        ranked = self.tally()
        winner, top = ranked[0]
        self.emit(
            ConsensusReached(
                winner_id=winner.id,
                winner_anon=winner.anon_id,
                tally={agent.anon_id: n for agent, n in ranked},
                votes=tuple(
                    VoteRecord(
                        voter_id=a.id,
                        target_id=a.vote.target_id,
                        target_anon=st.agents[a.vote.target_id].anon_id,
                        reason=a.vote.reason,
                    )
                    for a in live
                    if a.vote is not None
                ),
                tie_broken=sum(1 for _, n in ranked if n == top) > 1,
            )
        )
        self.start_presentation(winner, "consensus", tie_broken=sum(1 for _, n in ranked if n == top) > 1)

    def start_presentation(
        self, winner: AgentState, reason: Literal["consensus", "timeout", "skipped"], tie_broken: bool = False
    ) -> None:
        st = self.state
        if st.budget_exceeded:
            self.end_on_budget(winner)
            return
        assert st.submitted is not None
        turn_id = ids.presentation_turn_id(winner.id, st.attempt)
        reasons = [
            a.vote.reason
            for a in st.live
            if a.vote is not None and a.vote.version == st.version and a.vote.target_id == winner.id
        ]
        self.emit(PresentationStarted(presenter_id=winner.id, turn_id=turn_id, reason=reason))
        self.emit(
            TurnRequested(
                turn_id=turn_id,
                agent_id=winner.id,
                attempt=1,
                kind="presentation",
                messages=prompts.with_history(prompts.presentation_messages(
                    winner.system_message,
                    st.submitted.question,
                    reasons,
                    tie_broken,
                    st.current_answers(),
                    winner.anon_id,
                    _style(winner),
                    skipped=reason == "skipped",
                ), _history(st.submitted), _style(winner)),
                tools=(),
                backend=winner.backend,
                answers_version=st.version,
                anon_id=winner.anon_id,
            )
        )

    def finish(self, presented: str | None) -> None:
        """End the run with the presentation, or the presenter's stored answer if there is none."""
        st = self.state
        presenter = st.agents[st.presenter] if st.presenter else None
        stored = presenter.latest.content if presenter and presenter.latest else ""
        content = presented or stored
        assert presenter is not None
        if st.attempt == 1 and self.settings.debug_final_answer:
            content = self.settings.debug_final_answer  # MassGen's debug aid to test restarts (spec §1.12)
        self.emit(
            PresentationCompleted(presenter_id=presenter.id, content=content, used_stored_answer=presented is None)
        )
        if st.timed_out:
            self.emit(RunTimedOut(winner_id=presenter.id, final_answer=content))
        elif post_evaluation.enabled(st):
            for event in post_evaluation.start(st, presenter, content, _style(presenter)):
                self.emit(event)
        else:
            self.emit(RunCompleted(winner_id=presenter.id, final_answer=content))


def _bounds(ev: TimerFired, turn: Turn | None) -> bool:
    """Whether deadline ``ev`` is the one of ``turn`` (a deadline recorded before deadlines named their
    turn is the current one's)."""
    return ev.turn_id is None or (turn is not None and ev.turn_id == turn.id)


def _history(submitted: RunSubmitted) -> list[tuple[str, str]]:
    """A session turn's earlier ``(question, final answer)`` pairs, oldest first (MassGen spec §1.13)."""
    return [(t.question, t.answer) for t in submitted.previous_turns]


def _style(agent: AgentState) -> prompts.Style:
    """Compact prompts for agents without native tool calls (``massgen_orchestrator.prompts``)."""
    return "compact" if backends.tool_mode(agent.backend) == "json_schema" else "massgen"


def _reject(n: int, code: str, text: str) -> _Verdict:
    """A rejection with the same error text for each of the response's ``n`` tool calls."""
    return _Verdict("reject", code, (text,) * n)


def _junk_reason(n: int, why: str) -> _Verdict:
    return _reject(
        n,
        "junk_reason",
        f"Vote not recorded: its reason is not text ({why}). Vote again with a short reason in words.",
    )


def _is_object(value: object) -> TypeGuard[dict[str, Any]]:
    """A parsed JSON object (its keys are strings)."""
    return isinstance(value, dict)


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return None
    return args if _is_object(args) else None


def _jaccard(a: str, b: str) -> float:
    wa, wb = set(a.lower().split()), set(b.lower().split())
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0
