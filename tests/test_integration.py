"""Integration: real nats-server, the services (in-process or as processes), the official ``openai``
SDK talking HTTP to the wire-level fake. Each test gets its own nats-server (an empty log)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter

from harness import (
    RESTART_INSTRUCTIONS,
    RESTART_REASON,
    Stack,
    agent_script,
    answer,
    assert_no_duplicates,
    of,
    restarting_script,
    team,
    tool_names,
    vote,
)
from massgen_es.bus import Draft
from massgen_es.config import parse_config, run_submitted
from massgen_es.events import (
    AgentDropped,
    AnswerPosted,
    BudgetExceeded,
    ConsensusReached,
    PostEvaluationSubmitted,
    PresentationCompleted,
    ProviderRetried,
    RunCompleted,
    RunFailed,
    RunRestarted,
    RunTimedOut,
    Source,
    TimerFired,
    TurnFailed,
    TurnRejected,
    TurnRequested,
    TurnStarted,
    UpdateDelivered,
    UsageRecorded,
    VoteCast,
    VoteInvalidated,
)
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_orchestrator.prompts import ENFORCEMENT_MESSAGE

# ---------------------------------------------------------------- tests


async def test_consensus_round_presents_the_plurality_winner(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb, mc) = team(fake, 3)
    fake.default(ma, agent_script("Paris.", "agent1", final="The capital of France is Paris."))
    fake.default(mb, agent_script("Paris, France.", "agent1"))
    fake.default(mc, agent_script("It is Paris.", "agent2"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    assert of(records, ConsensusReached), _dump(records)
    consensus = of(records, ConsensusReached)[0]
    assert consensus.winner_id == "agent-a" and consensus.tally == {"agent1": 2, "agent2": 1}
    done = of(records, RunCompleted)[0]
    assert done.winner_id == "agent-a" and done.final_answer == "The capital of France is Paris."
    presentation = [b for b in fake.requests(ma) if "tools" not in b][0]
    prompt = json.dumps(presentation["messages"])
    assert "Paris, France." in prompt and "agent1 is right" in prompt and "agent-b" not in prompt
    assert_no_duplicates(run_id, records)


async def test_new_answer_invalidates_votes_and_agents_revote(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("A1", "agent1"))
    fake.script(mb, answer("B1"), answer("B2", delay_s=1.0))  # B2 arrives after agent-a has already voted
    fake.default(mb, agent_script("B1", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    invalidated = of(records, VoteInvalidated)
    assert [(e.voter_id, e.by_label) for e in invalidated] == [("agent-a", "agent2.2")]
    a_votes = [e for e in of(records, VoteCast) if e.voter_id == "agent-a"]
    assert [v.version for v in a_votes] == [2, 3]
    assert {v.voter_id: v.version for v in of(records, VoteCast)} == {"agent-a": 3, "agent-b": 3}  # last votes
    assert of(records, RunCompleted)


async def test_mid_turn_update_is_received_by_the_model(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("Paris is the capital of France.", "agent1"))
    fake.script(mb, vote("agent1", "stale vote", delay_s=1.0))  # cast while agent-a's answer arrives
    fake.default(mb, agent_script("unused", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    second_call = fake.requests(mb)[1]["messages"]
    update = second_call[-1]["content"]
    assert update.startswith("UPDATE: While you were working, new answers were provided.")
    assert "<agent1> Paris is the capital of France. <end of agent1>" in update
    assert any(m["role"] == "tool" and m["content"].startswith("Vote not recorded") for m in second_call)
    delivered = of(records, UpdateDelivered)
    assert [(e.agent_id, e.labels) for e in delivered] == [("agent-b", ("agent1.1",))]
    b_votes = [e for e in of(records, VoteCast) if e.voter_id == "agent-b"]
    assert len(b_votes) == 1 and b_votes[0].reason == "agent1 is right"  # the stale vote never counted


async def test_enforcement_retries_until_a_workflow_tool_is_called(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma,) = team(fake, 1)
    fake.script(ma, Reply(text="I think it is Paris."), answer("Paris"))
    fake.default(ma, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    assert [e.code for e in of(records, TurnRejected)] == ["no_workflow_tool"]
    retry = fake.requests(ma)[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is Paris."}
    assert retry[-1] == {"role": "user", "content": ENFORCEMENT_MESSAGE}
    assert of(records, RunCompleted)[0].final_answer == "FINAL: Paris"


async def test_failing_agent_is_dropped_and_the_run_goes_on(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    cfg["agents"][1]["backend"]["max_retries"] = 0  # each failed call fails the turn at once
    fake.default(ma, agent_script("Paris", "agent1"))
    fake.default(mb, lambda body: Reply(status=500, error_message="provider is down"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    dropped = of(records, AgentDropped)
    assert [(d.agent_id, d.failed_turns) for d in dropped] == [("agent-b", 3)]
    assert "HTTP 500" in dropped[0].reason
    assert len(fake.requests(mb)) == 3
    assert of(records, RunCompleted)[0].winner_id == "agent-a"


async def test_a_bug_in_an_adapter_fails_the_turn_visibly_and_the_run_goes_on(
    fresh_nats, fake: FakeOpenAI, monkeypatch
) -> None:
    """An exception no adapter maps (an SDK bug: the corpus walk met openai's "partially initialized
    module 'httpx'") is a ``turn.failed`` with an ``InternalError``, so the orchestrator asks again or
    drops the agent, instead of the turn vanishing and the run waiting out its timeout."""
    from massgen_agent_worker import providers

    real = providers.complete
    calls = {"n": 0}

    async def flaky(request, on_text, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise AttributeError("partially initialized module 'httpx' has no attribute 'Response'")
        return await real(request, on_text, **kwargs)

    monkeypatch.setattr(providers, "complete", flaky)
    cfg, (m,) = team(fake, 1)
    fake.default(m, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        records = await s.wait_done(await s.submit(cfg), 30)
    [failed] = of(records, TurnFailed)
    assert failed.failure.type == "InternalError" and "partially initialized" in failed.failure.message
    assert of(records, RunCompleted)


async def test_retryable_provider_errors_are_retried_after_retry_after_and_recorded(fresh_nats, fake: FakeOpenAI):
    cfg, (ma, mb) = team(fake, 2)
    fake.default(ma, agent_script("Paris", "agent1"))
    fake.script(mb, Reply(status=429, retry_after=0.2), Reply(status=503))
    fake.default(mb, agent_script("Paris too", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        records = await s.wait_done(await s.submit(cfg))
    retries = of(records, ProviderRetried)
    assert [(r.agent_id, r.retry, r.failure.type) for r in retries] == [
        ("agent-b", 1, "ProviderRateLimited"), ("agent-b", 2, "ProviderServerError")]
    assert retries[0].delay_s == 0.2 and retries[1].delay_s == 1.0  # Retry-After, then backoff 0.5 * 2
    assert not of(records, AgentDropped) and of(records, RunCompleted)


async def test_budget_stops_coordination_and_ends_with_the_best_answer(fresh_nats, fake: FakeOpenAI):
    cfg, models = team(fake, 2, orchestrator={"max_cost_usd": 0.01})
    for i, m in enumerate(models):
        cfg["agents"][i]["backend"]["model"] = m = f"gpt-4o-{m}"  # priced: $2.50 / $10 per million
        fake.default(m, lambda body, i=i: answer(f"answer {i}", prompt_tokens=3000, completion_tokens=100))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        records = await s.wait_done(await s.submit(cfg))
    [hit] = of(records, BudgetExceeded)
    assert hit.cost_usd >= 0.01 and hit.max_cost_usd == 0.01
    [done] = of(records, RunCompleted)
    assert done.final_answer in ("answer 0", "answer 1")
    assert not [e for e in of(records, TurnRequested) if e.kind == "presentation"]
    after = [r.event for r in records[next(i for i, r in enumerate(records) if isinstance(r.event, BudgetExceeded)):]]
    assert not [e for e in after if isinstance(e, TurnRequested | UpdateDelivered)]  # no new call once over budget
    costs = [u.cost_usd for u in of(records, UsageRecorded)]
    assert costs and all(c == round((3000 * 2.5 + 100 * 10) / 1e6, 8) for c in costs)


async def test_a_core_error_fails_that_run_and_the_orchestrator_keeps_serving(
    fresh_nats, fake: FakeOpenAI, monkeypatch
):
    import massgen_orchestrator.service as service
    from massgen_orchestrator.decide import step as real_step  # what service.step is until patched

    poisoned = set()

    def step(state, record):
        if record.run_id in poisoned and record.type == "turn.responded":
            raise KeyError("simulated bug")
        return real_step(state, record)

    monkeypatch.setattr(service, "step", step)
    cfg, (m,) = team(fake, 1)
    fake.default(m, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = uuid.uuid4().hex[:12]
        poisoned.add(run_id)
        bad_records = await _submit_as(s, cfg, run_id)
        good = await s.wait_done(await s.submit(cfg))
    [failed] = of(bad_records, RunFailed)
    assert "internal orchestrator error while deciding turn.responded" in failed.reason
    assert failed.failure.type == "InternalError" and failed.failure.cause.type == "KeyError"  # the tree's kind
    assert of(good, RunCompleted)


async def _submit_as(stack: Stack, cfg: dict, run_id: str) -> list:
    ev = run_submitted("What is the capital of France?", parse_config(cfg))
    await stack.log.append(
        run_id, "cli", [Draft(f"{run_id}:submitted", ev)], origin=Source(service="cli", instance="t")
    )
    return await stack.wait_done(run_id)


async def test_timeout_presents_the_best_available_answer(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2, timeout_s=2)
    fake.script(ma, answer("Paris"))  # then waits to vote until agent-b's answer lands, which is never
    fake.default(ma, lambda body: Reply(text="Presented after timeout: Paris"))
    fake.default(mb, lambda body: answer("late", delay_s=8))  # never answers in time
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id, timeout_s=20)
    timed_out = of(records, RunTimedOut)[0]
    assert timed_out.winner_id == "agent-a" and timed_out.final_answer == "Presented after timeout: Paris"
    assert not of(records, RunCompleted)


async def test_two_worker_processes_share_one_run(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, models = team(fake, 4)
    for i, m in enumerate(models):
        fake.default(m, lambda body, i=i: _slow(agent_script(f"answer {i}", "agent1")(body)))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.process("agent_worker", "--concurrency", "1")
        s.process("agent_worker", "--concurrency", "1")
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id, timeout_s=60)
    workers = Counter(e.worker for e in of(records, TurnStarted))
    assert len(workers) == 2, workers
    assert of(records, RunCompleted)
    assert_no_duplicates(run_id, records)


async def test_fresh_worker_process_takes_concurrent_first_turns(fresh_nats, fake: FakeOpenAI) -> None:
    # Four first turns at once in a new process: all wait for the one import of the provider adapter
    # (done off the event loop), none sees a half-initialised module.
    cfg, models = team(fake, 4)
    for i, m in enumerate(models):
        fake.default(m, agent_script(f"answer {i}", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        run_id = await s.submit(cfg)
        await asyncio.sleep(0.5)  # the four turns are queued before the worker starts
        s.process("agent_worker", "--concurrency", "4")
        records = await s.wait_done(run_id, timeout_s=60)
    assert not of(records, TurnFailed)
    assert len({e.turn_id for e in of(records, TurnStarted) if e.turn_id.endswith(".1")}) == 4
    assert of(records, RunCompleted)
    assert_no_duplicates(run_id, records)


def _slow(reply: Reply) -> Reply:
    return Reply(text=reply.text, tool_calls=reply.tool_calls, delay_s=0.2)


async def test_orchestrator_sigkilled_mid_run_resumes_without_duplicates(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb, mc) = team(fake, 3)
    for m, text in ((ma, "Paris"), (mb, "Paris, France"), (mc, "It is Paris")):
        fake.default(m, lambda body, text=text: _slow(agent_script(text, "agent1")(body)))
    async with Stack(fresh_nats.url) as s:
        first = s.process("orchestrator")
        s.worker()
        run_id = await s.submit(cfg)

        async def answered() -> bool:
            return any(isinstance(r.event, AnswerPosted) for r in await s.log.read(run_id))

        await eventually(answered, 20, "a first answer")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        await asyncio.sleep(1.0)  # workers keep answering turns while no orchestrator decides
        s.process("orchestrator")
        records = await s.wait_done(run_id, timeout_s=60)
    assert of(records, RunCompleted)
    assert len({r.source.instance for r in records if r.source.service == "orchestrator"}) == 2
    assert_no_duplicates(run_id, records)


async def test_worker_killed_mid_turn_gets_the_turn_redelivered_without_duplicate_answer(
    fresh_nats, fake: FakeOpenAI
) -> None:
    cfg, (ma,) = team(fake, 1)
    fake.script(ma, answer("Paris", delay_s=4.0))  # the first worker dies while waiting for this
    fake.default(ma, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        doomed = s.process("agent_worker", "--ack-wait", "2")
        run_id = await s.submit(cfg)
        await asyncio.to_thread(fake.wait_for_requests, ma, 1, 20)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
        s.process("agent_worker", "--ack-wait", "2")
        records = await s.wait_done(run_id, timeout_s=60)
    starts = [e for e in of(records, TurnStarted) if e.turn_id == "agent-a.1"]
    assert [e.delivery for e in starts] == [1, 2]
    assert len(starts[0].worker) and starts[0].worker != starts[1].worker
    assert [e.label for e in of(records, AnswerPosted)] == ["agent1.1"]
    assert of(records, PresentationCompleted) and of(records, RunCompleted)
    assert_no_duplicates(run_id, records)


async def test_worker_sigtermed_mid_turn_hands_the_turn_back_at_once(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma,) = team(fake, 1)
    fake.script(ma, answer("Paris", delay_s=4.0))  # the first worker is stopped while waiting for this
    fake.default(ma, agent_script("Paris", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        leaving = s.process("agent_worker", "--ack-wait", "30")
        run_id = await s.submit(cfg)
        await asyncio.to_thread(fake.wait_for_requests, ma, 1, 20)
        s.process("agent_worker", "--ack-wait", "30")
        leaving.send_signal(signal.SIGTERM)
        assert leaving.wait(10) == 0
        records = await s.wait_done(run_id, timeout_s=25)
    starts = [r for r in records if isinstance(r.event, TurnStarted) and r.event.turn_id == "agent-a.1"]
    assert [r.event.delivery for r in starts] == [1, 2]
    # Nak'ed on the way out: back on the queue at once, not after the 30 s ack wait.
    assert starts[1].ts - starts[0].ts < 10
    assert [e.label for e in of(records, AnswerPosted)] == ["agent1.1"]
    assert_no_duplicates(run_id, records)


def _dump(records: list) -> str:
    return "\n".join(
        f"{r.seq} {r.type} {getattr(r.event, 'agent_id', '')} {getattr(r.event, 'reason', '')} "
        f"{getattr(r.event, 'failure', '')}"
        for r in records
    )


async def test_post_evaluation_restarts_once_with_its_reasons_and_the_run_completes(fresh_nats, fake: FakeOpenAI):
    """MassGen spec §1.12 through the stack: the winner's evaluation of attempt 1 asks for a restart;
    attempt 2's prompts carry the reasons; its evaluation submits."""
    cfg, (ma, mb) = team(fake, 2, orchestrator={"coordination": {"max_orchestration_restarts": 2}})
    reason, instructions = RESTART_REASON, RESTART_INSTRUCTIONS
    fake.default(ma, restarting_script("Paris"))
    fake.default(mb, restarting_script("It is Paris"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    (restarted,) = of(records, RunRestarted)
    assert (restarted.attempt, restarted.reason, restarted.instructions) == (2, reason, instructions)
    assert restarted.previous_answer == "FINAL: Paris."
    second = [b for b in fake.requests(mb) if "PREVIOUS ATTEMPT FEEDBACK" in json.dumps(b["messages"])]
    assert second and all(reason in json.dumps(b["messages"]) for b in second)
    assert [e.auto for e in of(records, PostEvaluationSubmitted)] == [""]
    evaluations = [e for e in of(records, TurnRequested) if e.kind == "post_evaluation"]
    assert [(e.agent_id, e.turn_id) for e in evaluations] == [("agent-a", "agent-a.evaluate"),
                                                              ("agent-a", "agent-a.a2.evaluate")]
    assert of(records, RunCompleted)[0].final_answer == "FINAL: Paris, on the Seine."
    assert sorted(e.label for e in of(records, AnswerPosted)) == ["agent1.1", "agent1.2", "agent2.1", "agent2.2"]
    assert_no_duplicates(run_id, records)  # turn ids and answer labels unique across attempts


async def test_a_post_evaluation_that_runs_out_of_time_submits(fresh_nats, fake: FakeOpenAI) -> None:
    """The shell arms the evaluation turn's own deadline (presentation_timeout_seconds, counted from its
    start); when it fires, the presented answer is submitted (MassGen: on expiry auto-submit)."""
    cfg, (ma, mb) = team(fake, 2, orchestrator={"coordination": {"max_orchestration_restarts": 1}})
    cfg["timeout_settings"]["presentation_timeout_seconds"] = 1.5
    script = agent_script("Paris", "agent1", final="The capital of France is Paris.")
    fake.default(ma, lambda body: Reply(text="thinking", delay_s=5) if "submit" in tool_names(body) else script(body))
    fake.default(mb, agent_script("Paris, France.", "agent1"))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    (submitted,) = of(records, PostEvaluationSubmitted)
    assert "deadline" in submitted.auto
    assert [(t.name, t.turn_id) for t in of(records, TimerFired)] == [("presentation_deadline", "agent-a.evaluate")]
    assert of(records, RunCompleted)[0].final_answer == "The capital of France is Paris."
    assert_no_duplicates(run_id, records)
