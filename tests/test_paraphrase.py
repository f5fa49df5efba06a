"""MassGen's DSPy question paraphrasing (``orchestrator.dspy``, spec §1.15): the rewrites are turns of
kind ``paraphrase`` on the configured backend, run by the agent worker through the real ``openai`` SDK
against FakeOpenAI over a real nats-server, recorded once in ``question.paraphrased`` and given
round-robin to the agents as ``<PARAPHRASED MESSAGE>``."""

from __future__ import annotations

import asyncio

import pytest

from harness import Stack, agent_script, assert_no_duplicates, of, team
from massgen_es.config import parse_config, run_submitted
from massgen_es.errors import ConfigError
from massgen_es.events import QuestionParaphrased, RunCompleted, TurnRequested
from massgen_es.testing import eventually
from massgen_es.testing.fake_openai import FakeOpenAI, Reply
from massgen_orchestrator import paraphrase
from massgen_replay import lanes
from massgen_replay.views import RunView, preview

QUESTION = "What is the capital of France?"


def rewriter(body: dict) -> Reply:
    """The paraphrasing model: reasons, then gives a rewrite naming the temperature it was called at."""
    return Reply(text=f"It asks for a city.\nPARAPHRASE: Which city is France's capital (t={body['temperature']})?")


def dspy_team(fake: FakeOpenAI, n_agents: int, **dspy) -> dict:
    cfg, models = team(fake, n_agents)
    for i, m in enumerate(models):
        fake.default(m, agent_script(f"Paris {i}", "agent1"))
    fake.default("rewriter", rewriter)
    cfg["orchestrator"]["dspy"] = {"enabled": True, "num_variants": 2, "use_chain_of_thought": True,
                                   "backend": {"type": "chatcompletion", "model": "rewriter",
                                               "base_url": fake.base_url}, **dspy}
    return cfg


def paraphrase_requests(records: list) -> list[TurnRequested]:
    return [e for e in of(records, TurnRequested) if e.kind == "paraphrase"]


async def test_each_agent_is_asked_its_round_robin_paraphrase_next_to_the_original(fresh_nats, fake):
    cfg = dspy_team(fake, 3, temperature_range=[0.4, 0.8])
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        run_id = await stack.submit(cfg, QUESTION)
        records = await stack.wait_done(run_id, 60)
    assert of(records, RunCompleted)
    asked = paraphrase_requests(records)
    assert [(t.turn_id, t.backend["model"], t.backend["temperature"]) for t in asked] == [
        ("agent-a.paraphrase", "rewriter", 0.4), ("agent-b.paraphrase", "rewriter", 0.8)]  # 2 variants, 3 agents
    assert sorted(b["temperature"] for b in fake.requests("rewriter")) == [0.4, 0.8]  # sent to the provider
    [done] = of(records, QuestionParaphrased)
    first, second = "Which city is France's capital (t=0.4)?", "Which city is France's capital (t=0.8)?"
    assert done.variants == (first, second)  # the reasoning before PARAPHRASE: is not part of it
    assert done.by_agent == {"agent-a": first, "agent-b": second, "agent-c": first}
    coordination = [e for e in of(records, TurnRequested) if e.kind == "coordination" and e.attempt == 1]
    assert coordination
    for t in coordination:
        user = t.messages[1].content
        assert user.startswith(f"<ORIGINAL MESSAGE> {QUESTION} <END OF ORIGINAL MESSAGE>\n"
                               f"<PARAPHRASED MESSAGE> {done.by_agent[t.agent_id]} <END OF PARAPHRASED MESSAGE>\n")
    first_coordination = min(r.seq for r in records if r.type == "turn.requested" and r.event.kind == "coordination")
    assert all(r.seq < first_coordination for r in records if isinstance(r.event, QuestionParaphrased))
    assert_no_duplicates(run_id, records)  # and the core reproduces every decision from the log
    view = RunView(run_id)
    for r in records:
        view.apply(r)
    shown = {(e.agent_id, e.text) for e in view.timeline if e.kind == "paraphrase"}
    assert shown == {(a, preview(t)) for a, t in done.by_agent.items()}  # replay shows what each was asked
    [item] = [i for i in lanes.items(records) if i.type == "question.paraphrased"]
    assert item.summary == "question paraphrased: 2 of 2 variants" and f"agent-c: {first}" in item.body


async def test_a_restarted_orchestrator_does_not_paraphrase_again(fresh_nats, fake):
    cfg = dspy_team(fake, 2)
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        run_id = await stack.submit(cfg, QUESTION)

        async def requested() -> bool:
            return len(paraphrase_requests(await stack.log.read(run_id))) == 2

        await eventually(requested, 20, "the paraphrase turns")
        first = stack.tasks.pop()
        first.cancel()  # the orchestrator dies with the rewrites outstanding; no worker has run them yet
        await asyncio.gather(first, return_exceptions=True)
        stack.orchestrator()
        stack.worker()
        records = await stack.wait_done(run_id, 60)
    assert of(records, RunCompleted)
    assert len(paraphrase_requests(records)) == 2 and len(of(records, QuestionParaphrased)) == 1
    assert len(fake.requests("rewriter")) == 2  # each rewrite asked of the model once
    assert_no_duplicates(run_id, records)


async def test_a_failed_rewrite_leaves_its_agents_with_the_original(fresh_nats, fake):
    cfg = dspy_team(fake, 2)
    fake.default("rewriter", lambda body: Reply(text="PARAPHRASE: Name France's capital city.")
                 if body["temperature"] == 0.5 else Reply(status=400, error_message="bad request"))
    async with Stack(fresh_nats.url) as stack:
        stack.orchestrator()
        stack.worker()
        run_id = await stack.submit(cfg, QUESTION)
        records = await stack.wait_done(run_id, 60)
    [done] = of(records, QuestionParaphrased)
    assert done.variants == ("Name France's capital city.", "") and done.by_agent == {
        "agent-a": "Name France's capital city."}
    asked_b = next(e for e in of(records, TurnRequested) if e.agent_id == "agent-b" and e.kind == "coordination")
    assert "PARAPHRASED MESSAGE" not in asked_b.messages[1].content
    assert of(records, RunCompleted)


def test_temperatures_spread_over_the_strategys_range_and_replies_are_parsed():
    assert paraphrase.temperatures(3, "balanced") == (0.5, 0.7, 0.9)
    assert paraphrase.temperatures(1, "diverse") == (0.8,)
    assert paraphrase.temperatures(2, "balanced", (0.1, 0.3)) == (0.1, 0.3)
    assert paraphrase.variant("think\nPARAPHRASE: \"Why?\"", "q") == "Why?"
    assert paraphrase.variant("  What is X? ", "what is x?") == ""  # only repeats the question
    assert paraphrase.assign(("v1", "", "v3"), ["a", "b", "c", "d"]) == {"a": "v1", "c": "v3", "d": "v1"}


def test_the_config_names_what_is_missing_or_not_built():
    base = {"agents": [{"id": "a", "backend": {"type": "chatcompletion", "model": "m",
                                               "base_url": "http://127.0.0.1:9/v1"}}]}
    with pytest.raises(ConfigError, match=r"`orchestrator.dspy.backend` is missing"):
        parse_config({**base, "orchestrator": {"dspy": {"enabled": True}}})
    backend = base["agents"][0]["backend"]
    with pytest.raises(ConfigError, match=r"`orchestrator.dspy.validate_semantics` is MassGen's semantic check"):
        parse_config({**base, "orchestrator": {"dspy": {"enabled": True, "backend": backend,
                                                        "validate_semantics": True}}})
    with pytest.raises(ConfigError, match=r"`orchestrator.dspy.backend.model`"):
        parse_config({**base, "orchestrator": {"dspy": {"enabled": True, "backend": {"type": "local",
                                                                                     "model": "nope"}}}})
    massgen_keys = parse_config({**base, "orchestrator": {"dspy": {"enabled": True, "backend": {
        **backend, "top_k": 5, "provider": "vLLM"}}}})  # MassGen's backend keys mean there what they mean here
    assert run_submitted("q", massgen_keys).settings.paraphrase.backend["extra_body"] == {"top_k": 5}
    off = parse_config({**base, "orchestrator": {"dspy": {"enabled": False}}})
    assert run_submitted("q", off).settings.paraphrase is None
