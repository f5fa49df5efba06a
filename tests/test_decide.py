"""Unit tests of the pure decision core (``massgen_orchestrator.decide``), one per protocol rule.

Inputs are built as ``Record``s and fed through ``step``; every decision is recorded back into a log
(source ``orchestrator``, caused by its input) so that ``verify`` and ``logical_order`` can be checked
on real runs. Real agent ids are deliberately distinctive so that any leak into a prompt is visible.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Literal, TypeVar

import pytest
from msgspec.structs import replace

from massgen_es.config import parse_config, run_submitted
from massgen_es.errors import NondeterminismError
from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    ConsensusReached,
    Event,
    Failure,
    Message,
    PresentationCompleted,
    PresentationStarted,
    Record,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunTimedOut,
    Source,
    TimerFired,
    ToolCall,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnResponded,
    UpdateDelivered,
    VoteCast,
    VoteInvalidated,
)
from massgen_orchestrator.decide import STALE_VOTE_TEXT, decide, step, verify
from massgen_orchestrator.junk import strip_echoed_label, why_junk
from massgen_orchestrator.prompts import ENFORCEMENT_MESSAGE, coordination_messages
from massgen_orchestrator.state import RunState, logical_order

RUN = "run-1"
IDS = ("zeta-real-id", "omega-real-id", "kappa-real-id", "sigma-real-id")
A, B, C, D = IDS
QUESTION = "What is the capital of France?"
_call_ids = itertools.count(1)
NATIVE = {"type": "chatcompletion", "model": "m", "base_url": "http://127.0.0.1:9/v1"}  # MassGen's prompts
COMPACT = {"type": "local"}  # no native tool calls: the compact prompts

# ---------------------------------------------------------------- helpers


def vote(agent_id: str, reason: str = "best answer") -> ToolCall:
    return ToolCall(
        id=f"call-{next(_call_ids)}",
        name="vote",
        arguments=json.dumps({"agent_id": agent_id, "reason": reason}),
    )


def answer(content: str) -> ToolCall:
    return ToolCall(
        id=f"call-{next(_call_ids)}", name="new_answer", arguments=json.dumps({"content": content})
    )


E = TypeVar("E", bound=Event)


def of(events: list[Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def at(events: list[Event], i: int, cls: type[E]) -> E:
    """``events[i]``, which the test has found to be a ``cls``."""
    event = events[i]
    assert isinstance(event, cls)
    return event


def texts(messages) -> str:
    return "\n".join(m.content for m in messages)


class Run:
    """A run driven through ``step``: feeds inputs, records decisions, tracks each agent's current turn."""

    def __init__(self, n: int = 2, backend: dict | None = None, **orchestrator) -> None:
        backend = backend or NATIVE
        cfg = parse_config(
            {
                "agents": [{"id": i, "backend": backend} for i in IDS[:n]],
                "orchestrator": orchestrator,
            }
        )
        self.state = RunState(RUN)
        self.log: list[Record] = []
        self.seq = 0
        self.turns: dict[str, TurnRequested] = {}
        self.inputs = 0
        self.first = self.feed(run_submitted(QUESTION, cfg), "cli")

    def record(self, event: Event, service: str) -> Record:
        self.seq += 1
        return Record(
            seq=self.seq,
            id=f"in-{self.seq}",
            run_id=RUN,
            ts=float(self.seq),
            source=Source(service=service, instance="test"),
            causation_id=None,
            event=event,
        )

    def feed(self, event: Event, service: str) -> list[Event]:
        rec = self.record(event, service)
        drafts = step(self.state, rec)
        self.log.append(rec)
        self.inputs += 1
        for d in drafts:
            self.seq += 1
            self.log.append(
                Record(
                    seq=self.seq,
                    id=d.id,
                    run_id=RUN,
                    ts=rec.ts,
                    source=Source(service="orchestrator", instance="core"),
                    causation_id=d.causation_id,
                    event=d.event,
                )
            )
            if isinstance(d.event, TurnRequested):
                self.turns[d.event.agent_id] = d.event
        return [d.event for d in drafts]

    def respond(
        self, agent: str, *calls: ToolCall, content: str = "", turn: TurnRequested | None = None
    ) -> list[Event]:
        t = turn or self.turns[agent]
        return self.feed(
            TurnResponded(
                turn_id=t.turn_id, agent_id=agent, attempt=t.attempt, content=content, tool_calls=calls
            ),
            "agent_worker",
        )

    def fail(self, agent: str, turn: TurnRequested | None = None) -> list[Event]:
        t = turn or self.turns[agent]
        failure = Failure(type="ProviderHTTPError", message="boom")
        return self.feed(
            TurnFailed(turn_id=t.turn_id, agent_id=agent, attempt=t.attempt, failure=failure), "agent_worker"
        )

    def timer(self, name: Literal["run_deadline", "presentation_deadline"]) -> list[Event]:
        return self.feed(TimerFired(name=name), "timer")

    def vote_now(self, agent: str, target: str, reason: str = "best answer") -> list[Event]:
        """Vote; if the vote was stale (update delivered), vote again on the current set."""
        out = self.respond(agent, vote(target, reason))
        if of(out, UpdateDelivered):
            out += self.respond(agent, vote(target, reason))
        return out

    def requests(self) -> list[TurnRequested]:
        return [r.event for r in self.log if isinstance(r.event, TurnRequested)]


def both_answer(run: Run) -> None:
    """A answers, then B; once no first answer is outstanding, the idle agents start their vote turns."""
    run.respond(A, answer("Paris, said A"))
    run.respond(B, answer("It is Paris, said B"))


def to_presentation(run: Run) -> list[Event]:
    """Two agents answer, both vote for agent1: consensus and presentation by A."""
    both_answer(run)
    run.vote_now(A, "agent1", "mine is concise")
    return run.vote_now(B, "agent1", "A is clearest")


# ---------------------------------------------------------------- rules


def test_all_agents_start_in_parallel():
    run = Run(3)
    reqs = of(run.first, TurnRequested)
    assert len(run.first) == 3
    assert [r.agent_id for r in reqs] == [A, B, C]
    assert all(r.attempt == 1 and r.kind == "coordination" and r.answers_version == 0 for r in reqs)
    assert len({r.turn_id for r in reqs}) == 3
    assert all([t.name for t in r.tools] == ["new_answer"] for r in reqs)
    assert "(no answers available yet)" in reqs[0].messages[-1].content
    assert QUESTION in reqs[0].messages[-1].content


def test_anonymised_with_one_numbering():
    run = Run(3)
    out = run.respond(B, answer("beta answer"))  # the second agent in config order answers first
    assert of(out, AnswerPosted)[0].anon_id == "agent2"
    out = run.respond(A, vote("agent1"))  # A's turn started before any answer existed
    assert of(out, TurnRejected)[0].errors == ("Invalid agent_id 'agent1'. Valid agents: agent2",)
    update = run.turns[A].messages[-1].content
    assert update.startswith("UPDATE:") and "<agent2> beta answer <end of agent2>" in update
    run.respond(A, answer("beta answer"))
    assert (
        run.turns[A].messages[-1].content
        == "Answer already provided by agent2. Provide different answer or vote for existing one."
    )
    run.vote_now(A, "agent2")
    run.vote_now(C, "agent2")  # no first answer is outstanding any more: B starts its vote turn
    restarted = run.turns[B]
    assert "<agent2> beta answer <end of agent2>" in restarted.messages[-1].content
    assert restarted.tools[1].parameters["properties"]["agent_id"]["enum"] == ["agent2"]
    run.vote_now(B, "agent2", "I am right")
    run.respond(B, content="Paris")
    assert run.state.status == "completed"
    for req in run.requests():
        blob = texts(req.messages) + "".join(c.arguments for m in req.messages for c in m.tool_calls)
        assert not any(real in blob for real in IDS), req.turn_id


def test_workflow_tool_schemas_match_massgen():
    run = Run(1)
    (first,) = run.turns[A].tools
    assert first.name == "new_answer"
    assert first.parameters["required"] == ["content"]
    assert first.parameters["properties"]["content"]["type"] == "string"
    run.respond(A, answer("Paris"))
    new_answer, vote_tool = run.turns[A].tools
    assert new_answer == first
    assert vote_tool.name == "vote"
    params = vote_tool.parameters
    assert params["type"] == "object" and params["required"] == ["agent_id", "reason"]
    assert params["properties"]["agent_id"] == {
        "type": "string",
        "description": "Anonymous agent ID to vote for (e.g., 'agent1', 'agent2')",
        "enum": ["agent1"],
    }
    assert params["properties"]["reason"]["type"] == "string"


def test_new_answer_invalidates_all_votes_and_restarts_idle_agents():
    run = Run(4)
    for agent, text in ((A, "Paris"), (B, "Paris!"), (D, "Paris."), (C, "It is Paris")):
        run.respond(agent, answer(text))
    run.vote_now(A, "agent1")
    run.vote_now(B, "agent1")
    assert run.state.agents[A].vote and run.state.agents[B].vote
    out = run.respond(C, answer("Paris, on the Seine"))
    assert [(e.voter_id, e.by_label) for e in of(out, VoteInvalidated)] == [(A, "agent3.2"), (B, "agent3.2")]
    assert not of(out, VoteCast) and run.state.agents[A].vote is None and run.state.agents[B].vote is None
    restarted = of(out, TurnRequested)
    assert [r.agent_id for r in restarted] == [A, B, C]  # D is mid-turn: not restarted
    for r in restarted:
        assert r.attempt == 1 and r.answers_version == 5
        assert "<agent1> Paris <end of agent1>" in r.messages[-1].content
        assert "<agent3> Paris, on the Seine <end of agent3>" in r.messages[-1].content
        assert r.tools[1].parameters["properties"]["agent_id"]["enum"] == ["agent1", "agent2", "agent3", "agent4"]


def test_stale_vote_not_counted_and_update_delivered():
    run = Run(2)
    both_answer(run)
    stale_turn = run.turns[A]
    assert stale_turn.answers_version == 2
    run.respond(B, answer("It is Paris, said B, on the Seine"))  # arrives while A evaluates {agent1, agent2}
    out = run.respond(A, vote("agent1", "mine"))
    assert not of(out, VoteCast) and not of(out, TurnRejected)
    (upd,) = of(out, UpdateDelivered)
    assert (upd.agent_id, upd.labels, upd.from_version, upd.to_version) == (A, ("agent2.2",), 2, 3)
    nxt = run.turns[A]
    assert (nxt.turn_id, nxt.attempt, nxt.answers_version) == (stale_turn.turn_id, 2, 3)
    assert nxt.messages[-2] == Message(
        role="tool", content=STALE_VOTE_TEXT, tool_call_id=nxt.messages[-3].tool_calls[0].id
    )
    assert nxt.messages[-1].role == "user" and nxt.messages[-1].content.startswith("UPDATE:")
    assert "<agent2> It is Paris, said B, on the Seine <end of agent2>" in nxt.messages[-1].content
    assert run.state.agents[A].vote is None
    (cast,) = of(run.respond(A, vote("agent1", "still mine")), VoteCast)
    assert (cast.voter_id, cast.target_anon, cast.version, cast.reason) == (A, "agent1", 3, "still mine")


MULTI_VOTE = (
    "Multiple vote calls not allowed. Made 2 calls but must make exactly 1. "
    "Call vote tool once with chosen agent."
)
BOTH = (
    "Cannot use both 'vote' and 'new_answer' in same response. "
    "Choose one: vote for existing answer OR provide new answer."
)
MAX_ANSWERS = (
    "You've reached the maximum of 1 new answer(s). "
    "Please vote for the best existing answer using the `vote` tool."
)
NOT_NOVEL = (
    "Your answer is too similar to existing answers (>70% overlap). "
    "Please provide a meaningfully different solution, or vote for an existing answer."
)
DUPLICATE = "Answer already provided by agent1. Provide different answer or vote for existing one."
ENFORCEMENT_CASES = {  # code -> (make run, tool calls, expected error per call)
    "no_workflow_tool": (lambda: Run(2), (), (ENFORCEMENT_MESSAGE,)),
    "multiple_votes": (
        lambda: Run(2),
        (vote("agent1"), vote("agent2")),
        (MULTI_VOTE, "Vote rejected due to multiple votes."),
    ),
    "vote_and_answer": (lambda: Run(2), (vote("agent1"), answer("Paris")), (BOTH, BOTH)),
    "vote_no_answers": (
        lambda: Run(2),
        (vote("agent1"),),
        ("Cannot vote when no answers exist. Use new_answer tool.",),
    ),
    "unknown_agent": (
        lambda: _answered(Run(1)),
        (vote("agent9"),),
        ("Invalid agent_id 'agent9'. Valid agents: agent1",),
    ),
    "duplicate_answer": (lambda: _answered(Run(1)), (answer("  Paris is the capital  "),), (DUPLICATE,)),
    "max_answers": (
        lambda: _answered(Run(1, max_new_answers_per_agent=1)),
        (answer("Something else entirely"),),
        (MAX_ANSWERS,),
    ),
    "answer_not_novel": (
        lambda: _answered(Run(1, answer_novelty_requirement="balanced")),
        (answer("Paris is the capital indeed"),),
        (NOT_NOVEL,),
    ),
}


def _answered(run: Run) -> Run:
    """A single-agent run whose agent answered and now decides again (vote or a new answer)."""
    run.respond(A, answer("Paris is the capital"))
    return run


@pytest.mark.parametrize("code", list(ENFORCEMENT_CASES))
def test_enforcement_error_texts(code):
    make, calls, errors = ENFORCEMENT_CASES[code]
    run = make()
    prev = run.turns[A]
    out = run.respond(A, *calls, content="thinking")
    assert [type(e) for e in out] == [TurnRejected, TurnRequested]
    assert (out[0].code, out[0].errors) == (code, errors)
    assert not any(real in err for err in errors for real in IDS)
    nxt = out[1]
    assert (nxt.turn_id, nxt.attempt) == (prev.turn_id, prev.attempt + 1)
    assert nxt.messages[: len(prev.messages)] == prev.messages
    tail = nxt.messages[len(prev.messages) :]
    assert tail[0] == Message(role="assistant", content="thinking", tool_calls=calls)
    if calls:
        assert tail[1:] == tuple(
            Message(role="tool", content=e, tool_call_id=c.id) for c, e in zip(calls, errors, strict=True)
        )
    else:
        assert tail[1:] == (Message(role="user", content=ENFORCEMENT_MESSAGE),)


def test_enforcement_exhausted_fails_turn_and_starts_new_one():
    run = Run(2)
    first = run.turns[A]
    assert of(run.respond(A, content="hmm"), TurnRequested)[0].attempt == 2
    assert of(run.respond(A, content="hmm"), TurnRequested)[0].attempt == 3
    out = run.respond(A, content="hmm")
    assert [type(e) for e in out] == [TurnRejected, TurnFailed, TurnRequested]
    failed, retried = at(out, 1, TurnFailed), at(out, 2, TurnRequested)
    assert (failed.turn_id, failed.attempt, failed.failure.type) == (first.turn_id, 3, "EnforcementExhausted")
    assert failed.failure.message == "Agent failed to use workflow tools after 3 attempts"
    assert retried.turn_id != first.turn_id and retried.attempt == 1
    assert run.state.agents[A].consecutive_failures == 1


def test_consensus_when_all_live_agents_vote_plurality_winner():
    run = Run(3)
    both_answer(run)
    assert not of(run.vote_now(C, "agent2"), ConsensusReached)  # C votes instead of answering
    assert not of(run.vote_now(B, "agent2"), ConsensusReached)  # A still working: no consensus yet
    out = run.vote_now(A, "agent1")
    (cons,) = of(out, ConsensusReached)
    assert (cons.winner_id, cons.winner_anon, cons.tally, cons.tie_broken) == (
        B,
        "agent2",
        {"agent2": 2, "agent1": 1},
        False,
    )
    assert {(v.voter_id, v.target_anon) for v in cons.votes} == {(A, "agent1"), (B, "agent2"), (C, "agent2")}
    assert run.state.phase == "presenting"


def test_consensus_tie_broken_by_config_order():
    run = Run(2)
    both_answer(run)
    run.vote_now(B, "agent2")  # agent2's vote comes first; the tie still goes to agent1 (config order)
    (cons,) = of(run.vote_now(A, "agent1"), ConsensusReached)
    assert (cons.winner_id, cons.tally, cons.tie_broken) == (A, {"agent1": 1, "agent2": 1}, True)
    assert "(tie-broken by registration order)" in run.turns[A].messages[-1].content


def test_final_presentation_ends_run_with_presented_answer():
    run = Run(2)
    out = to_presentation(run)
    assert [type(e) for e in out[-3:]] == [ConsensusReached, PresentationStarted, TurnRequested]
    started, req = at(out, -2, PresentationStarted), at(out, -1, TurnRequested)
    assert (started.presenter_id, started.reason) == (A, "consensus")
    assert (req.agent_id, req.kind, req.tools, req.turn_id) == (A, "presentation", (), started.turn_id)
    prompt = req.messages[-1].content
    assert "<agent1> Paris, said A <end of agent1> (YOUR ANSWER)" in prompt
    assert "<agent2> It is Paris, said B <end of agent2>" in prompt and "agent2> (YOUR ANSWER)" not in prompt
    assert "You received 2 vote(s) with feedback: mine is concise; A is clearest" in prompt
    done = run.respond(A, content="  Paris is the capital of France.  ")
    assert done == [
        PresentationCompleted(
            presenter_id=A, content="Paris is the capital of France.", used_stored_answer=False
        ),
        RunCompleted(winner_id=A, final_answer="Paris is the capital of France."),
    ]
    assert (run.state.status, run.state.final_answer) == ("completed", "Paris is the capital of France.")


@pytest.mark.parametrize("how", ["empty", "failed"])
def test_presentation_falls_back_to_stored_answer(how):
    run = Run(2)
    to_presentation(run)
    out = run.respond(A, content="   ") if how == "empty" else run.fail(A)
    assert out == [
        PresentationCompleted(presenter_id=A, content="Paris, said A", used_stored_answer=True),
        RunCompleted(winner_id=A, final_answer="Paris, said A"),
    ]


@pytest.mark.parametrize("junk", ["", "...", "**", "<|im_end|>", "<END OF DOCUMENT>", " </s> ", "``` ```"])
def test_junk_presentation_falls_back_to_stored_answer(junk):
    run = Run(2)
    to_presentation(run)
    done = run.respond(A, content=junk)
    assert done[0] == PresentationCompleted(presenter_id=A, content="Paris, said A", used_stored_answer=True)


@pytest.mark.parametrize("junk", ["...", "**", "---", "<|im_end|>", "<END OF DOCUMENT>", "<|endoftext|> ", "[INST]"])
def test_junk_answer_is_rejected_and_retried(junk):
    run = Run(2)
    first = run.turns[A]
    out = run.respond(A, answer(junk))
    assert [type(e) for e in out] == [TurnRejected, TurnRequested]
    rejected, retried = at(out, 0, TurnRejected), at(out, 1, TurnRequested)
    assert rejected.code == "junk_answer" and rejected.errors[0].startswith("Answer not recorded: it ")
    assert (retried.turn_id, retried.attempt) == (first.turn_id, 2) and not run.state.answers


@pytest.mark.parametrize("reason", ["", "  ", "!!", "<|im_end|>", None])
def test_vote_whose_reason_is_not_text_is_rejected(reason):
    run = Run(1)
    run.respond(A, answer("Paris"))
    args = {"agent_id": "agent1"} if reason is None else {"agent_id": "agent1", "reason": reason}
    out = run.respond(A, ToolCall(id="call-junk", name="vote", arguments=json.dumps(args)))
    assert [type(e) for e in out] == [TurnRejected, TurnRequested]
    assert at(out, 0, TurnRejected).code == "junk_reason" and run.state.agents[A].vote is None
    assert of(run.respond(A, vote("agent1", "Macleady")), VoteCast)  # a word is text, however odd


def test_vote_turns_wait_for_first_answers_in_flight():
    """Issue 11 item 6: each agent answers once, then votes: 7 turns in 3 waves, no stale vote."""
    run = Run(3)
    assert not of(run.respond(A, answer("Paris")), TurnRequested)  # B and C are still writing
    assert not of(run.respond(B, answer("It is Paris")), TurnRequested)
    wave = of(run.respond(C, answer("Paris, France")), TurnRequested)
    assert [(r.agent_id, r.answers_version) for r in wave] == [(A, 3), (B, 3), (C, 3)]
    for agent in (A, B, C):
        run.respond(agent, vote("agent1", "short and right"))
    run.respond(A, content="Paris.")
    assert run.state.status == "completed"
    assert len(run.requests()) == 7 and not [r for r in run.log if isinstance(r.event, UpdateDelivered)]


def test_a_turn_that_may_vote_does_not_hold_back_vote_turns():
    run = Run(2)
    run.respond(A, answer("Paris"))
    out = run.respond(B, answer("Paris"))  # a duplicate: B is asked again, now with `vote` on offer
    assert [e.code for e in of(out, TurnRejected)] == ["duplicate_answer"]
    assert [(r.agent_id, [t.name for t in r.tools]) for r in of(out, TurnRequested)] == [
        (B, ["new_answer", "vote"]), (A, ["new_answer", "vote"])]


def test_compact_prompts_for_models_without_tool_calls():
    run = Run(3, backend=COMPACT)
    first = run.turns[A]
    assert first.anon_id == "agent1" and run.turns[B].anon_id == "agent2"
    # Asked as a plain question (these agents have no system message of their own), no talk of a team.
    assert first.messages == (Message(role="user", content=QUESTION),)
    both_answer(run)
    run.vote_now(C, "agent1", "A is right")
    vote_turn = run.turns[A]
    # A's turns are one conversation: the question, A's own answer as its reply, then the other answers.
    assert vote_turn.messages[:1] == first.messages
    assert vote_turn.messages[1] == Message(role="assistant", content="Paris, said A")
    listed = vote_turn.messages[2].content
    assert listed.startswith(
        "Several agents answered this question; their answers are labelled agent1, agent2, ... Yours, above, is "
        "agent1.\n\nThe other agents' answers:\n\nagent2 wrote:\nIt is Paris, said B\n\n"
    )
    assert listed.endswith(
        "If one of these answers is correct, vote for the best one. If none is, write a better answer."
    )
    run.vote_now(A, "agent1", "mine is concise")
    run.vote_now(B, "agent1", "A is clearest")
    presentation = run.turns[A].messages
    assert presentation[:2] == vote_turn.messages[:2]  # the prefix the prompt cache already holds
    assert presentation[2].content.startswith(listed.rsplit("\n\n", 1)[0])
    assert "voted" not in presentation[2].content  # a small model copies a tally as its final answer
    assert presentation[2].content.endswith(f"as your final answer (complete, with any code it needs):\n\n{QUESTION}")
    for req in run.requests():
        assert not any(real in texts(req.messages) for real in IDS)
    # An agent with no answer of its own gets the question and the answers in one message.
    alone = coordination_messages("", "lenient", "lenient", QUESTION, [("agent1", "Paris")], "compact", None)
    assert [m.role for m in alone] == ["user"]
    assert alone[0].content.startswith(f"Question: {QUESTION}\n\nSeveral agents answered this question")
    assert "Answers so far:\n\nagent1 wrote:\nParis" in alone[0].content
    # An agent's own system message leads every turn.
    own = coordination_messages("Be brief.", "lenient", "lenient", QUESTION, [], "compact")
    assert own == (Message(role="system", content="Be brief."), Message(role="user", content=QUESTION))


def test_run_deadline_presents_plurality_winner():
    run = Run(2)
    both_answer(run)
    run.vote_now(B, "agent2")  # the only valid vote; A (first with an answer) has none
    out = run.timer("run_deadline")
    assert [type(e) for e in out] == [PresentationStarted, TurnRequested]
    started = at(out, 0, PresentationStarted)
    assert (started.presenter_id, started.reason) == (B, "timeout")
    assert at(out, 1, TurnRequested).kind == "presentation"
    assert not of(run.respond(A, vote("agent1")), VoteCast)  # coordination is over
    assert run.respond(B, content="Paris (final)")[-1] == RunTimedOut(
        winner_id=B, final_answer="Paris (final)"
    )
    assert run.state.status == "timed_out"


@pytest.mark.parametrize("when", ["coordinating", "presenting"])
def test_a_cancel_request_ends_the_run_and_nothing_is_decided_after_it(when):
    run = Run(2)
    if when == "presenting":
        to_presentation(run)
    else:
        run.respond(A, answer("Paris, said A"))
    out = run.feed(RunCancelRequested(reason="wrong question", by="massgen cancel by ana@box"), "cli")
    assert out == [RunCancelled(reason="wrong question", by="massgen cancel by ana@box")]
    assert (run.state.phase, run.state.status) == ("done", "cancelled")
    late = run.turns[A] if when == "presenting" else run.turns[B]
    assert run.respond(late.agent_id, answer("late"), turn=late) == []  # a late result changes nothing
    assert run.timer("run_deadline") == [] and run.feed(RunCancelRequested(), "cli") == []
    assert verify(RUN, run.log) == run.inputs  # and replay reproduces it


def test_run_deadline_without_votes_presents_first_answer_in_config_order():
    run = Run(2)
    run.respond(B, answer("B was first in time"))
    run.respond(A, answer("A is first in config"))
    (started, _) = run.timer("run_deadline")
    assert isinstance(started, PresentationStarted)
    assert started.presenter_id == A
    assert run.timer("presentation_deadline")[-1] == RunTimedOut(
        winner_id=A, final_answer="A is first in config"
    )


def test_run_deadline_without_answers_times_out_without_answer():
    run = Run(2)
    assert run.timer("run_deadline") == [RunTimedOut(winner_id=None, final_answer=None)]
    assert run.state.status == "timed_out" and run.state.final_answer is None


def test_presentation_deadline_uses_stored_answer():
    run = Run(2)
    to_presentation(run)
    assert run.timer("presentation_deadline") == [
        PresentationCompleted(presenter_id=A, content="Paris, said A", used_stored_answer=True),
        RunCompleted(winner_id=A, final_answer="Paris, said A"),
    ]
    assert run.respond(A, content="too late") == []


def test_failing_agent_dropped_after_max_failed_turns():
    run = Run(2)
    run.respond(A, answer("Paris"))  # A waits: B's turn can only end in an answer
    out = run.fail(B)  # B's next turn may vote too: A starts voting now
    assert [(r.agent_id, r.turn_id) for r in of(out, TurnRequested)] == [(B, f"{B}.2"), (A, f"{A}.2")]
    run.vote_now(A, "agent1")
    out = run.fail(B)
    assert [type(e) for e in out] == [TurnRequested] and at(out, 0, TurnRequested).turn_id == f"{B}.3"
    out = run.fail(B)
    (dropped,) = of(out, AgentDropped)
    assert (dropped.agent_id, dropped.failed_turns) == (B, 3)
    assert "ProviderHTTPError: boom" in dropped.reason
    (cons,) = of(out, ConsensusReached)
    assert cons.winner_id == A and [v.voter_id for v in cons.votes] == [A]
    assert not [r for r in of(out, TurnRequested) if r.agent_id == B]
    run.respond(A, content="Paris!")
    assert run.state.status == "completed"


def test_all_agents_dropped_run_fails():
    run = Run(2, max_failed_turns=1)
    assert of(run.fail(A), AgentDropped)[0].agent_id == A
    out = run.fail(B)
    assert [type(e) for e in out] == [AgentDropped, RunFailed]
    assert at(out, 1, RunFailed).reason == "all agents failed"
    assert run.state.status == "failed"


def test_single_agent_run():
    run = Run(1)
    assert [t.name for t in run.turns[A].tools] == ["new_answer"]
    assert of(run.respond(A, vote("agent1")), TurnRejected)[0].code == "vote_no_answers"
    out = run.respond(A, answer("Paris"))
    assert of(out, AnswerPosted) and [t.name for t in run.turns[A].tools] == ["new_answer", "vote"]
    out = run.respond(A, vote("agent1", "it is correct"))
    assert [type(e) for e in out] == [VoteCast, ConsensusReached, PresentationStarted, TurnRequested]
    assert run.respond(A, content="Paris.")[-1] == RunCompleted(winner_id=A, final_answer="Paris.")


def test_stale_and_duplicate_inputs_ignored():
    run = Run(2)
    first_a = run.turns[A]
    assert of(run.respond(A, answer("Paris")), AnswerPosted)
    assert run.respond(A, answer("Lyon"), turn=first_a) == []  # redelivered response of a settled attempt
    first_b = run.turns[B]
    run.respond(B, content="no tool")
    assert run.respond(B, vote("agent1"), turn=first_b) == []  # attempt 1 already answered
    before = copy.deepcopy(run.state)
    assert run.fail(B, turn=first_b) == []  # a failure report for an attempt that already responded
    assert run.state == before
    run.vote_now(B, "agent1")
    run.vote_now(A, "agent1")
    run.respond(A, content="Paris.")
    assert run.state.phase == "done"
    assert run.timer("run_deadline") == [] and run.timer("presentation_deadline") == []
    assert run.respond(A, content="again", turn=run.turns[A]) == []
    submitted = run.state.submitted
    assert submitted is not None
    assert run.feed(submitted, "cli") == []


def test_decide_is_pure_and_deterministic():
    run = Run(2)
    both_answer(run)
    before = copy.deepcopy(run.state)
    t = run.turns[A]
    rec = run.record(
        TurnResponded(
            turn_id=t.turn_id, agent_id=A, attempt=t.attempt, content="", tool_calls=(vote("agent1"),)
        ),
        "agent_worker",
    )
    first, second = decide(run.state, rec), decide(run.state, rec)
    assert first == second and first
    assert run.state == before
    assert step(run.state, rec) == first
    assert run.state != before


def test_verify_replays_recorded_run_and_detects_tampering():
    run = Run(2)
    to_presentation(run)
    run.respond(A, content="Paris is the capital.")
    assert verify(RUN, run.log) == run.inputs
    i = next(i for i, r in enumerate(run.log) if isinstance(r.event, VoteCast))
    tampered = list(run.log)
    tampered[i] = replace(tampered[i], event=replace(tampered[i].event, reason="forged"))
    with pytest.raises(NondeterminismError):
        verify(RUN, tampered)
    with pytest.raises(NondeterminismError):
        verify(RUN, [r for r in run.log if not isinstance(r.event, RunCompleted)])


def test_logical_order_puts_decisions_right_after_cause():
    run = Run(2)
    run.respond(A, answer("Paris"))
    run.respond(B, answer("Paris, France"))
    a_in = next(r for r in run.log if isinstance(r.event, TurnResponded) and r.event.agent_id == A)
    b_in = next(r for r in run.log if isinstance(r.event, TurnResponded) and r.event.agent_id == B)
    a_out = [r for r in run.log if r.causation_id == a_in.id]
    b_out = [r for r in run.log if r.causation_id == b_in.id]
    head = run.log[: run.log.index(a_in)]
    stream = [*head, a_in, b_in, *a_out, *b_out]  # B's response landed before A's decisions
    assert logical_order(stream) == run.log
    assert verify(RUN, stream) == run.inputs


@pytest.mark.parametrize("max_failed_turns", [1, 3])  # 1: AgentDropped + RunFailed; 3: new coordination turn
def test_coordination_failure_during_presentation_is_ignored(max_failed_turns):
    run = Run(1, max_failed_turns=max_failed_turns)
    run.respond(A, answer("Paris"))
    coordination = run.turns[A]  # A's next coordination turn is now out
    run.timer("run_deadline")  # A presents its stored answer
    assert run.state.phase == "presenting"
    # The late failure of the abandoned coordination turn must not matter:
    assert run.fail(A, turn=coordination) == []
    assert run.respond(A, content="Paris.")[-1] == RunTimedOut(winner_id=A, final_answer="Paris.")


@pytest.mark.parametrize("text", ["Paris", "42", "x < 5 and y > 3", "Paris<|im_end|>", "東京", "`ls -l`", "**Mars**"])
def test_text_with_words_or_numbers_is_not_junk(text):
    assert why_junk(text) is None


@pytest.mark.parametrize(("text", "why"), [
    ("", "it is empty"), ("  \n", "it is empty"), ("...", "no words"), ("** __ --", "no words"),
    ("<|im_end|>", "chat-template token"), ("<END OF DOCUMENT>", "chat-template token"),
    ("</s><s>", "chat-template token"), ("<agent2>", "chat-template token"),
])
def test_junk_rules(text, why):
    assert why in why_junk(text)


@pytest.mark.parametrize(("text", "kept"), [
    ("agent2 wrote: Paris.", "Paris."), ("agent1: Paris is the capital.", "Paris is the capital."),
    ("Final answer: 42", "42"), ("The agent1 answer is right", "The agent1 answer is right"),
])
def test_a_label_copied_from_the_listing_is_not_part_of_the_answer(text, kept):
    assert strip_echoed_label(text) == kept
    run = Run(1)
    run.respond(A, answer(text))
    assert run.state.answers[0].content == kept
