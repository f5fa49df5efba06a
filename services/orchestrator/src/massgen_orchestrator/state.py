"""A run's state as a fold of its events: ``evolve(state, record)``; no clock, randomness or I/O.

Inputs (from the CLI, workers and timers) are recorded facts; the orchestrator's own events are its
decisions. Both are folded here, so ``RunState`` after any prefix of the log is what the orchestrator
knew at that point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from massgen_es import ids
from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    BudgetExceeded,
    ConsensusReached,
    Event,
    MemoryNote,
    Message,
    PostEvaluationStarted,
    PresentationCompleted,
    PresentationStarted,
    QuestionParaphrased,
    Record,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunRestarted,
    RunSubmitted,
    RunTimedOut,
    TimerFired,
    ToolSpec,
    TurnFailed,
    TurnKind,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    UnknownEvent,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
    WorkspaceSnapshotted,
)


@dataclass
class Turn:
    """An agent's active turn: one or more LLM calls (attempts) ending in a vote, an answer or a failure."""

    id: str
    kind: TurnKind
    attempt: int
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    answers_version: int
    rejections: int = 0
    """Enforcement rejections so far; update deliveries do not count."""
    response: TurnResponded | None = None
    failed: bool = False
    backend: dict[str, Any] = field(default_factory=dict[str, Any])
    """The backend the attempt was requested with (a fork may change the agent's since)."""


@dataclass
class Answer:
    """An accepted answer."""

    agent_id: str
    anon_id: str
    label: str
    content: str
    version: int


@dataclass
class Vote:
    """An agent's vote, valid while ``version`` equals the run's answer count."""

    target_id: str
    reason: str
    version: int


@dataclass
class AgentState:
    """One agent as the orchestrator sees it."""

    id: str
    index: int
    anon_id: str
    system_message: str
    backend: dict[str, Any]
    answers: list[Answer] = field(default_factory=list[Answer])
    vote: Vote | None = None
    turn: Turn | None = None
    turns_started: int = 0
    answers_posted: int = 0
    """Answers accepted in the whole run: numbers the labels (``agentN.M``), unique across attempts."""
    consecutive_failures: int = 0
    dropped: bool = False

    @property
    def latest(self) -> Answer | None:
        """The agent's latest accepted answer (the one others see and vote for)."""
        return self.answers[-1] if self.answers else None


@dataclass
class RunState:
    """Everything the decision core knows about one run."""

    run_id: str
    submitted: RunSubmitted | None = None
    agents: dict[str, AgentState] = field(default_factory=dict[str, AgentState])
    """In config order: the order of anonymous ids and of tie-breaks."""
    answers: list[Answer] = field(default_factory=list[Answer])
    phase: str = "new"
    """``new`` -> ``coordinating`` -> ``presenting`` [-> ``evaluating`` [-> ``coordinating`` ...]] -> ``done``."""
    timed_out: bool = False
    """This attempt's coordination ended on the run deadline (its presentation ends the run timed out)."""
    deadline_passed: bool = False
    """The run deadline fired (in any phase): no post-evaluation, so no restart, after it."""
    presenter: str | None = None
    presentation_turn: Turn | None = None
    evaluation_turn: Turn | None = None
    """The winner's post-evaluation turn (spec §1.12), while ``evaluating``."""
    attempt: int = 1
    """The run's coordination attempt, 1-based; each ``run.restarted`` starts the next."""
    restart: RunRestarted | None = None
    """The latest restart: its feedback prefixes every coordination turn of this attempt."""
    status: str | None = None
    """Terminal status once done: ``completed``, ``timed_out``, ``failed`` or ``cancelled``."""
    final_answer: str | None = None
    last_decided_seq: int = 0
    """Stream sequence of the latest input that produced decisions (for resuming after a crash)."""
    cost_usd: float = 0.0
    """Sum of the recorded cost of every LLM call so far (calls with no known price count 0)."""
    budget_exceeded: bool = False
    paraphrase_turns: dict[str, Turn] = field(default_factory=dict[str, Turn])
    """The question's paraphrase turns by id (``RunSettings.paraphrase``), requested at the start."""
    paraphrased: QuestionParaphrased | None = None
    """Set once every paraphrase turn settled: what each agent is asked besides the original."""
    memories: dict[str, tuple[MemoryNote, ...]] = field(default_factory=dict[str, tuple[MemoryNote, ...]])
    """Per anonymous id, the memory files of the agent's latest shared workspace (memory filesystem mode)."""

    @property
    def version(self) -> int:
        """Number of accepted answers: the answer-set version votes are checked against."""
        return len(self.answers)

    @property
    def paraphrasing(self) -> bool:
        """Whether coordination waits for the question's paraphrases (MassGen spec §1.15)."""
        settings = self.submitted.settings if self.submitted is not None else None
        return settings is not None and settings.paraphrase is not None and self.paraphrased is None

    @property
    def in_flight(self) -> bool:
        """Whether some agent's current attempt still waits for its worker."""
        return any(a.turn is not None and a.turn.response is None and not a.turn.failed for a in self.live)

    @property
    def live(self) -> list[AgentState]:
        """Agents not dropped, in config order."""
        return [a for a in self.agents.values() if not a.dropped]

    def current_answers(self, version: int | None = None) -> list[tuple[str, str]]:
        """``(anon_id, content)`` of each agent's latest answer as of ``version`` (default: now)."""
        v = self.version if version is None else version
        out: list[tuple[str, str]] = []
        for a in self.agents.values():
            seen = [x for x in a.answers if x.version <= v]
            if seen:
                out.append((a.anon_id, seen[-1].content))
        return out

    def by_anon(self, anon: str) -> AgentState | None:
        """The agent behind an anonymous id."""
        return next((a for a in self.agents.values() if a.anon_id == anon), None)


def evolve(state: RunState, record: Record) -> RunState:
    """Fold one event into ``state`` (mutated and returned). Unknown and irrelevant events are no-ops."""
    ev = record.event
    if record.is_decision and record.causation_id is not None:
        state.last_decided_seq = max(state.last_decided_seq, ids.cause_seq(record.id))
    match ev:
        case RunSubmitted():
            _submitted(state, ev)
        case RunForked():
            _forked(state, ev)
        case TurnRequested():
            _turn_requested(state, ev)
        case TurnResponded() | TurnFailed() | TurnRejected():
            _turn_outcome(state, ev, record.is_decision)
        case AnswerPosted():
            agent = state.agents[ev.agent_id]
            answer = Answer(ev.agent_id, ev.anon_id, ev.label, ev.content, ev.version)
            agent.answers.append(answer)
            state.answers.append(answer)
            agent.answers_posted += 1
            _end_turn(agent)
        case VoteCast():
            agent = state.agents[ev.voter_id]
            agent.vote = Vote(ev.target_id, ev.reason, ev.version)
            _end_turn(agent)
        case VoteInvalidated():
            state.agents[ev.voter_id].vote = None
        case QuestionParaphrased():
            state.paraphrased = ev
        case WorkspaceSnapshotted() if ev.memories or ev.anon_id in state.memories:
            state.memories[ev.anon_id] = ev.memories  # the latest snapshot replaces the agent's memories
        case _:
            _run_progress(state, ev)
    return state


def _submitted(state: RunState, ev: RunSubmitted) -> None:
    """The run starts: its agents, in config order (the first submission counts)."""
    if state.submitted is None:
        state.submitted = ev
        state.phase = "coordinating"
        for i, spec in enumerate(ev.agents):
            state.agents[spec.id] = AgentState(
                id=spec.id,
                index=i,
                anon_id=ids.anon_id(i),
                system_message=spec.system_message,
                backend=spec.backend,
            )


def _forked(state: RunState, ev: RunForked) -> None:
    """A fork's config applies from here: the agents' backends and system messages, and the settings
    (the question and the agents' ids and order are the parent's; ``massgen fork`` checks that)."""
    if state.submitted is None:
        return
    state.submitted = msgspec.structs.replace(state.submitted, agents=ev.agents, settings=ev.settings)
    for spec in ev.agents:
        if agent := state.agents.get(spec.id):
            agent.backend = spec.backend
            agent.system_message = spec.system_message


def _turn_requested(state: RunState, ev: TurnRequested) -> None:
    """A turn's attempt becomes the agent's (or the presentation's) current turn."""
    if ev.kind == "paraphrase":  # the paraphrasing backend's, not the agent's (massgen_orchestrator.paraphrase)
        state.paraphrase_turns[ev.turn_id] = Turn(ev.turn_id, ev.kind, ev.attempt, ev.messages, ev.tools,
                                                  ev.answers_version, backend=ev.backend)
        return
    agent = state.agents[ev.agent_id]
    turn = Turn(ev.turn_id, ev.kind, ev.attempt, ev.messages, ev.tools, ev.answers_version, backend=ev.backend)
    previous = {"coordination": agent.turn, "presentation": state.presentation_turn,
                "post_evaluation": state.evaluation_turn}[ev.kind]
    if previous is not None and previous.id == ev.turn_id:
        turn.rejections = previous.rejections
    else:
        agent.turns_started += 1
    if ev.kind == "presentation":
        state.presentation_turn = turn
    elif ev.kind == "post_evaluation":
        state.evaluation_turn = turn
    else:
        agent.turn = turn


def _turn_outcome(state: RunState, ev: TurnResponded | TurnFailed | TurnRejected, is_decision: bool) -> None:
    """A response, failure or rejection of the current attempt of a turn; stale ones are ignored."""
    match ev:
        case TurnResponded():
            if turn := current_turn(state, ev.agent_id, ev.turn_id, ev.attempt):
                turn.response = ev
        case TurnFailed():
            if turn := current_turn(state, ev.agent_id, ev.turn_id, ev.attempt, responded_ok=is_decision):
                # A worker fails an unanswered attempt; the orchestrator fails a turn after its last rejection.
                turn.failed = True
                if turn.kind == "coordination":
                    agent = state.agents[ev.agent_id]
                    agent.consecutive_failures += 1
                    agent.turn = None
        case TurnRejected():
            turn = state.agents[ev.agent_id].turn
            if turn is not None and turn.id == ev.turn_id:
                turn.rejections += 1


def _run_progress(state: RunState, ev: Event | UnknownEvent) -> None:
    """Cost, budget, drops, consensus, presentation, the run's end and its deadline."""
    match ev:
        case UsageRecorded():
            state.cost_usd += ev.cost_usd or 0.0
        case BudgetExceeded():
            state.budget_exceeded = True
        case AgentDropped():
            agent = state.agents[ev.agent_id]
            agent.dropped = True
            agent.turn = None
        case ConsensusReached():
            state.presenter = ev.winner_id
        case PresentationStarted():
            state.phase = "presenting"
            state.presenter = ev.presenter_id
            if ev.reason == "timeout":
                state.timed_out = True
        case PresentationCompleted():
            state.final_answer = ev.content
        case PostEvaluationStarted():
            state.phase = "evaluating"
        case RunRestarted():
            _restarted(state, ev)
        case RunCompleted() | RunTimedOut() | RunFailed() | RunCancelled():
            state.phase = "done"
            state.status = {RunCompleted: "completed", RunTimedOut: "timed_out", RunFailed: "failed",
                            RunCancelled: "cancelled"}[type(ev)]
            if isinstance(ev, RunCompleted | RunTimedOut):
                state.final_answer = ev.final_answer
        case TimerFired(name="run_deadline"):
            state.deadline_passed = True
            if state.phase == "coordinating":
                state.timed_out = True
        case _:
            pass


def _restarted(state: RunState, ev: RunRestarted) -> None:
    """A new attempt (spec §1.12, MassGen's ``handle_restart``): every agent's answers, vote and turn
    reset, back to coordinating. Kept: dropped agents stay dropped (a restart is no retry of a failing
    backend, MassGen #654); ``turns_started`` and ``answers_posted`` count on, so turn ids and answer
    labels stay unique in the run."""
    state.attempt = ev.attempt
    state.restart = ev
    state.answers = []
    state.phase = "coordinating"
    state.presenter = None
    state.presentation_turn = None
    state.evaluation_turn = None
    state.final_answer = None
    state.timed_out = False
    for agent in state.agents.values():
        agent.answers = []
        agent.vote = None
        agent.turn = None
        agent.consecutive_failures = 0


def current_turn(
    state: RunState, agent_id: str, turn_id: str, attempt: int, *, responded_ok: bool = False
) -> Turn | None:
    """The active turn an input refers to, if it is still current and not yet resolved."""
    agent = state.agents.get(agent_id)
    if agent is None or state.phase == "done":
        return None
    for turn in (agent.turn, state.presentation_turn, state.evaluation_turn, state.paraphrase_turns.get(turn_id)):
        if (
            turn is not None
            and turn.id == turn_id
            and turn.attempt == attempt
            and (turn.response is None or responded_ok)
            and not turn.failed
        ):
            return turn
    return None


def _end_turn(agent: AgentState) -> None:
    agent.turn = None
    agent.consecutive_failures = 0


def fold(run_id: str, records: list[Record]) -> RunState:
    """State after folding ``records`` (already in logical order, see :func:`logical_order`)."""
    state = RunState(run_id)
    for r in records:
        evolve(state, r)
    return state


def logical_order(records: list[Record]) -> list[Record]:
    """Put each orchestrator decision right after the input that caused it.

    In the stream, a decision lands after any inputs that arrived while it was being made; the
    orchestrator, though, decided with the state as of its cause. This order reproduces that view,
    so folding it rebuilds exactly what the orchestrator knew.
    """
    by_cause: dict[str, list[Record]] = {}
    inputs: list[Record] = []
    known_ids = {r.id for r in records}
    for r in records:
        if r.is_decision and r.causation_id in known_ids:
            by_cause.setdefault(r.causation_id, []).append(r)
        else:
            inputs.append(r)
    out: list[Record] = []
    for r in inputs:
        out.append(r)
        out.extend(by_cause.get(r.id, ()))
    return out
