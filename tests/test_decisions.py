"""The decision protocol for models without tool calls (``tool_mode: json_schema``, issue 11 item 2),
through the real worker and orchestrator, the official ``openai`` SDK and the wire-level fake: the
answer is free text, the choice a short constrained call, each call its own ``usage.recorded``."""

from __future__ import annotations

import json

from harness import Stack, of, team
from massgen_agent_worker.decisions import WRITE_ANSWER
from massgen_es.events import AnswerPosted, RunCompleted, TurnRejected, UsageRecorded, VoteCast
from massgen_es.testing.fake_openai import FakeOpenAI, Reply


def _branches(body: dict) -> dict[str, dict]:
    schema = body["response_format"]["json_schema"]["schema"]
    return {b["properties"]["tool"]["enum"][0]: b for b in schema.get("anyOf", [schema])}


def _model(first: str, later: list[str]):
    """Free text: ``first``, then the texts of ``later``; choices: new_answer while ``later`` has texts
    left to write, then a vote for agent1; the presentation says FINAL."""

    def handle(body: dict) -> Reply:
        last = body["messages"][-1]["content"]
        if "response_format" in body:
            assert "tools" not in body
            if later and "new_answer" in _branches(body):
                return Reply(text=json.dumps({"tool": "new_answer", "arguments": {}}))
            vote = {"tool": "vote", "arguments": {"agent_id": "agent1", "reason": "it is right"}}
            return Reply(text=json.dumps(vote))
        if "as your final answer" in last:
            return Reply(text="FINAL: Paris")
        if last == WRITE_ANSWER:
            return Reply(text=later.pop(0))
        return Reply(text=first)

    return handle


async def test_answers_are_free_text_and_choices_are_constrained(fresh_nats, fake: FakeOpenAI) -> None:
    cfg, (ma, mb) = team(fake, 2)
    for agent in cfg["agents"]:
        agent["backend"]["tool_mode"] = "json_schema"
    fake.default(ma, _model("Paris.", []))
    fake.default(mb, _model("It is Paris.", ["Paris, on the Seine."]))
    async with Stack(fresh_nats.url) as s:
        s.orchestrator()
        s.worker()
        run_id = await s.submit(cfg)
        records = await s.wait_done(run_id)
    a, b = fake.requests(ma), fake.requests(mb)
    # First turn: new_answer is the only option, so one plain call and its text is the answer.
    assert "response_format" not in a[0] and "tools" not in a[0]
    assert a[0]["messages"][-1]["content"] == "What is the capital of France?"  # the question as asked
    answers = {e.agent_id: [x.content for x in of(records, AnswerPosted) if x.agent_id == e.agent_id]
               for e in of(records, AnswerPosted)}
    assert answers == {"agent-a": ["Paris."], "agent-b": ["It is Paris.", "Paris, on the Seine."]}
    # B's vote turn: a constrained choice (new_answer takes no arguments there), then the text, plain.
    choice = b[1]
    assert set(_branches(choice)) == {"new_answer", "vote"}
    assert _branches(choice)["new_answer"]["properties"]["arguments"] == {"type": "object", "properties": {}}
    vote_arguments = _branches(choice)["vote"]["properties"]["arguments"]
    assert vote_arguments["properties"]["agent_id"]["enum"] == ["agent1", "agent2"]
    assert choice["messages"][-1]["content"].endswith('"arguments": {"agent_id": "agent1", "reason": "..."}}')
    written = b[2]
    assert "response_format" not in written and written["messages"][-1] == {"role": "user", "content": WRITE_ANSWER}
    # The same turn's messages, without the JSON instructions the choice had at the end.
    assert written["messages"][:-2] == choice["messages"][:-1]
    assert choice["messages"][-1]["content"].startswith(written["messages"][-2]["content"] + "\n\nReply with one JSON")
    # A vote is one constrained call with an agent and a reason.
    votes = {(v.voter_id, v.target_anon, v.reason) for v in of(records, VoteCast)}
    assert votes >= {("agent-a", "agent1", "it is right")}
    assert not of(records, TurnRejected)
    assert len(of(records, UsageRecorded)) == len(a) + len(b)  # every call recorded, each on its own
    assert of(records, RunCompleted)[0].final_answer == "FINAL: Paris"
